"""The structured-loss references checked on their own terms (no torch): CTC against brute-force
enumeration of every alignment and hand-computed lattices, the adaptive log-softmax against its
own log_prob and closed forms, the fused linear cross entropy against linear + cross_entropy, every
VJP against finite differences (``reference.finite_differences.vjp_check``), and each error
analysis against the same computation carried out in float32 NumPy."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from reference import functional as RF
from reference import loss_adaptive as ad
from reference import loss_ctc as ctc
from reference.finite_differences import vjp_check
from reference.loss_classification import cross_entropy
from reference.softmax import log_softmax

# -- CTC ---------------------------------------------------------------------------------------------------


def collapse(path: tuple[int, ...], blank: int) -> tuple[int, ...]:
    """B(π): merge repeated labels, then drop blanks."""
    merged = [c for i, c in enumerate(path) if i == 0 or c != path[i - 1]]
    return tuple(c for c in merged if c != blank)


def brute_force(lp: np.ndarray, target: tuple[int, ...], length: int, blank: int) -> tuple[float, np.ndarray]:
    """(nll, ∂nll/∂lp) of one sample (lp (T, C)) by enumerating all C^T_n alignments."""
    c = lp.shape[1]
    total, occupancy = 0.0, np.zeros_like(lp)
    for path in itertools.product(range(c), repeat=length):
        if collapse(path, blank) != target:
            continue
        p = math.exp(sum(lp[t, k] for t, k in enumerate(path)))
        total += p
        for t, k in enumerate(path):
            occupancy[t, k] += p
    if total == 0:
        return math.inf, np.full_like(lp, np.nan)
    return -math.log(total), -occupancy / total


def _normalised(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 1.0) -> np.ndarray:
    return log_softmax(rng.standard_normal(shape) * scale, -1)


@pytest.mark.parametrize("seed", range(6))
def test_ctc_matches_brute_force_enumeration(seed):
    rng = np.random.default_rng(seed)
    t_max, n, c = 5, 3, 3
    blank = int(rng.integers(c))
    lp = _normalised(rng, (t_max, n, c)) if seed % 2 else rng.standard_normal((t_max, n, c))  # unnormalised too
    labels = [k for k in range(c) if k != blank]
    targets = np.array([[labels[0], labels[0], labels[1]], [labels[1], labels[0], labels[0]], [labels[1]] * 3])
    tl, il = np.array([3, 2, int(rng.integers(0, 4))]), np.array([5, 4, int(rng.integers(0, 6))])
    nll = ctc.ctc_loss(lp, targets, il, tl, blank=blank, reduction="none")
    grad = RF.vjp("ctc_loss", lp, targets, il, tl, blank=blank, reduction="none", cotangent=np.ones(n))["log_probs"]
    for i in range(n):
        want, want_grad = brute_force(lp[:, i], tuple(targets[i, :tl[i]]), int(il[i]), blank)
        assert nll[i] == pytest.approx(want, rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(grad[:il[i], i], want_grad[:il[i]], rtol=1e-10, atol=1e-12)
        assert np.all(grad[il[i]:, i] == 0)


def test_ctc_hand_computed_lattice():
    """T = 2, one label a, blank b: p = y0(a)·y1(a) + y0(a)·y1(b) + y0(b)·y1(a); a repeated label
    a a needs a b in between (T = 3: only a b a)."""
    y = np.array([[0.6, 0.4], [0.3, 0.7], [0.5, 0.5]])  # columns: blank 0, label 1
    lp = np.log(y)[:, None, :]
    p = y[0, 1] * y[1, 1] + y[0, 1] * y[1, 0] + y[0, 0] * y[1, 1]
    assert ctc.ctc_loss(lp[:2], np.array([[1]]), [2], [1], reduction="sum") == pytest.approx(-math.log(p))
    assert ctc.ctc_loss(lp, np.array([[1, 1]]), [3], [2], reduction="sum") == pytest.approx(
        -math.log(y[0, 1] * y[1, 0] * y[2, 1]))
    assert ctc.ctc_loss(lp[:2], np.array([[1, 1]]), [2], [2], reduction="sum") == math.inf  # needs 3 steps
    # An empty target: the all-blank path; an empty input aligns only the empty target.
    assert ctc.ctc_loss(lp, np.zeros((1, 0), np.int64), [3], [0], reduction="sum") == pytest.approx(
        -np.log(y[:, 0]).sum())
    assert ctc.ctc_loss(lp, np.zeros((1, 0), np.int64), [0], [0], reduction="sum") == 0.0
    assert ctc.ctc_loss(lp, np.array([[1]]), [0], [1], reduction="sum") == math.inf


def test_ctc_reductions_forms_and_zero_infinity():
    rng = np.random.default_rng(1)
    lp = _normalised(rng, (6, 3, 4))
    padded = np.array([[1, 2, 2, 3], [3, 0, 0, 0], [2, 2, 0, 0]])
    tl, il = np.array([3, 1, 2]), np.array([6, 5, 2])  # the last sample cannot align 2 2 in 2 steps
    none = ctc.ctc_loss(lp, padded, il, tl, reduction="none")
    assert np.isinf(none[2]) and np.all(np.isfinite(none[:2]))
    concatenated = np.array([1, 2, 2, 3, 2, 2])
    np.testing.assert_array_equal(ctc.ctc_loss(lp, concatenated, il, tl, reduction="none"), none)
    zeroed = ctc.ctc_loss(lp, padded, il, tl, reduction="none", zero_infinity=True)
    np.testing.assert_array_equal(zeroed, [none[0], none[1], 0.0])
    assert ctc.ctc_loss(lp, padded, il, tl, reduction="mean", zero_infinity=True) == pytest.approx(
        (none[0] / 3 + none[1] / 1 + 0.0) / 3)
    assert ctc.ctc_loss(lp, padded, il, tl, reduction="sum", zero_infinity=True) == pytest.approx(none[0] + none[1])
    grad = RF.vjp("ctc_loss", lp, padded, il, tl, reduction="sum", cotangent=np.array(1.0))["log_probs"]
    assert np.all(np.isnan(grad[:2, 2])) and np.all(grad[2:, 2] == 0)
    grad = RF.vjp("ctc_loss", lp, padded, il, tl, reduction="sum", zero_infinity=True,
                  cotangent=np.array(1.0))["log_probs"]
    assert np.all(grad[:, 2] == 0) and np.all(np.isfinite(grad))
    # Unbatched: (T, C) with a 1-d (concatenated) target or a (1, S) padded one.
    single = ctc.ctc_loss(lp[:, 0], np.array([1, 2, 2]), 6, 3, reduction="none")
    assert single.shape == () and single == pytest.approx(none[0])
    assert ctc.ctc_loss(lp[:, 0], padded[:1], [6], [3], reduction="none") == pytest.approx(none[0])


@pytest.mark.parametrize(("change", "match"), [
    ({"targets": np.array([[1, 0]])}, "blank"), ({"targets": np.array([[1, 4]])}, "outside"),
    ({"blank": 4}, "blank"), ({"input_lengths": [7]}, "input_lengths"), ({"target_lengths": [3]}, "exceed"),
    ({"targets": np.array([1, 2, 3])}, "concatenated"), ({"input_lengths": [2, 2]}, "batch_size"),
    ({"reduction": "avg"}, "reduction"), ({"input_lengths": np.array([2.0])}, "integral")])
def test_ctc_rejects_what_the_documentation_forbids(change, match):
    call = {"log_probs": np.zeros((6, 1, 4)), "targets": np.array([[1, 2]]), "input_lengths": [6],
            "target_lengths": [2], "blank": 0, "reduction": "mean"}
    call.update(change)
    with pytest.raises(ValueError, match=match):
        ctc.ctc_loss(**call)


def test_ctc_vjp_matches_finite_differences_and_torchs_form_is_the_log_softmax_chain():
    """The VJP agrees with finite differences; ``ctc_loss_logits_vjp`` equals the chain rule
    through log_softmax at normalised log_probs (the gradient of the logits behind them)."""
    rng = np.random.default_rng(3)
    z = rng.standard_normal((7, 2, 4)) * 2
    lp = log_softmax(z, -1)
    targets, il, tl = np.array([[1, 1, 3], [2, 3, 0]]), np.array([7, 5]), np.array([3, 2])
    for reduction in ("none", "sum", "mean"):
        g = rng.standard_normal(2) if reduction == "none" else np.array(rng.standard_normal())
        grads = RF.vjp("ctc_loss", lp, targets, il, tl, reduction=reduction, cotangent=g)

        def forward(arrays, reduction=reduction):
            return {"out": ctc.ctc_loss(arrays["log_probs"], targets, il, tl, reduction=reduction)}

        assert vjp_check(forward, {"log_probs": lp}, {"out": g}, grads).ok()
        chained = RF.vjp("log_softmax", z, -1, cotangent=grads["log_probs"])["input"]
        torch_form = ctc.ctc_loss_logits_vjp(g, lp, targets, il, tl, reduction=reduction)["log_probs"]
        np.testing.assert_allclose(torch_form, chained, atol=1e-12)
        scale = ctc._sample_scale(g, ctc.ctc_problem(lp, targets, il, tl), reduction)[None, :, None]
        inside = np.arange(7)[:, None, None] < il[None, :, None]
        np.testing.assert_allclose(torch_form - grads["log_probs"], np.exp(lp) * inside * scale, atol=1e-12)


def _ctc_float32(lp: np.ndarray, ext: np.ndarray, skip: np.ndarray, il: np.ndarray, tl: np.ndarray) -> np.ndarray:
    """nll of torch's CPU recursion (max-shifted log-sum-exp, then + log_probs) carried out in
    float32."""
    f = np.float32
    t_max, n, _ = lp.shape
    width = ext.shape[1]
    lpe = np.take_along_axis(lp.astype(f), np.broadcast_to(ext[None], (t_max, n, width)), axis=2)
    states = np.arange(width)[None, :]
    lpe = np.where(states <= 2 * tl[:, None], lpe, f(-np.inf))
    alpha = np.full((t_max, n, width), -np.inf, dtype=f)
    alpha[0, :, :2] = lpe[0, :, :2]
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        for t in range(1, t_max):
            prev = alpha[t - 1]
            a = np.stack([prev, np.pad(prev, ((0, 0), (1, 0)), constant_values=-np.inf)[:, :width],
                          np.where(skip, np.pad(prev, ((0, 0), (2, 0)), constant_values=-np.inf)[:, :width], -np.inf)])
            m = a.max(axis=0)
            m0 = np.where(np.isfinite(m), m, f(0))
            alpha[t] = (np.log(np.exp(a - m0).sum(axis=0)) + m0 + lpe[t]).astype(f)
        last = alpha[il - 1, np.arange(n)]
        before = np.take_along_axis(last, np.maximum(2 * tl - 1, 0)[:, None], 1)[:, 0]
        ends = np.stack([np.take_along_axis(last, (2 * tl)[:, None], 1)[:, 0], np.where(tl > 0, before, -np.inf)])
        m = ends.max(axis=0)
        return -(np.log(np.exp(ends - m).sum(axis=0)) + m).astype(np.float64)


def test_ctc_error_bound_covers_a_float32_recursion_and_grows_with_t():
    rng = np.random.default_rng(5)
    u = 2.0 ** -24
    bounds = []
    for t_max in (12, 48):
        lp = _normalised(rng, (t_max, 4, 6), 3.0).astype(np.float32).astype(np.float64)
        targets = rng.integers(1, 6, size=(4, 8))
        il, tl = np.full(4, t_max), np.array([8, 5, 3, 1])
        p = ctc.ctc_problem(lp, targets, il, tl)
        lat = ctc.lattice(p, backward=False)
        err, _ = ctc.ctc_loss_errors(lp, targets, il, tl, reduction="none", u=u)
        got = _ctc_float32(lp, lat.ext, lat.skip, il, tl)
        assert np.all(np.abs(got - lat.nll) <= u * (err + np.abs(lat.nll)))
        bounds.append(np.mean(err / np.abs(lat.nll)))
    assert bounds[1] > 2 * bounds[0]  # the relative bound grows with T


# -- adaptive log-softmax -----------------------------------------------------------------------------------

def _adaptive_model(rng: np.random.Generator, d: int = 6, n_classes: int = 10, cutoffs=(3, 7), div: float = 2.0,
                    bias: bool = True):
    sizes = ad.cluster_sizes(d, n_classes, cutoffs, div)
    head = rng.standard_normal((cutoffs[0] + len(cutoffs), d))
    tail = [(rng.standard_normal((h, d)), rng.standard_normal((o, h))) for h, o in sizes]
    return head, tail, list(cutoffs), rng.standard_normal(head.shape[0]) if bias else None


def test_cluster_sizes_follow_torchs_floor_division_and_cutoffs_rule():
    assert ad.cluster_sizes(10, 20, [5, 12], 4.0) == [(2, 7), (0, 8)]
    assert ad.cluster_sizes(1, 3, [1], 0.1) == [(9, 2)]  # 1 // 0.1 == 9.0 in floating point
    assert ad.cluster_sizes(3, 10, [3, 6], 0.5) == [(6, 3), (12, 4)]
    for bad in ([], [3, 3], [5, 2], [0, 4], [10], [2.5]):
        with pytest.raises(ValueError):
            ad.cluster_sizes(4, 10, bad, 4.0)
    for div in (0.0, -2.0):
        with pytest.raises(ValueError):
            ad.cluster_sizes(4, 10, [3], div)


def test_adaptive_log_prob_is_a_distribution_and_forward_picks_it():
    rng = np.random.default_rng(0)
    head, tail, cutoffs, bias = _adaptive_model(rng)
    x = rng.standard_normal((5, 6))
    lp = ad.adaptive_log_prob(x, head, tail, cutoffs, bias)
    np.testing.assert_allclose(np.exp(lp).sum(axis=1), 1.0, rtol=1e-13)
    target = np.array([0, 2, 3, 7, 9])  # shortlist, last shortlist class, first of each cluster, last class
    out, loss = ad.adaptive_log_softmax_with_loss(x, target, head, tail, cutoffs, bias)
    np.testing.assert_allclose(out, lp[np.arange(5), target], rtol=1e-14)
    assert loss == pytest.approx(-out.mean())
    np.testing.assert_array_equal(ad.adaptive_predict(x, head, tail, cutoffs, bias), lp.argmax(axis=1))
    single, single_loss = ad.adaptive_log_softmax_with_loss(x[1], np.array(2), head, tail, cutoffs, bias)
    assert single.shape == () and single == pytest.approx(lp[1, 2]) and single_loss == pytest.approx(-lp[1, 2])
    empty, empty_loss = ad.adaptive_log_softmax_with_loss(x[:0], target[:0], head, tail, cutoffs, bias)
    assert empty.shape == (0,) and np.isnan(empty_loss)


def test_adaptive_closed_form_with_zero_weights():
    """All-zero weights: the head is uniform over shortlist + clusters, each cluster uniform."""
    rng = np.random.default_rng(1)
    head, tail, cutoffs, _ = _adaptive_model(rng, n_classes=10, cutoffs=(3, 7))
    zero = [(np.zeros_like(p), np.zeros_like(o)) for p, o in tail]
    lp = ad.adaptive_log_prob(rng.standard_normal((2, 6)), np.zeros_like(head), zero, cutoffs)
    head_size = 3 + 2
    want = np.r_[np.full(3, -math.log(head_size)), np.full(4, -math.log(head_size) - math.log(4)),
                 np.full(3, -math.log(head_size) - math.log(3))]
    np.testing.assert_allclose(lp, np.broadcast_to(want, (2, 10)), rtol=1e-14)


def _nested_check(name: str, args: tuple, kwargs: dict, cotangent, seed: int = 0) -> None:
    """vjp_check over every float array of a call, nested ones (tail weights) included."""
    leaves: dict[str, np.ndarray] = {}

    def walk(prefix, value):
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            leaves[prefix] = value
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(f"{prefix}[{i}]", v)

    for i, a in enumerate(args):
        walk(f"a{i}", a)
    for k, v in kwargs.items():
        walk(k, v)

    def rebuild(prefix, value, arrays):
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            return arrays[prefix]
        if isinstance(value, (list, tuple)):
            return type(value)(rebuild(f"{prefix}[{i}]", v, arrays) for i, v in enumerate(value))
        return value

    entry = RF.entries()[name]

    def forward(arrays):
        out = entry.forward(*[rebuild(f"a{i}", a, arrays) for i, a in enumerate(args)],
                            **{k: rebuild(k, v, arrays) for k, v in kwargs.items()})
        return {f"out{i}": np.asarray(o) for i, o in enumerate(out if isinstance(out, tuple) else (out,))}

    cots = {f"out{i}": np.asarray(c) for i, c in enumerate(cotangent if isinstance(cotangent, tuple) else (cotangent,))}
    grads = entry.vjp(cotangent, *args, **kwargs)
    names = list(__import__("inspect").signature(entry.forward).parameters)
    flat: dict[str, np.ndarray] = {}

    def flatten(prefix, value):
        if isinstance(value, np.ndarray):
            flat[prefix] = value
        else:
            for i, v in enumerate(value):
                flatten(f"{prefix}[{i}]", v)

    for key, g in grads.items():
        position = names.index(key)
        flatten(f"a{position}" if position < len(args) else key, g)
    assert set(flat) <= set(leaves)
    check = vjp_check(forward, leaves, cots, flat, rng=np.random.default_rng(seed))
    assert check.ok(), check


def test_adaptive_vjps_match_finite_differences():
    rng = np.random.default_rng(2)
    head, tail, cutoffs, bias = _adaptive_model(rng, d=5, n_classes=9, cutoffs=(2, 4), div=1.0)
    x, target = rng.standard_normal((6, 5)), np.array([0, 1, 2, 3, 5, 8])
    _nested_check("adaptive_log_softmax_with_loss", (x, target, head, tail, cutoffs), {"head_bias": bias},
                  (rng.standard_normal(6), np.array(0.7)))
    _nested_check("adaptive_log_prob", (x, head, tail, cutoffs), {"head_bias": bias}, rng.standard_normal((6, 9)))


def test_adaptive_error_bound_covers_a_float32_evaluation():
    rng = np.random.default_rng(4)
    head, tail, cutoffs, bias = _adaptive_model(rng, d=8, n_classes=12, cutoffs=(4, 8), div=2.0)
    x = rng.standard_normal((16, 8)) * 3
    f32 = lambda a: a.astype(np.float32).astype(np.float64)  # noqa: E731
    head, bias, x = f32(head), f32(bias), f32(x)
    tail = [(f32(p), f32(o)) for p, o in tail]
    exact = ad.adaptive_log_prob(x, head, tail, cutoffs, bias)
    err = ad.adaptive_errors(x, head, tail, cutoffs, bias, u=2.0 ** -24)["output"]
    h32 = (x.astype(np.float32) @ head.T.astype(np.float32) + bias.astype(np.float32))
    got = np.empty_like(exact)
    hz = h32 - h32.max(axis=1, keepdims=True)
    head_lp = hz - np.log(np.exp(hz).sum(axis=1, keepdims=True))
    got[:, :4] = head_lp[:, :4]
    for i, ((p, o), lo, hi) in enumerate(zip(tail, cutoffs, [8, 12])):
        z = (x.astype(np.float32) @ p.T.astype(np.float32)) @ o.T.astype(np.float32)
        z = z - z.max(axis=1, keepdims=True)
        got[:, lo:hi] = (z - np.log(np.exp(z).sum(axis=1, keepdims=True))) + head_lp[:, 4 + i:5 + i]
    assert np.all(np.abs(got - exact) <= 2.0 ** -24 * (err + np.abs(exact)))


# -- linear cross entropy -------------------------------------------------------------------------------------

def test_linear_cross_entropy_is_cross_entropy_of_the_linear_logits():
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((4, 3)), rng.standard_normal((5, 2, 3)), rng.standard_normal((5, 2))
    target = np.array([[0, 4], [2, -100], [1, 3], [4, 0]])
    logits = np.einsum("nd,ckd->nck", x, w) + b
    for reduction in ("none", "sum", "mean"):
        got = ad.linear_cross_entropy(x, w, target, linear_bias=b, reduction=reduction, label_smoothing=0.2)
        np.testing.assert_allclose(got, cross_entropy(logits, target, reduction=reduction, label_smoothing=0.2),
                                   rtol=1e-14)
    # Unbatched, probabilities, weights and an ignored class.
    probs = np.array([0.2, 0.3, 0.5])
    w2 = rng.standard_normal((3, 3))
    assert ad.linear_cross_entropy(x[0], w2, probs) == pytest.approx(
        -np.sum(probs * log_softmax(w2 @ x[0], 0)))
    assert ad.linear_cross_entropy(x, w2, np.array([1, 1, 2, 1]), ignore_index=1, weight=np.array([1.0, 2.0, 3.0]))\
        == pytest.approx(-log_softmax(w2 @ x[2], 0)[2])
    assert np.isnan(ad.linear_cross_entropy(x, w2, np.array([1, 1, 1, 1]), ignore_index=1))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"label_smoothing": 1.5}, "label_smoothing"), ({"label_smoothing": -0.1}, "label_smoothing"),
    ({"options": {"acc_policy": "fast"}}, "acc_policy"), ({"options": {"batch_chunk_size": 0}}, "batch_chunk_size"),
    ({"options": {"chunking_method": "aspect_ratio:0"}}, "chunking_method"),
    ({"target": np.full((2, 3), 1 / 3), "ignore_index": -1}, "ignore_index"),
    ({"input": np.zeros((1, 2, 4))}, "dimensionality"), ({"linear_bias": np.zeros(4)}, "linear_bias")])
def test_linear_cross_entropy_rejects_what_torch_documents(kwargs, match):
    call = {"input": np.zeros((2, 4)), "linear_weight": np.ones((3, 4)), "target": np.array([0, 2])}
    call.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ad.linear_cross_entropy(**call)


@pytest.mark.parametrize("probabilities", [False, True])
def test_linear_cross_entropy_vjp_matches_finite_differences(probabilities):
    rng = np.random.default_rng(7)
    x, w, b = rng.standard_normal((4, 3)), rng.standard_normal((5, 3)), rng.standard_normal(5)
    target = rng.random((4, 5)) if probabilities else np.array([0, 4, -1, 2])
    kwargs = {"linear_bias": b, "weight": rng.uniform(-0.5, 2, 5), "label_smoothing": 0.3, "reduction": "mean",
              "ignore_index": None if probabilities else -1}
    g = np.array(1.3)
    grads = RF.vjp("linear_cross_entropy", x, w, target, cotangent=g, **kwargs)
    inputs = {"input": x, "linear_weight": w, "linear_bias": b, **({"target": target} if probabilities else {})}

    def forward(arrays):
        call = {**kwargs, "linear_bias": arrays["linear_bias"]}
        return {"out": ad.linear_cross_entropy(arrays["input"], arrays["linear_weight"], arrays.get("target", target),
                                               **call)}

    assert set(grads) == set(inputs)
    assert vjp_check(forward, inputs, {"out": g}, grads).ok()


def test_linear_cross_entropy_error_bound_covers_a_float32_evaluation():
    rng = np.random.default_rng(9)
    f32 = lambda a: a.astype(np.float32).astype(np.float64)  # noqa: E731
    x, w, b = f32(rng.standard_normal((32, 16)) * 2), f32(rng.standard_normal((10, 16))), f32(rng.standard_normal(10))
    target = rng.integers(0, 10, 32)
    exact = ad.linear_cross_entropy(x, w, target, linear_bias=b, reduction="none")
    err = ad.linear_cross_entropy_errors(x, w, target, linear_bias=b, reduction="none", u=2.0 ** -24)["output"]
    z = x.astype(np.float32) @ w.T.astype(np.float32) + b.astype(np.float32)
    z = z - z.max(axis=1, keepdims=True)
    got = -(z - np.log(np.exp(z).sum(axis=1, keepdims=True)))[np.arange(32), target]
    assert np.all(np.abs(got - exact) <= 2.0 ** -24 * (err + np.abs(exact)))
