"""The loss references checked on their own terms (no torch): values worked out by hand or in
closed form, identities between losses, the deprecated flag mapping, the kink conventions, and every
VJP against finite differences (``reference.finite_differences.vjp_check``) in float64."""

from __future__ import annotations

import inspect
import itertools
import math

import numpy as np
import pytest

from reference import functional as RF
from reference import loss
from reference import loss_binary as binary
from reference import loss_classification as cls
from reference import loss_likelihood as likelihood
from reference import loss_margin as margin
from reference import loss_triplet as triplet
from reference.finite_differences import vjp_check
from reference.softmax import softmax


def assert_vjp_ok(name: str, *args, seed: int = 0, **kwargs) -> dict[str, np.ndarray]:
    """The registered VJP of ``reference.functional.<name>`` at (args, kwargs), for a random
    cotangent, agrees with finite differences of its forward (every float array argument it
    differentiates); returns the gradients."""
    entry = RF.entries()[name]
    bound = inspect.signature(entry.forward).bind(*args, **kwargs)
    arrays = {k: v for k, v in bound.arguments.items() if isinstance(v, np.ndarray) and v.dtype.kind == "f"}

    def forward(inputs):
        call = inspect.signature(entry.forward).bind(*args, **kwargs)
        call.arguments.update(inputs)
        return {"out": np.asarray(entry.forward(*call.args, **call.kwargs))}

    rng = np.random.default_rng(seed)
    g = rng.standard_normal(forward(arrays)["out"].shape)
    grads = RF.vjp(name, *args, cotangent=g, **kwargs)
    check = vjp_check(forward, arrays, {"out": g}, grads, rng=rng)
    assert check.ok(), (name, check)
    return grads


# -- the deprecated flags -------------------------------------------------------------------------

FLAGS = (None, True, False)


@pytest.mark.parametrize(("size_average", "reduce"), list(itertools.product(FLAGS, FLAGS)))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_every_flag_combination_maps_to_a_reduction(size_average, reduce, reduction):
    """Either flag given overrides ``reduction``: reduce=False → 'none', else size_average=False →
    'sum', else 'mean' (None counts as True); neither given: ``reduction`` itself."""
    got = loss.legacy_reduction(size_average, reduce, reduction)
    if size_average is None and reduce is None:
        assert got == reduction
    elif reduce is False:
        assert got == "none"
    else:
        assert got == ("sum" if size_average is False else "mean")


def test_unknown_reductions_are_rejected_and_batchmean_only_where_valid():
    with pytest.raises(ValueError):
        loss.legacy_reduction(None, None, "average")
    with pytest.raises(ValueError):
        loss.legacy_reduction(None, None, "batchmean")
    assert loss.legacy_reduction(None, None, "batchmean", loss.KL_REDUCTIONS) == "batchmean"
    with pytest.raises(ValueError):
        loss.mse_loss(np.ones(2), np.ones(2), reduction="Mean")
    # the functionals take the flags as torch does: size_average=False means 'sum'
    assert loss.l1_loss(np.ones(3), np.zeros(3), size_average=False) == 3.0
    assert loss.l1_loss(np.ones(3), np.zeros(3), False, None, "mean") == 3.0  # positional, torch's order
    np.testing.assert_array_equal(loss.l1_loss(np.ones(3), np.zeros(3), reduce=False), [1.0, 1.0, 1.0])


def test_every_loss_is_registered_with_torch_argument_order():
    expected = {
        "mse_loss": ["input", "target", "size_average", "reduce", "reduction", "weight"],
        "huber_loss": ["input", "target", "reduction", "delta", "weight"],
        "cross_entropy": ["input", "target", "weight", "size_average", "ignore_index", "reduce", "reduction",
                          "label_smoothing"],
        "gaussian_nll_loss": ["input", "target", "var", "full", "eps", "reduction"],
        "poisson_nll_loss": ["input", "target", "log_input", "full", "size_average", "eps", "reduce", "reduction"],
        "triplet_margin_loss": ["anchor", "positive", "negative", "margin", "p", "eps", "swap", "size_average",
                                "reduce", "reduction"],
        "triplet_margin_with_distance_loss": ["anchor", "positive", "negative", "distance_function", "margin",
                                              "swap", "reduction"],
    }
    for name, params in expected.items():
        assert list(inspect.signature(getattr(RF, name)).parameters) == params, name


# -- MSELoss, L1Loss -------------------------------------------------------------------------------


def test_mse_hand_values():
    x, t = np.array([1.0, 2.0, 3.0]), np.array([0.0, 0.0, 1.0])  # squares 1, 4, 4
    np.testing.assert_array_equal(loss.mse_loss(x, t, reduction="none"), [1.0, 4.0, 4.0])
    assert loss.mse_loss(x, t, reduction="sum") == 9.0
    assert loss.mse_loss(x, t) == 3.0
    grads = RF.vjp("mse_loss", x, t, cotangent=np.array(1.0))
    np.testing.assert_allclose(grads["input"], np.array([2.0, 4.0, 4.0]) / 3)
    np.testing.assert_allclose(grads["target"], -grads["input"])


