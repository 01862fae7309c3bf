"""The tolerance model and comparison engine on hand-built results."""

from __future__ import annotations

import numpy as np
import pytest

from backends.base import Case, Result
from conformance.compare import compare_results, compare_tensor
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec, Pullback, Tolerance, TorchMapping
from conformance.tolerance import bound_for


def _dot_reference(case: Case) -> tuple[Result, Pullback]:
    """y = Σ_k x_k·w_k (a reduction of length K); the pullback is (g·w, g·x)."""
    x, w = case.inputs["input"], case.inputs["weight"]

    def pullback(cotangents):
        g = cotangents["output"][0]
        return {"input": g * w, "weight": g * x}

    return Result(outputs={"output": np.array([np.dot(x, w)])}), pullback


def _spec(exact: str = "bitwise", c: float = 2.0) -> LayerSpec:
    return LayerSpec(name="Dot", family="test", cases=lambda dtype: None, reference=_dot_reference,
                     torch=TorchMapping("torch.nn.Identity"),
                     tolerance=Tolerance(reduction=lambda case, t: case.inputs["input"].size, c=c, exact=exact))


def _case(x, w, dtype="float32", tier="float") -> Case:
    inputs = {"input": np.asarray(x, float), "weight": np.asarray(w, float)}
    return Case(op="Dot", dtype=dtype, params={}, inputs=inputs, tier=tier)


def test_bound_is_the_documented_formula():
    spec = _spec()
    case = _case([1.0, -2.0, 3.0, 0.5], [2.0, 1.0, -1.0, 4.0])
    ref = np.array([1.0])
    absref = np.array([2 + 2 + 3 + 2.0])
    u = DTYPES["float32"].unit_roundoff
    b = bound_for(spec, case, "output", ref, absref)
    expected = u * 1.0 + 2.0 * np.sqrt(4) * u * 9.0 + 4 * DTYPES["float32"].min_subnormal
    assert b.allowed[0] == pytest.approx(expected, rel=1e-12)
    assert not b.exact.any()


def test_exact_tier_is_bitwise_where_sums_are_provably_exact():
    spec = _spec()
    case = _case([1, 2, 3], [1, 1, 1], dtype="bfloat16", tier="exact")
    small = bound_for(spec, case, "output", np.array([6.0]), np.array([6.0]))
    assert small.exact.all() and small.allowed[0] == 0
    big = bound_for(spec, case, "output", np.array([300.0]), np.array([300.0]))  # > 2^8: not provable
    assert not big.exact.any() and big.allowed[0] > 0


def test_rounded_exactness_allows_one_final_rounding_only():
    spec = _spec(exact="rounded")
    case = _case([1, 2], [1, 1], dtype="float16", tier="exact")
    b = bound_for(spec, case, "output", np.array([1.5]), np.array([1.5]))
    assert b.exact.all() and b.allowed[0] == pytest.approx(DTYPES["float16"].unit_roundoff * 1.5)


def test_one_ulp_off_is_caught_in_the_exact_tier():
    spec = _spec()
    case = _case([1, 2, 3], [1, 1, 1], tier="exact")
    ref = _dot_reference(case)[0]
    got = Result(outputs={"output": np.array([6.0 + 2.0**-21])}, dtypes={"output": "float32"})
    [cmp] = compare_results(spec, case, ref, got)
    assert not cmp.ok and cmp.utilisation == float("inf") and cmp.max_ulp == pytest.approx(1.0)


def test_float_tier_accepts_rounding_and_rejects_larger_errors():
    spec = _spec()
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(64), rng.standard_normal(64)
    case = _case(DTYPES["float32"].round(x), DTYPES["float32"].round(w))
    ref = _dot_reference(case)[0]
    f32 = np.float32(np.dot(case.inputs["input"].astype(np.float32), case.inputs["weight"].astype(np.float32)))
    ok = compare_results(spec, case, ref, Result(outputs={"output": np.array([float(f32)])},
                                                 dtypes={"output": "float32"}))[0]
    assert ok.ok and 0 <= ok.utilisation < 1
    absref = float(np.dot(np.abs(x), np.abs(w)))
    wrong = ref.outputs["output"] + 1e-3 * absref
    bad = compare_results(spec, case, ref, Result(outputs={"output": wrong}, dtypes={"output": "float32"}))[0]
    assert not bad.ok and bad.utilisation > 1 and bad.worst and bad.worst_index == [0]


