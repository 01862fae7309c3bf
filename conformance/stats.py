"""Statistical checks of random choices, with a stated and bounded false-alarm rate.

A stochastic layer is compared per case through a conditional reference (exact, given the
backend's choices). What remains is whether the choices themselves are distributed as documented;
that is tested over all the cases of a target with tests whose false-alarm rate is bounded by an
inequality that holds for every sample size, not by an asymptotic approximation.

- **Bernstein tests** (``bernstein_test``): S = Σ X_i over independent X_i ∈ [0, 1] with known
  means μ_i (each known up to ``slack`` when the choice is read in a rounded format). Bernstein's
  inequality gives P(|S − Σμ_i| ≥ t) ≤ 2·exp(−t² / (2σ² + 2t/3)), σ² = Σ μ_i(1 − μ_i). The alarm
  threshold is the t that makes the right-hand side equal to the test's share α of the target's
  false-alarm budget (plus n·slack), so a correct backend raises a false alarm with probability ≤ α.
- **Dvoretzky–Kiefer–Wolfowitz tests** (``dkw_test``): n independent draws of a continuous law
  against its CDF, P(sup |F_n − F| > ε) ≤ 2·exp(−2nε²) (Massart's constant), for every n.
- **Independence of units** (``independence_test``): a random choice made per unit (a dropout
  mask's element or channel, a slope, a sample) must be independent of its neighbours: along the
  samples of a batch, the channels of a sample, and consecutive elements. Two neighbouring 0/1
  units with means q agree with probability q² + (1 − q)² when independent; a choice shared along
  an axis (one mask for every channel of a sample: the right drop rate, the wrong law) agrees
  always. Pairs are disjoint, so their agreements are independent: the pairs (0, 1), (2, 3), ...
  and, as a second Bernstein test, (1, 2), (3, 4), ..., each at half the test's share (a
  correlation between elements 2k + 1 and 2k + 2 escapes the first pairing only).
  ``mask_checks`` runs the drop rate and the independence tests of a target's unit masks.

The budget is split over a target's tests (union bound), so the whole target's false-alarm rate
is at most its budget (``Randomness.false_alarm`` = 1e-6).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

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


def bernstein_test(name: str, description: str, outcomes: np.ndarray, means: np.ndarray, alpha: float,
                   slack: float = 0.0) -> StatCheck:
    """Test that independent 0/1 ``outcomes`` have the given ``means`` (two-sided, rate ≤ alpha).

    ``slack``: each true mean may lie anywhere within ``slack`` of the stated one (a choice read in
    a rounded format); the variance is taken at the worst mean in that range and the threshold
    widened by n·slack, so the rate stays ≤ alpha."""
    outcomes = np.asarray(outcomes, dtype=np.float64).reshape(-1)
    means = np.asarray(means, dtype=np.float64).reshape(-1)
    return bernstein_summary(name, description, [(outcomes.size, float(outcomes.sum()), means)], alpha, slack)


def _worst_variance(means: np.ndarray, slack: float) -> np.ndarray:
    """μ(1 − μ) at the mean within ``slack`` of each stated one that maximises it."""
    worst = np.clip(np.where(means < 0.5, np.minimum(0.5, means + slack), np.maximum(0.5, means - slack)), 0, 1)
    return worst * (1 - worst)


def bernstein_summary(name: str, description: str, groups: Sequence[tuple[int, float, np.ndarray | float]],
                      alpha: float, slack: float = 0.0) -> StatCheck:
    """``bernstein_test`` from per-group sums: each group is (trials, observed sum, mean per trial
    (an array) or one mean shared by its trials)."""
    trials = expected = variance = observed = 0.0
    for n, total, means in groups:
        if not n:
            continue
        m = np.asarray(means, dtype=np.float64)
        trials += n
        observed += total
        if m.ndim == 0:
            mean = float(m)
            worst = min(1.0, max(0.0, min(0.5, mean + slack) if mean < 0.5 else max(0.5, mean - slack)))
            expected += n * mean
            variance += n * worst * (1 - worst)
        else:
            expected += float(m.sum())
            variance += float(_worst_variance(m, slack).sum())
    threshold = bernstein_threshold(variance, alpha) + trials * slack if trials else 0.0
    return StatCheck(name=name, trials=int(trials), observed=observed, expected=expected, threshold=threshold,
                     false_alarm=alpha, description=description)


def dkw_test(name: str, description: str, values: np.ndarray, cdf: Callable[[np.ndarray], np.ndarray],
             width: float, alpha: float) -> StatCheck:
    """Dvoretzky–Kiefer–Wolfowitz test (Massart's constant) that ``values`` are independent draws
    of the distribution ``cdf``, each read with an error of at most ``width``: with F_n the
    empirical distribution, the statistic D = sup_t max(F_n(t) - cdf(t + width), cdf(t - width) -
    F_n(t-)) is at most sup |F_n - G| for the distribution G of the values read, and
    P(sup |F_n - G| > ε) <= 2·exp(-2nε²) for any G, so D > ε = sqrt(log(2/α)/(2n)) alarms falsely
    with probability at most α."""
    v = np.sort(np.asarray(values, dtype=np.float64).reshape(-1))
    n = v.size
    if n == 0:
        return StatCheck(name, 0, 0.0, 0.0, 0.0, alpha, description)
    rank = np.arange(1, n + 1) / n
    statistic = max(float(np.max(rank - cdf(v + width))), float(np.max(cdf(v - width) - (rank - 1 / n))), 0.0)
    return StatCheck(name, n, statistic, 0.0, math.sqrt(math.log(2 / alpha) / (2 * n)), alpha, description)


# -- independence of neighbouring units ---------------------------------------------------------------

def neighbour_pairs(u: np.ndarray, axis: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The disjoint neighbour pairs (offset + 2k, offset + 2k + 1) of ``u`` along ``axis``
    (negative: counted from the end), as two arrays of the same shape (empty when none)."""
    u = np.asarray(u)
    if u.ndim == 0:
        return np.zeros(0, u.dtype), np.zeros(0, u.dtype)
    axis = axis % u.ndim
    pairs = max(0, (u.shape[axis] - offset) // 2)
    first = np.take(u, np.arange(offset, offset + 2 * pairs, 2), axis=axis)
    second = np.take(u, np.arange(offset + 1, offset + 2 * pairs, 2), axis=axis)
    return first, second


def neighbour_agreement(units: Sequence[np.ndarray], keep: Sequence[float], axis: int,
                        offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Independence of neighbouring units along ``axis``: (agreements, their expected rates).

    For independent units kept with probability q, two neighbours agree with probability
    q² + (1 − q)²; pairs are disjoint (units offset + 0-1, 2-3, ...) so the indicators are
    independent. A choice shared across channels or samples agrees everywhere. Units without
    ``axis`` (fewer dims) contribute nothing.
    """
    agree: list[np.ndarray] = []
    rate: list[np.ndarray] = []
    for u, q in zip(units, keep):
        u = np.asarray(u)
        if u.ndim == 0 or (axis >= 0 and u.ndim <= axis):
            continue
        first, second = neighbour_pairs(u, axis, offset)
        same = (first == second).reshape(-1)
        agree.append(same)
        rate.append(np.full(same.shape, q * q + (1 - q) * (1 - q)))
    if not agree:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(agree), np.concatenate(rate)


def pair_counts(u: np.ndarray, axis: int, offset: int = 0) -> tuple[int, int]:
    """(pairs, agreeing pairs) of the disjoint neighbour pairs (offset + 2k, offset + 2k + 1) of
    ``u`` along ``axis`` (negative: counted from the end; a missing axis has none)."""
    u = np.asarray(u)
    if u.ndim == 0 or not -u.ndim <= axis < u.ndim:
        return 0, 0
    axis %= u.ndim
    k = (u.shape[axis] - offset) // 2
    if k <= 0:
        return 0, 0
    first, second = [slice(None)] * u.ndim, [slice(None)] * u.ndim
    first[axis], second[axis] = slice(offset, offset + 2 * k, 2), slice(offset + 1, offset + 2 * k, 2)
    a, b = u[tuple(first)], u[tuple(second)]
    return int(a.size), int(np.count_nonzero(a == b))


def independence_test(name: str, description: str, units: Sequence[np.ndarray], keep: Sequence[float],
                      axis: int | Sequence[int], alpha: float, agreement_slack: float = 0.0) -> StatCheck:
    """Neighbouring 0/1 units along ``axis`` (one for all arrays, or one per array) agree as often
    as independent ones would: two Bernstein tests at alpha/2 each, over the pairs (0, 1), (2, 3),
    ... and (1, 2), (3, 4), ...; the check reported is the worse of the two (it fails when either
    does). ``keep``: each array's probability of a 1; ``agreement_slack``: how far the true
    agreement rate may lie from q² + (1 − q)² (a probability known up to a rounding)."""
    axes = [axis] * len(units) if isinstance(axis, int) else list(axis)
    checks = []
    for offset, which in ((0, "pairs (0, 1), (2, 3)..."), (1, "pairs (1, 2), (3, 4)...")):
        groups = []
        for u, q, ax in zip(units, keep, axes):
            pairs, agree = pair_counts(u, ax, offset)
            groups.append((pairs, float(agree), q * q + (1 - q) * (1 - q)))
        checks.append(bernstein_summary(name, f"{description}, {which}", groups, alpha / 2, agreement_slack))
    return max(checks, key=lambda c: (not c.ok, c.utilisation))


# The independence tests of unit masks, by name: what a pair of neighbours is.
INDEPENDENCE = {
    "samples": "samples within a batch",
    "channels": "channels within a sample",
    "consecutive elements": "consecutive elements",
}


def element_axes(ndim: int) -> dict[str, int]:
    """The independence axes of a mask of independent elements of ``ndim`` dims: consecutive
    elements along the last dim; samples along dim 0 and channels along dim 1 where the mask has
    dims before the last (a (N, L) mask: samples and consecutive elements; (N, C, ..., L): all
    three)."""
    axes = {"consecutive elements": ndim - 1} if ndim >= 1 else {}
    if ndim >= 2:
        axes["samples"] = 0
    if ndim >= 3:
        axes["channels"] = 1
    return axes


@dataclass(frozen=True)
class UnitMask:
    """One case's random 0/1 choice per unit (True = kept), each unit kept with probability ``q``;
    ``axes`` maps the independence tests that apply (``INDEPENDENCE``) to the dim of ``keep``
    along which that test pairs neighbours."""

    keep: np.ndarray
    q: float
    axes: Mapping[str, int] = field(default_factory=dict)


def mask_checks(masks: Sequence[UnitMask], tests: Sequence[str], alpha: float,
                unit: str = "units") -> list[StatCheck]:
    """The statistical tests of a target's unit masks, ``alpha`` split equally over them:

    - "drop rate": every unit of every case dropped with probability 1 − q (Bernstein);
    - "independent <test>" for each of ``tests`` (``INDEPENDENCE``): neighbours along the axis the
      mask names for it agree as independent units would (``independence_test``).
    The number of tests is fixed by ``tests`` (not by the masks seen), so the budget holds."""
    share = alpha / (1 + len(tests))
    groups = [(int(np.size(m.keep)), float(np.size(m.keep) - np.count_nonzero(m.keep)), 1 - m.q) for m in masks]
    checks = [bernstein_summary("drop rate", f"{unit} dropped, against p", groups, share)]
    for test in tests:
        chosen = [m for m in masks if test in m.axes]
        description = f"neighbouring {INDEPENDENCE[test]} with the same choice"
        checks.append(independence_test(f"independent {test}", description, [m.keep for m in chosen],
                                        [m.q for m in chosen], [m.axes[test] for m in chosen], share))
    return checks
