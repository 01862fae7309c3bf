"""Case strategies of the recurrent family and the sequence utilities, and the readers of their
cases (what a case means for the reference: the stack it builds, the form of its input).

Every draw is labelled and the simplest option comes first; the values are drawn from a seed and
rounded to the case dtype. The weights stay around torch's initialisation U(-1/√H, 1/√H) (see
``draw_weights``); the inputs and biases may be large (saturated gates).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import CONTIGUOUS, Case
from conformance import strategies as S
from conformance.dtypes import DTYPES
from reference import recurrent as ref
from reference import rnn_utils

WEIGHT_KINDS = ("uniform", "normal", "mixed")
INPUT_KINDS = ("normal", "uniform", "mixed")
LONG = 16  # the "long" sequences' length
LARGE = 4.0  # the "large" scale: pre-activations of tens, gates saturated
SATURATED = 3.0  # |pre-activation| beyond which σ' < 0.05: a gate is saturated
TRAIN_DROPOUTS = (0.0, 1.0)  # with several layers in training mode: the deterministic points only
ANY_DROPOUTS = (0.0, 0.5, 1.0, 0.25)
CELLS = {"RNNCell": "RNN", "LSTMCell": "LSTM", "GRUCell": "GRU"}


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


# -- lengths ---------------------------------------------------------------------------------------------

LENGTH_KINDS = ("random", "all equal", "all full", "all short", "increasing")


def draw_lengths(d: S.Drawer, steps: int, batch: int, enforce_sorted: bool) -> np.ndarray:
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


def out_of_order(lengths: np.ndarray, steps: int) -> np.ndarray:
    """Lengths made unsorted (the first shorter than the last), for enforce_sorted=True cases that
    torch must reject (needs B, T >= 2)."""
    lengths = np.sort(lengths)
    lengths[-1] = max(lengths[-1], lengths[0] + 1) if lengths[0] < steps else steps
    lengths[0] = min(lengths[0], steps - 1)
    return lengths


def steps_of(case: Case) -> int:
    """T, the padded input's number of steps."""
    x = case.inputs["input"]
    return x.shape[1] if case.params["batch_first"] and x.ndim == 3 else x.shape[0]


def is_unsorted(lengths: np.ndarray) -> bool:
    return bool(np.any(np.diff(lengths) > 0))


def has_ties(lengths: np.ndarray) -> bool:
    return len(set(np.asarray(lengths).tolist())) < len(lengths)


# -- RNN, LSTM, GRU over sequences --------------------------------------------------------------------

def mode_of(op: str, params: Mapping[str, Any]) -> str:
    if op in CELLS:
        op = CELLS[op]
    if op == "RNN":
        return "RNN_RELU" if params.get("nonlinearity") == "relu" else "RNN_TANH"
    return op


def sequence_invalid_kinds(op: str, packed_input: bool) -> tuple[str, ...]:
    kinds = ("wrong input_size", "h0 of the wrong shape", "dropout outside [0, 1]")
    if op == "LSTM":
        kinds += ("proj_size >= hidden_size",)
    if packed_input:
        kinds += ("lengths out of order with enforce_sorted",)
    return kinds


@st.composite
def sequence_case(draw: Any, op: str, dtype: str, packed_input: bool, invalid: str = "") -> Case:
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
        lengths = draw_lengths(d, steps, batch, enforce_sorted)
        if unsorted_invalid:
            enforce_sorted, lengths = True, out_of_order(lengths, steps)
        params["enforce_sorted"] = enforce_sorted
        inputs["lengths"] = lengths
        types["lengths"] = "int_list"
    differentiable = tuple(n for n in inputs if n != "lengths")
    return Case(op=op, dtype=dtype, params=params, inputs=inputs, differentiable=differentiable,
                layouts={"input": layout}, types=types, train=train, tier="float", cotangent_seed=S.seed(d),
                invalid=bool(invalid), note=invalid)


def config_of(case: Case) -> ref.RNNConfig:
    """The stack a case builds, checked as torch's constructor checks it (ValueError)."""
    p = case.params
    layers = p["num_layers"]
    drop = ref.between_layers(p["dropout"], case.train, layers)
    cfg = ref.RNNConfig(mode_of(case.op, p), p["input_size"], p["hidden_size"], layers, p["bias"], p["bidirectional"],
                        p.get("proj_size", 0), drop_between=drop)
    cfg.validate()
    return cfg


