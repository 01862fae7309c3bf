"""Moved to conformance.strategies.pooling; the old name stays (tests/test_wrong_regimes.py imports it)."""
import sys

from conformance.strategies import pooling

sys.modules[__name__] = pooling
