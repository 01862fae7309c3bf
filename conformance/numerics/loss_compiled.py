"""Predicates of the known torch.compile discrepancies of the losses and distances
(conformance/known/torch_compile*.toml): what the compiled decompositions of MultiLabelMarginLoss, MultiMarginLoss
and BCELoss, and the compiled backward of PairwiseDistance, compute differently."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from backends.base import Case, Result
from conformance.dtypes import DTYPES


def _per_row_cotangent(case: Case, rows: int) -> np.ndarray:
    """The output cotangent of each sample (a reduced loss: its one cotangent; none drawn: ones)."""
    g = case.cotangents.get("output")
    if g is None:
        return np.ones(rows)
    g = np.asarray(g, dtype=np.float64).reshape(-1)
    return np.broadcast_to(g if g.size == rows else g[:1], (rows,))


def compiled_mlm_counts_padding_slots(case: Case) -> bool:
    """MultiLabelMarginLoss as torch.compile's decomposition computes it: a label slot at or after
    a row's first -1 still counts, with the score of class 0 (its masked gather index), adding
    max(0, 1 - x[0] + x[i]) / C for every non-target class i. True when that changes the loss (a
    term > 0) or the input gradient (a term >= 0 for i != 0: clamp_min passes the gradient at 0)."""
    x, t = np.atleast_2d(case.inputs["input"]), np.atleast_2d(case.inputs["target"])
    g = _per_row_cotangent(case, x.shape[0])
    for row, labels, gn in zip(x, t, g):
        ends = np.flatnonzero(labels == -1)
        if not ends.size:
            continue
        is_target = np.zeros(row.size, dtype=bool)
        is_target[labels[:ends[0]]] = True
        others = np.flatnonzero(~is_target)
        z = 1.0 - row[0] + row[others]
        if np.any(z > 0) or (gn != 0 and np.any((z >= 0) & (others != 0))):
            return True
    return False


def compiled_mm_kink_counted(case: Case) -> bool:
    """MultiMarginLoss with p = 1 where a margin term margin - x[y] + x[i] (i != y) is exactly 0 in a
    sample whose weight w[y] and cotangent are not 0: torch.compile's decomposition passes the
    gradient of clamp_min at 0 (eager does not), so the input gradient differs by w[y]·g/C per term.
    (p = 2 squares the term, whose derivative is 0 there.)"""
    if case.params["p"] != 1:
        return False
    x = np.atleast_2d(case.inputs["input"])
    y = np.atleast_1d(case.inputs["target"]).reshape(-1)
    rows = np.arange(x.shape[0])
    z = float(case.params["margin"]) - x[rows, y][:, None] + x
    kink = z == 0
    kink[rows, y] = False
    w = case.inputs["weight"][y] if "weight" in case.inputs else np.ones(rows.size)
    return bool(np.any(kink.any(axis=1) & (w != 0) & (_per_row_cotangent(case, rows.size) != 0)))


def compiled_mlm_bad_labels_after_terminator(case: Case) -> bool:
    """MultiLabelMarginLoss whose target has labels outside [-1, C), every one of them after its
    row's first -1: torch.compile's decomposition gathers only the slots before it (a bad label
    there raises), so it never looks at them (eager checks every label)."""
    t = np.atleast_2d(case.inputs["target"])
    bad = (t < -1) | (t >= t.shape[-1])
    slot = np.arange(t.shape[-1])
    first_end = np.where((t == -1).any(axis=-1), (t == -1).argmax(axis=-1), t.shape[-1])
    return bool(bad.any() and not np.any(bad & (slot[None, :] < first_end[:, None])))


def compiled_mlm_kink_counted(case: Case) -> bool:
    """MultiLabelMarginLoss with a counted pair (a label y before its row's first -1, a non-target
    class i) exactly at the hinge, 1 - x[y] + x[i] = 0, in a row whose cotangent is not 0: torch.compile's
    decomposition passes clamp_min's gradient at 0 (eager counts a term only when > 0), so the input
    gradient differs by g/C at x[i] and x[y] per such pair."""
    x, t = np.atleast_2d(case.inputs["input"]), np.atleast_2d(case.inputs["target"])
    g = _per_row_cotangent(case, x.shape[0])
    for row, labels, gn in zip(x, t, g):
        ends = np.flatnonzero(labels == -1)
        ys = labels[:ends[0] if ends.size else labels.size]
        is_target = np.zeros(row.size, dtype=bool)
        is_target[ys] = True
        if gn != 0 and np.any(1.0 - row[ys][:, None] + row[~is_target][None, :] == 0):
            return True
    return False


def bce_clamped_input_gradient(case: Case) -> bool:
    """BCELoss with an element whose input gradient divides by the clamp (x·(1 - x) < 1e-12) and
    whose numerator (x - t)·w·g is not 0."""
    x, t = case.inputs["input"], case.inputs["target"]
    g = np.asarray(case.cotangents.get("output", 1.0))
    with np.errstate(all="ignore"):
        numerator = np.broadcast_to((x - t) * case.inputs.get("weight", 1.0) * g, x.shape)
    return bool(np.any((x * (1 - x) < 1e-12) & (numerator != 0)))


# -- PairwiseDistance, p = ±inf, broadcast inputs (float16/bfloat16) ------------------------------------------------
# The inf-norm backward (norm_backward) masks the entries with |d| == N (N the forward's output, rounded to the
# case's dtype) and divides the cotangent by their count. With x1 and x2 of different shapes, inductor's partitioner
# recomputes d = x1 - x2 + eps inside the backward kernel in float32 instead of saving the rounded d: where the row's
# extreme |d| is not representable in the dtype no entry equals N, the count is 0 and the row's gradient is NaN.


def _compiled_inf_norm_parts(case: Case) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(d in float32, inductor's mask, eager's mask) over the broadcast shape of a half-precision PairwiseDistance
    case with p = ±inf and inputs of different shapes; None for any other case."""
    p = float(case.params["p"])
    x1, x2 = (np.asarray(case.inputs[n], dtype=np.float64) for n in ("x1", "x2"))
    if case.invalid or case.dtype not in ("float16", "bfloat16") or not math.isinf(p) or x1.shape == x2.shape:
        return None
    if not case.differentiable or 0 in np.broadcast_shapes(x1.shape, x2.shape):
        return None
    rnd = DTYPES[case.dtype].round
    b1, b2 = np.broadcast_arrays(x1, x2)
    eps = float(case.params["eps"])
    with np.errstate(all="ignore"):
        d32 = (b1.astype(np.float32) - b2.astype(np.float32)) + np.float32(eps)
        a32 = np.abs(d32)
        ext = a32.max(axis=-1, keepdims=True) if p > 0 else a32.min(axis=-1, keepdims=True)
        norm = rnd(ext.astype(np.float64))
        ours = (a32.astype(np.float64) == norm) | np.isnan(a32)
        de = np.abs(rnd(rnd(b1 - b2) + eps))
        eager_norm = de.max(axis=-1, keepdims=True) if p > 0 else de.min(axis=-1, keepdims=True)
        theirs = (de == eager_norm) | np.isnan(de)
    return d32, ours, theirs


