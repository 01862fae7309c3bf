"""The statistical checks of random choices: their false-alarm rate is what the README states.

Masks drawn by a correct sampler (each declaration's ``Randomness.sample``, what a conforming
backend does) are checked many times at a large nominal rate alpha, so that false alarms are
frequent enough to count: the observed rate must stay within alpha (Bernstein's inequality makes
the tests conservative). At the rate the runner uses (1e-6 per target) none may occur.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import find, settings

from conformance.spec import all_specs
from conformance.stats import bernstein_test, bernstein_threshold

RANDOM_SPECS = [s for s in all_specs().values() if s.randomness is not None]
TRIALS = 400


def _random_cases(spec, count: int):
    """``count`` distinct random cases of the target (drawn as the ci profile draws them)."""
    cases = []
    strategy = spec.strategy("float32")

    def collect(case):
        if spec.is_random(case):
            cases.append(case)
        return len(cases) >= count

    find(strategy, collect, settings=settings(max_examples=2000, database=None, derandomize=True))
    return cases[:count]


@pytest.mark.parametrize("spec", RANDOM_SPECS, ids=lambda s: s.id)
def test_false_alarm_rate_within_the_stated_rate(spec):
    cases = _random_cases(spec, 12)
    assert cases, "the strategy draws no random case"
    rng = np.random.default_rng(0)
    alarms_loose = alarms_strict = 0
    alpha = 0.2
    for _ in range(TRIALS):
        samples = [(case, spec.randomness.sample(case, rng)) for case in cases]
        alarms_loose += not all(c.ok for c in spec.randomness.check(samples, alpha))
        alarms_strict += not all(c.ok for c in spec.randomness.check(samples, spec.randomness.false_alarm))
    # The observed rate may exceed alpha only by sampling noise: 4 standard deviations.
    assert alarms_loose / TRIALS <= alpha + 4 * math.sqrt(alpha * (1 - alpha) / TRIALS), alarms_loose
    assert alarms_strict == 0


def test_bernstein_threshold_solves_the_bound():
    for variance in (0.0, 1.0, 37.5, 1e4):
        for alpha in (1e-6, 0.05):
            t = bernstein_threshold(variance, alpha)
            assert math.isclose(2 * math.exp(-t * t / (2 * variance + 2 * t / 3)), alpha, rel_tol=1e-9)


def test_bernstein_test_flags_a_biased_coin_and_accepts_a_fair_one():
    rng = np.random.default_rng(1)
    fair = rng.random(5000) < 0.3
    biased = rng.random(5000) < 0.36
    means = np.full(5000, 0.3)
    assert bernstein_test("t", "d", fair, means, 1e-6).ok
    assert not bernstein_test("t", "d", biased, means, 1e-6).ok
