"""RNN, LSTM and GRU over whole sequences, forward and backward through time: padded input
(time-major, batch_first or unbatched) and, as the ``packed`` variant of each entry, a
PackedSequence made by ``pack_padded_sequence`` from the padded input and lengths, as a user
makes it (sorted or not, enforce_sorted both ways).

Compared: output (the padded output, or the packed output's data, batch_sizes and indices), h_n,
c_n, and the gradients of the input, h0, c0 and every weight and bias. The packed output keeps the
PackedSequence's own layout (rows sorted by decreasing length), so a wrong order or wrong
batch_sizes is caught as such; h_n and c_n come back in the caller's batch order. Lengths that tie
may be sorted either way (torch does not promise a stable sort): the reference then follows the
backend's order when that order is valid.

Dropout between layers is stochastic and its masks are not observable from outside the module,
so only its deterministic points are drawn: p = 0, eval mode (any p), p = 1 in training (every
layer after the first gets a zero input; dropout never follows the last layer), and any p with a
single layer (no dropout at all).

Tolerances come from the running error analysis of ``reference.recurrent_errors`` (each output's
and gradient's first-order bound, carried through the time steps and layers beside the values).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case, Result
from conformance import strategies as S
from conformance.compare import Comparison, compare_tensor
from conformance.dtypes import DTYPES
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
from conformance.specs.rnn_utils import _lengths
from reference import recurrent as ref
from reference import rnn_utils
from reference.recurrent_errors import error_bounds

PACK = "torch.nn.utils.rnn.pack_padded_sequence"
TARGETS = {"RNN": "torch.nn.RNN", "LSTM": "torch.nn.LSTM", "GRU": "torch.nn.GRU"}
WEIGHT_KINDS = ("uniform", "normal", "mixed")
INPUT_KINDS = ("normal", "uniform", "mixed")
LONG = 16  # the "long" sequences' length
LARGE = 4.0  # the "large" scale: pre-activations of tens, gates saturated
SATURATED = 3.0  # |pre-activation| beyond which σ' < 0.05: a gate is saturated
TRAIN_DROPOUTS = (0.0, 1.0)  # with several layers in training mode: the deterministic points only
ANY_DROPOUTS = (0.0, 0.5, 1.0, 0.25)


# -- values ------------------------------------------------------------------------------------------

def float_values(rng: np.random.Generator, shape: tuple[int, ...], kind: str, scale: float, dtype: str) -> np.ndarray:
    """Values of one kind, rounded to ``dtype``: uniform(-s, s), normal(0, s) or mixed magnitudes
    (log-uniform over ±3 binades around s, random signs)."""
    if kind == "mixed":
        arr = np.where(rng.random(shape) < 0.5, -1.0, 1.0) * np.exp2(rng.uniform(-3, 3, shape)) * scale
    elif kind == "uniform":
        arr = rng.uniform(-scale, scale, shape)
    else:
        arr = rng.standard_normal(shape) * scale
    return DTYPES[dtype].round(arr)


def draw_values(d: S.Drawer) -> tuple[np.random.Generator, str, str, float]:
    """(rng, weight kind, input kind, scale)."""
    rng = np.random.default_rng(d.integer(0, 2**32 - 1, "values.seed"))
    weight_kind = d.choice(WEIGHT_KINDS, "weights")
    input_kind = d.choice(INPUT_KINDS, "inputs")
    scale = LARGE if d.choice(("moderate", "large"), "scale") == "large" else 1.0
    return rng, weight_kind, input_kind, scale


RECURRENT_PATH = ("weight_hh", "weight_hr")
FIRST_LAYER_INPUT = ("weight_ih", "weight_ih_l0", "weight_ih_l0_reverse")


def draw_weights(rng: np.random.Generator, shapes: Mapping[str, tuple[int, ...]], hidden: int, kind: str,
                 scale: float, dtype: str) -> dict[str, np.ndarray]:
    """Weights around torch's initialisation U(-k, k), k = 1/√H. The recurrent path (weight_hh,
    weight_hr) stays exactly there: a larger or mixed-magnitude W_hh makes h or its gradient grow
    geometrically through time, and overflow a 16-bit format where the exact values are finite.
    The other weights take the drawn kind; the first layer's input weights and the biases also
    the drawn scale (large: pre-activations of tens, saturated gates)."""
    k = 1.0 / np.sqrt(hidden)
    out = {}
    for name, shape in shapes.items():
        if name.startswith(RECURRENT_PATH):
            out[name] = float_values(rng, shape, "uniform", k, dtype)
        else:
            big = name in FIRST_LAYER_INPUT or name.startswith("bias")
            out[name] = float_values(rng, shape, kind, k * (scale if big else 1.0), dtype)
    return out


def max_preactivation(case: Case, weight: str = "weight_ih_l0", bias: str = "bias_ih_l0") -> float:
    """max |x W_ih^T + b_ih| over the first layer's inputs (forward direction)."""
    x = case.inputs["input"]
    a = x @ case.inputs[weight].T + case.inputs.get(bias, 0.0)
    return float(np.max(np.abs(a), initial=0.0))