def compiled_pairwise_inf_norm_recomputed_mask(case: Case) -> bool:
    """Half-precision PairwiseDistance, p = ±inf, x1 and x2 of different shapes, where inductor's float32 mask of
    the extreme entries differs from eager's in some row (empty: a NaN gradient row; fewer ties: other values)."""
    parts = _compiled_inf_norm_parts(case)
    return parts is not None and not np.array_equal(parts[1], parts[2])


def _reduce_to(arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a broadcast array back to ``shape`` (leading axes dropped, size-1 axes kept)."""
    lead = arr.ndim - len(shape)
    arr = arr.sum(axis=tuple(range(lead))) if lead else arr
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and arr.shape[i] != 1)
    return arr.sum(axis=axes, keepdims=True) if axes else arr


def compiled_pairwise_inf_norm_model(case: Case, reference: Result, got: Result) -> dict[str, object]:
    """What inductor's PairwiseDistance backward returns for p = ±inf with broadcast inputs: sign(d)·g/count over
    its float32 mask (NaN rows where the mask is empty), summed to each input's shape in float32."""
    parts = _compiled_inf_norm_parts(case)
    if parts is None:
        return {}
    d32, mask, _ = parts
    g = np.asarray(case.cotangents.get("output", np.ones(d32.shape[:-1])), dtype=np.float32)
    g = g.reshape(d32.shape[:-1] + (1,))
    with np.errstate(all="ignore"):
        gb = np.sign(d32) * (g / mask.sum(axis=-1, keepdims=True).astype(np.float32)) * mask
    rnd = DTYPES[case.dtype].round
    out: dict[str, object] = {}
    for name, sign in (("x1", 1.0), ("x2", -1.0)):
        if name in case.differentiable:
            shape = np.shape(case.inputs[name])
            with np.errstate(all="ignore"):
                total = _reduce_to(sign * gb.astype(np.float64), shape).reshape(shape)
                mag = _reduce_to(np.abs(gb.astype(np.float64)), shape).reshape(shape)
            out[f"grad.{name}"] = (rnd(total), mag)
    return out


def _compiled_unscaled_gradients(case: Case) -> dict[str, np.ndarray] | None:
    """PairwiseDistance's gradients for finite p ∉ {0, 1, 2} as inductor computes them: the forward saves
    s = d·|d|^(p-2) (sgn(d)·|d|^(p-1) for p < 2, 0 at d = 0 for p < 1), formed in float32 from d = x1 - x2 + eps
    and stored in the case's format, and N rounded to it; the backward forms s·(g / N^(p-1)) (0 where N = 0), for
    p < 1 (s·g)·N^(1-p), in float32, rounded once. Eager rounds N^(p-1) (N^(1-p)) to the format first, so where
    that power leaves a half format's range it gets 0·inf = NaN; inductor gets a finite value, ±inf or ±0. None
    without a cotangent or for other p."""
    from conformance.numerics.distance import _params, _unbroadcast

    p, eps, keepdim = _params(case)
    g = case.cotangents.get("output")
    if g is None or not math.isfinite(p) or p in (0.0, 1.0, 2.0):
        return None
    rd, f32 = DTYPES[case.dtype].round, DTYPES["float32"].round
    x1 = np.asarray(case.inputs["x1"], dtype=np.float64)
    x2 = np.asarray(case.inputs["x2"], dtype=np.float64)
    with np.errstate(all="ignore"):
        d = f32(f32(x1 - x2) + eps)
        a = np.abs(d)
        norm = rd(f32(np.power(f32(np.sum(f32(np.power(a, p)), axis=-1, keepdims=True)), 1.0 / p)))
        if d.shape[-1:] == (1,):
            norm = rd(a)
        g = np.asarray(g, dtype=np.float64)
        g = g if keepdim else g[..., None]
        if p < 1:
            s = rd(np.where(d == 0, 0.0, np.sign(d) * f32(np.power(a, p - 1))))
            grad = f32(f32(s * g) * f32(np.power(norm, 1 - p)))
        else:
            s = rd(np.sign(d) * f32(np.power(a, p - 1)) if p < 2 else d * f32(np.power(a, p - 2)))
            grad = f32(s * np.where(norm == 0, 0.0, f32(g / f32(np.power(norm, p - 1)))))
    shapes = {name: np.shape(case.inputs[name]) for name in ("x1", "x2")}
    return {f"grad.{name}": rd(_unbroadcast(sign * grad, shapes[name])).reshape(shapes[name])
            for name, sign in (("x1", 1.0), ("x2", -1.0))}


def compiled_pairwise_unscaled_power_differs(case: Case) -> bool:
    """PairwiseDistance (finite p ∉ {0, 1, 2}) whose gradient inductor computes with a NaN/inf/zero pattern other
    than eager torch's (known_models_misc.unscaled_powers_model): eager rounds N^(p-1) (N^(1-p) for p < 1) to the
    half format, inductor keeps it in float32 (``_compiled_unscaled_gradients``)."""
    from conformance.numerics.known_models_misc import unscaled_powers_model

    compiled = _compiled_unscaled_gradients(case)
    if compiled is None:
        return False
    eager = unscaled_powers_model(case, {}, {})  # type: ignore[arg-type]
    for name, value in compiled.items():
        other = np.asarray(eager[name], dtype=np.float64)
        if not np.array_equal(np.isnan(value), np.isnan(other)) or not np.array_equal(
                np.where(np.isfinite(value), 0.0, value), np.where(np.isfinite(other), 0.0, other)):
            return True
    return False


def compiled_pairwise_unscaled_power_model(case: Case, reference: Result, got: Result) -> dict[str, object]:
    """The gradients of ``compiled_pairwise_unscaled_power_differs`` as inductor computes them."""
    return dict(_compiled_unscaled_gradients(case) or {})


# -- LinearCrossEntropyLoss ------------------------------------------------------------------------------

_LCE_POLICIES = ("accurate", "balanced", "compact")


def _lce_options_refused(options: dict[str, Any]) -> bool:
    """Options LinearCrossEntropyOptions refuses when the module is built (in eager, before compiling)."""
    return (options.get("acc_policy", "accurate") not in _LCE_POLICIES or int(options.get("batch_chunk_size", 1)) < 1
            or str(options.get("chunking_method", "aspect_ratio:1")) in ("aspect_ratio:0", "square"))


def _lce_path(case: Case) -> str:
    """Where F.linear_cross_entropy takes a LinearCrossEntropyLoss case with ``options``: ``""`` (no
    options, options the module refuses when built, or a shape or ignore_index check that raises
    first), ``"ignored"`` (the "options ignored" warning: out_features, label smoothing, probability
    targets, or a reduction other than mean/sum/none) or ``"chunked"``."""
    p = case.params
    options = p.get("options")
    if options is None or _lce_options_refused(options):
        return ""
    x, target, out = case.inputs["input"], case.inputs["target"], tuple(p.get("out_features") or ())
    if x.ndim not in (1, 2) or (out and x.ndim == 1):
        return ""
    probabilities = target.ndim == x.ndim + len(out)  # (N, C, *out) where class targets are (N, *out)
    if probabilities and p.get("ignore_index") is not None:
        return ""
    chunked = not out and p.get("label_smoothing", 0.0) == 0.0 and not probabilities and \
        p.get("reduction") in ("mean", "sum", "none")
    return "chunked" if chunked else "ignored"


def lce_options_ignored_warning(case: Case) -> bool:
    """Whether the case reaches F.linear_cross_entropy's "options ignored" warning."""
    return _lce_path(case) == "ignored"


def lce_retain_graph_warning(case: Case) -> bool:
    """Whether the case takes the chunked path for a reduced loss whose options leave
    allow_retain_graph False: the "forcing allow_retain_graph=True under torch.compile" warning."""
    return _lce_path(case) == "chunked" and case.params.get("reduction") != "none" and \
        not case.params["options"].get("allow_retain_graph", False)


# -- CosineEmbeddingLoss, float16 backward ----------------------------------------------------------------------


def _inductor_cosine_row_scales(case: Case) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]] | None:
    """The two per-row scalars inductor's backward kernel of CosineEmbeddingLoss stores in the case's format
    between its row loop and its element loop, exactly: c = −a·cos/(2·m1·m2) and d = a/√(m1·m2), with
    m = Σx² + 1e-12, cos = Σx1·x2/√(m1·m2) and a = ∂loss/∂cos of the row (−g for y = 1; g where
    cos − margin >= 0 for y = −1; 0 otherwise). None without a cotangent."""
    from conformance.numerics.known_models_misc import cosine_cos_cotangent, cosine_embedding_rows, cosine_row_cotangent

    x1, x2, y, margin, reduction, n = cosine_embedding_rows(case)
    with np.errstate(all="ignore"):
        m1 = np.sum(x1 * x1, axis=-1) + 1e-12
        m2 = np.sum(x2 * x2, axis=-1) + 1e-12
        den = np.sqrt(m1 * m2)
        cos = np.sum(x1 * x2, axis=-1) / den
        g_row = cosine_row_cotangent(case, reduction, n, cos.shape)
        if g_row is None:
            return None
        a = cosine_cos_cotangent(y, cos - margin, g_row)
        return -a * cos / (2.0 * m1 * m2), a / den, {"x1": x1, "x2": x2, "m1": m1, "m2": m2}


