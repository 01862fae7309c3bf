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
from hypothesis import Phase, find, settings
from hypothesis.errors import NoSuchExample

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

    try:
        # Generation only: once enough cases are collected every example satisfies the condition, and
        # shrinking that one would only cost time.
        find(strategy, collect, settings=settings(max_examples=600, database=None, derandomize=True,
                                                  phases=[Phase.generate]))
    except NoSuchExample:
        pass
    return cases[:count]


@pytest.mark.parametrize("spec", RANDOM_SPECS, ids=lambda s: s.id)
def test_false_alarm_rate_within_the_stated_rate(spec):
    cases = _random_cases(spec, 12)
    assert cases, f"{spec.id}: randomness declared, but the strategy draws no random case in 600 examples"
    rng = np.random.default_rng(0)
    alarms_loose = alarms_strict = 0
    alpha = 0.2
    for _ in range(TRIALS):
        samples = [(case, spec.randomness.sample(case, rng)) for case in cases]
        loose = not all(c.ok for c in spec.randomness.check(samples, alpha))
        alarms_loose += loose
        # A test alarming at the strict rate alarms at the loose one too (its threshold is larger).
        alarms_strict += loose and not all(c.ok for c in spec.randomness.check(samples, spec.randomness.false_alarm))
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


# -- independence of units: the mistakes the rate alone cannot see --------------------------------

def _cases(op: str, shape: tuple[int, ...], count: int = 3):
    from backends.base import Case

    x = np.ones(shape)
    params = {"p": 0.5, "inplace": False}
    return [Case(op=op, dtype="float32", params=params, inputs={"input": x}) for _ in range(count)]


def _failed(op: str, masks) -> set[str]:
    spec = all_specs()[op]
    samples = [(case, {"mask": m}) for case, m in zip(_cases(op, masks[0].shape, len(masks)), masks)]
    return {c.name for c in spec.randomness.check(samples, spec.randomness.false_alarm) if not c.ok}


def test_a_channel_mask_shared_across_the_channels_of_a_sample_is_rejected():
    rng = np.random.default_rng(3)
    per_sample = [np.broadcast_to(rng.random((16, 1, 1, 1)) >= 0.5, (16, 16, 2, 2)) for _ in range(3)]  # right rate
    assert _failed("Dropout2d", per_sample) == {"independent channels"}
    correct = [np.broadcast_to(rng.random((16, 16, 1, 1)) >= 0.5, (16, 16, 2, 2)) for _ in range(3)]
    assert _failed("Dropout2d", correct) == set()


def test_a_mask_shared_across_the_batch_is_rejected():
    rng = np.random.default_rng(4)
    per_channel = [np.broadcast_to(rng.random((1, 16, 1, 1)) >= 0.5, (16, 16, 2, 2)) for _ in range(3)]
    assert _failed("Dropout2d", per_channel) == {"independent samples"}


def test_a_mask_correlated_between_consecutive_elements_is_rejected():
    """A Markov chain along the last dim: each element repeats its neighbour's choice with probability
    0.8 (else draws afresh), so the marginal rate is exactly p = 1/2."""
    rng = np.random.default_rng(5)
    masks = []
    for _ in range(3):
        m = np.empty((8, 64), dtype=bool)
        m[:, 0] = rng.random(8) >= 0.5
        for j in range(1, 64):  # a loop over positions of a test fixture, not of a reference
            repeat = rng.random(8) < 0.8
            m[:, j] = np.where(repeat, m[:, j - 1], rng.random(8) >= 0.5)
        masks.append(m)
    assert _failed("Dropout", masks) == {"independent consecutive elements"}


def test_the_second_pairing_sees_correlations_the_first_one_misses():
    from conformance.stats import independence_test

    rng = np.random.default_rng(6)
    m = rng.random((64, 64)) >= 0.5
    m[:, 2::2] = m[:, 1:-1:2]  # elements 2k + 1 and 2k + 2 agree: pairs (0, 1), (2, 3)... are independent
    check = independence_test("t", "d", [m], [0.5], -1, 1e-6)
    assert not check.ok and "(1, 2)" in check.description
