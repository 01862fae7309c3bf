"""The Hypothesis building blocks themselves (``conformance.strategies``), in the manner of
array-api-tests' tests of its helpers: a pinned draw lands where it claims, sizes stay within their
bounds, strides are valid for the shapes they describe, layouts are what they say, values are
representable in their dtype and exact where they claim to be."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from backends.base import CONTIGUOUS, Layout
from backends.torch_call import materialise
from conformance import strategies as S
from conformance.dtypes import DTYPES
from conformance.spec import _PINS

DTYPES_ = tuple(DTYPES)


def _drawn(build, pins=None):
    """A strategy running ``build(drawer)`` under ``pins`` (as a regime's search does)."""

    @st.composite
    def strategy(draw):
        token = _PINS.set(pins or {})
        try:
            return build(S.Drawer(draw))
        finally:
            _PINS.reset(token)

    return strategy()


# -- the Drawer and its pins -----------------------------------------------------------------------

@settings(max_examples=30)
@given(data=st.data(), lo=st.integers(-5, 5), span=st.integers(0, 10), pin=st.integers(-50, 50))
def test_an_integer_pin_is_clamped_into_the_draws_range(data, lo, span, pin):
    value = data.draw(_drawn(lambda d: d.integer(lo, lo + span, "n"), {"n": pin}))
    assert value == min(max(pin, lo), lo + span)


@settings(max_examples=20)
@given(data=st.data())
def test_a_choice_pin_is_taken_only_when_it_is_an_option(data):
    options = (1.0, 2.0, float("nan"))
    assert data.draw(_drawn(lambda d: d.choice(options, "c"), {"c": 2.0})) == 2.0
    assert math.isnan(data.draw(_drawn(lambda d: d.choice(options, "c"), {"c": float("nan")})))
    assert data.draw(_drawn(lambda d: d.choice(options, "c"), {"c": 7.0})) in options  # ignored: drawn
    assert data.draw(_drawn(lambda d: d.choice((1, 2), "c"), {"c": 1.0})) in (1, 2)  # another type: drawn


@settings(max_examples=20)
@given(data=st.data())
def test_glob_pins_reach_every_matching_label(data):
    sizes = data.draw(_drawn(lambda d: S.sizes_within(d, 3, 4096, hi=9, label="shape"), {"shape[*]": 5}))
    assert sizes == [5, 5, 5]
    assert data.draw(_drawn(lambda d: d.flag("inplace"), {"in*": True})) is True
    assert S.pin_matches("shape[*]", "shape[12]") and not S.pin_matches("shape[*]", "shapes[1]")


# -- sizes and per-dimension values --------------------------------------------------------------------

@settings(max_examples=60)
@given(data=st.data(), count=st.integers(0, 5), budget=st.integers(1, 5000), lo=st.integers(0, 3),
       hi=st.integers(3, 20), fixed=st.integers(1, 8))
def test_sizes_stay_within_bounds_and_budget(data, count, budget, lo, hi, fixed):
    sizes = data.draw(_drawn(lambda d: S.sizes_within(d, count, budget, lo=lo, hi=hi, fixed_product=fixed)))
    assert len(sizes) == count and all(lo <= s <= hi for s in sizes)
    if fixed * lo ** count <= budget:  # the budget can be met at all
        assert fixed * math.prod(sizes) <= max(budget, fixed * lo ** count)


@settings(max_examples=30)
@given(data=st.data(), ndim=st.integers(1, 3))
def test_per_dim_tuples_and_their_spelling(data, ndim):
    values = data.draw(_drawn(lambda d: S.per_dim(d, ndim, 1, 4, "k")))
    assert len(values) == ndim and all(1 <= v <= 4 for v in values)
    spelled = data.draw(_drawn(lambda d: S.as_param(values, d, "k")))
    assert (spelled,) * ndim == values if isinstance(spelled, int) else tuple(spelled) == values


# -- layouts and strides ------------------------------------------------------------------------------

@settings(max_examples=60)
@given(data=st.data(), shape=st.lists(st.integers(1, 4), min_size=0, max_size=5).map(tuple),
       expanded=st.booleans())
def test_layouts_are_what_they_say_and_their_strides_valid(data, shape, expanded):
    layout = data.draw(_drawn(lambda d: S.layouts(d, len(shape), expanded=expanded, shape=shape)))
    strides = layout.strides(shape)
    assert len(strides) == len(shape) and all(s >= 0 for s in strides)
    if layout.kind == "channels_last":
        assert len(shape) in (4, 5) and layout.perm == (0, *range(2, len(shape)), 1)
    if layout.kind == "permuted":
        assert sorted(layout.perm) == list(range(len(shape)))
    if layout.kind == "strided":
        assert all(k >= 1 for k in layout.step) and any(k > 1 for k in layout.step)
    if layout.kind != "expanded":  # distinct elements live at distinct offsets
        offsets = {sum(i * s for i, s in zip(index, strides)) for index in np.ndindex(*shape)}
        assert len(offsets) == math.prod(shape)
    else:
        assert expanded and all(strides[d] == 0 for d in layout.dims)


@settings(max_examples=40)
@given(data=st.data(), shape=st.lists(st.integers(1, 3), min_size=1, max_size=5).map(tuple))
def test_torch_strides_are_the_strides_torch_gets(data, shape):
    layout = data.draw(_drawn(lambda d: S.layouts(d, len(shape), expanded=True, shape=shape)))
    values = np.arange(math.prod(shape), dtype=np.float64).reshape(shape)
    if layout.kind == "expanded":
        values = np.broadcast_to(values[tuple(slice(0, 1) if i in layout.dims else slice(None)
                                              for i in range(len(shape)))], shape).copy()
    t = materialise(values, layout.describe(), torch.float64, "cpu")
    assert tuple(t.shape) == shape and tuple(t.stride()) == S.torch_strides(shape, layout)
    np.testing.assert_array_equal(t.numpy(), values)  # the values never change with the layout
    strides = tuple(t.stride())
    assert S.is_torch_contiguous(shape, strides) == t.is_contiguous()
    dense = torch._prims_common.is_non_overlapping_and_dense_or_false(t)
    assert S.is_non_overlapping_and_dense(shape, strides) == dense
    if len(shape) in (4, 5):
        fmt = torch.channels_last if len(shape) == 4 else torch.channels_last_3d
        assert S.is_channels_last_contiguous(shape, strides) == t.is_contiguous(memory_format=fmt)


def test_channels_last_like_agrees_with_torch():
    for shape in [(2, 3, 4, 5), (1, 3, 1, 1), (2, 1, 3, 3), (2, 3, 4, 5, 6)]:
        for layout in (CONTIGUOUS, Layout("channels_last", perm=(0, *range(2, len(shape)), 1))):
            t = materialise(np.zeros(shape), layout.describe(), torch.float32, "cpu")
            fmt = torch.channels_last if len(shape) == 4 else torch.channels_last_3d
            expected = t.is_contiguous(memory_format=fmt) and not t.is_contiguous()
            got = S.channels_last_like(shape, S.torch_strides(shape, layout))
            assert got == expected or (got and t.is_contiguous(memory_format=fmt)), (shape, layout)


# -- values -------------------------------------------------------------------------------------------------

@settings(max_examples=60)
@given(data=st.data(), dtype=st.sampled_from(DTYPES_), tier=st.sampled_from(S.TIERS),
       shape=st.lists(st.integers(1, 4), max_size=3).map(tuple), limit=st.integers(1, 20))
def test_values_are_representable_and_exact_values_integers(data, dtype, tier, shape, limit):
    arr = data.draw(_drawn(lambda d: S.values(d, shape, dtype, tier, "x", int_limit=limit,
                                              specials=(0.0, 1.0))))
    assert arr.shape == shape and arr.dtype == np.float64
    finite = arr[np.isfinite(arr)]
    np.testing.assert_array_equal(DTYPES[dtype].round(finite), finite)
    if tier == "exact":
        assert np.all(arr == np.round(arr)) and np.all(np.abs(arr) <= limit)


@settings(max_examples=40)
@given(data=st.data(), shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple))
def test_expanded_values_are_constant_along_the_expanded_dims(data, shape):
    layout = data.draw(_drawn(lambda d: S.layouts(d, len(shape), expanded=True), {"layout": "expanded"}))
    arr = data.draw(_drawn(lambda d: S.values(d, shape, "float32", "float", "x", layout=layout)))
    for dim in layout.dims:
        assert np.all(arr == np.take(arr, [0], axis=dim)) or np.isnan(arr).any()


