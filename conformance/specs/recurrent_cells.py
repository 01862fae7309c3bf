"""RNNCell, LSTMCell and GRUCell: one step of the recurrences of ``conformance.specs.recurrent``.

A cell is the one-layer, one-direction stack over a single step: the reference and its running
error analysis are the sequence ones (``reference.recurrent.run``) on x[None] and hx[None], with
the cell's weights under the stack's names (weight_ih -> weight_ih_l0). Input (B, I) or unbatched
(I,); hx (and cx) given or omitted (zeros). Outputs h' (and c'), named ``h`` and ``c``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case, Result
from conformance import strategies as S
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec, Regime, Tolerance, TorchMapping, arg, declare, result_reference
from conformance.specs.recurrent import (
    LARGE,
    SATURATED,
    TOLERANCE_NOTE,
    as_magnitudes,
    cached_magnitude,
    draw_values,
    draw_weights,
    float_values,
    max_preactivation,
    mode_of,
)
from reference import recurrent as ref
from reference.recurrent_errors import Tracked

CELLS = {"RNNCell": "RNN", "LSTMCell": "LSTM", "GRUCell": "GRU"}
WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
INVALID = ("wrong input_size", "hx of the wrong shape")


@st.composite
def _cell_case(draw: Any, op: str, dtype: str, invalid: str = "") -> Case:
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
    cfg = ref.RNNConfig(mode_of(CELLS[op], params), input_size, hidden, bias=bias)
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


def _config(case: Case) -> tuple[ref.RNNConfig, ref.Form]:
    """The one-step stack of the cell, its shapes checked as torch checks them (ValueError)."""
    p, x = case.params, case.inputs["input"]
    cfg = ref.RNNConfig(mode_of(CELLS[case.op], p), p["input_size"], p["hidden_size"], bias=p["bias"])
    cfg.validate()
    if x.ndim not in (1, 2) or x.shape[-1] != cfg.input_size:
        raise ValueError(f"expected an input (B, {cfg.input_size}) or ({cfg.input_size},), got {x.shape}")
    for name in ("h0", "c0"):
        if name in case.inputs and case.inputs[name].shape != (*x.shape[:-1], cfg.hidden_size):
            raise ValueError(f"expected hx of shape {(*x.shape[:-1], cfg.hidden_size)}, got {case.inputs[name].shape}")
    return cfg, ref.Form(unbatched=x.ndim == 1)


def _sequence_inputs(case: Case) -> dict[str, np.ndarray]:
    """The cell's inputs as a one-step, one-layer stack's: (1, ...) and the stack's weight names."""
    out = {f"{name}_l0": case.inputs[name] for name in WEIGHTS if name in case.inputs}
    out.update({name: case.inputs[name][None] for name in ("input", "h0", "c0") if name in case.inputs})
    return out


def cell_run(A: Any, case: Case, cotangent: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(outputs h, c; grads by the cell's names) through the sequence reference."""
    cfg, form = _config(case)
    names = {"h_n": "h", "c_n": "c"}
    seq_cotangent = None
    if cotangent is not None:
        def seq_cotangent(name: str, value: Any) -> np.ndarray:
            if name == "output":  # the one step's output is h_n itself: its cotangent comes through h_n
                return np.zeros(A.shape(value))
            return cotangent(names[name], A.take(value, 0))[None]
    outputs, grads = ref.run(A, cfg, form, _sequence_inputs(case), seq_cotangent)
    cell_outputs = {names[k]: A.take(v, 0) for k, v in outputs.items() if k in names}
    cell_grads = {k.removesuffix("_l0"): (A.take(v, 0) if k in ("input", "h0", "c0") else v) for k, v in grads.items()}
    return cell_outputs, cell_grads


def _cell_reference(case: Case, backward: bool) -> Result:
    cotangent = (lambda name, like: S.output_gradient(case, name, like)) if backward else None
    outputs, grads = cell_run(ref.EXACT, case, cotangent)
    return Result(outputs=outputs, grads=grads)


def _compute_cell_magnitude(case: Case, result: Result) -> dict[str, np.ndarray]:
    dt = DTYPES[case.dtype]
    cotangent = (lambda name, _: case.cotangents[name]) if result.grads else None
    outputs, grads = cell_run(Tracked(dt.unit_roundoff, dt.min_subnormal, dt.min_normal), case, cotangent)
    bounds = {name: b.total for name, b in outputs.items()}
    bounds.update({f"grad.{name}": b.total for name, b in grads.items()})
    return as_magnitudes(case, result, bounds)


def _cell_magnitude(case: Case, result: Result) -> dict[str, np.ndarray]:
    """First-order bounds of h', c' and every gradient (``reference.recurrent_errors``)."""
    return cached_magnitude(case, result, _compute_cell_magnitude)


def _args(case: Case) -> list[Any]:
    if "h0" not in case.inputs:
        return ["input"]
    return ["input", [arg("h0"), arg("c0")]] if case.op == "LSTMCell" else ["input", "h0"]


def _regimes(op: str) -> tuple[Regime, ...]:
    regimes = [
        Regime("hx omitted, no bias", lambda c: "h0" not in c.inputs and not c.params["bias"],
               {"hx": "omitted", "bias": False}),
        Regime("unbatched", lambda c: c.inputs["input"].ndim == 1, {"input form": "unbatched", "hx": "given"},
               "input (I,), hx (H,)"),
        Regime("large pre-activations (saturated gates)",
               lambda c: max_preactivation(c, "weight_ih", "bias_ih") >= SATURATED,
               {"scale": "large", "nonlinearity": "tanh", "input form": "batched", "B": 4, "input_size": 4,
                "hidden_size": 4}, f"inputs and weights ×{LARGE}: σ' and tanh' near 0"),
    ]
    if op == "RNNCell":
        regimes.append(Regime("relu nonlinearity", lambda c: c.params["nonlinearity"] == "relu",
                              {"nonlinearity": "relu"}))
    return tuple(regimes)


for _op, _base in CELLS.items():
    declare(LayerSpec(
        name=_op, family="recurrent", kind="cell",
        cases=(lambda op: lambda dtype: _cell_case(op, dtype))(_op),
        reference=result_reference(_cell_reference),
        torch=TorchMapping(f"torch.nn.{_op}", parameters=WEIGHTS, args=_args, kwargs=lambda case: {},
                           outputs=("h", "c") if _op == "LSTMCell" else ("h",)),
        tolerance=Tolerance(reduction=1, magnitude=_cell_magnitude, c=1.0, out_ulps=1.0, exact="none"),
        invalid_cases=(lambda op: lambda dtype: st.sampled_from(INVALID).flatmap(
            lambda kind: _cell_case(op, dtype, kind)))(_op),
        regimes=_regimes(_op),
        notes=(f"One step of {_base} (see {_base}): h' (and c') from input (B, I) or (I,) and hx (and cx), given or "
               f"omitted (zeros). Tolerance: {TOLERANCE_NOTE}."),
    ))
