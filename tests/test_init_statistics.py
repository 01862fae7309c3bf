"""The statistical tests of the initialisers (conformance.numerics.init): their false-alarm rate on
correct samples stays within the stated rate, and the mistakes an implementer makes are rejected.

Correct samples are NumPy draws from the documented law (reference.init's samplers) rounded to
each format, as a conforming backend produces them. Each trial pools a target-sized set of draws
(10 small tensors); at a nominal rate of 0.2 the observed alarm rate may exceed 0.2 only by sampling
noise, and at the runner's 1e-6 no alarm may occur. Wrong samplers must alarm at 1e-6.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from conformance.dtypes import DTYPES
from conformance.numerics import init as num
from reference import init as RI

TRIALS = 200
SHAPE = (8, 8)


def _draws(law: num.Law, sampler, dtype: str, rng: np.random.Generator, tensors: int = 10):
    return [(law, DTYPES[dtype].round(sampler(rng)), dtype) for _ in range(tensors)]


# law, sampler(rng, shape = SHAPE)
CORRECT = {
    "uniform": (num.uniform_law(-0.3, 0.7), lambda rng, shape=SHAPE: RI.uniform_(np.empty(shape), -0.3, 0.7, rng)),
    "normal": (num.normal_law(1.0, 2.0), lambda rng, shape=SHAPE: RI.normal_(np.empty(shape), 1.0, 2.0, rng)),
    "trunc (normal proposals)": (num.law_trunc_normal({"mean": 0.0, "std": 1.0, "a": -1.0, "b": 2.0}, SHAPE),
                                 lambda rng, shape=SHAPE: RI.trunc_normal_(np.empty(shape), 0.0, 1.0, -1.0, 2.0, rng)),
    "trunc (uniform proposals)": (num.law_trunc_normal({"mean": 0.0, "std": 1.0, "a": 1.0, "b": 4.0}, SHAPE),
                                  lambda rng, shape=SHAPE: RI.trunc_normal_(np.empty(shape), 0.0, 1.0, 1.0, 4.0, rng)),
    "sparse": (num.law_sparse({"sparsity": 0.25, "std": 0.5}, SHAPE),
               lambda rng: RI.sparse_(np.empty(SHAPE), 0.25, 0.5, rng)),
    "orthogonal": (num.law_orthogonal({"gain": 1.0}, SHAPE), lambda rng: RI.orthogonal_(np.empty(SHAPE), 1.0, rng)),
}


@pytest.mark.parametrize(("kind", "dtype"), [(k, "float64") for k in sorted(CORRECT)]
                         + [("uniform", "bfloat16"), ("normal", "float16"), ("trunc (uniform proposals)", "bfloat16")])
def test_false_alarm_rate_on_correct_draws(kind, dtype):
    law, sampler = CORRECT[kind]
    rng = np.random.default_rng(0)
    pooled = law.kind in ("uniform", "normal", "trunc")  # iid elements: one large draw, cut into tensors
    pool = iter(DTYPES[dtype].round(sampler(rng, (TRIALS * 10, *SHAPE)))) if pooled else None
    loose = strict = 0
    for _ in range(TRIALS):
        draws = [(law, next(pool), dtype) for _ in range(10)] if pooled else _draws(law, sampler, dtype, rng)
        loose += not all(c.ok for c in num.law_checks(draws, 0.2))
        strict += not all(c.ok for c in num.law_checks(draws, 1e-6))
    assert loose / TRIALS <= 0.2 + 4 * math.sqrt(0.2 * 0.8 / TRIALS), loose
    assert strict == 0


def _rejected(law: num.Law, sampler, dtype: str = "float32", tensors: int = 40) -> bool:
    draws = _draws(law, sampler, dtype, np.random.default_rng(1), tensors)
    return not all(c.ok for c in num.law_checks(draws, 1e-6))


def test_xavier_uniform_with_the_normal_s_bound_is_rejected():
    bound = math.sqrt(3) * RI.xavier_std(SHAPE)
    law = num.uniform_law(-bound, bound)
    assert _rejected(law, lambda rng: RI.uniform_(np.empty(SHAPE), -bound / math.sqrt(3), bound / math.sqrt(3), rng))
    assert not _rejected(law, lambda rng: RI.xavier_uniform_(np.empty(SHAPE), 1.0, rng))


def test_kaiming_with_the_wrong_fan_is_rejected():
    shape = (8, 32)  # fan_in 32, fan_out 8: the wrong fan doubles the bound
    law = num.law_kaiming_normal({"a": 0.0, "mode": "fan_in", "nonlinearity": "relu"}, shape)
    wrong = RI.kaiming_std(shape, 0.0, "fan_out", "relu")
    assert _rejected(law, lambda rng: RI.normal_(np.empty(shape), 0.0, wrong, rng))


def test_a_slightly_wide_normal_is_rejected_with_enough_draws():
    law = num.normal_law(0.0, 1.0)
    assert _rejected(law, lambda rng: RI.normal_(np.empty((64, 64)), 0.0, 1.15, rng), tensors=4)


def test_a_truncated_normal_clamped_instead_of_redrawn_is_rejected():
    law = num.law_trunc_normal({"mean": 0.0, "std": 1.0, "a": -1.0, "b": 2.0}, SHAPE)
    assert _rejected(law, lambda rng: np.clip(rng.standard_normal(SHAPE), -1.0, 2.0))


def test_orthogonal_without_the_sign_correction_is_rejected():
    law = num.law_orthogonal({"gain": 1.0}, SHAPE)

    def householder_signs(rng):  # LAPACK's R has a negative diagonal for a positive pivot: Q's diagonal leans negative
        q, r = np.linalg.qr(rng.standard_normal(SHAPE))
        return q * -np.sign(np.diag(q))[None, :]

    assert _rejected(law, householder_signs, tensors=80)


def test_sparse_zeros_always_in_the_first_rows_are_rejected():
    law = num.law_sparse({"sparsity": 0.25, "std": 0.5}, SHAPE)

    def first_rows(rng):
        w = rng.standard_normal(SHAPE) * 0.5
        w[:4] = 0
        return w

    assert _rejected(law, first_rows)


def test_interval_ks_is_the_ks_distance_for_exact_values_and_shrinks_with_rounding():
    rng = np.random.default_rng(2)
    p = np.sort(rng.random(500))
    k = np.arange(1, 501) / 500
    exact = max(np.max(k - p), np.max(p - (k - 1 / 500)))
    assert num.interval_ks(p, p) == pytest.approx(exact)
    assert num.interval_ks(np.clip(p - 0.01, 0, 1), np.clip(p + 0.01, 0, 1)) <= exact
    assert num.dkw_threshold(500, 1e-6) == pytest.approx(math.sqrt(math.log(2e6) / 1000))