def test_mse_broadcasting_sums_gradients_over_broadcast_dims():
    x, t = np.array([[1.0], [2.0]]), np.array([0.0, 1.0, 3.0])  # broadcast to (2, 3)
    np.testing.assert_array_equal(loss.mse_loss(x, t, reduction="none"), [[1.0, 0.0, 4.0], [4.0, 1.0, 1.0]])
    grads = RF.vjp("mse_loss", x, t, reduction="sum", cotangent=np.array(1.0))
    np.testing.assert_array_equal(grads["input"], [[2 * (1 + 0 - 2)], [2 * (2 + 1 - 1)]])
    np.testing.assert_array_equal(grads["target"], [-2 * (1 + 2), -2 * (0 + 1), -2 * (-2 - 1)])
    with pytest.raises(ValueError):
        loss.mse_loss(np.ones(3), np.ones(4))


def test_weighted_forms_follow_torch_normalisers():
    """mse_loss and l1_loss with a weight divide 'mean' by Σ w; huber_loss by the element count."""
    x, t, w = np.array([1.0, 2.0, 0.0]), np.zeros(3), np.array([1.0, 3.0, 4.0])
    assert loss.mse_loss(x, t, weight=w) == (1 + 12) / 8
    assert loss.l1_loss(x, t, weight=w, reduction="sum") == 7.0
    assert loss.huber_loss(x, t, weight=w) == (0.5 * 1 + 3 * 1.5) / 3
    with pytest.raises(ValueError):
        loss.mse_loss(x, t, weight=np.ones(2))
    for name in ("mse_loss", "l1_loss", "huber_loss"):
        for reduction in ("none", "sum", "mean"):
            assert_vjp_ok(name, x + 0.1, np.array([0.3, 0.9, 2.5]), reduction=reduction, weight=w)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("x_shape,t_shape", [((3, 4), (3, 4)), ((2, 1, 3), (4, 1)), ((), ())])
def test_regression_vjps_match_fd(reduction, x_shape, t_shape):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(x_shape)
    t = x + np.where(rng.random(x_shape) < 0.5, -1.0, 1.0) * rng.uniform(0.2, 0.8, x_shape) if x_shape == t_shape \
        else rng.standard_normal(t_shape)
    assert_vjp_ok("mse_loss", x, t, reduction=reduction)
    if x_shape == t_shape:  # away from the kinks
        assert_vjp_ok("l1_loss", x, t, reduction=reduction)
        assert_vjp_ok("smooth_l1_loss", x, t, reduction=reduction, beta=3.0)
        assert_vjp_ok("huber_loss", x, t, reduction=reduction, delta=0.1)


def test_l1_hand_values_and_kink():
    x, t = np.array([1.0, -2.0, 3.0]), np.array([0.0, 0.0, 3.0])
    np.testing.assert_array_equal(loss.l1_loss(x, t, reduction="none"), [1.0, 2.0, 0.0])
    assert loss.l1_loss(x, t) == 1.0
    grads = RF.vjp("l1_loss", x, t, reduction="sum", cotangent=np.array(3.0))
    np.testing.assert_array_equal(grads["input"], [3.0, -3.0, 0.0])  # sign(0) = 0 at x = t
    np.testing.assert_array_equal(grads["target"], -grads["input"])


# -- SmoothL1Loss, HuberLoss -----------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_smooth_l1_branches_meet_at_beta(beta):
    d = np.array([0.0, beta / 2, beta, 3 * beta, -beta])
    terms = loss.smooth_l1_terms(d, beta)
    np.testing.assert_allclose(terms, [0.0, beta / 8, beta / 2, 2.5 * beta, beta / 2])
    np.testing.assert_array_equal(loss.smooth_l1_derivative(d, beta), [0.0, 0.5, 1.0, 1.0, -1.0])


def test_smooth_l1_with_beta_zero_is_l1_and_negative_beta_is_rejected():
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal(7), rng.standard_normal(7)
    np.testing.assert_array_equal(loss.smooth_l1_loss(x, t, reduction="none", beta=0.0),
                                  loss.l1_loss(x, t, reduction="none"))
    with pytest.raises(ValueError):
        loss.smooth_l1_loss(x, t, beta=-1.0)


@pytest.mark.parametrize("delta", [0.25, 1.0, 2.0])
def test_huber_is_delta_times_smooth_l1_and_continuous(delta):
    rng = np.random.default_rng(1)
    x, t = rng.standard_normal(9) * 3, rng.standard_normal(9)
    np.testing.assert_allclose(loss.huber_loss(x, t, reduction="none", delta=delta),
                               delta * loss.smooth_l1_loss(x, t, reduction="none", beta=delta), rtol=1e-14)
    # hand values: 0.5·d² inside, δ·(|d| - δ/2) outside; value and slope meet at |d| = δ
    d = np.array([0.0, delta / 2, delta, -3 * delta])
    np.testing.assert_allclose(loss.huber_terms(d, delta), [0.0, delta**2 / 8, delta**2 / 2, 2.5 * delta**2])
    np.testing.assert_allclose(loss.huber_derivative(d, delta), [0.0, delta / 2, delta, -delta])
    below, above = np.nextafter(delta, 0.0), np.nextafter(delta, 2 * delta)
    assert abs(loss.huber_derivative(np.array(below), delta) - loss.huber_derivative(np.array(above), delta)) < 1e-15
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError):
            loss.huber_loss(x, t, delta=bad)


