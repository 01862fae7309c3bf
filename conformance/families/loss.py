"""The loss family's template: a reduction loss as data.

``reduction_loss`` turns an entry's data into a ``LayerSpec``: the ``reference.functional`` function
it mirrors (its forward and VJP make the declaration's reference and pullback), the case inputs it
takes positionally (the rest are keyword arguments: the module's parameters, its buffers such as
class weights, and the call's keyword arguments), its torch module, its case strategies, its
tolerance (a ``Tolerance`` policy, or an error analysis for ``analysed_tolerance``) and its regimes,
to which the deprecated size_average/reduce regime is prepended for losses that take the flags.
The reduction itself ('none', 'sum', 'mean', 'batchmean', the deprecated flags), class and sample
weights and ignore_index are the functional's own arguments, so the template carries no per-loss
code: a new loss (CTCLoss, AdaptiveLogSoftmaxWithLoss...) registers its functional and declares.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from backends.base import Case, Result
from conformance.spec import CaseStrategy, Comparator, LayerSpec, Pullback, Regime, Tolerance, TorchMapping
from conformance.strategies.loss import LEGACY_REGIME
from conformance.tolerance import ErrorFn, analysed_tolerance
from reference import functional as RF

Kwargs = Callable[[Case], dict[str, Any]]


def call_kwargs(case: Case, buffers: Sequence[str] = ()) -> dict[str, Any]:
    """The functional's keyword arguments for ``case``: the module's parameters (torch's module
    arguments are its functional's keyword arguments), the call's keyword arguments and the buffers
    the case holds (class weights, pos_weight)."""
    return {**case.params, **case.forward_kwargs, **{b: case.inputs[b] for b in buffers if b in case.inputs}}


def functional_reference(function: str, args: Sequence[str], buffers: Sequence[str] = (),
                         kwargs: Kwargs | None = None) -> Callable[[Case], tuple[Result, Pullback]]:
    """The declaration's reference: ``reference.functional.<function>`` on the case inputs named by
    ``args`` (positionally; names the case lacks are skipped: a var passed as a keyword) and
    ``kwargs(case)`` (default ``call_kwargs``), and the pullback of its registered VJP, whose
    gradients are keyed by argument name, which is the case input's name."""
    entry = RF.entries()[function]
    if entry.vjp is None:
        raise ValueError(f"reference.functional.{function} has no VJP")

    def reference(case: Case) -> tuple[Result, Pullback]:
        positional = [case.inputs[name] for name in args if name in case.inputs]
        keywords = kwargs(case) if kwargs is not None else call_kwargs(case, buffers)
        output = np.asarray(entry.forward(*positional, **keywords), dtype=np.float64)

        def pullback(cotangents: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            return entry.vjp(cotangents["output"], *positional, **keywords)

        return Result(outputs={"output": output}), pullback

    return reference


def reduction_loss(name: str, function: str, *, cases: CaseStrategy, invalid: CaseStrategy | None = None,
                   tolerance: Tolerance | Mapping[str, Tolerance] | None = None, errors: ErrorFn | None = None,
                   length: Callable[[Case, str], int] | int = 1, args: Sequence[str] = ("input", "target"),
                   buffers: Sequence[str] = (), legacy: bool = True, regimes: Sequence[Regime] = (),
                   notes: str = "", smooth_at: Callable[[Case], bool] | None = None,
                   comparators: Mapping[str, Comparator] | None = None, kwargs: Kwargs | None = None,
                   ctor: Kwargs | None = None, torch_target: str = "", dims: int | None = None,
                   variant: str = "", second_order_error: Callable[..., Any] | None = None) -> LayerSpec:
    """A loss of ``torch.nn.<name>`` (or ``torch_target``) mirrored by ``reference.functional.<function>``.

    - ``cases`` / ``invalid``: the case strategies (``invalid`` breaks one documented rule each);
    - ``tolerance``: a policy, or ``errors`` (an ``ErrorFn``, bounds in units of u) with ``length``
      (K per tensor, sizing the underflow allowance) for ``analysed_tolerance``;
    - ``args``: the case inputs passed positionally to the module and the functional; ``buffers``:
      inputs installed on the module (and passed to the functional by name);
    - ``legacy``: the loss takes the deprecated size_average/reduce (their regime comes first);
    - ``kwargs`` / ``ctor``: the functional's keyword arguments and the module's constructor
      arguments when they are not the case's parameters (a distance module described as a node);
    - ``second_order_error``: the vjp2 mode's terms that cancel in every direction
      (``LayerSpec.second_order_error``).
    """
    if (tolerance is None) == (errors is None):
        raise ValueError(f"{name}: give a tolerance policy or an error analysis, not both")
    present = lambda case: tuple(a for a in args if a in case.inputs)  # noqa: E731
    return LayerSpec(
        name=name, family="loss", cases=cases, invalid_cases=invalid,
        reference=functional_reference(function, args, buffers, kwargs),
        torch=TorchMapping(torch_target or f"torch.nn.{name}", buffers=tuple(buffers), args=present, ctor=ctor),
        tolerance=tolerance if tolerance is not None else analysed_tolerance(errors, length),  # type: ignore[arg-type]
        comparators=dict(comparators or {}), smooth_at=smooth_at, notes=notes, dims=dims, variant=variant,
        regimes=((LEGACY_REGIME,) if legacy else ()) + tuple(regimes), second_order_error=second_order_error,
    )
