"""First-order error analyses of the normalisation layers, in units of the unit roundoff u: one
analysis over *statistic axes* for every layer that standardises (batch, instance, group, layer and
RMS normalisation), one for fixed (running) statistics, one for the running-statistics update, and
one for local response normalisation.

Every function takes the input in the view where its statistics are over ``axes`` (dims kept:
BatchNorm (N, C, *) over (0, 2, ...); InstanceNorm (N, C, *) over (2, ...); GroupNorm (N, G, C/G, S)
over (2, 3); LayerNorm and RMSNorm over the trailing axes), the weight and bias as views that
broadcast against it, and the axes ``param_axes`` along which the parameters are broadcast (their
gradients sum over those). A bound E for a tensor means |computed - exact| <= u·E elementwise, for
any order of summation: γ_K = 2√K is the probabilistic growth of a sum of K terms (Higham & Mary).

The statistics are taken to be computed by a backward-stable algorithm (two passes, Welford, or
pairwise merges of partial moments): the variance is then exact for an input perturbed by γu
relatively, and δμ enters only squared. The one-pass E[x²] - E[x]² is not backward stable: its
error grows like μ²/σ² and is *not* covered when |μ| ≫ σ.
"""

from __future__ import annotations

import math

import numpy as np

from reference.normalization import moments

Axes = tuple[int, ...]


def _sum(v: np.ndarray, axes: Axes) -> np.ndarray:
    return v.sum(axis=axes, keepdims=True)


def _count(shape: tuple[int, ...], axes: Axes) -> int:
    return int(np.prod([shape[a] for a in axes], dtype=np.int64))


