"""The lazy-module template: ``Lazy<Layer>`` wraps the eager declaration of ``<Layer>``.

``lazy(name, eager, inferred, ...)`` declares ``torch.nn.<name>``, whose first call infers the
constructor argument ``inferred`` (in_features, in_channels, num_features) from the input and
materialises the parameters. The eager declaration (looked up by id when a case is drawn or
judged) gives everything else: its cases (the lazy module gets the same constructor arguments but
``inferred``), its reference, tolerances and comparators. A case runs, through call nodes:

1. a dry run ``module(input, **forward kwargs)``, the documented way to materialise a lazy module, as
   a ``prepare`` node (run when the module is built, before a derivative mode's transform);
2. ``torch.func.functional_call(module, {name: copy of the case's tensor}, args, kwargs)``: the
   materialised module called with the case's parameters and buffers (copies in the case's
   layouts: gradients flow back to the case's tensors, buffers are updated in the copies), compared
   with the eager reference: outputs, gradients, buffers after the call;
3. the materialised parameters read back (``random.weight``, ``random.bias``: empty when the module
   has none) and judged like the initialisers: their shapes exactly (the inference), their values
   by the eager module's documented initialisation (``init``): ``"fan_in_uniform"`` for Linear and
   the convolutions (U(±1/√fan_in) for weight and bias, fan_in from the weight as
   torch.nn.init computes it: kaiming_uniform_ with a = √5) or ``"ones_zeros"`` for batch norm.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case, Result
from conformance import strategies as S
from conformance.compare import Comparison
from conformance.numerics import init as num
from conformance.spec import (
    LayerSpec,
    Randomness,
    Regime,
    Tolerance,
    TorchMapping,
    all_specs,
    arg,
    call_node,
    scaffold_node,
)
from conformance.stats import StatCheck
from reference import init as RI

EXACT = Tolerance(magnitude="ref", exact="always")
PARAMETERS = ("weight", "bias")


@functools.cache
def _eager(eager_id: str) -> LayerSpec:
    return all_specs()[eager_id]


def to_eager(case: Case, eager_id: str) -> Case:
    """The eager declaration's case holding the same tensors and constructor arguments."""
    eager = _eager(eager_id)
    return replace(case, op=eager.name, variant=eager.variant)


# -- the eager declaration's tolerances and comparators, seen from lazy cases ------------------------------

class _EagerTolerances(Mapping):
    """``tolerance_for`` of the lazy declaration: the eager one's for every compared tensor (its
    callables given the eager case), exact for the materialised parameters."""

    def __init__(self, eager_id: str):
        self.eager_id = eager_id

    def __getitem__(self, tensor: str) -> Tolerance:
        if tensor.startswith("random."):
            return EXACT
        tol = _eager(self.eager_id).tolerance_for(tensor)
        eager_id = self.eager_id
        changes: dict[str, Any] = {}
        if callable(tol.reduction):
            changes["reduction"] = lambda case, name, f=tol.reduction: f(to_eager(case, eager_id), name)
        if callable(tol.magnitude):
            changes["magnitude"] = lambda case, result, f=tol.magnitude: f(to_eager(case, eager_id), result)
        return replace(tol, **changes)

    def __contains__(self, tensor: object) -> bool:
        return isinstance(tensor, str)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


class _EagerComparators(Mapping):
    """The eager declaration's comparators, called with the eager declaration and case."""

    def __init__(self, eager_id: str):
        self.eager_id = eager_id

    def __getitem__(self, name: str) -> Callable[..., Comparison]:
        found = self.get(name)
        if found is None:
            raise KeyError(name)
        return found

    def get(self, name: str, default: Any = None) -> Any:
        eager = _eager(self.eager_id)
        compare = eager.comparators.get(name)
        if compare is None:
            return default
        return lambda spec, case, tensor, ref, got: compare(eager, to_eager(case, self.eager_id), tensor, ref, got)

    def __iter__(self) -> Iterator[str]:
        return iter(_eager(self.eager_id).comparators)

    def __len__(self) -> int:
        return len(_eager(self.eager_id).comparators)


# -- cases ---------------------------------------------------------------------------------------------

def _cases(name: str, eager_id: str) -> Callable[[str], st.SearchStrategy[Case]]:
    """The eager declaration's cases (under the pins of the lazy regime being drawn), as lazy cases."""
    def strategy(dtype: str) -> st.SearchStrategy[Case]:
        return st.deferred(lambda: _eager(eager_id).strategy(dtype)).map(
            lambda case: replace(case, op=name, variant=""))

    return strategy


