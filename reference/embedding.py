"""Embedding: a lookup table, its in-place max-norm renormalisation and its scatter-add VJP.

Shapes: weight (num_embeddings, embedding_dim); indices of any shape (*) with values in
[0, num_embeddings); output (*, embedding_dim).
"""

from __future__ import annotations

import numpy as np


def normalise_padding_idx(padding_idx: int | None, num_embeddings: int) -> int | None:
    """A negative padding_idx counts from the end (−1 is the last row); must lie in [−n, n)."""
    if padding_idx is None:
        return None
    if not -num_embeddings <= padding_idx < num_embeddings:
        raise ValueError(f"padding_idx {padding_idx} must be within [-{num_embeddings}, {num_embeddings})")
    return padding_idx % num_embeddings


def check_indices(indices: np.ndarray, num_embeddings: int) -> None:
    if indices.size and (indices.min() < 0 or indices.max() >= num_embeddings):
        raise IndexError(f"embedding index out of range [0, {num_embeddings})")


def row_norms(weight: np.ndarray, norm_type: float) -> np.ndarray:
    """‖w_i‖_p per row (p = inf: max |w_ij|; p = 0 is not a norm and is not used)."""
    a = np.abs(weight)
    if np.isinf(norm_type):
        return a.max(axis=1, initial=0.0)
    return np.sum(a**norm_type, axis=1) ** (1.0 / norm_type)


def renorm_scales(weight: np.ndarray, indices: np.ndarray, max_norm: float, norm_type: float) -> np.ndarray:
    """Per row: max_norm / (‖w_i‖ + 1e-7) for each referenced row whose norm exceeds max_norm, else 1
    (torch's ``embedding_renorm_``: the 1e-7 keeps the division finite)."""
    norms = row_norms(weight, norm_type)
    referenced = np.zeros(weight.shape[0], dtype=bool)
    referenced[np.asarray(indices, dtype=np.int64).reshape(-1)] = True
    return np.where(referenced & (norms > max_norm), max_norm / (norms + 1e-7), 1.0)


def embedding(weight: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """y[..., :] = weight[indices[...], :]."""
    return weight[np.asarray(indices, dtype=np.int64)]


def embedding_vjp(indices: np.ndarray, g: np.ndarray, num_embeddings: int, padding_idx: int | None,
                  scale_grad_by_freq: bool) -> np.ndarray:
    """dL/dW: the output cotangents scatter-added into the rows they were read from, each divided
    by how often its row occurs among the indices when ``scale_grad_by_freq``; the padding_idx
    row gets none (the renormalisation is not differentiated: it happens under no_grad)."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    rows = g.reshape(idx.size, -1)
    counts = np.bincount(idx, minlength=num_embeddings).astype(np.float64)
    if scale_grad_by_freq:
        rows = rows / counts[idx][:, None]
    grad = np.zeros((num_embeddings, rows.shape[1]))
    np.add.at(grad, idx, rows)
    if padding_idx is not None:
        grad[padding_idx] = 0.0
    return grad