def is_packed(case: Case) -> bool:
    return "lengths" in case.inputs


def form_of(case: Case, order: np.ndarray | None = None) -> ref.Form:
    """The input's form: padded (time-major, batch_first or unbatched) or packed from the padded
    input by pack_padded_sequence (lengths checked as torch checks them, ValueError), the batch
    sorted by ``order`` (default: the stable sort of the lengths)."""
    p, x = case.params, case.inputs["input"]
    unbatched = x.ndim == 2 and not is_packed(case)
    if not is_packed(case):
        return ref.Form(batch_first=p["batch_first"], unbatched=unbatched)
    if x.ndim != 3:
        raise ValueError(f"pack_padded_sequence of a {x.ndim}-d input: the stack expects 3-d")
    steps, batch = (x.shape[1], x.shape[0]) if p["batch_first"] else x.shape[:2]
    lengths = case.inputs["lengths"]
    rnn_utils.check_lengths(lengths, steps, batch, p["enforce_sorted"])
    if order is None:
        order = np.arange(batch) if p["enforce_sorted"] else rnn_utils.sort_order(lengths)
    return ref.Form(batch_first=p["batch_first"], lengths=lengths, order=order)


def module_inputs(case: Case) -> dict[str, np.ndarray]:
    """The arrays the module's forward takes (everything but the lengths of a packed case)."""
    return {k: v for k, v in case.inputs.items() if k != "lengths"}


# -- RNNCell, LSTMCell, GRUCell ------------------------------------------------------------------------

CELL_INVALID = ("wrong input_size", "hx of the wrong shape")


@st.composite
def cell_case(draw: Any, op: str, dtype: str, invalid: str = "") -> Case:
    d = S.Drawer(draw)
    params: dict[str, Any] = {}
    if op == "RNNCell":
        params["nonlinearity"] = d.choice(("tanh", "relu"), "nonlinearity")
    bias = d.choice((True, False), "bias")
    hidden = d.integer(1, 8, "hidden_size")
    input_size = d.integer(1, 8, "input_size")
    unbatched = d.choice(("batched", "unbatched"), "input form") == "unbatched"
    batch = d.integer(1, 6, "B")
    given = d.choice(("omitted", "given"), "hx") == "given" or invalid == "hx of the wrong shape"
    params.update(input_size=input_size, hidden_size=hidden, bias=bias)
    rng, weight_kind, input_kind, scale = draw_values(d)
    cfg = ref.RNNConfig(mode_of(op, params), input_size, hidden, bias=bias)
    shapes = {name.removesuffix("_l0"): shape for name, shape in ref.parameter_shapes(cfg).items()}
    inputs = draw_weights(rng, shapes, hidden, weight_kind, scale, dtype)
    lead = () if unbatched else (batch,)
    feature = input_size + (d.integer(1, 3, "input_size excess") if invalid == "wrong input_size" else 0)
    inputs["input"] = float_values(rng, (*lead, feature), input_kind, scale, dtype)
    states = ("h0", "c0") if op == "LSTMCell" else ("h0",)
    wrong = d.choice(states, "wrong state") if invalid == "hx of the wrong shape" else ""
    for name in states if given else ():
        shape = [*lead, hidden]
        if name == wrong:
            shape[d.integer(0, len(shape) - 1, "wrong dim")] += 1
        inputs[name] = float_values(rng, tuple(shape), "normal", 1.0, dtype)
    return Case(op=op, dtype=dtype, params=params, inputs=inputs, differentiable=tuple(inputs), tier="float",
                cotangent_seed=S.seed(d), invalid=bool(invalid), note=invalid)


def check_cell(case: Case) -> str:
    """The cell's mode, its sizes checked against the constructor's (ValueError)."""
    p, x = case.params, case.inputs["input"]
    if x.shape[-1:] != (p["input_size"],) or case.inputs["weight_hh"].shape[-1] != p["hidden_size"]:
        raise ValueError(f"expected an input (B, {p['input_size']}) or ({p['input_size']},), got {x.shape}")
    return mode_of(case.op, p)