def wrong_rank(*ranks: int) -> Callable[[Case], Case]:
    """Invalid: an input of a rank the layer does not take (the first of ``ranks`` that differs
    from the drawn one), holding zeros."""
    def rule(case: Case) -> Case:
        x = case.inputs["input"]
        rank = next(r for r in ranks if r != x.ndim)
        shape = (x.shape + (2,) * rank)[:rank] if rank else ()
        return replace(case, inputs={**case.inputs, "input": np.zeros(shape)}, layouts={}, note=f"{rank}-d input")

    return rule


def indivisible_channels(case: Case) -> Case:
    """Invalid: an input whose channels groups does not divide (groups > 1), zeros."""
    groups = max(case.params["groups"], 2)
    x = case.inputs["input"]
    axis = 1 if x.ndim == case.inputs["weight"].ndim else 0
    shape = list(x.shape)
    shape[axis] = groups + 1
    return replace(case, params={**case.params, "groups": groups}, inputs={**case.inputs, "input": np.zeros(shape)},
                   layouts={}, note="in_channels not divisible by groups")


def _invalid_cases(name: str, eager_id: str, rules: Mapping[str, Callable[[Case], Case]]):
    """A valid case with one rule broken (rules by name: functions of the valid case)."""
    def strategy(dtype: str) -> st.SearchStrategy[Case]:
        @st.composite
        def build(draw: Any) -> Case:
            d = S.Drawer(draw)
            case = d(_cases(name, eager_id)(dtype), "module case")
            kind = d.choice(tuple(rules), "invalid kind")
            return replace(rules[kind](case), invalid=True)

        return build()

    return strategy


# -- reference -------------------------------------------------------------------------------------------

def inferred_size(case: Case, inferred: str) -> int:
    """What the first call infers: the last dim (in_features), dim 1 of a batched input or dim 0
    of an unbatched one (in_channels), dim 1 (num_features)."""
    x = case.inputs["input"]
    if inferred == "in_features":
        return x.shape[-1]
    if inferred == "in_channels":
        return x.shape[1] if x.ndim == case.inputs["weight"].ndim else x.shape[0]
    return x.shape[1]


def _check(case: Case, inferred: str, ranks: Sequence[int]) -> None:
    """The rules the first call enforces before the eager layer's own: the input's rank, and
    groups dividing the inferred channels."""
    x = case.inputs["input"]
    if x.ndim not in ranks:
        raise ValueError(f"{case.op} expects an input of rank {' or '.join(map(str, ranks))}, got {x.ndim}")
    if inferred == "in_channels" and inferred_size(case, inferred) % case.params["groups"]:
        raise ValueError("in_channels must be divisible by groups")


def _init_law(case: Case, init: str, name: str) -> num.Law | None:
    """The documented initial values of materialised parameter ``name``; None for a point mass."""
    w = case.inputs.get("weight")
    if init != "fan_in_uniform" or w is None:
        return None
    fan_in, _ = RI.calculate_fan_in_and_fan_out(w.shape)
    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return num.uniform_law(-bound, bound)


def _materialised(case: Case, init: str, name: str, reported: np.ndarray | None) -> np.ndarray:
    """Parameter ``name`` as materialised, in canonical form (empty when the module has none)."""
    expected = case.inputs.get(name)
    if expected is None:
        return np.zeros(0)
    law = _init_law(case, init, name)
    if law is None:  # batch norm: weight 1, bias 0
        return np.ones(expected.shape) if name == "weight" else np.zeros(expected.shape)
    if reported is None:
        return law.placeholder(expected.shape)
    return law.canonical(reported, expected.shape, case.dtype)


def _reference(eager_id: str, inferred: str, ranks: Sequence[int], init: str):
    def reference(case: Case) -> tuple[Result, Any]:
        _check(case, inferred, ranks)
        result, pullback = _eager(eager_id).reference(to_eager(case, eager_id))
        if case.choices:
            result.choices = {n: _materialised(case, init, n, case.choices.get(n)) for n in PARAMETERS}
        return result, pullback

    return reference


# -- the call ----------------------------------------------------------------------------------------------

def _kwargs(eager_id: str, case: Case) -> dict[str, Any]:
    mapping = _eager(eager_id).torch
    return dict(mapping.kwargs(case)) if mapping.kwargs else dict(case.forward_kwargs)


