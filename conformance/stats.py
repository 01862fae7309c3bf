"""Statistical checks of random choices, with a stated and bounded false-alarm rate.

A stochastic layer is compared per case through a conditional reference (exact, given the
backend's choices). What remains is whether the choices themselves are distributed as documented;
that is tested over all the cases of a target with tests whose false-alarm rate is bounded by an
inequality that holds for every sample size, not by an asymptotic approximation.

Every test here is a *Bernstein test*: S = Σ X_i over independent X_i ∈ [0, 1] with known means
μ_i. Bernstein's inequality gives P(|S − Σμ_i| ≥ t) ≤ 2·exp(−t² / (2σ² + 2t/3)), σ² = Σ μ_i(1 − μ_i).
The alarm threshold is the t that makes the right-hand side equal to the test's share α of the
target's false-alarm budget, so a correct backend raises a false alarm with probability ≤ α; the
budget is split over a target's tests (union bound), so the whole target's rate is ≤ its budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StatCheck:
    """One statistical test over a target's cases."""

    name: str
    trials: int
    observed: float
    expected: float
    threshold: float  # alarm when |observed - expected| > threshold
    false_alarm: float
    description: str

    @property
    def deviation(self) -> float:
        return abs(self.observed - self.expected)

    @property
    def ok(self) -> bool:
        return self.trials == 0 or self.deviation <= self.threshold

    @property
    def utilisation(self) -> float:
        return self.deviation / self.threshold if self.threshold > 0 else 0.0

    def message(self) -> str:
        verdict = "within" if self.ok else "OUTSIDE"
        return (f"{self.description}: observed {self.observed:g} over {self.trials} trials, expected "
                f"{self.expected:.4g} ± {self.threshold:.4g} (false-alarm rate ≤ {self.false_alarm:.1e}): {verdict}")


def bernstein_threshold(variance: float, alpha: float) -> float:
    """The t with 2·exp(−t² / (2·variance + 2t/3)) = alpha (the two-sided Bernstein bound)."""
    log_term = math.log(2.0 / alpha)
    # t² − (2/3)·L·t − 2·variance·L = 0, positive root.
    return (log_term / 3.0) + math.sqrt((log_term / 3.0) ** 2 + 2.0 * variance * log_term)


def bernstein_test(name: str, description: str, outcomes: np.ndarray, means: np.ndarray, alpha: float) -> StatCheck:
    """Test that independent 0/1 ``outcomes`` have the given ``means`` (two-sided, rate ≤ alpha)."""
    outcomes = np.asarray(outcomes, dtype=np.float64).reshape(-1)
    means = np.asarray(means, dtype=np.float64).reshape(-1)
    variance = float(np.sum(means * (1 - means)))
    threshold = bernstein_threshold(variance, alpha) if outcomes.size else 0.0
    return StatCheck(name=name, trials=int(outcomes.size), observed=float(outcomes.sum()),
                     expected=float(means.sum()), threshold=threshold, false_alarm=alpha, description=description)


def neighbour_agreement(units: Sequence[np.ndarray], keep: Sequence[float], axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Independence of neighbouring units along ``axis``: (agreements, their expected rates).

    For independent units kept with probability q, two neighbours agree with probability
    q² + (1 − q)²; pairs are disjoint (units 0-1, 2-3, ...) so the indicators are independent. A
    mask shared across channels or samples agrees everywhere.
    """
    agree: list[np.ndarray] = []
    rate: list[np.ndarray] = []
    for u, q in zip(units, keep):
        if u.ndim <= axis or u.shape[axis] < 2:
            continue
        pairs = u.shape[axis] // 2
        first = np.take(u, np.arange(0, 2 * pairs, 2), axis=axis)
        second = np.take(u, np.arange(1, 2 * pairs, 2), axis=axis)
        same = (first == second).reshape(-1)
        agree.append(same)
        rate.append(np.full(same.shape, q * q + (1 - q) * (1 - q)))
    if not agree:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(agree), np.concatenate(rate)
