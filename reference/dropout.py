"""Dropout and its variants, given their random choices: conditional references of stochastic layers.

``torch.nn.functional``'s ``dropout``, ``dropout1d``, ``dropout2d``, ``dropout3d``, ``alpha_dropout``
and ``feature_alpha_dropout`` with torch's argument names, order and defaults, plus one keyword,
``mask``: the keep mask the layer's random draw produced (True = kept), broadcastable to the input.
The reference never draws: in training with 0 < p < 1 it needs the mask, and computes the exact
output and gradient for it. A conforming draw keeps each *unit* independently with probability
1 − p; a unit is an element (dropout, alpha_dropout) or a channel (the other four), see
``unit_dims``. The functions apply whatever mask they are given element by element; judging its
structure is the caller's business (``canonical_mask``).

Deterministic points, exact:
- ``training=False``, p = 0 or an empty input: the identity (a copy of the input);
- p = 1 (training): input · 0, as torch computes it for every variant (±0 with the sign of the
  input; NaN at ±inf and NaN inputs). For alpha dropout this is also the limit p → 1 of the
  dropped value −α′·a·(1 − p) → 0 (see ``alpha_dropout_coefficients``).

Random points (training, 0 < p < 1):
- dropout: y = x / (1 − p) where kept, x · 0 where dropped; dy/dx = 1/(1 − p) or 0;
- alpha dropout (Klambauer et al., self-normalising networks): y = a·x + b where kept and
  a·α′ + b where dropped, with α′ = −λα = −1.7580993408473766 (SELU's negative saturation),
  a = ((1 − p)(1 + p·α′²))^(−1/2) and b = −a·α′·p, so that an input of zero mean and unit
  variance keeps them; dy/dx = a where kept, 0 where dropped.
"""

from __future__ import annotations

import math

import numpy as np

from reference.activation import SELU_ALPHA, SELU_SCALE
from reference.registry import functional

# SELU's negative saturation value λα (torch's constant 1.7580993408473766, the same double).
ALPHA_PRIME = SELU_SCALE * SELU_ALPHA


# -- units and masks ------------------------------------------------------------------------------

def unit_dims(function: str, ndim: int) -> int:
    """How many leading dims of an ``ndim``-d input index the independent units of ``function``.

    - dropout, alpha_dropout: every dim (units are elements);
    - dropout1d: (N, C, L) → 2, unbatched (C, L) → 1;
    - dropout2d: 2 for every rank (a 3-d input is taken as (N, C, L), as torch warns);
    - dropout3d: (N, C, D, H, W) → 2, unbatched (C, D, H, W) → 1;
    - feature_alpha_dropout: (N, C, D, H, W) → 2, and the documented unbatched (C, D, H, W) → 1
      (a channel is input[i, j] of a batch, input[j] of a single sample); other ranks → 2.
    """
    if function in ("dropout", "alpha_dropout"):
        return ndim
    unbatched = {"dropout1d": 2, "dropout3d": 4, "feature_alpha_dropout": 4}.get(function)
    return 1 if ndim == unbatched else min(2, ndim)


def unit_shape(shape: tuple[int, ...], unit_dims: int) -> tuple[int, ...]:
    """Shape of the mask's independent units: ``shape`` itself for element dropout
    (``unit_dims`` = len(shape)), else its first ``unit_dims`` dims followed by ones."""
    return tuple(shape[:unit_dims]) + (1,) * (len(shape) - unit_dims)


def canonical_mask(mask: np.ndarray, unit_dims: int) -> np.ndarray:
    """The mask a conforming draw can have given ``mask``: a unit is kept only if all of its
    elements are (so a mask that is not constant over a unit differs from its canonical form).
    Same shape as ``mask``."""
    mask = np.asarray(mask, dtype=bool)
    axes = tuple(range(unit_dims, mask.ndim))
    if not axes or mask.size == 0:
        return mask.copy()
    return np.broadcast_to(mask.all(axis=axes, keepdims=True), mask.shape).copy()