def _dry_run(eager_id: str) -> Callable[[Case], list[Any]]:
    """module(input, **kwargs): the first call, which materialises the parameters. It is a
    ``prepare`` node, run when the module is built: a derivative mode's transform then sees a
    materialised module, as torch.func requires (materialising inside torch.func.grad, jvp or vjp
    crashes torch 2.13 with SIGSEGV: see the note of issue #24)."""
    def prepare(case: Case) -> list[Any]:
        kwargs = _kwargs(eager_id, case)
        # functools.partial(module, **kwargs) is scaffolding (plain Python); the call of it is the dry run
        first = {"attribute": ""} if not kwargs else scaffold_node("functools.partial", {"attribute": ""}, **kwargs)
        return [{"loop": {"over": [first], "input": arg("input")}}]

    return prepare


def _forward(eager_id: str) -> Callable[[Case], dict[str, Any]]:
    """functional_call(module (materialised by the dry run), {parameters and buffers: copies}, args,
    kwargs)."""
    def forward(case: Case) -> dict[str, Any]:
        mapping = _eager(eager_id).torch
        kwargs = _kwargs(eager_id, case)
        module = {"attribute": ""}
        names = [*_list(mapping.parameters, case), *_list(mapping.buffers, case)]
        tensors = {"call": {"target": "builtins.dict", "args": [],
                            "kwargs": {n: arg(n, copy=True) for n in names if n in case.inputs}}}
        args = [arg(a) if isinstance(a, str) else a for a in _list(mapping.args, case)]
        return call_node("torch.func.functional_call", module, tensors, args,
                         {"call": {"target": "builtins.dict", "args": [], "kwargs": kwargs}})

    return forward


def _list(value: Any, case: Case) -> list[Any]:
    return list(value(case) if callable(value) else value)


def _mapping(name: str, eager_id: str, inferred: str) -> TorchMapping:
    def mutated(case: Case) -> list[str]:
        return _list(_eager(eager_id).torch.mutated, case)

    return TorchMapping(f"torch.nn.{name}", ctor=lambda case: {k: v for k, v in case.params.items() if k != inferred},
                        forward=_forward(eager_id), prepare=_dry_run(eager_id), mutated=mutated,
                        outputs=lambda case: _eager(eager_id).torch.output_pattern(case))


# -- randomness: the materialised parameters -----------------------------------------------------------------

def _randomness(init: str) -> Randomness:
    def sample(case: Case, rng: np.random.Generator) -> dict[str, np.ndarray]:
        out = {}
        for n in PARAMETERS:
            expected = case.inputs.get(n)
            law = _init_law(case, init, n)
            if expected is None:
                out[n] = np.zeros(0)
            elif law is None:
                out[n] = _materialised(case, init, n, None)
            else:
                out[n] = num.in_format(RI.uniform_(expected, law.dist.lo, law.dist.hi, rng), case.dtype)
        return out

    def check(samples: Sequence[tuple[Case, dict[str, np.ndarray]]], alpha: float) -> list[StatCheck]:
        draws = [(law, choices[n], case.dtype) for case, choices in samples for n in PARAMETERS
                 if (law := _init_law(case, init, n)) is not None and n in case.inputs and np.size(choices.get(n))]
        return num.law_checks(draws, alpha)

    return Randomness(
        choices={n: (lambda case, n=n: {"rule": "value", "of": {"attribute": n}}) for n in PARAMETERS},
        sample=sample, check=check, deterministic=lambda case: False)


def lazy(name: str, eager: str, inferred: str, *, ranks: Sequence[int], init: str,
         invalid: Mapping[str, Callable[[Case], Case]], regimes: Sequence[Regime] = (), dims: int | None = None,
         kind: str = "", notes: str = "") -> LayerSpec:
    """The declaration of ``torch.nn.<name>`` from the eager declaration ``eager`` (an id): the
    constructor argument ``inferred`` is left to the first call, inputs of ``ranks`` are accepted,
    ``init`` names the materialised parameters' law, ``invalid`` the rules by name (valid case ->
    invalid case)."""
    return LayerSpec(
        name=name, family="lazy", dims=dims, kind=kind,
        cases=_cases(name, eager), reference=_reference(eager, inferred, tuple(ranks), init),
        torch=_mapping(name, eager, inferred), tolerance=_EagerTolerances(eager),
        comparators=_EagerComparators(eager), invalid_cases=_invalid_cases(name, eager, invalid),
        smooth_at=lambda case: (_eager(eager).smooth_at or (lambda c: True))(to_eager(case, eager)),
        randomness=_randomness(init), regimes=tuple(regimes),
        notes=(f"The first call infers {inferred} from the input and materialises the parameters: their shapes "
               f"and documented initial values are compared; then the materialised module is called with the "
               f"case's parameters and buffers (torch.func.functional_call) and judged as {eager} is. " + notes),
    )
