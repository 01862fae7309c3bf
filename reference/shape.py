"""Reshaping and channel permutations: ``torch.flatten``, ``torch.unflatten`` (the functional
forms of ``nn.Flatten`` and ``nn.Unflatten``) and ``torch.nn.functional.channel_shuffle``.

Each is a copy: every output element is one input element (in row-major order for the reshapes,
permuted channels for the shuffle), so values, NaN, ±inf and the sign of zero pass unchanged.
Each VJP is the inverse copy of the cotangent. ``scatter_error`` is the error analysis of the
VJP of any copy operator (a scatter-add): the padding modes reuse it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from reference.registry import functional


def _wrap(dim: int, ndim: int) -> int:
    """torch's dim wrapping: [-ndim, ndim - 1] (a 0-d tensor takes dims -1 and 0); IndexError
    outside."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"a dim must be an int, got {type(dim).__name__}")
    span = max(ndim, 1)
    if not -span <= dim < span:
        raise IndexError(f"dimension out of range (expected to be in range of [{-span}, {span - 1}], but got {dim})")
    return int(dim) % span


def _flatten_example(rng: np.random.Generator) -> tuple[tuple, dict]:
    return (rng.standard_normal((2, 3, 4, 2)),), {"start_dim": 1, "end_dim": -2}


def _flatten_vjp(cotangent: np.ndarray, input: np.ndarray, start_dim: int = 0, end_dim: int = -1
                 ) -> dict[str, np.ndarray]:
    """The cotangent reshaped back to the input's shape."""
    return {"input": np.reshape(np.asarray(cotangent, dtype=np.float64), np.shape(input))}


@functional(vjp=_flatten_vjp, example=_flatten_example)
def flatten(input: np.ndarray, start_dim: int = 0, end_dim: int = -1) -> np.ndarray:
    """Merge dims start_dim .. end_dim (inclusive, negative dims wrap) into one of size Π of their
    sizes, in row-major order; the other dims are kept. A 0-d input gives shape (1,) (its dims
    -1 and 0 both name the one element). start_dim after end_dim (once wrapped) is a ValueError, a
    dim out of range an IndexError. nn.Flatten is flatten(input, start_dim=1, end_dim=-1)."""
    x = np.asarray(input, dtype=np.float64)
    start, end = _wrap(start_dim, x.ndim), _wrap(end_dim, x.ndim)
    if start > end:
        raise ValueError(f"flatten() has invalid args: start_dim {start_dim} cannot come after end_dim {end_dim}")
    if x.ndim == 0:
        return x.reshape(1)
    return x.reshape(*x.shape[:start], int(np.prod(x.shape[start:end + 1], dtype=np.int64)), *x.shape[end + 1:])


def unflattened_shape(shape: Sequence[int], dim: int, sizes: Sequence[int]) -> tuple[int, ...]:
    """The shape of ``unflatten(input of shape, dim, sizes)``: dim's size split into ``sizes``, one
    of which may be -1 (inferred). Raises TypeError for a non-int dim or sizes that are not a
    tuple or list of ints, IndexError for a dim out of range and ValueError for: a 0-d input,
    empty sizes, more than one -1, any other negative size, sizes that do not multiply up to the
    dim's size, and a -1 beside a zero size (ambiguous)."""
    if not isinstance(sizes, (tuple, list)) or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool)
                                                        for s in sizes):
        raise TypeError(f"unflattened_size must be a tuple of ints, got {sizes!r}")
    if len(shape) == 0:
        raise ValueError("unflatten of a 0-d tensor")
    axis = _wrap(dim, len(shape))
    sizes = [int(s) for s in sizes]
    if not sizes:
        raise ValueError("unflatten: sizes must be non-empty")
    if sizes.count(-1) > 1 or any(s < -1 for s in sizes):
        raise ValueError(f"unflatten: invalid sizes {sizes} (at most one -1, no other negative size)")
    known = int(np.prod([s for s in sizes if s != -1], dtype=np.int64))
    if -1 in sizes:
        if known == 0 or shape[axis] % known:
            raise ValueError(f"unflatten: cannot infer the -1 of {sizes} for a dim of size {shape[axis]}")
        sizes[sizes.index(-1)] = shape[axis] // known
    elif known != shape[axis]:
        raise ValueError(f"unflatten: sizes {sizes} don't multiply up to the size of dim {dim} ({shape[axis]})")
    return (*shape[:axis], *sizes, *shape[axis + 1:])