def standardisation_errors(x: np.ndarray, axes: Axes, eps: float, u: float, *, weight: np.ndarray | None = None,
                           bias: np.ndarray | None = None, cotangent: np.ndarray | None = None,
                           param_axes: Axes = (), centred: bool = True) -> dict[str, np.ndarray]:
    """Bounds for y = x̂·w + b, x̂ = (x - μ)/σ over ``axes`` (K values; μ = 0 and v = mean(x²) when
    not ``centred``), σ = √(v + eps), and for its backward with cotangent g:

    - "mean" E_μ = γ_K·mean|x| + |μ| (the sum, then the division); 0 when not centred;
    - "var" E_v = 2γ_K·mean(|x - μ|·|x|) + v + u·E_μ²;
    - relative error of 1/σ: E_σ = E_v/(2σ²) + 3;
    - "output", y computed as (x - μ)·(w/σ) + b or x·α + (b - μ·α), α = w/σ:
      |w|/σ·(|x - μ|·(E_σ + 1) + E_μ + |x| + 2|μ|) + |b|;
    - "input" (the gradient) (1/σ)·B, B = ĝ - mean(ĝ) - (x - μ)·dot/(σ²K), ĝ = g·w, dot = Σ ĝ·(x - μ):
      E_dot = γ_K·Σ|ĝ|·|x - μ| + Σ|ĝ|·E_μ, E_k = (E_dot + |dot|·(2E_σ + 3))/(σ²K), E_dx = |x - μ|·E_k
      + |k|·(E_μ + |x - μ|) + |dx|, E_B = γ_K·mean|ĝ| + |mean ĝ| + E_dx + 2(|ĝ| + |mean ĝ| + |dx|)
      (the mean(ĝ) terms only when centred; plus the rounding of ĝ = g·w, |ĝ| + mean|ĝ| +
      |x - μ|·Σ|ĝ|·|x - μ|/(σ²K), when w varies within a statistic): E = (E_B + |B|·(E_σ + 2))/σ;
    - "weight" Σ_P g·x̂ over the P values of ``param_axes``: Σ|g|·E_x̂ + (γ_P + 1)·Σ|g·x̂|,
      E_x̂ = (E_μ + |x - μ|)/σ + |x̂|·(E_σ + 1); "bias" Σ_P g: γ_P·Σ|g|.

    Every array keeps the view's dims ("weight" and "bias" have size 1 along ``param_axes``).
    """
    k = max(_count(x.shape, axes), 1)
    gamma = 2 * math.sqrt(k)
    with np.errstate(all="ignore"):
        if centred:  # the statistics as the reference takes them
            mean, var = moments(x, axes)
        else:
            mean = np.zeros(1)
            var = _sum(x * x, axes) / k
        sigma = np.sqrt(var + eps)
        dev = np.abs(x - mean)
        err_mean = gamma * _sum(np.abs(x), axes) / k + np.abs(mean) if centred else np.zeros(1)
        err_var = 2 * gamma * _sum(dev * np.abs(x), axes) / k + var + u * err_mean**2
        # an infinite σ (an infinite input in an uncentred slice): 1/σ = 0 exactly, whatever σ's error
        err_sigma = np.where(np.isfinite(sigma), err_var / (2 * sigma**2) + 3, 0.0)
        w = np.ones(1) if weight is None else np.asarray(weight, dtype=np.float64)
        b = np.zeros(1) if bias is None else np.asarray(bias, dtype=np.float64)
        out = {"mean": err_mean, "var": err_var,
               "output": np.abs(w) / sigma * (dev * (err_sigma + 1) + err_mean + np.abs(x) + 2 * np.abs(mean))
               + np.abs(b)}
        if cotangent is None:
            return out
        g = np.asarray(cotangent, dtype=np.float64)
        g_hat = g * w
        ag = np.abs(g_hat)
        dot = _sum(g_hat * (x - mean), axes)
        err_dot = gamma * _sum(ag * dev, axes) + _sum(ag, axes) * err_mean
        kk = dot / (sigma**2 * k)
        err_k = (err_dot + np.abs(dot) * (2 * err_sigma + 3)) / (sigma**2 * k)
        dx = (x - mean) * kk
        err_dx = dev * err_k + np.abs(kk) * (err_mean + dev) + np.abs(dx)
        g_mean = _sum(g_hat, axes) / k if centred else np.zeros(1)
        err_g_mean = gamma * _sum(ag, axes) / k if centred else np.zeros(1)
        bracket = g_hat - g_mean - dx
        err_bracket = err_g_mean + np.abs(g_mean) + err_dx + 2 * (ag + np.abs(g_mean) + np.abs(dx))
        if weight is not None and any(w.shape[a] > 1 for a in axes if a < w.ndim):
            err_bracket = err_bracket + ag + _sum(ag, axes) / k + dev * _sum(ag * dev, axes) / (sigma**2 * k)
        out["input"] = (err_bracket + np.abs(bracket) * (err_sigma + 2)) / sigma
        p = max(_count(x.shape, param_axes), 1)
        gamma_p = 2 * math.sqrt(p)
        ag = np.abs(g)
        err_xhat = (err_mean + dev) / sigma + dev / sigma * (err_sigma + 1)
        out["weight"] = _sum(ag * err_xhat + (gamma_p + 1) * ag * dev / sigma, param_axes)
        out["bias"] = gamma_p * _sum(ag, param_axes)
    return out


def fixed_statistics_errors(x: np.ndarray, mean: np.ndarray, var: np.ndarray, eps: float, *,
                            weight: np.ndarray | None = None, bias: np.ndarray | None = None,
                            cotangent: np.ndarray | None = None, param_axes: Axes = ()) -> dict[str, np.ndarray]:
    """Bounds when given (running) statistics normalise, α = w/√(v + eps) (4 roundings), y = x·α +
    (b - μ·α) or (x - μ)·α + b:

    - "output" |α|·(4|x - μ| + |x| + 2|μ|) + |b|; "input" g·α: 5|g·α|;
    - "weight" Σ_P g·(x - μ)/σ: (γ_P + 6)·Σ|g|·(|x| + |μ|)/σ; "bias" γ_P·Σ|g|.
    """
    with np.errstate(all="ignore"):
        w = np.ones(1) if weight is None else np.asarray(weight, dtype=np.float64)
        b = np.zeros(1) if bias is None else np.asarray(bias, dtype=np.float64)
        sigma = np.sqrt(var + eps)
        alpha = np.abs(w) / sigma
        out = {"output": alpha * (4 * np.abs(x - mean) + np.abs(x) + 2 * np.abs(mean)) + np.abs(b)}
        if cotangent is None:
            return out
        ag = np.abs(cotangent)
        gamma_p = 2 * math.sqrt(max(_count(x.shape, param_axes), 1))
        out["input"] = 5 * ag * alpha
        out["weight"] = (gamma_p + 6) * _sum(ag * (np.abs(x) + np.abs(mean)), param_axes) / sigma
        out["bias"] = gamma_p * _sum(ag, param_axes)
    return out


