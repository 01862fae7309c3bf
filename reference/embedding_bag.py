"""EmbeddingBag: sums, means or maxima of bags of embedding rows, and their VJP.

``embedding_bag`` mirrors F.embedding_bag (input first). Bags:

- a 2-d input (B, N) is B bags of N indices each (offsets must be None);
- a 1-d input (n,) with 1-d ``offsets`` (B,) is B bags, bag b holding input[offsets[b]:offsets[b + 1]]
  (the last one up to n); with ``include_last_offset`` offsets has B + 1 entries, the last one the
  end of the last bag (n, CSR style). offsets[0] must be 0, offsets non-decreasing and at most n.
  Equal neighbours make empty bags.

Entries equal to ``padding_idx`` are left out of their bag: they add nothing, count nothing in a
mean, take part in no maximum. A bag with nothing left gives zeros, in every mode.

- mode "sum": y_b = Σ_j s_j·w'[i_j] over the entries j of bag b, s the ``per_sample_weights``
  (1 without; only mode "sum" takes them);
- mode "mean": y_b = Σ_j w'[i_j] / |bag b|;
- mode "max": y_b,d = max_j w'[i_j, d]; its gradient goes to the entry holding the maximum (the
  first in bag order among equal values: an index repeated in a bag is one row either way; torch
  does not document which of equal values of distinct rows wins).

w' is the weight after ``embedding_renorm_`` when ``max_norm`` is given: every row referenced by
the input (padding entries too) whose ``norm_type``-norm exceeds max_norm is rescaled, in place in
torch, not differentiated. Gradients: of the weight, each entry's share of its bag's cotangent
(s_j·g_b, g_b/|bag b|, or g_b,d where it holds the maximum) scatter-added into its row, divided by
the row's frequency among the input's entries with ``scale_grad_by_freq`` (sum and mean only); of
``per_sample_weights``, s_j's: ⟨g_b, w'[i_j]⟩ (0 for padding entries).
"""

from __future__ import annotations

import numpy as np

from reference.embedding import check_indices, embedding_renorm_, normalise_padding_idx, scatter_rows
from reference.registry import functional

MODES = ("sum", "mean", "max")


def bags(input: np.ndarray, offsets: np.ndarray | None, include_last_offset: bool = False
         ) -> tuple[np.ndarray, np.ndarray, int]:
    """(flat indices, bag of each entry (−1: in no bag), number of bags B), after torch's checks."""
    input = np.asarray(input, dtype=np.int64)
    if input.ndim == 2:
        if offsets is not None:
            raise ValueError("if input is 2D, then offsets has to be None")
        b, n = input.shape
        return input.reshape(-1), np.repeat(np.arange(b), n), b
    if input.ndim != 1:
        raise ValueError(f"input has to be 1D or 2D, but got {input.ndim}D")
    if offsets is None or np.ndim(offsets) != 1:
        raise ValueError("offsets has to be a 1D tensor")
    offsets = np.asarray(offsets, dtype=np.int64)
    n = input.size
    if include_last_offset:
        if offsets.size == 0:
            raise ValueError("include_last_offset needs at least one offset")
        starts, ends = offsets[:-1], offsets[1:]
    else:
        starts, ends = offsets, np.append(offsets[1:], n)
    if offsets.size and offsets[0] != 0:
        raise ValueError(f"offsets[0] has to be 0, got {offsets[0]}")
    if offsets.size and (np.any(np.diff(offsets) < 0) or offsets[-1] > n):
        raise ValueError("offsets must be non-decreasing and at most the input's length")
    position = np.arange(n)
    bag = np.searchsorted(starts, position, side="right") - 1
    inside = (bag >= 0) & (position < (ends[bag] if starts.size else 0))
    return input, np.where(inside, bag, -1), int(starts.size)


def _parts(input, weight, offsets, max_norm, norm_type, mode, per_sample_weights, include_last_offset, padding_idx,
           scale_grad_by_freq=False, sparse=False):
    """The checked call: (flat indices, bag per entry (−1 left out), B, w', weights s per entry,
    entry counted (in a bag, not padding), size of each bag)."""
    if weight.ndim != 2:
        raise ValueError(f"weight has to be a 2D array, got {weight.ndim}D")
    if per_sample_weights is not None and np.shape(per_sample_weights) != np.shape(input):
        raise ValueError("per_sample_weights must have the shape of the input")
    if mode not in MODES:
        raise ValueError(f"mode has to be one of sum, mean or max, got {mode!r}")
    if mode == "max" and (scale_grad_by_freq or sparse):
        raise ValueError("max mode supports neither scale_grad_by_freq nor sparse")
    if per_sample_weights is not None and mode != "sum":
        raise ValueError("per_sample_weights is only supported for mode='sum'")
    flat, bag, b, used, size = bag_layout(input, offsets, include_last_offset, padding_idx, weight.shape[0])
    if max_norm is not None:
        weight = embedding_renorm_(weight, flat, max_norm, norm_type)
    s = np.ones(flat.size) if per_sample_weights is None else np.asarray(per_sample_weights, np.float64).reshape(-1)
    return flat, bag, b, weight, s, used, size


