"""torch.nn.utils.rnn.pack_padded_sequence and pad_packed_sequence: functions whose arguments and
results are PackedSequences, assembled from named arrays and taken apart into named arrays.

pack_padded_sequence sorts the batch by decreasing length. The documentation does not say how
equal lengths are ordered, so any order that sorts the lengths is accepted: ``sorted_indices``
must be such an order, ``unsorted_indices`` its inverse, and ``data`` and the input gradient must
follow the order the backend chose. Everything else is a copy and must match exactly. A third
declaration (``pad_packed_sequence[roundtrip]``) packs and pads again in one call tree.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case, Result
from conformance import strategies as S
from conformance.compare import Comparison, compare_tensor
from conformance.spec import (
    LayerSpec,
    Regime,
    Tolerance,
    TorchMapping,
    arg,
    call_node,
    declare,
    packed,
    result_reference,
)
from reference import rnn_utils as ref

PACK = "torch.nn.utils.rnn.pack_padded_sequence"
PAD = "torch.nn.utils.rnn.pad_packed_sequence"
COPY = Tolerance(magnitude="ref", exact="always")  # no arithmetic anywhere: bit-exact
PADDING_VALUES = (0.0, -1.0, 5.5, float("inf"), float("nan"))
LENGTH_KINDS = ("random", "all equal", "all full", "all short", "increasing")


def _lengths(d: S.Drawer, steps: int, batch: int, enforce_sorted: bool) -> np.ndarray:
    """Lengths in [1, steps]; ``all equal`` gives ties, ``all full`` lengths of T, ``all short``
    lengths below T (when T > 1), ``increasing`` a batch out of order (when T, B > 1; sorted
    anyway when ``enforce_sorted``)."""
    kind = d.choice(LENGTH_KINDS, "lengths kind")
    rng = np.random.default_rng(d.integer(0, 2**32 - 1, "lengths.seed"))
    if kind == "all full":
        lengths = np.full(batch, steps)
    elif kind == "all equal":
        lengths = np.full(batch, int(rng.integers(1, steps + 1)))
    elif kind == "all short":
        lengths = rng.integers(1, max(steps - 1, 1) + 1, size=batch)
    elif kind == "increasing":
        lengths = np.sort(rng.integers(1, steps + 1, size=batch))
        lengths[0], lengths[-1] = min(lengths[0], steps - 1) if steps > 1 else 1, steps
    else:
        lengths = rng.integers(1, steps + 1, size=batch)
    return (np.sort(lengths)[::-1] if enforce_sorted else lengths).astype(np.int64)


def _padded(d: S.Drawer, dtype: str, tier: str, steps: int, batch: int, batch_first: bool,
            label: str = "input") -> tuple[np.ndarray, Any]:
    features = tuple(S.sizes_within(d, d.integer(0, 2, "feature ndim"), 16, hi=4, label="features"))
    shape = (batch, steps, *features) if batch_first else (steps, batch, *features)
    layout = S.layouts(d, len(shape), f"layout.{label}")
    return S.values(d, shape, dtype, tier, label, layout=layout, int_limit=8), layout


@st.composite
def _pack_case(draw: Any, dtype: str, invalid: str = "") -> Case:
    d = S.Drawer(draw)
    tier = S.tier(d)
    unsorted = invalid == "unsorted with enforce_sorted"  # needs two sequences of different lengths
    steps, batch = d.integer(2 if unsorted else 1, 8, "T"), d.integer(2 if unsorted else 1, 6, "B")
    batch_first = d.flag("batch_first")
    enforce_sorted = d.choice((True, False), "enforce_sorted")
    lengths = _lengths(d, steps, batch, enforce_sorted)
    x, layout = _padded(d, dtype, tier, steps, batch, batch_first)
    if unsorted:
        enforce_sorted, lengths = True, np.sort(lengths)
        lengths[-1] = max(lengths[-1], lengths[0] + 1) if lengths[0] < steps else steps
        lengths[0] = min(lengths[0], steps - 1)
    elif invalid == "length 0":
        lengths = lengths.copy()
        lengths[-1] = 0
    elif invalid == "length > T":
        lengths = lengths.copy()
        lengths[0] = steps + 1
    elif invalid == "lengths count":
        lengths = np.concatenate([lengths, lengths[-1:]])
    as_tensor = d.choice(("list", "tensor"), "lengths as")
    return Case(op="pack_padded_sequence", dtype=dtype,
                params={"batch_first": batch_first, "enforce_sorted": enforce_sorted, "lengths_as": as_tensor},
                inputs={"input": x, "lengths": lengths},
                types={"lengths": "int_list" if as_tensor == "list" else "int64"},
                differentiable=("input",), layouts={"input": layout}, tier=tier, cotangent_seed=S.seed(d),
                invalid=bool(invalid), note=invalid)


PACK_INVALID = ("unsorted with enforce_sorted", "length 0", "length > T", "lengths count")


def lengths_beyond_steps(case: Case) -> bool:
    """Predicate of a torch discrepancy: a length exceeds the padded input's time steps."""
    x, lengths = case.inputs["input"], case.inputs["lengths"]
    steps = x.shape[1] if case.params["batch_first"] else x.shape[0]
    return bool(lengths.size and lengths.max() > steps)