# -- KLDivLoss --------------------------------------------------------------------------------------


def test_kl_div_hand_values_and_batchmean():
    t = np.array([[0.5, 0.5, 0.0], [0.25, 0.25, 0.5]])
    x = np.log(np.full((2, 3), 1 / 3))
    terms = loss.kl_div_terms(x, t, False)
    np.testing.assert_allclose(terms[0], [0.5 * math.log(1.5), 0.5 * math.log(1.5), 0.0])  # 0·log 0 = 0
    np.testing.assert_allclose(loss.kl_div(x, t, reduction="batchmean"), terms.sum() / 2)
    np.testing.assert_allclose(loss.kl_div(x, t), terms.sum() / 6)
    np.testing.assert_allclose(loss.kl_div(x, np.log(np.where(t > 0, t, 1.0)), reduction="none", log_target=True)[1],
                               terms[1])
    assert loss.kl_div(x[0, 0], t[0, 0], reduction="batchmean") == loss.kl_div(x[0, 0], t[0, 0], reduction="sum")
    grads = RF.vjp("kl_div", x, t, reduction="sum", cotangent=np.array(1.0))
    assert np.isnan(grads["target"][0, 2]) and np.isfinite(grads["target"][1]).all()  # no derivative at t = 0
    for log_target in (False, True):
        assert_vjp_ok("kl_div", x + 0.3, np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]]), reduction="batchmean",
                      log_target=log_target)


# -- CrossEntropyLoss, NLLLoss -----------------------------------------------------------------------


def test_cross_entropy_of_uniform_logits_is_log_classes():
    x = np.full((3, 5), 0.7)
    np.testing.assert_allclose(cls.cross_entropy(x, np.array([0, 4, 2]), reduction="none"), math.log(5), rtol=1e-14)
    np.testing.assert_allclose(cls.cross_entropy(x[0], np.array(3)), math.log(5), rtol=1e-14)


def test_one_hot_probabilities_equal_class_indices():
    rng = np.random.default_rng(0)
    x, t, w = rng.standard_normal((4, 3, 2)), rng.integers(0, 3, (4, 2)), np.array([0.5, 1.0, 2.0])
    one_hot = np.moveaxis(np.eye(3)[t], -1, 1)
    for reduction in ("none", "sum"):
        for ls in (0.0, 0.3):
            np.testing.assert_allclose(cls.cross_entropy(x, one_hot, w, reduction=reduction, label_smoothing=ls),
                                       cls.cross_entropy(x, t, w, reduction=reduction, label_smoothing=ls), rtol=1e-14)
    # 'mean': class indices divide by Σ w[target], probabilities by the number of positions.
    np.testing.assert_allclose(cls.cross_entropy(x, t, w) * w[t].sum(), cls.cross_entropy(x, one_hot, w) * t.size,
                               rtol=1e-14)


def test_label_smoothing_two_classes_by_hand():
    # p = softmax([0, ln 3]) = [1/4, 3/4]; target class 1, ε = 0.2, C = 2: t' = [0.1, 0.9]
    x = np.array([[0.0, math.log(3.0)]])
    expected = 0.1 * math.log(4.0) + 0.9 * math.log(4.0 / 3.0)
    np.testing.assert_allclose(cls.cross_entropy(x, np.array([1]), reduction="sum", label_smoothing=0.2), expected)
    # class weights w = [2, 3]: l = 2·0.1·ln 4 + 3·0.9·ln(4/3); 'mean' divides by w[target] = 3
    w = np.array([2.0, 3.0])
    weighted = 2 * 0.1 * math.log(4.0) + 3 * 0.9 * math.log(4.0 / 3.0)
    np.testing.assert_allclose(cls.cross_entropy(x, np.array([1]), w, label_smoothing=0.2), weighted / 3)
    np.testing.assert_allclose(cls.cross_entropy(x, np.array([0]), reduction="sum", label_smoothing=1.0),
                               0.5 * math.log(4.0) + 0.5 * math.log(4.0 / 3.0))


