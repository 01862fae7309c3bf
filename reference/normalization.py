"""Normalisation layers: batch normalisation over (N, C, *) inputs, channel axis 1.

Statistics are taken per channel over every other axis (N and the spatial axes); K denotes the
number of values per channel, N·prod(spatial).
"""

from __future__ import annotations

import numpy as np


def _stat_axes(x: np.ndarray) -> tuple[int, ...]:
    return (0,) + tuple(range(2, x.ndim))


def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    """A (C,) vector shaped to broadcast against an (N, C, *) array."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def values_per_channel(x: np.ndarray) -> int:
    """K = N·prod(spatial dims)."""
    return int(np.prod([x.shape[a] for a in _stat_axes(x)]))


def batch_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and *biased* variance (divided by K) of an (N, C, *) input."""
    axes = _stat_axes(x)
    mean = x.mean(axis=axes)
    var = ((x - _per_channel(mean, x.ndim)) ** 2).mean(axis=axes)
    return mean, var


def batch_norm(x: np.ndarray, mean: np.ndarray, var: np.ndarray, weight: np.ndarray | None,
               bias: np.ndarray | None, eps: float) -> np.ndarray:
    """y = (x - mean)/sqrt(var + eps)·weight + bias, per channel (weight 1 / bias 0 when None)."""
    nd = x.ndim
    y = (x - _per_channel(mean, nd)) / np.sqrt(_per_channel(var, nd) + eps)
    if weight is not None:
        y = y * _per_channel(weight, nd)
    if bias is not None:
        y = y + _per_channel(bias, nd)
    return y


def batch_norm_train_vjp(x: np.ndarray, weight: np.ndarray | None, g: np.ndarray,
                         eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dL/dx, dL/dweight, dL/dbias) when the batch statistics normalise (training mode).

    With x̂ = (x - mean)/σ, σ = sqrt(var + eps), w the weight (1 when None) and means over the
    K values of a channel: dL/dx = (w/σ)·(g - mean(g) - x̂·mean(g·x̂)),
    dL/dw = sum(g·x̂), dL/db = sum(g).
    """
    nd, axes = x.ndim, _stat_axes(x)
    mean, var = batch_stats(x)
    sigma = np.sqrt(var + eps)
    xhat = (x - _per_channel(mean, nd)) / _per_channel(sigma, nd)
    w = np.ones_like(mean) if weight is None else weight
    g_mean = _per_channel(g.mean(axis=axes), nd)
    gx_mean = _per_channel((g * xhat).mean(axis=axes), nd)
    grad_x = _per_channel(w / sigma, nd) * (g - g_mean - xhat * gx_mean)
    return grad_x, (g * xhat).sum(axis=axes), g.sum(axis=axes)


def batch_norm_eval_vjp(x: np.ndarray, mean: np.ndarray, var: np.ndarray, weight: np.ndarray | None,
                        g: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dL/dx, dL/dweight, dL/dbias) when fixed (running) statistics normalise (evaluation mode).

    dL/dx = g·w/σ, dL/dw = sum(g·(x - mean)/σ), dL/db = sum(g), σ = sqrt(var + eps).
    """
    nd, axes = x.ndim, _stat_axes(x)
    inv_sigma = 1.0 / np.sqrt(var + eps)
    w = np.ones_like(mean) if weight is None else weight
    xhat = (x - _per_channel(mean, nd)) * _per_channel(inv_sigma, nd)
    return g * _per_channel(w * inv_sigma, nd), (g * xhat).sum(axis=axes), g.sum(axis=axes)


def momentum_factor(momentum: float | None, batches_tracked_after: int) -> float:
    """The running-average factor: ``momentum``, or 1/num_batches_tracked (counted after this
    batch) for the cumulative moving average (momentum None)."""
    return 1.0 / batches_tracked_after if momentum is None else float(momentum)


def update_running_stats(running_mean: np.ndarray, running_var: np.ndarray, batches_tracked: int,
                         x: np.ndarray, momentum: float | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Running statistics after one training batch: (mean', var', num_batches_tracked + 1).

    mean' = (1 - m)·mean + m·batch_mean and var' = (1 - m)·var + m·batch_var·K/(K - 1): the
    running variance takes the *unbiased* batch variance. m = momentum_factor(momentum, n + 1).
    """
    k = values_per_channel(x)
    if k < 2:
        raise ValueError("the unbiased batch variance needs more than one value per channel")
    mean, var = batch_stats(x)
    tracked = int(batches_tracked) + 1
    m = momentum_factor(momentum, tracked)
    new_mean = (1.0 - m) * running_mean + m * mean
    new_var = (1.0 - m) * running_var + m * var * (k / (k - 1))
    return new_mean, new_var, tracked