def masked_dropout(input: np.ndarray, keep: np.ndarray, p: float) -> np.ndarray:
    """The random branch of dropout for a given keep mask: x / (1 − p) where kept, x · 0 elsewhere."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(keep, input / (1.0 - p), input * 0.0)


def dropout_vjp(g: np.ndarray, keep: np.ndarray, p: float) -> np.ndarray:
    """The gradient of ``masked_dropout``: g / (1 − p) where kept, 0 where dropped."""
    with np.errstate(over="ignore"):
        return np.where(keep, g / (1.0 - p), 0.0)


def alpha_dropout_coefficients(p: float) -> tuple[float, float, float]:
    """(a, b, dropped value) of alpha dropout for 0 <= p < 1: a = ((1 − p)(1 + p·α′²))^(−1/2),
    b = −a·α′·p, and the value of a dropped element a·α′ + b = −λα·a·(1 − p)."""
    a = 1.0 / math.sqrt((1.0 - p) * (1.0 + p * ALPHA_PRIME**2))
    b = ALPHA_PRIME * a * p
    return a, b, -ALPHA_PRIME * a * (1.0 - p)


# -- the functionals ------------------------------------------------------------------------------

def _check_p(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def _random(input: np.ndarray, p: float, training: bool) -> bool:
    return bool(training) and 0.0 < p < 1.0 and input.size > 0


def _keep(input: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    if mask is None:
        raise ValueError("the reference does not draw: training with 0 < p < 1 needs the keep mask")
    return np.broadcast_to(np.asarray(mask, dtype=bool), input.shape)


def _apply(input: np.ndarray, p: float, training: bool, mask: np.ndarray | None, alpha: bool) -> np.ndarray:
    if not _random(input, p, training):
        if training and p == 1.0:
            with np.errstate(invalid="ignore"):
                return input * 0.0
        return input.copy()
    keep = _keep(input, mask)
    if not alpha:
        return masked_dropout(input, keep, p)
    a, b, dropped = alpha_dropout_coefficients(p)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(keep, a * input + b, dropped)


def _apply_vjp(cotangent: np.ndarray, input: np.ndarray, p: float, training: bool, mask: np.ndarray | None,
               alpha: bool) -> dict[str, np.ndarray]:
    g = np.asarray(cotangent, dtype=np.float64)
    if not _random(input, p, training):
        return {"input": np.zeros_like(g) if training and p == 1.0 else g.copy()}
    keep = _keep(input, mask)
    if not alpha:
        return {"input": dropout_vjp(g, keep, p)}
    a = alpha_dropout_coefficients(p)[0]
    return {"input": np.where(keep, g * a, 0.0)}


def _check_rank(name: str, input: np.ndarray, ranks: tuple[int, ...]) -> None:
    if input.ndim not in ranks:
        raise ValueError(f"{name}: expected a {' or '.join(f'{r}D' for r in ranks)} input, got {input.ndim}D")


def _example(shape: tuple[int, ...], unit: int, p: float, training: bool = True):
    def example(rng: np.random.Generator):
        x = rng.standard_normal(shape)
        mask = rng.random(unit_shape(shape, unit)) >= p
        return (x,), {"p": p, "training": training, "mask": mask}

    return example


def _dropout_vjp(cotangent, input, p=0.5, training=True, inplace=False, mask=None):
    """{"input": g/(1 − p) where kept, 0 where dropped} (identity off the random points, 0 at p = 1)."""
    return _apply_vjp(cotangent, input, p, training, mask, alpha=False)


@functional(vjp=_dropout_vjp, example=_example((3, 4), 2, 0.25))
def dropout(input, p=0.5, training=True, inplace=False, mask=None):
    """F.dropout: in training, each element kept with probability 1 − p (``mask``) and scaled by
    1/(1 − p); dropped elements are x · 0. Identity when not training, at p = 0 and on empty
    inputs; input · 0 at p = 1. Any shape; same shape out. p outside [0, 1] raises ValueError.
    ``inplace`` only says where torch writes the result: the value is the same.

    (``dropout(input, keep, p)``, a keep array in place of p, is the older spelling that
    ``reference.transformer`` still uses: ``masked_dropout``.)"""
    if isinstance(p, np.ndarray):
        return masked_dropout(input, p, training)
    _check_p(p)
    return _apply(input, p, training, mask, alpha=False)


def _channel_vjp(cotangent, input, p=0.5, training=True, inplace=False, mask=None):
    """{"input": g/(1 − p) where the channel is kept, 0 where dropped}."""
    return _apply_vjp(cotangent, input, p, training, mask, alpha=False)


@functional(vjp=_channel_vjp, example=_example((2, 3, 4), 2, 0.5))
def dropout1d(input, p=0.5, training=True, inplace=False, mask=None):
    """F.dropout1d: channel dropout of an (N, C, L) or unbatched (C, L) input: each channel
    (input[i, j], or input[j] unbatched) kept with probability 1 − p and scaled by 1/(1 − p), as
    ``dropout`` does per element (``mask`` broadcast over the channel). A 2-d or 3-d input only:
    any other rank raises ValueError (torch: RuntimeError, in every mode)."""
    _check_p(p)
    _check_rank("dropout1d", input, (2, 3))
    return _apply(input, p, training, mask, alpha=False)


@functional(vjp=_channel_vjp, example=_example((2, 3, 2, 2), 2, 0.5))
def dropout2d(input, p=0.5, training=True, inplace=False, mask=None):
    """F.dropout2d: channel dropout of an (N, C, H, W) input: each channel input[i, j] kept with
    probability 1 − p and scaled by 1/(1 − p). A 3-d input is taken as (N, C, L) (torch warns that
    it does so, not as an unbatched (C, H, W)): its units are still the first two dims. Same shape
    out."""
    _check_p(p)
    return _apply(input, p, training, mask, alpha=False)


@functional(vjp=_channel_vjp, example=_example((2, 3, 2, 1, 2), 2, 0.5))
def dropout3d(input, p=0.5, training=True, inplace=False, mask=None):
    """F.dropout3d: channel dropout of an (N, C, D, H, W) or unbatched (C, D, H, W) input: each
    channel (input[i, j], or input[j] unbatched) kept with probability 1 − p and scaled by
    1/(1 − p). Same shape out."""
    _check_p(p)
    return _apply(input, p, training, mask, alpha=False)


def _alpha_vjp(cotangent, input, p=0.5, training=False, inplace=False, mask=None):
    """{"input": a·g where kept, 0 where dropped} (identity off the random points, 0 at p = 1)."""
    return _apply_vjp(cotangent, input, p, training, mask, alpha=True)


@functional(vjp=_alpha_vjp, example=_example((3, 4), 2, 0.25))
def alpha_dropout(input, p=0.5, training=False, inplace=False, mask=None):
    """F.alpha_dropout (torch's default: training=False): in training with 0 < p < 1, each element
    kept with probability 1 − p (``mask``) becomes a·x + b, each dropped one a·α′ + b, with
    α′ = −1.7580993408473766, a = ((1 − p)(1 + p·α′²))^(−1/2), b = −a·α′·p
    (``alpha_dropout_coefficients``): zero mean and unit variance are kept. Identity when not
    training, at p = 0 and on empty inputs; input · 0 at p = 1 (torch's special case, also the
    limit of the dropped value). Any shape; same shape out."""
    _check_p(p)
    return _apply(input, p, training, mask, alpha=True)


@functional(vjp=_alpha_vjp, example=_example((2, 3, 2, 1, 2), 2, 0.5))
def feature_alpha_dropout(input, p=0.5, training=False, inplace=False, mask=None):
    """F.feature_alpha_dropout (training=False by default): alpha dropout of whole channels of an
    (N, C, D, H, W) or unbatched (C, D, H, W) input (``unit_dims``): a kept channel becomes
    a·x + b, a dropped one a·α′ + b everywhere (see ``alpha_dropout``). In training with
    0 < p < 1 an input of fewer than 2 dims raises ValueError (torch: RuntimeError "Feature
    dropout requires at least 2 dimensions"); not training, it is the identity."""
    _check_p(p)
    if _random(input, p, training) and input.ndim < 2:
        raise ValueError("feature dropout requires at least 2 dimensions in the input")
    return _apply(input, p, training, mask, alpha=True)
