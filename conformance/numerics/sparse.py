"""Tolerances, comparators and known-entry predicates of the sparse family (Embedding, EmbeddingBag).

- max_norm renormalises, in place and under no_grad, every referenced row whose norm_type-norm
  exceeds max_norm: row ← row · max_norm / (norm + 1e-7). torch compares the norm it computed in
  the case dtype with max_norm, so a row whose norm lies within that norm's rounding error of
  max_norm may go either way (``row_scales``): Embedding accepts such rows either way, row by row
  (``renorm_comparator``); EmbeddingBag, whose bags mix rows, allows both outcomes in the bound of
  every tensor that reads them (``renorm_allowance``).
- Embedding: copies are exact; renormalised rows carry the norm's error (``norm_error``), the
  scale's and the product's; the weight gradient is a scatter-add (bit-exact on the exact tier).
- EmbeddingBag: sums of K terms (K the longest bag; per row, the most entries read), means (one
  division more), maxima (selections, exact); ``bag_magnitude`` states absref per tensor. In max
  mode the gradient must go to a maximum of each bag: where several rows hold it (within the
  renormalisation's error, or tied on purpose) any of them is accepted (``max_gradient``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from backends.base import Case, Result
from conformance.compare import Comparison, compare_tensor
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec, Tolerance
from conformance.tolerance import accumulated_offset, magnitudes
from reference import embedding as ref
from reference import embedding_bag as bag_ref
from reference import functional as RF

EXACT = Tolerance(magnitude="ref", exact="always")
# Assignments of tied maxima tried per column before falling back to the first maximum.
MAX_ASSIGNMENTS = 4096


# -- renormalisation ------------------------------------------------------------------------------

def norm_error(case: Case) -> float:
    """A bound on the error of a row norm torch computes in the case dtype, relative to the norm:
    a sum of K = embedding_dim powers (each within 2 ulps) accumulated with √K growth, then the
    root: (2√K + 4)·u."""
    return (2 * math.sqrt(case.params["embedding_dim"]) + 4) * DTYPES[case.dtype].unit_roundoff


def row_scales(case: Case) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def renorm_magnitude(case: Case, result: Result, names: tuple[str, ...] = ("output", "state.weight")
                     ) -> Mapping[str, np.ndarray]:
    """absref of renormalised rows: |w'|·(1 + 3/√K), so that c = 2 gives (2√K + 6)·u·|w'| (the
    norm's relative error, the scale's rounding and the product's); copies get 0 (exact). For
    ``names``: Embedding's output rows and the weight after the call."""
    out = {}
    for name in names:
        value = result.tensors().get(name)
        if value is None:
            continue
        if case.params["max_norm"] is None:
            out[name] = np.zeros(value.shape)
            continue
        scaled = _rows(case, name, row_scales(case)[0] != 1.0)
        k = case.params["embedding_dim"]
        out[name] = np.where(scaled[..., None], np.abs(value) * (1 + 3 / math.sqrt(k)), 0.0)
    return out


def renorm_comparator(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
    """output and state.weight: rows near the max_norm threshold are accepted renormalised or not
    (each row is judged against whichever outcome it is closer to)."""
    expected = result.tensors()[name]
    absref = renorm_magnitude(case, result, (name,))[name]
    value = got.tensors().get(name)
    if case.params["max_norm"] is not None and value is not None and np.shape(value) == expected.shape:
        scales, other, either = row_scales(case)
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


def renormalises(case: Case) -> bool:
    p = case.params
    if p["max_norm"] is None:
        return False
    return bool(np.any(ref.renorm_scales(case.inputs["weight"], case.inputs["input"], p["max_norm"],
                                         p["norm_type"]) != 1.0))


def reads_padding_row(case: Case) -> bool:
    rows, padding_idx = case.params["num_embeddings"], case.params["padding_idx"]
    return padding_idx is not None and bool(np.any(case.inputs["input"] == padding_idx % rows))


# -- Embedding ------------------------------------------------------------------------------------

def grad_length(case: Case, tensor: str) -> int:
    """K of grad.weight: the most cotangent rows summed into one weight row."""
    return int(np.bincount(case.inputs["input"].reshape(-1), minlength=1).max(initial=1))


def grad_magnitude(case: Case, result: Result) -> Mapping[str, np.ndarray]:
    """|g| scattered the same way (frequency scaling included), for grad.weight."""
    p = case.params
    padding_idx = ref.normalise_padding_idx(p["padding_idx"], p["num_embeddings"])
    g = np.abs(case.cotangents["output"]).reshape(case.inputs["input"].size, -1)
    weight = ref.scatter_rows(case.inputs["input"], g, p["num_embeddings"], padding_idx, p["scale_grad_by_freq"])
    used = case.inputs["input"].reshape(-1)
    if padding_idx is not None:
        used = used[used != padding_idx]
    return {"grad.weight": sparse_accumulation(case, weight, used, grad_length(case, "grad.weight"))}


# Renormalised rows: the norm (relative error (2√K + 4)u, K = embedding_dim), the scale and the
# product: |δ| <= (2√K + 6)·u·|w'| (see renorm_magnitude); untouched rows are copies, exact.
RENORM_TOLERANCE = Tolerance(reduction=lambda case, tensor: case.params["embedding_dim"], magnitude=renorm_magnitude,
                             c=2.0, out_ulps=0.0, exact="none")
# EmbeddingBag's weight after the call: the same analysis (its output is a reduction: BAG_TOLERANCE).
STATE_TOLERANCE = replace(RENORM_TOLERANCE, magnitude=lambda case, result: renorm_magnitude(case, result,
                                                                                            ("state.weight",)))
EMBEDDING_TOLERANCE = {
    "output": RENORM_TOLERANCE,
    "state.weight": RENORM_TOLERANCE,
    # A sum of K cotangent rows (frequency scaling: one division per term): float model with c = 2;
    # bit-exact on the exact tier's integers.
    "grad.weight": Tolerance(reduction=grad_length, magnitude=grad_magnitude, c=2.0, exact="bitwise"),
}


def embedding_smooth(case: Case) -> bool:
    """Where the gradient is the derivative of the forward: not where the padding row is read (it
    gets none), rows are renormalised (under no_grad) or repeated rows are frequency-scaled."""
    scaled = case.params["scale_grad_by_freq"] and grad_length(case, "grad.weight") > 1
    return not (renormalises(case) or reads_padding_row(case) or scaled)


# -- EmbeddingBag ---------------------------------------------------------------------------------

def bag_call(case: Case) -> dict[str, Any]:
    """F.embedding_bag's arguments after (input, weight) for the case."""
    p = case.params
    return {"offsets": case.inputs.get("offsets"), "max_norm": p["max_norm"], "norm_type": p["norm_type"],
            "scale_grad_by_freq": p["scale_grad_by_freq"], "mode": p["mode"], "sparse": p["sparse"],
            "per_sample_weights": case.inputs.get("per_sample_weights"),
            "include_last_offset": p["include_last_offset"], "padding_idx": p["padding_idx"]}


def _layout(case: Case) -> tuple[np.ndarray, np.ndarray, int, np.ndarray, np.ndarray]:
    p = case.params
    return bag_ref.bag_layout(case.inputs["input"], case.inputs.get("offsets"), p["include_last_offset"],
                              p["padding_idx"], p["num_embeddings"])


def renorm_allowance(case: Case) -> np.ndarray:
    """Per weight row, in units of u: how far torch's w' may lie from the reference's, relative to
    |w'|: a renormalised row carries (2√D + 6)u (see ``renorm_magnitude``); a row within the norm's
    rounding of max_norm may go either way, |1 − s_other/s| more."""
    rows = case.params["num_embeddings"]
    if case.params["max_norm"] is None:
        return np.zeros(rows)
    u = DTYPES[case.dtype].unit_roundoff
    scales, other, either = row_scales(case)
    own = np.where(scales != 1.0, 2 * math.sqrt(case.params["embedding_dim"]) + 6, 0.0)
    return own + np.where(either, np.abs(1 - other / scales) / u, 0.0)


def bag_lengths(case: Case, tensor: str) -> int:
    """K per tensor: output, the longest bag (1 in max mode); grad.weight, the most entries read
    from one row; grad.per_sample_weights, embedding_dim; state.weight, embedding_dim."""
    flat, bag, b, used, size = _layout(case)
    if tensor == "output":
        return 1 if case.params["mode"] == "max" else int(size.max(initial=1))
    if tensor == "grad.weight":
        return int(np.bincount(flat[used], minlength=1).max(initial=1))
    return int(case.params["embedding_dim"])


def bag_magnitude(case: Case, result: Result) -> dict[str, np.ndarray]:
    """absref of every tensor: the computation on absolute values, each renormalised row's terms
    grown by its allowance e_r/(2√K) (so that c = 2 adds e_r·u·|term|):

    - output: Σ|s_j|·|w'_j|·(1 + e/(2√K)) per bag (divided by its size in mean mode); in max mode
      e/2·max|w'| over the bag (a selection: exact without renormalisation);
    - grad.weight: |g| shared and scattered as the gradient is;
    - grad.per_sample_weights: Σ_d |g_b,d|·|w'_j,d|·(1 + e/(2√D));
    - state.weight: as Embedding's."""
    p = case.params
    flat, bag, b, used, size = _layout(case)
    w = np.abs(result.state.get("weight", case.inputs["weight"]))
    e = renorm_allowance(case)[flat][:, None]
    s = np.abs(case.inputs.get("per_sample_weights", np.ones(flat.size))).reshape(-1)[:, None]
    k = bag_lengths(case, "output")
    out: dict[str, np.ndarray] = {}
    terms = np.where(used[:, None], s * w[flat], 0.0)
    if p["mode"] == "max":
        top = np.zeros((b, w.shape[1]))
        np.maximum.at(top, bag[used], (terms * e / 2)[used])
        out["output"] = top
    else:
        total = np.zeros((b, w.shape[1]))
        np.add.at(total, bag[used], (terms * (1 + e / (2 * math.sqrt(k))))[used])
        out["output"] = total / np.maximum(size, 1.0)[:, None] if p["mode"] == "mean" else total
    if case.cotangents.get("output") is not None:
        g = np.abs(case.cotangents["output"])
        out["grad.weight"] = sparse_accumulation(case, _abs_vjp(case, g)["weight"], flat[used],
                                                 bag_lengths(case, "grad.weight"))
        if "per_sample_weights" in case.inputs:
            d = p["embedding_dim"]
            g_of = np.vstack([g, np.zeros((1, g.shape[1]))])[np.where(bag >= 0, bag, b)]
            dots = np.sum(g_of * w[flat] * (1 + e / (2 * math.sqrt(d))), axis=1)
            out["grad.per_sample_weights"] = np.where(used, dots, 0.0).reshape(case.inputs["input"].shape)
    return out


def _abs_vjp(case: Case, g: np.ndarray) -> dict[str, np.ndarray]:
    """The VJP on |g| and |per_sample_weights| (in max mode the same entries receive it)."""
    kw = bag_call(case)
    if kw["per_sample_weights"] is not None:
        kw["per_sample_weights"] = np.abs(kw["per_sample_weights"])
    return RF.vjp("embedding_bag", case.inputs["input"], case.inputs["weight"], cotangent=g, **kw)


BAG_TOLERANCE = Tolerance(reduction=bag_lengths, magnitude=bag_magnitude, c=2.0, out_ulps=1.0, exact="bitwise")


def bag_output(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
    """output: in max mode without renormalisation a selection, bit for bit (an empty bag's +0
    included); otherwise under ``BAG_TOLERANCE``."""
    expected, value = result.tensors()[name], got.tensors().get(name)
    if case.params["mode"] == "max" and not renorm_allowance(case).any():
        return compare_tensor(replace(spec, tolerance=EXACT), case, name, expected, value, got.dtypes.get(name),
                              np.abs(expected))
    return compare_tensor(spec, case, name, expected, value, got.dtypes.get(name),
                          magnitudes(spec, case, result)[name])


def max_candidates(case: Case, result: Result) -> list[list[np.ndarray]]:
    """Per bag and dim, the rows holding the maximum: every entry whose (renormalised) value lies
    within the renormalisation's error of the bag's maximum (exactly equal without one)."""
    flat, bag, b, used, size = _layout(case)
    w = result.state.get("weight", case.inputs["weight"])
    u = DTYPES[case.dtype].unit_roundoff
    slack = renorm_allowance(case)[flat][:, None] * u * np.abs(w[flat])
    top_slack = np.zeros((b, w.shape[1]))
    np.maximum.at(top_slack, bag[used], slack[used])
    y = result.outputs["output"]
    out: list[list[np.ndarray]] = [[np.zeros(0, np.int64)] * w.shape[1] for _ in range(b)]
    for j in np.flatnonzero(used):  # a loop over bag entries (at most a few dozen), not over elements
        near = w[flat[j]] >= y[bag[j]] - 2 * top_slack[bag[j]]
        for dim in np.flatnonzero(near):
            out[bag[j]][dim] = np.union1d(out[bag[j]][dim], [flat[j]])
    return out


def max_gradient(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
    """grad.weight in max mode: each bag's cotangent goes to one row holding its maximum; where
    several rows hold it (ties, or values within the renormalisation's error), the assignment
    closest to the backend's gradient is the expected one (tried exhaustively, column by column,
    up to MAX_ASSIGNMENTS; beyond, the first maximum in bag order). Other modes: as declared."""
    expected, value = result.tensors()[name], got.tensors().get(name)
    absref = magnitudes(spec, case, result)[name]
    if case.params["mode"] != "max" or value is None or np.shape(value) != expected.shape:
        return compare_tensor(spec, case, name, expected, value, got.dtypes.get(name), absref)
    candidates = max_candidates(case, result)
    g = case.cotangents["output"]
    expected = np.array(expected, dtype=np.float64)
    got_value = np.asarray(value, dtype=np.float64)
    for dim in range(expected.shape[1]):
        column = [(b, rows) for b, per_dim in enumerate(candidates) for rows in [per_dim[dim]] if rows.size]
        ambiguous = [(b, rows) for b, rows in column if rows.size > 1]
        if not ambiguous or math.prod(r.size for _, r in ambiguous) > MAX_ASSIGNMENTS:
            continue
        base = np.zeros(expected.shape[0])
        for b, rows in column:
            if rows.size == 1:
                base[rows[0]] += g[b, dim]
        best, best_err = expected[:, dim], np.inf
        for choice in itertools.product(*(rows for _, rows in ambiguous)):
            trial = base.copy()
            np.add.at(trial, np.asarray(choice, dtype=np.int64), [g[b, dim] for b, _ in ambiguous])
            err = float(np.max(np.abs(trial - got_value[:, dim]), initial=0.0))
            if err < best_err:
                best, best_err = trial, err
        expected[:, dim] = best
    return compare_tensor(spec, case, name, expected, value, got.dtypes.get(name), absref)


def bag_smooth(case: Case) -> bool:
    """Where the VJP is the derivative of the forward: no padding row read, no row renormalised,
    no repeated row frequency-scaled, and in max mode no maximum shared (ties)."""
    flat, bag, b, used, size = _layout(case)
    if case.params["max_norm"] is not None and renormalises(case):
        return False
    if case.params["padding_idx"] is not None and reads_padding_row(case):
        return False
    if case.params["scale_grad_by_freq"] and np.bincount(flat[bag >= 0], minlength=1).max(initial=0) > 1:
        return False
    if case.params["mode"] == "max":
        w = case.inputs["weight"]
        for k in range(b):
            rows = np.unique(flat[used & (bag == k)])
            column = w[rows]
            if rows.size > 1 and np.any(np.sum(column == column.max(axis=0), axis=0) > 1):
                return False
    return True


def has_tied_rows(case: Case) -> bool:
    """Two distinct rows of the weight hold the same value in some column."""
    w = case.inputs["weight"]
    return w.shape[0] > 1 and any(np.unique(w[:, d]).size < w.shape[0] for d in range(w.shape[1]))


# -- known-entry predicates -----------------------------------------------------------------------

def bag_frequency_divisor_wrong(case: Case) -> bool:
    """torch's CPU EmbeddingBag backward (dense, sum and mean) with scale_grad_by_freq divides the
    gradient of the k-th distinct index (in sorted order) by the count of the k-th *entry* of the
    sorted indices, not by its own count: true when that differs for some non-padding row that
    receives a gradient."""
    p = case.params
    if case.op != "EmbeddingBag" or not p["scale_grad_by_freq"] or p["mode"] == "max" or p["sparse"]:
        return False
    flat, bag, b, used, size = _layout(case)
    ordered = np.sort(flat)
    distinct = np.unique(ordered)
    counts = np.bincount(flat, minlength=p["num_embeddings"])
    wrong = counts[ordered[:distinct.size]] != counts[distinct]
    receives = np.isin(distinct, flat[used])
    return bool(np.any(wrong & receives))


def sparse_accumulation(case: Case, magnitude: np.ndarray, rows: np.ndarray, k: int, c: float = 2.0) -> np.ndarray:
    """absref of a sparse grad.weight accumulated into a preset ``.grad`` G (dense): torch adds the
    uncoalesced gradient into G one entry at a time (one per row index in ``rows``), so a row read
    m times rounds m partial sums |G + Σ_{j<=i} v_j| <= |G| + absref (not the one rounding of
    fl(G + grad) the tolerance allows an accumulating case). The row's absref grows by
    m·(|G| + absref)/(c·√K), so that the tolerance's c·√K·u·absref covers m·u·(|G| + absref).
    Unchanged for a dense gradient or a case that does not accumulate."""
    if not case.params.get("sparse"):
        return magnitude
    offset = accumulated_offset(case, "grad.weight", np.shape(magnitude))
    if offset is None:
        return magnitude
    counts = np.bincount(np.asarray(rows, dtype=np.int64).reshape(-1), minlength=magnitude.shape[0])
    counts = counts[:magnitude.shape[0]].astype(np.float64)[:, None]
    return magnitude + counts * (np.abs(offset) + magnitude) / (c * math.sqrt(max(k, 1)))
