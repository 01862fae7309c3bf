"""Softmax losses over linear projections of the features, with their VJPs and error analyses:

- the adaptive log-softmax of ``torch.nn.AdaptiveLogSoftmaxWithLoss`` (Grave et al., 2017), whose
  functional forms (torch has none) are ``adaptive_log_softmax_with_loss`` (the module's forward:
  the (output, loss) pair), ``adaptive_log_prob`` (its ``log_prob``) and ``adaptive_predict`` (its
  ``predict``);
- the fused linear cross entropy ``linear_cross_entropy`` (torch.nn.functional's signature):
  cross_entropy(linear(input, linear_weight, linear_bias), target, ...).

Adaptive log-softmax. ``cutoffs`` c_0 < c_1 < ... < c_{k-1} split the n_classes classes into a
shortlist [0, c_0) and k clusters [c_i, c_{i+1}) (c_k = n_classes). The head scores the shortlist
and one entry per cluster: H = x·W_hᵀ (+ b_h), shape (N, c_0 + k); cluster i scores its own
classes through a low-rank projection Z_i = (x·P_iᵀ)·O_iᵀ, P_i (h_i, in_features), O_i
(c_{i+1} - c_i, h_i), h_i = in_features // div_value^(i+1) (torch's rule, possibly 0). Then

    log p(c | x) = log_softmax(H)_c                                   for c in the shortlist,
    log p(c | x) = log_softmax(H)_{c_0 + i} + log_softmax(Z_i)_{c - c_i}   for c in cluster i.

``tail_weights`` is the sequence of (P_i, O_i) pairs. Inputs are (N, in_features), or
(in_features,) unbatched for the forward (target ()); ``log_prob`` and ``predict`` take (N,
in_features) only (torch's documented shapes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from reference.loss_classification import class_axis, cross_entropy, smoothed_class_weights
from reference.registry import FUNCTIONS, functional
from reference.softmax import log_softmax, log_softmax_error

Array = np.ndarray
Tail = Sequence[tuple[Array, Array]]


# -- adaptive log-softmax -----------------------------------------------------------------------------

def check_cutoffs(cutoffs: Sequence[int], n_classes: int) -> list[int]:
    """torch's rule: a non-empty sequence of unique, increasing integers in [1, n_classes - 1]
    (ValueError otherwise; a non-integer is rejected too)."""
    values = list(cutoffs)
    if not values:
        raise ValueError("cutoffs should be a sequence of length larger than 0")
    if (any(not isinstance(c, (int, np.integer)) or isinstance(c, bool) for c in values)
            or values != sorted(values) or len(set(values)) != len(values)
            or min(values) <= 0 or max(values) > n_classes - 1):
        raise ValueError("cutoffs should be a sequence of unique, positive integers sorted in an increasing "
                         f"order, where each value is between 1 and n_classes-1; got {values} for {n_classes} classes")
    return [int(c) for c in values]


def cluster_sizes(in_features: int, n_classes: int, cutoffs: Sequence[int], div_value: float) -> list[tuple[int, int]]:
    """(h_i, o_i) of every cluster: the projection size int(in_features // div_value^(i+1)) (a
    Python float floor division, as torch computes it; 0 is allowed) and the cluster's class count.
    Raises ValueError for a div_value that gives no size (0: division by zero; negative: a
    negative size)."""
    bounds = check_cutoffs(cutoffs, n_classes) + [n_classes]
    sizes = []
    for i in range(len(bounds) - 1):
        if div_value == 0:
            raise ValueError("div_value must not be 0 (float floor division by zero)")
        hidden = int(in_features // (div_value ** (i + 1)))
        if hidden < 0:
            raise ValueError(f"div_value {div_value} gives a negative projection size {hidden}")
        sizes.append((hidden, bounds[i + 1] - bounds[i]))
    return sizes


def _adaptive_layout(input: Array, head_weight: Array, tail_weights: Tail, cutoffs: Sequence[int],
                     head_bias: Array | None) -> tuple[list[int], int]:
    """(bounds c_0..c_k, n_classes), checking every weight's shape against the cutoffs."""
    k = len(tail_weights)
    if k == 0 or len(cutoffs) != k:
        raise ValueError(f"adaptive log-softmax: {len(cutoffs)} cutoffs for {k} clusters")
    n_classes = int(cutoffs[-1]) + int(np.shape(tail_weights[-1][1])[0])
    bounds = check_cutoffs(cutoffs, n_classes) + [n_classes]
    d = input.shape[-1] if input.ndim else -1
    if head_weight.shape != (bounds[0] + k, d):
        raise ValueError(f"adaptive log-softmax: head weight {head_weight.shape} != {(bounds[0] + k, d)}")
    if head_bias is not None and head_bias.shape != (bounds[0] + k,):
        raise ValueError(f"adaptive log-softmax: head bias {head_bias.shape} != {(bounds[0] + k,)}")
    for i, (proj, out) in enumerate(tail_weights):
        if proj.ndim != 2 or proj.shape[1] != d or out.shape != (bounds[i + 1] - bounds[i], proj.shape[0]):
            raise ValueError(f"adaptive log-softmax: cluster {i} weights {proj.shape}, {out.shape} do not fit")
    return bounds, n_classes


