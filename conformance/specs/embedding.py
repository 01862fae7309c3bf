"""Embedding: lookup, padding_idx, in-place max-norm renormalisation, frequency-scaled and sparse
gradients.

``max_norm`` makes the forward renormalise, in place and under no_grad, every referenced row whose
``norm_type``-norm exceeds max_norm: row ← row · max_norm / (norm + 1e-7). The weight after the call
is compared (``state.weight``), and the output reads the renormalised rows. torch compares the
norm it computed in the case dtype with max_norm, so a row whose norm lies within that norm's
rounding error of max_norm may go either way: such rows are accepted renormalised or not
(``_renorm_comparator``). The gradient of the weight is the scatter-add of the output cotangent
(divided by each row's frequency with ``scale_grad_by_freq``; none to the padding_idx row); with
``sparse=True`` torch returns it as a sparse tensor, compared densified.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case, Result
from conformance import strategies as S
from conformance.compare import Comparison, compare_tensor
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec, Regime, Tolerance, TorchMapping, declare, result_reference
from reference import embedding as ref

MAX_NORMS = (None, 1.0, 2.0, 0.5, 4.0)
NORM_TYPES = (2.0, 1.0, 3.0, float("inf"), 1.5)


def _padding_idx(d: S.Drawer, rows: int) -> int | None:
    choice = d.choice(("none", "a row", "a negative row"), "padding_idx")
    if choice == "none":
        return None
    row = d.integer(0, rows - 1, "padding row")
    return row if choice == "a row" else row - rows


@st.composite
def _embedding_case(draw: Any, dtype: str, invalid: str = "") -> Case:
    """Weight (num_embeddings, embedding_dim) in any layout; int64 indices of 0 to 3 dims with
    duplicates (drawn from a few rows so that rows repeat)."""
    d = S.Drawer(draw)
    rows = d.integer(1, 16, "num_embeddings")
    dim = d.integer(1, 8, "embedding_dim")
    params: dict[str, Any] = {"num_embeddings": rows, "embedding_dim": dim,
                              "padding_idx": _padding_idx(d, rows),
                              "max_norm": d.choice(MAX_NORMS, "max_norm"),
                              "norm_type": d.choice(NORM_TYPES, "norm_type"),
                              "scale_grad_by_freq": d.flag("scale_grad_by_freq"),
                              "sparse": d.flag("sparse")}
    # Frequency scaling divides by counts: the exact tier keeps to plain sums.
    tier = S.tier(d, ("float",) if params["scale_grad_by_freq"] else S.TIERS)
    index_shape = tuple(S.sizes_within(d, d.integer(0, 3, "indices ndim"), 256, hi=8, label="indices shape"))
    rng = np.random.default_rng(d.integer(0, 2**32 - 1, "indices.seed"))
    used = d.integer(1, rows, "rows used")  # few rows used -> many duplicates
    indices = rng.choice(rng.permutation(rows)[:used], size=index_shape).astype(np.int64)
    if invalid == "index out of range":
        indices = indices.reshape(-1)
        indices = np.concatenate([indices, [d.choice((rows, rows + 3, -1), "bad index")]]).astype(np.int64)
    elif invalid == "padding_idx out of range":
        params["padding_idx"] = d.choice((rows, -rows - 1), "bad padding_idx")
    layout = S.layouts(d, 2, "layout.weight")
    weight = S.values(d, (rows, dim), dtype, tier, "weight", int_limit=4, layout=layout,
                      scale=d.choice((1.0, 0.25, 4.0), "weight.scale"))
    return Case(op="Embedding", dtype=dtype, params=params, inputs={"input": indices, "weight": weight},
                differentiable=("weight",), layouts={"weight": layout}, tier=tier, cotangent_seed=S.seed(d),
                invalid=bool(invalid), note=invalid)


def _invalid_case(dtype: str) -> st.SearchStrategy[Case]:
    return st.sampled_from(("index out of range", "padding_idx out of range")).flatmap(
        lambda kind: _embedding_case(dtype, kind))


def _reference(case: Case, backward: bool) -> Result:
    p = case.params
    rows = p["num_embeddings"]
    padding_idx = ref.normalise_padding_idx(p["padding_idx"], rows)
    indices, weight = case.inputs["input"], case.inputs["weight"]
    ref.check_indices(indices, rows)
    result = Result()
    if p["max_norm"] is not None:
        weight = weight * ref.renorm_scales(weight, indices, p["max_norm"], p["norm_type"])[:, None]
        result.state["weight"] = weight
    result.outputs["output"] = ref.embedding(weight, indices)
    if backward:
        g = S.output_gradient(case, "output", result.outputs["output"])
        result.grads["weight"] = ref.embedding_vjp(indices, g, rows, padding_idx,
                                                   p["scale_grad_by_freq"])
    return result


def norm_error(case: Case) -> float:
    """A bound on the error of a row norm torch computes in the case dtype, relative to the norm:
    a sum of K = embedding_dim powers (each within 2 ulps) accumulated with √K growth, then the
    root: (2√K + 4)·u."""
    return (2 * math.sqrt(case.params["embedding_dim"]) + 4) * DTYPES[case.dtype].unit_roundoff


def _row_scales(case: Case) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scale the reference applies, the other outcome's scale, rows that may go either way) per
    row: a referenced row whose norm lies within its rounding error of max_norm may be
    renormalised or not, since torch compares the norm it computed in the case dtype."""
    p = case.params
    weight, indices = case.inputs["weight"], case.inputs["input"]
    scales = ref.renorm_scales(weight, indices, p["max_norm"], p["norm_type"])
    norms = ref.row_norms(weight, p["norm_type"])
    referenced = np.zeros(weight.shape[0], dtype=bool)
    referenced[indices.reshape(-1)] = True
    with np.errstate(divide="ignore", invalid="ignore"):
        either = referenced & (np.abs(norms - p["max_norm"]) <= norm_error(case) * norms)
        other = np.where(scales != 1.0, 1.0, p["max_norm"] / (norms + 1e-7))
    return scales, other, either