def test_cross_entropy_negative_weights_and_a_negative_total():
    """#19.7: negative class weights are accepted; 'mean' divides by Σ w[target], also when it is
    negative; a sum of zero weights is 0/0 = NaN with NaN gradients at the counted positions."""
    x = np.array([[0.0, math.log(3.0)], [1.0, 1.0]])
    w = np.array([-1.0, -2.0])
    t = np.array([1, 0])
    per_position = np.array([-2 * math.log(4 / 3), -math.log(2)])
    np.testing.assert_allclose(cls.cross_entropy(x, t, w, reduction="none"), per_position)
    np.testing.assert_allclose(cls.cross_entropy(x, t, w), per_position.sum() / -3)
    assert_vjp_ok("cross_entropy", x, t, np.array([1.0, -0.5]), label_smoothing=0.3)
    zero = np.array([0.0, 1.0])
    assert np.isnan(cls.cross_entropy(x, np.array([0, 0]), zero))
    assert np.isnan(RF.vjp("cross_entropy", x, np.array([0, 0]), zero, cotangent=np.array(1.0))["input"]).all()


def test_ignore_index():
    x = np.array([[0.0, math.log(3.0)], [1.0, 2.0], [0.0, 0.0]])
    t = np.array([1, -100, 0])
    np.testing.assert_allclose(cls.cross_entropy(x, t, reduction="none"), [math.log(4 / 3), 0.0, math.log(2)])
    np.testing.assert_allclose(cls.cross_entropy(x, t), (math.log(4 / 3) + math.log(2)) / 2)
    np.testing.assert_allclose(cls.cross_entropy(x, np.array([1, 0, 0]), ignore_index=0), math.log(4 / 3))
    # all ignored: 'mean' is 0/0 = NaN, and ignored positions get no gradient
    assert np.isnan(cls.cross_entropy(x, np.full(3, -100)))
    np.testing.assert_array_equal(RF.vjp("cross_entropy", x, np.full(3, -100), cotangent=np.array(1.0))["input"], 0.0)


def test_cross_entropy_rejections():
    x = np.zeros((2, 3))
    for target, kwargs in ((np.array([0, 3]), {}), (np.array([0, -1]), {}),
                           (np.array([0, 1]), {"label_smoothing": 1.5}), (np.array([0, 1]), {"label_smoothing": -0.1}),
                           (np.full((2, 3), 1 / 3), {"ignore_index": 0}), (np.array([0, 1]), {"weight": np.ones(4)})):
        with pytest.raises(ValueError):
            cls.cross_entropy(x, target, **kwargs)
    p = np.full((2, 3), 1 / 3)  # a negative ignore_index has no effect on probability targets
    assert cls.cross_entropy(x, p, ignore_index=-1) == cls.cross_entropy(x, p)


def test_cross_entropy_vjp_is_softmax_minus_one_hot():
    rng = np.random.default_rng(3)
    x, t = rng.standard_normal((4, 5)), np.array([0, 4, 2, 2])
    grads = RF.vjp("cross_entropy", x, t, reduction="sum", cotangent=np.array(1.0))
    np.testing.assert_allclose(grads["input"], softmax(x, 1) - np.eye(5)[t], atol=1e-15)
    assert set(grads) == {"input"}


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 2, 2)])
def test_cross_entropy_vjp_matches_fd(reduction, shape):
    rng = np.random.default_rng(len(shape))
    ax = 0 if len(shape) == 1 else 1
    classes = shape[ax]
    x, w = rng.standard_normal(shape) * 2, rng.uniform(0.5, 2.0, classes)
    assert_vjp_ok("cross_entropy", x, rng.random(shape), w, reduction=reduction, label_smoothing=0.3)
    target = rng.integers(0, classes, shape[:ax] + shape[ax + 1:])
    ignore = -100
    if target.size > 1:  # a class that occurs, but not at every position
        ignore = int(target.flat[0])
        target.flat[-1] = (ignore + 1) % classes
    assert_vjp_ok("cross_entropy", x, target, w, reduction=reduction, ignore_index=ignore, label_smoothing=0.3)


def test_nll_hand_values_ignore_index_and_weights():
    x = np.array([[-1.0, -2.0, -3.0], [-4.0, -5.0, -6.0], [-7.0, -8.0, -9.0]])
    t, w = np.array([2, 0, 1]), np.array([1.0, 0.0, -2.0])
    np.testing.assert_array_equal(cls.nll_loss(x, t, reduction="none"), [3.0, 4.0, 8.0])
    np.testing.assert_array_equal(cls.nll_loss(x, t, w, reduction="none"), [-6.0, 4.0, 0.0])
    assert cls.nll_loss(x, t, w) == (-6.0 + 4.0) / (-2.0 + 1.0 + 0.0)
    np.testing.assert_array_equal(cls.nll_loss(x, t, reduction="none", ignore_index=0), [3.0, 0.0, 8.0])
    assert cls.nll_loss(x, t, ignore_index=0) == 5.5
    assert np.isnan(cls.nll_loss(x, np.full(3, 7), ignore_index=7))  # all ignored: 0/0
    grads = RF.vjp("nll_loss", x, t, w, reduction="sum", cotangent=np.array(1.0))
    np.testing.assert_array_equal(grads["input"], [[0, 0, 2.0], [-1.0, 0, 0], [0, 0, 0]])
    with pytest.raises(IndexError):
        cls.nll_loss(x, np.array([0, 3, 1]))
    assert_vjp_ok("nll_loss", x, t, w, reduction="mean", ignore_index=1)


