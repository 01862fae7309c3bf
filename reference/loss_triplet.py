"""Triplet losses: ``triplet_margin_loss`` and ``triplet_margin_with_distance_loss`` (torch's
signatures, registered with their VJPs), the distances they take, and their first-order error
analysis (units of u).

ℓ = max(margin + d(a, p) - d(a, n), 0) per triplet, with ``swap`` replacing d(a, n) by
min(d(a, n), d(p, n)). Conventions, as torch implements them: the pairwise distance is
‖x1 - x2 + eps‖_p over the last dim (``reference.distance``, with its gradient convention at the
norm's kinks); clamp_min passes the gradient at z = 0; at a tie d(a, n) = d(p, n) torch.minimum
splits the gradient equally between the two distances.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from reference.distance import difference, sensitivity, vector_norm
from reference.loss import REDUCTIONS, apply_reduction, legacy_reduction, scaled_cotangent, sum_to_shape
from reference.registry import functional


class Distance:
    """A distance between rows: ``distance(x1, x2)`` reduces the last dim ((N, D) → (N,), (D) → ()),
    and ``distance.vjp(g, x1, x2) -> (dL/dx1, dL/dx2)``. ``triplet_margin_with_distance_loss``
    needs the VJP for its own; a plain callable without one gives a forward only."""

    def __init__(self, forward: Callable[[np.ndarray, np.ndarray], np.ndarray],
                 vjp: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]], name: str):
        self.forward, self.vjp, self.name = forward, vjp, name

    def __call__(self, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
        return self.forward(x1, x2)

    def __repr__(self) -> str:
        return self.name


def pairwise(p: float = 2.0, eps: float = 1e-6) -> Distance:
    """torch.nn.PairwiseDistance(p, eps) (and F.pairwise_distance): ‖x1 - x2 + eps‖_p over the last
    dim; its gradient sign(d)·g·(|d|/N)^(p-1), 0 where d = 0 or N = 0 (torch's norm_backward)."""

    def forward(x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
        return vector_norm(difference(x1, x2, eps), p)

    def vjp(g: np.ndarray, x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = difference(x1, x2, eps)
        norm = vector_norm(d, p, keepdim=True)
        grad = np.sign(d) * np.asarray(g)[..., None] * sensitivity(d, norm, p)
        return sum_to_shape(grad, x1.shape), -sum_to_shape(grad, x2.shape)

    return Distance(forward, vjp, f"pairwise(p={p}, eps={eps})")


def _check(anchor: np.ndarray, positive: np.ndarray, negative: np.ndarray, margin: float) -> None:
    if margin <= 0:
        raise ValueError(f"triplet loss: margin must be greater than 0, got {margin}")
    if not anchor.ndim == positive.ndim == negative.ndim:
        raise ValueError(f"triplet loss: anchor, positive and negative have {anchor.ndim}, {positive.ndim} and "
                         f"{negative.ndim} dimensions")
    try:
        np.broadcast_shapes(anchor.shape, positive.shape, negative.shape)
    except ValueError as exc:
        raise ValueError("triplet loss: shapes do not broadcast") from exc


def triplet_parts(anchor: np.ndarray, positive: np.ndarray, negative: np.ndarray, distance: Distance,
                  margin: float, swap: bool) -> dict[str, np.ndarray]:
    """The distances d_pos, d_neg (and d_swap), the weights w_neg, w_swap with which the negative
    term's gradient reaches d_neg and d_swap (1/0, or 1/2 each at a tie), and z = margin + d_pos -
    min(d_neg, d_swap)."""
    _check(anchor, positive, negative, margin)
    d_pos, d_neg = np.asarray(distance(anchor, positive)), np.asarray(distance(anchor, negative))
    parts = {"d_pos": d_pos, "d_neg": d_neg, "w_neg": np.ones(d_neg.shape), "w_swap": np.zeros(d_neg.shape)}
    nearest = d_neg
    if swap:
        d_swap = np.asarray(distance(positive, negative))
        nearest = np.minimum(d_neg, d_swap)
        tie = d_neg == d_swap
        parts.update(d_swap=d_swap, w_neg=np.where(tie, 0.5, np.where(d_neg < d_swap, 1.0, 0.0)),
                     w_swap=np.where(tie, 0.5, np.where(d_swap < d_neg, 1.0, 0.0)))
    parts["z"] = margin + d_pos - nearest
    return parts


def _triplet_pullback(g: np.ndarray, anchor: np.ndarray, positive: np.ndarray, negative: np.ndarray,
                      distance: Distance, margin: float, swap: bool, reduction: str) -> dict[str, np.ndarray]:
    if not hasattr(distance, "vjp"):
        raise TypeError(f"triplet loss: the distance {distance!r} has no VJP (give a reference.loss_triplet.Distance)")
    parts = triplet_parts(anchor, positive, negative, distance, margin, swap)
    z = parts["z"]
    gz = np.where(z >= 0, 1.0, 0.0) * scaled_cotangent(g, z.shape, reduction)
    a_pos, p_pos = distance.vjp(gz, anchor, positive)
    a_neg, n_neg = distance.vjp(-gz * parts["w_neg"], anchor, negative)
    grads = {"anchor": a_pos + a_neg, "positive": p_pos, "negative": n_neg}
    if swap:
        p_swap, n_swap = distance.vjp(-gz * parts["w_swap"], positive, negative)
        grads["positive"] = grads["positive"] + p_swap
        grads["negative"] = grads["negative"] + n_swap
    return {name: sum_to_shape(np.broadcast_to(v, np.broadcast_shapes(v.shape, x.shape)), x.shape)
            for (name, v), x in zip(grads.items(), (anchor, positive, negative))}


def _triplet_example(rng: np.random.Generator, **kwargs: object) -> tuple[tuple[np.ndarray, ...], dict]:
    """Triplets whose z = margin + d_pos - d_neg stays away from 0 (every row active or every row
    inactive by a margin of 0.5) and whose swap distance is far from d_neg."""
    a = rng.standard_normal((4, 3))
    p = a + 0.3 * rng.standard_normal((4, 3))
    n = a + np.array([[3.0, 0, 0], [0, -3.0, 0], [0.2, 0.1, 0.1], [0, 0, 0.3]]) + 0.05 * rng.standard_normal((4, 3))
    return (a, p, n), {"margin": 1.0, "swap": True, **kwargs}


def _triplet_margin_vjp(cotangent, anchor, positive, negative, margin=1.0, p=2, eps=1e-6, swap=False,
                        size_average=None, reduce=None, reduction="mean"):
    """{"anchor", "positive", "negative"}: where z >= 0 (clamp_min passes the gradient at z = 0),
    ĝ·(∇d(a, p) - ∇min(d(a, n), d(p, n))), the minimum's gradient split equally at a tie."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    return _triplet_pullback(cotangent, anchor, positive, negative, pairwise(p, eps), margin, swap, reduction)


@functional(vjp=_triplet_margin_vjp, example=lambda rng: _triplet_example(rng, p=1.5))
def triplet_margin_loss(anchor, positive, negative, margin=1.0, p=2, eps=1e-6, swap=False, size_average=None,
                        reduce=None, reduction="mean"):
    """ℓ = max(margin + d(a, p) - d(a, n), 0) per triplet of rows of anchor, positive and negative
    ((N, D) or (D), one rank; ValueError otherwise), with d(x1, x2) = ‖x1 - x2 + eps‖_p over the last
    dim (torch's pairwise_distance: eps inside the norm), and with ``swap`` d(a, n) replaced by
    min(d(a, n), d(p, n)); reduced over the triplets. margin must be > 0 (ValueError)."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    z = triplet_parts(anchor, positive, negative, pairwise(p, eps), margin, swap)["z"]
    return apply_reduction(np.maximum(z, 0.0), reduction)


def _with_distance_vjp(cotangent, anchor, positive, negative, *, distance_function=None, margin=1.0, swap=False,
                       reduction="mean"):
    """{"anchor", "positive", "negative"}: as ``triplet_margin_loss``'s, through the distance's own
    VJP (a ``Distance``; TypeError for a callable without one)."""
    legacy_reduction(None, None, reduction, REDUCTIONS)
    distance = pairwise() if distance_function is None else distance_function
    return _triplet_pullback(cotangent, anchor, positive, negative, distance, margin, swap, reduction)


@functional(vjp=_with_distance_vjp,
            example=lambda rng: _triplet_example(rng, distance_function=pairwise(1.0, 0.0), margin=0.5))
def triplet_margin_with_distance_loss(anchor, positive, negative, *, distance_function=None, margin=1.0, swap=False,
                                      reduction="mean"):
    """ℓ = max(margin + d(a, p) - d(a, n), 0) per triplet with the distance ``distance_function``
    (default: the pairwise distance with p = 2, eps = 1e-6; any callable of two arrays returning a
    distance per row, a ``Distance`` for gradients), ``swap`` as in ``triplet_margin_loss``;
    reduced ('none', 'mean', 'sum'; no deprecated flags). The three inputs must have one rank and
    margin must be > 0 (ValueError)."""
    legacy_reduction(None, None, reduction, REDUCTIONS)
    distance = pairwise() if distance_function is None else distance_function
    z = triplet_parts(anchor, positive, negative, distance, margin, swap)["z"]
    return apply_reduction(np.maximum(z, 0.0), reduction)


# -- error analysis -----------------------------------------------------------------------------------

def pairwise_distance_error(x1: np.ndarray, x2: np.ndarray, p: float, eps: float, u: float,
                            tiny: float) -> dict[str, np.ndarray]:
    """First-order error of d = ‖x1 - x2 + eps‖_p and of its gradient, in absolute terms.

    Entries δ = fl(fl(x1 - x2) + eps): e = u·(|x1 - x2| + |δ| + eps) (+ tiny when eps != 0: eps may be
    rounded into the subnormal range). The norm, finite p: E = Σ s·e + N·u·((2√D + 2)/|p| + 2 +
    |ln N|) with the sensitivity s = (|δ|/N)^(p-1) (the powers, the sum, the root and the rounded
    exponent 1/p); p = inf: max e; p = 0: exact. Its gradient G = s·g per entry: exact for p = 1,
    one rounding for inf, else G·(|p - 1|·(e/|δ| + E/N) + 6u) + 2·tiny. Returns norm (keepdim),
    E (keepdim), the sensitivity s, the entry errors e and the relative gradient error r.
    """
    diff = x1 - x2
    d = diff + eps
    a = np.abs(d)
    dim = d.shape[-1] if d.ndim else 1
    e = u * (np.abs(diff) + a + abs(eps)) + (tiny if eps else 0.0)
    norm = vector_norm(d, p, keepdim=True)
    s = sensitivity(d, norm, p)
    with np.errstate(all="ignore"):
        if p == 0:
            err = np.zeros(norm.shape)
            rel = np.zeros(d.shape)
        elif math.isinf(p):
            err = e.max(axis=-1, keepdims=True)
            rel = np.full(d.shape, u)
        else:
            log_norm = np.abs(np.log(np.where(norm > 0, norm, 1.0)))
            err = np.nansum(s * e, axis=-1, keepdims=True) + norm * u * ((2 * math.sqrt(dim) + 2) / abs(p) + 2
                                                                        + log_norm)
            rel = np.zeros(d.shape) if p == 1 else np.where(a > 0, abs(p - 1) * (e / a + err / norm) + 6 * u, 0.0)
    return {"norm": norm, "err": err, "s": s, "rel": rel}


def triplet_errors(anchor: np.ndarray, positive: np.ndarray, negative: np.ndarray, margin: float, p: float,
                   eps: float, swap: bool, reduction: str, g: np.ndarray | None, u: float,
                   tiny: float) -> dict[str, np.ndarray]:
    """First-order error bounds in units of u: {"output", "grad.anchor", "grad.positive",
    "grad.negative"} (the gradients when a cotangent ``g`` is given).

    z = margin + d_pos - d_neg': E_z = E_pos + E_neg' + u·(|margin + d_pos| + |z|), the clamp keeps it
    where z may be >= 0, then the reduction (2√M·Σ|ℓ| for the sum, the division). Each gradient is
    a sum of up to two distance gradients (relative error r each, 2·tiny, and the accumulation u),
    times ĝ (2u for 'mean'). Where |z| <= E_z the clamp may go either way (a jump of the whole
    gradient); where |d_neg - d_swap| <= E_neg + E_swap the minimum may pick either distance (a jump
    of both negative terms).
    """
    dists = {"pos": (anchor, positive), "neg": (anchor, negative)}
    if swap:
        dists["swap"] = (positive, negative)
    info = {k: pairwise_distance_error(x1, x2, p, eps, u, tiny) for k, (x1, x2) in dists.items()}
    parts = triplet_parts(anchor, positive, negative, pairwise(p, eps), margin, swap)
    z, w_neg, w_swap = parts["z"], parts["w_neg"], parts["w_swap"]
    err = {k: v["err"][..., 0] for k, v in info.items()}
    e_near = w_neg * err["neg"] + (w_swap * err["swap"] if swap else 0.0)
    if swap:
        tie = np.abs(parts["d_neg"] - parts["d_swap"]) <= err["neg"] + err["swap"]
        e_near = np.where(tie, np.maximum(err["neg"], err["swap"]), e_near)
    e_z = err["pos"] + e_near + u * (np.abs(margin + parts["d_pos"]) + np.abs(z))
    live = z >= -e_z
    terms = np.maximum(z, 0.0)
    term_err = np.where(live, e_z, 0.0)
    m = max(terms.size, 1)
    if reduction == "none":
        out_err = term_err
    else:
        out_err = np.sum(term_err) + 2 * math.sqrt(m) * u * np.sum(terms)
        if reduction == "mean":
            out_err = out_err / m + 2 * u * np.sum(terms) / m
    out = {"output": np.asarray(out_err) / u}
    if g is None:
        return out
    ghat = np.abs(scaled_cotangent(g, z.shape, reduction))
    ghat_err = 2 * u if reduction == "mean" else 0.0
    kink = np.abs(z) <= e_z
    active = np.where(z >= 0, 1.0, 0.0)
    tie = (np.abs(parts["d_neg"] - parts["d_swap"]) <= err["neg"] + err["swap"]) if swap else np.zeros(z.shape, bool)
    weights = {"pos": np.ones(z.shape), "neg": w_neg, "swap": w_swap}
    grads = {"anchor": 0.0, "positive": 0.0, "negative": 0.0}
    errs = {"anchor": 0.0, "positive": 0.0, "negative": 0.0}
    roles = {"pos": ("anchor", "positive"), "neg": ("anchor", "negative"), "swap": ("positive", "negative")}
    for key, (first, second) in roles.items():
        if key not in info:
            continue
        s, rel = info[key]["s"], info[key]["rel"]
        # |G| per entry as computed (weighted by the active clamp and the minimum's choice), and the
        # jumps: the whole term where the clamp is ambiguous, the negative terms at a near-tie.
        size = s * (ghat * active * weights[key])[..., None]
        jump = s * (ghat * (kink | (tie if key != "pos" else False)))[..., None]
        reach = size + jump  # the largest gradient either side of an ambiguous clamp or minimum
        e = reach * (rel + ghat_err + u) + 2 * tiny * (reach > 0) + jump
        for name in (first, second):
            grads[name] = grads[name] + size
            errs[name] = errs[name] + e
    for name, x in (("anchor", anchor), ("positive", positive), ("negative", negative)):
        total = np.broadcast_to(errs[name] + u * grads[name], np.broadcast_shapes(np.shape(errs[name]), x.shape))
        out[f"grad.{name}"] = sum_to_shape(total, x.shape) / u
    return out
