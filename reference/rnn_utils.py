"""``torch.nn.utils.rnn``: packing, padding and splitting variable-length sequences.

A packed batch (torch's ``PackedSequence``, here the tuple ``(data, batch_sizes, sorted_indices,
unsorted_indices)``) stores the valid time steps of B sequences time-major: for t = 0, 1, ... the
sequences still running at t (``batch_sizes[t]`` of them), in *sorted* order (longest first).
``sorted_indices[j]`` is the original batch position of the j-th longest sequence and
``unsorted_indices`` its inverse permutation; both are None when the batch came sorted
(``enforce_sorted=True``). Shapes: padded (T, B, *) or (B, T, *) with ``batch_first``; data
(Σ lengths, *); batch_sizes (max length,).

Every function here only moves elements: forward and gradient are exact copies (the gradient of a
padding element is dropped, the gradient of a dropped element is 0). Conventions:

- Lengths are checked as torch documents them (one per sequence, each in [1, T] for packing,
  decreasing when ``enforce_sorted``); ``unpad_sequence`` accepts lengths in [0, T].
- Ties in length are sorted stably (batch order); torch does not promise an order among equal
  lengths, so callers that compare against torch accept any decreasing order.
- Arguments that are lists in torch (``sequences``) are lists (or tuples) of arrays here, and also
  one array whose first dim indexes the sequences (torch iterates a tensor the same way). The
  gradient of an argument has the argument's structure: a list for a list (an array when the
  argument was one array), and for a PackedSequence the tuple (gradient of data, None, None,
  None), integer fields having none.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reference.registry import functional

Packed = tuple  # (data, batch_sizes, sorted_indices | None, unsorted_indices | None)


# -- the layout of a packed batch -------------------------------------------------------------------

def check_lengths(lengths: np.ndarray, steps: int, batch: int, enforce_sorted: bool) -> None:
    """What torch checks: one length per sequence, each in [1, T], decreasing when enforced."""
    if lengths.ndim != 1 or lengths.size != batch:
        raise ValueError(f"expected {batch} lengths, got shape {lengths.shape}")
    if lengths.size and (lengths.min() < 1 or lengths.max() > steps):
        raise ValueError(f"lengths must lie in [1, {steps}]")
    if enforce_sorted and np.any(np.diff(lengths) > 0):
        raise ValueError("lengths must be sorted in decreasing order when enforce_sorted is True")


def sort_order(lengths: np.ndarray) -> np.ndarray:
    """A permutation sorting ``lengths`` in decreasing order (stable: ties keep batch order)."""
    return np.argsort(-np.asarray(lengths), kind="stable").astype(np.int64)


def is_decreasing_order(lengths: np.ndarray, order: np.ndarray) -> bool:
    """Whether ``order`` is a permutation that sorts ``lengths`` in decreasing order (any order
    among equal lengths)."""
    order = np.asarray(order, dtype=np.int64).reshape(-1)
    n = len(lengths)
    return (order.size == n and np.array_equal(np.sort(order), np.arange(n))
            and not np.any(np.diff(np.asarray(lengths)[order]) > 0))


def batch_sizes(sorted_lengths: np.ndarray) -> np.ndarray:
    """batch_sizes[t] = how many sequences are longer than t, t < max length."""
    steps = int(sorted_lengths.max(initial=0))
    return (np.asarray(sorted_lengths)[None, :] > np.arange(steps)[:, None]).sum(axis=1).astype(np.int64)


def lengths_of(sizes: np.ndarray) -> np.ndarray:
    """The sorted lengths of a packed batch from its batch_sizes (the inverse of ``batch_sizes``)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    batch = int(sizes[0]) if len(sizes) else 0
    return (sizes[None, :] > np.arange(batch)[:, None]).sum(axis=1).astype(np.int64)


