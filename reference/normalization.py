"""Normalisation as a library: ``torch.nn.functional``'s batch_norm, instance_norm, group_norm,
layer_norm and rms_norm over named *statistic axes*, and the cross-channel local_response_norm and
CrossMapLRN2d (``reference.normalization_lrn``).

Every statistic-based layer is one computation: the input's mean μ and *biased* variance v are
taken over a set of axes (per channel over N and the spatial axes for BatchNorm; over the spatial
axes of each sample and channel for InstanceNorm; over each group's channels and spatial axes for
GroupNorm; over each sample's trailing ``normalized_shape`` dims for LayerNorm), and

    x̂ = (x - μ)/√(v + eps),    y = x̂·weight + bias;

RMSNorm divides by the root mean square instead (μ = 0, v = mean(x²)). ``standardise`` computes x̂
for any set of axes and ``standardise_vjp`` its pullback; each layer only names its axes and how its
affine parameters broadcast. The first-order error analysis of all of them is
``reference.normalization_errors``, written once over the same axes.

Conventions (torch's): the variance that normalises is the biased one (divided by K, the number of
values per statistic); the running variance takes the unbiased one (K/(K - 1)); eps sits inside the
square root. A constant slice (v = 0) gives x̂ = 0 and the gradient (g - mean g)/√eps. NaN and ±inf
propagate through every statistic they enter.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from reference.registry import functional

Axes = tuple[int, ...]


# -- statistics over axes ------------------------------------------------------------------------

def moments(x: np.ndarray, axes: Axes) -> tuple[np.ndarray, np.ndarray]:
    """Mean and biased variance of ``x`` over ``axes``, dims kept. The mean of x shifted by each
    slice's first (finite) value, so that a constant slice has exactly its value as mean and 0 as
    variance (a plain mean of equal values rounds, and (x - mean)² then invents a spread); then
    corrected by the mean of the residuals x - μ₀ (the corrected two-pass of Chan, Golub and
    LeVeque): the shifted differences round by u·|x - shift| each, far above u·mean|x| when the first
    value dominates the slice, and the correction leaves u·(γ_K·mean|x - μ| + |μ|), below the error
    model's E_μ (a float64 reference must not spend the bound it judges by). The variance is the
    mean square of the residuals from that mean (where the correction is not finite, an infinite or
    overflowing slice, the shifted mean and differences as they are)."""
    if not x.size:
        return np.zeros(_kept(x.shape, axes)), np.zeros(_kept(x.shape, axes))
    first = x[tuple(slice(0, 1) if a in axes else slice(None) for a in range(x.ndim))]
    with np.errstate(invalid="ignore", over="ignore"):
        shift = np.where(np.isfinite(first), first, 0.0)
        d = x - shift
        offset = d.mean(axis=axes, keepdims=True)
        rough = shift + offset
        mean = rough + (x - rough).mean(axis=axes, keepdims=True)
        corrected = np.isfinite(mean)
        mean = np.where(corrected, mean, rough)
        centred = np.where(corrected, x - mean, d - offset)
        return mean, (centred * centred).mean(axis=axes, keepdims=True)


def _kept(shape: Sequence[int], axes: Axes) -> tuple[int, ...]:
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


def standardise(x: np.ndarray, axes: Axes, eps: float, centred: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(x̂, 1/σ) over ``axes``, dims kept: x̂ = (x - μ)/σ, σ = √(v + eps) with μ and v the mean and
    biased variance; uncentred (RMS): x̂ = x/σ, σ = √(mean(x²) + eps)."""
    if centred:
        mean, var = moments(x, axes)
        centred_x = x - mean
    else:
        centred_x = x
        with np.errstate(invalid="ignore", over="ignore"):
            var = (x * x).mean(axis=axes, keepdims=True) if x.size else np.zeros(_kept(x.shape, axes))
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_sigma = 1.0 / np.sqrt(var + eps)
        return centred_x * inv_sigma, inv_sigma