# -- pack_padded_sequence, pad_packed_sequence ------------------------------------------------------------

PADDING_VALUES = (0.0, -1.0, 5.5, float("inf"), float("nan"))
PACK_INVALID = ("unsorted with enforce_sorted", "length 0", "length > T", "lengths count")


def padded_values(d: S.Drawer, dtype: str, tier: str, steps: int, batch: int, batch_first: bool,
                  label: str = "input", copies: bool = False) -> tuple[np.ndarray, Any]:
    """A padded batch (T, B, *) or (B, T, *) in a drawn layout; ``copies``: also expanded (stride 0)
    layouts, and signed zeros and non-finite values among the float tier's."""
    features = tuple(S.sizes_within(d, d.integer(0, 2, "feature ndim"), 16, hi=4, label="features"))
    shape = (batch, steps, *features) if batch_first else (steps, batch, *features)
    layout = S.layouts(d, len(shape), f"layout.{label}", expanded=copies)
    specials = COPY_SPECIALS if copies else ()
    return S.values(d, shape, dtype, tier, label, layout=layout, int_limit=8, specials=specials,
                    some_special=copies), layout


@st.composite
def pack_case(draw: Any, dtype: str, invalid: str = "") -> Case:
    d = S.Drawer(draw)
    tier = S.tier(d)
    unsorted = invalid == "unsorted with enforce_sorted"  # needs two sequences of different lengths
    steps, batch = d.integer(2 if unsorted else 1, 8, "T"), d.integer(2 if unsorted else 1, 6, "B")
    batch_first = d.flag("batch_first")
    enforce_sorted = d.choice((True, False), "enforce_sorted")
    lengths = draw_lengths(d, steps, batch, enforce_sorted)
    x, layout = padded_values(d, dtype, tier, steps, batch, batch_first)
    if unsorted:
        enforce_sorted, lengths = True, out_of_order(lengths, steps)
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


def padded_steps(case: Case) -> int:
    """T of a utility's padded input (batch_first or not)."""
    return case.inputs["input"].shape[1 if case.params["batch_first"] else 0]


@st.composite
def pad_case(draw: Any, dtype: str, invalid: bool = False) -> Case:
    """A consistent PackedSequence (data, batch_sizes and, for an unsorted batch, the permutation
    and its inverse), batch_first, padding_value and total_length."""
    d = S.Drawer(draw)
    tier = S.tier(d)
    steps, batch = d.integer(1, 8, "T"), d.integer(1, 6, "B")
    lengths = draw_lengths(d, steps, batch, enforce_sorted=False)
    permuted = d.choice(("sorted batch", "permutation"), "indices")
    rng = np.random.default_rng(d.integer(0, 2**32 - 1, "permutation.seed"))
    order = rnn_utils.sort_order(lengths) if permuted == "permutation" else np.arange(batch)
    if permuted == "permutation" and batch > 1:
        lengths = lengths[rng.permutation(batch)]
        order = rnn_utils.sort_order(lengths)
    else:
        lengths = np.sort(lengths)[::-1].copy()
    sizes = rnn_utils.batch_sizes(lengths[order])
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


@st.composite
def roundtrip_case(draw: Any, dtype: str) -> Case:
    d = S.Drawer(draw)
    tier = S.tier(d)
    steps, batch = d.integer(1, 8, "T"), d.integer(1, 6, "B")
    batch_first = d.flag("batch_first")
    enforce_sorted = d.choice((True, False), "enforce_sorted")
    lengths = draw_lengths(d, steps, batch, enforce_sorted)
    x, layout = padded_values(d, dtype, tier, steps, batch, batch_first)
    longest = int(lengths.max())
    total = d.choice(("none", "longer", "exact"), "total_length")
    total_length = {"none": None, "longer": longest + d.integer(1, 3, "extra steps"), "exact": longest}[total]
    params = {"batch_first": batch_first, "enforce_sorted": enforce_sorted,
              "padding_value": d.choice(PADDING_VALUES, "padding_value"), "total_length": total_length}
    return Case(op="pad_packed_sequence", dtype=dtype, params=params, inputs={"input": x, "lengths": lengths},
                types={"lengths": "int_list"}, differentiable=("input",), layouts={"input": layout}, tier=tier,
                cotangent_seed=S.seed(d))