@pytest.mark.parametrize("dtype", DTYPES_)
@pytest.mark.parametrize("terms, factors", [(1, 1), (7, 2), (300, 2), (50, 3)])
def test_exact_int_limit_keeps_every_partial_sum_exact(dtype, terms, factors):
    m = S.exact_int_limit(dtype, terms, factors)
    assert m >= 1 and (terms * m ** factors <= DTYPES[dtype].exact_integer_limit or m == 1)


@settings(max_examples=30)
@given(seed=st.integers(0, 2**32 - 1), planes=st.integers(1, 4), plane=st.integers(1, 40),
       dtype=st.sampled_from(DTYPES_), tier=st.sampled_from(S.TIERS), negative=st.booleans())
def test_distinct_values_are_distinct_and_representable(seed, planes, plane, dtype, tier, negative):
    v = S.distinct_values(np.random.default_rng(seed), planes, plane, dtype, tier, negative)
    assert v.shape == (planes, plane)
    assert all(len(set(row.tolist())) == plane for row in v)
    np.testing.assert_array_equal(DTYPES[dtype].round(v), v)
    if negative:
        assert np.all(v < 0)


@settings(max_examples=20)
@given(seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from(DTYPES_))
def test_uniform_samples_lie_in_the_unit_interval_on_the_dtype_grid(seed, dtype):
    u = S.uniform_samples(np.random.default_rng(seed), (50,), dtype)
    assert np.all((u >= 0) & (u < 1))
    np.testing.assert_array_equal(DTYPES[dtype].round(u), u)


@settings(max_examples=20)
@given(seed=st.integers(0, 2**32 - 1), tier=st.sampled_from(S.TIERS), dtype=st.sampled_from(DTYPES_))
def test_cotangents_depend_on_the_seed_and_the_output_name_only(seed, tier, dtype):
    from backends.base import Case

    case = Case(op="ReLU", dtype=dtype, params={}, inputs={}, tier=tier, cotangent_seed=seed)
    a, b = S.output_cotangent(case, "output", (3, 2)), S.output_cotangent(case, "output", (3, 2))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(DTYPES[dtype].round(a), a)
    if tier == "exact":
        assert np.all(np.abs(a) <= 2) and np.all(a == np.round(a))