def _unflatten_example(rng: np.random.Generator) -> tuple[tuple, dict]:
    return (rng.standard_normal((2, 6, 3)), -2, (3, -1)), {}


def _unflatten_vjp(cotangent: np.ndarray, input: np.ndarray, dim: int, sizes: Sequence[int]) -> dict[str, np.ndarray]:
    """The cotangent reshaped back to the input's shape."""
    return {"input": np.reshape(np.asarray(cotangent, dtype=np.float64), np.shape(input))}


@functional(vjp=_unflatten_vjp, example=_unflatten_example)
def unflatten(input: np.ndarray, dim: int, sizes: Sequence[int]) -> np.ndarray:
    """Split dim ``dim`` (negative wraps) into ``sizes`` (a tuple or list of ints, one of them -1
    for the size inferred), in row-major order: the inverse of flatten. Rules and errors:
    ``unflattened_shape``. nn.Unflatten(dim, unflattened_size) is unflatten(input, dim,
    unflattened_size)."""
    x = np.asarray(input, dtype=np.float64)
    return x.reshape(unflattened_shape(x.shape, dim, sizes))


def channel_shuffle_index(channels: int, groups: int) -> np.ndarray:
    """Output channel k·g + j reads input channel j·(C/g) + k (j < g, k < C/g): the channels as a
    (g, C/g) matrix, transposed."""
    return np.arange(channels).reshape(groups, channels // groups).T.reshape(-1)


def _check_shuffle(shape: Sequence[int], groups: int) -> None:
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)):
        raise TypeError(f"groups must be an int, got {type(groups).__name__}")
    if len(shape) <= 2:
        raise ValueError(f"channel_shuffle expects an input with more than 2 dims, got {tuple(shape)}")
    if groups <= 0:
        raise ValueError(f"the number of groups must be positive, got {groups}")
    if shape[1] % groups:
        raise ValueError(f"the number of channels ({shape[1]}) must be divisible by groups ({groups})")


def _channel_shuffle_example(rng: np.random.Generator) -> tuple[tuple, dict]:
    return (rng.standard_normal((2, 6, 3)), 3), {}


def _channel_shuffle_vjp(cotangent: np.ndarray, input: np.ndarray, groups: int) -> dict[str, np.ndarray]:
    """The inverse permutation of the cotangent's channels."""
    index = channel_shuffle_index(np.shape(input)[1], groups)
    grad = np.empty(np.shape(input), dtype=np.float64)
    grad[:, index] = cotangent
    return {"input": grad}


@functional(vjp=_channel_shuffle_vjp, example=_channel_shuffle_example)
def channel_shuffle(input: np.ndarray, groups: int) -> np.ndarray:
    """out[:, k·g + j] = in[:, j·(C/g) + k] for an (N, C, *) input with more than 2 dims, g =
    ``groups`` > 0 dividing C (ValueError otherwise; TypeError for a non-int g): the C channels
    split into g groups and interleaved, one channel of each group in turn. Same shape out."""
    x = np.asarray(input, dtype=np.float64)
    _check_shuffle(x.shape, groups)
    return x[:, channel_shuffle_index(x.shape[1], groups)]


def scatter_error(copies: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
    """First-order error bound, in units of u, of a copy operator's VJP: each input element's
    gradient is the sum of the n cotangents of the output positions copying it (``copies``), summed
    in any order with n - 1 roundings, so |error| <= (n - 1)·u·Σ|g| (``magnitude`` = Σ|g|); an
    element copied at most once is exact."""
    return np.maximum(np.asarray(copies, dtype=np.float64) - 1.0, 0.0) * np.asarray(magnitude, dtype=np.float64)
