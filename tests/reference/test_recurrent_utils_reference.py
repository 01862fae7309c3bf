"""torch.nn.utils.rnn's reference on its own terms (no torch): hand-laid-out values, the inverses
(unpad of pad, unpack of pack), and what each function rejects. The VJPs are checked against
finite differences by the generic test and, for nested arguments, by test_recurrent_reference."""

from __future__ import annotations

import numpy as np
import pytest

from reference import functional as RF

P = -9.0  # a padding value that no sequence holds
A, B, C = np.array([1.0, 2.0, 3.0]), np.array([4.0]), np.array([6.0, 7.0])


def test_pad_sequence_lays_each_sequence_at_its_side():
    empty = np.zeros(0)
    np.testing.assert_array_equal(RF.pad_sequence([A, B, empty], padding_value=P),
                                  [[1, 4, P], [2, P, P], [3, P, P]])
    left = RF.pad_sequence([A, B, empty], batch_first=True, padding_value=P, padding_side="left")
    np.testing.assert_array_equal(left, [[1, 2, 3], [P, P, 4], [P, P, P]])
    g = np.arange(9.0).reshape(3, 3)
    grads = RF.vjp("pad_sequence", [A, B, empty], padding_side="left", cotangent=g)["sequences"]
    np.testing.assert_array_equal(grads[0], [0, 3, 6])  # column 0, all three steps
    np.testing.assert_array_equal(grads[1], [7])  # the last step of column 1
    assert grads[2].shape == (0,)


def test_pad_sequence_keeps_signed_zeros_and_non_finite_values():
    out = RF.pad_sequence([np.array([-0.0, np.nan]), np.array([np.inf])], padding_value=-0.0)
    assert np.signbit(out[0, 0]) and np.isnan(out[1, 0]) and out[0, 1] == np.inf and np.signbit(out[1, 1])


def test_pack_sequence_sorts_stably_and_lays_steps_time_major():
    data, sizes, order, inverse = RF.pack_sequence([A, B, C], enforce_sorted=False)
    np.testing.assert_array_equal(data, [1, 6, 4, 2, 7, 3])  # t = 0: A, C, B; t = 1: A, C; t = 2: A
    np.testing.assert_array_equal(sizes, [3, 2, 1])
    np.testing.assert_array_equal(order, [0, 2, 1])
    np.testing.assert_array_equal(inverse, [0, 2, 1])
    tied = RF.pack_sequence([B, C, np.array([8.0, 9.0])], enforce_sorted=False)
    np.testing.assert_array_equal(tied[2], [1, 2, 0])  # equal lengths keep their batch order
    sorted_pack = RF.pack_sequence([A, C, B])
    assert sorted_pack[2] is None and sorted_pack[3] is None
    np.testing.assert_array_equal(sorted_pack[0], [1, 6, 4, 2, 7, 3])


@pytest.mark.parametrize("sequences", [[], [A, np.zeros(0)], [np.array(1.0), A], [np.zeros((2, 3)), np.zeros((2, 1))]])
def test_pack_sequence_rejects_what_torch_documents(sequences):
    with pytest.raises(ValueError):
        RF.pack_sequence(sequences, enforce_sorted=False)


def test_pack_sequence_enforces_the_order_when_asked():
    with pytest.raises(ValueError):
        RF.pack_sequence([B, A])


@pytest.mark.parametrize(("sequences", "kwargs"), [([], {}), ([np.array(1.0)], {}), ([A, np.zeros((1, 2))], {}),
                                                   ([A], {"padding_side": "middle"})])
def test_pad_sequence_rejects_what_torch_documents(sequences, kwargs):
    with pytest.raises(ValueError):
        RF.pad_sequence(sequences, **kwargs)


@pytest.mark.parametrize("batch_first", [False, True])
def test_unpad_inverts_pad_and_leaves_its_input_untouched(batch_first):
    seqs = [A, np.zeros(0), C]
    padded = RF.pad_sequence(seqs, batch_first=batch_first, padding_value=P)
    before = padded.copy()
    back = RF.unpad_sequence(padded, np.array([3, 0, 2]), batch_first=batch_first)
    for got, want in zip(back, seqs):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(padded, before)
    assert not np.shares_memory(back[0], padded)


@pytest.mark.parametrize("lengths", [[3, 0], [4, 1, 1], [4, 1], [3, -1]])
def test_unpad_rejects_lengths_that_do_not_fit(lengths):
    with pytest.raises(ValueError):
        RF.unpad_sequence(np.zeros((3, 3)), np.array(lengths))


def test_unpad_sequence_gradient_puts_each_cotangent_back_and_zeros_the_padding():
    g = RF.vjp("unpad_sequence", np.zeros((3, 2)), np.array([1, 3]), cotangent=[np.array([5.0]), np.array([1.0, 2, 3])])
    np.testing.assert_array_equal(g["padded_sequences"], [[5, 1], [0, 2], [0, 3]])


def test_unpack_inverts_pack_in_the_original_order():
    seqs = [B, A, C]
    packed = RF.pack_sequence(seqs, enforce_sorted=False)
    for got, want in zip(RF.unpack_sequence(packed), seqs):
        np.testing.assert_array_equal(got, want)
    g = RF.vjp("unpack_sequence", packed, cotangent=[np.array([10.0]), np.array([1.0, 2, 3]), np.array([5.0, 6])])
    np.testing.assert_array_equal(g["packed_sequences"][0], [1, 5, 10, 2, 6, 3])  # in packed (sorted) row order
    assert g["packed_sequences"][1:] == (None, None, None)


def test_pad_packed_restores_the_batch_and_pads_to_total_length():
    x = np.array([[1.0, 4.0, 6.0], [2.0, P, 7.0], [3.0, P, P]])
    packed = RF.pack_padded_sequence(x, np.array([3, 1, 2]), enforce_sorted=False)
    padded, lengths = RF.pad_packed_sequence(packed, padding_value=0.5, total_length=4)
    np.testing.assert_array_equal(padded, [[1, 4, 6], [2, 0.5, 7], [3, 0.5, 0.5], [0.5, 0.5, 0.5]])
    np.testing.assert_array_equal(lengths, [3, 1, 2])
    with pytest.raises(ValueError):
        RF.pad_packed_sequence(packed, total_length=2)


@pytest.mark.parametrize("packed", [np.zeros(3), (np.zeros(4), np.array([2, 3])), (np.zeros(3), np.array([2, 2])),
                                    (np.zeros(3), np.array([2, 1]), np.array([0, 1]), np.array([1, 0]))])
def test_unpack_rejects_what_is_not_a_consistent_packed_sequence(packed):
    with pytest.raises((TypeError, ValueError)):
        RF.unpack_sequence(packed)
