"""Embedding and the sequence-packing utilities: the reference on hand-computed values (dropout's are in
test_dropout_reference.py).

The generic tests already check every VJP against finite differences; these pin down the
conventions with values worked out by hand (no torch).
"""

from __future__ import annotations

import numpy as np
import pytest

from reference import embedding as emb
from reference import functional as RF
from reference import rnn_utils as rnn

# -- embedding ----------------------------------------------------------------------------------


def test_embedding_renormalises_only_referenced_rows_above_max_norm():
    w = np.array([[3.0, 4.0], [0.3, 0.4], [6.0, 8.0]])  # 2-norms 5, 0.5, 10
    scales = emb.renorm_scales(w, np.array([0, 1]), max_norm=1.0, norm_type=2.0)
    np.testing.assert_allclose(scales, [1 / (5 + 1e-7), 1.0, 1.0])  # row 2 is not referenced
    inf_scales = emb.renorm_scales(w, np.array([2]), max_norm=4.0, norm_type=float("inf"))
    np.testing.assert_allclose(inf_scales, [1.0, 1.0, 4 / (8 + 1e-7)])
    np.testing.assert_allclose(emb.row_norms(w, 1.0), [7.0, 0.7, 14.0])


def test_embedding_gradient_scatter_adds_scales_by_frequency_and_skips_padding():
    idx = np.array([[0, 2], [2, 2]])
    w = np.zeros((3, 1))
    g = np.array([[[1.0], [2.0]], [[3.0], [4.0]]])
    np.testing.assert_array_equal(RF.vjp("embedding", idx, w, cotangent=g)["weight"].ravel(), [1.0, 0.0, 9.0])
    np.testing.assert_array_equal(RF.vjp("embedding", idx, w, scale_grad_by_freq=True, cotangent=g)["weight"].ravel(),
                                  [1.0, 0.0, 3.0])
    np.testing.assert_array_equal(RF.vjp("embedding", idx, w, padding_idx=2, cotangent=g)["weight"].ravel(),
                                  [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(RF.vjp("embedding", idx, w, padding_idx=-1, cotangent=g)["weight"].ravel(),
                                  [1.0, 0.0, 0.0])


def test_embedding_reads_the_renormalised_rows_and_renorm_is_the_weight_after_the_call():
    w = np.array([[3.0, 4.0], [0.3, 0.4], [6.0, 8.0]])
    out = RF.embedding(np.array([0, 1, 0]), w, max_norm=1.0)
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.3, 0.4], [0.6, 0.8]], rtol=1e-7)
    after = RF.embedding_renorm_(w, np.array([0, 1]), 1.0, 2.0)
    np.testing.assert_array_equal(after[1:], w[1:])  # below max_norm, and not referenced
    with pytest.raises(IndexError):
        RF.embedding(np.array([3]), w)


@pytest.mark.parametrize(("padding_idx", "rows", "expected"), [(None, 4, None), (1, 4, 1), (-1, 4, 3), (-4, 4, 0)])
def test_negative_padding_idx_counts_from_the_end(padding_idx, rows, expected):
    assert emb.normalise_padding_idx(padding_idx, rows) == expected


@pytest.mark.parametrize("padding_idx", [4, -5])
def test_padding_idx_out_of_range_is_rejected(padding_idx):
    with pytest.raises(ValueError):
        emb.normalise_padding_idx(padding_idx, 4)


# -- packing ------------------------------------------------------------------------------------


def test_pack_sorts_by_length_and_lays_steps_out_time_major():
    # T = 3, B = 3, lengths (1, 3, 2): sorted order is sequences 1, 2, 0.
    x = np.array([[10.0, 20.0, 30.0], [11.0, 21.0, 31.0], [12.0, 22.0, 32.0]])  # x[t, b]
    lengths = np.array([1, 3, 2])
    order = rnn.sort_order(lengths)
    np.testing.assert_array_equal(order, [1, 2, 0])
    np.testing.assert_array_equal(rnn.batch_sizes(lengths[order]), [3, 2, 1])
    np.testing.assert_array_equal(rnn.pack(x, lengths, order, batch_first=False), [20, 30, 10, 21, 31, 22])
    np.testing.assert_array_equal(rnn.pack(x.T, lengths, order, batch_first=True), [20, 30, 10, 21, 31, 22])
    grad = rnn.pack_vjp(np.arange(1.0, 7.0), lengths, order, x.shape, batch_first=False)
    np.testing.assert_array_equal(grad, [[3, 1, 2], [0, 4, 5], [0, 6, 0]])


def test_pad_restores_the_batch_order_and_pads_with_the_value():
    data = np.array([20.0, 30.0, 10.0, 21.0, 31.0, 22.0])
    padded, lengths = rnn.pad(data, np.array([3, 2, 1]), np.array([2, 0, 1]), False, -1.0, total_length=4)
    np.testing.assert_array_equal(padded, [[10, 20, 30], [-1, 21, 31], [-1, 22, -1], [-1, -1, -1]])
    np.testing.assert_array_equal(lengths, [1, 3, 2])
    g = np.arange(12.0).reshape(4, 3)
    np.testing.assert_array_equal(rnn.pad_vjp(g, np.array([3, 2, 1]), np.array([2, 0, 1]), False),
                                  [1, 2, 0, 4, 5, 7])
    with pytest.raises(ValueError):
        rnn.pad(data, np.array([3, 2, 1]), None, False, 0.0, total_length=2)


def test_any_decreasing_order_of_tied_lengths_is_valid():
    lengths = np.array([2, 3, 2])
    assert rnn.is_decreasing_order(lengths, [1, 0, 2]) and rnn.is_decreasing_order(lengths, [1, 2, 0])
    assert not rnn.is_decreasing_order(lengths, [0, 1, 2]) and not rnn.is_decreasing_order(lengths, [1, 1, 0])


@pytest.mark.parametrize(("lengths", "steps", "enforce"), [([3, 0], 3, False), ([4, 1], 3, False), ([1, 2], 3, True),
                                                           ([2], 3, False)])
def test_pack_rejects_what_torch_rejects(lengths, steps, enforce):
    with pytest.raises(ValueError):
        rnn.check_lengths(np.array(lengths), steps, 2, enforce)