@pytest.mark.parametrize("got, ok", [
    ([np.nan, 1.0], True), ([1.0, 1.0], False), ([np.nan, np.inf], False), ([np.nan, 1.0 + 1e-3], False),
])
def test_nan_and_inf_patterns_must_match(got, ok):
    spec = _spec()
    case = _case([1.0], [1.0])
    cmp = compare_tensor(spec, case, "output", np.array([np.nan, 1.0]), np.array(got), "float32",
                         np.array([1.0, 1.0]))
    assert cmp.ok is ok


def test_overflow_to_inf_of_the_right_sign_is_accepted():
    spec = _spec()
    case = _case([1.0], [1.0], dtype="float16")
    ref = np.array([1e6, -1e6])
    assert compare_tensor(spec, case, "output", ref, np.array([np.inf, -np.inf]), "float16", np.abs(ref)).ok
    assert not compare_tensor(spec, case, "output", ref, np.array([-np.inf, -np.inf]), "float16", np.abs(ref)).ok


def test_shape_and_dtype_mismatches_fail_with_a_message():
    spec = _spec()
    case = _case([1.0], [1.0])
    shape = compare_tensor(spec, case, "output", np.zeros(3), np.zeros(4), "float32", np.zeros(3))
    dtype = compare_tensor(spec, case, "output", np.zeros(3), np.zeros(3), "float64", np.zeros(3))
    assert not shape.ok and "shape" in shape.message
    assert not dtype.ok and "dtype" in dtype.message


def test_integer_outputs_compare_exactly():
    spec = _spec()
    case = _case([1.0], [1.0])
    assert compare_tensor(spec, case, "indices", np.array([1, 2]), np.array([1, 2]), "int64", np.zeros(2)).ok
    assert not compare_tensor(spec, case, "indices", np.array([1, 2]), np.array([1, 3]), "int64", np.zeros(2)).ok


@pytest.mark.parametrize("name", list(DTYPES))
def test_dtype_rounding_is_idempotent_and_within_half_an_ulp(name):
    dt = DTYPES[name]
    x = np.random.default_rng(1).standard_normal(1000) * 10
    r = dt.round(x)
    np.testing.assert_array_equal(dt.round(r), r)
    assert np.all(np.abs(r - x) <= 0.5 * dt.ulp(x) * (1 + 1e-12))


def test_an_analysed_bound_past_the_float64_range_still_bounds():
    """GLU's float64 gradient bound near 1e308 is about 20 ulps, 9e307 in units of u: doubled for
    the reference's own error it overflows. It is carried as the largest float64 (a bound at most
    the analysed one, here 33 ulps), not dropped to the final roundings (1.6 ulps): a 4-ulp error
    passes, a 25 % error does not."""
    from conformance.spec import all_specs

    spec = next(s for s in all_specs().values() if s.name == "GLU")
    x = np.array([3.844307604522022e307, 0.9470809631292422])
    case = Case(op=spec.id, dtype="float64", params={"dim": -1}, inputs={"input": x}, differentiable=("input",),
                cotangents={"output": np.array([-0.5817083])})
    ref = spec.evaluate(case, case.cotangents)
    torch_like = ref.grads["input"].copy()
    torch_like[1] += 4 * np.spacing(torch_like[1])
    got = Result(outputs=ref.outputs, grads={"input": torch_like})
    assert all(c.ok for c in compare_results(spec, case, ref, got))
    wrong = Result(outputs=ref.outputs, grads={"input": torch_like * 1.25})
    assert not all(c.ok for c in compare_results(spec, case, ref, wrong))
