"""Local response normalisation across channels: ``torch.nn.functional.local_response_norm`` and the
function of ``torch.nn.CrossMapLRN2d``.

For an (N, C, *) input, channel c is divided by a power of the average of the squares in a window
of ``size`` channels around it:

    d_c = k + α/n · Σ_{c' ∈ W(c)} x_{c'}²,    y_c = x_c · d_c^(-β),
    W(c) = [c - ⌊n/2⌋, c + ⌊(n - 1)/2⌋] ∩ [0, C)        (n = size)

Channels outside [0, C) count as zeros in the average (it always divides by n, as torch's zero
padding does); for even n the window reaches one channel further back than forward. The window
sums are vectorised over a zero-padded sliding window (``window_sum``).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from reference.registry import functional


def window_sum(v: np.ndarray, size: int, before: int, after: int) -> np.ndarray:
    """Σ over channels c' ∈ [c - before, c + after] of v (axis 1), zeros outside (``before + after
    + 1 == size``)."""
    pad = [(0, 0)] * v.ndim
    pad[1] = (before, after)
    return sliding_window_view(np.pad(v, pad), size, axis=1).sum(axis=-1)


def _divisor(x: np.ndarray, size: int, alpha: float, k: float) -> np.ndarray:
    """d = k + α/n·Σ_{W(c)} x² (the window ``W`` of the module docstring)."""
    return k + alpha / size * window_sum(x * x, size, size // 2, (size - 1) // 2)


def _check(x: np.ndarray, size: int, min_rank: int = 3) -> None:
    if x.ndim < min_rank:
        raise ValueError(f"local response normalisation expects at least {min_rank} dims, got {x.ndim}")
    if int(size) < 1:
        raise ValueError(f"size must be positive, got {size}")


def _local_response_norm_vjp(cotangent: np.ndarray, input: np.ndarray, size: int, alpha: float = 1e-4,
                             beta: float = 0.75, k: float = 1.0) -> dict[str, np.ndarray]:
    """dL/dx_j = g_j·d_j^(-β) - (2αβ/n)·x_j·Σ_{c: j ∈ W(c)} g_c·x_c·d_c^(-β-1); the channels c whose
    window holds j are [j - ⌊(n - 1)/2⌋, j + ⌊n/2⌋] (the transposed window). With α = 0 or β = 0
    the divisor's power is constant and the second term is 0 (β = 0: y = x, the gradient g, even
    where d = 0, since 0^0 = 1)."""
    x, g = input, cotangent
    if not x.size:
        return {"input": np.zeros_like(x)}
    with np.errstate(all="ignore"):
        d = _divisor(x, size, alpha, k)
        scale = d ** -beta
        direct = g * scale
        if alpha == 0 or beta == 0:  # d^(-β) does not depend on x (0^0 = 1): no second term, even at d = 0
            return {"input": direct}
        # g·x·d^(-β-1) as g·y/d: d^(-β-1) alone underflows for huge inputs where the product does not
        t = window_sum(g * (x * scale) / d, size, (size - 1) // 2, size // 2)
        return {"input": direct - (2.0 * alpha * beta / size) * x * t}


def _lrn_example(rng: np.random.Generator) -> tuple[tuple, dict]:
    return (rng.standard_normal((2, 5, 3)), 4), {"alpha": 0.5, "beta": 0.75, "k": 1.5}


@functional(vjp=_local_response_norm_vjp, example=_lrn_example)
def local_response_norm(input: np.ndarray, size: int, alpha: float = 1e-4, beta: float = 0.75,
                        k: float = 1.0) -> np.ndarray:
    """y_c = x_c·(k + α/n·Σ_{c' ∈ W(c)} x_{c'}²)^(-β) across the channels (axis 1) of an (N, C, *)
    input of at least 3 dims, W(c) = [c - ⌊n/2⌋, c + ⌊(n - 1)/2⌋] clipped to the channels (outside
    ones count as 0; the average divides by n = size). A zero window with k = 0 gives 0/0 = NaN.
    An empty input gives an empty output."""
    _check(input, size)
    if not input.size:
        return input.copy()
    with np.errstate(all="ignore"):
        return input * _divisor(input, size, alpha, k) ** -beta


def _cross_map_lrn2d_vjp(cotangent: np.ndarray, input: np.ndarray, size: int, alpha: float = 1e-4,
                         beta: float = 0.75, k: float = 1.0) -> dict[str, np.ndarray]:
    """The VJP of ``local_response_norm`` (the same function on a 4-d input)."""
    _check(input, size, 4)
    return _local_response_norm_vjp(cotangent, input, size, alpha, beta, k)


def _cross_map_example(rng: np.random.Generator) -> tuple[tuple, dict]:
    return (rng.standard_normal((2, 6, 2, 3)), 3), {"alpha": 0.5, "beta": 0.75, "k": 1.0}


@functional(vjp=_cross_map_lrn2d_vjp, example=_cross_map_example)
def cross_map_lrn2d(input: np.ndarray, size: int, alpha: float = 1e-4, beta: float = 0.75,
                    k: float = 1.0) -> np.ndarray:
    """``torch.nn.CrossMapLRN2d``'s function (torch has no functional form): local response
    normalisation across the channels of an (N, C, H, W) input (ValueError for any other rank), the
    formula and window of ``local_response_norm`` (PyTorch documents no formula of its own for it;
    for odd sizes the window is the centred one of Torch7's SpatialCrossMapLRN, from which it comes)."""
    _check(input, size, 4)
    if input.ndim != 4:
        raise ValueError(f"CrossMapLRN2d expects a 4-d input, got {input.ndim}-d")
    return local_response_norm(input, size, alpha, beta, k)
