"""One forward error analysis serves every cotangent (conformance.numerics.analysis_cache): the
attention family's Bounded twin, run forward once and pulled back for several cotangents, gives
exactly what a fresh analysis gives for each (its pullbacks are pure), and the cache hands the same
analysis back only for the same case data."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, find, settings

import conformance.specs  # noqa: F401  (declares the catalogue)
from conformance.numerics import analysis_cache as AC
from conformance.numerics.attention_bounds import _analysis
from conformance.spec import all_specs


@pytest.mark.parametrize("target", ["scaled_dot_product_attention[math]", "MultiheadAttention",
                                    "TransformerEncoderLayer", "TransformerDecoder"])
def test_one_attention_analysis_serves_many_cotangents(target: str):
    spec = all_specs()[target]
    case = find(spec.cases("float32"), lambda c: not c.invalid,
                settings=settings(database=None, max_examples=50, phases=(Phase.generate,),
                                  suppress_health_check=list(HealthCheck)))
    outputs = spec.evaluate(case).outputs
    analysis = _analysis(case)
    rng = np.random.default_rng(5)
    for _ in range(3):
        cots = {k: rng.standard_normal(np.shape(v)) for k, v in outputs.items()
                if np.asarray(v).dtype.kind == "f" and k in ("output", "weights")}
        reused, fresh = analysis(cots), _analysis(replace(case, cotangents=cots))(cots)
        assert reused.keys() == fresh.keys() and any(k.startswith("grad.") for k in fresh)
        for name in fresh:
            np.testing.assert_array_equal(reused[name], fresh[name])


def test_the_cache_keys_on_the_case_data():
    spec = all_specs()["MultiheadAttention"]
    case = find(spec.cases("float32"), lambda c: not c.invalid,
                settings=settings(database=None, max_examples=50, phases=(Phase.generate,),
                                  suppress_health_check=list(HealthCheck)))
    calls = []

    def run():
        calls.append(1)
        return lambda cotangents: {}

    AC.forward(AC.case_key(case), run)
    AC.forward(AC.case_key(replace(case, cotangents={})), run)  # other cotangents: the same analysis
    assert len(calls) == 1
    AC.forward(AC.case_key(replace(case, inputs=dict(case.inputs))), run)  # other inputs: a new one
    AC.forward(AC.case_key(replace(case, dtype="float64")), run)
    assert len(calls) == 3


def test_a_layout_only_variant_of_a_case_is_not_served_the_first_ones_value():
    from backends.base import Case, Layout

    case = Case(op="MaxPool2d", dtype="float32", params={"kernel_size": 2}, inputs={"input": np.zeros((1, 1, 2, 2))})
    permuted = replace(case, layouts={"input": Layout.from_description({"kind": "permuted", "perm": [0, 1, 3, 2]})})
    calls = []
    for c in (case, permuted, case):
        AC.per_case(AC.case_key(c, "layout-test"), lambda c=c: calls.append(c) or len(calls))
    assert calls == [case, permuted]  # the third is the first one again: served from the cache
