"""The family templates of the recurrent layers and the sequence utilities: data in, ``LayerSpec``
out, and the references they run (each a registered ``reference.functional`` function: its forward
once, then its VJP or pullback once).

- ``recurrent_stack``: nn.RNN / LSTM / GRU over padded input (time-major, batch_first or
  unbatched) or, as the ``packed`` variant, over the PackedSequence that pack_padded_sequence
  makes of it; judged by the running error analysis.
- ``recurrent_cell``: nn.RNNCell / LSTMCell / GRUCell.
- ``sequence_utility``: a torch.nn.utils.rnn function; copies, judged bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from backends.base import Case, Result
from conformance.numerics import recurrent as NR
from conformance.spec import CaseStrategy, Comparator, LayerSpec, Pullback, Regime, TorchMapping, arg, call_node, packed
from conformance.strategies import recurrent as SR
from reference import recurrent as ref
from reference import rnn_utils
from reference.registry import FUNCTIONS

PACK = "torch.nn.utils.rnn.pack_padded_sequence"
UTILS = "torch.nn.utils.rnn."


def vjp(name: str, *args: Any, cotangent: Any, **kwargs: Any) -> dict[str, Any]:
    """``reference.functional.vjp``, read from the registry directly: reference.functional loads
    every reference module on first use, and a module loaded in the middle of a run changes the
    literal constants Hypothesis mixes into its draws, so the cases of every later search."""
    return FUNCTIONS[name].vjp(cotangent, *args, **kwargs)


# -- RNN, LSTM, GRU ------------------------------------------------------------------------------------

def stack_reference(case: Case, order: np.ndarray | None = None) -> tuple[Result, Pullback]:
    """The module's forward (``reference.recurrent.module_call``, on the functional core of
    ``reference.functional.lstm`` & co.) and its pullback; a packed batch sorted by ``order``."""
    form = SR.form_of(case, order)
    outputs, pullback = ref.module_call(ref.EXACT, SR.config_of(case), form, SR.module_inputs(case))
    result = Result(outputs=outputs)
    if form.lengths is not None:
        result.outputs["batch_sizes"] = rnn_utils.batch_sizes(form.lengths[form.order])
        if not case.params["enforce_sorted"]:
            result.outputs.update(sorted_indices=np.asarray(form.order, dtype=np.int64),
                                  unsorted_indices=np.argsort(form.order).astype(np.int64))
        result.meta["order"] = form.order
    return result, pullback


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


def _stack_outputs(op: str, packed_input: bool) -> Any:
    first: Any = "output"
    if packed_input:
        first = packed(data="output", batch_sizes="batch_sizes", sorted_indices="sorted_indices",
                       unsorted_indices="unsorted_indices")
    return [first, ["h_n", "c_n"] if op == "LSTM" else "h_n"]


def _lengths(case: Case) -> np.ndarray:
    return case.inputs["lengths"]


def _dropout_one(case: Case) -> bool:
    return case.train and case.params["dropout"] == 1.0 and case.params["num_layers"] > 1


def _stack_regimes(op: str, packed_input: bool) -> tuple[Regime, ...]:
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
        Regime(f"long sequence (T = {SR.LONG})", lambda c: SR.steps_of(c) >= SR.LONG,
               {"length": "long"}, "rounding errors carried through 16 steps"),
        Regime("large pre-activations (saturated gates)", lambda c: SR.max_preactivation(c) >= SR.SATURATED,
               {"scale": "large", "nonlinearity": "tanh", "T": 4, "B": 2, "input_size": 4, "hidden_size": 4,
                "input form": "batched"}, "σ' and tanh' near 0"),
    ]
    if op == "LSTM":
        regimes.append(Regime("proj_size", lambda c: c.params["proj_size"] > 0, {"proj_size": "on"},
                              "h = W_hr (o ⊙ tanh(c)); W_hh has proj_size columns"))
    if op == "RNN":
        regimes.append(Regime("relu nonlinearity", lambda c: c.params["nonlinearity"] == "relu",
                              {"nonlinearity": "relu"}))
    if not packed_input:
        return (*regimes,
                Regime("batch_first", lambda c: c.params["batch_first"] and c.inputs["input"].ndim == 3,
                       {"batch_first": True, "input form": "batched", "h0": "given"}),
                Regime("unbatched", lambda c: c.inputs["input"].ndim == 2, {"input form": "unbatched", "h0": "given"},
                       "input (T, I), h0 (L·D, H)"))
    return (*regimes,
            Regime("unsorted batch, h0 given (enforce_sorted=False)", lambda c: not c.params["enforce_sorted"]
                   and SR.is_unsorted(_lengths(c)) and "h0" in c.inputs,
                   {"enforce_sorted": False, "lengths kind": "increasing", "B": 4, "T": 6, "h0": "given"},
                   "h0 follows the caller's batch order; the packed rows are sorted"),
            Regime("equal lengths", lambda c: len(_lengths(c)) > 1 and len(set(_lengths(c).tolist())) == 1,
                   {"lengths kind": "all equal", "B": 3, "enforce_sorted": False},
                   "ties: any sorted order is accepted"),
            Regime("bidirectional over unequal lengths", lambda c: c.params["bidirectional"]
                   and len(set(_lengths(c).tolist())) > 1,
                   {"bidirectional": True, "lengths kind": "increasing", "B": 3, "T": 5},
                   "the reverse direction starts at each sequence's own last step"),
            Regime("padding beyond every length", lambda c: int(_lengths(c).max()) < SR.steps_of(c),
                   {"lengths kind": "all short", "T": 5}))


def recurrent_stack(op: str, equations: str, packed_input: bool = False) -> LayerSpec:
    """nn.<op> (RNN, LSTM or GRU) over padded input, or over a PackedSequence (``packed_input``):
    every constructor parameter, h0 (and c0) given or omitted, forward and backward through time
    and layers, judged by the running error analysis. ``equations``: the recurrence, for the notes."""
    form = ("pack_padded_sequence(input, lengths, batch_first, enforce_sorted) fed to the module; output is the "
            "PackedSequence (data in sorted row order, batch_sizes, indices when unsorted); each direction runs over "
            "each sequence's own length" if packed_input else
            "input (T, B, I), (B, T, I) with batch_first, or unbatched (T, I); h0/c0 are never batch_first")
    return LayerSpec(
        name=op, family="recurrent", variant="packed" if packed_input else "", kind="sequence",
        cases=lambda dtype: SR.sequence_case(op, dtype, packed_input),
        reference=stack_reference,
        torch=TorchMapping(f"torch.nn.{op}", ctor=_ctor, parameters=weight_names,
                           args=_packed_args if packed_input else _padded_args,
                           kwargs=lambda case: {}, outputs=_stack_outputs(op, packed_input)),
        tolerance=NR.SEQUENCE_TOLERANCE,
        comparators={n: NR.tie_comparator(stack_reference, _lengths) for n in NR.stack_tensor_names()}
        if packed_input else {},
        invalid_cases=SR.kinds_of(SR.sequence_invalid_kinds(op, packed_input), SR.sequence_case, op,
                                  packed_input=packed_input),
        regimes=_stack_regimes(op, packed_input), second_order_error=NR.sequence_second_order_error,
        notes=(f"{equations}. {form}. Dropout between layers only at its deterministic points (p = 0, eval mode, "
               f"p = 1 in training, one layer). Tolerance: {NR.TOLERANCE_NOTE}."),
    )


# -- RNNCell, LSTMCell, GRUCell ----------------------------------------------------------------------

def cell_reference(case: Case) -> tuple[Result, Pullback]:
    """The cell module's forward (``reference.recurrent.cell_module_call``, on the core of
    ``reference.functional.lstm_cell`` & co.) and its pullback."""
    outputs, pullback = ref.cell_module_call(ref.EXACT, SR.check_cell(case), case.inputs)
    return Result(outputs=outputs), pullback


def _cell_args(case: Case) -> list[Any]:
    if "h0" not in case.inputs:
        return ["input"]
    return ["input", [arg("h0"), arg("c0")]] if case.op == "LSTMCell" else ["input", "h0"]


def _cell_regimes(op: str) -> tuple[Regime, ...]:
    regimes = (
        Regime("hx omitted, no bias", lambda c: "h0" not in c.inputs and not c.params["bias"],
               {"hx": "omitted", "bias": False}),
        Regime("unbatched", lambda c: c.inputs["input"].ndim == 1, {"input form": "unbatched", "hx": "given"},
               "input (I,), hx (H,)"),
        Regime("large pre-activations (saturated gates)",
               lambda c: SR.max_preactivation(c, "weight_ih", "bias_ih") >= SR.SATURATED,
               {"scale": "large", "nonlinearity": "tanh", "input form": "batched", "B": 4, "input_size": 4,
                "hidden_size": 4}, f"inputs and weights ×{SR.LARGE}: σ' and tanh' near 0"),
    )
    if op == "RNNCell":
        regimes += (Regime("relu nonlinearity", lambda c: c.params["nonlinearity"] == "relu",
                           {"nonlinearity": "relu"}),)
    return regimes


def recurrent_cell(op: str, equations: str) -> LayerSpec:
    """nn.<op> (RNNCell, LSTMCell or GRUCell): one step of the stack's recurrence, input (B, I) or
    (I,), hx (and cx) given or omitted, judged by the running error analysis. ``equations``: the
    step, for the notes."""
    base = SR.CELLS[op]
    return LayerSpec(
        name=op, family="recurrent", kind="cell",
        cases=lambda dtype: SR.cell_case(op, dtype),
        reference=cell_reference,
        torch=TorchMapping(f"torch.nn.{op}", parameters=ref.CELL_WEIGHTS, args=_cell_args, kwargs=lambda case: {},
                           outputs=("h", "c") if op == "LSTMCell" else ("h",)),
        tolerance=NR.CELL_TOLERANCE,
        invalid_cases=SR.kinds_of(SR.CELL_INVALID, SR.cell_case, op),
        regimes=_cell_regimes(op), second_order_error=NR.cell_second_order_error,
        notes=(f"One step of {base}: {equations}; from input (B, I) or (I,) and hx (and cx), given or omitted "
               f"(zeros). Tolerance: {NR.TOLERANCE_NOTE}."),
    )


# -- the sequence utilities -----------------------------------------------------------------------------

def sequence_utility(name: str, cases: CaseStrategy, reference: Callable[..., tuple[Result, Pullback]],
                     args: Callable[[Case], Sequence[Any]], kwargs: Sequence[str], outputs: Any,
                     compared: Sequence[str],
                     regimes: Sequence[Regime], notes: str, invalid: CaseStrategy | None = None, variant: str = "",
                     ties: Callable[[Case], np.ndarray] | None = None, mutated: Sequence[str] = (),
                     comparators: Mapping[str, Comparator] | None = None) -> LayerSpec:
    """torch.nn.utils.rnn.<name> called with ``args(case)`` and the case parameters named in
    ``kwargs``. Everything is a copy: every tensor of ``compared`` is judged bit for bit, the sign
    of zeros included (``ties``: the lengths whose ties the backend may sort either way, every
    tensor then following its order); ``mutated``: inputs compared after the call."""
    if ties is not None:
        table = {n: NR.tie_comparator(reference, ties, signed_zeros=True) for n in compared}
    else:
        table = NR.copies(compared)
    return LayerSpec(
        name=name, family="utility", catalogue=UTILS + name, variant=variant,
        cases=cases, reference=reference,
        torch=TorchMapping(UTILS + name, kind="function", args=args, outputs=outputs, mutated=mutated,
                           kwargs=lambda case: {k: case.params[k] for k in kwargs}),
        tolerance=NR.COPY, comparators={**table, **(comparators or {})}, invalid_cases=invalid,
        smooth_at=moderate_padding,
        regimes=tuple(regimes), notes=f"{notes} Exact: every tensor bit for bit, signed zeros and NaN included.",
    )


def moderate_padding(case: Case) -> bool:
    """The finite-difference check of the VJP applies (every copy is linear): except where a huge
    padding_value, a constant of the loss, swamps the difference quotient in rounding errors."""
    return abs(case.params.get("padding_value", 0.0)) < 1e3 or not np.isfinite(case.params["padding_value"])


# references and calls of the utilities, one per function (each a reference.functional forward and its VJP)

def pack_padded_reference(case: Case, order: np.ndarray | None = None) -> tuple[Result, Pullback]:
    p, x, lengths = case.params, case.inputs["input"], case.inputs["lengths"]
    if order is None:
        order = rnn_utils.pack_order(x, lengths, p["batch_first"], p["enforce_sorted"])
    data, sizes, sorted_indices, unsorted_indices = rnn_utils.packed_in_order(x, lengths, order, p["batch_first"],
                                                                              p["enforce_sorted"])
    result = Result(outputs={"data": data, "batch_sizes": sizes})
    if sorted_indices is not None:
        result.outputs.update(sorted_indices=sorted_indices, unsorted_indices=unsorted_indices)
    return result, lambda g: {"input": rnn_utils.pack_vjp(g["data"], lengths, order, x.shape, p["batch_first"])}


def pack_padded_args(case: Case) -> list[Any]:
    return ["input", arg("lengths", device="cpu")]


PACKED_OUTPUTS = packed(data="data", batch_sizes="batch_sizes", sorted_indices="sorted_indices",
                        unsorted_indices="unsorted_indices")
PAD_KWARGS = ("batch_first", "padding_value", "total_length")


def pad_packed_reference(case: Case) -> tuple[Result, Pullback]:
    p, sequence = case.params, SR.packed_of(case)
    SR.representable_padding(case)
    kw = {k: p[k] for k in PAD_KWARGS}
    padded, lengths = rnn_utils.pad_packed_sequence(sequence, **kw)
    return (Result(outputs={"output": padded, "lengths": lengths}),
            lambda g: {"data": vjp("pad_packed_sequence", sequence, cotangent=g["output"], **kw)["sequence"][0]})


def packed_input(case: Case) -> list[Any]:
    """The case's PackedSequence (data, batch_sizes on the CPU and, when unsorted, its indices)."""
    fields = {"data": arg("data"), "batch_sizes": arg("batch_sizes", device="cpu")}
    if "sorted_indices" in case.inputs:
        fields.update(sorted_indices=arg("sorted_indices"), unsorted_indices=arg("unsorted_indices"))
    return [packed(**fields)]


