"""Tolerances, comparators, value rounding and known-entry predicates of the copies family.

- A copy's output is compared bit for bit in every tier, the sign of zero included (``COPY``).
- Its gradient is a scatter-add: each input element sums the cotangents of the n output positions
  that copy it. ``scatter_tolerance`` bounds it by ``reference.shape.scatter_error``, (n - 1)·u·Σ|g|
  per element (an element copied once is exact), and is bit-exact in the exact tier wherever
  Σ|g| <= 2^p; K (the reduction length) is the largest n.
- ConstantPad's value is the dtype's value of the Python float: rounded to nearest, ties to even,
  directly from float64 (``dtype_value``); a finite value beyond the dtype's largest finite one is
  refused, as torch refuses it.
- Circular padding with a crop on one side and a pad on the other has two readings (``reference.
  padding``): the comparator ``circular_readings`` accepts torch's (crop, then wrap around what
  remains) besides the reference's, output and gradient alike. The derivative modes (J·t, second
  order) judge their own tensors under either reading too: ``circular_readings_of`` gives torch's
  reading as a declaration of its own (its reference, pullback and scatter bound), which a mode tries
  where the documented reading fails (``LayerSpec.readings``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields, replace
from typing import Any

import numpy as np

from backends.base import Case, Result
from conformance.compare import Comparison, compare_tensor
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec, Tolerance
from conformance.strategies import copies as C
from conformance.tolerance import magnitudes
from reference import functional as RF
from reference import padding as pad_ref
from reference.shape import scatter_error

# (registered function name, positional arguments, keyword arguments) of a case's reference call
Call = Callable[[Case], "tuple[str, tuple[Any, ...], dict[str, Any]]"]
COPY = Tolerance(magnitude="ref", exact="always")  # no arithmetic: bit for bit, the sign of zero included


# -- the gradient of a copy: a scatter-add -------------------------------------------------------------

def _pull(call: Call, case: Case, cotangent: np.ndarray) -> np.ndarray:
    name, args, kwargs = call(case)
    return RF.vjp(name, *args, cotangent=cotangent, **kwargs)["input"]


def copies_of(call: Call, case: Case) -> np.ndarray:
    """How many output positions copy each input element: the VJP of an all-ones cotangent."""
    name, args, kwargs = call(case)
    out = getattr(RF, name)(*args, **kwargs)
    return _pull(call, case, np.ones(np.shape(out)))


def scatter_magnitude(copies: np.ndarray, total: np.ndarray, k: int) -> np.ndarray:
    """absref of a scatter-add for the engine's c·√K·u·absref (c = 1): max(1, (n - 1)/√K)·Σ|g|
    where n >= 2, 0 where an element is copied at most once (``scatter_tolerance``)."""
    return np.where(copies > 1, np.maximum(total, scatter_error(copies, total) / math.sqrt(max(k, 1))), 0.0)


def _scatter_tolerance(copies: Callable[[Case], np.ndarray],
                       pull: Callable[[Case, np.ndarray], np.ndarray]) -> Tolerance:
    """``scatter_tolerance`` of a gather given by ``copies`` (each input element's number of copies)
    and ``pull`` (its scatter-add of a cotangent)."""

    def length(case: Case, tensor: str) -> int:
        return max(int(copies(case).max(initial=1)), 1)

    def magnitude(case: Case, result: Result) -> dict[str, np.ndarray]:
        n = copies(case)
        total = pull(case, np.abs(case.cotangents["output"]))
        return {"grad.input": scatter_magnitude(n, total, int(n.max(initial=1)))}

    return Tolerance(reduction=length, magnitude=magnitude, c=1.0, out_ulps=0.0, exact="bitwise")


def scatter_tolerance(call: Call) -> Tolerance:
    """The bound of a copy's gradient: ``scatter_error`` per element ((n - 1)·u·Σ|g|), written in
    the engine's terms as c·√K·u·absref with c = 1 and ``scatter_magnitude``, so that the exact
    tier's test absref <= 2^p implies Σ|g| <= 2^p: every partial sum exact."""
    return _scatter_tolerance(lambda case: copies_of(call, case), lambda case, g: _pull(call, case, g))


# -- ConstantPad's value -----------------------------------------------------------------------------

def _round_bits(value: float, precision: int, min_exponent: int) -> float:
    """``value`` rounded to ``precision`` significant bits, ties to even, with gradual underflow
    below 2^min_exponent (no overflow handling: callers refuse values beyond the format)."""
    if value == 0 or not math.isfinite(value):
        return value
    exponent = max(math.frexp(value)[1] - 1, min_exponent)
    quantum = 2.0 ** (exponent - precision + 1)
    return math.copysign(float(np.rint(abs(value) / quantum) * quantum), value)


def dtype_value(value: float, dtype: str) -> float:
    """The dtype's value of a Python float (correctly rounded from float64; -0.0, ±inf and NaN
    kept); ValueError for a finite value beyond the dtype's largest finite value (torch: "value
    cannot be converted to type ... without overflow")."""
    fmt = DTYPES[dtype]
    value = float(value)
    if math.isfinite(value) and abs(value) > fmt.max_value:
        raise ValueError(f"value {value} cannot be converted to {dtype} without overflow")
    return _round_bits(value, fmt.precision, fmt.min_exponent) if dtype != "float64" else value


def finite_value(case: Case) -> bool:
    """ConstantPad's value is finite and moderate, |value| <= 2^64 (a non-finite or huge one makes
    the output, not the gradient, non-finite or overflows a loss through it: finite differences
    are meaningless)."""
    return abs(case.params.get("value", 0.0)) <= 2.0**64


def through_float32(value: float, dtype: str) -> float:
    """The value rounded to float32 first, then to the dtype (torch's conversion of a Scalar)."""
    return dtype_value(float(np.float32(value)), dtype) if math.isfinite(value) else value


def value_double_rounded(case: Case) -> bool:
    """ConstantPad's value in float16/bfloat16 rounds differently through float32 than directly (a
    double-rounding trap), and the (non-empty) output has padding positions that show it."""
    value = case.params.get("value")
    if value is None or not math.isfinite(value) or case.dtype not in ("float16", "bfloat16"):
        return False
    if abs(value) > DTYPES[case.dtype].max_value:
        return False  # refused (an invalid case)
    if through_float32(value, case.dtype) == dtype_value(value, case.dtype):
        return False
    shape = case.inputs["input"].shape
    lead, sizes = shape[:len(shape) - C.pad_dims(case)], C.padded_sizes(case)
    return 0 not in lead and all(out > 0 for *_, out in sizes) and any(max(l, r) > 0 for _, l, r, _ in sizes)


# -- circular padding's two readings -----------------------------------------------------------------

def _under(spec: LayerSpec, case: Case, ref: Result, got: Result, tensor: str) -> Comparison:
    return compare_tensor(spec, case, tensor, ref.tensors()[tensor], got.tensors().get(tensor),
                          got.dtypes.get(tensor), magnitudes(spec, case, ref)[tensor])


def _crop_first(spec: LayerSpec, case: Case) -> tuple[Result, dict[str, np.ndarray]] | None:
    """The result of the crop-first reading of a circular case and its magnitudes (None where the
    reading is undefined or equal to the reference's)."""
    if not C.readings_differ(case):
        return None
    x, pad = case.inputs["input"], C.flat_padding(case)
    out = pad_ref.pad_circular_remainder(x, pad)
    result, absref = Result(outputs={"output": out}), {"output": np.abs(out)}
    if "output" in case.cotangents and case.differentiable:
        g = case.cotangents["output"]
        result.grads = {"input": pad_ref.pad_circular_remainder_vjp(g, x, pad)["input"]}
        n = pad_ref.pad_circular_remainder_vjp(np.ones_like(g), x, pad)["input"]
        total = pad_ref.pad_circular_remainder_vjp(np.abs(g), x, pad)["input"]
        absref["grad.input"] = scatter_magnitude(n, total, spec.tolerance_for("grad.input").reduction_length(
            case, "grad.input"))
    return result, absref


def circular_readings(spec: LayerSpec, case: Case, tensor: str, ref: Result, got: Result) -> Comparison:
    """Judge ``tensor`` under the reference's reading of circular padding or, where one side crops
    and the other pads, under torch's (crop first, then wrap around the remainder): the output
    passes under either; the gradient is judged under the reading the backend's output follows
    (either, where the output agrees with both)."""
    def under(result: Result, absref: Mapping[str, np.ndarray], name: str) -> Comparison:
        return compare_tensor(spec, case, name, result.tensors()[name], got.tensors().get(name),
                              got.dtypes.get(name), absref[name])

    documented = under(ref, magnitudes(spec, case, ref), tensor)
    alternative = None if documented.ok and tensor == "output" else _crop_first(spec, case)
    if alternative is None:
        return documented
    # (an output both readings give, e.g. of equal values, does not tell them apart: its gradient
    # passes under either)
    if tensor != "output" and not under(*alternative, "output").ok:
        return documented
    other = under(*alternative, tensor)
    return other if other.ok or tensor != "output" else documented


def _remainder_pull(case: Case, cotangent: np.ndarray) -> np.ndarray:
    return pad_ref.pad_circular_remainder_vjp(cotangent, case.inputs["input"], C.flat_padding(case))["input"]


def _remainder_copies(case: Case) -> np.ndarray:
    shape = np.shape(pad_ref.pad_circular_remainder(case.inputs["input"], C.flat_padding(case)))
    return _remainder_pull(case, np.ones(shape))


def crop_first_reference(case: Case) -> tuple[Result, Callable[[Mapping[str, Any]], dict[str, Any]]]:
    """The reference of torch's reading of circular padding (crop first, then wrap around the
    remainder: ``reference.padding.pad_circular_remainder``) and its pullback, the scatter-add."""
    out = pad_ref.pad_circular_remainder(case.inputs["input"], C.flat_padding(case))

    def pullback(cotangents: Mapping[str, Any]) -> dict[str, Any]:
        return {"input": _remainder_pull(case, np.asarray(cotangents["output"], dtype=np.float64))}

    return Result(outputs={"output": out}), pullback


CROP_FIRST_GRAD = _scatter_tolerance(_remainder_copies, _remainder_pull)


def circular_readings_of(spec: LayerSpec, case: Case) -> Sequence[LayerSpec]:
    """The other reading of a circular case where the two differ (``C.readings_differ``): the
    declaration with torch's crop-first reference, its pullback and its own scatter bound, and no
    comparator (it is one reading, judged as such). None elsewhere (an empty sequence)."""
    if not C.readings_differ(case):
        return ()
    changes: dict[str, Any] = {"reference": crop_first_reference, "comparators": {},
                               "tolerance": {"output": COPY, "grad.input": CROP_FIRST_GRAD}}
    if "readings" in {f.name for f in fields(spec)}:
        changes["readings"] = None
    return (replace(spec, **changes),)


# -- known-entry predicates ---------------------------------------------------------------------------

def circular_remainder_overrun(case: Case) -> bool:
    """A circular case that pads one side of a dim by more than the crop of the other side leaves
    (``strategies.copies.remainder_overrun``): torch's kernel copies the padding from inside its
    own output, past what it has written (or, cropping past the dim, slices of different sizes)."""
    return C.remainder_overrun(case)


def empty_output_accepted(case: Case) -> bool:
    """An invalid reflect/replicate case torch's 2-d and 3-d kernels accept: some padded dim
    cropped to exactly 0 while another keeps an element (their size check asks for one padded dim
    of at least one element, not every)."""
    outs = [out for *_, out in C.padded_sizes(case)]
    return len(outs) > 1 and min(outs) == 0 < max(outs)


def padding_call(case: Case) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """``F.pad`` as a padding module calls it: the flat amounts, the mode and, for the constant
    modes, the value in the dtype (``dtype_value``; ZeroPad: +0.0)."""
    mode = C.mode_of(case)
    value = dtype_value(case.params.get("value", 0.0), case.dtype) if mode == "constant" else None
    return "pad", (case.inputs["input"], C.flat_padding(case)), {"mode": mode, "value": value}


SHAPE_CALLS: Mapping[str, Callable[[Case], tuple[str, tuple[Any, ...], dict[str, Any]]]] = {
    "flatten": lambda c: ("flatten", (c.inputs["input"], c.params.get("start_dim", 1), c.params.get("end_dim", -1)),
                          {}),
    "unflatten": lambda c: ("unflatten", (c.inputs["input"], c.params["dim"], c.params["unflattened_size"]), {}),
    "channel_shuffle": lambda c: ("channel_shuffle", (c.inputs["input"], c.params["groups"]), {}),
}


def reflection_empty_batch_negative_size(case: Case) -> bool:
    """An invalid ReflectionPad2d case with an empty batch cropping a padded dim below 0 while the
    other keeps an element: torch returns a tensor with a negative size."""
    outs = [out for *_, out in C.padded_sizes(case)]
    return len(outs) == 2 and min(outs) < 0 < max(outs) and C.is_batched(case) and case.inputs["input"].shape[0] == 0


def no_channels(case: Case) -> bool:
    """An (N, 0, *) input: ChannelShuffle's backward shuffles with C/groups = 0 groups."""
    return case.inputs["input"].ndim > 2 and case.inputs["input"].shape[1] == 0
