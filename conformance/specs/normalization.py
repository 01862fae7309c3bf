"""Normalisation layers: BatchNorm1d, BatchNorm2d and BatchNorm3d, from one declaration mechanism.

The three differ only in their spatial dimensionality (the ``dims`` field of the declaration):
BatchNorm1d takes (N, C) or (N, C, L), BatchNorm2d (N, C, H, W), BatchNorm3d (N, C, D, H, W); the
case strategy, the reference, the error analysis and the regimes are shared and parameterised by
``dims`` (bound at declaration time, never parsed from the name). Statistics are per channel over
every other axis (K = N·prod(spatial) values per channel).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case, Layout, Result
from conformance import strategies as S
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec, Regime, Tolerance, TorchMapping, declare, result_reference, spec_of
from conformance.tolerance import bound_as_magnitude
from reference import normalization as ref

_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def _ranks(dims: int) -> tuple[int, ...]:
    """Input ranks a BatchNorm of ``dims`` spatial dims accepts: (N, C) and (N, C, L) for 1d."""
    return (2, 3) if dims == 1 else (dims + 2,)


def _uses_batch_stats(train: bool, track_running_stats: bool) -> bool:
    """Batch statistics normalise in training mode, and in both modes without running stats."""
    return train or not track_running_stats


# -- cases --------------------------------------------------------------------------------------

def _draw_params(d: S.Drawer) -> tuple[dict[str, Any], bool]:
    params = {
        "num_features": d.integer(1, 8, "num_features"),
        "eps": d.choice((1e-5, 1e-3, 0.1, 1.0), "eps"),
        "momentum": d.choice((0.1, None, 0.0, 0.5, 1.0), "momentum"),
        "affine": d.choice((True, False), "affine"),
        "track_running_stats": d.choice((True, False), "track_running_stats"),
    }
    return params, d.choice((True, False), "train")


def _draw_shape(d: S.Drawer, dims: int, channels: int, batch_stats: bool) -> tuple[int, ...]:
    """(N, C, *spatial); BatchNorm1d draws its spatial rank (0: (N, C), 1: (N, C, L)). With batch
    statistics N·prod(spatial) >= 2 by construction (torch needs > 1 value per channel)."""
    rank = d.choice((0, 1), "spatial rank") if dims == 1 else dims
    spatial = S.sizes_within(d, rank, S.DEFAULT_BUDGET // channels, hi=8 if dims < 3 else 4, label="spatial")
    volume = int(np.prod(spatial, dtype=np.int64))
    n_lo = 2 if batch_stats and volume == 1 else 1
    n = d.integer(n_lo, max(n_lo, min(8, S.DEFAULT_BUDGET // (channels * volume))), "N")
    return (n, channels, *spatial)


def _draw_inputs(d: S.Drawer, dtype: str, params: dict[str, Any], x_shape: tuple[int, ...],
                 channels: int) -> tuple[dict[str, np.ndarray], dict[str, Layout]]:
    layouts = {"input": S.layouts(d, len(x_shape), "layout.input", expanded=True)}
    x = S.values(d, x_shape, dtype, "float", "input", layout=layouts["input"])
    # An offset far from the spread makes the variance ill-conditioned (catastrophic cancellation
    # in a one-pass E[x²] - E[x]²).
    offset = d.choice((0.0, 8.0, 64.0), "input.offset")
    inputs = {"input": DTYPES[dtype].round(x + offset)}
    if params["affine"]:
        for name in ("weight", "bias"):
            layouts[name] = S.layouts(d, 1, f"layout.{name}")
            inputs[name] = S.values(d, (channels,), dtype, "float", name, layout=layouts[name])
    if params["track_running_stats"]:
        inputs["running_mean"] = S.values(d, (channels,), dtype, "float", "running_mean")
        inputs["running_var"] = S.values(d, (channels,), dtype, "float", "running_var", positive=True)
        inputs["num_batches_tracked"] = np.array(d.integer(0, 5, "num_batches_tracked"), dtype=np.int64)
    return inputs, layouts


def _bn_cases(name: str, dims: int):
    """The case strategy of BatchNorm{dims}d: every constructor parameter, train and eval mode,
    buffers as inputs, any input layout (channels_last / channels_last_3d included)."""

    @st.composite
    def cases(draw, dtype: str) -> Case:
        d = S.Drawer(draw)
        tier = S.tier(d, ("float",))
        params, train = _draw_params(d)
        channels = params["num_features"]
        shape = _draw_shape(d, dims, channels, _uses_batch_stats(train, params["track_running_stats"]))
        inputs, layouts = _draw_inputs(d, dtype, params, shape, channels)
        differentiable = tuple(k for k in ("input", "weight", "bias") if k in inputs)
        return Case(op=name, dtype=dtype, params=params, inputs=inputs, differentiable=differentiable,
                    layouts=layouts, train=train, tier=tier, cotangent_seed=S.seed(d))

    return cases


def _invalid_bn_cases(name: str, dims: int):
    """What torch rejects: one value per channel with batch statistics, an input of a rank the
    layer does not take, a channel count that differs from num_features (checked against weight
    or running stats)."""

    @st.composite
    def cases(draw, dtype: str) -> Case:
        d = S.Drawer(draw)
        params, train = _draw_params(d)
        kind = d.choice(("one value per channel", "wrong rank", "channel mismatch"), "invalid kind")
        channels = params["num_features"]
        valid_rank = _ranks(dims)[-1]
        if kind == "one value per channel":
            params["track_running_stats"] = params["track_running_stats"] and train
            shape: tuple[int, ...] = (1, channels) + (1,) * (valid_rank - 2)
        elif kind == "wrong rank":
            rank = d.choice(tuple(r for r in range(1, 7) if r not in _ranks(dims)), "wrong rank")
            shape = (2, channels, 2, 2, 2, 2)[:rank] if rank > 1 else (channels,)
        else:
            if not (params["affine"] or params["track_running_stats"]):
                params["affine"] = True
            shape = (2, channels + d.integer(1, 3, "extra channels")) + (2,) * (valid_rank - 2)
        inputs, layouts = _draw_inputs(d, dtype, params, (2, channels) + (2,) * (valid_rank - 2), channels)
        inputs["input"] = S.values(d, shape, dtype, "float", "input")
        layouts.pop("input")  # drawn for the valid shape; the invalid input stays contiguous
        differentiable = tuple(k for k in ("input", "weight", "bias") if k in inputs)
        return Case(op=name, dtype=dtype, params=params, inputs=inputs, differentiable=differentiable,
                    layouts=layouts, train=train, invalid=True, note=kind, cotangent_seed=S.seed(d))

    return cases


# -- reference ----------------------------------------------------------------------------------

def _check_input(case: Case) -> np.ndarray:
    x = case.inputs["input"]
    spec = spec_of(case)
    if x.ndim not in _ranks(spec.dims):
        raise ValueError(f"{spec.name} expects a {' or '.join(f'{r}-d' for r in _ranks(spec.dims))} input, "
                         f"got {x.ndim}-d")
    checked = [case.inputs[k] for k in ("weight", "running_mean") if k in case.inputs]
    if any(v.shape != (x.shape[1],) for v in checked):
        raise ValueError(f"input has {x.shape[1]} channels, num_features is {case.params['num_features']}")
    if _uses_batch_stats(case.train, case.params["track_running_stats"]) and ref.values_per_channel(x) < 2:
        raise ValueError("batch statistics need more than one value per channel")
    return x


def _bn_reference(case: Case, backward: bool) -> Result:
    x = _check_input(case)
    p, inp = case.params, case.inputs
    w, b = inp.get("weight"), inp.get("bias")
    batch = _uses_batch_stats(case.train, p["track_running_stats"])
    mean, var = ref.batch_stats(x) if batch else (inp["running_mean"], inp["running_var"])
    out = Result(outputs={"output": ref.batch_norm(x, mean, var, w, b, p["eps"])})
    if p["track_running_stats"]:
        if case.train:
            rm, rv, n = ref.update_running_stats(inp["running_mean"], inp["running_var"],
                                                 int(inp["num_batches_tracked"]), x, p["momentum"])
        else:
            rm, rv, n = inp["running_mean"], inp["running_var"], int(inp["num_batches_tracked"])
        out.state.update(running_mean=rm, running_var=rv, num_batches_tracked=np.array(n, dtype=np.int64))
    if backward:
        g = case.cotangents["output"]
        if batch:
            gx, gw, gb = ref.batch_norm_train_vjp(x, w, g, p["eps"])
        else:
            gx, gw, gb = ref.batch_norm_eval_vjp(x, mean, var, w, g, p["eps"])
        out.grads["input"] = gx
        if w is not None:
            out.grads.update(weight=gw, bias=gb)
    return out


# -- error analysis -----------------------------------------------------------------------------

def _channel(v: np.ndarray, ndim: int) -> np.ndarray:
    """A (C,) vector shaped to broadcast against an (N, C, *) array of ``ndim`` dims."""
    return np.asarray(v, dtype=np.float64).reshape((1, -1) + (1,) * (ndim - 2))


def _csum(v: np.ndarray) -> np.ndarray:
    """Per-channel sum over N and the spatial dims, keeping the dims."""
    return v.sum(axis=(0, *range(2, v.ndim)), keepdims=True)


def _bn_magnitude(case: Case, result: Result) -> Mapping[str, np.ndarray]:
    """First-order error bounds of batch normalisation, in units of u (see ``_batch_bounds`` and
    ``_running_bounds``); K = N·prod(spatial) values per channel and γ = 2√K, the probabilistic growth of a
    sum of K terms."""
    x = case.inputs["input"]
    k = ref.values_per_channel(x)
    with np.errstate(all="ignore"):
        if _uses_batch_stats(case.train, case.params["track_running_stats"]):
            err = _batch_bounds(case, result, k)
        else:
            err = _running_bounds(case, result, k)
    out = {name: bound_as_magnitude(np.broadcast_to(err[name], np.shape(value)), k)
           for name, value in result.tensors().items() if name in err}
    out.update({name: np.zeros(np.shape(v)) for name, v in result.tensors().items() if name not in err})
    return out


def _batch_bounds(case: Case, result: Result, k: int) -> dict[str, np.ndarray]:
    """Batch statistics: μ = mean(x), v = mean((x - μ)²), σ = √(v + eps), x̂ = (x - μ)/σ.

    - E_μ = γ·mean|x| + |μ|  (the sum, then the division);
    - E_v = 2γ·mean(|x - μ|·|x|) + v + u·E_μ²: any backward-stable variance algorithm (two-pass,
      Welford) computes the exact variance of x perturbed by γu relatively; δμ enters squared.
      The one-pass E[x²] - μ² is not backward stable and is not covered when |μ| ≫ σ;
    - relative error of 1/σ: E_σ = E_v/(2σ²) + 3;
    - output y = x̂·w + b, computed as (x - μ)·(w/σ) + b or as x·α + (b - μ·α), α = w/σ:
      E_y = |w|/σ·(|x - μ|·(E_σ + 1) + E_μ + |x| + 2|μ|) + |b|;
    - grad.input (w/σ)·(g - mean(g) - (x - μ)·dot/(σ²K)), dot = Σ g·(x - μ): with
      E_dot = γ·Σ|g|·|x - μ| + Σ|g|·E_μ, E_k = (E_dot + |dot|·(2E_σ + 3))/(σ²K),
      E_dx = |x - μ|·E_k + |k|·(E_μ + |x - μ|) + |dx|, E_B = γ·mean|g| + |mean g| + E_dx
      + 2(|g| + |mean g| + |dx|): E = |w|/σ·(E_B + |B|·(E_σ + 2));
    - grad.weight Σ g·x̂: Σ|g|·E_x̂ + (γ + 1)·Σ|g·x̂|, E_x̂ = (E_μ + |x - μ|)/σ + |x̂|·(E_σ + 1);
    - grad.bias Σ g: γ·Σ|g|;
    - running stats (training): see ``_running_update_bounds``.
    """
    x = case.inputs["input"]
    w = _channel(case.inputs.get("weight", np.ones(x.shape[1])), x.ndim)
    b = _channel(case.inputs.get("bias", np.zeros(x.shape[1])), x.ndim)
    gamma = 2 * math.sqrt(k)
    mean, var = (_channel(v, x.ndim) for v in ref.batch_stats(x))
    sigma = np.sqrt(var + case.params["eps"])
    dev = np.abs(x - mean)
    err_mean = gamma * _csum(np.abs(x)) / k + np.abs(mean)
    err_var = 2 * gamma * _csum(dev * np.abs(x)) / k + var + DTYPES[case.dtype].unit_roundoff * err_mean**2
    err_sigma = err_var / (2 * sigma**2) + 3
    err_xhat = (err_mean + dev) / sigma + dev / sigma * (err_sigma + 1)
    err = {"output": np.abs(w) / sigma * (dev * (err_sigma + 1) + err_mean + np.abs(x) + 2 * np.abs(mean)) + np.abs(b)}
    if "input" in result.grads:
        g = case.cotangents["output"]
        ag = np.abs(g)
        dot = _csum(g * (x - mean))
        err_dot = gamma * _csum(ag * dev) + _csum(ag) * err_mean
        kk = dot / (sigma**2 * k)
        err_k = (err_dot + np.abs(dot) * (2 * err_sigma + 3)) / (sigma**2 * k)
        dx = (x - mean) * kk
        err_dx = dev * err_k + np.abs(kk) * (err_mean + dev) + np.abs(dx)
        g_mean = _csum(g) / k
        bracket = g - g_mean - dx
        err_bracket = (gamma * _csum(ag) / k + np.abs(g_mean) + err_dx
                       + 2 * (ag + np.abs(g_mean) + np.abs(dx)))
        err["grad.input"] = np.abs(w) / sigma * (err_bracket + np.abs(bracket) * (err_sigma + 2))
        err["grad.weight"] = _csum(ag * err_xhat + (gamma + 1) * ag * dev / sigma).reshape(-1)
        err["grad.bias"] = (gamma * _csum(ag)).reshape(-1)
    if case.params["track_running_stats"]:
        err.update(_running_update_bounds(case, k, mean, var, err_mean, err_var))
    return err


def _running_update_bounds(case: Case, k: int, mean: np.ndarray, var: np.ndarray, err_mean: np.ndarray,
                           err_var: np.ndarray) -> dict[str, np.ndarray]:
    """mean' = (1 - m)·mean_r + m·μ, var' = (1 - m)·var_r + m·v·K/(K - 1): three roundings per
    product (factor, product, sum) plus the propagated errors of μ and v:
    E = 3(1 - m)·|r| + m·(E_stat + 3|stat|)."""
    inp = case.inputs
    m = ref.momentum_factor(case.params["momentum"], int(inp["num_batches_tracked"]) + 1)
    unbias = k / (k - 1)
    return {
        "state.running_mean": 3 * (1 - m) * np.abs(inp["running_mean"]) + m * (err_mean + 3 * np.abs(mean)).reshape(-1),
        "state.running_var": 3 * (1 - m) * np.abs(inp["running_var"]) + m * unbias * (err_var + 3 * var).reshape(-1),
    }


def _running_bounds(case: Case, result: Result, k: int) -> dict[str, np.ndarray]:
    """Running statistics (evaluation mode): α = w/√(var_r + eps) (4 roundings), y = x·α + (b - mean_r·α)
    or (x - mean_r)·α + b: E_y = |α|·(4|x - mean_r| + |x| + 2|mean_r|) + |b|; grad.input g·α: 5|g·α|;
    grad.weight Σ g·(x - mean_r)/σ: (γ + 6)·Σ|g|·(|x| + |mean_r|)/σ; grad.bias: γ·Σ|g|. The buffers
    are returned unchanged (no error term)."""
    x, inp = case.inputs["input"], case.inputs
    w = _channel(inp.get("weight", np.ones(x.shape[1])), x.ndim)
    b = _channel(inp.get("bias", np.zeros(x.shape[1])), x.ndim)
    rm = _channel(inp["running_mean"], x.ndim)
    sigma = np.sqrt(_channel(inp["running_var"], x.ndim) + case.params["eps"])
    alpha = np.abs(w) / sigma
    gamma = 2 * math.sqrt(k)
    err = {"output": alpha * (4 * np.abs(x - rm) + np.abs(x) + 2 * np.abs(rm)) + np.abs(b)}
    if "input" in result.grads:
        ag = np.abs(case.cotangents["output"])
        err["grad.input"] = 5 * ag * alpha
        err["grad.weight"] = ((gamma + 6) * _csum(ag * (np.abs(x) + np.abs(rm))) / sigma).reshape(-1)
        err["grad.bias"] = (gamma * _csum(ag)).reshape(-1)
    return err


# -- known torch discrepancies --------------------------------------------------------------------

def strided_weight_one_value_per_sample(case: Case) -> bool:
    """torch CPU (float32/float64) batch-norm backward reads a non-contiguous weight as if it were
    contiguous when the input has one value per sample and channel (spatial volume 1) and is
    contiguous (not channels-last-like): grad.input is computed with the wrong weights (NaN from
    the strided layout's gaps). Exact over every layout of shapes (N, C), (N, C, 1), (N, C, 1, 1) and
    (N, C, 1, 1, 1) tried (978 combinations)."""
    x = case.inputs["input"]
    if case.dtype not in ("float32", "float64") or "weight" not in case.inputs:
        return False
    if case.layout("weight").kind != "strided":
        return False
    if x.ndim < 2 or x.shape[1] < 2 or any(s != 1 for s in x.shape[2:]):
        return False
    strides = S.torch_strides(x.shape, case.layout("input"))
    return S.is_torch_contiguous(x.shape, strides) and not S.channels_last_like(x.shape, strides)


# -- regimes ------------------------------------------------------------------------------------

def _offset_dominates(case: Case) -> bool:
    """Some channel's mean is at least 8 standard deviations from 0: a one-pass variance cancels."""
    x = case.inputs["input"]
    mean, var = ref.batch_stats(x)
    return bool(np.any(np.abs(mean) >= 8 * np.sqrt(var)))


def _regimes(dims: int) -> tuple[Regime, ...]:
    p = lambda case: case.params  # noqa: E731
    regimes = [
        Regime("eval with running stats", lambda c: not c.train and p(c)["track_running_stats"],
               pins={"train": False, "track_running_stats": True},
               description="evaluation mode normalises with the running buffers, which stay unchanged"),
        Regime("momentum None", lambda c: p(c)["momentum"] is None and c.train and p(c)["track_running_stats"],
               pins={"momentum": None, "train": True, "track_running_stats": True},
               description="cumulative moving average: factor 1/num_batches_tracked (after the increment)"),
        Regime("no running stats", lambda c: not p(c)["track_running_stats"],
               pins={"track_running_stats": False},
               description="batch statistics in both modes, no buffers"),
        Regime("eval without running stats", lambda c: not c.train and not p(c)["track_running_stats"],
               pins={"track_running_stats": False, "train": False},
               description="evaluation mode still normalises with batch statistics"),
        Regime("one value per channel pair (N·L = 2)",
               lambda c: ref.values_per_channel(c.inputs["input"]) == 2
               and _uses_batch_stats(c.train, p(c)["track_running_stats"]),
               pins={**{f"spatial[{i}]": 1 for i in range(3)}, "N": 2, "train": True},
               description="K = 2: x̂ = ±1 (or 0), the unbiased running variance doubles the biased one"),
        Regime("large offset (ill-conditioned variance)", _offset_dominates,
               pins={"input.offset": 64.0, "input.kind": "normal"},
               description="|mean| >= 8·std in some channel: E[x²] - E[x]² cancels catastrophically"),
    ]
    if dims == 1:
        regimes.append(Regime("(N, C) input", lambda c: c.inputs["input"].ndim == 2, pins={"spatial rank": 0},
                              description="no spatial axis: statistics over the batch only"))
    else:
        regimes.append(Regime(f"channels_last{'_3d' if dims == 3 else ''}",
                              lambda c: c.layout("input").kind == "channels_last",
                              pins={"layout.input": "channels_last"},
                              description="the input stored channels-last (NHWC / NDHWC)"))
    return tuple(regimes)


_NOTES = ("Normalises with the biased batch variance; running_var takes the unbiased one. momentum=None is "
          "the cumulative average (factor 1/num_batches_tracked). Eval mode with running stats uses them; "
          "without running stats both modes use batch statistics. num_batches_tracked is compared exactly.")

for _dims, _shapes in ((1, "(N, C) or (N, C, L)"), (2, "(N, C, H, W)"), (3, "(N, C, D, H, W)")):
    _name = f"BatchNorm{_dims}d"
    declare(LayerSpec(
        name=_name,
        family="normalization",
        dims=_dims,
        cases=_bn_cases(_name, _dims),
        reference=result_reference(_bn_reference),
        torch=TorchMapping(f"torch.nn.{_name}", parameters=("weight", "bias"), buffers=_BUFFERS, mutated=_BUFFERS),
        tolerance=Tolerance(reduction=lambda case, tensor: ref.values_per_channel(case.inputs["input"]),
                            magnitude=_bn_magnitude, c=1.0, exact="none"),
        invalid_cases=_invalid_bn_cases(_name, _dims),
        regimes=_regimes(_dims),
        notes=f"Input {_shapes}. " + _NOTES + (
            " torch discrepancy (CPU backward): an input that is channels_last(_3d)-contiguous only through a "
            "size-1 N or spatial dim with a contiguous grad_output gets wrong gradients "
            "(batchnorm-cpu-backward-degenerate-channels-last)." if _dims > 1 else ""),
    ))