def standardise_vjp(cotangent: np.ndarray, xhat: np.ndarray, inv_sigma: np.ndarray, axes: Axes,
                    centred: bool = True) -> np.ndarray:
    """The pullback of x ↦ x̂ over ``axes`` (``cotangent``: the cotangent of x̂, the weight already
    applied): (1/σ)·(ĝ - mean(ĝ) - x̂·mean(ĝ·x̂)), the mean(ĝ) term only when centred."""
    with np.errstate(invalid="ignore"):
        if not xhat.size:
            return np.zeros_like(xhat)
        bracket = cotangent - xhat * (cotangent * xhat).mean(axis=axes, keepdims=True)
        if centred:
            bracket = bracket - cotangent.mean(axis=axes, keepdims=True)
        return inv_sigma * bracket


def _affine(xhat: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None) -> np.ndarray:
    y = xhat if weight is None else xhat * weight
    return y if bias is None else y + bias


def _affine_grads(g: np.ndarray, xhat: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None,
                  param_axes: Axes, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """dL/dweight = Σ g·x̂ and dL/dbias = Σ g over ``param_axes`` (the axes the parameters are
    broadcast along), shaped ``shape``."""
    grads = {}
    if weight is not None:
        grads["weight"] = (g * xhat).sum(axis=param_axes).reshape(shape)
    if bias is not None:
        grads["bias"] = g.sum(axis=param_axes).reshape(shape)
    return grads


# -- batch normalisation: per channel over N and the spatial axes -------------------------------

def channel_axes(ndim: int) -> Axes:
    """The statistic axes of BatchNorm for an (N, C, *) input: every axis but the channel axis 1."""
    return (0,) + tuple(range(2, ndim))


def per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    """A (C,) vector shaped to broadcast against an (N, C, *) array of ``ndim`` dims."""
    return np.asarray(v, dtype=np.float64).reshape((1, -1) + (1,) * (ndim - 2))


def values_per_channel(x: np.ndarray) -> int:
    """K = N·prod(spatial dims) of an (N, C, *) input."""
    return int(np.prod([x.shape[a] for a in channel_axes(x.ndim)]))


def batch_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and *biased* variance (divided by K) of an (N, C, *) input, shape (C,)."""
    mean, var = moments(x, channel_axes(x.ndim))
    return mean.reshape(-1), var.reshape(-1)


def momentum_factor(momentum: float | None, batches_tracked_after: int) -> float:
    """The running-average factor of the BatchNorm modules: ``momentum``, or 1/num_batches_tracked
    (counted after this batch) for the cumulative moving average (momentum None)."""
    return 1.0 / batches_tracked_after if momentum is None else float(momentum)


def running_update(running: np.ndarray, statistic: np.ndarray, momentum: float) -> np.ndarray:
    """(1 - m)·running + m·statistic: the update rule of every running statistic."""
    return (1.0 - momentum) * running + momentum * statistic


def update_running_stats(running_mean: np.ndarray, running_var: np.ndarray, batches_tracked: int,
                         x: np.ndarray, momentum: float | None) -> tuple[np.ndarray, np.ndarray, int]:
    """The BatchNorm module's running statistics after one training batch: (mean', var',
    num_batches_tracked + 1), with m = momentum_factor(momentum, num_batches_tracked + 1) and
    mean' = (1 - m)·mean + m·batch_mean, var' = (1 - m)·var + m·batch_var·K/(K - 1) (the unbiased
    batch variance). Raises ValueError for K < 2."""
    tracked = int(batches_tracked) + 1
    return (*_batch_running_update(x, running_mean, running_var, momentum_factor(momentum, tracked)), tracked)


def _batch_running_update(x: np.ndarray, running_mean: np.ndarray, running_var: np.ndarray,
                          momentum: float) -> tuple[np.ndarray, np.ndarray]:
    k = values_per_channel(x)
    if k < 2:
        raise ValueError("the unbiased batch variance needs more than one value per channel")
    mean, var = batch_stats(x)
    return running_update(running_mean, mean, momentum), running_update(running_var, var * (k / (k - 1)), momentum)


def batch_norm_with_running_stats(
        input: np.ndarray, running_mean: np.ndarray | None, running_var: np.ndarray | None,
        weight: np.ndarray | None = None, bias: np.ndarray | None = None, training: bool = False,
        momentum: float = 0.1, eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``batch_norm`` in one call with the running statistics it leaves behind: (output,
    running_mean', running_var'). In training with running statistics given they are updated,
    running' = (1 - momentum)·running + momentum·batch statistic, the variance unbiased (K/(K - 1));
    otherwise they are returned unchanged (None stays None). ``momentum`` is the factor itself
    (the modules' momentum None is ``momentum_factor``)."""
    x = input
    if x.ndim < 2:
        raise ValueError(f"batch_norm expects an (N, C, *) input, got {x.ndim}-d")
    if not training and (running_mean is None or running_var is None):
        raise ValueError("batch_norm needs running statistics in evaluation mode (training=False)")
    use_batch = training or running_mean is None
    if use_batch and values_per_channel(x) == 1:
        raise ValueError(f"batch_norm: expected more than 1 value per channel when training, got {x.shape}")
    out = _per_channel_norm("batch_norm", x, running_mean, running_var, weight, bias, use_batch,
                            channel_axes(x.ndim), eps)
    if not (training and running_mean is not None and running_var is not None):
        return out, running_mean, running_var
    return (out, *_batch_running_update(x, running_mean, running_var, momentum))