def running_update_errors(running: np.ndarray, statistic: np.ndarray, statistic_error: np.ndarray,
                          momentum: float, batch_axis: int | None = None) -> np.ndarray:
    """running' = (1 - m)·running + m·s: three roundings per product (factor, product, sum) plus the
    propagated error of the statistic, 3(1 - m)·|running| + m·(E_s + 3|s|). With ``batch_axis``
    (InstanceNorm: one update per sample, then their mean over N), the mean adds
    (γ_N + 1)·mean_N|running'| to the mean of the per-sample bounds."""
    m = float(momentum)
    with np.errstate(all="ignore"):
        err = 3 * (1 - m) * np.abs(running) + m * (statistic_error + 3 * np.abs(statistic))
        if batch_axis is None:
            return err
        n = max(np.shape(statistic)[batch_axis], 1)
        updated = np.abs((1 - m) * running + m * statistic)
        return err.mean(axis=batch_axis) + (2 * math.sqrt(n) + 1) * updated.mean(axis=batch_axis)


def local_response_errors(x: np.ndarray, size: int, alpha: float, beta: float, k: float,
                          cotangent: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Bounds for y = x·d^(-β), d = k + α/n·S, S = Σ_W x² (``reference.normalization_lrn``):

    - E_S = (γ_n + 1)·S (the squares, then a sum of n terms); E_d = α/n·(E_S + 2S) + |d|;
    - relative error of d^(-β): ρ = β·E_d/|d| + 3 (pow within 2 ulps, then the product);
      "output" |y|·(ρ + 1);
    - "input" g·d^(-β) - (2αβ/n)·x·T, T = Σ_{W^T} g·x·d^(-β-1): |g·d^(-β)|·(ρ + 1) + (2αβ/n)·|x|·
      Σ_{W^T} |g·x·d^(-β-1)|·(γ_n + (β + 1)·E_d/|d| + 8), plus the final |dx|.
    """
    from reference.normalization_lrn import window_sum

    n = int(size)
    gamma = 2 * math.sqrt(n)
    with np.errstate(all="ignore"):
        s = window_sum(x * x, n, n // 2, (n - 1) // 2)
        d = k + alpha / n * s
        err_d = alpha / n * ((gamma + 1) * s + 2 * s) + np.abs(d)
        # relative error of d; an infinite d (an infinite input in the window) makes d^(-β) exactly 0
        rel_d = np.where(np.isfinite(d), err_d / np.abs(d), 0.0)
        rel = beta * rel_d + 3
        scale = d ** -beta
        out = {"output": np.abs(x * scale) * (rel + 1)}
        if cotangent is None:
            return out
        g = np.asarray(cotangent, dtype=np.float64)
        if alpha == 0 or beta == 0:
            out["input"] = np.abs(g * scale) * (rel + 1)
            return out
        ratio = g * (x * scale) / d  # g·x·d^(-β-1)
        term = np.abs(ratio) * (gamma + (beta + 1) * rel_d + 8)
        t_err = window_sum(term, n, (n - 1) // 2, n // 2)
        t = window_sum(ratio, n, (n - 1) // 2, n // 2)
        dx = g * scale - 2 * alpha * beta / n * x * t
        out["input"] = np.abs(g * scale) * (rel + 1) + 2 * alpha * beta / n * np.abs(x) * t_err + np.abs(dx)
    return out