# -- the error analysis as a tolerance ----------------------------------------------------------------

_CACHE: list[tuple[Case, Result, dict[str, np.ndarray]]] = []


def cached_magnitude(case: Case, result: Result, compute: Any) -> dict[str, np.ndarray]:
    """``compute(case, result)`` once per (case, result) pair: the runner asks for each tensor's
    magnitude separately, and the analysis covers them all at once. The cache holds the objects
    themselves (identity, never a stale id)."""
    for c, r, value in _CACHE:
        if c is case and r is result:
            return value
    value = compute(case, result)
    _CACHE.insert(0, (case, result, value))
    del _CACHE[4:]
    return value


def as_magnitudes(case: Case, result: Result, bounds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """absref per tensor for ``Tolerance(reduction=1, c=1)``: the bound E (units of u) itself, so
    the engine allows u·E + u·|ref| (+ one subnormal). In float64 the reference carries the same
    kind of rounding errors as the backend, so the bound is doubled there. Integer tensors
    (batch_sizes, indices) are compared exactly."""
    factor = 2.0 if case.dtype == "float64" else 1.0
    out = {}
    for name, value in result.tensors().items():
        e = bounds.get(name)
        out[name] = np.zeros(np.shape(value)) if e is None else factor * np.asarray(e, dtype=np.float64)
    return out


TOLERANCE_NOTE = ("first-order running error analysis through time and layers (reference.recurrent_errors): "
                  "bound u·E + u·|ref|, E carried step by step beside the values")


# -- sequences: cases -----------------------------------------------------------------------------------

def mode_of(op: str, params: Mapping[str, Any]) -> str:
    if op == "RNN":
        return "RNN_RELU" if params.get("nonlinearity") == "relu" else "RNN_TANH"
    return op


def _invalid_kinds(op: str, packed_input: bool) -> tuple[str, ...]:
    kinds = ("wrong input_size", "h0 of the wrong shape", "dropout outside [0, 1]")
    if op == "LSTM":
        kinds += ("proj_size >= hidden_size",)
    if packed_input:
        kinds += ("lengths out of order with enforce_sorted",)
    return kinds


@st.composite
def _sequence_case(draw: Any, op: str, dtype: str, packed_input: bool, invalid: str = "") -> Case:
    """Every constructor parameter; h0 (and c0) given or omitted; time-major, batch_first or
    unbatched input (padded), or lengths packed by pack_padded_sequence (packed)."""
    d = S.Drawer(draw)
    layers = d.integer(1, 3, "num_layers")
    bidirectional = d.flag("bidirectional")
    bias = d.choice((True, False), "bias")
    batch_first = d.flag("batch_first")
    unbatched = not packed_input and d.choice(("batched", "unbatched"), "input form") == "unbatched"
    params: dict[str, Any] = {}
    if op == "RNN":
        params["nonlinearity"] = d.choice(("tanh", "relu"), "nonlinearity")
    proj = op == "LSTM" and d.choice(("off", "on"), "proj_size") == "on"
    hidden = d.integer(2 if proj else 1, 6, "hidden_size")
    if op == "LSTM":
        params["proj_size"] = d.integer(1, hidden - 1, "proj_size value") if proj else 0
        if invalid == "proj_size >= hidden_size":
            params["proj_size"] = hidden + d.integer(0, 2, "proj_size excess")
    input_size = d.integer(1, 6, "input_size")
    unsorted_invalid = invalid == "lengths out of order with enforce_sorted"
    steps = d.integer(2 if unsorted_invalid else 1, 8, "T")  # drawn either way: "long" shrinks to "short"
    steps = LONG if d.choice(("short", "long"), "length") == "long" else steps
    batch = 1 if unbatched else d.integer(2 if unsorted_invalid else 1, 4, "B")
    train = d.choice((True, False), "train")
    dropout = d.choice(TRAIN_DROPOUTS if train and layers > 1 else ANY_DROPOUTS, "dropout")
    if invalid == "dropout outside [0, 1]":
        dropout = d.choice((-0.1, 1.5), "invalid dropout")
    given = d.choice(("omitted", "given"), "h0") == "given" or invalid == "h0 of the wrong shape"
    params.update(input_size=input_size, hidden_size=hidden, num_layers=layers, bias=bias, batch_first=batch_first,
                  dropout=dropout, bidirectional=bidirectional)
    rng, weight_kind, input_kind, scale = draw_values(d)
    cfg = ref.RNNConfig(mode_of(op, params), input_size, hidden, layers, bias, bidirectional,
                        max(params.get("proj_size", 0), 0))
    inputs = draw_weights(rng, ref.parameter_shapes(cfg), hidden, weight_kind, scale, dtype)
    feature = input_size + (d.integer(1, 3, "input_size excess") if invalid == "wrong input_size" else 0)
    x_shape = (steps, feature) if unbatched else ((batch, steps, feature) if batch_first else (steps, batch, feature))
    inputs["input"] = float_values(rng, x_shape, input_kind, scale, dtype)
    layout = S.layouts(d, len(x_shape), "layout.input")
    states = {"h0": cfg.out_size, "c0": hidden} if op == "LSTM" else {"h0": cfg.out_size}
    wrong = d.choice(tuple(states), "wrong state") if invalid == "h0 of the wrong shape" else ""
    for name, size in states.items() if given else ():
        shape = [cfg.num_layers * cfg.directions, *(() if unbatched else (batch,)), size]
        if name == wrong:
            shape[d.integer(0, len(shape) - 1, "wrong dim")] += 1
        inputs[name] = float_values(rng, tuple(shape), "normal", 1.0, dtype)
    types = {}
    if packed_input:
        enforce_sorted = d.choice((True, False), "enforce_sorted")
        lengths = _lengths(d, steps, batch, enforce_sorted)
        if unsorted_invalid:
            enforce_sorted, lengths = True, np.sort(lengths)
            lengths[-1] = max(lengths[-1], lengths[0] + 1) if lengths[0] < steps else steps
            lengths[0] = min(lengths[0], steps - 1)
        params["enforce_sorted"] = enforce_sorted
        inputs["lengths"] = lengths
        types["lengths"] = "int_list"
    differentiable = tuple(n for n in inputs if n != "lengths")
    return Case(op=op, dtype=dtype, params=params, inputs=inputs, differentiable=differentiable,
                layouts={"input": layout}, types=types, train=train, tier="float", cotangent_seed=S.seed(d),
                invalid=bool(invalid), note=invalid)


def _invalid_sequence_cases(op: str, packed_input: bool):
    def strategy(dtype: str) -> st.SearchStrategy[Case]:
        kinds = _invalid_kinds(op, packed_input)
        return st.sampled_from(kinds).flatmap(lambda kind: _sequence_case(op, dtype, packed_input, kind))

    return strategy


# -- sequences: reference -----------------------------------------------------------------------------------

def config_of(case: Case) -> ref.RNNConfig:
    """The stack a case builds, checked as torch's constructor checks it (ValueError)."""
    p = case.params
    dropout = p["dropout"]
    if not 0.0 <= dropout <= 1.0:
        raise ValueError(f"dropout should be a number in range [0, 1], got {dropout}")
    layers = p["num_layers"]
    if case.train and 0.0 < dropout < 1.0 and layers > 1:
        raise ValueError("random dropout between layers is not modelled (its masks are not observable)")
    cfg = ref.RNNConfig(mode_of(case.op, p), p["input_size"], p["hidden_size"], layers, p["bias"], p["bidirectional"],
                        p.get("proj_size", 0), drop_between=case.train and dropout == 1.0 and layers > 1)
    cfg.validate()
    return cfg


def _packed(case: Case) -> bool:
    return "lengths" in case.inputs


def form_of(case: Case, cfg: ref.RNNConfig, order: np.ndarray | None = None) -> ref.Form:
    """The input's form, its shapes checked as torch's forward checks them (ValueError)."""
    p, x = case.params, case.inputs["input"]
    unbatched = x.ndim == 2 and not _packed(case)
    if x.ndim != 3 and not unbatched:
        raise ValueError(f"expected a 2-d or 3-d input, got {x.ndim}-d")
    if x.shape[-1] != cfg.input_size:
        raise ValueError(f"input.size(-1) must be equal to input_size {cfg.input_size}, got {x.shape[-1]}")
    steps, batch = (x.shape[0], 1) if unbatched else ((x.shape[1], x.shape[0]) if p["batch_first"] else x.shape[:2])
    lead = (cfg.num_layers * cfg.directions,) + (() if unbatched else (batch,))
    for name, size in (("h0", cfg.out_size), ("c0", cfg.hidden_size)):
        if name in case.inputs and case.inputs[name].shape != (*lead, size):
            raise ValueError(f"expected {name} of shape {(*lead, size)}, got {case.inputs[name].shape}")
    if not _packed(case):
        return ref.Form(batch_first=p["batch_first"], unbatched=unbatched)
    lengths = case.inputs["lengths"]
    rnn_utils.check_lengths(lengths, steps, batch, p["enforce_sorted"])
    if order is None:
        order = np.arange(batch) if p["enforce_sorted"] else rnn_utils.sort_order(lengths)
    return ref.Form(batch_first=p["batch_first"], lengths=lengths, order=order)


def _reference_inputs(case: Case) -> dict[str, np.ndarray]:
    return {k: v for k, v in case.inputs.items() if k != "lengths"}


def sequence_result(case: Case, backward: bool, order: np.ndarray | None = None) -> Result:
    cfg = config_of(case)
    form = form_of(case, cfg, order)
    cotangent = (lambda name, like: S.output_gradient(case, name, like)) if backward else None
    outputs, grads = ref.run(ref.EXACT, cfg, form, _reference_inputs(case), cotangent)
    result = Result(outputs=outputs, grads=grads)
    if form.lengths is not None:
        result.outputs["batch_sizes"] = rnn_utils.batch_sizes(form.lengths[form.order])
        if not case.params["enforce_sorted"]:
            result.outputs.update(sorted_indices=np.asarray(form.order, dtype=np.int64),
                                  unsorted_indices=np.argsort(form.order).astype(np.int64))
        result.meta["order"] = form.order
    return result


def _sequence_reference(case: Case, backward: bool) -> Result:
    return sequence_result(case, backward)


def sequence_run(A: Any, case: Case, cotangent: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The reference's run of ``case`` in arithmetic ``A`` (canonical order of a packed batch)."""
    cfg = config_of(case)
    return ref.run(A, cfg, form_of(case, cfg), _reference_inputs(case), cotangent)


def _compute_sequence_magnitude(case: Case, result: Result) -> dict[str, np.ndarray]:
    cfg = config_of(case)
    form = form_of(case, cfg, result.meta.get("order"))
    dt = DTYPES[case.dtype]
    bounds = error_bounds(cfg, form, _reference_inputs(case), case.cotangents if result.grads else None,
                          dt.unit_roundoff, dt.min_subnormal, dt.min_normal)
    return as_magnitudes(case, result, bounds)


def _sequence_magnitude(case: Case, result: Result) -> dict[str, np.ndarray]:
    """First-order bounds of every output and gradient (``reference.recurrent_errors``)."""
    return cached_magnitude(case, result, _compute_sequence_magnitude)


def _backend_order(case: Case, got: Result, result: Result) -> np.ndarray | None:
    """The backend's sorting of an unsorted packed batch, when it is a valid decreasing order
    that differs from the reference's (ties ordered the other way); else None."""
    order = got.outputs.get("sorted_indices")
    if case.params.get("enforce_sorted", True) or order is None:
        return None
    order = np.asarray(order, dtype=np.int64).reshape(-1)
    if not rnn_utils.is_decreasing_order(case.inputs["lengths"], order):
        return None
    return None if np.array_equal(order, result.meta.get("order")) else order


_ORDERED: list[tuple[Case, tuple[int, ...], Result]] = []


def _reordered(case: Case, order: np.ndarray) -> Result:
    key = tuple(int(i) for i in order)
    for c, k, r in _ORDERED:
        if c is case and k == key:
            return r
    r = sequence_result(case, bool(case.cotangents), order)
    _ORDERED.insert(0, (case, key, r))
    del _ORDERED[2:]
    return r


def _packed_comparator(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
    """Compare against the reference computed in the backend's own order of tied lengths."""
    order = _backend_order(case, got, result)
    expected = result if order is None else _reordered(case, order)
    value = expected.tensors()[name]
    return compare_tensor(spec, case, name, value, got.tensors().get(name), got.dtypes.get(name),
                          _sequence_magnitude(case, expected)[name])


# -- sequences: torch -----------------------------------------------------------------------------------------

def _ctor(case: Case) -> dict[str, Any]:
    keys = ["input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional"]
    keys += [k for k in ("proj_size", "nonlinearity") if k in case.params]
    return {k: case.params[k] for k in keys}


def weight_names(case: Case) -> tuple[str, ...]:
    return tuple(n for n in case.inputs if n.startswith(("weight_", "bias_")))


def _states(case: Case) -> list[Any]:
    if "h0" not in case.inputs:
        return []
    return [[arg("h0"), arg("c0")]] if case.op == "LSTM" else ["h0"]


def _padded_args(case: Case) -> list[Any]:
    return ["input", *_states(case)]


def _packed_args(case: Case) -> list[Any]:
    pack = call_node(PACK, "input", {"input": "lengths"}, batch_first=case.params["batch_first"],
                     enforce_sorted=case.params["enforce_sorted"])
    return [pack, *_states(case)]


def _outputs(op: str, packed_input: bool) -> Any:
    first: Any = "output"
    if packed_input:
        first = packed(data="output", batch_sizes="batch_sizes", sorted_indices="sorted_indices",
                       unsorted_indices="unsorted_indices")
    return [first, ["h_n", "c_n"] if op == "LSTM" else "h_n"]


# -- sequences: regimes ----------------------------------------------------------------------------------------

def _lengths_of(case: Case) -> np.ndarray:
    return case.inputs["lengths"]


def steps_of(case: Case) -> int:
    """T, the padded input's number of steps."""
    x = case.inputs["input"]
    return x.shape[1] if case.params["batch_first"] and x.ndim == 3 else x.shape[0]


def _dropout_one(case: Case) -> bool:
    return case.train and case.params["dropout"] == 1.0 and case.params["num_layers"] > 1


def _common_regimes(op: str) -> tuple[Regime, ...]:
    regimes = [
        Regime("h0 omitted, no bias", lambda c: "h0" not in c.inputs and not c.params["bias"],
               {"h0": "omitted", "bias": False}),
        Regime("bidirectional, 2 layers", lambda c: c.params["bidirectional"] and c.params["num_layers"] >= 2,
               {"bidirectional": True, "num_layers": 2}),
        Regime("num_layers 3", lambda c: c.params["num_layers"] == 3, {"num_layers": 3, "h0": "given"}),
        Regime("dropout p=1 in training", _dropout_one,
               {"train": True, "num_layers": 2, "dropout": 1.0}, "every layer after the first gets a zero input"),
        Regime("eval mode with dropout", lambda c: not c.train and 0 < c.params["dropout"] < 1
               and c.params["num_layers"] > 1, {"train": False, "num_layers": 2, "dropout": 0.5}, "no dropout"),
        Regime(f"long sequence (T = {LONG})", lambda c: steps_of(c) >= LONG,
               {"length": "long"}, "rounding errors carried through 16 steps"),
        Regime("large pre-activations (saturated gates)", lambda c: max_preactivation(c) >= SATURATED,
               {"scale": "large", "nonlinearity": "tanh", "T": 4, "B": 2, "input_size": 4, "hidden_size": 4,
                "input form": "batched"}, "σ' and tanh' near 0"),
    ]
    if op == "LSTM":
        regimes.append(Regime("proj_size", lambda c: c.params["proj_size"] > 0, {"proj_size": "on"},
                              "h = W_hr (o ⊙ tanh(c)); W_hh has proj_size columns"))
    if op == "RNN":
        regimes.append(Regime("relu nonlinearity", lambda c: c.params["nonlinearity"] == "relu",
                              {"nonlinearity": "relu"}))
    return tuple(regimes)


def _padded_regimes(op: str) -> tuple[Regime, ...]:
    return _common_regimes(op) + (
        Regime("batch_first", lambda c: c.params["batch_first"] and c.inputs["input"].ndim == 3,
               {"batch_first": True, "input form": "batched", "h0": "given"}),
        Regime("unbatched", lambda c: c.inputs["input"].ndim == 2, {"input form": "unbatched", "h0": "given"},
               "input (T, I), h0 (L·D, H)"),
    )


def _packed_regimes(op: str) -> tuple[Regime, ...]:
    return _common_regimes(op) + (
        Regime("unsorted batch, h0 given (enforce_sorted=False)", lambda c: not c.params["enforce_sorted"]
               and bool(np.any(np.diff(_lengths_of(c)) > 0)) and "h0" in c.inputs,
               {"enforce_sorted": False, "lengths kind": "increasing", "B": 4, "T": 6, "h0": "given"},
               "h0 follows the caller's batch order; the packed rows are sorted"),
        Regime("equal lengths", lambda c: len(_lengths_of(c)) > 1 and len(set(_lengths_of(c).tolist())) == 1,
               {"lengths kind": "all equal", "B": 3, "enforce_sorted": False}, "ties: any sorted order is accepted"),
        Regime("bidirectional over unequal lengths", lambda c: c.params["bidirectional"]
               and len(set(_lengths_of(c).tolist())) > 1,
               {"bidirectional": True, "lengths kind": "increasing", "B": 3, "T": 5},
               "the reverse direction starts at each sequence's own last step"),
        Regime("padding beyond every length", lambda c: int(_lengths_of(c).max()) < steps_of(c),
               {"lengths kind": "all short", "T": 5}),
    )


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


# -- declarations ----------------------------------------------------------------------------------------------

TOLERANCE = Tolerance(reduction=1, magnitude=_sequence_magnitude, c=1.0, out_ulps=1.0, exact="none")


def _packed_tensor_names() -> tuple[str, ...]:
    """Every tensor a packed declaration can compare (the comparator table is keyed by exact names):
    when ties are sorted differently, all of them follow the backend's order."""
    names = ["output", "h_n", "c_n", "batch_sizes", "sorted_indices", "unsorted_indices", "grad.input", "grad.h0",
             "grad.c0"]
    for layer in range(3):
        for direction in range(2):
            s = ref.suffix(layer, direction)
            names += [f"grad.{w}{s}" for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")]
    return tuple(names)


def _notes(op: str, packed_input: bool) -> str:
    eq = {"RNN": "h_t = tanh|relu(x W_ih^T + b_ih + h W_hh^T + b_hh)",
          "LSTM": "gates i, f, g, o (row blocks); c_t = f⊙c + i⊙g; h_t = o⊙tanh(c_t), projected by W_hr when "
                  "proj_size > 0",
          "GRU": "gates r, z, n; n = tanh(W_in x + b_in + r⊙(W_hn h + b_hn)); h_t = (1 - z)⊙n + z⊙h"}[op]
    form = ("pack_padded_sequence(input, lengths, batch_first, enforce_sorted) fed to the module; output is the "
            "PackedSequence (data in sorted row order, batch_sizes, indices when unsorted); each direction runs over "
            "each sequence's own length" if packed_input else
            "input (T, B, I), (B, T, I) with batch_first, or unbatched (T, I); h0/c0 are never batch_first")
    return (f"{eq}. {form}. Dropout between layers only at its deterministic points (p = 0, eval mode, p = 1 in "
            f"training, one layer). Tolerance: {TOLERANCE_NOTE}.")


for _op in TARGETS:
    for _packed_input in (False, True):
        declare(LayerSpec(
            name=_op, family="recurrent", variant="packed" if _packed_input else "",
            kind="sequence",
            cases=(lambda op, pk: lambda dtype: _sequence_case(op, dtype, pk))(_op, _packed_input),
            reference=result_reference(_sequence_reference),
            torch=TorchMapping(TARGETS[_op], ctor=_ctor, parameters=weight_names,
                               args=_packed_args if _packed_input else _padded_args,
                               kwargs=lambda case: {}, outputs=_outputs(_op, _packed_input)),
            tolerance=TOLERANCE,
            comparators={name: _packed_comparator for name in _packed_tensor_names()} if _packed_input else {},
            invalid_cases=_invalid_sequence_cases(_op, _packed_input),
            regimes=_packed_regimes(_op) if _packed_input else _padded_regimes(_op),
            notes=_notes(_op, _packed_input),
        ))