def _pack_order(case: Case) -> np.ndarray:
    p = case.params
    x, lengths = case.inputs["input"], case.inputs["lengths"]
    steps, batch = (x.shape[1], x.shape[0]) if p["batch_first"] else (x.shape[0], x.shape[1])
    ref.check_lengths(lengths, steps, batch, p["enforce_sorted"])
    return np.arange(batch, dtype=np.int64) if p["enforce_sorted"] else ref.sort_order(lengths)


def _pack_reference(case: Case, backward: bool, order: np.ndarray | None = None) -> Result:
    p = case.params
    x, lengths = case.inputs["input"], case.inputs["lengths"]
    order = _pack_order(case) if order is None else order
    result = Result(outputs={"data": ref.pack(x, lengths, order, p["batch_first"]),
                             "batch_sizes": ref.batch_sizes(lengths[order])})
    if not p["enforce_sorted"]:
        result.outputs.update(sorted_indices=order, unsorted_indices=np.argsort(order).astype(np.int64))
    if backward:
        g = S.output_gradient(case, "data", result.outputs["data"])
        result.grads["input"] = ref.pack_vjp(g, lengths, order, x.shape, p["batch_first"])
    return result


def _backend_order(case: Case, got: Result) -> np.ndarray | None:
    """The backend's sorted_indices when they sort the lengths in decreasing order, else None."""
    order = got.outputs.get("sorted_indices")
    if order is None or not ref.is_decreasing_order(case.inputs["lengths"], order):
        return None
    return np.asarray(order, dtype=np.int64)


