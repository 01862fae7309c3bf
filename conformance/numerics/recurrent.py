"""Tolerances, comparators and known-entry predicates of the recurrent family and the sequence
utilities.

- The recurrent layers are judged by the running error analysis of ``reference.recurrent_errors``
  (each output's and gradient's first-order bound, carried through the time steps and layers
  beside the values), as an ``analysed_tolerance``.
- The sequence utilities only move elements: every tensor is compared bit for bit, NaN where NaN,
  and the sign of every zero too (``exact_copy``).
- Ties in length may be sorted either way (torch does not promise a stable sort): a packed result
  is judged against the reference computed in the backend's own order when that order sorts the
  lengths (``tie_comparator``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from backends.base import Case, Result
from conformance.compare import Comparison, compare_tensor
from conformance.dtypes import DTYPES
from conformance.numerics import analysis_cache as AC
from conformance.spec import Comparator, LayerSpec, Pullback, Tolerance
from conformance.strategies import recurrent as SR
from conformance.tolerance import analysed_tolerance, magnitudes
from reference import recurrent as ref
from reference import rnn_utils
from reference.recurrent_errors import (
    cell_error_analysis,
    cell_tangent_error_bounds,
    error_analysis,
    tangent_error_bounds,
)

COPY = Tolerance(magnitude="ref", exact="always")  # no arithmetic anywhere: bit-exact
TOLERANCE_NOTE = ("first-order running error analysis through time and layers (reference.recurrent_errors): "
                  "bound u·E + u·|ref|, E carried step by step beside the values")


# -- the error analysis as a tolerance ----------------------------------------------------------------

_CACHE: list[tuple[Case, Result, dict[str, np.ndarray]]] = []


def cached(compute: Callable[[Case, Result], dict[str, np.ndarray]]) -> Callable[[Case, Result], dict[str, np.ndarray]]:
    """``compute(case, result)`` once per (case, result) pair: the tolerance engine asks for each
    tensor's magnitude separately, and the analysis covers them all at once. The cache holds the
    objects themselves (identity, never a stale id)."""

    def errors(case: Case, result: Result) -> dict[str, np.ndarray]:
        for c, r, value in _CACHE:
            if c is case and r is result:
                return value
        value = compute(case, result)
        _CACHE.insert(0, (case, result, value))
        del _CACHE[4:]
        return value

    return errors


def _in_format(case: Case, bounds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The bounds E (units of u) of the case's format. In float64 the reference carries the same
    kind of rounding errors as the backend, so the bound is doubled there."""
    factor = 2.0 if case.dtype == "float64" else 1.0
    return {name: factor * np.asarray(e, dtype=np.float64) for name, e in bounds.items()}


def _format(case: Case) -> tuple[float, float, float]:
    dt = DTYPES[case.dtype]
    return dt.unit_roundoff, dt.min_subnormal, dt.min_normal


@cached
def sequence_errors(case: Case, result: Result) -> dict[str, np.ndarray]:
    """First-order bounds of every output and gradient of RNN / LSTM / GRU, in the order of the
    packed batch the result was computed in (``result.meta["order"]``)."""
    order = result.meta.get("order")
    key = AC.case_key(case, None if order is None else tuple(np.asarray(order).tolist()))
    analysis = AC.forward(key, lambda: error_analysis(SR.config_of(case), SR.form_of(case, order),
                                                      SR.module_inputs(case), *_format(case)))
    return _in_format(case, analysis(case.cotangents if result.grads else None))


@cached
def cell_errors(case: Case, result: Result) -> dict[str, np.ndarray]:
    """First-order bounds of h', c' and every gradient of RNNCell / LSTMCell / GRUCell."""
    analysis = AC.forward(AC.case_key(case), lambda: cell_error_analysis(SR.check_cell(case), case.inputs,
                                                                        *_format(case)))
    return _in_format(case, analysis(case.cotangents if result.grads else None))


SEQUENCE_TOLERANCE = analysed_tolerance(sequence_errors)
CELL_TOLERANCE = analysed_tolerance(cell_errors)


# -- the vjp2 mode's second order (LayerSpec.second_order_error) ----------------------------------------