def roundtrip_reference(case: Case) -> tuple[Result, Pullback]:
    """pad(pack(x)): x with every step past a sequence's length replaced by padding_value, over
    total_length (or the longest length) steps; the gradient passes the valid steps through."""
    p, x, lengths = case.params, case.inputs["input"], case.inputs["lengths"]
    SR.representable_padding(case)
    pack_kw = {"batch_first": p["batch_first"], "enforce_sorted": p["enforce_sorted"]}
    pad_kw = {k: p[k] for k in PAD_KWARGS}
    sequence = rnn_utils.pack_padded_sequence(x, lengths, **pack_kw)
    padded, out_lengths = rnn_utils.pad_packed_sequence(sequence, **pad_kw)

    def pullback(g: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        g_data = vjp("pad_packed_sequence", sequence, cotangent=g["output"], **pad_kw)["sequence"][0]
        return vjp("pack_padded_sequence", x, lengths, cotangent=(g_data, None, None, None), **pack_kw)

    return Result(outputs={"output": padded, "lengths": out_lengths}), pullback


def roundtrip_args(case: Case) -> list[Any]:
    return [call_node(PACK, "input", {"input": "lengths"}, batch_first=case.params["batch_first"],
                      enforce_sorted=case.params["enforce_sorted"])]


SEQUENCE_KWARGS = ("batch_first", "padding_value", "padding_side")


def pad_sequence_reference(case: Case) -> tuple[Result, Pullback]:
    sequences, names = SR.sequences_of(case), SR.sequence_names(case)
    SR.representable_padding(case)
    kw = {k: case.params[k] for k in SEQUENCE_KWARGS}
    output = rnn_utils.pad_sequence(sequences, **kw)

    def pullback(g: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, vjp("pad_sequence", sequences, cotangent=g["output"], **kw)["sequences"]))

    return Result(outputs={"output": output}), pullback


