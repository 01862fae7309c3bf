"""Normalisation layers: batch normalisation over (N, C, *) inputs, channel axis 1.

Statistics are taken per channel over every other axis (N and the spatial axes); K denotes the
number of values per channel, N·prod(spatial).
"""

from __future__ import annotations

import numpy as np

from reference.registry import functional


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


# -- layer normalisation (the statistics of each sample's trailing dims) -------------------------

def _layer_axes(x: np.ndarray, normalized_shape: int | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else tuple(normalized_shape)
    if len(shape) == 0 or len(shape) > x.ndim or tuple(x.shape[x.ndim - len(shape):]) != shape:
        raise ValueError(f"layer_norm: input of shape {x.shape} does not end in normalized_shape {shape}")
    return tuple(range(x.ndim - len(shape), x.ndim))


def _layer_parts(x: np.ndarray, axes: tuple[int, ...], eps: float) -> tuple[np.ndarray, np.ndarray]:
    """x̂ = (x - mean)/σ and 1/σ over ``axes`` (biased variance, σ = sqrt(var + eps)), kept dims."""
    mean = x.mean(axis=axes, keepdims=True)
    centred = x - mean
    inv_sigma = 1.0 / np.sqrt((centred * centred).mean(axis=axes, keepdims=True) + eps)
    return centred * inv_sigma, inv_sigma


def _layer_norm_vjp(cotangent: np.ndarray, input: np.ndarray, normalized_shape: int | tuple[int, ...],
                    weight: np.ndarray | None = None, bias: np.ndarray | None = None,
                    eps: float = 1e-5) -> dict[str, np.ndarray]:
    """With x̂ and σ over the normalised dims and means over those K values, w the weight (1 when
    None): dL/dx = (1/σ)·(ĝ - mean(ĝ) - x̂·mean(ĝ·x̂)), ĝ = g·w; dL/dw = Σ_batch g·x̂;
    dL/db = Σ_batch g (sums over the leading, unnormalised dims)."""
    axes = _layer_axes(input, normalized_shape)
    xhat, inv_sigma = _layer_parts(input, axes, eps)
    g = cotangent
    gw = g if weight is None else g * weight
    grads = {"input": inv_sigma * (gw - gw.mean(axis=axes, keepdims=True)
                                   - xhat * (gw * xhat).mean(axis=axes, keepdims=True))}
    lead = tuple(range(input.ndim - len(axes)))
    if weight is not None:
        grads["weight"] = (g * xhat).sum(axis=lead)
    if bias is not None:
        grads["bias"] = g.sum(axis=lead)
    return grads


def _layer_norm_example(rng: np.random.Generator) -> tuple[tuple, dict]:
    x = rng.standard_normal((2, 3, 4))
    return (x, (3, 4), rng.standard_normal((3, 4)), rng.standard_normal((3, 4))), {"eps": 1e-5}


@functional(vjp=_layer_norm_vjp, example=_layer_norm_example)
def layer_norm(input: np.ndarray, normalized_shape: int | tuple[int, ...], weight: np.ndarray | None = None,
               bias: np.ndarray | None = None, eps: float = 1e-5) -> np.ndarray:
    """y = (x - mean)/sqrt(var + eps)·weight + bias, the mean and the biased variance taken over the
    trailing dims ``normalized_shape`` of each sample. Shapes: input (*, *normalized_shape), weight
    and bias ``normalized_shape`` or None; y like input."""
    xhat, _ = _layer_parts(input, _layer_axes(input, normalized_shape), eps)
    y = xhat if weight is None else xhat * weight
    return y if bias is None else y + bias