def inductor_cosine_row_scale_out_of_range(case: Case) -> bool:
    """CosineEmbeddingLoss where a per-row scalar of inductor's backward (``_inductor_cosine_row_scales``) is
    non-zero and outside the normal range of the case's format: it underflows (into subnormals or to 0) or
    overflows when stored, although each gradient it scales is in range (e.g. float16 rows of norm 42:
    −a/(2·1800²) is below 2^-14)."""
    scales = _inductor_cosine_row_scales(case)
    if scales is None:
        return False
    dt = DTYPES[case.dtype]
    return any(bool(np.any((np.abs(v) > dt.max_value) | ((v != 0) & (np.abs(v) < dt.min_normal))))
               for v in scales[:2])


def inductor_cosine_row_scale_model(case: Case, reference: Result, got: Result) -> dict[str, object]:
    """The input gradients as inductor's backward kernel computes them: the per-row scalars c and d rounded
    to the case's format (``_inductor_cosine_row_scales``), then ∂x1 = 2·c·m2·x1 + d·x2 and
    ∂x2 = 2·c·m1·x2 + d·x1 in float32, rounded."""
    scales = _inductor_cosine_row_scales(case)
    if scales is None:
        return {}
    rd = DTYPES[case.dtype].round
    c, d, v = scales
    with np.errstate(all="ignore"):
        c, d = rd(c)[..., None], rd(d)[..., None]
        return {"grad.input1": rd(2.0 * c * v["m2"][..., None] * v["x1"] + d * v["x2"]),
                "grad.input2": rd(2.0 * c * v["m1"][..., None] * v["x2"] + d * v["x1"])}


# -- NLLLoss, reduction 'mean' with a zero total weight ---------------------------------------------------------


def inductor_nll_mean_zero_total_weight(case: Case) -> bool:
    """A valid NLLLoss with reduction 'mean', some counted position (target not ignore_index) and a total weight
    Σ w[t] of 0 over the counted positions: the loss is 0/0, and inductor's backward multiplies the whole class row
    of each counted position by that NaN (eager: NaN only at the target class)."""
    from conformance.numerics.loss import nll_args
    from reference import loss_classification as classification

    if case.invalid:
        return False
    args = nll_args(case)
    if args["reduction"] != "mean":
        return False
    try:
        counted, wt = classification.nll_counted(np.asarray(case.inputs["input"], dtype=np.float64),
                                                 np.asarray(case.inputs["target"]), args["weight"],
                                                 args["ignore_index"])
    except (ValueError, IndexError):
        return False
    return bool(np.any(counted)) and float(np.sum(np.where(counted, wt, 0.0))) == 0.0