def _rows(input: Array, batched_only: bool, name: str) -> Array:
    if input.ndim == 2 or (input.ndim == 1 and not batched_only):
        return input.reshape(-1, input.shape[-1])
    raise ValueError(f"{name}: input must be (N, in_features){'' if batched_only else ' or (in_features,)'}, "
                     f"got {input.shape}")


def _scores(x: Array, head_weight: Array, tail_weights: Tail, head_bias: Array | None):
    """(H, [(hidden_i, Z_i)]) for rows x (N, in_features)."""
    head = x @ head_weight.T + (0.0 if head_bias is None else head_bias)
    clusters = []
    for proj, out in tail_weights:
        hidden = x @ proj.T
        clusters.append((hidden, hidden @ out.T))
    return head, clusters


def _full_log_prob(x, head_weight, tail_weights, bounds, head_bias) -> tuple[Array, Array, list[Array]]:
    """(log p (N, n_classes), head log-softmax, cluster log-softmaxes)."""
    head, clusters = _scores(x, head_weight, tail_weights, head_bias)
    head_lp = log_softmax(head, 1) if head.size else head
    cluster_lp = [log_softmax(z, 1) if z.size else z for _, z in clusters]
    out = np.empty((x.shape[0], bounds[-1]))
    out[:, :bounds[0]] = head_lp[:, :bounds[0]]
    for i, lp in enumerate(cluster_lp):
        out[:, bounds[i]:bounds[i + 1]] = lp + head_lp[:, bounds[0] + i:bounds[0] + i + 1]
    return out, head_lp, cluster_lp


def _check_target(target: Array, rows: Array, input: Array, n_classes: int) -> Array:
    t = np.asarray(target)
    if t.dtype.kind not in "iu":
        raise ValueError("adaptive log-softmax: target must hold class indices")
    if t.ndim > 1:
        raise ValueError("adaptive log-softmax: 0D or 1D target tensor expected, multi-target not supported")
    if t.ndim != input.ndim - 1:
        raise ValueError(f"adaptive log-softmax: a {t.ndim}-d target needs a {t.ndim + 1}-d input, got {input.shape}")
    t = t.reshape(-1)
    if t.size != rows.shape[0]:
        raise ValueError("adaptive log-softmax: input and target should have the same size in the batch dimension")
    if np.any((t < 0) | (t >= n_classes)):
        raise ValueError(f"adaptive log-softmax: target values should be in [0, {n_classes - 1}]")
    return t.astype(np.int64)


def _backward_scores(x: Array, head_weight: Array, tail_weights: Tail, head_bias: Array | None,
                     d_head: Array, d_clusters: list[Array], hiddens: list[Array]) -> dict:
    """The gradients of input, head and tail weights from the cotangents of the head scores H and
    of every cluster's scores Z_i (the linear maps' VJPs)."""
    dx = d_head @ head_weight
    tail = []
    for (proj, out), dz, hidden in zip(tail_weights, d_clusters, hiddens):
        dh = dz @ out
        dx = dx + dh @ proj
        tail.append((dh.T @ x, dz.T @ hidden))
    grads = {"input": dx, "head_weight": d_head.T @ x, "tail_weights": tail}
    if head_bias is not None:
        grads["head_bias"] = d_head.sum(axis=0)
    return grads


def _log_softmax_back(lp: Array, g: Array) -> Array:
    """VJP of a row-wise log-softmax from its output: g - exp(lp)·Σg."""
    return g - np.exp(lp) * g.sum(axis=1, keepdims=True) if lp.size else g


def _per_row_cotangent(cotangent, n: int) -> Array:
    """ĝ_n = g_output[n] - g_loss/N: the cotangent of each row's log-probability (the loss is the
    mean of -output)."""
    g_out, g_loss = cotangent
    g_out = np.zeros(n) if g_out is None else np.asarray(g_out, dtype=np.float64).reshape(-1)
    g_loss = 0.0 if g_loss is None else float(np.asarray(g_loss))
    with np.errstate(invalid="ignore", divide="ignore"):
        return g_out - (g_loss / n if n else 0.0)