def sequence_list_args(case: Case) -> list[Any]:
    """The sequences as a Python list, or a tuple (a JSON list of nodes is a tuple)."""
    nodes = [arg(n) for n in SR.sequence_names(case)]
    return [nodes if case.params["container"] == "tuple" else {"list": nodes}]


def pack_sequence_reference(case: Case, order: np.ndarray | None = None) -> tuple[Result, Pullback]:
    names = SR.sequence_names(case)
    (data, sizes, sorted_indices, unsorted_indices), pull = rnn_utils.pack_sequence_in_order(
        SR.sequences_of(case), case.params["enforce_sorted"], order)
    result = Result(outputs={"data": data, "batch_sizes": sizes})
    if sorted_indices is not None:
        result.outputs.update(sorted_indices=sorted_indices, unsorted_indices=unsorted_indices)
    return result, lambda g: dict(zip(names, pull(g["data"])))


def unpad_reference(case: Case) -> tuple[Result, Pullback]:
    """unpad_sequence's sequences, and its input after the call: untouched."""
    x, lengths, batch_first = case.inputs["padded_sequences"], case.inputs["lengths"], case.params["batch_first"]
    sequences = rnn_utils.unpad_sequence(x, lengths, batch_first)
    names = NR.tensor_names("output", len(sequences))
    result = Result(outputs=dict(zip(names, sequences)), state={"padded_sequences": x.copy()})

    def pullback(g: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        cotangents = [g[n] for n in names]
        return vjp("unpad_sequence", x, lengths, batch_first=batch_first, cotangent=cotangents)

    return result, pullback


def unpad_args(case: Case) -> list[Any]:
    """The padded batch as the caller's own tensor (a differentiable copy, so that a transpose in
    place is seen on it after the call), the lengths an int64 tensor on the CPU."""
    return [arg("padded_sequences", copy=True), arg("lengths", device="cpu")]


def unpack_reference(case: Case) -> tuple[Result, Pullback]:
    sequence = case.inputs["data"] if case.note == "not a PackedSequence" else SR.packed_of(case)
    sequences = rnn_utils.unpack_sequence(sequence)
    names = NR.tensor_names("output", len(sequences))

    def pullback(g: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"data": vjp("unpack_sequence", sequence, cotangent=[g[n] for n in names])["packed_sequences"][0]}

    return Result(outputs=dict(zip(names, sequences))), pullback


def unpack_args(case: Case) -> list[Any]:
    return ["data"] if case.note == "not a PackedSequence" else packed_input(case)


def listed_outputs(case: Case) -> list[str]:
    """One output name per sequence of the list a function returns (a list: a pattern that
    destructures the returned list, even of one sequence)."""
    return NR.tensor_names("output", case.params.get("count", len(case.inputs.get("lengths", ()))))