def _rows(case: Case, name: str, per_row: np.ndarray) -> np.ndarray:
    """A per-weight-row quantity laid out like ``name`` (state.weight rows, or output rows)."""
    return per_row[case.inputs["input"]] if name == "output" else per_row


def _renorm_magnitude(case: Case, result: Result) -> Mapping[str, np.ndarray]:
    """absref of renormalised rows: |w'|·(1 + 3/√K), so that c = 2 gives (2√K + 6)·u·|w'| (the
    norm's relative error, the scale's rounding and the product's); copies get 0 (exact)."""
    out = {}
    for name in ("output", "state.weight"):
        value = result.tensors().get(name)
        if value is None:
            continue
        if case.params["max_norm"] is None:
            out[name] = np.zeros(value.shape)
            continue
        scaled = _rows(case, name, _row_scales(case)[0] != 1.0)
        k = case.params["embedding_dim"]
        out[name] = np.where(scaled[..., None], np.abs(value) * (1 + 3 / math.sqrt(k)), 0.0)
    return out


def _renorm_comparator(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
    """output and state.weight: rows near the max_norm threshold are accepted renormalised or not
    (each row is judged against whichever outcome it is closer to)."""
    expected = result.tensors()[name]
    absref = _renorm_magnitude(case, result)[name]
    value = got.tensors().get(name)
    if case.params["max_norm"] is not None and value is not None and np.shape(value) == expected.shape:
        scales, other, either = _row_scales(case)
        weight = case.inputs["weight"]
        alternative = _rows(case, name, np.arange(weight.shape[0]))
        alt_rows = (weight * other[:, None])[alternative]
        alt_mag = np.abs(alt_rows) * np.where(_rows(case, name, other != 1.0), 1 + 3 / math.sqrt(weight.shape[1]),
                                             0.0)[..., None]
        with np.errstate(invalid="ignore"):
            nearer = (np.max(np.abs(np.asarray(value) - alt_rows), axis=-1)
                      < np.max(np.abs(np.asarray(value) - expected), axis=-1))
        pick = (_rows(case, name, either) & nearer)[..., None]
        expected, absref = np.where(pick, alt_rows, expected), np.where(pick, alt_mag, absref)
    return compare_tensor(spec, case, name, expected, value, got.dtypes.get(name), absref)


def _grad_length(case: Case, tensor: str) -> int:
    """K of grad.weight: the most cotangent rows summed into one weight row."""
    return int(np.bincount(case.inputs["input"].reshape(-1), minlength=1).max(initial=1))


def _grad_magnitude(case: Case, result: Result) -> Mapping[str, np.ndarray]:
    """|g| scattered the same way (frequency scaling included), for grad.weight."""
    p = case.params
    padding_idx = ref.normalise_padding_idx(p["padding_idx"], p["num_embeddings"])
    g = np.abs(case.cotangents["output"])
    return {"grad.weight": ref.embedding_vjp(case.inputs["input"], g, p["num_embeddings"], padding_idx,
                                             p["scale_grad_by_freq"])}


def _renormalises(case: Case) -> bool:
    p = case.params
    if p["max_norm"] is None:
        return False
    return bool(np.any(ref.renorm_scales(case.inputs["weight"], case.inputs["input"], p["max_norm"],
                                         p["norm_type"]) != 1.0))


def _reads_padding_row(case: Case) -> bool:
    rows, padding_idx = case.params["num_embeddings"], case.params["padding_idx"]
    return padding_idx is not None and bool(np.any(case.inputs["input"] == padding_idx % rows))


# Renormalised rows: the norm (relative error (2√K + 4)u, K = embedding_dim), the scale and the
# product: |δ| <= (2√K + 6)·u·|w'| (see _renorm_magnitude); untouched rows are copies, exact.
RENORM_TOLERANCE = Tolerance(reduction=lambda case, tensor: case.params["embedding_dim"], magnitude=_renorm_magnitude,
                             c=2.0, out_ulps=0.0, exact="none")

declare(LayerSpec(
    name="Embedding", family="sparse",
    cases=lambda dtype: _embedding_case(dtype),
    reference=result_reference(_reference),
    torch=TorchMapping("torch.nn.Embedding", parameters=("weight",),
                       mutated=lambda case: ("weight",) if case.params["max_norm"] is not None else ()),
    tolerance={
        "output": RENORM_TOLERANCE,
        "state.weight": RENORM_TOLERANCE,
        # A sum of K cotangent rows (frequency scaling: one division per term): float model with
        # c = 2; bit-exact on the exact tier's integers.
        "grad.weight": Tolerance(reduction=_grad_length, magnitude=_grad_magnitude, c=2.0, exact="bitwise"),
    },
    comparators={"output": _renorm_comparator, "state.weight": _renorm_comparator},
    # By convention the gradient is not the derivative of the forward where the padding row is read
    # (it gets none), rows are renormalised (under no_grad) or repeated rows are frequency-scaled:
    # finite differences apply elsewhere.
    smooth_at=lambda c: not (_renormalises(c) or _reads_padding_row(c)
                             or (c.params["scale_grad_by_freq"] and _grad_length(c, "grad.weight") > 1)),
    invalid_cases=_invalid_case,
    regimes=(
        Regime("max_norm renormalises", _renormalises,
               {"max_norm": 0.5, "weight.scale": 4.0, "rows used": 16}, "some referenced row is rescaled in place"),
        Regime("max_norm with inf norm", lambda c: c.params["max_norm"] is not None
               and np.isinf(c.params["norm_type"]), {"max_norm": 1.0, "norm_type": float("inf")}),
        Regime("negative padding_idx", lambda c: (c.params["padding_idx"] or 0) < 0,
               {"padding_idx": "a negative row"}),
        Regime("padding_idx referenced", _reads_padding_row,
               {"padding_idx": "a row", "num_embeddings": 2, "indices ndim": 2, "indices shape[*]": 4,
                "rows used": 2}, "the padding row is read (its gradient must stay 0)"),
        Regime("scale_grad_by_freq with repeats", lambda c: c.params["scale_grad_by_freq"] and _grad_length(c, "") > 1,
               {"scale_grad_by_freq": True, "rows used": 1, "indices ndim": 1, "indices shape[*]": 5}),
        Regime("sparse gradient", lambda c: c.params["sparse"], {"sparse": True}),
        Regime("0-d indices", lambda c: c.inputs["input"].ndim == 0, {"indices ndim": 0}),
    ),
    notes=("Output = weight[indices] (after renormalisation with max_norm, which rescales referenced rows in place: "
           "compared as state.weight; rows within the norm's rounding of max_norm are accepted either way). "
           "grad.weight: scatter-add of the cotangent, divided by row frequency with scale_grad_by_freq, none "
           "for padding_idx (negative counts from the end); sparse=True is compared densified. Out-of-range "
           "indices and padding_idx are invalid."),
))