def _adaptive_forward_vjp(cotangent, input, target, head_weight, tail_weights, cutoffs, head_bias=None):
    """{"input", "head_weight", "head_bias", "tail_weights": [(P_i, O_i) gradients]}: with ĝ_n =
    g_output[n] - g_loss/N, the head scores get ĝ_n·(onehot(k_n) - softmax(H_n)) (k_n the target
    class or its cluster's head entry) and a clustered row's cluster scores ĝ_n·(onehot(j_n) -
    softmax(Z_i,n)) (j_n its class within the cluster), then through the linear maps."""
    x = _rows(input, False, "AdaptiveLogSoftmaxWithLoss")
    bounds, n_classes = _adaptive_layout(input, head_weight, tail_weights, cutoffs, head_bias)
    t = _check_target(target, x, input, n_classes)
    head, clusters = _scores(x, head_weight, tail_weights, head_bias)
    ghat = _per_row_cotangent(cotangent, x.shape[0])
    rows = np.arange(x.shape[0])
    cluster_of = np.searchsorted(np.asarray(bounds), t, side="right") - 1  # -1: shortlist
    head_index = np.where(t < bounds[0], t, bounds[0] + cluster_of)
    g_head = np.zeros_like(head)
    g_head[rows, head_index] = ghat
    d_head = _log_softmax_back(log_softmax(head, 1) if head.size else head, g_head)
    d_clusters = []
    for i, (_, z) in enumerate(clusters):
        g_z = np.zeros_like(z)
        mine = cluster_of == i
        g_z[rows[mine], t[mine] - bounds[i]] = ghat[mine]
        d_clusters.append(_log_softmax_back(log_softmax(z, 1) if z.size else z, g_z))
    grads = _backward_scores(x, head_weight, tail_weights, head_bias, d_head, d_clusters, [h for h, _ in clusters])
    grads["input"] = grads["input"].reshape(input.shape)
    return grads


def _adaptive_example(rng: np.random.Generator) -> tuple[tuple, dict]:
    d = 6
    tail = [(rng.standard_normal((3, d)), rng.standard_normal((3, 3))), (rng.standard_normal((1, d)),
                                                                          rng.standard_normal((2, 1)))]
    x, target = rng.standard_normal((5, d)), np.array([0, 3, 6, 1, 5])
    return (x, target, rng.standard_normal((4, d)), tail, [2, 5]), {"head_bias": rng.standard_normal(4)}


@functional(vjp=_adaptive_forward_vjp, example=_adaptive_example)
def adaptive_log_softmax_with_loss(input, target, head_weight, tail_weights, cutoffs, head_bias=None):
    """AdaptiveLogSoftmaxWithLoss's forward: (output, loss) with output_n = log p(target_n | x_n)
    (module docstring) and loss = mean(-output) (an empty batch: NaN). ``input`` (N, in_features)
    with ``target`` (N,), or (in_features,) with a 0-d target (then output is 0-d). Raises
    ValueError for targets outside [0, n_classes), a target of more than one dimension, mismatched
    batch sizes or ranks, and weights that do not fit the cutoffs."""
    x = _rows(input, False, "AdaptiveLogSoftmaxWithLoss")
    bounds, n_classes = _adaptive_layout(input, head_weight, tail_weights, cutoffs, head_bias)
    t = _check_target(target, x, input, n_classes)
    full, _, _ = _full_log_prob(x, head_weight, tail_weights, bounds, head_bias)
    output = full[np.arange(x.shape[0]), t] if x.shape[0] else np.zeros(0)
    with np.errstate(invalid="ignore"):
        loss = np.asarray(np.sum(-output) / output.size if output.size else np.nan)
    return output.reshape(np.shape(target)), loss


def _adaptive_log_prob_vjp(cotangent, input, head_weight, tail_weights, cutoffs, head_bias=None):
    """The head log-softmax receives G on the shortlist and the row sum of G over each cluster on
    that cluster's head entry; cluster i's log-softmax receives G on its classes; then the
    log-softmax and linear VJPs."""
    x = _rows(input, True, "AdaptiveLogSoftmaxWithLoss.log_prob")
    bounds, _ = _adaptive_layout(input, head_weight, tail_weights, cutoffs, head_bias)
    g = np.asarray(cotangent, dtype=np.float64)
    head, clusters = _scores(x, head_weight, tail_weights, head_bias)
    g_head = np.zeros_like(head)
    g_head[:, :bounds[0]] = g[:, :bounds[0]]
    d_clusters = []
    for i, (_, z) in enumerate(clusters):
        block = g[:, bounds[i]:bounds[i + 1]]
        g_head[:, bounds[0] + i] = block.sum(axis=1)
        d_clusters.append(_log_softmax_back(log_softmax(z, 1) if z.size else z, block))
    d_head = _log_softmax_back(log_softmax(head, 1) if head.size else head, g_head)
    return _backward_scores(x, head_weight, tail_weights, head_bias, d_head, d_clusters, [h for h, _ in clusters])


