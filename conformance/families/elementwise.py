"""The elementwise family's templates: a declaration's data in, a ``LayerSpec`` out.

``elementwise(name, fn, ...)`` declares a layer computing ``fn``, a function of
``reference.functional`` (its registered VJP is the backward), from parameters described as data
(``strategies.elementwise.ParamSpec``), its kinks, its error analysis (or "selection" /
"rounding" / a Tolerance), ``inplace``, its invalid rules and the alternatives the documentation
leaves open (NaN slopes, one-sided derivatives at kinks). It derives the case strategy, the
reference and pullback, the torch call (``torch.nn.<name>``), the finite-difference guard and the
corner regimes (kinks, large, ±inf, NaN; with ``edges``: ±0, the exp overflow region, huge and
tiny magnitudes, empty and size-1 shapes; inplace). ``softmax_like(name, fn, error)`` does the
same for layers normalising along a dim.

Adding an elementwise layer is its reference function (registered with its VJP and error
analysis) and one declaration::

    declare(elementwise("CELU", RF.celu, params={"alpha": (1.0, 0.5, 2.0, -1.0)}, kinks=(0.0,),
                        error=A.celu_error, inplace=True, tiers=FLOAT, notes="..."))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from backends.base import Case, Result
from conformance import strategies as S
from conformance.numerics.elementwise import (
    OneSided,
    Slopes,
    analysed,
    gradient_comparator,
    parameters_of,
    tolerance_of,
)
from conformance.spec import Comparator, LayerSpec, Pullback, Randomness, Regime, Tolerance, TorchMapping
from conformance.strategies.elementwise import (
    INPLACE_REGIME,
    Elementwise,
    ParamSpec,
    kinks_of,
    smooth_at,
    softmax_cases,
    softmax_length,
    softmax_regimes,
    value_regimes,
)
from reference.registry import FUNCTIONS

FAMILY = "activation"


def functional_reference(fn: Callable[..., Any]) -> Callable[[Case], tuple[Result, Pullback]]:
    """The reference of a layer computing the registered function ``fn``: its arguments are the
    case's inputs (by name) and those of its parameters ``fn`` takes (``training`` is the case's
    train flag); the pullback is the registered VJP for the output's cotangent. A case declared
    invalid is refused after the call (which raises itself for the rules ``fn`` knows; the others,
    such as an in-place call autograd cannot differentiate, are rules of the module or autograd)."""
    entry = FUNCTIONS.get(fn.__name__)
    if entry is None or entry.forward is not fn or entry.vjp is None:
        raise ValueError(f"{fn.__name__} is not registered in reference.functional with a VJP")
    names = parameters_of(fn)

    def reference(case: Case) -> tuple[Result, Pullback]:
        arrays = dict(case.inputs)
        kwargs = {k: v for k, v in case.params.items() if k in names and k not in arrays}
        if "training" in names:
            kwargs["training"] = case.train
        y = fn(**arrays, **kwargs)
        if case.invalid:
            raise ValueError(f"invalid case: {case.note}")
        return Result(outputs={"output": y}), lambda cot: entry.vjp(cot["output"], **arrays, **kwargs)

    return reference


def elementwise(name: str, fn: Callable[..., Any], *, params: ParamSpec | None = None,
                kinks: Sequence[float] | Callable[[Mapping[str, Any]], Sequence[float]] | None = None,
                kink_regime: tuple[str, str] | None = None, tiers: tuple[str, ...] = S.TIERS,
                inplace: bool = False, forward_only: Callable[[Mapping[str, Any], bool], bool] | None = None,
                error: Callable[..., Any] | None = None,
                tolerance: str | Tolerance | Mapping[str, Tolerance] = "selection",
                invalid: Mapping[str, Mapping[str, Any]] | None = None, backward_rules: Sequence[str] = (),
                nan_slopes: Slopes = (),
                one_sided: OneSided | None = None, comparators: Mapping[str, Comparator] | None = None,
                regimes: Sequence[Regime] = (), edges: bool = True, shape_regimes: bool = True, notes: str = "",
                cases: Callable[[str], Any] | None = None, invalid_cases: Callable[[str], Any] | None = None,
                torch: TorchMapping | None = None, reference: Callable[[Case], Any] | None = None,
                randomness: Randomness | None = None,
                random: Callable[[Mapping[str, Any], bool], bool] | None = None,
                adjoint_at: Callable[[Case], bool] | None = None) -> LayerSpec:
    """A declaration of the elementwise layer ``torch.nn.<name>`` computing ``fn`` (see the module
    docstring). ``params``, ``kinks`` (points, or a function of the parameters), ``tiers``,
    ``inplace``, ``forward_only(params)``, ``invalid`` ({note: parameter options breaking the
    rule}), ``backward_rules`` (the notes of the rules torch enforces in its backward pass only)
    and ``edges`` describe the cases (``strategies.elementwise.Elementwise``), unless
    ``cases`` / ``invalid_cases`` are given; ``error`` (an analysis of the family's signature) or
    ``tolerance`` the bound; ``nan_slopes`` and ``one_sided`` the gradient's accepted
    alternatives; ``randomness`` with ``random(params, train)`` a stochastic layer (drawing the
    module's train flag; its value regimes are pinned to evaluation, where every value is
    observable), whose ``reference`` reads the case's choices; ``adjoint_at`` the jvp domain
    (``LayerSpec.adjoint_at``)."""
    kinks_fn = kinks_of(kinks)
    if cases is None:
        drawn = Elementwise(op=name, params=params, kinks=kinks_fn, tiers=tiers, inplace=inplace,
                            forward_only=forward_only, edges=edges, train=randomness is not None, random=random,
                            invalid=invalid or {}, backward_rules=tuple(backward_rules))
        cases, invalid_cases = drawn.valid, (drawn.rejected if invalid else invalid_cases)
    gradient = {"grad.input": gradient_comparator(nan_slopes, one_sided)} if (nan_slopes or one_sided) else {}
    name_and_description = kink_regime or ("at the kink", "inputs exactly at a kink and its neighbours")
    return LayerSpec(
        name=name, family=FAMILY, cases=cases, invalid_cases=invalid_cases,
        reference=reference or functional_reference(fn),
        torch=torch or TorchMapping(f"torch.nn.{name}", inplace="input" if inplace else None),
        tolerance=analysed(error) if error is not None else tolerance_of(tolerance),
        comparators={**gradient, **(comparators or {})},
        smooth_at=smooth_at(kinks_fn), adjoint_at=adjoint_at,
        regimes=(*value_regimes(kinks_fn, *name_and_description, edges=edges, shapes=shape_regimes,
                                pins={"train": False} if randomness is not None else None),
                 *((INPLACE_REGIME,) if inplace else ()), *regimes),
        randomness=randomness, notes=notes,
    )


def softmax_like(name: str, fn: Callable[..., Any], error: Callable[..., Any], *, notes: str = "",
                 cases: Callable[[str], Any] | None = None, invalid_cases: Callable[[str], Any] | None = None,
                 regimes: Sequence[Regime] | None = None) -> LayerSpec:
    """A declaration of ``torch.nn.<name>`` normalising along a dim with ``fn`` (softmax, softmin,
    log_softmax, softmax2d): the softmax cases (every dim, scales up to 1000, -inf entries, -inf
    slices, NaN and +inf), the reference and its VJP, ``error``'s analysis over the slice length K
    (no underflow allowance: it is part of the analysis) and the softmax regimes."""
    return LayerSpec(
        name=name, family=FAMILY, cases=cases or softmax_cases(name),
        invalid_cases=invalid_cases or softmax_cases(name, invalid=True),
        reference=functional_reference(fn), torch=TorchMapping(f"torch.nn.{name}"),
        tolerance=analysed(error, length=softmax_length, underflow=False),
        regimes=softmax_regimes() if regimes is None else tuple(regimes), notes=notes,
    )