def _valid_steps(sorted_lengths: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(t, j) of every valid step, time-major: the packed row order."""
    valid = np.arange(steps)[:, None] < np.asarray(sorted_lengths)[None, :]
    return np.nonzero(valid)


def pack(padded: np.ndarray, lengths: np.ndarray, order: np.ndarray, batch_first: bool) -> np.ndarray:
    """data: the valid steps of ``padded`` in packed order (sorted by ``order``)."""
    x = np.swapaxes(padded, 0, 1) if batch_first else padded
    t, j = _valid_steps(np.asarray(lengths)[order], int(np.max(lengths, initial=0)))
    return x[t, np.asarray(order)[j]]


def pack_vjp(g_data: np.ndarray, lengths: np.ndarray, order: np.ndarray, padded_shape: tuple[int, ...],
             batch_first: bool) -> np.ndarray:
    """dL/d(padded): each packed row's cotangent back at its step; padding gets 0."""
    shape = (padded_shape[1], padded_shape[0], *padded_shape[2:]) if batch_first else padded_shape
    grad = np.zeros(shape)
    t, j = _valid_steps(np.asarray(lengths)[order], int(np.max(lengths, initial=0)))
    grad[t, np.asarray(order)[j]] = g_data
    return np.swapaxes(grad, 0, 1) if batch_first else grad


def pad(data: np.ndarray, sizes: np.ndarray, unsorted_indices: np.ndarray | None, batch_first: bool,
        padding_value: float, total_length: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(padded, lengths): the packed steps laid out as (T, B, *) (or (B, T, *)) with
    ``padding_value`` after each sequence's end, in the original batch order; T = total_length
    (which must be >= the longest sequence) or the longest length."""
    sizes = np.asarray(sizes, dtype=np.int64)
    steps = len(sizes)
    sorted_lengths = lengths_of(sizes)
    if total_length is not None and total_length < steps:
        raise ValueError(f"total_length {total_length} is smaller than the longest sequence ({steps})")
    out_steps = steps if total_length is None else total_length
    out = np.full((out_steps, len(sorted_lengths), *data.shape[1:]), float(padding_value))
    t, j = _valid_steps(sorted_lengths, steps)
    out[t, j] = data
    lengths = sorted_lengths
    if unsorted_indices is not None:
        out = out[:, unsorted_indices]
        lengths = sorted_lengths[unsorted_indices]
    return (np.swapaxes(out, 0, 1) if batch_first else out), lengths


def pad_vjp(g_padded: np.ndarray, sizes: np.ndarray, unsorted_indices: np.ndarray | None,
            batch_first: bool) -> np.ndarray:
    """dL/d(data): the cotangent at each packed row's place in the padded output."""
    g = np.swapaxes(g_padded, 0, 1) if batch_first else g_padded
    if unsorted_indices is not None:
        g = g[:, np.argsort(unsorted_indices)]  # back to sorted order
    t, j = _valid_steps(lengths_of(sizes), len(sizes))
    return g[t, j]


def check_packed(sequence: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """A PackedSequence as (data, batch_sizes, sorted_indices, unsorted_indices), checked for
    consistency: batch_sizes positive and non-increasing, Σ batch_sizes rows of data, the indices
    a permutation of the batch and its inverse (TypeError for anything but such a tuple)."""
    if isinstance(sequence, np.ndarray) or not isinstance(sequence, (tuple, list)) or not 2 <= len(sequence) <= 4:
        raise TypeError("expected a PackedSequence (data, batch_sizes[, sorted_indices, unsorted_indices])")
    data, sizes, *rest = sequence
    sorted_indices, unsorted_indices = (list(rest) + [None, None])[:2]
    data = np.asarray(data, dtype=np.float64)
    sizes = np.asarray(sizes, dtype=np.int64).reshape(-1)
    if data.ndim < 1 or (sizes.size and (sizes.min() < 1 or np.any(np.diff(sizes) > 0))):
        raise ValueError("batch_sizes must be positive and non-increasing, data at least 1-d")
    if int(sizes.sum()) != data.shape[0]:
        raise ValueError(f"data has {data.shape[0]} rows, batch_sizes claim {int(sizes.sum())}")
    batch = int(sizes[0]) if sizes.size else 0
    if (sorted_indices is None) != (unsorted_indices is None):
        raise ValueError("sorted_indices and unsorted_indices come together")
    if sorted_indices is not None:
        sorted_indices = np.asarray(sorted_indices, dtype=np.int64).reshape(-1)
        unsorted_indices = np.asarray(unsorted_indices, dtype=np.int64).reshape(-1)
        if not (np.array_equal(np.sort(sorted_indices), np.arange(batch))
                and np.array_equal(sorted_indices[unsorted_indices], np.arange(batch))):
            raise ValueError("sorted_indices must be a permutation of the batch and unsorted_indices its inverse")
    return data, sizes, sorted_indices, unsorted_indices


def packed_gradient(g_data: np.ndarray, sequence: Any) -> tuple:
    """The gradient of a PackedSequence argument: that of its data, None for its integer fields."""
    return (g_data, *([None] * (len(sequence) - 1)))


def _data_cotangent(cotangent: Any) -> np.ndarray:
    """The cotangent of a PackedSequence result: that of its data (the first of the tuple)."""
    return np.asarray(cotangent[0] if isinstance(cotangent, (tuple, list)) else cotangent, dtype=np.float64)


# -- pack_padded_sequence / pad_packed_sequence -----------------------------------------------------

def packed_in_order(input: np.ndarray, lengths: np.ndarray, order: np.ndarray, batch_first: bool,
                    enforce_sorted: bool) -> Packed:
    """The PackedSequence of ``pack_padded_sequence`` with the batch sorted by ``order`` (any order
    that sorts the lengths; the indices are None when ``enforce_sorted``)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.asarray(order, dtype=np.int64)
    data = pack(input, lengths, order, batch_first)
    sizes = batch_sizes(lengths[order])
    if enforce_sorted:
        return data, sizes, None, None
    return data, sizes, order, np.argsort(order).astype(np.int64)


def pack_order(input: np.ndarray, lengths: Any, batch_first: bool, enforce_sorted: bool) -> np.ndarray:
    """The order ``pack_padded_sequence`` sorts the batch in (the identity when ``enforce_sorted``),
    the lengths checked as torch checks them (ValueError)."""
    x = np.asarray(input)
    if x.ndim < 2:
        raise ValueError(f"pack_padded_sequence needs a padded input of at least 2 dims, got {x.ndim}")
    steps, batch = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
    lengths = np.asarray(lengths, dtype=np.int64)
    check_lengths(lengths, steps, batch, enforce_sorted)
    return np.arange(batch, dtype=np.int64) if enforce_sorted else sort_order(lengths)


def _pack_padded_sequence_vjp(cotangent: Any, input: np.ndarray, lengths: Any, batch_first: bool = False,
                              enforce_sorted: bool = True) -> dict[str, np.ndarray]:
    """dL/d(input): each packed row's cotangent back at its step of the padded input; 0 in the padding."""
    order = pack_order(input, lengths, batch_first, enforce_sorted)
    return {"input": pack_vjp(_data_cotangent(cotangent), np.asarray(lengths, dtype=np.int64), order,
                              np.shape(input), batch_first)}


def _pack_padded_sequence_example(rng: np.random.Generator) -> tuple[tuple, dict]:
    return (rng.standard_normal((4, 3, 2)), np.array([2, 4, 1])), {"enforce_sorted": False}


@functional(vjp=_pack_padded_sequence_vjp, example=_pack_padded_sequence_example)
def pack_padded_sequence(input: np.ndarray, lengths: Any, batch_first: bool = False,
                         enforce_sorted: bool = True) -> Packed:
    """Pack a padded batch: input (T, B, *) (or (B, T, *) with ``batch_first``), lengths (B,) in
    [1, T] (decreasing when ``enforce_sorted``) -> (data (Σ lengths, *), batch_sizes (max length,),
    sorted_indices, unsorted_indices), the steps t < lengths[b] of each sequence, time-major, the
    sequences sorted by decreasing length (stably; the indices None when ``enforce_sorted``)."""
    order = pack_order(input, lengths, batch_first, enforce_sorted)
    return packed_in_order(np.asarray(input, dtype=np.float64), lengths, order, batch_first, enforce_sorted)


def _pad_packed_sequence_vjp(cotangent: Any, sequence: Any, batch_first: bool = False, padding_value: float = 0.0,
                             total_length: int | None = None) -> dict[str, np.ndarray]:
    """dL/d(sequence.data): the cotangent at each packed row's place in the padded output."""
    g = cotangent[0] if isinstance(cotangent, (tuple, list)) else cotangent
    _, sizes, _, unsorted = check_packed(sequence)
    return {"sequence": packed_gradient(pad_vjp(np.asarray(g, dtype=np.float64), sizes, unsorted, batch_first),
                                        sequence)}


@functional(vjp=_pad_packed_sequence_vjp)
def pad_packed_sequence(sequence: Any, batch_first: bool = False, padding_value: float = 0.0,
                        total_length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of ``pack_padded_sequence``: a PackedSequence (data, batch_sizes, sorted_indices,
    unsorted_indices) -> (padded (T, B, *) or (B, T, *), lengths (B,) int64), each sequence in its
    original batch position followed by ``padding_value`` (any float, ±inf and NaN too) up to
    T = ``total_length`` (>= the longest length, else ValueError) or the longest length."""
    data, sizes, _, unsorted = check_packed(sequence)
    return pad(data, sizes, unsorted, batch_first, padding_value, total_length)


# -- pad_sequence / pack_sequence / unpad_sequence / unpack_sequence --------------------------------

PADDING_SIDES = ("right", "left")


def as_sequences(sequences: Any) -> list[np.ndarray]:
    """The sequences of a list, a tuple, or an array iterated along its first dim, each (L_b, *)
    with the same trailing dims (ValueError: no sequence, a 0-d one, or differing trailing dims)."""
    seqs = [np.asarray(s, dtype=np.float64) for s in sequences]
    if not seqs:
        raise ValueError("received an empty list of sequences")
    if any(s.ndim == 0 for s in seqs):
        raise ValueError("every sequence needs a time dimension: (L, *)")
    trailing = seqs[0].shape[1:]
    if any(s.shape[1:] != trailing for s in seqs):
        raise ValueError(f"the sequences' trailing dims differ: {[s.shape[1:] for s in seqs]}")
    return seqs


def _places(lengths: np.ndarray, steps: int, padding_side: str) -> tuple[np.ndarray, np.ndarray]:
    """(b, t) of every element of the concatenated sequences in the padded (B, T, *) layout."""
    if padding_side not in PADDING_SIDES:
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    b = np.repeat(np.arange(len(lengths)), lengths)
    t = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    if padding_side == "left":
        t = t + np.repeat(steps - lengths, lengths)
    return b, t


def _pad_sequence_vjp(cotangent: np.ndarray, sequences: Any, batch_first: bool = False, padding_value: float = 0.0,
                      padding_side: str = "right") -> dict[str, Any]:
    """dL/d(sequences[b]) = the cotangent at sequence b's places in the padded output."""
    seqs = as_sequences(sequences)
    lengths = np.array([s.shape[0] for s in seqs], dtype=np.int64)
    b, t = _places(lengths, int(lengths.max()), padding_side)
    g = np.asarray(cotangent, dtype=np.float64)
    flat = (g if batch_first else np.swapaxes(g, 0, 1))[b, t]
    grads = np.split(flat, np.cumsum(lengths)[:-1])
    return {"sequences": np.stack(grads) if isinstance(sequences, np.ndarray) else grads}


def _pad_sequence_example(rng: np.random.Generator) -> tuple[tuple, dict]:
    return (rng.standard_normal((3, 4, 2)),), {"batch_first": True, "padding_value": -1.0, "padding_side": "left"}


@functional(vjp=_pad_sequence_vjp, example=_pad_sequence_example)
def pad_sequence(sequences: Any, batch_first: bool = False, padding_value: float = 0.0,
                 padding_side: str = "right") -> np.ndarray:
    """Stack B sequences (L_b, *) into (T, B, *) (or (B, T, *) with ``batch_first``), T = max L_b:
    sequence b fills steps [0, L_b) (``padding_side='right'``) or [T - L_b, T) ('left'), every
    other step is ``padding_value``. Sequences of length 0 are allowed (all padding); an empty list,
    a 0-d sequence, differing trailing dims or another padding_side is a ValueError."""
    seqs = as_sequences(sequences)
    lengths = np.array([s.shape[0] for s in seqs], dtype=np.int64)
    steps = int(lengths.max())
    b, t = _places(lengths, steps, padding_side)
    out = np.full((len(seqs), steps, *seqs[0].shape[1:]), float(padding_value))
    out[b, t] = np.concatenate(seqs, axis=0)
    return out if batch_first else np.swapaxes(out, 0, 1).copy()


def pack_sequence_in_order(sequences: Any, enforce_sorted: bool = True,
                           order: np.ndarray | None = None) -> tuple[Packed, Any]:
    """``pack_sequence`` with the batch sorted by ``order`` (default: the stable sort), and its
    pullback: the cotangent of the packed data -> the gradient of each sequence (a list)."""
    seqs = as_sequences(sequences)
    lengths = np.array([s.shape[0] for s in seqs], dtype=np.int64)
    padded = pad_sequence(seqs)
    check_lengths(lengths, padded.shape[0], len(seqs), enforce_sorted)
    if order is None:
        order = np.arange(len(seqs), dtype=np.int64) if enforce_sorted else sort_order(lengths)

    def pullback(g_data: np.ndarray) -> list[np.ndarray]:
        return _pad_sequence_vjp(pack_vjp(g_data, lengths, order, padded.shape, False), seqs)["sequences"]

    return packed_in_order(padded, lengths, order, False, enforce_sorted), pullback


def _pack_sequence_vjp(cotangent: Any, sequences: Any, enforce_sorted: bool = True) -> dict[str, Any]:
    """dL/d(sequences[b]): the cotangents of sequence b's packed rows, in time order."""
    grads = pack_sequence_in_order(sequences, enforce_sorted)[1](_data_cotangent(cotangent))
    return {"sequences": np.stack(grads) if isinstance(sequences, np.ndarray) else grads}


def _pack_sequence_example(rng: np.random.Generator) -> tuple[tuple, dict]:
    return (rng.standard_normal((3, 2, 2)),), {"enforce_sorted": True}


@functional(vjp=_pack_sequence_vjp, example=_pack_sequence_example)
def pack_sequence(sequences: Any, enforce_sorted: bool = True) -> Packed:
    """``pack_padded_sequence(pad_sequence(sequences), lengths, enforce_sorted=enforce_sorted)``
    with lengths[b] = L_b: B sequences (L_b, *), every L_b >= 1 (decreasing when
    ``enforce_sorted``) -> (data (Σ L_b, *), batch_sizes, sorted_indices, unsorted_indices)."""
    return pack_sequence_in_order(sequences, enforce_sorted)[0]


def _unpad_lengths(padded_sequences: np.ndarray, lengths: Any, batch_first: bool) -> tuple[np.ndarray, np.ndarray]:
    """(padded as (B, T, *), lengths) checked: at least 2 dims, one length per sequence in [0, T]."""
    x = np.asarray(padded_sequences, dtype=np.float64)
    if x.ndim < 2:
        raise ValueError(f"unpad_sequence needs padded sequences of at least 2 dims, got {x.ndim}")
    x = x if batch_first else np.swapaxes(x, 0, 1)
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or lengths.size != x.shape[0] or lengths.dtype.kind not in "iu":
        raise ValueError(f"expected {x.shape[0]} integer lengths, got {lengths.shape} {lengths.dtype}")
    if lengths.size and (lengths.min() < 0 or lengths.max() > x.shape[1]):
        raise ValueError(f"lengths must lie in [0, {x.shape[1]}]")
    return x, lengths.astype(np.int64)


def _unpad_sequence_vjp(cotangent: Any, padded_sequences: np.ndarray, lengths: Any,
                        batch_first: bool = False) -> dict[str, np.ndarray]:
    """dL/d(padded): the cotangent of sequence b at its steps t < lengths[b]; 0 in the padding."""
    x, lengths = _unpad_lengths(padded_sequences, lengths, batch_first)
    grad = np.zeros(x.shape)
    b, t = _places(lengths, x.shape[1], "right")
    if len(lengths):
        grad[b, t] = np.concatenate([np.asarray(g, dtype=np.float64).reshape(-1, *x.shape[2:]) for g in cotangent])
    return {"padded_sequences": grad if batch_first else np.swapaxes(grad, 0, 1)}


def _unpad_sequence_example(rng: np.random.Generator) -> tuple[tuple, dict]:
    return (rng.standard_normal((3, 2, 2)), np.array([3, 3])), {}  # equal lengths: the outputs stack


@functional(vjp=_unpad_sequence_vjp, example=_unpad_sequence_example)
def unpad_sequence(padded_sequences: np.ndarray, lengths: Any, batch_first: bool = False) -> list[np.ndarray]:
    """The inverse of ``pad_sequence``: padded (T, B, *) (or (B, T, *) with ``batch_first``) and
    lengths (B,) in [0, T] -> the list of B sequences padded[:lengths[b], b] (copies, the input is
    left untouched). Its gradient takes one cotangent per sequence (a list, or one array stacking
    them when they have equal lengths)."""
    x, lengths = _unpad_lengths(padded_sequences, lengths, batch_first)
    return [x[b, :n].copy() for b, n in enumerate(lengths.tolist())]


def _unpack_sequence_vjp(cotangent: Any, packed_sequences: Any) -> dict[str, np.ndarray]:
    """dL/d(packed_sequences.data): each sequence's cotangent at its packed rows."""
    data, sizes, _, unsorted = check_packed(packed_sequences)
    padded, lengths = pad(data, sizes, unsorted, True, 0.0, None)
    g_padded = _unpad_sequence_vjp(cotangent, padded, lengths, batch_first=True)["padded_sequences"]
    return {"packed_sequences": packed_gradient(pad_vjp(g_padded, sizes, unsorted, True), packed_sequences)}


@functional(vjp=_unpack_sequence_vjp)
def unpack_sequence(packed_sequences: Any) -> list[np.ndarray]:
    """``unpad_sequence(*pad_packed_sequence(packed_sequences, batch_first=True), batch_first=True)``:
    a PackedSequence (data, batch_sizes, sorted_indices, unsorted_indices) -> the list of its B
    sequences (L_b, *) in the original batch order."""
    data, sizes, _, unsorted = check_packed(packed_sequences)
    padded, lengths = pad(data, sizes, unsorted, True, 0.0, None)
    return unpad_sequence(padded, lengths, batch_first=True)


def _packed_example(rng: np.random.Generator) -> tuple[tuple, dict]:
    lengths = np.array([2, 3, 1])
    data, sizes, order, inverse = pack_padded_sequence(rng.standard_normal((3, 3, 2)), lengths, enforce_sorted=False)
    return ((data, sizes, order, inverse),), {}


def _sequences_example(rng: np.random.Generator, lengths: tuple[int, ...]) -> list[np.ndarray]:
    return [rng.standard_normal((n, 2)) for n in lengths]


# Example calls of the functions whose arguments or results nest arrays in lists and tuples (a
# PackedSequence, a list of sequences of unequal lengths), for the finite-difference check of their
# VJPs (tests/reference/test_recurrent_reference.py).
NESTED_EXAMPLES: dict[str, Any] = {
    "pad_packed_sequence": lambda rng: (_packed_example(rng)[0], {"batch_first": True, "total_length": 4}),
    "unpack_sequence": _packed_example,
    "pad_sequence": lambda rng: ((_sequences_example(rng, (2, 0, 3)),), {"padding_side": "left"}),
    "pack_sequence": lambda rng: ((_sequences_example(rng, (2, 3, 1)),), {"enforce_sorted": False}),
    "unpad_sequence": lambda rng: ((rng.standard_normal((2, 3, 2)), np.array([1, 0, 2])), {"batch_first": False}),
}