def _log_prob_example(rng: np.random.Generator) -> tuple[tuple, dict]:
    args, kwargs = _adaptive_example(rng)
    return (args[0], *args[2:]), kwargs


@functional(vjp=_adaptive_log_prob_vjp, example=_log_prob_example)
def adaptive_log_prob(input, head_weight, tail_weights, cutoffs, head_bias=None):
    """AdaptiveLogSoftmaxWithLoss.log_prob: log p(c | x_n) for every class, (N, n_classes) from
    (N, in_features) (module docstring); each row's exp sums to 1. Raises ValueError for any other
    input rank and for weights that do not fit the cutoffs."""
    x = _rows(input, True, "AdaptiveLogSoftmaxWithLoss.log_prob")
    bounds, _ = _adaptive_layout(input, head_weight, tail_weights, cutoffs, head_bias)
    return _full_log_prob(x, head_weight, tail_weights, bounds, head_bias)[0]


@functional()
def adaptive_predict(input, head_weight, tail_weights, cutoffs, head_bias=None):
    """AdaptiveLogSoftmaxWithLoss.predict: argmax_c log p(c | x_n), (N,) int64 from (N,
    in_features); ties go to the lowest class (torch's argmax). torch takes the argmax of the head
    scores first and evaluates the clusters only for rows whose best head entry is a cluster's;
    the result is the same, since a cluster's classes never exceed the cluster's head
    log-probability. Not differentiable."""
    x = _rows(input, True, "AdaptiveLogSoftmaxWithLoss.predict")
    bounds, _ = _adaptive_layout(input, head_weight, tail_weights, cutoffs, head_bias)
    full = _full_log_prob(x, head_weight, tail_weights, bounds, head_bias)[0]
    return np.argmax(full, axis=1).astype(np.int64) if x.shape[0] else np.zeros(0, dtype=np.int64)


# -- linear cross entropy ---------------------------------------------------------------------------------

_ACC_POLICIES = ("auto", "accurate", "balanced", "compact")


def check_options(options: Mapping | None) -> None:
    """LinearCrossEntropyOptions' documented constraints on a mapping of its fields (None: the
    reference path): acc_policy one of auto/accurate/balanced/compact, chunking_method None,
    'auto', 'aspect_ratio' or 'aspect_ratio:N' (N >= 1), batch_chunk_size None or a positive
    integer (ValueError otherwise). The chunking changes memory use, not the mathematics."""
    if options is None:
        return
    policy = options.get("acc_policy", "auto")
    if policy not in _ACC_POLICIES:
        raise ValueError(f"invalid acc_policy: {policy!r}")
    method = options.get("chunking_method", "auto")
    if method is not None and method != "auto":
        name, sep, factor = str(method).partition(":")
        factor = factor if sep else "1"
        if not (name == "aspect_ratio" and factor.isdigit() and int(factor) > 0):
            raise ValueError(f"invalid chunking_method: {method!r}")
    size = options.get("batch_chunk_size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
        raise ValueError(f"batch_chunk_size must be positive int or None, got {size!r}")


def _lce_logits(input, linear_weight, target, linear_bias, ignore_index) -> tuple[Array, bool, int]:
    """(logits of shape (N, C, d1..dK), (C,) unbatched; probabilities?; ignore_index), checking
    torch's contract."""
    x, w = np.asarray(input, dtype=np.float64), np.asarray(linear_weight, dtype=np.float64)
    if x.ndim not in (1, 2):
        raise ValueError(f"linear_cross_entropy: expected input with dimensionality 1 or 2, got {x.ndim}")
    if w.ndim < 2:
        raise ValueError(f"linear_cross_entropy: expected linear_weight with dimensionality at least 2, got {w.ndim}")
    if x.shape[-1] != w.shape[-1]:
        raise ValueError(f"linear_cross_entropy: in_features {x.shape[-1]} != {w.shape[-1]}")
    extra = w.shape[1:-1]
    if linear_bias is not None and np.shape(linear_bias) != w.shape[:-1]:
        raise ValueError(f"linear_cross_entropy: linear_bias shape {np.shape(linear_bias)} != {w.shape[:-1]}")
    if extra and x.ndim == 1:
        raise ValueError("linear_cross_entropy: a K-dimensional loss requires batched input")
    logits = np.tensordot(x, w, axes=([x.ndim - 1], [w.ndim - 1]))  # (N, C, *extra) or (C,)
    if linear_bias is not None:
        logits = logits + linear_bias
    probabilities = np.shape(target) == logits.shape and np.asarray(target).dtype.kind == "f"
    if probabilities and ignore_index is not None:
        raise ValueError("linear_cross_entropy: ignore_index cannot be specified when target contains probabilities")
    return logits, probabilities, -100 if ignore_index is None else int(ignore_index)


def _check_smoothing(label_smoothing: float) -> None:
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"expected label_smoothing to be in range [0, 1], got {label_smoothing}")