def _d2(case: Case, bounds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{d2.<input>: u·Ė}, absolute bounds per element."""
    u = DTYPES[case.dtype].unit_roundoff
    return {f"d2.{name}": u * np.asarray(e, dtype=np.float64) for name, e in bounds.items()}


def sequence_second_order_error(case: Case, v: Mapping[str, np.ndarray],
                                g: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The error of the derivative along v of every gradient of RNN / LSTM / GRU (the cotangents g
    fixed), as the format computes it by differentiating its rounded computation: the running
    error analysis carried along v (``reference.recurrent_errors.DualTracked``). It models what
    the generic terms do not: the gates' derivatives σ' = ŷ(1 - ŷ) and tanh' = 1 - ŷ² formed from
    rounded outputs, whose absolute error u·E_y is a relative error u·E_y/(1 - y) of every
    second-order term near saturation, while the gradient they are differentiated from may be
    dominated by a direct path that does not carry it (GRU's z ⊙ g into h0)."""
    bounds = tangent_error_bounds(SR.config_of(case), SR.form_of(case), SR.module_inputs(case), dict(g),
                                  dict(v), *_format(case))
    return _d2(case, bounds)


def cell_second_order_error(case: Case, v: Mapping[str, np.ndarray],
                            g: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``sequence_second_order_error`` of RNNCell / LSTMCell / GRUCell (one step)."""
    bounds = cell_tangent_error_bounds(SR.check_cell(case), dict(case.inputs), dict(g), dict(v), *_format(case))
    return _d2(case, bounds)


# -- comparators ----------------------------------------------------------------------------------------

def with_signed_zeros(cmp: Comparison, expected: Any, got: Any) -> Comparison:
    """A passing float comparison fails where a zero has the wrong sign (copies keep it)."""
    expected = np.asarray(expected)
    if not cmp.ok or expected.dtype.kind != "f" or got is None:
        return cmp
    got = np.asarray(got, dtype=np.float64)
    bad = (expected == 0) & (np.signbit(expected) != np.signbit(got))
    if bad.any():
        where = np.argwhere(bad)
        cmp.ok, cmp.mismatches, cmp.symptoms = False, int(bad.sum()), ["value"]
        cmp.worst_index = [int(i) for i in where[0]]
        cmp.worst = [{"index": [int(i) for i in ix], "ref": float(expected[tuple(ix)]), "got": float(got[tuple(ix)]),
                      "err": 0.0, "bound": 0.0} for ix in where[:5]]
        cmp.utilisation = float("inf")
        cmp.message = f"{cmp.mismatches} of {cmp.size} zeros have the wrong sign"
    return cmp


def exact_copy(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
    """A copied tensor, bit for bit: values, NaN where NaN, and the sign of every zero."""
    expected = result.tensors()[name]
    value = got.tensors().get(name)
    cmp = compare_tensor(spec, case, name, expected, value, got.dtypes.get(name), np.abs(expected).astype(np.float64))
    return with_signed_zeros(cmp, expected, value)


def copies(names: list[str] | tuple[str, ...]) -> dict[str, Comparator]:
    """``exact_copy`` for every named tensor (the comparator table is keyed by exact names)."""
    return {name: exact_copy for name in names}


InOrder = Callable[[Case, "np.ndarray | None"], "tuple[Result, Pullback | None]"]
_ORDERED: list[tuple[Case, tuple[int, ...], Result]] = []


def _reordered(spec: LayerSpec, case: Case, reference: InOrder, order: np.ndarray) -> Result:
    """The reference (forward and backward) with the batch sorted by ``order``, cached per case."""
    key = tuple(int(i) for i in order)
    for c, k, r in _ORDERED:
        if c is case and k == key:
            return r
    result, pullback = reference(case, order)
    result.grads = spec.pull(pullback, case, case.cotangents)
    _ORDERED.insert(0, (case, key, result))
    del _ORDERED[2:]
    return result


def _magnitude(spec: LayerSpec, case: Case, result: Result, name: str) -> np.ndarray:
    """absref of one tensor of ``result`` under its tolerance (without evaluating every other
    tensor's, as ``tolerance.magnitudes`` does)."""
    tol = spec.tolerance_for(name)
    if callable(tol.magnitude):
        return np.abs(np.asarray(tol.magnitude(case, result)[name], dtype=np.float64))
    if tol.magnitude == "ref":
        return np.abs(np.asarray(result.tensors()[name])).astype(np.float64)
    return magnitudes(spec, case, result)[name]


def tie_comparator(reference: InOrder, lengths: Callable[[Case], np.ndarray], signed_zeros: bool = False) -> Comparator:
    """Compare against the reference computed in the backend's order of tied lengths: when the
    backend's ``sorted_indices`` sort ``lengths(case)`` in decreasing order but differ from the
    reference's, every tensor (data, indices, states, gradients) is judged against
    ``reference(case, order)``; an order that does not sort the lengths is judged against the
    reference's own (and fails)."""

    def compare(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
        order = got.outputs.get("sorted_indices")
        mine = result.outputs.get("sorted_indices")
        expected = result
        if (mine is not None and order is not None and rnn_utils.is_decreasing_order(lengths(case), order)
                and not np.array_equal(np.reshape(order, -1), mine)):
            expected = _reordered(spec, case, reference, np.asarray(order, dtype=np.int64).reshape(-1))
        value, other = expected.tensors()[name], got.tensors().get(name)
        absref = _magnitude(spec, case, expected, name)
        cmp = compare_tensor(spec, case, name, value, other, got.dtypes.get(name), absref)
        return with_signed_zeros(cmp, value, other) if signed_zeros else cmp

    return compare


def untouched_input(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
    """An input compared after the call (``state.<input>``) with its value before: it must come back
    as it went in. Coming back with its first two dims swapped (a transpose in place) is a wrong
    shape, even where the two dims are equal in size."""
    cmp = exact_copy(spec, case, name, result, got)
    value = got.tensors().get(name)
    expected = np.asarray(result.tensors()[name])
    if value is not None and expected.ndim >= 2 and np.shape(value) == np.swapaxes(expected, 0, 1).shape:
        swapped = np.swapaxes(expected, 0, 1)
        same = (swapped == value) | (np.isnan(swapped) & np.isnan(value))
        if same.all() and not (cmp.ok and np.shape(value) == expected.shape):
            cmp.ok, cmp.symptoms = False, ["shape"]
            cmp.message = f"came back transposed: shape {list(np.shape(value))}, the input's {list(expected.shape)}"
    return cmp


def tensor_names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


def stack_tensor_names() -> tuple[str, ...]:
    """Every tensor a packed RNN declaration can compare: when ties are sorted differently, all
    of them follow the backend's order."""
    names = ["output", "h_n", "c_n", "batch_sizes", "sorted_indices", "unsorted_indices", "grad.input", "grad.h0",
             "grad.c0"]
    for layer in range(3):
        for direction in range(2):
            s = ref.suffix(layer, direction)
            names += [f"grad.{w}{s}" for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")]
    return tuple(names)


# -- torch's known behaviours (predicates of conformance/known/recurrent.toml) ----------------------

def _onednn_lstm(case: Case) -> bool:
    """nn.LSTM on a packed batch runs on oneDNN: float32 (bfloat16 on CPUs with AVX-512 BW, VL
    and DQ), every sequence of the same length, no projection."""
    from conformance.known import cpu_flags

    dtype_ok = case.dtype == "float32" or (case.dtype == "bfloat16"
                                           and {"avx512bw", "avx512vl", "avx512dq"} <= cpu_flags())
    lengths = np.asarray(case.inputs["lengths"])
    return dtype_ok and len(set(lengths.tolist())) == 1 and not case.params.get("proj_size")


def lstm_packed_input_size_unchecked(case: Case) -> bool:
    """An LSTM on a PackedSequence whose feature size is not input_size, without h0, on oneDNN:
    nn.LSTM runs it without checking the input size."""
    return (case.op == "LSTM" and case.invalid and case.note == "wrong input_size" and "h0" not in case.inputs
            and "lengths" in case.inputs and _onednn_lstm(case))


def _wrong_state(case: Case) -> tuple[str, int] | None:
    """(h0 or c0, the dim) of an invalid packed case's wrongly shaped state."""
    if not (case.invalid and case.note == "h0 of the wrong shape" and "lengths" in case.inputs):
        return None
    p = case.params
    lead, batch = p["num_layers"] * (2 if p["bidirectional"] else 1), len(case.inputs["lengths"])
    for name, size in (("h0", p.get("proj_size") or p["hidden_size"]), ("c0", p["hidden_size"])):
        if name in case.inputs:
            diff = [i for i, (a, b) in enumerate(zip(case.inputs[name].shape, (lead, batch, size))) if a != b]
            if diff:
                return name, diff[0]
    return None


def lstm_packed_h0_extra_layer_crashes(case: Case) -> bool:
    """nn.LSTM on a packed batch with an h0 of one layer too many, off oneDNN: a segfault."""
    return case.op == "LSTM" and _wrong_state(case) == ("h0", 0) and not _onednn_lstm(case)


def lstm_packed_hx_unchecked(case: Case) -> bool:
    """nn.LSTM on a packed batch never checks hx: a c0 with a layer too many always runs, an h0
    with one on oneDNN; one batch row too many runs when the batch is unsorted (hx is permuted,
    so cut to the batch, before anything looks at it) or on oneDNN. (A wrong hidden size fails in
    the kernel.)"""
    wrong = _wrong_state(case) if case.op == "LSTM" else None
    if wrong is None or wrong[1] == 2 or lstm_packed_h0_extra_layer_crashes(case):
        return False
    if wrong[1] == 0:
        return True
    return not case.params["enforce_sorted"] or _onednn_lstm(case)


def packed_unsorted_h0_extra_rows(case: Case) -> bool:
    """nn.RNN or nn.GRU on an unsorted packed batch with an h0 of one batch row too many: hx is
    permuted by sorted_indices (and so cut to the batch) before its shape is checked."""
    return case.op in ("RNN", "GRU") and _wrong_state(case) == ("h0", 1) and not case.params["enforce_sorted"]


def lengths_beyond_steps(case: Case) -> bool:
    """pack_padded_sequence with a length beyond the padded input's time steps."""
    x, lengths = case.inputs["input"], case.inputs["lengths"]
    steps = x.shape[1] if case.params["batch_first"] else x.shape[0]
    return bool(lengths.size and lengths.max() > steps)


def trailing_dims_broadcast(case: Case) -> bool:
    """pad_sequence or pack_sequence given a sequence whose trailing dims differ from the first
    sequence's but broadcast to them (a 1 where the first has more): torch copies it broadcast."""
    if case.op not in ("pad_sequence", "pack_sequence") or case.note != "trailing dims differ":
        return False
    first, *rest = SR.sequences_of(case)
    try:
        return all(np.broadcast_shapes(s.shape[1:], first.shape[1:]) == first.shape[1:] for s in rest)
    except ValueError:
        return False


def unpad_lengths_unchecked(case: Case) -> bool:
    """unpad_sequence with a length beyond T or below 0: torch keeps steps t < length, so the
    sequence comes back cut at T, or empty."""
    return case.op == "unpad_sequence" and case.note in ("length > T", "negative length")


# -- vmap ------------------------------------------------------------------------------------------

def _vmap_node(case: Case) -> dict[str, Any]:
    node = case.mode_node
    return node if node.get("kind") == "vmap" else {}


def vmap_vjp_shared_weights_without_h0(case: Case) -> bool:
    """A vmap case with torch.func.vjp inside, of a padded RNN/LSTM/GRU or of an RNNCell/LSTMCell/
    GRUCell, whose weights are shared (unbatched) and whose initial state is omitted: torch's
    decomposition accumulates the batched input's gradient in place into a tensor built from the
    unbatched weights and zero state. (The cells raise also with weight_ih alone batched, or with
    an unbatched state passed; the cases stack every weight or none, and every given state.)"""
    node = _vmap_node(case)
    if node.get("inner") != "vjp" or any(k in case.inputs for k in ("h0", "c0")):
        return False
    weights = [k for k in case.inputs if k.startswith("weight_")]
    return bool(weights) and all(k in node.get("shared", ()) for k in weights)


def vmap_vjp_packed_with_state(case: Case) -> bool:
    """A vmap case with torch.func.vjp inside, of an LSTM on a PackedSequence with an initial state:
    the packed kernel reads the data pointer of the functorch wrapper (without a state, the batch
    sizes' .item() is refused first, which is unsupported)."""
    return _vmap_node(case).get("inner") == "vjp" and "h0" in case.inputs


def func_transform_pads_packed_data(case: Case) -> bool:
    """pad_packed_sequence (either variant) or unpack_sequence (which pads first) under a
    torch.func autograd transform: vjp2's torch.func compositions (forward-over-reverse,
    reverse-over-forward; not the plain double backward), and vmap with torch.func.vjp inside.
    Its kernel (CompositeImplicitAutograd) reads batch_sizes through const_data_ptr<int64_t>, and
    the grad transform hands every tensor argument to it as a wrapper without storage. The round
    trip's torch.func compositions of vjp2 are excluded: pack_padded_sequence's missing
    forward-mode formula is refused first (unsupported)."""
    node = case.mode_node
    if node.get("kind") == "vmap":
        return node.get("inner") == "vjp"
    return (node.get("kind") == "vjp2" and node.get("composition") in ("forward-over-reverse", "reverse-over-forward")
            and case.variant != "roundtrip")
