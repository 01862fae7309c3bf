"""The loss references checked on their own terms (no torch): values worked out by hand or in
closed form, the deprecated flag mapping, the kink conventions, and every VJP against central
finite differences in float64."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import pytest

from reference import activation, loss
from reference import loss_binary as binary
from reference import loss_classification as cls
from reference import loss_margin as margin


def assert_vjp_matches_fd(forward: Callable[..., np.ndarray], inputs: dict[str, np.ndarray],
                          grads: dict[str, np.ndarray], cotangent: np.ndarray, seed: int = 0) -> None:
    """<cotangent, d/dt forward(inputs + t·dirs)> at t = 0 (central differences) == Σ <grad, dir>."""
    rng = np.random.default_rng(seed)
    dirs = {name: rng.standard_normal(np.shape(inputs[name])) for name in grads}
    h = 1e-6

    def objective(sign: float) -> float:
        moved = {k: (v + sign * h * dirs[k] if k in dirs else v) for k, v in inputs.items()}
        return float(np.sum(forward(**moved) * cotangent))

    fd = (objective(1.0) - objective(-1.0)) / (2 * h)
    analytic = sum(float(np.sum(grads[n] * dirs[n])) for n in grads)
    scale = sum(float(np.sum(np.abs(grads[n] * dirs[n]))) for n in grads)
    assert abs(fd - analytic) <= 1e-6 * scale + 1e-8, (fd, analytic)


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


# -- MSELoss ------------------------------------------------------------------------------------


def test_mse_hand_values():
    x, t = np.array([1.0, 2.0, 3.0]), np.array([0.0, 0.0, 1.0])  # squares 1, 4, 4
    np.testing.assert_array_equal(loss.mse_loss(x, t, "none"), [1.0, 4.0, 4.0])
    assert loss.mse_loss(x, t, "sum") == 9.0
    assert loss.mse_loss(x, t, "mean") == 3.0
    gx, gt = loss.mse_loss_vjp(x, t, np.array(1.0), "mean")
    np.testing.assert_allclose(gx, np.array([2.0, 4.0, 4.0]) / 3)
    np.testing.assert_allclose(gt, -gx)


def test_mse_broadcasting_sums_gradients_over_broadcast_dims():
    x, t = np.array([[1.0], [2.0]]), np.array([0.0, 1.0, 3.0])  # broadcast to (2, 3)
    np.testing.assert_array_equal(loss.mse_loss(x, t, "none"), [[1.0, 0.0, 4.0], [4.0, 1.0, 1.0]])
    gx, gt = loss.mse_loss_vjp(x, t, np.array(1.0), "sum")
    np.testing.assert_array_equal(gx, [[2 * (1 + 0 - 2)], [2 * (2 + 1 - 1)]])
    np.testing.assert_array_equal(gt, [-2 * (1 + 2), -2 * (0 + 1), -2 * (-2 - 1)])
    with pytest.raises(ValueError):
        loss.mse_loss(np.ones(3), np.ones(4), "mean")


@pytest.mark.parametrize("size_average,reduce,reduction,expected", [
    (None, None, "sum", "sum"), (None, False, "mean", "none"), (True, False, "sum", "none"),
    (False, None, "mean", "sum"), (False, True, "none", "sum"), (True, None, "none", "mean"),
    (None, True, "sum", "mean"), (True, True, "none", "mean")])
def test_legacy_reduction_flags(size_average, reduce, reduction, expected):
    assert loss.legacy_reduction(size_average, reduce, reduction) == expected


def test_unknown_reduction_is_rejected():
    with pytest.raises(ValueError):
        loss.legacy_reduction(None, None, "average")


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("x_shape,t_shape", [((3, 4), (3, 4)), ((2, 1, 3), (4, 1)), ((), ())])
def test_mse_vjp_matches_fd(reduction, x_shape, t_shape):
    rng = np.random.default_rng(7)
    x, t = rng.standard_normal(x_shape), rng.standard_normal(t_shape)
    g = rng.standard_normal(np.shape(loss.mse_loss(x, t, reduction)))
    gx, gt = loss.mse_loss_vjp(x, t, g, reduction)
    assert gx.shape == x.shape and gt.shape == t.shape
    assert_vjp_matches_fd(lambda x, t: loss.mse_loss(x, t, reduction), {"x": x, "t": t}, {"x": gx, "t": gt}, g)


# -- CrossEntropyLoss ---------------------------------------------------------------------------


def test_cross_entropy_of_uniform_logits_is_log_classes():
    x = np.full((3, 5), 0.7)
    np.testing.assert_allclose(cls.cross_entropy(x, np.array([0, 4, 2]), None, "none"), math.log(5), rtol=1e-14)
    np.testing.assert_allclose(cls.cross_entropy(x[0], np.array(3), None, "mean"), math.log(5), rtol=1e-14)


def test_one_hot_probabilities_equal_class_indices():
    rng = np.random.default_rng(0)
    x, t, w = rng.standard_normal((4, 3, 2)), rng.integers(0, 3, (4, 2)), np.array([0.5, 1.0, 2.0])
    one_hot = np.moveaxis(np.eye(3)[t], -1, 1)
    for reduction in ("none", "sum"):
        for ls in (0.0, 0.3):
            np.testing.assert_allclose(cls.cross_entropy(x, one_hot, w, reduction, label_smoothing=ls),
                                       cls.cross_entropy(x, t, w, reduction, label_smoothing=ls), rtol=1e-14)
    # 'mean': class indices divide by Σ w[target], probabilities by the number of positions.
    by_index = cls.cross_entropy(x, t, w, "mean")
    by_prob = cls.cross_entropy(x, one_hot, w, "mean")
    np.testing.assert_allclose(by_index * w[t].sum(), by_prob * t.size, rtol=1e-14)


def test_label_smoothing_two_classes_by_hand():
    # p = softmax([0, ln 3]) = [1/4, 3/4]; target class 1, ε = 0.2, C = 2: t' = [0.1, 0.9]
    x = np.array([[0.0, math.log(3.0)]])
    expected = 0.1 * math.log(4.0) + 0.9 * math.log(4.0 / 3.0)
    np.testing.assert_allclose(cls.cross_entropy(x, np.array([1]), None, "sum", label_smoothing=0.2), expected)
    # class weights w = [2, 3]: l = 2·0.1·ln 4 + 3·0.9·ln(4/3); 'mean' divides by w[target] = 3
    w = np.array([2.0, 3.0])
    weighted = 2 * 0.1 * math.log(4.0) + 3 * 0.9 * math.log(4.0 / 3.0)
    np.testing.assert_allclose(cls.cross_entropy(x, np.array([1]), w, "mean", label_smoothing=0.2), weighted / 3)
    # ε = 1: the uniform target, whatever the class
    np.testing.assert_allclose(cls.cross_entropy(x, np.array([0]), None, "sum", label_smoothing=1.0),
                               0.5 * math.log(4.0) + 0.5 * math.log(4.0 / 3.0))


def test_ignore_index():
    x = np.array([[0.0, math.log(3.0)], [1.0, 2.0], [0.0, 0.0]])
    t = np.array([1, -100, 0])
    np.testing.assert_allclose(cls.cross_entropy(x, t, None, "none"), [math.log(4 / 3), 0.0, math.log(2)])
    np.testing.assert_allclose(cls.cross_entropy(x, t, None, "mean"), (math.log(4 / 3) + math.log(2)) / 2)
    # an ignore_index that is a class: those positions drop out of the loss and of the mean
    np.testing.assert_allclose(cls.cross_entropy(x, np.array([1, 0, 0]), None, "mean", ignore_index=0),
                               math.log(4 / 3))
    # all ignored: 'mean' is 0/0 = NaN, and ignored positions get no gradient
    assert np.isnan(cls.cross_entropy(x, np.full(3, -100), None, "mean"))
    gx, _ = cls.cross_entropy_vjp(x, np.full(3, -100), None, "mean", np.array(1.0))
    np.testing.assert_array_equal(gx, 0.0)


def test_cross_entropy_rejections():
    x = np.zeros((2, 3))
    with pytest.raises(ValueError):
        cls.cross_entropy(x, np.array([0, 3]), None, "mean")
    with pytest.raises(ValueError):
        cls.cross_entropy(x, np.array([0, -1]), None, "mean")
    with pytest.raises(ValueError):
        cls.cross_entropy(x, np.array([0, 1]), None, "mean", label_smoothing=1.5)
    with pytest.raises(ValueError):
        cls.cross_entropy(x, np.array([0, 1]), None, "mean", label_smoothing=-0.1)
    with pytest.raises(ValueError):
        cls.cross_entropy(x, np.full((2, 3), 1 / 3), None, "mean", ignore_index=0)
    with pytest.raises(ValueError):
        cls.cross_entropy(x, np.array([0, 1]), np.ones(4), "mean")
    # a negative ignore_index has no effect on probability targets
    p = np.full((2, 3), 1 / 3)
    assert cls.cross_entropy(x, p, None, "mean", ignore_index=-1) == cls.cross_entropy(x, p, None, "mean")


def test_cross_entropy_vjp_is_softmax_minus_one_hot():
    rng = np.random.default_rng(3)
    x, t = rng.standard_normal((4, 5)), np.array([0, 4, 2, 2])
    gx, gt = cls.cross_entropy_vjp(x, t, None, "sum", np.array(1.0))
    np.testing.assert_allclose(gx, activation.softmax(x, 1) - np.eye(5)[t], atol=1e-15)
    assert gt is None


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 2, 2)])
@pytest.mark.parametrize("probabilities", [False, True])
def test_cross_entropy_vjp_matches_fd(reduction, shape, probabilities):
    rng = np.random.default_rng(len(shape))
    ax = 0 if len(shape) == 1 else 1
    classes = shape[ax]
    x, w = rng.standard_normal(shape) * 2, rng.uniform(0.5, 2.0, classes)
    if probabilities:
        target = rng.random(shape)
        ignore = -100
    else:
        target = rng.integers(0, classes, shape[:ax] + shape[ax + 1:])
        ignore = -100
        if target.size > 1:  # a class that occurs, but not at every position
            ignore = int(target.flat[0])
            target.flat[-1] = (ignore + 1) % classes
    kwargs = dict(ignore_index=ignore, label_smoothing=0.3)
    g = rng.standard_normal(np.shape(cls.cross_entropy(x, target, w, reduction, **kwargs)))
    gx, gt = cls.cross_entropy_vjp(x, target, w, reduction, g, **kwargs)
    if probabilities:
        assert_vjp_matches_fd(lambda x, t: cls.cross_entropy(x, t, w, reduction, **kwargs),
                              {"x": x, "t": target}, {"x": gx, "t": gt}, g)
    else:
        assert_vjp_matches_fd(lambda x: cls.cross_entropy(x, target, w, reduction, **kwargs), {"x": x}, {"x": gx}, g)


# -- L1Loss, SmoothL1Loss ---------------------------------------------------------------------------


def test_l1_hand_values_and_kink():
    x, t = np.array([1.0, -2.0, 3.0]), np.array([0.0, 0.0, 3.0])
    np.testing.assert_array_equal(loss.l1_loss(x, t, "none"), [1.0, 2.0, 0.0])
    assert loss.l1_loss(x, t, "mean") == 1.0
    gx, gt = loss.l1_loss_vjp(x, t, np.array(3.0), "sum")
    np.testing.assert_array_equal(gx, [3.0, -3.0, 0.0])  # sign(0) = 0 at x = t
    np.testing.assert_array_equal(gt, -gx)


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_smooth_l1_branches_meet_at_beta(beta):
    d = np.array([0.0, beta / 2, beta, 3 * beta, -beta])
    terms = loss.smooth_l1_terms(d, beta)
    np.testing.assert_allclose(terms, [0.0, beta / 8, beta / 2, 2.5 * beta, beta / 2])
    np.testing.assert_array_equal(loss.smooth_l1_derivative(d, beta), [0.0, 0.5, 1.0, 1.0, -1.0])


def test_smooth_l1_with_beta_zero_is_l1_and_negative_beta_is_rejected():
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal(7), rng.standard_normal(7)
    np.testing.assert_array_equal(loss.smooth_l1_loss(x, t, "none", beta=0.0), loss.l1_loss(x, t, "none"))
    with pytest.raises(ValueError):
        loss.smooth_l1_loss(x, t, "mean", beta=-1.0)


# -- KLDivLoss --------------------------------------------------------------------------------------


def test_kl_div_hand_values_and_batchmean():
    t = np.array([[0.5, 0.5, 0.0], [0.25, 0.25, 0.5]])
    x = np.log(np.full((2, 3), 1 / 3))
    terms = loss.kl_div_terms(x, t, False)
    np.testing.assert_allclose(terms[0], [0.5 * math.log(1.5), 0.5 * math.log(1.5), 0.0])  # 0·log 0 = 0
    np.testing.assert_allclose(loss.kl_div(x, t, "batchmean"), terms.sum() / 2)
    np.testing.assert_allclose(loss.kl_div(x, t, "mean"), terms.sum() / 6)
    np.testing.assert_allclose(loss.kl_div(x, np.log(np.where(t > 0, t, 1.0)), "none", log_target=True)[1],
                               terms[1])
    assert loss.kl_div(x[0, 0], t[0, 0], "batchmean") == loss.kl_div(x[0, 0], t[0, 0], "sum")  # 0-d: the sum
    _, gt = loss.kl_div_vjp(x, t, np.array(1.0), "sum")
    assert np.isnan(gt[0, 2]) and np.isfinite(gt[1]).all()  # t·log t has no derivative at t = 0


# -- NLLLoss ------------------------------------------------------------------------------------------


def test_nll_hand_values_ignore_index_and_weights():
    x = np.array([[-1.0, -2.0, -3.0], [-4.0, -5.0, -6.0], [-7.0, -8.0, -9.0]])
    t, w = np.array([2, 0, 1]), np.array([1.0, 0.0, -2.0])
    np.testing.assert_array_equal(cls.nll_loss(x, t, None, "none"), [3.0, 4.0, 8.0])
    np.testing.assert_array_equal(cls.nll_loss(x, t, w, "none"), [-6.0, 4.0, 0.0])
    assert cls.nll_loss(x, t, w, "mean") == (-6.0 + 4.0) / (-2.0 + 1.0 + 0.0)
    # ignored positions are 0 in 'none', drop out of the sum and of the 'mean' normaliser
    np.testing.assert_array_equal(cls.nll_loss(x, t, None, "none", ignore_index=0), [3.0, 0.0, 8.0])
    assert cls.nll_loss(x, t, None, "mean", ignore_index=0) == 5.5
    assert np.isnan(cls.nll_loss(x, np.full(3, 7), None, "mean", ignore_index=7))  # all ignored: 0/0
    gx = cls.nll_loss_vjp(x, t, w, "sum", np.array(1.0))
    np.testing.assert_array_equal(gx, [[0, 0, 2.0], [-1.0, 0, 0], [0, 0, 0]])
    with pytest.raises(IndexError):
        cls.nll_loss(x, np.array([0, 3, 1]), None, "mean")


def test_nll_equals_cross_entropy_of_log_probabilities():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 2, 2))
    t = rng.integers(0, 4, (3, 2, 2))
    w = rng.uniform(0.5, 2, 4)
    for reduction in ("none", "sum", "mean"):
        np.testing.assert_allclose(cls.nll_loss(cls.log_softmax(x, 1), t, w, reduction),
                                   cls.cross_entropy(x, t, w, reduction), rtol=1e-13)


# -- BCE, BCE with logits, soft margin, multi-label soft margin ------------------------------------


def test_bce_clamps_logs_at_minus_100_and_linear_backward():
    x, t = np.array([0.0, 1.0, 0.5, 0.0]), np.array([1.0, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(binary.bce_loss(x, t, None, "none"), [100.0, 100.0, math.log(2), 0.0])
    dx, dt = binary.bce_derivatives(x, t, None)
    np.testing.assert_allclose(dx, [-1 / binary.BCE_EPSILON, 1 / binary.BCE_EPSILON, -2.0, 0.0])
    np.testing.assert_allclose(dt, [100.0, -100.0, 0.0, 100.0])
    with pytest.raises(ValueError):
        binary.bce_loss(np.array([1.5]), np.array([0.0]), None, "mean")


def test_bce_with_logits_equals_bce_of_sigmoid_and_weights_positives():
    rng = np.random.default_rng(1)
    x, t = rng.standard_normal((4, 3)) * 3, rng.random((4, 3))
    np.testing.assert_allclose(binary.bce_logits_terms(x, t, None, None),
                               binary.bce_terms(activation.softmax(np.stack([np.zeros_like(x), x]), 0)[1], t, None),
                               rtol=1e-12)
    pw = np.array([2.0, 0.5, 3.0])
    expected = -(pw * t * np.log(binary.sigmoid(x)) + (1 - t) * np.log(binary.sigmoid(-x)))
    np.testing.assert_allclose(binary.bce_logits_terms(x, t, None, pw), expected, rtol=1e-12)
    # large logits of both signs stay finite and accurate
    big = np.array([-1000.0, 1000.0])
    np.testing.assert_allclose(binary.bce_logits_terms(big, np.array([1.0, 0.0]), None, None), [1000.0, 1000.0])
    np.testing.assert_allclose(binary.bce_logits_terms(big, np.array([0.0, 1.0]), None, None), [0.0, 0.0],
                               atol=1e-300)


def test_soft_margin_is_finite_beyond_exp_overflow():
    x, y = np.array([-1000.0, 1000.0, 0.0]), np.array([1.0, 1.0, -1.0])
    np.testing.assert_allclose(binary.soft_margin_loss(x, y, "none"), [1000.0, 0.0, math.log(2)], atol=1e-300)
    gx = binary.soft_margin_loss_vjp(x, y, "sum", np.array(1.0))
    np.testing.assert_allclose(gx, [-1.0, 0.0, 0.5], atol=1e-300)


def test_multilabel_soft_margin_is_bce_with_logits_averaged_over_classes():
    rng = np.random.default_rng(2)
    x, t, w = rng.standard_normal((3, 5)), (rng.random((3, 5)) < 0.5).astype(float), rng.random(5)
    np.testing.assert_allclose(binary.mlsm_loss(x, t, w, "none"),
                               np.mean(binary.bce_logits_terms(x, t, np.broadcast_to(w, x.shape), None), axis=1))
    assert binary.mlsm_loss(x[0], t[0], w, "none").shape == ()


# -- margin losses ------------------------------------------------------------------------------------


def test_margin_ranking_hand_values_and_kink_gradient():
    x1, x2, y = np.array([1.0, 2.0, 0.0]), np.array([1.0, 1.0, 1.0]), np.array([1.0, -1.0, 1.0])
    np.testing.assert_array_equal(margin.margin_ranking_loss(x1, x2, y, 0.0, "none"), [0.0, 1.0, 1.0])
    g1, g2, gy = margin.margin_ranking_vjp(x1, x2, y, 0.0, "sum", np.array(1.0))
    np.testing.assert_array_equal(g1, [-1.0, 1.0, -1.0])  # z = 0 at the first: the gradient passes
    np.testing.assert_array_equal(g2, -g1)
    np.testing.assert_array_equal(gy, [0.0, -1.0, 1.0])


def test_hinge_embedding_hand_values_and_kink_gradient():
    x, y = np.array([0.5, 1.0, 3.0, 0.25]), np.array([1.0, -1.0, -1.0, -1.0])
    np.testing.assert_array_equal(margin.hinge_embedding_loss(x, y, 1.0, "none"), [0.5, 0.0, 0.0, 0.75])
    g = margin.hinge_embedding_vjp(x, y, 1.0, "sum", np.array(1.0))
    np.testing.assert_array_equal(g, [1.0, -1.0, 0.0, -1.0])  # x = margin: clamp_min passes -1


def test_multilabel_margin_counts_labels_before_the_padding_and_repeats():
    x = np.array([0.1, 0.2, 0.4, 0.8])
    # labels 3 and 0; the -1 ends them (the 2 after it does not count)
    expected = sum(max(0.0, 1 - (x[j] - x[i])) for j in (3, 0) for i in (1, 2)) / 4
    np.testing.assert_allclose(margin.multilabel_margin_loss(x, np.array([3, 0, -1, 2]), "none"), expected)
    repeated = sum(max(0.0, 1 - (x[j] - x[i])) for j in (3, 3) for i in (0, 1, 2)) / 4
    np.testing.assert_allclose(margin.multilabel_margin_loss(x, np.array([3, 3, -1, 1]), "none"), repeated)
    # z = 0 exactly (x[y] - x[i] = 1): no gradient
    g = margin.multilabel_margin_vjp(np.array([2.0, 1.0]), np.array([0, -1]), "sum", np.array(1.0))
    np.testing.assert_array_equal(g, [0.0, 0.0])
    with pytest.raises(ValueError):
        margin.multilabel_margin_loss(x, np.array([0, -1, 4, 0]), "none")  # torch checks after the -1 too


def test_multi_margin_hand_values_p_and_weights():
    x, t = np.array([[0.1, 0.2, 0.4, 0.8]]), np.array([3])
    z = 1.0 - 0.8 + np.array([0.1, 0.2, 0.4])
    np.testing.assert_allclose(margin.multi_margin_loss(x, t, 1, 1.0, None, "none"), [z.sum() / 4])
    w = np.array([1.0, 1.0, 1.0, -2.0])
    np.testing.assert_allclose(margin.multi_margin_loss(x, t, 2, 1.0, w, "none"), [-2 * (z**2).sum() / 4])
    # z = 0 (x[y] - x[i] = margin): no gradient; p = 1 elsewhere ±1/C
    g = margin.multi_margin_vjp(np.array([[1.0, 0.0, 0.5]]), np.array([0]), 1, 1.0, None, "sum", np.array(1.0))
    np.testing.assert_allclose(g, [[-1 / 3, 0.0, 1 / 3]])
    with pytest.raises(ValueError):
        margin.multi_margin_loss(x, t, 3, 1.0, None, "mean")


def test_cosine_embedding_zero_vectors_and_margins():
    x1 = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    x2 = np.array([[1.0, 0.0], [3.0, 4.0], [-1.0, -1.0]])
    y = np.array([1.0, 1.0, -1.0])
    np.testing.assert_allclose(margin.cosine_embedding_loss(x1, x2, y, 0.0, "none"), [0.0, 1.0, 0.0], atol=1e-11)
    np.testing.assert_allclose(margin.cosine_embedding_loss(x1, x2, -y, -0.5, "none"), [1.5, 0.5, 2.0], atol=1e-12)
    g1, _ = margin.cosine_embedding_vjp(x1, x2, y, 0.0, "sum", np.array(1.0))
    # the zero vector's gradient is -x2/√(ε·|x2|²) (finite, large)
    np.testing.assert_allclose(g1[1], -x2[1] / math.sqrt(margin.COSINE_EPSILON * (25 + margin.COSINE_EPSILON)))


# -- every VJP against finite differences -------------------------------------------------------------

RNG = np.random.default_rng(11)
X = RNG.standard_normal((3, 4))
T = RNG.uniform(0.05, 0.95, (3, 4))
Y = np.where(RNG.random((3, 4)) < 0.5, -1.0, 1.0)
W = RNG.uniform(0.5, 2.0, 4)
CASES = {
    "l1": (lambda x, t: loss.l1_loss(x, t, "sum"), lambda g: loss.l1_loss_vjp(X, T, g, "sum"), {"x": X, "t": T}),
    "smooth_l1": (lambda x, t: loss.smooth_l1_loss(x, t, "mean", 0.7),
                  lambda g: loss.smooth_l1_loss_vjp(X, T, g, "mean", 0.7), {"x": X, "t": T}),
    "kl": (lambda x, t: loss.kl_div(x, t, "batchmean"), lambda g: loss.kl_div_vjp(X, T, g, "batchmean"),
           {"x": X, "t": T}),
    "kl_log": (lambda x, t: loss.kl_div(x, t, "none", True), lambda g: loss.kl_div_vjp(X, T, g, "none", True),
               {"x": X, "t": T}),
    "bce": (lambda x, t: binary.bce_loss(x, t, W, "none"), lambda g: binary.bce_loss_vjp(T, X * 0 + 0.3, W, "none", g),
            {"x": T, "t": X * 0 + 0.3}),
    "bce_logits": (lambda x, t: binary.bce_logits_loss(x, t, W, W[::-1], "mean"),
                   lambda g: binary.bce_logits_loss_vjp(X, T, W, W[::-1], "mean", g), {"x": X, "t": T}),
    "mlsm": (lambda x, t: binary.mlsm_loss(x, t, W, "none"), lambda g: binary.mlsm_loss_vjp(X, T, W, "none", g),
             {"x": X, "t": T}),
    "ranking": (lambda x, t, y: margin.margin_ranking_loss(x, t, y, 0.5, "none"),
                lambda g: margin.margin_ranking_vjp(X, T, Y, 0.5, "none", g), {"x": X, "t": T, "y": Y}),
    "cosine": (lambda x, t: margin.cosine_embedding_loss(x, t, Y[:, 0], -0.5, "sum"),
               lambda g: margin.cosine_embedding_vjp(X, T, Y[:, 0], -0.5, "sum", g), {"x": X, "t": T}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_vjp_matches_fd(name):
    forward, vjp, inputs = CASES[name]
    out = forward(**inputs)
    g = np.random.default_rng(3).standard_normal(np.shape(out))
    grads = dict(zip(inputs, vjp(g)))
    assert_vjp_matches_fd(forward, inputs, grads, g)


@pytest.mark.parametrize("p", [1, 2])
def test_margin_vjps_match_fd(p):
    x, t = RNG.standard_normal((5, 4)), RNG.integers(0, 4, 5)
    g = np.random.default_rng(4).standard_normal(5)
    assert_vjp_matches_fd(lambda x: margin.multi_margin_loss(x, t, p, 0.5, W, "none"), {"x": x},
                          {"x": margin.multi_margin_vjp(x, t, p, 0.5, W, "none", g)}, g)
    target = np.array([[1, 3, -1, 0], [2, 2, 0, -1], [0, 1, 2, 3], [-1, 0, 0, 0], [3, -1, 3, 3]])
    assert_vjp_matches_fd(lambda x: margin.multilabel_margin_loss(x, target, "none"), {"x": x},
                          {"x": margin.multilabel_margin_vjp(x, target, "none", g)}, g)
