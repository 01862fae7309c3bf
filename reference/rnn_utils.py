"""Packing variable-length sequences: ``pack_padded_sequence`` and ``pad_packed_sequence``.

A packed batch stores the valid time steps of B sequences time-major: for t = 0, 1, ... the
sequences still running at t (``batch_sizes[t]`` of them), in *sorted* order (longest first).
``sorted_indices[j]`` is the original batch position of the j-th longest sequence and
``unsorted_indices`` its inverse permutation. Shapes: padded (T, B, *) or (B, T, *) with
``batch_first``; data (Σ lengths, *); batch_sizes (max length,).
"""

from __future__ import annotations

import numpy as np


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
    batch = int(sizes[0]) if steps else 0
    sorted_lengths = (sizes[None, :] > np.arange(batch)[:, None]).sum(axis=1).astype(np.int64)
    if total_length is not None and total_length < steps:
        raise ValueError(f"total_length {total_length} is smaller than the longest sequence ({steps})")
    out_steps = steps if total_length is None else total_length
    out = np.full((out_steps, batch, *data.shape[1:]), float(padding_value))
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
    sizes = np.asarray(sizes, dtype=np.int64)
    batch = int(sizes[0]) if len(sizes) else 0
    if unsorted_indices is not None:
        g = g[:, np.argsort(unsorted_indices)]  # back to sorted order
    sorted_lengths = (sizes[None, :] > np.arange(batch)[:, None]).sum(axis=1)
    t, j = _valid_steps(sorted_lengths, len(sizes))
    return g[t, j]
