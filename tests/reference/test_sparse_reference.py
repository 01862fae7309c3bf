"""EmbeddingBag's reference on its own terms: hand-computed bags, an independent per-bag formulation
over ``embedding``, its conventions (padding, empty bags, include_last_offset, maxima) and finite
differences (no torch here)."""

from __future__ import annotations

import numpy as np
import pytest

from reference import functional as RF
from reference.finite_differences import vjp_check

W = np.arange(12.0).reshape(6, 2)  # row r = (2r, 2r + 1)
INPUT = np.array([1, 2, 4, 1, 4, 3, 2, 0])
OFFSETS = np.array([0, 2, 2, 5])  # bags [1, 2], [], [4, 1, 4], [3, 2, 0]


def _per_bag(input, weight, bounds, reduce, padding_idx=None, psw=None):
    """An independent formulation: ``embedding`` per bag, then the reduction, 0 for an empty bag."""
    out = []
    for lo, hi in bounds:
        idx = input[lo:hi]
        keep = idx != padding_idx if padding_idx is not None else np.ones(idx.size, dtype=bool)
        rows = RF.embedding(idx[keep], weight)
        if psw is not None:
            rows = rows * psw[lo:hi][keep][:, None]
        out.append(reduce(rows, axis=0) if rows.shape[0] else np.zeros(weight.shape[1]))
    return np.array(out)


def test_sums_means_and_maxima_of_bags_by_hand():
    np.testing.assert_array_equal(RF.embedding_bag(INPUT, W, OFFSETS, mode="sum"),
                                  [[6, 8], [0, 0], [18, 21], [10, 13]])
    np.testing.assert_allclose(RF.embedding_bag(INPUT, W, OFFSETS, mode="mean"),
                               [[3, 4], [0, 0], [6, 7], [10 / 3, 13 / 3]], rtol=1e-15)
    np.testing.assert_array_equal(RF.embedding_bag(INPUT, W, OFFSETS, mode="max"),
                                  [[4, 5], [0, 0], [8, 9], [6, 7]])


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_padding_entries_are_left_out_of_the_bag_and_of_its_count(mode):
    reduce = {"sum": np.sum, "mean": np.mean, "max": np.max}[mode]
    bounds = [(0, 2), (2, 2), (2, 5), (5, 8)]
    expected = _per_bag(INPUT, W, bounds, reduce, padding_idx=4)
    np.testing.assert_allclose(RF.embedding_bag(INPUT, W, OFFSETS, mode=mode, padding_idx=4), expected, rtol=1e-15)
    np.testing.assert_allclose(RF.embedding_bag(INPUT, W, OFFSETS, mode=mode, padding_idx=-2), expected, rtol=1e-15)
    # bag [4, 1, 4] is the mean of row 1 alone: 2, 3 (not (2 + 0 + 0)/3)
    if mode == "mean":
        np.testing.assert_array_equal(expected[2], [2.0, 3.0])


def test_a_2d_input_is_bags_of_equal_length_and_include_last_offset_closes_the_last_bag():
    x = INPUT.reshape(4, 2)
    np.testing.assert_array_equal(RF.embedding_bag(x, W, mode="sum"),
                                  RF.embedding_bag(INPUT, W, np.array([0, 2, 4, 6]), mode="sum"))
    closed = RF.embedding_bag(INPUT, W, np.array([0, 2, 2, 5, 8]), mode="sum", include_last_offset=True)
    np.testing.assert_array_equal(closed, RF.embedding_bag(INPUT, W, OFFSETS, mode="sum"))
    assert RF.embedding_bag(np.zeros((3, 0), dtype=np.int64), W, mode="max").shape == (3, 2)  # B empty bags
    assert RF.embedding_bag(np.zeros(0, dtype=np.int64), W, np.array([0, 0])).tolist() == [[0, 0], [0, 0]]


def test_per_sample_weights_scale_each_entry_and_get_the_dot_product_as_gradient():
    psw = np.arange(1.0, 9.0)
    bounds = [(0, 2), (2, 2), (2, 5), (5, 8)]
    y = RF.embedding_bag(INPUT, W, OFFSETS, mode="sum", per_sample_weights=psw)
    np.testing.assert_array_equal(y, _per_bag(INPUT, W, bounds, np.sum, psw=psw))
    g = np.array([[1.0, 0.0], [5.0, 5.0], [0.0, 1.0], [1.0, 1.0]])
    grads = RF.vjp("embedding_bag", INPUT, W, OFFSETS, mode="sum", per_sample_weights=psw, cotangent=g)
    # entry j of bag b: <g_b, W[i_j]>; bag 2 reads rows 4, 1, 4 with g = (0, 1): 9, 3, 9.
    np.testing.assert_array_equal(grads["per_sample_weights"], [2, 4, 9, 3, 9, 13, 9, 1])
    # row 1 gets psw·g from entry 0 (bag 0) and entry 3 (bag 2): 1·(1, 0) + 4·(0, 1).
    np.testing.assert_array_equal(grads["weight"][1], [1.0, 4.0])


