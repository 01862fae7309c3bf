"""The randomness of FractionalMaxPool[drawn]: torch draws the samples (``_random_samples``) and
the suite tests them. How a case's samples are read back and drawn for the reference, and the
statistical checks of a target's samples: uniform on [0, 1) at each threshold, independent across
the samples of a batch, the channels and the per-dim samples (``conformance.stats``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from backends.base import Case
from conformance import strategies as S
from conformance.dtypes import DTYPES
from conformance.numerics.window import fractional_sample_shape
from conformance.stats import StatCheck, bernstein_threshold, independence_test

SAMPLE_THRESHOLDS = (0.25, 0.5, 0.75)
# Independence: neighbouring sample pairs along (batch, channel, the per-dim samples) of one case.
SAMPLE_AXES = ((0, "samples of a batch"), (1, "channels"), (2, "the width and height samples"))
SAMPLE_AXES_3D = (*SAMPLE_AXES[:2], (2, "the depth and height samples"))


def fractional_sample_rule(case: Case) -> dict[str, Any]:
    """How a torch-like adapter reads the samples back: ``torch.rand(N, C, nd)`` in the case dtype,
    replayed after the call's seed (F.fractional_max_pool2d/3d draws exactly that, first)."""
    return {"rule": "rand", "shape": list(fractional_sample_shape(case))}


def draw_fractional_samples(case: Case, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Samples as a conforming backend draws them (the reference backend's choices)."""
    return {"_random_samples": S.uniform_samples(rng, fractional_sample_shape(case), case.dtype)}


def _resolution(dtype: str, t: float) -> float:
    """A bound on |P(u < t) - t| for a uniform variate rounded to ``dtype`` by any rounding, a
    value rounded up to 1 wrapping to 0: the dtype's spacing at t (>= the spacing just below t)
    plus the spacing just below 1."""
    fmt = DTYPES[dtype]
    return float(fmt.ulp(np.float64(t)) + fmt.ulp(np.float64(0.5)))


def _allowing(name: str, description: str, outcomes: np.ndarray, mean: float, slack: float,
              alpha: float) -> StatCheck:
    """Two-sided test that independent 0/1 ``outcomes`` have a mean within ``slack`` of ``mean``:
    the Bernstein threshold at the largest variance in that range, widened by n·slack (a correct
    backend still raises a false alarm with probability <= alpha)."""
    n = int(outcomes.size)
    hi = min(0.5, mean + slack) if mean < 0.5 else max(0.5, mean - slack)
    variance = n * hi * (1 - hi)
    threshold = bernstein_threshold(variance, alpha) + n * slack if n else 0.0
    return StatCheck(name=name, trials=n, observed=float(outcomes.sum()), expected=n * mean,
                     threshold=threshold, false_alarm=alpha, description=description)


def _one_per_seed(samples: Sequence[tuple[Case, dict[str, np.ndarray]]]) -> list[tuple[Case, dict[str, np.ndarray]]]:
    """One (the largest) sample set per call seed: cases run with the same seed draw the same
    stream (derandomized searches repeat small seeds such as 0), so only one of them is an
    independent observation."""
    best: dict[Any, tuple[Case, dict[str, np.ndarray]]] = {}
    for i, (case, choices) in enumerate(samples):
        seed = (case.call or {}).get("seed")
        key = ("case", i) if seed is None else seed
        size = np.asarray(choices["_random_samples"]).size
        if key not in best or size > np.asarray(best[key][1]["_random_samples"]).size:
            best[key] = (case, choices)
    return list(best.values())


def check_fractional_samples(samples: Sequence[tuple[Case, dict[str, np.ndarray]]], alpha: float) -> list[StatCheck]:
    """The reported samples are uniform on [0, 1) (up to the dtype's resolution) and independent.

    - range: every sample lies in [0, 1) (no false alarm possible);
    - for t in 1/4, 1/2, 3/4: the count below t is Binomial(n, P(u < t)) with |P(u < t) - t| at
      most the dtype's resolution at t (``_resolution``);
    - for pairs of neighbouring samples along the batch, the channels and the per-dim samples
      ((width, height) in 2-d, (depth, height) in 3-d): whether both fall on the same side of 1/2
      agrees with probability q² + (1-q)² (q the probability of u < 1/2), 1/2 up to
      2·resolution² — a sample shared across channels agrees always (``conformance.stats.
      independence_test``: the pairs (0, 1), (2, 3)... and (1, 2), (3, 4)..., each at half the share).
    The six tests share ``alpha`` equally (union bound), so a conforming backend raises a false
    alarm on a target with probability <= alpha. Cases that ran with the same seed count once.
    """
    dtype = samples[0][0].dtype if samples else "float64"
    arrays = [np.asarray(choices["_random_samples"], dtype=np.float64) for _, choices in _one_per_seed(samples)]
    u = np.concatenate([a.reshape(-1) for a in arrays]) if arrays else np.zeros(0)
    each = alpha / (len(SAMPLE_THRESHOLDS) + len(SAMPLE_AXES))
    outside = int(((u < 0) | (u >= 1) | np.isnan(u)).sum())
    checks = [StatCheck(name="range", trials=int(u.size), observed=float(outside), expected=0.0, threshold=0.0,
                        false_alarm=0.0, description="samples outside [0, 1)")]
    for t in SAMPLE_THRESHOLDS:
        checks.append(_allowing(f"below {t}", f"samples below {t}", u < t, t, _resolution(dtype, t), each))
    half = _resolution(dtype, 0.5)
    below = [a < 0.5 for a in arrays]
    for axis, what in SAMPLE_AXES_3D if arrays and arrays[0].shape[-1] == 3 else SAMPLE_AXES:
        checks.append(independence_test(f"independent {what}", f"neighbouring {what} on the same side of 1/2",
                                        below, [0.5] * len(below), axis, each, 2 * half * half))
    return checks
