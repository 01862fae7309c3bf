"""Finite differences, the independent check of every analytic VJP and the reference of second
derivatives: one implementation, shared by the tests of every family, the derivative modes
(``conformance.modes``: the vjp2 mode differentiates the analytic VJP along a direction with
``directional``) and users.

The check is a dot-product test. For a function f of named float64 arrays, cotangents v of its
outputs and directions d of its inputs, the analytic side Σ_i <grad_i, d_i> (grad = Jᵀv) must
equal the derivative of t ↦ <v, f(x + t·d)> at t = 0, estimated by central differences with one
Richardson extrapolation:

    D(h) = (φ(h) - φ(-h)) / 2h,    R = (4·D(h/2) - D(h)) / 3,

whose truncation error is O(h⁴) (against O(h²) for D alone); |R - D(h/2)| estimates the error of
D(h/2) and so bounds that of R generously.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

Arrays = Mapping[str, np.ndarray]


def derivative(phi: Callable[[float], Any], h: float) -> tuple[Any, Any]:
    """(estimate, error estimate) of φ'(0) by Richardson-extrapolated central differences; φ may
    return a number or an array (elementwise estimates)."""
    coarse = (phi(h) - phi(-h)) / (2 * h)
    fine = (phi(h / 2) - phi(-h / 2)) / h
    return (4 * fine - coarse) / 3, abs(fine - coarse) / 3


# The float64 evaluations a difference quotient divides are trusted to this many units of 2^-53
# of their magnitude (a few roundings of a stable computation, with margin).
EVALUATION_ULPS = 16.0


@dataclass(frozen=True)
class Directional:
    """A directional derivative, elementwise: the estimate, its error estimate and the largest
    magnitude the differenced evaluations reached (the scale of their own rounding)."""

    estimate: np.ndarray
    error: np.ndarray
    magnitude: np.ndarray


def rounding_error(magnitude: np.ndarray, h: float) -> np.ndarray:
    """What evaluation errors of ``EVALUATION_ULPS``·2^-53·magnitude make of ``derivative``'s
    extrapolated quotient at step h: 3·δ/h."""
    return 3 * EVALUATION_ULPS * 2.0**-53 * np.asarray(magnitude, dtype=np.float64) / h


def directional(fn: Callable[..., Arrays], inputs: Arrays, directions: Arrays,
                h: float = 2.0**-20, with_step: bool = False) -> dict[str, Directional]:
    """The derivative of every array ``fn`` returns along ``directions`` at ``inputs``, elementwise:
    d/dt fn(x + t·d) at t = 0, by ``derivative`` (four evaluations of ``fn``; inputs without a
    direction are held fixed). An array missing or changing shape at some point is left out.

    With h a power of two and directions of few significant bits (``torch_run.mode_values``),
    x + t·d is exact: the step is exactly the one divided by. The error estimate is the Richardson
    one, |D(h/2) - D(h)|/3, plus the rounding of the evaluations themselves (``rounding_error`` of
    the largest value they give: the Richardson term alone can vanish when both quotients round
    alike). ``with_step``: ``fn`` is called as fn(x + t·d, t)."""
    cache: dict[float, Arrays] = {}

    def at(t: float) -> Arrays:
        if t not in cache:
            shifted = {k: (np.asarray(v, dtype=np.float64) + t * directions[k] if k in directions else v)
                       for k, v in inputs.items()}
            cache[t] = fn(shifted, t) if with_step else fn(shifted)
        return cache[t]

    for t in (h, -h, h / 2, -h / 2):
        at(t)
    names = [k for k in cache[h] if all(k in cache[t] and np.shape(cache[t][k]) == np.shape(cache[h][k])
                                        for t in cache)]
    out = {}
    for name in names:
        estimate, error = derivative(lambda t, name=name: np.asarray(cache[t][name], dtype=np.float64), h)
        with np.errstate(invalid="ignore", over="ignore"):
            top = np.max(np.stack([np.abs(np.asarray(cache[t][name], dtype=np.float64)) for t in cache]), axis=0)
            out[name] = Directional(np.asarray(estimate), np.asarray(error + rounding_error(top, h)), top)
    return out


def scaled_directions(inputs: Arrays, names: tuple[str, ...] | list[str], rng: np.random.Generator,
                      floor: float = 1e-3) -> dict[str, np.ndarray]:
    """Random directions scaled to each element's magnitude (|x| + floor): a fixed step is coarse
    next to a small input (log near 0) and fine next to a large one."""
    return {n: rng.standard_normal(np.shape(inputs[n])) * (np.abs(inputs[n]) + floor) for n in names}


@dataclass(frozen=True)
class VjpCheck:
    """The two sides of a dot-product test, the scale they are judged in and the finite
    difference's own error estimate."""

    numeric: float
    analytic: float
    scale: float
    truncation: float

    def ok(self, rtol: float = 1e-5, atol: float = 1e-7) -> bool:
        """|numeric - analytic| <= rtol·scale + atol + 10·truncation (NaN fails)."""
        return bool(abs(self.numeric - self.analytic) <= rtol * self.scale + atol + 10 * self.truncation)


def vjp_check(forward: Callable[[dict[str, np.ndarray]], Arrays], inputs: Arrays, cotangents: Arrays,
              grads: Arrays, directions: Arrays | None = None, *, h: float = 1e-6,
              rng: np.random.Generator | None = None) -> VjpCheck:
    """Dot-product test of ``grads`` (the VJP of ``forward`` at ``inputs`` for ``cotangents``).

    ``forward(inputs) -> {output name: array}``; inputs not in ``grads`` are held fixed.
    ``directions`` default to ``scaled_directions`` (seeded by ``rng``, default seed 1234).
    ``scale`` is Σ_i Σ |grad_i·d_i|: the size of the terms the analytic sum cancels.
    """
    names = [n for n in grads if n in inputs]
    if directions is None:
        directions = scaled_directions(inputs, names, rng or np.random.default_rng(1234))
    terms = [np.asarray(grads[n], dtype=np.float64) * directions[n] for n in names]
    analytic = float(sum(np.sum(t) for t in terms))
    scale = float(sum(np.sum(np.abs(t)) for t in terms))

    def phi(t: float) -> float:
        shifted = {k: (np.asarray(v) + t * directions[k] if k in directions else v) for k, v in inputs.items()}
        with np.errstate(all="ignore"):
            out = forward(shifted)
        return float(sum(np.sum(np.asarray(out[k]) * v) for k, v in cotangents.items()))

    numeric, truncation = derivative(phi, h)
    return VjpCheck(numeric, analytic, scale, truncation)