def test_nll_equals_cross_entropy_of_log_probabilities():
    rng = np.random.default_rng(5)
    x, t, w = rng.standard_normal((3, 4, 2, 2)), rng.integers(0, 4, (3, 2, 2)), rng.uniform(0.5, 2, 4)
    for reduction in ("none", "sum", "mean"):
        np.testing.assert_allclose(cls.nll_loss(cls.log_softmax(x, 1), t, w, reduction=reduction),
                                   cls.cross_entropy(x, t, w, reduction=reduction), rtol=1e-13)


# -- BCE, BCE with logits, soft margin, multi-label soft margin ------------------------------------


def test_bce_clamps_logs_at_minus_100_and_linear_backward():
    x, t = np.array([0.0, 1.0, 0.5, 0.0]), np.array([1.0, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(binary.binary_cross_entropy(x, t, reduction="none"), [100.0, 100.0, math.log(2), 0.0])
    dx, dt = binary.bce_derivatives(x, t, None)
    np.testing.assert_allclose(dx, [-1 / binary.BCE_EPSILON, 1 / binary.BCE_EPSILON, -2.0, 0.0])
    np.testing.assert_allclose(dt, [100.0, -100.0, 0.0, 100.0])
    with pytest.raises(ValueError):
        binary.binary_cross_entropy(np.array([1.5]), np.array([0.0]))


def test_bce_with_logits_equals_bce_of_sigmoid_and_weights_positives():
    rng = np.random.default_rng(1)
    x, t = rng.standard_normal((4, 3)) * 3, rng.random((4, 3))
    np.testing.assert_allclose(binary.bce_logits_terms(x, t, None, None),
                               binary.bce_terms(softmax(np.stack([np.zeros_like(x), x]), 0)[1], t, None), rtol=1e-12)
    pw = np.array([2.0, 0.5, 3.0])
    expected = -(pw * t * np.log(binary.sigmoid(x)) + (1 - t) * np.log(binary.sigmoid(-x)))
    np.testing.assert_allclose(binary.binary_cross_entropy_with_logits(x, t, reduction="none", pos_weight=pw), expected,
                               rtol=1e-12)
    big = np.array([-1000.0, 1000.0])  # large logits of both signs stay finite and accurate
    np.testing.assert_allclose(binary.bce_logits_terms(big, np.array([1.0, 0.0]), None, None), [1000.0, 1000.0])
    np.testing.assert_allclose(binary.bce_logits_terms(big, np.array([0.0, 1.0]), None, None), [0.0, 0.0], atol=1e-300)


def test_soft_margin_is_finite_beyond_exp_overflow():
    x, y = np.array([-1000.0, 1000.0, 0.0]), np.array([1.0, 1.0, -1.0])
    np.testing.assert_allclose(binary.soft_margin_loss(x, y, reduction="none"), [1000.0, 0.0, math.log(2)],
                               atol=1e-300)
    grads = RF.vjp("soft_margin_loss", x, y, reduction="sum", cotangent=np.array(1.0))
    np.testing.assert_allclose(grads["input"], [-1.0, 0.0, 0.5], atol=1e-300)


def test_multilabel_soft_margin_is_bce_with_logits_averaged_over_classes():
    rng = np.random.default_rng(2)
    x, t, w = rng.standard_normal((3, 5)), (rng.random((3, 5)) < 0.5).astype(float), rng.random(5)
    np.testing.assert_allclose(binary.multilabel_soft_margin_loss(x, t, w, reduction="none"),
                               np.mean(binary.bce_logits_terms(x, t, np.broadcast_to(w, x.shape), None), axis=1))
    assert binary.multilabel_soft_margin_loss(x[0], t[0], w, reduction="none").shape == ()


# -- margin losses ------------------------------------------------------------------------------------


def test_margin_ranking_hand_values_and_kink_gradient():
    x1, x2, y = np.array([1.0, 2.0, 0.0]), np.array([1.0, 1.0, 1.0]), np.array([1.0, -1.0, 1.0])
    np.testing.assert_array_equal(margin.margin_ranking_loss(x1, x2, y, reduction="none"), [0.0, 1.0, 1.0])
    grads = RF.vjp("margin_ranking_loss", x1, x2, y, reduction="sum", cotangent=np.array(1.0))
    np.testing.assert_array_equal(grads["input1"], [-1.0, 1.0, -1.0])  # z = 0 at the first: the gradient passes
    np.testing.assert_array_equal(grads["input2"], -grads["input1"])
    np.testing.assert_array_equal(grads["target"], [0.0, -1.0, 1.0])


def test_hinge_embedding_hand_values_and_kink_gradient():
    x, y = np.array([0.5, 1.0, 3.0, 0.25]), np.array([1.0, -1.0, -1.0, -1.0])
    np.testing.assert_array_equal(margin.hinge_embedding_loss(x, y, reduction="none"), [0.5, 0.0, 0.0, 0.75])
    grads = RF.vjp("hinge_embedding_loss", x, y, reduction="sum", cotangent=np.array(1.0))
    np.testing.assert_array_equal(grads["input"], [1.0, -1.0, 0.0, -1.0])  # x = margin: clamp_min passes -1


def test_multilabel_margin_counts_labels_before_the_padding_and_repeats():
    x = np.array([0.1, 0.2, 0.4, 0.8])
    expected = sum(max(0.0, 1 - (x[j] - x[i])) for j in (3, 0) for i in (1, 2)) / 4
    np.testing.assert_allclose(margin.multilabel_margin_loss(x, np.array([3, 0, -1, 2]), reduction="none"), expected)
    repeated = sum(max(0.0, 1 - (x[j] - x[i])) for j in (3, 3) for i in (0, 1, 2)) / 4
    np.testing.assert_allclose(margin.multilabel_margin_loss(x, np.array([3, 3, -1, 1]), reduction="none"), repeated)
    g = RF.vjp("multilabel_margin_loss", np.array([2.0, 1.0]), np.array([0, -1]), reduction="sum",
               cotangent=np.array(1.0))["input"]
    np.testing.assert_array_equal(g, [0.0, 0.0])  # z = 0 exactly: no gradient
    with pytest.raises(ValueError):
        margin.multilabel_margin_loss(x, np.array([0, -1, 4, 0]))  # torch checks after the -1 too


def test_multi_margin_hand_values_p_and_weights():
    x, t = np.array([[0.1, 0.2, 0.4, 0.8]]), np.array([3])
    z = 1.0 - 0.8 + np.array([0.1, 0.2, 0.4])
    np.testing.assert_allclose(margin.multi_margin_loss(x, t, reduction="none"), [z.sum() / 4])
    w = np.array([1.0, 1.0, 1.0, -2.0])
    np.testing.assert_allclose(margin.multi_margin_loss(x, t, 2, 1.0, w, reduction="none"), [-2 * (z**2).sum() / 4])
    g = RF.vjp("multi_margin_loss", np.array([[1.0, 0.0, 0.5]]), np.array([0]), reduction="sum",
               cotangent=np.array(1.0))["input"]
    np.testing.assert_allclose(g, [[-1 / 3, 0.0, 1 / 3]])  # z = 0 at class 1: no gradient
    with pytest.raises(ValueError):
        margin.multi_margin_loss(x, t, 3)


def test_cosine_embedding_zero_vectors_and_margins():
    x1 = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    x2 = np.array([[1.0, 0.0], [3.0, 4.0], [-1.0, -1.0]])
    y = np.array([1.0, 1.0, -1.0])
    np.testing.assert_allclose(margin.cosine_embedding_loss(x1, x2, y, reduction="none"), [0.0, 1.0, 0.0], atol=1e-11)
    np.testing.assert_allclose(margin.cosine_embedding_loss(x1, x2, -y, -0.5, reduction="none"), [1.5, 0.5, 2.0],
                               atol=1e-12)
    g1 = RF.vjp("cosine_embedding_loss", x1, x2, y, reduction="sum", cotangent=np.array(1.0))["input1"]
    # the zero vector's gradient is -x2/√(ε·|x2|²) (finite, large)
    np.testing.assert_allclose(g1[1], -x2[1] / math.sqrt(margin.COSINE_EPSILON * (25 + margin.COSINE_EPSILON)))


@pytest.mark.parametrize("p", [1, 2])
def test_margin_vjps_match_fd(p):
    rng = np.random.default_rng(4)
    x, t, w = rng.integers(-16, 17, (5, 4)) / 8, rng.integers(0, 4, 5), rng.uniform(0.5, 2.0, 4)
    assert_vjp_ok("multi_margin_loss", x, t, p, 0.3, w, reduction="none")
    target = np.array([[1, 3, -1, 0], [2, 2, 0, -1], [0, 1, 2, 3], [-1, 0, 0, 0], [3, -1, 3, 3]])
    assert_vjp_ok("multilabel_margin_loss", x + 0.01 * np.arange(4), target, reduction="mean")  # z never 0
    y = np.where(rng.random((5, 4)) < 0.5, -1.0, 1.0)
    assert_vjp_ok("margin_ranking_loss", x, x + y * rng.uniform(0.6, 1.0, (5, 4)), y, 0.3 * p)
    assert_vjp_ok("cosine_embedding_loss", x + 0.1, rng.standard_normal((5, 4)), y[:, 0], -1.5, reduction="sum")


# -- GaussianNLLLoss ---------------------------------------------------------------------------------


def test_gaussian_nll_closed_form_and_full():
    x, t, v = np.array([1.0, 2.0]), np.array([0.0, 0.0]), np.array([1.0, 4.0])
    terms = 0.5 * (np.log(v) + (x - t) ** 2 / v)  # ½·(0 + 1), ½·(ln 4 + 1)
    np.testing.assert_allclose(likelihood.gaussian_nll_loss(x, t, v, reduction="none"), [0.5, 0.5 * (math.log(4) + 1)])
    np.testing.assert_allclose(likelihood.gaussian_nll_loss(x, t, v, full=True, reduction="sum"),
                               terms.sum() + math.log(2 * math.pi))
    np.testing.assert_allclose(likelihood.gaussian_nll_loss(x, t, v), terms.mean())


def test_gaussian_var_forms_and_rejections():
    rng = np.random.default_rng(2)
    x, t = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    per_sample = rng.uniform(0.5, 2.0, 3)
    full = np.repeat(per_sample[:, None], 4, axis=1)
    for var in (per_sample, per_sample[:, None]):  # last dim dropped, one dim 1: homoscedastic per sample
        np.testing.assert_allclose(likelihood.gaussian_nll_loss(x, t, var, reduction="none"),
                                   likelihood.gaussian_nll_loss(x, t, full, reduction="none"), rtol=1e-15)
    np.testing.assert_allclose(likelihood.gaussian_nll_loss(x, t, 0.7),
                               likelihood.gaussian_nll_loss(x, t, np.full((3, 4), 0.7)))
    for bad in (np.ones((3, 4, 1)), np.ones((1, 1)), np.ones(4)):
        with pytest.raises(ValueError):
            likelihood.gaussian_nll_loss(x, t, bad)
    for bad_var in (-np.ones((3, 4)), -1.0):
        with pytest.raises(ValueError):
            likelihood.gaussian_nll_loss(x, t, bad_var)
    with pytest.raises(ValueError):
        likelihood.gaussian_nll_loss(x, t, full, reduction="batchmean")


def test_gaussian_clamp_is_invisible_to_the_gradient():
    """Below eps the loss uses eps, and var's gradient is ½·(1/eps - d²/eps²), passed through."""
    x, t, var, eps = np.array([1.0]), np.array([0.0]), np.array([0.01]), 0.5
    np.testing.assert_allclose(likelihood.gaussian_nll_loss(x, t, var, eps=eps), 0.5 * (math.log(eps) + 1 / eps))
    grads = RF.vjp("gaussian_nll_loss", x, t, var, eps=eps, cotangent=np.array(1.0))
    np.testing.assert_allclose(grads["var"], [0.5 * (1 / eps - 1 / eps**2)])
    np.testing.assert_allclose(grads["input"], [1 / eps])
    assert "var" not in RF.vjp("gaussian_nll_loss", x, t, 0.25, cotangent=np.array(1.0))  # a float: no gradient


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_gaussian_vjp_matches_fd(reduction):
    rng = np.random.default_rng(3)
    x, t = rng.standard_normal((3, 4)), rng.standard_normal((1, 4))
    for var in (rng.uniform(0.5, 2.0, (3, 4)), rng.uniform(0.5, 2.0, 3), rng.uniform(0.5, 2.0, (1, 4))):
        assert_vjp_ok("gaussian_nll_loss", x, t, var, full=True, eps=0.1, reduction=reduction)


# -- PoissonNLLLoss ----------------------------------------------------------------------------------


def test_poisson_nll_hand_values_and_stirling_mask():
    x, t = np.array([0.0, math.log(2.0)]), np.array([3.0, 2.0])
    np.testing.assert_allclose(likelihood.poisson_nll_loss(x, t, reduction="none"), [1.0, 2 - 2 * math.log(2)])
    rate = np.array([1.0, 2.0])
    np.testing.assert_allclose(likelihood.poisson_nll_loss(rate, t, log_input=False, eps=0.0, reduction="none"),
                               [1 - 3 * math.log(1.0), 2 - 2 * math.log(2.0)])
    stirling = [3 * math.log(3) - 3 + 0.5 * math.log(6 * math.pi), 2 * math.log(2) - 2 + 0.5 * math.log(4 * math.pi)]
    np.testing.assert_allclose(likelihood.poisson_nll_loss(x, t, full=True, reduction="none"),
                               np.array([1.0, 2 - 2 * math.log(2)]) + stirling)
    small = np.array([0.0, 0.5, 1.0])  # no Stirling term at t <= 1, and its derivative there is 0
    np.testing.assert_array_equal(likelihood.stirling_term(small), 0.0)
    grads = RF.vjp("poisson_nll_loss", np.full(3, 0.5), small, full=True, reduction="sum", cotangent=np.array(1.0))
    np.testing.assert_allclose(grads["target"], -0.5)  # finite at t = 0 (torch: NaN, a known discrepancy)


@pytest.mark.parametrize("log_input", [True, False])
@pytest.mark.parametrize("full", [False, True])
def test_poisson_vjp_matches_fd(log_input, full):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4)) if log_input else rng.uniform(0.5, 3.0, (3, 4))
    t = np.array([[0.0, 0.5, 2.0, 3.5], [1.5, 4.0, 0.25, 6.0], [2.0, 3.0, 0.75, 9.0]])
    assert_vjp_ok("poisson_nll_loss", x, t, log_input, full, eps=1e-3, reduction="mean")


