"""Connectionist temporal classification: ``ctc_loss`` (torch.nn.functional.ctc_loss's signature)
with its VJP, the gradient torch's backward returns instead (``ctc_loss_logits_vjp``), and the
first-order error analysis of torch's log-space recursion (``ctc_loss_errors``).

Shapes (torch's contract): ``log_probs`` (T, N, C), or (T, C) unbatched; ``targets`` padded
(N, S) ((1, S) unbatched; entries past a target's length are ignored, whatever their value) or
concatenated (sum(target_lengths),) (the only 1-d form, also for an unbatched input, whose target
is then exactly its length); ``input_lengths`` and ``target_lengths`` (N,) or () (arrays or
sequences of ints). Targets are class indices in [0, C) other than ``blank``.

The loss of one sample is -log p(target | x), p summed over every alignment π of length T_n
(= input_lengths[n]) that collapses to the target (merge repeated labels, then drop blanks): a
repeated label needs a blank between its copies. It is computed by the forward (α) recursion on
the extended label sequence l' = (blank, l1, blank, l2, ..., blank) in log space, vectorised over
the batch and the extended axis (a loop over time steps). An impossible alignment (T_n shorter than
the target plus its repeats, or probability 0 on every path) gives +inf; T_n = 0 gives 0 for an
empty target and +inf otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reference.libm import LIBM_ULPS
from reference.registry import functional

CTC_REDUCTIONS = ("mean", "none", "sum")


@dataclass(frozen=True)
class CtcProblem:
    """A checked CTC call: ``log_probs`` as (T, N, C), padded ``labels`` (N, L) (blank past each
    target's length), the lengths as int64 (N,) and whether the input was batched."""

    log_probs: np.ndarray
    labels: np.ndarray
    input_lengths: np.ndarray
    target_lengths: np.ndarray
    blank: int
    batched: bool


def _lengths(values, count: int, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"ctc_loss: {name} must be integral")
    arr = arr.reshape(-1).astype(np.int64)
    if arr.size != count:
        raise ValueError(f"ctc_loss: {name} must be of size batch_size ({count}), got {arr.size}")
    return arr


def ctc_problem(log_probs, targets, input_lengths, target_lengths, blank: int = 0) -> CtcProblem:
    """Check a call against torch's documented contract and bring it to the padded batched form.

    Raises ValueError for: log_probs not 2-d or 3-d; blank outside [0, C); lengths of the wrong
    count or not integral; an input length outside [0, T]; a negative target length; a padded
    target shorter than its length; concatenated targets whose size is not the sum of the target
    lengths; a target entry (within its length) outside [0, C) or equal to blank (documented:
    "the target index cannot be blank")."""
    lp = np.asarray(log_probs, dtype=np.float64)
    if lp.ndim not in (2, 3):
        raise ValueError(f"ctc_loss: log_probs must be (T, C) or (T, N, C), got {lp.ndim}-d")
    batched = lp.ndim == 3
    lp3 = lp if batched else lp[:, None, :]
    _, n, c = lp3.shape
    if not 0 <= blank < c:
        raise ValueError(f"ctc_loss: blank {blank} must be in label range [0, {c})")
    il = _lengths(input_lengths, n, "input_lengths")
    tl = _lengths(target_lengths, n, "target_lengths")
    if np.any(il < 0) or np.any(il > lp3.shape[0]):
        raise ValueError(f"ctc_loss: input_lengths must lie in [0, {lp3.shape[0]}], got {il.tolist()}")
    if np.any(tl < 0):
        raise ValueError(f"ctc_loss: target_lengths must be >= 0, got {tl.tolist()}")
    tg = np.asarray(targets)
    if tg.dtype.kind not in "iu":
        raise ValueError("ctc_loss: targets must hold class indices")
    longest = int(tl.max()) if n else 0
    if tg.ndim == 1:  # concatenated (the only 1-d form, batched or not)
        if tg.size != int(tl.sum()):
            raise ValueError(f"ctc_loss: concatenated targets have {tg.size} entries, target_lengths sum to {tl.sum()}")
        starts = np.concatenate([[0], np.cumsum(tl)[:-1]]).astype(np.int64)
        pos = np.arange(longest)[None, :]
        inside = pos < tl[:, None]
        labels = np.where(inside, tg[np.where(inside, starts[:, None] + pos, 0)] if tg.size else blank, blank)
    elif tg.ndim == 2:  # padded (N, S); (1, S) for an unbatched input
        if tg.shape[0] != n:
            raise ValueError(f"ctc_loss: targets of shape {tg.shape} do not fit a batch of {n}")
        if np.any(tl > tg.shape[1]):
            raise ValueError(f"ctc_loss: target_lengths {tl.tolist()} exceed the padded length {tg.shape[1]}")
        inside = np.arange(longest)[None, :] < tl[:, None]
        labels = np.where(inside, tg[:, :longest], blank)
    else:
        raise ValueError(f"ctc_loss: targets must be 1-d or 2-d, got {tg.ndim}-d")
    labels = np.asarray(labels, dtype=np.int64).reshape(n, longest)
    bad = inside & ((labels < 0) | (labels >= c) | (labels == blank))
    if bad.any():
        raise ValueError(f"ctc_loss: target index {int(labels[bad][0])} is blank ({blank}) or outside [0, {c})")
    return CtcProblem(lp3, labels, il, tl, int(blank), batched)


@dataclass
class Lattice:
    """The forward-backward lattice of a problem over the extended labels (N, S' = 2L + 1).

    ``ext`` the extended labels, ``skip`` where s-2 → s is allowed (s a label differing from the
    label two before), ``lpe`` (T, N, S') log_probs at the extended labels (-inf past 2·length),
    ``pre`` (T, N, S') log α before adding lpe (0 at t = 0 on the two starting states), ``alpha``
    and ``beta`` (log β includes lpe at t, -inf at t >= T_n), ``nll`` (N,)."""

    ext: np.ndarray
    skip: np.ndarray
    lpe: np.ndarray
    pre: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray | None
    nll: np.ndarray


def _shift(a: np.ndarray, k: int) -> np.ndarray:
    """a[..., s - k] along the last axis (k > 0: from the left, k < 0: from the right), -inf outside."""
    out = np.full_like(a, -np.inf)
    if k > 0:
        out[..., k:] = a[..., :-k]
    else:
        out[..., :k] = a[..., -k:]
    return out


def _visited(skip: np.ndarray, valid: np.ndarray, il: np.ndarray, tl: np.ndarray, t_max: int) -> np.ndarray:
    """(T, N, S'): the states some alignment visits, by the lattice's structure alone (emissions
    ignored): reachable at t from a starting state (s <= 1 at t = 0) and reaching a final state
    (2·length or 2·length - 1) at T_n - 1."""
    n, width = skip.shape
    states = np.arange(width)[None, :]
    reach = np.zeros((t_max, n, width), dtype=bool)
    ahead = np.zeros((t_max, n, width), dtype=bool)
    if not t_max:
        return reach
    reach[0] = (states <= 1) & valid
    for t in range(1, t_max):
        r = reach[t - 1].copy()
        r[:, 1:] |= reach[t - 1][:, :-1]
        r[:, 2:] |= reach[t - 1][:, :-2] & skip[:, 2:]
        reach[t] = r & valid
    final = ((states == 2 * tl[:, None]) | (states == 2 * tl[:, None] - 1)) & valid
    for t in range(t_max - 1, -1, -1):
        c = np.zeros((n, width), dtype=bool)
        if t + 1 < t_max:
            c = ahead[t + 1].copy()
            c[:, :-1] |= ahead[t + 1][:, 1:]
            c[:, :-2] |= ahead[t + 1][:, 2:] & skip[:, 2:]
        ahead[t] = np.where((t == il - 1)[:, None], final, np.where((t < il - 1)[:, None], c & valid, False))
    return reach & ahead


def lattice(p: CtcProblem, backward: bool = True) -> Lattice:
    """α (and β) of every sample, vectorised over (N, S'); a loop over the T time steps. A NaN
    log-probability on a state no alignment visits (``_visited``) enters no sum: the loss sums over
    the alignments only (evaluated verbatim, 0·NaN would carry it into the sums of the states next
    to it)."""
    lp = p.log_probs
    t_max, n, _ = lp.shape
    tl, il = p.target_lengths, p.input_lengths
    width = 2 * p.labels.shape[1] + 1
    ext = np.full((n, width), p.blank, dtype=np.int64)
    ext[:, 1::2] = p.labels
    states = np.arange(width)[None, :]
    valid = states <= 2 * tl[:, None]
    skip = np.zeros((n, width), dtype=bool)
    skip[:, 2:] = (ext[:, 2:] != ext[:, :-2]) & (states[:, 2:] % 2 == 1)
    with np.errstate(invalid="ignore", over="ignore"):
        lpe = np.where(valid[None], np.take_along_axis(lp, np.broadcast_to(ext[None], (t_max, n, width)), axis=2),
                       -np.inf)
        lpe = np.where(np.isnan(lpe) & ~_visited(skip, valid, il, tl, t_max), -np.inf, lpe)
        pre = np.full((t_max, n, width), -np.inf)
        # α in a buffer with two -inf states in front: the predecessors s-1 and s-2 are views.
        padded = np.full((t_max, n, width + 2), -np.inf)
        alpha = padded[:, :, 2:]
        if t_max:
            start = (states <= 1) & valid
            pre[0] = np.where(start, 0.0, -np.inf)
            # α_0 is defined as the emission on the two starting states and 0 elsewhere (not 0 times
            # the emission: a NaN log-probability on a later state at t = 0 enters no sum).
            alpha[0] = np.where(start, lpe[0], -np.inf)
        for t in range(1, t_max):
            prev = padded[t - 1]
            # s-2 enters the sum only where the skip is allowed: selected, not added to -inf, so that
            # a NaN in a state there is no transition from stays out of the sum
            np.logaddexp(np.logaddexp(prev[:, 2:], prev[:, 1:-1]), np.where(skip, prev[:, :-2], -np.inf), out=pre[t])
            np.add(pre[t], lpe[t], out=alpha[t])
        rows = np.arange(n)
        last = alpha[np.maximum(il - 1, 0), rows] if t_max else np.full((n, width), -np.inf)
        end = np.take_along_axis(last, (2 * tl)[:, None], axis=1)[:, 0]
        before = np.where(tl > 0, np.take_along_axis(last, np.maximum(2 * tl - 1, 0)[:, None], axis=1)[:, 0], -np.inf)
        nll = np.where(il > 0, -np.logaddexp(end, before), np.where(tl == 0, 0.0, np.inf))
        beta = None
        if backward:
            # β with two -inf states behind; s + 2 is kept where the skip into it is allowed.
            padded_b = np.full((t_max, n, width + 2), -np.inf)
            beta = padded_b[:, :, :width]
            skip_next = np.zeros((n, width), dtype=bool)  # s -> s + 2 allowed
            skip_next[:, :max(width - 2, 0)] = skip[:, 2:]
            final = (states == 2 * tl[:, None]) | (states == 2 * tl[:, None] - 1)
            for t in range(t_max - 1, -1, -1):
                if t + 1 < t_max:
                    nxt = padded_b[t + 1]
                    rec = np.logaddexp(np.logaddexp(nxt[:, :width], nxt[:, 1:width + 1]),
                                       np.where(skip_next, nxt[:, 2:], -np.inf))
                    rec += lpe[t]
                else:
                    rec = np.full((n, width), -np.inf)
                start = np.where(final, lpe[t], -np.inf)
                beta[t] = np.where((t == il - 1)[:, None], start, np.where((t < il - 1)[:, None], rec, -np.inf))
        alpha, beta = np.ascontiguousarray(alpha), None if beta is None else np.ascontiguousarray(beta)
    return Lattice(ext, skip, lpe, pre, alpha, beta, nll)


def _sample_scale(g: np.ndarray, p: CtcProblem, reduction: str) -> np.ndarray:
    """ĝ_n, the cotangent of each sample's nll: g ('sum'), g_n ('none'), g / (N·max(length, 1))
    ('mean')."""
    n = p.input_lengths.size
    g = np.asarray(g, dtype=np.float64)
    if reduction == "none":
        return np.broadcast_to(g.reshape(-1), (n,)).astype(np.float64)
    if reduction == "sum":
        return np.full(n, float(g))
    return float(g) / max(n, 1) / np.maximum(p.target_lengths, 1).astype(np.float64)  # (N = 0: no sample)


def _check_reduction(reduction: str) -> None:
    if reduction not in CTC_REDUCTIONS:
        raise ValueError(f"{reduction!r} is not a valid value for reduction")


def _reduce(nll: np.ndarray, p: CtcProblem, reduction: str) -> np.ndarray:
    if reduction == "none":
        return nll if p.batched else nll.reshape(())
    if reduction == "sum":
        return np.asarray(np.sum(nll))
    with np.errstate(invalid="ignore", divide="ignore"):
        per = nll / np.maximum(p.target_lengths, 1)
        return np.asarray(np.sum(per) / per.size)


def _zeroed(nll: np.ndarray, zero_infinity: bool) -> np.ndarray:
    return np.where(nll == np.inf, 0.0, nll) if zero_infinity else nll


def _occupancy_gradient(p: CtcProblem, lat: Lattice) -> np.ndarray:
    """∂nll_n/∂log_probs[t, n, c] = -Σ_{s: l'_s = c} exp(log α⁻ + log β + nll) for t < T_n (the
    posterior occupancy of the states of class c), 0 for t >= T_n; NaN at t < T_n for a sample
    whose nll is not finite (an impossible alignment has no derivative)."""
    t_max, n, c = p.log_probs.shape
    with np.errstate(invalid="ignore", over="ignore"):
        gamma = np.exp(lat.pre + lat.beta + lat.nll[None, :, None])
        gamma = np.where(np.isfinite(lat.pre) & np.isfinite(lat.beta), gamma, 0.0)
    onehot = (lat.ext[:, :, None] == np.arange(c)[None, None, :]).astype(np.float64)  # (N, S', C)
    grad = -np.einsum("tns,nsc->tnc", gamma, onehot)
    inside = (np.arange(t_max)[:, None] < p.input_lengths[None, :])[:, :, None]
    undefined = ~np.isfinite(lat.nll)[None, :, None]
    return np.where(inside, np.where(undefined, np.nan, grad), 0.0)


def _ctc_gradient(cotangent, log_probs, targets, input_lengths, target_lengths, blank, reduction, zero_infinity,
                  logits: bool) -> dict[str, np.ndarray]:
    _check_reduction(reduction)
    p = ctc_problem(log_probs, targets, input_lengths, target_lengths, blank)
    lat = lattice(p)
    grad = _occupancy_gradient(p, lat)
    if logits:
        inside = (np.arange(p.log_probs.shape[0])[:, None] < p.input_lengths[None, :])[:, :, None]
        with np.errstate(invalid="ignore", over="ignore"):
            grad = grad + np.where(inside, np.exp(p.log_probs), 0.0)
    scale = _sample_scale(cotangent, p, reduction)
    with np.errstate(invalid="ignore", over="ignore"):
        grad = grad * scale[None, :, None]
    if zero_infinity:
        grad = np.where((lat.nll == np.inf)[None, :, None], 0.0, grad)
    return {"log_probs": grad if p.batched else grad[:, 0, :]}


def _ctc_loss_vjp(cotangent, log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean",
                  zero_infinity=False):
    """{"log_probs": ĝ_n·∂nll_n/∂log_probs}: the derivative of the loss itself (see
    ``_occupancy_gradient``), with ĝ_n the sample's cotangent (``_sample_scale``); 0 at t >= T_n;
    0 for a sample zero_infinity zeroes."""
    return _ctc_gradient(cotangent, log_probs, targets, input_lengths, target_lengths, blank, reduction,
                         zero_infinity, logits=False)


def ctc_loss_logits_vjp(cotangent, log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean",
                        zero_infinity=False):
    """The gradient torch's CTC backward returns for ``log_probs``: the derivative of
    ctc_loss(log_softmax(x)) with respect to x at x = log_probs, with softmax(x) taken to be
    exp(log_probs) (exact when the log_probs are normalised):

        ĝ_n·(exp(log_probs[t, n, c]) - Σ_{s: l'_s = c} exp(log α⁻ + log β + nll)),  t < T_n,

    i.e. the VJP of ``ctc_loss`` plus ĝ_n·exp(log_probs) on every step inside the input length.
    The extra term lies along exp(log_probs[t, n, :]), which the backward of a log_softmax removes
    (its Jacobian annihilates it when Σ_c exp(log_probs) = 1), so both forms give the same
    gradient of the logits behind normalised log_probs. 0 at t >= T_n and for zeroed samples."""
    return _ctc_gradient(cotangent, log_probs, targets, input_lengths, target_lengths, blank, reduction,
                         zero_infinity, logits=True)


def _ctc_example(rng: np.random.Generator) -> tuple[tuple, dict]:
    z = rng.standard_normal((6, 3, 4))
    lp = z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))
    targets = np.array([[1, 1, 2], [3, 2, 1], [2, 0, 0]])
    return (lp, targets, np.array([6, 5, 4]), np.array([2, 3, 1])), {"reduction": "none", "blank": 0}


