"""Templates of the distance family: data in, ``LayerSpec`` out. References are the registered
functionals (``reference.distance``) with their VJPs, as ``(result, pullback)``; tolerances are the
layers' own first-order error analyses (``conformance.numerics.distance``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from backends.base import Case, Result
from conformance import strategies as S
from conformance.numerics import distance as N
from conformance.spec import LayerSpec, Regime, Tolerance, TorchMapping
from conformance.strategies import distance as SD
from conformance.tolerance import analysed_tolerance
from reference import distance as ref


def _pairwise_reference(case: Case) -> tuple[Result, Any]:
    x1, x2 = case.inputs["x1"], case.inputs["x2"]
    p, eps, keepdim = N._params(case)
    precise = case.dtype == "float64"  # float64's own roundings matter only when float64 is under test
    result = Result(outputs={"output": ref.pairwise_distance(x1, x2, p, eps, keepdim, precise)})

    def pullback(cotangents: dict) -> dict:
        g1, g2 = ref.pairwise_distance_vjp(x1, x2, p, eps, keepdim, cotangents["output"], precise)
        return {"x1": g1, "x2": g2}

    return result, pullback


def pairwise_distance(*, regimes: tuple[Regime, ...], notes: str) -> LayerSpec:
    """nn.PairwiseDistance: ‖x1 − x2 + eps‖_p, judged by its error analysis (exact tier: one
    final rounding)."""
    return LayerSpec(
        name="PairwiseDistance", family="distance", cases=lambda dtype: SD._cases(dtype),
        reference=_pairwise_reference, torch=TorchMapping("torch.nn.PairwiseDistance", args=("x1", "x2")),
        tolerance={"output": Tolerance(reduction=N._reduction, magnitude=N._magnitude, c=1.0, exact="rounded"),
                   "grad.*": Tolerance(reduction=N._reduction, magnitude=N._magnitude, c=1.0, exact="none")},
        invalid_cases=lambda dtype: SD._invalid_cases(dtype), smooth_at=N._smooth,
        second_order_error=N.pairwise_second_order_error, regimes=regimes, notes=notes)


def _cosine_reference(case: Case) -> tuple[Result, Any]:
    x1, x2 = case.inputs["x1"], case.inputs["x2"]
    dim, eps = case.params["dim"], float(case.params["eps"])
    result = Result(outputs={"output": ref.cosine_similarity(x1, x2, dim, eps)})

    def pullback(cotangents: dict) -> dict:
        return ref._cosine_similarity_vjp(cotangents["output"], x1, x2, dim, eps)

    return result, pullback


def _cosine_smooth(case: Case) -> bool:
    """Away from the clamp (every norm > 2·eps and > 1e-3): the finite-difference check applies."""
    _, _, n1, n2, _ = N._cosine_norms(case)
    eps = float(case.params["eps"])
    return bool(np.all(n1 > max(2 * eps, 1e-3)) and np.all(n2 > max(2 * eps, 1e-3)))


def cosine_similarity(*, regimes: tuple[Regime, ...], notes: str) -> LayerSpec:
    """nn.CosineSimilarity, judged by its error analysis."""
    return LayerSpec(
        name="CosineSimilarity", family="distance", cases=S.case_strategy(SD.cosine_case),
        invalid_cases=S.case_strategy(SD.cosine_invalid_case), reference=_cosine_reference,
        torch=TorchMapping("torch.nn.CosineSimilarity", args=("x1", "x2")),
        tolerance=analysed_tolerance(N.cosine_errors, N.cosine_reduction), smooth_at=_cosine_smooth,
        second_order_error=N.cosine_second_order_error,
        regimes=regimes, notes=notes)