def packed_of(case: Case) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The PackedSequence of a case holding one (data, batch_sizes and, when unsorted, indices)."""
    i = case.inputs
    return i["data"], i["batch_sizes"], i.get("sorted_indices"), i.get("unsorted_indices")


# -- pad_sequence, pack_sequence, unpad_sequence, unpack_sequence ----------------------------------------

MAX_SEQUENCES = 6
# padding_value: the default, a few finite values, ±0, ±inf, NaN and a large one (within every dtype's range:
# torch rejects a padding_value its dtype cannot hold).
SEQUENCE_PADDING_VALUES = (0.0, -1.0, 5.5, -0.0, float("inf"), float("-inf"), float("nan"), 2.0**15)
# Values that copies must carry exactly: signed zeros and non-finite values.
COPY_SPECIALS = (0.0, -0.0, float("inf"), float("-inf"), float("nan"))
SEQUENCE_LENGTH_KINDS = ("random", "all equal", "with empty", "single steps", "increasing")
PAD_SEQUENCE_INVALID = ("empty list", "0-d sequence", "trailing dims differ", "padding_side unknown",
                        "padding_value beyond the dtype")
PACK_SEQUENCE_INVALID = ("empty list", "0-d sequence", "trailing dims differ", "length 0",
                         "unsorted with enforce_sorted")
UNPAD_INVALID = ("lengths count", "length > T", "negative length")
UNPACK_INVALID = ("not a PackedSequence",)


def sequence_name(i: int) -> str:
    return f"sequence{i}"


def sequence_names(case: Case) -> list[str]:
    """The inputs holding the list of sequences, in list order."""
    return [sequence_name(i) for i in range(case.params["count"])]


def draw_sequence_lengths(d: S.Drawer, batch: int, lowest: int) -> np.ndarray:
    """B lengths: random in [lowest, 5], all equal, some 0 (``with empty``, when ``lowest`` is 0),
    all 1, or increasing (out of order for enforce_sorted)."""
    kind = d.choice(SEQUENCE_LENGTH_KINDS, "lengths kind")
    rng = np.random.default_rng(d.integer(0, 2**32 - 1, "lengths.seed"))
    if kind == "all equal":
        return np.full(batch, int(rng.integers(max(lowest, 1), 6)), dtype=np.int64)
    if kind == "single steps":
        return np.ones(batch, dtype=np.int64)
    lengths = rng.integers(max(lowest, 1), 6, size=batch)
    if kind == "with empty" and lowest == 0 and batch:
        lengths[rng.integers(batch)] = 0
    if kind == "increasing":
        lengths = np.sort(lengths)
        if batch > 1 and lengths[0] == lengths[-1]:
            lengths[-1] += 1
    return lengths.astype(np.int64)


def _sequences(d: S.Drawer, dtype: str, tier: str, lengths: np.ndarray, features: tuple[int, ...],
               inputs: dict[str, np.ndarray], layouts: dict[str, Any]) -> None:
    for i, length in enumerate(lengths.tolist()):
        shape = (length, *features)
        layouts[sequence_name(i)] = S.layouts(d, len(shape), f"layout.{sequence_name(i)}", expanded=True)
        inputs[sequence_name(i)] = S.values(d, shape, dtype, tier, sequence_name(i), layout=layouts[sequence_name(i)],
                                            int_limit=8, specials=COPY_SPECIALS, some_special=True)


def _break_sequences(d: S.Drawer, invalid: str, inputs: dict[str, np.ndarray], layouts: dict[str, Any]) -> None:
    """Make the last of the drawn sequences invalid in the way ``invalid`` says: 0-d, of other
    trailing dims (larger, or 1 where the first sequence's are larger: broadcastable), or empty."""
    name = sequence_name(len(inputs) - 1)
    x = inputs[name]
    if invalid == "0-d sequence":
        inputs[name] = x.reshape(-1)[:1].reshape(()) if x.size else np.zeros(())
    elif invalid == "trailing dims differ":
        axis = d.integer(1, x.ndim, "differing dim")
        shape = list(x.shape) + ([1] if axis == x.ndim else [])
        if d.choice(("larger", "size 1"), "differing how") == "size 1" and shape[axis] > 1:
            shape[axis] = 1
        else:
            shape[axis] += d.integer(1, 2, "extra feature")
        inputs[name] = np.zeros(shape)
    elif invalid == "length 0":
        inputs[name] = x[:0]
    else:
        return
    layouts[name] = CONTIGUOUS


@st.composite
def sequence_list_case(draw: Any, op: str, dtype: str, invalid: str = "") -> Case:
    """A list of B sequences (L_b, *) sharing their trailing dims, each in its own layout, for
    pad_sequence (batch_first, padding_value, padding_side; lengths 0 allowed) or pack_sequence
    (enforce_sorted; lengths >= 1, sorted when enforced)."""
    d = S.Drawer(draw)
    tier = S.tier(d)
    pad_op = op == "pad_sequence"
    two = invalid in ("trailing dims differ", "unsorted with enforce_sorted")
    batch = d.integer(2 if two else 1, MAX_SEQUENCES, "B")
    params: dict[str, Any] = {}
    if pad_op:
        params.update(batch_first=d.flag("batch_first"),
                      padding_value=d.choice(SEQUENCE_PADDING_VALUES, "padding_value"),
                      padding_side=d.choice(("right", "left"), "padding_side"))
        if invalid == "padding_side unknown":
            params["padding_side"] = d.choice(("middle", "LEFT"), "invalid padding_side")
        if invalid == "padding_value beyond the dtype":  # (no finite float lies beyond float64's range)
            params["padding_value"] = d.choice((1.0, -1.0), "sign") * 2.0 * DTYPES[dtype].max_value
    else:
        params["enforce_sorted"] = d.choice((True, False), "enforce_sorted")
    lengths = draw_sequence_lengths(d, batch, 0 if pad_op else 1)
    if not pad_op and params["enforce_sorted"]:
        lengths = np.sort(lengths)[::-1].copy()
    if invalid == "unsorted with enforce_sorted":
        params["enforce_sorted"] = True
        lengths = out_of_order(lengths, int(lengths.max()) + 1)
    features = tuple(S.sizes_within(d, d.integer(0, 2, "feature ndim"), 16, hi=4, label="features"))
    inputs: dict[str, np.ndarray] = {}
    layouts: dict[str, Any] = {}
    _sequences(d, dtype, tier, lengths, features, inputs, layouts)
    _break_sequences(d, invalid, inputs, layouts)
    if invalid == "empty list":
        inputs, layouts = {}, {}
    params.update(count=len(inputs), container=d.choice(("list", "tuple"), "container"))
    return Case(op=op, dtype=dtype, params=params, inputs=inputs, differentiable=tuple(inputs), layouts=layouts,
                tier=tier, cotangent_seed=S.seed(d), invalid=bool(invalid), note=invalid)


def has_specials(x: np.ndarray) -> bool:
    """Whether ``x`` holds a value a copy must carry exactly: a zero (of either sign), ±inf or NaN."""
    return bool(np.any(~np.isfinite(x) | (x == 0)))


def sequences_of(case: Case) -> list[np.ndarray]:
    return [case.inputs[n] for n in sequence_names(case)]


def lengths_of_list(case: Case) -> np.ndarray:
    return np.array([case.inputs[n].shape[0] if case.inputs[n].ndim else -1 for n in sequence_names(case)])


def steps_of_padded(case: Case) -> int:
    """T of unpad_sequence's padded input."""
    return case.inputs["padded_sequences"].shape[1 if case.params["batch_first"] else 0]


def packed_lengths(case: Case) -> np.ndarray:
    """The sorted lengths of a case's PackedSequence."""
    return rnn_utils.lengths_of(case.inputs["batch_sizes"])


@st.composite
def unpad_case(draw: Any, dtype: str, invalid: str = "") -> Case:
    """A padded batch (T, B, *) or (B, T, *) and one length per sequence in [0, T] (torch takes them
    as an int64 tensor; B = 0 allowed: no sequence at all)."""
    d = S.Drawer(draw)
    tier = S.tier(d)
    batch_first = d.flag("batch_first")
    batch = d.integer(1, MAX_SEQUENCES, "B") if d.choice(("some", "none"), "sequences") == "some" else 0
    lengths = draw_sequence_lengths(d, batch, 0)
    steps = int(lengths.max(initial=0)) + d.integer(0, 2, "padding steps")
    if invalid and batch == 0:
        batch, lengths = 1, np.ones(1, dtype=np.int64)
        steps = max(steps, 1)
    x, layout = padded_values(d, dtype, tier, steps, batch, batch_first, "padded_sequences", copies=True)
    if invalid == "lengths count":
        lengths = lengths[:-1] if d.flag("one too few") else np.concatenate([lengths, lengths[:1]])
    elif invalid == "length > T":
        lengths = lengths.copy()
        lengths[d.integer(0, batch - 1, "which length")] = steps + d.integer(1, 2, "excess")
    elif invalid == "negative length":
        lengths = lengths.copy()
        lengths[d.integer(0, batch - 1, "which length")] = -d.integer(1, 2, "below zero")
    return Case(op="unpad_sequence", dtype=dtype, params={"batch_first": batch_first},
                inputs={"padded_sequences": x, "lengths": lengths.astype(np.int64)},
                types={"lengths": "int64"}, differentiable=("padded_sequences",) if batch else (),
                layouts={"padded_sequences": layout},
                tier=tier, cotangent_seed=S.seed(d), invalid=bool(invalid), note=invalid)


@st.composite
def unpack_case(draw: Any, dtype: str, invalid: str = "") -> Case:
    """A PackedSequence as pack_sequence makes it (sorted, or unsorted with its indices); invalid:
    its data passed where a PackedSequence is expected."""
    d = S.Drawer(draw)
    tier = S.tier(d)
    batch = d.integer(1, MAX_SEQUENCES, "B")
    lengths = draw_sequence_lengths(d, batch, 1)
    permuted = d.choice(("sorted batch", "permutation"), "indices")
    if permuted == "sorted batch":
        lengths = np.sort(lengths)[::-1].copy()
    order = rnn_utils.sort_order(lengths) if permuted == "permutation" else np.arange(batch, dtype=np.int64)
    features = tuple(S.sizes_within(d, d.integer(0, 2, "feature ndim"), 16, hi=4, label="features"))
    layout = S.layouts(d, 1 + len(features), "layout.data", expanded=True)
    data = S.values(d, (int(lengths.sum()), *features), dtype, tier, "data", layout=layout, int_limit=8,
                    specials=COPY_SPECIALS, some_special=True)
    inputs = {"data": data, "batch_sizes": rnn_utils.batch_sizes(lengths[order])}
    if permuted == "permutation":
        inputs.update(sorted_indices=order, unsorted_indices=np.argsort(order).astype(np.int64))
    return Case(op="unpack_sequence", dtype=dtype, params={"count": batch}, inputs=inputs, differentiable=("data",),
                layouts={"data": layout}, tier=tier, cotangent_seed=S.seed(d), invalid=bool(invalid), note=invalid)


def possible(kind: str, dtype: str) -> bool:
    """Whether an invalid kind exists in ``dtype`` (every finite float fits in float64)."""
    return not (kind == "padding_value beyond the dtype" and dtype == "float64")


def representable_padding(case: Case) -> None:
    """torch converts padding_value to the case dtype and rejects a finite one beyond its range
    (ValueError here)."""
    value = case.params["padding_value"]
    if np.isfinite(value) and abs(value) > DTYPES[case.dtype].max_value:
        raise ValueError(f"padding_value {value} cannot be converted to {case.dtype} without overflow")


def kinds_of(invalid_kinds: tuple[str, ...], build: Any, *args: Any, **kwargs: Any) -> Any:
    """The invalid-case strategy of a declaration: one of ``invalid_kinds`` that the dtype allows
    (``possible``), then ``build(*args, dtype=dtype, invalid=kind, **kwargs)``."""
    def strategy(dtype: str) -> st.SearchStrategy[Case]:
        kinds = tuple(k for k in invalid_kinds if possible(k, dtype))
        return st.sampled_from(kinds).flatmap(lambda kind: build(*args, dtype=dtype, invalid=kind, **kwargs))

    return strategy