def _linear_cross_entropy_vjp(cotangent, input, linear_weight, target, *, linear_bias=None, weight=None,
                              reduction="mean", ignore_index=None, label_smoothing=0.0, options=None):
    """{"input", "linear_weight", "linear_bias"(, "target")}: the cross-entropy VJP gives the
    logits' cotangent G (and the probability target's gradient); then input: Σ_c G·W, linear
    weight: Σ_n G ⊗ x, linear bias: Σ_n G."""
    check_options(options)
    _check_smoothing(label_smoothing)
    x, w = np.asarray(input, dtype=np.float64), np.asarray(linear_weight, dtype=np.float64)
    logits, _, ignore = _lce_logits(x, w, target, linear_bias, ignore_index)
    inner = FUNCTIONS["cross_entropy"].vjp(cotangent, logits, target, weight=weight, ignore_index=ignore,
                                           reduction=reduction, label_smoothing=label_smoothing)
    g = inner["input"]
    lead = x.ndim - 1
    grads = {"input": np.tensordot(g, w, axes=(list(range(lead, g.ndim)), list(range(w.ndim - 1)))),
             "linear_weight": np.tensordot(g, x, axes=(list(range(lead)), list(range(lead)))) if lead
             else np.multiply.outer(g, x)}
    if linear_bias is not None:
        grads["linear_bias"] = g.sum(axis=0) if lead else g
    if "target" in inner:
        grads["target"] = inner["target"]
    return grads


def _lce_example(rng: np.random.Generator) -> tuple[tuple, dict]:
    x, w = rng.standard_normal((4, 3)), rng.standard_normal((5, 2, 3))
    target = np.array([[0, 4], [2, 2], [1, 3], [4, 0]])
    return (x, w, target), {"linear_bias": rng.standard_normal((5, 2)), "weight": rng.uniform(0.5, 2.0, 5),
                            "label_smoothing": 0.1}


@functional(vjp=_linear_cross_entropy_vjp, example=_lce_example)
def linear_cross_entropy(input, linear_weight, target, *, linear_bias=None, weight=None, reduction="mean",
                         ignore_index=None, label_smoothing=0.0, options=None):
    """cross_entropy(linear(input, linear_weight, linear_bias) reshaped to (N, C, d1..dK), target):
    ``input`` (in_features,) or (N, in_features); ``linear_weight`` (C, in_features) or
    (C, d1..dK, in_features) (K >= 1 needs a batched input); ``linear_bias`` of
    linear_weight.shape[:-1]. Targets are class indices of the logits' shape without C, or class
    probabilities of the logits' shape (then ``ignore_index`` must stay None); ``ignore_index``
    None means -100 for class indices. Weights, reduction and label smoothing as
    ``reference.loss_classification.cross_entropy`` (label_smoothing in [0, 1]); ``options`` (a
    mapping of LinearCrossEntropyOptions' fields, or None) only selects a chunked evaluation of the
    same value (``check_options``)."""
    check_options(options)
    _check_smoothing(label_smoothing)
    logits, _, ignore = _lce_logits(input, linear_weight, target, linear_bias, ignore_index)
    return cross_entropy(logits, target, weight=weight, ignore_index=ignore, reduction=reduction,
                         label_smoothing=label_smoothing)


# -- error analyses ------------------------------------------------------------------------------------

def dot_error(a: Array, b: Array, err_a: Array | float = 0.0, err_b: Array | float = 0.0) -> Array:
    """Error (units of u) of the matrix product a @ b with a, b carrying errors err_a, err_b:
    2√K·|a|@|b| (K = the inner length, products and the sum in any order), plus the propagated
    err_a@|b| + |a|@err_b."""
    k = a.shape[-1] if a.ndim else 1
    with np.errstate(invalid="ignore", over="ignore"):
        out = 2 * math.sqrt(max(k, 1)) * (np.abs(a) @ np.abs(b))
        if np.any(err_a):
            out = out + np.broadcast_to(err_a, a.shape) @ np.abs(b)
        if np.any(err_b):
            out = out + np.abs(a) @ np.broadcast_to(err_b, b.shape)
    return out


