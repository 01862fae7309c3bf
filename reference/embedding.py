"""Embedding: a lookup table, its in-place max-norm renormalisation and its scatter-add VJP.

Shapes: weight (num_embeddings, embedding_dim); indices of any shape (*) with values in
[0, num_embeddings); output (*, embedding_dim). ``embedding`` mirrors F.embedding (input first);
``embedding_renorm_`` gives the weight after torch.embedding_renorm_ (which F.embedding applies in
place, under no_grad, when max_norm is given); ``scatter_rows`` is the gradient both Embedding and
EmbeddingBag send to the weight.
"""

from __future__ import annotations

import numpy as np

from reference.registry import functional


def normalise_padding_idx(padding_idx: int | None, num_embeddings: int) -> int | None:
    """A negative padding_idx counts from the end (−1 is the last row); must lie in [−n, n)."""
    if padding_idx is None:
        return None
    if not -num_embeddings <= padding_idx < num_embeddings:
        raise ValueError(f"padding_idx {padding_idx} must be within [-{num_embeddings}, {num_embeddings})")
    return padding_idx % num_embeddings


def check_indices(indices: np.ndarray, num_embeddings: int) -> None:
    """Every index lies in [0, num_embeddings) (IndexError otherwise)."""
    if np.size(indices) and (np.min(indices) < 0 or np.max(indices) >= num_embeddings):
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


@functional(example=lambda rng: ((rng.standard_normal((4, 3)) * 2, np.array([0, 2, 2])), {"max_norm": 1.0,
                                                                                            "norm_type": 2.0}))
def embedding_renorm_(weight, input, max_norm, norm_type):
    """torch.embedding_renorm_ as a value: the weight after every row referenced by ``input`` whose
    ``norm_type``-norm exceeds ``max_norm`` is scaled by max_norm / (norm + 1e-7); other rows are
    unchanged. (weight (R, D), input any shape of indices.) Not differentiated: torch applies it
    under no_grad."""
    check_indices(input, weight.shape[0])
    return weight * renorm_scales(weight, input, max_norm, norm_type)[:, None]


def scatter_rows(indices: np.ndarray, rows: np.ndarray, num_embeddings: int, padding_idx: int | None = None,
                 scale_grad_by_freq: bool = False, counted: np.ndarray | None = None) -> np.ndarray:
    """The (num_embeddings, D) gradient of a lookup: ``rows`` (one per index, (n, D)) scatter-added
    into the rows they were read from; with ``scale_grad_by_freq`` each divided by how often its
    row occurs among ``counted`` (default: the indices themselves); none to ``padding_idx``."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    rows = np.asarray(rows, dtype=np.float64)
    rows = rows.reshape(idx.size, rows.shape[-1] if rows.ndim else 1)
    if scale_grad_by_freq:
        source = idx if counted is None else np.asarray(counted, dtype=np.int64).reshape(-1)
        counts = np.bincount(source, minlength=num_embeddings).astype(np.float64)
        rows = rows / np.maximum(counts[idx], 1.0)[:, None]
    grad = np.zeros((num_embeddings, rows.shape[1]))
    np.add.at(grad, idx, rows)
    if padding_idx is not None:
        grad[padding_idx] = 0.0
    return grad


def _embedding_vjp(cotangent, input, weight, padding_idx=None, max_norm=None, norm_type=2.0,
                   scale_grad_by_freq=False, sparse=False):
    """{"weight": the cotangent rows scatter-added into the rows they were read from}."""
    rows = weight.shape[0]
    g = np.asarray(cotangent, dtype=np.float64).reshape(np.size(input), weight.shape[1])
    return {"weight": scatter_rows(input, g, rows, normalise_padding_idx(padding_idx, rows), scale_grad_by_freq)}


@functional(vjp=_embedding_vjp, example=lambda rng: ((np.array([[0, 2], [2, 1]]), rng.standard_normal((3, 4))), {}))
def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False, sparse=False):
    """F.embedding: y[..., :] = w'[input[...], :] with w' the weight after ``embedding_renorm_``
    when max_norm is given (the weight itself otherwise). input: int indices of any shape in
    [0, R) (IndexError otherwise); weight (R, D); output input.shape + (D,).

    Gradient (of the weight): the cotangent rows scatter-added into the rows they were read from,
    each divided by its row's frequency among the indices with ``scale_grad_by_freq``; none to
    ``padding_idx`` (negative counts from the end; outside [−R, R) raises ValueError), whose row is
    read as is. The renormalisation is not differentiated (torch applies it under no_grad), and
    ``sparse`` only changes how torch stores the same gradient."""
    rows = weight.shape[0]
    normalise_padding_idx(padding_idx, rows)
    check_indices(input, rows)
    if max_norm is not None:
        weight = embedding_renorm_(weight, input, max_norm, norm_type)
    return weight[np.asarray(input, dtype=np.int64)]