# -- TripletMarginLoss, TripletMarginWithDistanceLoss --------------------------------------------------


def test_triplet_hand_values_swap_and_margin():
    a, p, n = np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]]), np.array([[0.0, 1.0]])
    # d(a, p) = 5, d(a, n) = 1, d(p, n) = √18 (eps = 0): z = 1 + 5 - 1 = 5; swap keeps min(1, √18) = 1
    np.testing.assert_allclose(triplet.triplet_margin_loss(a, p, n, eps=0.0, reduction="none"), [5.0])
    np.testing.assert_allclose(triplet.triplet_margin_loss(a, p, n, p=1, eps=0.0, reduction="none"), [1 + 7 - 1])
    n_far = np.array([[3.0, 5.0]])  # d(a, n) = √34 > d(p, n) = 1: swap uses 1
    np.testing.assert_allclose(triplet.triplet_margin_loss(a, p, n_far, eps=0.0, swap=True, reduction="none"), [5.0])
    np.testing.assert_allclose(triplet.triplet_margin_loss(a, p, n_far, eps=0.0, reduction="none"),
                               [max(0.0, 6 - math.sqrt(34))])
    # eps is added inside the norm, as torch's pairwise_distance: d(x, x) = eps·√D
    np.testing.assert_allclose(triplet.pairwise(2.0, 1e-3)(a, a), [1e-3 * math.sqrt(2)])
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError):
            triplet.triplet_margin_loss(a, p, n, margin=bad)
    with pytest.raises(ValueError):
        triplet.triplet_margin_loss(a, p[0], n)