def bag_layout(input: np.ndarray, offsets: np.ndarray | None, include_last_offset: bool, padding_idx: int | None,
               num_embeddings: int) -> tuple[np.ndarray, np.ndarray, int, np.ndarray, np.ndarray]:
    """(flat indices, bag of each entry (−1: in no bag), B, entry used (in a bag, not padding),
    size of each bag (used entries)), after the checks of indices and padding_idx."""
    padding = normalise_padding_idx(padding_idx, num_embeddings)
    flat, bag, b = bags(input, offsets, include_last_offset)
    check_indices(flat, num_embeddings)
    used = (bag >= 0) & (flat != (-1 if padding is None else padding))
    return flat, bag, b, used, np.bincount(bag[used], minlength=b)[:b].astype(np.float64)


def _maxima(flat, bag, b, weight, used):
    """(y (B, D), the entry holding each maximum (B, D), −1 for an empty bag): the first in bag
    order among equal values."""
    d = weight.shape[1]
    if b == 0:
        return np.zeros((0, d)), np.zeros((0, d), dtype=np.int64)
    values = weight[flat]
    y = np.full((b, d), -np.inf)
    np.maximum.at(y, bag[used], values[used])
    order = np.where(used[:, None] & (values == y[np.maximum(bag, 0)]), np.arange(flat.size)[:, None], flat.size)
    first = np.full((b, d), flat.size)
    np.minimum.at(first, bag[used], order[used])
    empty = first == flat.size
    return np.where(empty, 0.0, y), np.where(empty, -1, first)


def _embedding_bag_vjp(cotangent, input, weight, offsets=None, max_norm=None, norm_type=2, scale_grad_by_freq=False,
                       mode="mean", sparse=False, per_sample_weights=None, include_last_offset=False, padding_idx=None):
    """{"weight": each entry's share of its bag's cotangent scatter-added into its row (divided by
    the row's frequency with scale_grad_by_freq), "per_sample_weights": ⟨g_b, w'[i_j]⟩ (when given)}."""
    flat, bag, b, w, s, used, size = _parts(input, weight, offsets, max_norm, norm_type, mode, per_sample_weights,
                                            include_last_offset, padding_idx, scale_grad_by_freq, sparse)
    g = np.asarray(cotangent, dtype=np.float64).reshape(b, weight.shape[1])
    rows = weight.shape[0]
    # Each entry's bag's cotangent (entries in no bag: zeros, they are not used).
    g_of = np.vstack([g, np.zeros((1, weight.shape[1]))])[np.where(bag >= 0, bag, b)]
    share = np.zeros((flat.size, weight.shape[1]))
    if mode == "max":
        first = _maxima(flat, bag, b, w, used)[1]
        bag_of, dim = np.nonzero(first >= 0)
        share[first[bag_of, dim], dim] = g[bag_of, dim]
    else:
        scale = s if mode == "sum" else 1.0 / np.maximum(np.append(size, 1.0)[np.where(bag >= 0, bag, b)], 1.0)
        share = np.where(used[:, None], g_of * scale[:, None], 0.0)
    counted = flat[bag >= 0]
    grads = {"weight": scatter_rows(flat, share, rows, None, scale_grad_by_freq, counted)}
    if per_sample_weights is not None:
        dots = np.where(used, np.sum(g_of * w[flat], axis=1), 0.0)
        grads["per_sample_weights"] = dots.reshape(np.shape(per_sample_weights))
    return grads


def _example(rng: np.random.Generator):
    input = np.array([1, 2, 4, 1, 4, 3, 2, 0])
    return (input, rng.standard_normal((5, 3))), {"offsets": np.array([0, 2, 2, 5]), "mode": "sum",
                                                 "per_sample_weights": rng.standard_normal(8)}


@functional(vjp=_embedding_bag_vjp, example=_example)
def embedding_bag(input, weight, offsets=None, max_norm=None, norm_type=2, scale_grad_by_freq=False, mode="mean",
                  sparse=False, per_sample_weights=None, include_last_offset=False, padding_idx=None):
    """F.embedding_bag: (B, D) reductions of bags of rows of weight (R, D) (see the module
    docstring for bags, modes, padding_idx and max_norm). Raises ValueError for a 2-d input with
    offsets, a 1-d input without, offsets not starting at 0, decreasing or beyond the input, an
    unknown mode, max mode with scale_grad_by_freq or sparse, per_sample_weights of another shape
    or with a mode other than sum, and a padding_idx outside [−R, R); IndexError for an index
    outside [0, R)."""
    flat, bag, b, w, s, used, size = _parts(input, weight, offsets, max_norm, norm_type, mode, per_sample_weights,
                                            include_last_offset, padding_idx, scale_grad_by_freq, sparse)
    if mode == "max":
        return _maxima(flat, bag, b, w, used)[0]
    y = np.zeros((b, weight.shape[1]))
    np.add.at(y, bag[used], w[flat[used]] * s[used][:, None])
    return y / np.maximum(size, 1.0)[:, None] if mode == "mean" else y
