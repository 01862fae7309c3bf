"""The sparse family's templates: Embedding and EmbeddingBag, data in, ``LayerSpec`` out.

Both references come from the registered functional forms (``reference.functional``:
``embedding``, ``embedding_bag``, ``embedding_renorm_``) and their VJPs: the output, the weight
after an in-place max_norm renormalisation (``state.weight``), and a pullback to the weight (and
per_sample_weights). The strategies live in ``conformance.strategies.sparse``, tolerances and
comparators in ``conformance.numerics.sparse``; a declaration gives its regimes and notes.
"""

from __future__ import annotations

from collections.abc import Sequence

from backends.base import Case, Result
from conformance.numerics import sparse as N
from conformance.spec import LayerSpec, Pullback, Regime, TorchMapping, arg
from conformance.strategies import sparse as S
from reference import functional as RF

FAMILY = "sparse"


def _renormalised(case: Case, result: Result, flat_input) -> None:
    p = case.params
    if p["max_norm"] is not None:
        result.state["weight"] = RF.embedding_renorm_(case.inputs["weight"], flat_input, p["max_norm"], p["norm_type"])


def embedding_reference(case: Case) -> tuple[Result, Pullback]:
    """F.embedding on the case (the module's arguments), the renormalised weight as state."""
    p = case.params
    kw = {k: p[k] for k in ("padding_idx", "max_norm", "norm_type", "scale_grad_by_freq", "sparse")}
    x, w = case.inputs["input"], case.inputs["weight"]
    result = Result(outputs={"output": RF.embedding(x, w, **kw)})
    _renormalised(case, result, x)
    return result, lambda cot: RF.vjp("embedding", x, w, cotangent=cot["output"], **kw)


def embedding_bag_reference(case: Case) -> tuple[Result, Pullback]:
    """F.embedding_bag on the case (the module's arguments and forward's offsets and
    per_sample_weights), the renormalised weight as state."""
    kw = N.bag_call(case)
    x, w = case.inputs["input"], case.inputs["weight"]
    result = Result(outputs={"output": RF.embedding_bag(x, w, **kw)})
    _renormalised(case, result, x)
    return result, lambda cot: RF.vjp("embedding_bag", x, w, cotangent=cot["output"], **kw)


def _mutated(case: Case) -> tuple[str, ...]:
    return ("weight",) if case.params["max_norm"] is not None else ()


def embedding(*, regimes: Sequence[Regime], notes: str) -> LayerSpec:
    """torch.nn.Embedding: lookup, padding_idx, in-place max_norm, frequency-scaled and sparse
    gradients (compared densified)."""
    return LayerSpec(
        name="Embedding", family=FAMILY, cases=S.embedding_cases, invalid_cases=S.embedding_invalid_cases,
        reference=embedding_reference,
        torch=TorchMapping("torch.nn.Embedding", parameters=("weight",), mutated=_mutated),
        tolerance=N.EMBEDDING_TOLERANCE,
        comparators={"output": N.renorm_comparator, "state.weight": N.renorm_comparator},
        smooth_at=N.embedding_smooth, regimes=tuple(regimes), notes=notes,
    )


def _bag_kwargs(case: Case) -> dict:
    return {k: arg(k) for k in ("offsets", "per_sample_weights") if k in case.inputs}


def embedding_bag(*, regimes: Sequence[Regime], notes: str) -> LayerSpec:
    """torch.nn.EmbeddingBag: sum, mean and max bags of a 2-d input or a 1-d input with offsets,
    per_sample_weights, padding_idx, in-place max_norm, frequency-scaled and sparse gradients."""
    return LayerSpec(
        name="EmbeddingBag", family=FAMILY, cases=S.embedding_bag_cases, invalid_cases=S.embedding_bag_invalid_cases,
        reference=embedding_bag_reference,
        torch=TorchMapping("torch.nn.EmbeddingBag", parameters=("weight",), mutated=_mutated, kwargs=_bag_kwargs),
        tolerance={"*": N.BAG_TOLERANCE, "state.weight": N.STATE_TOLERANCE},
        comparators={"output": N.bag_output, "grad.weight": N.max_gradient, "state.weight": N.renorm_comparator},
        smooth_at=N.bag_smooth, regimes=tuple(regimes), notes=notes,
    )