@functional(vjp=_ctc_loss_vjp, example=_ctc_example)
def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean", zero_infinity=False):
    """CTC loss: nll_n = -log Σ_{π ∈ B⁻¹(target_n), |π| = T_n} Π_t exp(log_probs[t, n, π_t]).

    Shapes: see the module docstring; the result is (N,) for 'none' ((): unbatched), else a
    scalar. 'sum' sums the nll; 'mean' averages nll_n / max(target_lengths[n], 1) over the batch
    (an empty batch: 0/0 = NaN). ``zero_infinity`` replaces an infinite nll (an impossible
    alignment) by 0, and its gradient by 0. The log_probs need not be normalised (the loss is
    computed from them as given); -inf entries are probability 0; a NaN on a state some
    alignment visits makes the sample's loss NaN, one on a state no alignment visits enters
    neither the loss nor its gradient. Raises ValueError on a call outside torch's documented
    contract (``ctc_problem``) or an unknown reduction.
    """
    _check_reduction(reduction)
    p = ctc_problem(log_probs, targets, input_lengths, target_lengths, blank)
    nll = _zeroed(lattice(p, backward=False).nll, zero_infinity)
    return _reduce(nll, p, reduction)


# -- error analysis ----------------------------------------------------------------------------------

def _lse_local(terms: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For m + log Σ exp(a_i - m) (m the largest a_i): (result, weights w_i = softmax(a)_i, the
    local rounding error in units of u): the subtractions Σ w_i·|a_i - m|, exp and the sum
    (L + 2), the log L·log Σ and the addition of m |result|."""
    stack = np.stack(terms)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        m = np.max(stack, axis=0)
        finite = np.isfinite(m)
        d = np.where(finite, stack - np.where(finite, m, 0.0), -np.inf)
        e = np.exp(d)
        s = np.sum(e, axis=0)
        w = np.where(finite, e / np.where(s > 0, s, 1.0), 0.0)
        r = np.where(finite, np.log(np.where(s > 0, s, 1.0)), 0.0)
        result = np.where(finite, m + r, m)
        local = np.where(finite, np.sum(np.where(w > 0, w * np.abs(d), 0.0), axis=0) + LIBM_ULPS + 2
                         + LIBM_ULPS * r + np.abs(result), 0.0)
    return result, w, local


def _carried_errors(values: np.ndarray, terms: list[np.ndarray], shifts: tuple[int, int],
                    forward: bool) -> np.ndarray:
    """E[t] of a log-space recursion values[t] = lse(terms)[t] + log_probs (terms are the
    predecessors' values, shifted along the states by 0 and ``shifts``): the local errors of every
    step at once (``_lse_local``, vectorised over time), then the carried part Σ w_i·E[prev, i]
    step by step (forward: from t = 0, else from the last step). 0 where values are not finite."""
    t_max = values.shape[0]
    errors = np.zeros_like(values)
    if t_max < 2:
        return errors
    _, w, local = _lse_local(terms)
    finite = np.isfinite(values)
    steps = range(1, t_max) if forward else range(t_max - 2, -1, -1)
    for t in steps:
        k, prev = (t - 1, t - 1) if forward else (t, t + 1)
        e = errors[prev]
        carried = w[0][k] * e + w[1][k] * _shift0(e, shifts[0]) + w[2][k] * _shift0(e, shifts[1])
        errors[t] = np.where(finite[t], carried + local[k] + np.abs(np.where(finite[t], values[t], 0.0)), 0.0)
    return errors


def _shift0(a: np.ndarray, k: int) -> np.ndarray:
    """``_shift`` with 0 (not -inf) filling."""
    out = np.zeros_like(a)
    if k > 0:
        out[..., k:] = a[..., :-k]
    else:
        out[..., :k] = a[..., -k:]
    return out


def ctc_loss_errors(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean",
                    zero_infinity=False, cotangent=None, u: float = 0.0) -> tuple[np.ndarray, np.ndarray | None]:
    """First-order error bounds, in units of u, of torch's log-space evaluation of the loss and
    of its gradient (either form: ``ctc_loss_logits_vjp`` or the VJP).

    The α recursion takes, per state, m + log Σ exp(a_i - m) over its (up to three) predecessors,
    then adds log_probs: the computed log α carries the weighted errors of its predecessors
    (Σ w_i·E_i ≤ max E_i, w the softmax weights of the terms) plus a local error (``_lse_local``)
    and the rounding of the final addition, |log α|:

        E_α[t, s] = Σ_i w_i·E_α[t - 1, i] + Σ w_i·|a_i - m| + L + 2 + L·log Σ + |m + log Σ| + |log α[t, s]|,

    L = LIBM_ULPS. It grows linearly in T (each step adds about |log α|, itself growing with t), so
    a long input is judged by a proportionally wider bound. nll = -(the same combination of the last
    two states); β is the mirror recursion. The gradient's exponent x = lcab + nll - log_probs,
    lcab = log Σ_{s: l'_s = c} α·β combined pairwise over the K_c states of class c, has error
    E_x = Σ w·(E_α + E_β + |log α + log β|) + K_c·(2L + 3 + |lcab|) + E_nll + |lcab + nll| + |x|,
    so q = exp(x) has relative error (exp(u·E_x) - 1)/u + L (E_x + L to first order, u = 0); the element
    ĝ·(exp(log_probs) - q) adds L on exp(log_probs), the subtraction and the product, and ĝ's own
    relative error (2 for 'mean': a division by the length and one by N).
    Output: 'none' E_nll; 'sum' Σ E_nll + 2√N·Σ|nll|; 'mean' (Σ (E_nll + |nll|)/max(len, 1) +
    2√N·Σ|nll|/max(len, 1))/N + 2·|mean|. Non-finite nll (or zeroed) samples contribute 0.
    Returns (output error, log_probs gradient error or None without ``cotangent``)."""
    _check_reduction(reduction)
    p = ctc_problem(log_probs, targets, input_lengths, target_lengths, blank)
    lat = lattice(p, backward=cotangent is not None)
    t_max, n, c = p.log_probs.shape
    width = lat.ext.shape[1]
    lib = LIBM_ULPS
    with np.errstate(invalid="ignore", over="ignore"):
        before = lat.alpha[:-1]
        skipped = np.where(lat.skip, _shift(before, 2), -np.inf)
        e_alpha = _carried_errors(lat.alpha, [before, _shift(before, 1), skipped],
                                  (1, 2), forward=True)
        rows = np.arange(n)
        il, tl = p.input_lengths, p.target_lengths
        idx = np.maximum(il - 1, 0)
        if t_max:
            last, e_last = lat.alpha[idx, rows], e_alpha[idx, rows]
        else:
            last, e_last = np.full((n, width), -np.inf), np.zeros((n, width))
        pick = lambda a, s: np.take_along_axis(a, np.clip(s, 0, width - 1)[:, None], axis=1)[:, 0]  # noqa: E731
        ends = [pick(last, 2 * tl), np.where(tl > 0, pick(last, 2 * tl - 1), -np.inf)]
        _, w, local = _lse_local(ends)
        e_nll = w[0] * pick(e_last, 2 * tl) + w[1] * pick(e_last, 2 * tl - 1) + local
        nll = lat.nll
        counted = np.isfinite(nll) & (il > 0) & ~(zero_infinity & (nll == np.inf))
        e_nll = np.where(counted, e_nll, 0.0)
        a_nll = np.where(counted, np.abs(nll), 0.0)
        if reduction == "none":
            e_out = e_nll if p.batched else e_nll.reshape(())
        elif reduction == "sum":
            e_out = np.asarray(np.sum(e_nll) + 2 * np.sqrt(max(n, 1)) * np.sum(a_nll))
        else:
            per = 1.0 / np.maximum(tl, 1)
            mean = abs(np.sum(np.where(counted, nll, 0.0) * per)) / max(n, 1)
            e_out = np.asarray((np.sum((e_nll + a_nll) * per) + 2 * np.sqrt(max(n, 1)) * np.sum(a_nll * per))
                               / max(n, 1) + 2 * mean)
        if cotangent is None:
            return e_out, None
        beta = lat.beta
        nskip = _shift(lat.skip.astype(float), -2) > 0
        after = beta[1:]
        e_beta = _carried_errors(beta, [after, _shift(after, -1), np.where(nskip, _shift(after, -2), -np.inf)],
                                 (-1, -2), forward=False)
        ab = lat.alpha + beta
        onehot = (lat.ext[:, :, None] == np.arange(c)[None, None, :]).astype(np.float64)  # (N, S', C)
        finite_ab = np.isfinite(ab)
        m_c = np.max(np.where(finite_ab[..., None] & (onehot[None] > 0), ab[..., None], -np.inf), axis=2)
        shifted = np.where(finite_ab[..., None] & (onehot[None] > 0), np.exp(ab[..., None] - np.where(
            np.isfinite(m_c), m_c, 0.0)[:, :, None, :]), 0.0)
        total = np.sum(shifted, axis=2)
        lcab = np.where(total > 0, np.where(np.isfinite(m_c), m_c, 0.0) + np.log(np.where(total > 0, total, 1.0)),
                        -np.inf)
        weight = shifted / np.where(total > 0, total, 1.0)[:, :, None, :]
        carried = np.sum(weight * np.where(finite_ab, e_alpha + e_beta + np.abs(ab), 0.0)[..., None], axis=2)
        k_c = np.sum(onehot, axis=1)[None]  # (1, N, C)
        lp = p.log_probs
        x = lcab + nll[None, :, None] - lp
        e_x = (carried + k_c * (2 * lib + 3 + np.where(np.isfinite(lcab), np.abs(lcab), 0.0)) + e_nll[None, :, None]
               + np.abs(lcab + nll[None, :, None]) + np.abs(x))
        e_x = np.where(np.isfinite(lcab), e_x, 0.0)
        q = np.where(np.isfinite(lcab), np.exp(x), 0.0)
        q_rel = (np.expm1(np.minimum(e_x * u, 700.0)) / u if u > 0 else e_x) + lib
        y = np.exp(lp)
        inside = (np.arange(t_max)[:, None] < il[None, :])[:, :, None] & counted[None, :, None]
        scale = np.abs(_sample_scale(cotangent, p, reduction))[None, :, None]
        rel_g = 2.0 if reduction == "mean" else 0.0
        e_grad = scale * (q * (q_rel + 1) + y * (lib + 1) + (q + y) * (1 + rel_g))
        e_grad = np.where(inside & np.isfinite(e_grad), e_grad, 0.0)
    return e_out, (e_grad if p.batched else e_grad[:, 0, :])