def _per_channel_norm(name: str, x: np.ndarray, running_mean: np.ndarray | None, running_var: np.ndarray | None,
                      weight: np.ndarray | None, bias: np.ndarray | None, input_stats: bool, axes: Axes,
                      eps: float) -> np.ndarray:
    """The output of batch_norm / instance_norm for an (N, C, *) input: x standardised over ``axes``
    (``input_stats``) or by the running statistics, then the per-channel affine parameters; every
    (C,) vector is checked (ValueError)."""
    c = x.shape[1]
    for what, v in (("weight", weight), ("bias", bias), ("running_mean", running_mean), ("running_var", running_var)):
        if v is not None and np.shape(v) != (c,):
            raise ValueError(f"{name}: {what} of shape {np.shape(v)} for {c} channels")
    if input_stats:
        xhat, _ = standardise(x, axes, eps)
    else:
        if running_mean is None or running_var is None:
            raise ValueError(f"{name} needs running statistics to normalise with them")
        with np.errstate(divide="ignore", invalid="ignore"):
            xhat = (x - per_channel(running_mean, x.ndim)) / np.sqrt(per_channel(running_var, x.ndim) + eps)
    return _affine(xhat, None if weight is None else per_channel(weight, x.ndim),
                   None if bias is None else per_channel(bias, x.ndim))


def batch_norm_train_vjp(x: np.ndarray, weight: np.ndarray | None, g: np.ndarray,
                         eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dL/dx, dL/dweight, dL/dbias) when the batch statistics normalise (training mode).

    With x̂ = (x - mean)/σ, σ = sqrt(var + eps), w the weight (1 when None) and means over the
    K values of a channel: dL/dx = (w/σ)·(g - mean(g) - x̂·mean(g·x̂)),
    dL/dw = sum(g·x̂), dL/db = sum(g).
    """
    nd, axes = x.ndim, channel_axes(x.ndim)
    xhat, inv_sigma = standardise(x, axes, eps)
    gw = g if weight is None else g * per_channel(weight, nd)
    return standardise_vjp(gw, xhat, inv_sigma, axes), (g * xhat).sum(axis=axes), g.sum(axis=axes)


def batch_norm_eval_vjp(x: np.ndarray, mean: np.ndarray, var: np.ndarray, weight: np.ndarray | None,
                        g: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dL/dx, dL/dweight, dL/dbias) when fixed (running) statistics normalise (evaluation mode).

    dL/dx = g·w/σ, dL/dw = sum(g·(x - mean)/σ), dL/db = sum(g), σ = sqrt(var + eps).
    """
    nd, axes = x.ndim, channel_axes(x.ndim)
    with np.errstate(divide="ignore"):
        inv_sigma = per_channel(1.0 / np.sqrt(var + eps), nd)
    w = 1.0 if weight is None else per_channel(weight, nd)
    xhat = (x - per_channel(mean, nd)) * inv_sigma
    return g * w * inv_sigma, (g * xhat).sum(axis=axes), g.sum(axis=axes)