def _tie_comparator(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
    """Ties in length may be ordered either way: judge against the backend's own valid order."""
    order = _backend_order(case, got)
    expected = result.tensors()[name]
    if name == "sorted_indices":
        value = got.outputs.get(name)
        if order is not None:
            expected = order  # any decreasing order is accepted
        return compare_tensor(spec, case, name, expected, value, got.dtypes.get(name), np.zeros(np.shape(expected)))
    if order is not None:
        expected = _pack_reference(case, "input" in result.grads, order).tensors()[name]
    return compare_tensor(spec, case, name, expected, got.tensors().get(name), got.dtypes.get(name),
                          np.abs(expected).astype(np.float64))


def _pack_args(case: Case) -> list[Any]:
    return ["input", arg("lengths", device="cpu")]


declare(LayerSpec(
    name="pack_padded_sequence", family="utility", catalogue=PACK,
    cases=lambda dtype: _pack_case(dtype),
    reference=result_reference(_pack_reference),
    torch=TorchMapping(PACK, kind="function", args=_pack_args,
                       kwargs=lambda c: {"batch_first": c.params["batch_first"],
                                         "enforce_sorted": c.params["enforce_sorted"]},
                       outputs=packed(data="data", batch_sizes="batch_sizes", sorted_indices="sorted_indices",
                                      unsorted_indices="unsorted_indices")),
    tolerance=COPY,
    comparators={name: _tie_comparator for name in ("data", "sorted_indices", "unsorted_indices", "grad.input")},
    invalid_cases=lambda dtype: st.sampled_from(PACK_INVALID).flatmap(lambda k: _pack_case(dtype, k)),
    regimes=(
        Regime("unsorted batch",
               lambda c: not c.params["enforce_sorted"] and bool(np.any(np.diff(c.inputs["lengths"]) > 0)),
               {"enforce_sorted": False, "lengths kind": "increasing", "B": 4, "T": 6}),
        Regime("tied lengths", lambda c: len(set(c.inputs["lengths"].tolist())) < len(c.inputs["lengths"]),
               {"enforce_sorted": False, "lengths kind": "all equal", "B": 3},
               "any order of equal lengths is accepted"),
        Regime("batch_first", lambda c: c.params["batch_first"], {"batch_first": True}),
        Regime("lengths as a tensor", lambda c: c.params["lengths_as"] == "tensor", {"lengths as": "tensor"}),
        Regime("padding never used", lambda c: bool(np.all(c.inputs["lengths"] == (
            c.inputs["input"].shape[1] if c.params["batch_first"] else c.inputs["input"].shape[0]))),
               {"lengths kind": "all full"}),
    ),
    notes=("Lengths as a Python list or a CPU int64 tensor. enforce_sorted=True requires decreasing lengths and "
           "leaves sorted_indices/unsorted_indices None; otherwise the batch is sorted by decreasing length, any "
           "order among equal lengths accepted (data and the gradient must follow the backend's order). Exact."),
))


# -- pad_packed_sequence ------------------------------------------------------------------------------

@st.composite
def _pad_case(draw: Any, dtype: str, invalid: bool = False) -> Case:
    """A consistent PackedSequence (data, batch_sizes and, for an unsorted batch, the permutation
    and its inverse), batch_first, padding_value and total_length."""
    d = S.Drawer(draw)
    tier = S.tier(d)
    steps, batch = d.integer(1, 8, "T"), d.integer(1, 6, "B")
    lengths = _lengths(d, steps, batch, enforce_sorted=False)
    permuted = d.choice(("sorted batch", "permutation"), "indices")
    rng = np.random.default_rng(d.integer(0, 2**32 - 1, "permutation.seed"))
    order = ref.sort_order(lengths) if permuted == "permutation" else np.arange(batch)
    if permuted == "permutation" and batch > 1:
        lengths = lengths[rng.permutation(batch)]
        order = ref.sort_order(lengths)
    else:
        lengths = np.sort(lengths)[::-1].copy()
    sizes = ref.batch_sizes(lengths[order])
    features = tuple(S.sizes_within(d, d.integer(0, 2, "feature ndim"), 16, hi=4, label="features"))
    layout = S.layouts(d, 1 + len(features), "layout.data")
    data = S.values(d, (int(lengths.sum()), *features), dtype, tier, "data", layout=layout, int_limit=8)
    longest = int(lengths.max())
    total = d.choice(("none", "longer", "exact"), "total_length")
    total_length = {"none": None, "longer": longest + d.integer(1, 3, "extra steps"), "exact": longest}[total]
    if invalid:
        total_length = longest - d.integer(1, longest, "missing steps")
    inputs = {"data": data, "batch_sizes": sizes}
    if permuted == "permutation":
        inputs.update(sorted_indices=order, unsorted_indices=np.argsort(order).astype(np.int64))
    params = {"batch_first": d.flag("batch_first"), "padding_value": d.choice(PADDING_VALUES, "padding_value"),
              "total_length": total_length}
    return Case(op="pad_packed_sequence", dtype=dtype, params=params, inputs=inputs, differentiable=("data",),
                layouts={"data": layout}, tier=tier, cotangent_seed=S.seed(d), invalid=invalid,
                note="total_length shorter than the longest sequence" if invalid else "")


def _pad_reference(case: Case, backward: bool) -> Result:
    p, inputs = case.params, case.inputs
    unsorted = inputs.get("unsorted_indices")
    padded, lengths = ref.pad(inputs["data"], inputs["batch_sizes"], unsorted, p["batch_first"],
                              p["padding_value"], p["total_length"])
    result = Result(outputs={"output": padded, "lengths": lengths})
    if backward:
        result.grads["data"] = ref.pad_vjp(S.output_gradient(case, "output", padded), inputs["batch_sizes"], unsorted,
                                           p["batch_first"])
    return result


def _packed_input(case: Case) -> dict[str, Any]:
    fields = {"data": arg("data"), "batch_sizes": arg("batch_sizes", device="cpu")}
    if "sorted_indices" in case.inputs:
        fields.update(sorted_indices=arg("sorted_indices"), unsorted_indices=arg("unsorted_indices"))
    return packed(**fields)


_PAD_REGIMES = (
    Regime("unsorted batch", lambda c: "sorted_indices" in c.inputs, {"indices": "permutation", "B": 4}),
    Regime("total_length beyond the longest", lambda c: (c.params["total_length"] or 0) > len(c.inputs["batch_sizes"]),
           {"total_length": "longer"}),
    Regime("batch_first", lambda c: c.params["batch_first"], {"batch_first": True}),
    Regime("non-finite padding_value", lambda c: not np.isfinite(c.params["padding_value"]),
           {"padding_value": float("nan"), "lengths kind": "random", "B": 3, "T": 5}),
)

declare(LayerSpec(
    name="pad_packed_sequence", family="utility", catalogue=PAD,
    cases=lambda dtype: _pad_case(dtype),
    reference=result_reference(_pad_reference),
    torch=TorchMapping(PAD, kind="function", args=lambda c: [_packed_input(c)],
                       kwargs=lambda c: dict(c.params), outputs=("output", "lengths")),
    tolerance=COPY,
    invalid_cases=lambda dtype: _pad_case(dtype, invalid=True),
    regimes=_PAD_REGIMES,
    notes=("Pads each sequence after its length with padding_value (any float, ±inf and NaN too) up to "
           "total_length (>= the longest; shorter is invalid) or the longest length, in the original batch "
           "order (unsorted_indices); lengths are returned as an int64 CPU tensor. Exact."),
))


# -- the round trip --------------------------------------------------------------------------------------

@st.composite
def _roundtrip_case(draw: Any, dtype: str) -> Case:
    d = S.Drawer(draw)
    tier = S.tier(d)
    steps, batch = d.integer(1, 8, "T"), d.integer(1, 6, "B")
    batch_first = d.flag("batch_first")
    enforce_sorted = d.choice((True, False), "enforce_sorted")
    lengths = _lengths(d, steps, batch, enforce_sorted)
    x, layout = _padded(d, dtype, tier, steps, batch, batch_first)
    longest = int(lengths.max())
    total = d.choice(("none", "longer", "exact"), "total_length")
    total_length = {"none": None, "longer": longest + d.integer(1, 3, "extra steps"), "exact": longest}[total]
    params = {"batch_first": batch_first, "enforce_sorted": enforce_sorted,
              "padding_value": d.choice(PADDING_VALUES, "padding_value"), "total_length": total_length}
    return Case(op="pad_packed_sequence", dtype=dtype, params=params, inputs={"input": x, "lengths": lengths},
                types={"lengths": "int_list"}, differentiable=("input",), layouts={"input": layout}, tier=tier,
                cotangent_seed=S.seed(d))


def _roundtrip_reference(case: Case, backward: bool) -> Result:
    """pad(pack(x)): x with every step past a sequence's length replaced by padding_value, over
    total_length (or the longest length) steps; the gradient passes the valid steps through."""
    p = case.params
    x, lengths = case.inputs["input"], case.inputs["lengths"]
    steps, batch = (x.shape[1], x.shape[0]) if p["batch_first"] else (x.shape[0], x.shape[1])
    ref.check_lengths(lengths, steps, batch, p["enforce_sorted"])
    order = ref.sort_order(lengths)
    data = ref.pack(x, lengths, order, p["batch_first"])
    sizes = ref.batch_sizes(lengths[order])
    padded, out_lengths = ref.pad(data, sizes, np.argsort(order), p["batch_first"], p["padding_value"],
                                  p["total_length"])
    result = Result(outputs={"output": padded, "lengths": out_lengths})
    if backward:
        g_data = ref.pad_vjp(S.output_gradient(case, "output", padded), sizes, np.argsort(order), p["batch_first"])
        result.grads["input"] = ref.pack_vjp(g_data, lengths, order, x.shape, p["batch_first"])
    return result


declare(LayerSpec(
    name="pad_packed_sequence", variant="roundtrip", family="utility", catalogue=PAD,
    cases=lambda dtype: _roundtrip_case(dtype),
    reference=result_reference(_roundtrip_reference),
    torch=TorchMapping(PAD, kind="function",
                       args=lambda c: [call_node(PACK, "input", {"input": "lengths"},
                                                 batch_first=c.params["batch_first"],
                                                 enforce_sorted=c.params["enforce_sorted"])],
                       kwargs=lambda c: {k: c.params[k] for k in ("batch_first", "padding_value", "total_length")},
                       outputs=("output", "lengths")),
    tolerance=COPY,
    regimes=(
        Regime("unsorted batch", lambda c: bool(np.any(np.diff(c.inputs["lengths"]) > 0)),
               {"enforce_sorted": False, "lengths kind": "increasing", "B": 4, "T": 6}),
        Regime("shorter than the input", lambda c: (c.params["total_length"] or c.inputs["lengths"].max())
               < (c.inputs["input"].shape[1] if c.params["batch_first"] else c.inputs["input"].shape[0]),
               {"lengths kind": "all short", "T": 8, "total_length": "exact"}, "steps past every length are cut"),
    ),
    notes="pad_packed_sequence(pack_padded_sequence(x, lengths, ...), ...): one call tree, two functions. Exact.",
))
