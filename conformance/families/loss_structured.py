"""Templates of the structured losses, beside the loss family's ``reduction_loss``
(``conformance.families.loss``), which declares CTCLoss as it is (its lengths are positional case
inputs, its parameters the functional's keywords).

``projection_loss`` covers the losses whose modules own parameters and return more than one
value or expose methods (AdaptiveLogSoftmaxWithLoss, LinearCrossEntropyLoss), which
``reduction_loss`` cannot express (it installs no parameters and names one output): a registered
functional (``reference.functional.<function>``, its forward and VJP the declaration's reference
and pullback), how a case feeds it (``call(case) -> (args, kwargs)``) and how its gradients map back
to the case's parameter names (``grads(case, grads)``), the module's parameters by attribute path,
its outputs, and optionally a method called instead of the module (``log_prob``, ``predict``:
``module.<method>(input)``, through a loop node over ``[module.<method>]``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

import reference.loss_adaptive  # noqa: F401  (registers the functions these templates call)
from backends.base import Case, Result
from conformance.spec import CaseStrategy, Comparator, LayerSpec, Pullback, Regime, TorchMapping, arg
from conformance.tolerance import ErrorFn, analysed_tolerance
from reference.registry import FUNCTIONS

Call = Callable[[Case], "tuple[tuple, dict[str, Any]]"]
Grads = Callable[[Case, Mapping[str, Any]], "dict[str, np.ndarray]"]


def method_call(method: str) -> dict[str, Any]:
    """Call node: ``module.<method>(input)`` (the module under test's bound method, applied by a
    one-step loop)."""
    return {"loop": {"over": [{"attribute": method}], "input": arg("input")}}


def projection_reference(function: str, call: Call, grads: Grads, outputs: Sequence[str],
                         backward: bool) -> Callable[[Case], tuple[Result, Pullback | None]]:
    """The declaration's reference: the registered forward on ``call(case)``, its results named by
    ``outputs``; the pullback gives the VJP the cotangents of ``outputs`` (a tuple when there are
    several, None for one without) and renames its gradients with ``grads``."""

    def reference(case: Case) -> tuple[Result, Pullback | None]:
        entry = FUNCTIONS[function]
        args, kwargs = call(case)
        out = entry.forward(*args, **kwargs)
        parts = out if isinstance(out, tuple) else (out,)
        result = Result(outputs={name: np.asarray(value) for name, value in zip(outputs, parts)})
        if not backward or entry.vjp is None:
            return result, None

        def pullback(cotangents: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            cot = tuple(cotangents.get(n) for n in outputs) if len(outputs) > 1 else cotangents["output"]
            return grads(case, entry.vjp(cot, *args, **kwargs))

        return result, pullback

    return reference


def projection_loss(name: str, function: str, *, call: Call, grads: Grads, cases: CaseStrategy,
                    parameters: Callable[[Case], Sequence[str]], errors: ErrorFn | None = None,
                    length: Callable[[Case, str], int] | int = 1, invalid: CaseStrategy | None = None,
                    outputs: Sequence[str] = ("output",), method: str = "", args: Sequence[str] = ("input", "target"),
                    ctor: Callable[[Case], dict[str, Any]] | None = None,
                    buffers: Callable[[Case], Sequence[str]] = lambda case: (), backward: bool = True,
                    regimes: Sequence[Regime] = (), comparators: Mapping[str, Comparator] | None = None,
                    notes: str = "", variant: str = "") -> LayerSpec:
    """A loss module ``torch.nn.<name>`` with parameters, mirrored by ``reference.functional.<function>``
    (module docstring): ``errors`` (an ``ErrorFn``) and ``length`` make its analysed tolerance
    (a function without gradient, ``predict``, is compared through its ``comparators``). ``buffers``:
    the case inputs that are module buffers too (installed as such, so that vmap stacks them)."""
    torch = TorchMapping(f"torch.nn.{name}", ctor=ctor, parameters=parameters, buffers=buffers,
                         args=() if method else tuple(args),
                         outputs=tuple(outputs), forward=(lambda case: method_call(method)) if method else None)
    return LayerSpec(
        name=name, family="loss", cases=cases, invalid_cases=invalid,
        reference=projection_reference(function, call, grads, outputs, backward), torch=torch,
        tolerance=analysed_tolerance(errors or (lambda case, result: {}), length),
        comparators=dict(comparators or {}), backward=backward, notes=notes, variant=variant, regimes=tuple(regimes),
    )


def lce_ctor(case: Case) -> dict[str, Any]:
    """LinearCrossEntropyLoss's constructor arguments: the case's parameters, the class weights as
    a tensor (``weight``) and the options as a ``LinearCrossEntropyOptions`` built from their
    fields (None: the reference path)."""
    p = dict(case.params)
    options = p.pop("options")
    init = {**p, "options": None if options is None else {"call": {
        "target": "torch.nn.LinearCrossEntropyOptions", "args": [], "kwargs": dict(options)}}}
    if "weight" in case.inputs:
        init["weight"] = arg("weight")
    return init