def _batch_norm_vjp(cotangent: np.ndarray, input: np.ndarray, running_mean: np.ndarray | None,
                    running_var: np.ndarray | None, weight: np.ndarray | None = None,
                    bias: np.ndarray | None = None, training: bool = False, momentum: float = 0.1,
                    eps: float = 1e-5) -> dict[str, np.ndarray]:
    """Batch statistics (training, or no running statistics): ``batch_norm_train_vjp``; fixed
    running statistics: ``batch_norm_eval_vjp``. The running statistics get no gradient."""
    if training or running_mean is None:
        gx, gw, gb = batch_norm_train_vjp(input, weight, cotangent, eps)
    else:
        gx, gw, gb = batch_norm_eval_vjp(input, running_mean, running_var, weight, cotangent, eps)
    grads = {"input": gx}
    if weight is not None:
        grads["weight"] = gw
    if bias is not None:
        grads["bias"] = gb
    return grads


def _batch_norm_example(rng: np.random.Generator) -> tuple[tuple, dict]:
    x = rng.standard_normal((3, 2, 4)) + 2.0
    return (x, rng.standard_normal(2), rng.uniform(0.5, 2.0, 2), rng.standard_normal(2),
            rng.standard_normal(2)), {"training": True, "momentum": 0.1, "eps": 1e-3}


