"""Every declared layer's case strategy: valid by construction, bounded, and varied."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings

from conformance.dtypes import DTYPE_NAMES, DTYPES
from conformance.runner import reference_result
from conformance.spec import all_specs

SPECS = sorted(all_specs().values(), key=lambda s: s.name)
MAX_ELEMENTS = 1 << 16


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.id)
def test_cases_are_valid_bounded_and_varied(spec):
    """Cases of every dtype: the reference accepts them, values are representable in the dtype,
    the element count stays bounded, and the draws vary (Hypothesis' health checks also fail the
    test if the strategy filters most draws away)."""
    seen: Counter = Counter()

    for dtype in DTYPE_NAMES:
        _check_dtype(spec, dtype, seen)
    assert len([k for k in seen if k[0] != "shape"]) >= 3, "parameters, tiers and layouts hardly vary"
    assert len([k for k in seen if k[0] == "shape"]) >= 3, "the strategy hardly varies its shapes"


def _check_dtype(spec, dtype: str, seen: Counter) -> None:
    @settings(max_examples=12)
    @given(case=spec.strategy(dtype))
    def check(case):
        assert case.op == spec.name and case.variant == spec.variant and case.dtype == dtype and not case.invalid
        total = 0
        for name, arr in case.inputs.items():
            total += arr.size
            if arr.dtype.kind == "f":
                np.testing.assert_array_equal(DTYPES[dtype].round(arr), arr, err_msg=name)
                if case.tier == "exact" and name in case.differentiable:  # values, not geometry (samples)
                    finite = arr[np.isfinite(arr)]
                    assert np.all(finite == np.round(finite)), f"{name}: exact tier needs integers"
            layout = case.layout(name)
            assert len(layout.strides(arr.shape)) == arr.ndim
        assert set(case.differentiable) <= set(case.inputs)
        assert total <= MAX_ELEMENTS, total
        reference_result(spec, case)  # must not raise
        # Parameters, tier and memory layouts: a layer without parameters still varies the others.
        layouts = tuple(sorted((k, v.kind) for k, v in case.layouts.items()))
        seen[(case.tier, repr(sorted(case.params.items())), layouts)] += 1
        seen[("shape", tuple(case.inputs[next(iter(case.inputs))].shape))] += 1

    check()


@pytest.mark.parametrize("spec", [s for s in SPECS if s.invalid_cases is not None], ids=lambda s: s.id)
def test_invalid_cases_are_rejected_by_the_reference(spec):
    @settings(max_examples=10)
    @given(case=spec.strategy("float32", invalid=True))
    def check(case):
        assert case.invalid
        with pytest.raises((ValueError, IndexError, TypeError)):
            with np.errstate(all="ignore"):
                reference_result(spec, case)

    check()


REGIMES = [(s, r) for s in SPECS for r in s.regimes]


@pytest.mark.parametrize(("spec", "regime"), REGIMES, ids=[f"{s.id}:{r.name}" for s, r in REGIMES])
def test_regime_pins_produce_cases_in_the_regime(spec, regime):
    """A case asked for in a regime lies in it, in every dtype, and is valid (the stratified ci
    profile relies on this to give every regime cases)."""
    for dtype in DTYPE_NAMES:
        @settings(max_examples=5)
        @given(case=spec.strategy(dtype, regime))
        def check(case):
            assert regime.holds(case), f"{regime.name}: pinned draw produced a case outside the regime"
            reference_result(spec, case)  # must not raise

        check()