def _log_softmax_with_inputs(z: Array, err_z: Array, cotangent: Array | None, u: float, tiny: float):
    """Row-wise log-softmax of scores z that carry errors err_z (units of u): (log p, its error,
    the VJP for ``cotangent``, the VJP's error). A perturbation δz moves log p by δz - Σ p·δz and
    the VJP g - p·Σg by p·|Σg|·(δz + Σ p·δz)."""
    if z.size == 0:
        return z, np.zeros_like(z), cotangent, None if cotangent is None else np.zeros_like(z)
    lp = log_softmax(z, 1)
    own, own_g = log_softmax_error(z, lp, cotangent, u, tiny, 1)
    with np.errstate(invalid="ignore", over="ignore"):
        p = np.exp(lp)
        spread = np.sum(p * err_z, axis=1, keepdims=True)
        err_lp = own + err_z + spread
        if cotangent is None:
            return lp, err_lp, None, None
        d = _log_softmax_back(lp, cotangent)
        err_d = own_g + p * np.abs(cotangent.sum(axis=1, keepdims=True)) * (err_z + spread)
    return lp, err_lp, d, err_d


def adaptive_errors(input, head_weight, tail_weights, cutoffs, head_bias=None, *, target=None, cotangent=None,
                    u: float = 2.0**-53, tiny: float = 0.0) -> dict:
    """First-order error bounds (units of u) of the adaptive log-softmax as torch evaluates it in
    the dtype of unit roundoff u: scores are products (``dot_error``, plus the rounding of each
    result and of the bias addition), every log-softmax adds ``reference.softmax.log_softmax_error``
    and carries its scores' errors (``_log_softmax_with_inputs``); a clustered class adds the
    rounding of the sum of its two log-probabilities.

    Without ``target``: the ``log_prob`` outputs {"output": (N, n_classes)}; with ``target`` the
    forward's {"output": (N,), "loss"}. With ``cotangent`` (G (N, n_classes) for log_prob, the
    (g_output, g_loss) pair for the forward; ĝ_n = g_output[n] - g_loss/N then carries the
    rounding of g_loss/N and of the sum) the gradients' errors too, under the argument names of
    the VJP: input, head_weight, head_bias, and tail_weights as a list of (P_i, O_i) errors; each
    product of the backward is a ``dot_error`` of the propagated cotangent errors."""
    forward = target is not None
    x = _rows(input, not forward, "adaptive log-softmax")
    bounds, n_classes = _adaptive_layout(input, head_weight, tail_weights, cutoffs, head_bias)
    n = x.shape[0]
    head, clusters = _scores(x, head_weight, tail_weights, head_bias)
    d = x.shape[1]
    with np.errstate(invalid="ignore", over="ignore"):
        bias = np.zeros(head.shape[1]) if head_bias is None else head_bias
        err_head = (2 * math.sqrt(d + 1) * (np.abs(x) @ np.abs(head_weight.T) + np.abs(bias)) + np.abs(head))
        err_clusters = []
        for (proj, out), (hidden, z) in zip(tail_weights, clusters):
            err_hidden = dot_error(x, proj.T) + np.abs(hidden)
            err_clusters.append((err_hidden, dot_error(hidden, out.T, err_hidden) + np.abs(z)))
        rows = np.arange(n)
        if forward:
            t = _check_target(target, x, input, n_classes)
            cluster_of = np.searchsorted(np.asarray(bounds), t, side="right") - 1
            head_index = np.where(t < bounds[0], t, bounds[0] + cluster_of)
            ghat = None
            if cotangent is not None:
                ghat = _per_row_cotangent(cotangent, n)
                g_loss = 0.0 if cotangent[1] is None else abs(float(np.asarray(cotangent[1])))
                err_ghat = (g_loss / n if n else 0.0) + np.abs(ghat)
                g_head = np.zeros_like(head)
                g_head[rows, head_index] = ghat
                e_g_head = np.zeros_like(head)
                e_g_head[rows, head_index] = err_ghat
            else:
                g_head = e_g_head = None
        else:
            g = None if cotangent is None else np.asarray(cotangent, dtype=np.float64)
            g_head = None if g is None else np.zeros_like(head)
            e_g_head = None if g is None else np.zeros_like(head)
            if g is not None:
                g_head[:, :bounds[0]] = g[:, :bounds[0]]
                for i in range(len(clusters)):
                    block = g[:, bounds[i]:bounds[i + 1]]
                    g_head[:, bounds[0] + i] = block.sum(axis=1)
                    e_g_head[:, bounds[0] + i] = 2 * math.sqrt(max(block.shape[1], 1)) * np.abs(block).sum(axis=1)
        head_lp, err_head_lp, d_head, err_d_head = _log_softmax_with_inputs(head, err_head, g_head, u, tiny)
        if d_head is not None:
            err_d_head = err_d_head + e_g_head + np.exp(head_lp) * np.sum(e_g_head, axis=1, keepdims=True)
        cluster_parts = []
        for i, ((_, z), (_, err_z)) in enumerate(zip(clusters, err_clusters)):
            g_z = e_g_z = None
            if cotangent is not None:
                g_z, e_g_z = np.zeros_like(z), np.zeros_like(z)
                if forward:
                    mine = cluster_of == i
                    g_z[rows[mine], t[mine] - bounds[i]] = ghat[mine]
                    e_g_z[rows[mine], t[mine] - bounds[i]] = err_ghat[mine]
                else:
                    g_z = g[:, bounds[i]:bounds[i + 1]]
            lp, err_lp, dz, err_dz = _log_softmax_with_inputs(z, err_z, g_z, u, tiny)
            if dz is not None and z.size:
                err_dz = err_dz + e_g_z + np.exp(lp) * np.sum(e_g_z, axis=1, keepdims=True)
            cluster_parts.append((lp, err_lp, dz, err_dz))
        full_err = np.empty((n, n_classes))
        full_err[:, :bounds[0]] = err_head_lp[:, :bounds[0]]
        for i, (lp, err_lp, _, _) in enumerate(cluster_parts):
            total = lp + head_lp[:, bounds[0] + i:bounds[0] + i + 1]
            full_err[:, bounds[i]:bounds[i + 1]] = err_lp + err_head_lp[:, bounds[0] + i:bounds[0] + i + 1] + np.abs(
                total)
        full = _full_log_prob(x, head_weight, tail_weights, bounds, head_bias)[0]
        if forward:
            out_err = full_err[rows, t] if n else np.zeros(0)
            out = full[rows, t] if n else np.zeros(0)
            loss_err = ((np.sum(out_err) + 2 * math.sqrt(max(n, 1)) * np.sum(np.abs(out))) / n + 2 * abs(
                np.sum(out) / n)) if n else 0.0
            errors = {"output": out_err.reshape(np.shape(target)), "loss": np.asarray(loss_err)}
        else:
            errors = {"output": full_err}
        if cotangent is None:
            return errors
        hiddens = [h for h, _ in clusters]
        e_dx = dot_error(d_head, head_weight, err_d_head)
        tail_err = []
        for (proj, out), (_, _, dz, err_dz), hidden, (err_hidden, _) in zip(tail_weights, cluster_parts, hiddens,
                                                                              err_clusters):
            if dz is None or dz.size == 0:
                dz = np.zeros((n, out.shape[0]))
                err_dz = np.zeros_like(dz)
            dh = dz @ out
            err_dh = dot_error(dz, out, err_dz) + np.abs(dh)
            e_dx = e_dx + dot_error(dh, proj, err_dh) + np.abs(dh @ proj)
            tail_err.append((dot_error(dh.T, x, err_dh.T), dot_error(dz.T, hidden, err_dz.T, err_hidden)))
        errors.update({"input": e_dx.reshape(np.shape(input)), "head_weight": dot_error(d_head.T, x, err_d_head.T),
                       "tail_weights": tail_err})
        if head_bias is not None:
            errors["head_bias"] = (2 * math.sqrt(max(n, 1)) * np.abs(d_head).sum(axis=0) + err_d_head.sum(axis=0))
    return errors