@functional(vjp=_batch_norm_vjp, example=_batch_norm_example)
def batch_norm(input: np.ndarray, running_mean: np.ndarray | None, running_var: np.ndarray | None,
               weight: np.ndarray | None = None, bias: np.ndarray | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> np.ndarray:
    """y = (x - μ)/√(v + eps)·weight + bias per channel of an (N, C, *) input (weight and bias (C,),
    or None). Training (or running statistics None): μ and v are the batch's mean and biased variance
    over N and the spatial axes (K = N·prod(spatial) > 1 values per channel, else ValueError);
    evaluation: μ = running_mean, v = running_var. The updated running statistics of a training call
    come from ``batch_norm_with_running_stats`` (this function never mutates its arguments)."""
    return batch_norm_with_running_stats(input, running_mean, running_var, weight, bias, training, momentum, eps)[0]


# -- instance normalisation: per sample and channel over the spatial axes -----------------------

def instance_norm_with_running_stats(
        input: np.ndarray, running_mean: np.ndarray | None = None, running_var: np.ndarray | None = None,
        weight: np.ndarray | None = None, bias: np.ndarray | None = None, use_input_stats: bool = True,
        momentum: float = 0.1, eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``instance_norm`` with the running statistics it leaves behind: (output, running_mean',
    running_var'). With input statistics and running statistics given, running' = (1 - momentum)·
    running + momentum·(the batch mean of the per-instance statistic), the per-instance variance
    unbiased (K/(K - 1), K = prod(spatial)); otherwise they are returned unchanged."""
    x = input
    if x.ndim < 3:
        raise ValueError(f"instance_norm expects an (N, C, *spatial) input, got {x.ndim}-d")
    axes, k = tuple(range(2, x.ndim)), int(np.prod(x.shape[2:]))
    if use_input_stats and k == 1:
        raise ValueError(f"instance_norm: expected more than 1 spatial element when training, got {x.shape}")
    out = _per_channel_norm("instance_norm", x, running_mean, running_var, weight, bias, use_input_stats, axes, eps)
    if not (use_input_stats and running_mean is not None and running_var is not None):
        return out, running_mean, running_var
    mean, var = moments(x, axes)
    with np.errstate(invalid="ignore"):
        batch_mean = mean.reshape(x.shape[:2]).mean(axis=0)
        batch_var = (var.reshape(x.shape[:2]) * (k / (k - 1))).mean(axis=0)
    return out, running_update(running_mean, batch_mean, momentum), running_update(running_var, batch_var, momentum)


def _instance_norm_vjp(cotangent: np.ndarray, input: np.ndarray, running_mean: np.ndarray | None = None,
                       running_var: np.ndarray | None = None, weight: np.ndarray | None = None,
                       bias: np.ndarray | None = None, use_input_stats: bool = True, momentum: float = 0.1,
                       eps: float = 1e-5) -> dict[str, np.ndarray]:
    """Input statistics: dL/dx = (1/σ)·(ĝ - mean(ĝ) - x̂·mean(ĝ·x̂)) over the spatial axes of each
    sample and channel, ĝ = g·w; running statistics: dL/dx = g·w/σ_running. dL/dw = Σ g·x̂ and
    dL/db = Σ g over N and the spatial axes."""
    x, nd = input, input.ndim
    axes, param_axes = tuple(range(2, nd)), channel_axes(nd)
    w = None if weight is None else per_channel(weight, nd)
    g_hat = cotangent if w is None else cotangent * w
    if use_input_stats:
        xhat, inv_sigma = standardise(x, axes, eps)
        gx = standardise_vjp(g_hat, xhat, inv_sigma, axes)
    else:
        with np.errstate(divide="ignore"):
            inv_sigma = 1.0 / np.sqrt(per_channel(running_var, nd) + eps)
        xhat = (x - per_channel(running_mean, nd)) * inv_sigma
        gx = g_hat * inv_sigma
    return {"input": gx, **_affine_grads(cotangent, xhat, weight, bias, param_axes, (x.shape[1],))}


def _instance_norm_example(rng: np.random.Generator) -> tuple[tuple, dict]:
    return (rng.standard_normal((2, 3, 5)), None, None, rng.standard_normal(3), rng.standard_normal(3)), {"eps": 1e-3}


@functional(vjp=_instance_norm_vjp, example=_instance_norm_example)
def instance_norm(input: np.ndarray, running_mean: np.ndarray | None = None, running_var: np.ndarray | None = None,
                  weight: np.ndarray | None = None, bias: np.ndarray | None = None, use_input_stats: bool = True,
                  momentum: float = 0.1, eps: float = 1e-5) -> np.ndarray:
    """y = (x - μ)/√(v + eps)·weight + bias for an (N, C, *spatial) input, μ and v the mean and
    biased variance of each sample's channel over its spatial axes (K = prod(spatial) > 1, else
    ValueError), or with ``use_input_stats=False`` the running statistics (C,). weight and bias (C,)
    or None. The updated running statistics come from ``instance_norm_with_running_stats``."""
    return instance_norm_with_running_stats(input, running_mean, running_var, weight, bias, use_input_stats,
                                            momentum, eps)[0]


# -- group normalisation: per sample and group of channels --------------------------------------

def group_view(shape: Sequence[int], num_groups: int) -> tuple[int, ...]:
    """The (N, G, C/G, prod(spatial)) view of an (N, C, *) input in which GroupNorm's statistics are
    over axes (2, 3) and its per-channel parameters broadcast as (1, G, C/G, 1)."""
    n, c = shape[0], shape[1]
    return (n, num_groups, c // num_groups, int(np.prod(shape[2:], dtype=np.int64)))


def _check_groups(x: np.ndarray, num_groups: int, weight: np.ndarray | None, bias: np.ndarray | None) -> None:
    if x.ndim < 2:
        raise ValueError(f"group_norm expects at least 2 dimensions, got {x.ndim}")
    n, c = x.shape[:2]
    if num_groups < 1 or c % num_groups:
        raise ValueError(f"group_norm: {c} channels are not divisible by num_groups={num_groups}")
    if n * (c // num_groups) * int(np.prod(x.shape[2:], dtype=np.int64)) == 1:
        raise ValueError(f"group_norm: expected more than 1 value per channel when training, got {x.shape}")
    for name, v in (("weight", weight), ("bias", bias)):
        if v is not None and np.shape(v) != (c,):
            raise ValueError(f"group_norm: {name} of shape {np.shape(v)} for {c} channels")


def _group_norm_vjp(cotangent: np.ndarray, input: np.ndarray, num_groups: int, weight: np.ndarray | None = None,
                    bias: np.ndarray | None = None, eps: float = 1e-5) -> dict[str, np.ndarray]:
    """In the (N, G, C/G, S) view: dL/dx = (1/σ)·(ĝ - mean(ĝ) - x̂·mean(ĝ·x̂)) over axes (2, 3),
    ĝ = g·w per channel; dL/dw = Σ g·x̂, dL/db = Σ g over N and the spatial axes."""
    view = group_view(input.shape, num_groups)
    x, g = input.reshape(view), cotangent.reshape(view)
    xhat, inv_sigma = standardise(x, (2, 3), eps)
    g_hat = g if weight is None else g * weight.reshape(1, num_groups, -1, 1)
    gx = standardise_vjp(g_hat, xhat, inv_sigma, (2, 3)).reshape(input.shape)
    return {"input": gx, **_affine_grads(g, xhat, weight, bias, (0, 3), (input.shape[1],))}


def _group_norm_example(rng: np.random.Generator) -> tuple[tuple, dict]:
    return (rng.standard_normal((2, 6, 3)), 3, rng.standard_normal(6), rng.standard_normal(6)), {"eps": 1e-3}


@functional(vjp=_group_norm_vjp, example=_group_norm_example)
def group_norm(input: np.ndarray, num_groups: int, weight: np.ndarray | None = None, bias: np.ndarray | None = None,
               eps: float = 1e-5) -> np.ndarray:
    """y = (x - μ)/√(v + eps)·weight + bias for an (N, C, *) input: the C channels fall into
    ``num_groups`` consecutive groups of C/G, and μ, v are the mean and biased variance of each
    sample's group over its C/G channels and spatial axes; weight and bias (C,) per channel, or None.
    ValueError when C is not divisible by num_groups, or when N·(C/G)·prod(spatial) = 1 (torch's
    rule: a group of one element is fine as long as some other sample or channel exists)."""
    _check_groups(input, num_groups, weight, bias)
    view = group_view(input.shape, num_groups)
    xhat, _ = standardise(input.reshape(view), (2, 3), eps)
    y = xhat.reshape(input.shape)
    return _affine(y, None if weight is None else per_channel(weight, input.ndim),
                   None if bias is None else per_channel(bias, input.ndim))


# -- layer and RMS normalisation: over each sample's trailing dims ------------------------------

def trailing_axes(x: np.ndarray, normalized_shape: int | Sequence[int]) -> Axes:
    """The axes of ``normalized_shape``, the trailing dims of ``x`` (ValueError if x does not end in it)."""
    shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else tuple(normalized_shape)
    if len(shape) == 0 or len(shape) > x.ndim or tuple(x.shape[x.ndim - len(shape):]) != shape:
        raise ValueError(f"input of shape {x.shape} does not end in normalized_shape {shape}")
    return tuple(range(x.ndim - len(shape), x.ndim))


def _check_trailing(x: np.ndarray, axes: Axes, **params: np.ndarray | None) -> None:
    shape = x.shape[axes[0]:]
    for name, v in params.items():
        if v is not None and np.shape(v) != shape:
            raise ValueError(f"{name} of shape {np.shape(v)} for normalized_shape {shape}")


def _layer_norm_vjp(cotangent: np.ndarray, input: np.ndarray, normalized_shape: int | tuple[int, ...],
                    weight: np.ndarray | None = None, bias: np.ndarray | None = None,
                    eps: float = 1e-5) -> dict[str, np.ndarray]:
    """With x̂ and σ over the normalised dims and means over those K values, w the weight (1 when
    None): dL/dx = (1/σ)·(ĝ - mean(ĝ) - x̂·mean(ĝ·x̂)), ĝ = g·w; dL/dw = Σ_batch g·x̂;
    dL/db = Σ_batch g (sums over the leading, unnormalised dims)."""
    axes = trailing_axes(input, normalized_shape)
    xhat, inv_sigma = standardise(input, axes, eps)
    g_hat = cotangent if weight is None else cotangent * weight
    lead = tuple(range(axes[0]))
    return {"input": standardise_vjp(g_hat, xhat, inv_sigma, axes),
            **_affine_grads(cotangent, xhat, weight, bias, lead, input.shape[axes[0]:])}


def _layer_norm_example(rng: np.random.Generator) -> tuple[tuple, dict]:
    x = rng.standard_normal((2, 3, 4))
    return (x, (3, 4), rng.standard_normal((3, 4)), rng.standard_normal((3, 4))), {"eps": 1e-5}


@functional(vjp=_layer_norm_vjp, example=_layer_norm_example)
def layer_norm(input: np.ndarray, normalized_shape: int | tuple[int, ...], weight: np.ndarray | None = None,
               bias: np.ndarray | None = None, eps: float = 1e-5) -> np.ndarray:
    """y = (x - mean)/sqrt(var + eps)·weight + bias, the mean and the biased variance taken over the
    trailing dims ``normalized_shape`` of each sample. Shapes: input (*, *normalized_shape), weight
    and bias ``normalized_shape`` or None; y like input."""
    axes = trailing_axes(input, normalized_shape)
    _check_trailing(input, axes, weight=weight, bias=bias)
    return _affine(standardise(input, axes, eps)[0], weight, bias)


def rms_eps(eps: float | None, dtype: np.dtype | type = np.float64) -> float:
    """RMSNorm's eps: ``eps``, or when None the machine epsilon of the tensor's dtype
    (torch.finfo(x.dtype).eps, documented: 2^-52 float64, 2^-23 float32, 2^-10 float16, 2^-7 bfloat16)."""
    return float(np.finfo(dtype).eps) if eps is None else float(eps)


def _rms_norm_vjp(cotangent: np.ndarray, input: np.ndarray, normalized_shape: int | tuple[int, ...],
                  weight: np.ndarray | None = None, eps: float | None = None) -> dict[str, np.ndarray]:
    """With r = 1/√(mean(x²) + eps) and x̂ = x·r over the normalised dims: dL/dx =
    r·(ĝ - x̂·mean(ĝ·x̂)), ĝ = g·w; dL/dw = Σ_batch g·x̂."""
    axes = trailing_axes(input, normalized_shape)
    xhat, inv_rms = standardise(input, axes, rms_eps(eps, input.dtype), centred=False)
    g_hat = cotangent if weight is None else cotangent * weight
    return {"input": standardise_vjp(g_hat, xhat, inv_rms, axes, centred=False),
            **_affine_grads(cotangent, xhat, weight, None, tuple(range(axes[0])), input.shape[axes[0]:])}


def _rms_norm_example(rng: np.random.Generator) -> tuple[tuple, dict]:
    return (rng.standard_normal((3, 2, 4)), (2, 4), rng.standard_normal((2, 4))), {"eps": 1e-3}


@functional(vjp=_rms_norm_vjp, example=_rms_norm_example)
def rms_norm(input: np.ndarray, normalized_shape: int | tuple[int, ...], weight: np.ndarray | None = None,
             eps: float | None = None) -> np.ndarray:
    """y = x/√(mean(x²) + eps)·weight, the mean over the trailing dims ``normalized_shape`` of each
    sample; weight ``normalized_shape`` or None. eps None is the machine epsilon of the array's
    dtype (``rms_eps``): the reference computes in float64, so a caller standing for a tensor of
    another dtype passes that dtype's eps explicitly (the declarations do: torch.finfo of the case
    dtype). An all-zero slice gives 0 and the gradient g·w/√eps."""
    axes = trailing_axes(input, normalized_shape)
    _check_trailing(input, axes, weight=weight)
    y = standardise(input, axes, rms_eps(eps, input.dtype), centred=False)[0]
    return y if weight is None else y * weight
