"""Shared test settings: our own Hypothesis tests are derandomized (reproducible in CI)."""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "nnconform-tests", derandomize=True, database=None, deadline=None, max_examples=10,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("nnconform-tests")