def test_triplet_kink_and_swap_tie_conventions():
    a, p, n = np.array([[0.0, 0.0]]), np.array([[1.0, 0.0]]), np.array([[2.0, 0.0]])
    grads = RF.vjp("triplet_margin_loss", a, p, n, eps=0.0, reduction="sum", cotangent=np.array(1.0))
    # z = 1 + 1 - 2 = 0: clamp_min passes the gradient
    np.testing.assert_array_equal(grads["anchor"], [[0.0, 0.0]])
    np.testing.assert_array_equal(grads["positive"], [[1.0, 0.0]])
    np.testing.assert_array_equal(grads["negative"], [[-1.0, 0.0]])
    p_mirror = 2 * n - a  # d(p, n) = d(a, n): torch.minimum splits the gradient equally
    grads = RF.vjp("triplet_margin_loss", a, p_mirror, n, eps=0.0, swap=True, reduction="sum", cotangent=np.array(1.0))
    np.testing.assert_allclose(grads["anchor"], [[-1.0 + 0.5, 0.0]])
    np.testing.assert_allclose(grads["positive"], [[1.0 - 0.5, 0.0]])
    np.testing.assert_allclose(grads["negative"], [[0.0, 0.0]])


@pytest.mark.parametrize("p_norm", [2.0, 1.0, 3.0, 1.5])
@pytest.mark.parametrize("swap", [False, True])
def test_triplet_vjps_match_fd(p_norm, swap):
    rng = np.random.default_rng(6)
    a = rng.standard_normal((4, 3))
    pos = a + 0.3 * rng.standard_normal((4, 3))
    neg = a + np.array([[3.0, 0, 0], [0, -3.0, 0], [0.2, 0.1, 0.1], [0, 0, 0.3]])
    assert_vjp_ok("triplet_margin_loss", a, pos, neg, p=p_norm, swap=swap, reduction="mean")
    assert_vjp_ok("triplet_margin_loss", a[0], pos[0], neg[0], p=p_norm, swap=swap, reduction="none")
    assert_vjp_ok("triplet_margin_with_distance_loss", a, pos, neg, distance_function=triplet.pairwise(p_norm, 1e-4),
                  margin=0.5, swap=swap, reduction="sum")


def test_triplet_with_distance_defaults_and_a_callable_without_vjp():
    rng = np.random.default_rng(7)
    a, p, n = rng.standard_normal((3, 3, 4))
    np.testing.assert_allclose(triplet.triplet_margin_with_distance_loss(a, p, n),
                               triplet.triplet_margin_loss(a, p, n), rtol=1e-15)
    plain = lambda x1, x2: np.sum(np.abs(x1 - x2), axis=-1)  # noqa: E731
    np.testing.assert_allclose(triplet.triplet_margin_with_distance_loss(a, p, n, distance_function=plain),
                               triplet.triplet_margin_loss(a, p, n, p=1, eps=0.0), rtol=1e-14)
    with pytest.raises(TypeError):
        RF.vjp("triplet_margin_with_distance_loss", a, p, n, distance_function=plain, cotangent=np.array(1.0))
    with pytest.raises(ValueError):
        triplet.triplet_margin_with_distance_loss(a, p, n, reduction="batchmean")