def test_the_max_gradient_goes_to_the_first_maximum_once_per_bag():
    w = np.array([[1.0, 5.0], [3.0, 2.0], [3.0, 0.0]])
    x = np.array([[0, 1, 1], [2, 1, 0]])  # bag 0 repeats row 1; bag 1: rows 2 and 1 tie at 3 in dim 0
    g = np.array([[10.0, 20.0], [1.0, 2.0]])
    grads = RF.vjp("embedding_bag", x, w, mode="max", cotangent=g)["weight"]
    # dim 0: bag 0 -> row 1 (once), bag 1 -> row 2 (first of the tie in bag order); dim 1: row 0 twice.
    np.testing.assert_array_equal(grads, [[0.0, 22.0], [10.0, 0.0], [1.0, 0.0]])


def test_frequency_scaling_divides_by_each_rows_count_in_the_input():
    g = np.ones((4, 2))
    grads = RF.vjp("embedding_bag", INPUT, W, OFFSETS, mode="sum", scale_grad_by_freq=True, cotangent=g)["weight"]
    # counts: row 0 once, 1 twice, 2 twice, 3 once, 4 twice: every row read gets 1
    np.testing.assert_array_equal(grads[:, 0], [1.0, 1.0, 1.0, 1.0, 1.0, 0.0])


def test_max_norm_reduces_the_renormalised_rows():
    w = np.array([[3.0, 4.0], [0.3, 0.4]])
    y = RF.embedding_bag(np.array([[0, 1]]), w, mode="sum", max_norm=1.0)
    np.testing.assert_allclose(y, [[0.6 / (1 + 2e-8) + 0.3, 0.8 / (1 + 2e-8) + 0.4]], rtol=1e-12)


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"offsets": np.array([0]), "input": INPUT.reshape(2, 4)}, ValueError),
    ({"offsets": None}, ValueError),
    ({"offsets": np.array([1, 3])}, ValueError),
    ({"offsets": np.array([0, 9])}, ValueError),
    ({"offsets": OFFSETS, "mode": "mean", "per_sample_weights": np.ones(8)}, ValueError),
    ({"offsets": OFFSETS, "mode": "sum", "per_sample_weights": np.ones(7)}, ValueError),
    ({"offsets": OFFSETS, "mode": "max", "scale_grad_by_freq": True}, ValueError),
    ({"offsets": OFFSETS, "mode": "max", "sparse": True}, ValueError),
    ({"offsets": OFFSETS, "mode": "median"}, ValueError),
    ({"offsets": OFFSETS, "padding_idx": 6}, ValueError),
    ({"offsets": np.array([0]), "input": np.array([0, 6])}, IndexError),
])
def test_what_torch_rejects_is_rejected(kwargs, error):
    kwargs = dict(kwargs)
    x = kwargs.pop("input", INPUT)
    with pytest.raises(error):
        RF.embedding_bag(x, W, **kwargs)


@pytest.mark.parametrize("kwargs", [{"mode": "sum", "per_sample_weights": True}, {"mode": "mean"},
                                    {"mode": "max"}, {"mode": "mean", "include_last_offset": True}])
def test_vjp_agrees_with_finite_differences(kwargs):
    rng = np.random.default_rng(7)
    kwargs = dict(kwargs)
    w = rng.standard_normal((6, 3))
    offsets = np.array([0, 2, 2, 5, 8]) if kwargs.get("include_last_offset") else OFFSETS
    inputs = {"weight": w}
    if kwargs.pop("per_sample_weights", False):
        inputs["per_sample_weights"] = rng.standard_normal(INPUT.size)
    y = RF.embedding_bag(INPUT, w, offsets, **kwargs, **{k: v for k, v in inputs.items() if k != "weight"})
    g = rng.standard_normal(y.shape)

    def forward(arrays):
        extra = {k: v for k, v in arrays.items() if k != "weight"}
        return {"y": RF.embedding_bag(INPUT, arrays["weight"], offsets, **kwargs, **extra)}

    extra = {k: v for k, v in inputs.items() if k != "weight"}
    grads = RF.vjp("embedding_bag", INPUT, w, offsets, cotangent=g, **kwargs, **extra)
    check = vjp_check(forward, inputs, {"y": g}, grads)
    assert check.ok(), check