def linear_cross_entropy_errors(input, linear_weight, target, *, linear_bias=None, weight=None, reduction="mean",
                                ignore_index=None, label_smoothing=0.0, cotangent=None, u: float = 2.0**-53,
                                tiny: float = 0.0) -> dict:
    """First-order error bounds (units of u) of the fused linear cross entropy: the logits
    z = x·Wᵀ + b are a product of length in_features plus the bias and one rounding to the dtype
    (E_z = 2√(D + 1)·(|x|·|W| + |b|) + |z|); per position, l = -Σ_c q_c·log p_c with log p's own
    error (``log_softmax_error``) and the logits' (``_log_softmax_with_inputs``) costs
    Σ|q|·E_logp + 2√C·Σ|q·log p| + 4·Σ|q·log p| (q's roundings and the products); the reduction
    adds 2√M·Σ|l| over M positions and, for 'mean', the division by the normaliser W (relative
    2√M·ρ + 2, ρ = Σ|w[t]|/|W|). Gradients: the logits' cotangent G = ĝ·(p·Σq - q) (ĝ relative
    error 2√M·ρ + 3 for 'mean') with error |ĝ|·(p·|Σq|·(E_logp + E_z-spread + 2√C + 8) + 6|q|) +
    |G|·E_ĝ, then input Σ G·W, linear weight Σ_n G⊗x and bias Σ_n G as ``dot_error`` products;
    a probability target's -ĝ·(1 - ε)·w·log p: |ĝ·(1 - ε)·w|·(E_logp + 4|log p|) + |ref|·E_ĝ.
    Returns errors under the VJP's argument names and "output"."""
    x, w = np.asarray(input, dtype=np.float64), np.asarray(linear_weight, dtype=np.float64)
    logits, probabilities, ignore = _lce_logits(x, w, target, linear_bias, ignore_index)
    lead = x.ndim - 1
    flat_w = w.reshape(-1, w.shape[-1])
    ax = class_axis(logits.ndim)
    classes = logits.shape[ax]
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        b = np.zeros(w.shape[:-1]) if linear_bias is None else np.abs(linear_bias)
        mag = np.tensordot(np.abs(x), np.abs(w), axes=([x.ndim - 1], [w.ndim - 1])) + b
        err_z = 2 * math.sqrt(x.shape[-1] + 1) * mag + np.abs(logits)
        # Rows over the class axis: move it last and flatten the positions.
        moved = np.moveaxis(logits, ax, -1).reshape(-1, classes)
        err_moved = np.moveaxis(err_z, ax, -1).reshape(-1, classes)
        q, normaliser = smoothed_class_weights(logits, np.asarray(target), weight, ignore, label_smoothing)
        q_moved = np.moveaxis(q, ax, -1).reshape(-1, classes)
        positions = moved.shape[0]
        lp, err_lp, _, _ = _log_softmax_with_inputs(moved, err_moved, None, u, tiny)
        aq = np.abs(q_moved)
        terms = -np.sum(q_moved * lp, axis=1)
        err_l = (np.sum(aq * err_lp, axis=1) + (2 * math.sqrt(classes) + 4) * np.sum(np.abs(q_moved * lp), axis=1))
        root_m = math.sqrt(max(positions, 1))
        if probabilities or weight is None:
            rho = 1.0
        else:
            counted = np.asarray(target) != ignore
            wt = np.asarray(weight)[np.where(counted, target, 0)] * counted
            rho = float(np.sum(np.abs(wt)) / abs(normaliser)) if normaliser else 1.0
        if reduction == "none":
            out = err_l.reshape(np.moveaxis(logits, ax, -1).shape[:-1])
        else:
            out = np.asarray(np.sum(err_l) + 2 * root_m * np.sum(np.abs(terms)))
            if reduction == "mean":
                out = (out / abs(normaliser) + abs(np.sum(terms) / normaliser) * (2 * root_m * rho + 2)
                       if normaliser else np.asarray(0.0))
        errors = {"output": out}
        if cotangent is None:
            return errors
        g = np.asarray(cotangent, dtype=np.float64)
        if reduction == "none":
            g_pos = np.abs(g).reshape(-1, 1)
        else:
            g_pos = np.full((positions, 1), abs(float(g)) / (abs(normaliser) if reduction == "mean" else 1.0)
                            if normaliser or reduction != "mean" else 0.0)
        err_ghat = 2 * root_m * rho + 3 if reduction == "mean" else 0.0
        p = np.exp(lp)
        big_q = np.sum(aq, axis=1, keepdims=True)
        spread = np.sum(p * err_moved, axis=1, keepdims=True)
        gl = g_pos * (p * np.sum(q_moved, axis=1, keepdims=True) - q_moved)
        err_g = (g_pos * (p * big_q * (err_lp + err_moved + spread + 2 * math.sqrt(classes) + 8) + 6 * aq
                          + big_q * tiny / u) + np.abs(gl) * err_ghat)
        shape = np.moveaxis(logits, ax, -1).shape
        err_g = np.moveaxis(err_g.reshape(shape), -1, ax)
        gl = np.moveaxis(gl.reshape(shape), -1, ax)
        flat_g = gl.reshape(-1, flat_w.shape[0]) if lead else gl.reshape(1, -1)
        flat_e = err_g.reshape(flat_g.shape)
        rows_x = x.reshape(-1, x.shape[-1])
        errors["input"] = dot_error(flat_g, flat_w, flat_e).reshape(x.shape)
        errors["linear_weight"] = dot_error(flat_g.T, rows_x, flat_e.T).reshape(w.shape)
        if linear_bias is not None:
            errors["linear_bias"] = (2 * root_m * np.abs(flat_g).sum(axis=0) + flat_e.sum(axis=0)).reshape(w.shape[:-1])
        if probabilities:
            wv = np.ones(classes) if weight is None else np.abs(np.asarray(weight))
            scale = g_pos * (1 - label_smoothing) * wv[None, :]
            err_t = scale * (err_lp + 4 * np.abs(lp))
            grad_t = scale * np.abs(lp)
            errors["target"] = np.moveaxis((err_t + grad_t * err_ghat).reshape(shape), -1, ax)
    return errors
