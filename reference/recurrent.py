"""Recurrent layers: torch's functional and module forms of RNN (tanh or relu), LSTM (with
projections) and GRU, built on the time-major core of ``reference.recurrent_core`` (the cell
equations, the stack over layers and directions, and its backward through time).

The core (``stack``, ``stack_vjp``) is time-major and batched: x (T, B, I), h0 (L·D, B, P), c0
(L·D, B, H), output (T, B, D·P), with P = proj_size or H. Built on it:

- ``reference.functional.rnn_tanh``, ``rnn_relu``, ``lstm``, ``gru``: torch._VF's functional forms
  (flat parameter list, padded or packed input), and ``rnn_tanh_cell``, ``rnn_relu_cell``,
  ``lstm_cell``, ``gru_cell`` (torch.rnn_tanh_cell...), each with its VJP;
- ``module_call`` and ``cell_module_call``: the modules' forwards (unbatched input, h0 omitted, a
  PackedSequence made from a padded batch), each returning its outputs and a pullback.

Every function is written over an arithmetic ``A``: ``EXACT`` (float64 NumPy: the reference) or
``reference.recurrent_errors.Tracked`` (values carrying first-order rounding-error bounds), so the
error analysis runs through exactly the computation of the reference, step by step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from reference import rnn_utils
from reference.recurrent_core import EXACT, GATES, RNNConfig, parameter_shapes, stack, stack_vjp, suffix
from reference.registry import functional

# -- torch._VF.rnn_tanh / rnn_relu / lstm / gru: the flat parameter list -------------------------------

_PARAM_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")


def between_layers(dropout: float, train: bool, num_layers: int) -> bool:
    """Whether dropout zeroes the input of every layer after the first (p = 1 in training). p = 0,
    eval mode and a single layer apply none; 0 < p < 1 in training with several layers draws random
    masks, which a reference cannot know (ValueError), as is a p outside [0, 1]."""
    if not 0.0 <= dropout <= 1.0:
        raise ValueError(f"dropout should be a number in range [0, 1], got {dropout}")
    if train and num_layers > 1 and 0.0 < dropout < 1.0:
        raise ValueError("random dropout between layers: its masks are not known to the reference")
    return bool(train and num_layers > 1 and dropout == 1.0)


def unflatten(mode: str, params: list[np.ndarray] | tuple[np.ndarray, ...], has_biases: bool, num_layers: int,
              bidirectional: bool, drop_between: bool = False) -> tuple[RNNConfig, dict[str, np.ndarray]]:
    """The stack and its weights by torch's names, out of torch's flat parameter list (per layer, per
    direction: w_ih, w_hh, [b_ih, b_hh], [w_hr]); sizes are read from the weights, a projection
    from a fifth (third without biases) weight per direction (ValueError when inconsistent)."""
    directions = 2 if bidirectional else 1
    groups = num_layers * directions
    base = 4 if has_biases else 2
    per = len(params) // max(groups, 1)
    if groups < 1 or per * groups != len(params) or per not in (base, base + 1):
        raise ValueError(f"{len(params)} parameters do not make {num_layers} layer(s) × {directions} direction(s)")
    names = _PARAM_NAMES[:2] + (_PARAM_NAMES[2:4] if has_biases else ()) + (("weight_hr",) if per > base else ())
    weights = {}
    for k in range(groups):
        layer, d = divmod(k, directions)
        for j, name in enumerate(names):
            weights[name + suffix(layer, d)] = np.asarray(params[k * per + j], dtype=np.float64)
    w_ih, w_hh = weights["weight_ih_l0"], weights["weight_hh_l0"]
    if w_ih.ndim != 2 or w_hh.ndim != 2:
        raise ValueError("weights must be matrices")
    proj = weights["weight_hr_l0"].shape[0] if per > base else 0
    cfg = RNNConfig(mode, w_ih.shape[1], w_hh.shape[0] // GATES[mode], num_layers, has_biases, bidirectional,
                    proj, drop_between)
    cfg.validate()
    for name, shape in parameter_shapes(cfg).items():
        if weights[name].shape != shape:
            raise ValueError(f"{name} has shape {weights[name].shape}, expected {shape}")
    return cfg, weights


def flatten(cfg: RNNConfig, named: dict[str, Any]) -> list[Any]:
    """Torch's flat parameter list from arrays named by torch's names."""
    return [named[name] for name in parameter_shapes(cfg)]


Pullback = Callable[..., dict[str, Any]]


def vf_call(A: Any, cfg: RNNConfig, input: Any, h0: Any, c0: Any, weights: dict[str, Any], batch_first: bool = False,
            batch_sizes: np.ndarray | None = None) -> tuple[list[Any], Pullback]:
    """The stack on a padded input (T, B, I) ((B, T, I) with ``batch_first``) or on packed data
    (N, I) with ``batch_sizes`` (sorted by decreasing length), h0 (L·D, B, P) and c0 (L·D, B, H)
    (LSTM; else None): ([output, h_n(, c_n)], pullback), output in the input's form;
    ``pullback(g_output, g_h_n, g_c_n)`` (None: a zero cotangent) gives the gradients of input, h0,
    c0 and every weight by name."""
    x_shape = A.shape(input)
    packed = batch_sizes is not None
    if x_shape[-1:] != (cfg.input_size,) or len(x_shape) != (2 if packed else 3):
        raise ValueError(f"expected an input (…, {cfg.input_size}) of {2 if packed else 3} dims, got {x_shape}")
    lengths = None
    if packed:
        sizes = np.asarray(batch_sizes, dtype=np.int64)
        if int(sizes.sum()) != x_shape[0]:
            raise ValueError(f"packed data has {x_shape[0]} rows, batch_sizes claim {int(sizes.sum())}")
        lengths = rnn_utils.lengths_of(sizes)
        order = np.arange(len(lengths))
        x_t = A.apply(lambda d: rnn_utils.pad(d, sizes, None, False, 0.0, None)[0], input)
        batch = len(lengths)
    else:
        x_t = A.apply(lambda a: np.swapaxes(a, 0, 1), input) if batch_first else input
        batch = A.shape(x_t)[1]
    states = {"h0": (h0, cfg.out_size), "c0": (c0, cfg.hidden_size)}
    for name, (state, size) in states.items():
        expected = (cfg.num_layers * cfg.directions, batch, size)
        if (state is None) != (name == "c0" and cfg.mode != "LSTM") or (state is not None
                                                                           and A.shape(state) != expected):
            raise ValueError(f"expected {name} of shape {expected}, got {None if state is None else A.shape(state)}")
    out, h_n, c_n, tape = stack(A, cfg, x_t, h0, c0, weights, lengths)
    out_shape = A.shape(out)
    if packed:
        output = A.apply(lambda a: rnn_utils.pack(a, lengths, order, False), out)
    else:
        output = A.apply(lambda a: np.swapaxes(a, 0, 1), out) if batch_first else out
    outputs = [output, h_n] + ([c_n] if cfg.mode == "LSTM" else [])

    def pullback(g_output: Any = None, g_h_n: Any = None, g_c_n: Any = None) -> dict[str, Any]:
        g_out = A.zeros(A.shape(output)) if g_output is None else g_output
        if packed:
            g_out = A.apply(lambda g: rnn_utils.pack_vjp(g, lengths, order, out_shape, False), g_out)
        elif batch_first:
            g_out = A.apply(lambda g: np.swapaxes(g, 0, 1), g_out)
        g_hn = A.zeros(A.shape(h_n)) if g_h_n is None else g_h_n
        g_cn = None if c_n is None else (A.zeros(A.shape(c_n)) if g_c_n is None else g_c_n)
        grads = stack_vjp(A, tape, g_out, g_hn, g_cn)
        if packed:
            grads["input"] = A.apply(lambda g: rnn_utils.pad_vjp(g, sizes, None, False), grads["input"])
        elif batch_first:
            grads["input"] = A.apply(lambda g: np.swapaxes(g, 0, 1), grads["input"])
        return grads

    return outputs, pullback


def _f64(a: Any) -> np.ndarray | None:
    return None if a is None else np.asarray(a, dtype=np.float64)


def _stack_call(mode: str, input: np.ndarray, hx: Any, params: Any, has_biases: bool, num_layers: int,
                dropout: float, train: bool, bidirectional: bool, batch_first: bool,
                batch_sizes: np.ndarray | None) -> tuple[RNNConfig, list[np.ndarray], Pullback]:
    cfg, weights = unflatten(mode, params, has_biases, num_layers, bidirectional,
                             between_layers(dropout, train, num_layers))
    h0, c0 = hx if mode == "LSTM" else (hx, None)
    outputs, pullback = vf_call(EXACT, cfg, _f64(input), _f64(h0), _f64(c0), weights, batch_first, batch_sizes)
    return cfg, outputs, pullback


def _stack_vjp(mode: str) -> Callable[..., dict[str, Any]]:
    def vjp(cotangent: Any, input: np.ndarray, hx: Any, params: Any, has_biases: bool, num_layers: int,
            dropout: float, train: bool, bidirectional: bool, batch_first: bool,
            batch_sizes: np.ndarray | None = None) -> dict[str, Any]:
        """{"input", "hx" (a pair for LSTM), "params" (torch's order)}: backward through time and layers."""
        cfg, _, pullback = _stack_call(mode, input, hx, params, has_biases, num_layers, dropout, train, bidirectional,
                                       batch_first, batch_sizes)
        g = pullback(*(np.asarray(c, dtype=np.float64) if c is not None else None for c in cotangent))
        return {"input": g["input"], "hx": (g["h0"], g["c0"]) if mode == "LSTM" else g["h0"],
                "params": flatten(cfg, g)}

    vjp.__name__ = f"_{mode.lower()}_vjp"
    return vjp


_STACK_DOC = """

    The {what} stack as ``torch._VF.{name}`` runs it (the argument order of its padded overload;
    packed data takes ``batch_sizes`` by keyword instead of torch's second overload ``(data,
    batch_sizes, hx, params, …)``). input (T, B, I), (B, T, I) with ``batch_first``, or packed data
    (N, I) with ``batch_sizes`` (sequences sorted by decreasing length); hx {hx}; params: torch's
    flat list, per layer and direction (forward first) ``weight_ih (G·H, I or D·P), weight_hh (G·H,
    P)``, ``bias_ih, bias_hh (G·H,)`` when ``has_biases``{proj}. Dropout acts between layers in
    training only: p = 0, eval mode or one layer: none; p = 1: the later layers get a zero input;
    0 < p < 1 is random (ValueError: its masks are unknown). Returns {returns}, output (T, B, D·P)
    in the input's form (packed: (N, D·P)). Each direction runs over each sequence's own length;
    the reverse direction starts at its last step."""


def _document(fn: Callable[..., Any], what: str, hx: str, proj: str, returns: str) -> Callable[..., Any]:
    fn.__doc__ = (fn.__doc__ or "") + _STACK_DOC.format(what=what, name=fn.__name__, hx=hx, proj=proj,
                                                        returns=returns)
    return fn


@functional(vjp=_stack_vjp("RNN_TANH"))
def rnn_tanh(input: np.ndarray, hx: np.ndarray, params: Any, has_biases: bool, num_layers: int, dropout: float,
             train: bool, bidirectional: bool, batch_first: bool,
             batch_sizes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Elman RNN: h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), layer by layer."""
    return tuple(_stack_call("RNN_TANH", input, hx, params, has_biases, num_layers, dropout, train, bidirectional,
                             batch_first, batch_sizes)[1])


@functional(vjp=_stack_vjp("RNN_RELU"))
def rnn_relu(input: np.ndarray, hx: np.ndarray, params: Any, has_biases: bool, num_layers: int, dropout: float,
             train: bool, bidirectional: bool, batch_first: bool,
             batch_sizes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Elman RNN: h_t = relu(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), layer by layer; relu'(0) = 0."""
    return tuple(_stack_call("RNN_RELU", input, hx, params, has_biases, num_layers, dropout, train, bidirectional,
                             batch_first, batch_sizes)[1])


@functional(vjp=_stack_vjp("LSTM"))
def lstm(input: np.ndarray, hx: Any, params: Any, has_biases: bool, num_layers: int, dropout: float, train: bool,
         bidirectional: bool, batch_first: bool,
         batch_sizes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LSTM: a = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh in row blocks (i, f, g, o); i, f, o =
    σ(a_i), σ(a_f), σ(a_o), g = tanh(a_g); c_t = f ⊙ c_{t-1} + i ⊙ g; h_t = o ⊙ tanh(c_t), times
    W_hr^T with a projection."""
    return tuple(_stack_call("LSTM", input, hx, params, has_biases, num_layers, dropout, train, bidirectional,
                             batch_first, batch_sizes)[1])


@functional(vjp=_stack_vjp("GRU"))
def gru(input: np.ndarray, hx: np.ndarray, params: Any, has_biases: bool, num_layers: int, dropout: float,
        train: bool, bidirectional: bool, batch_first: bool,
        batch_sizes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """GRU: row blocks (r, z, n); r = σ(x W_ir^T + b_ir + h W_hr^T + b_hr), z likewise, n = tanh(x
    W_in^T + b_in + r ⊙ (h W_hn^T + b_hn)); h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}."""
    return tuple(_stack_call("GRU", input, hx, params, has_biases, num_layers, dropout, train, bidirectional,
                             batch_first, batch_sizes)[1])


_PLAIN_HX = "(L·D, B, P)"
for _fn in (rnn_tanh, rnn_relu, gru):
    _document(_fn, _fn.__name__.upper().replace("_", " "), _PLAIN_HX, "", "(output, h_n)")
_document(lstm, "LSTM", "a pair (h0 (L·D, B, P), c0 (L·D, B, H)), P = proj_size or H",
          ", then ``weight_hr (P, H)`` with a projection", "(output, h_n, c_n)")


# -- torch.rnn_tanh_cell / rnn_relu_cell / lstm_cell / gru_cell -------------------------------------------

def cell_call(A: Any, mode: str, input: Any, h: Any, c: Any, w_ih: Any, w_hh: Any, b_ih: Any = None,
              b_hh: Any = None) -> tuple[list[Any], Pullback]:
    """One step of the cell: input (B, I), h (B, H), c (B, H) (LSTM; else None) -> ([h'(, c')],
    pullback); ``pullback(g_h, g_c)`` gives the gradients of input, h, c, w_ih, w_hh, b_ih, b_hh.
    It is the one-layer, one-direction stack over one step."""
    hidden = A.shape(w_hh)[-1]
    cfg = RNNConfig(mode, A.shape(w_ih)[-1], hidden, bias=b_ih is not None)
    weights = {"weight_ih_l0": w_ih, "weight_hh_l0": w_hh}
    if b_ih is not None:
        weights.update(bias_ih_l0=b_ih, bias_hh_l0=b_hh)
    for name, shape in parameter_shapes(cfg).items():
        if A.shape(weights[name]) != shape:
            raise ValueError(f"{name} has shape {A.shape(weights[name])}, expected {shape}")
    x_shape = A.shape(input)
    if len(x_shape) != 2 or x_shape[1] != cfg.input_size:
        raise ValueError(f"expected an input (B, {cfg.input_size}), got {x_shape}")
    for name, state in (("hx", h), ("cx", c)):
        if state is not None and A.shape(state) != (x_shape[0], hidden):
            raise ValueError(f"expected {name} of shape {(x_shape[0], hidden)}, got {A.shape(state)}")
    def lead(a: np.ndarray) -> np.ndarray:
        return a[None]

    c1 = None if c is None else A.apply(lead, c)
    out, h_n, c_n, tape = stack(A, cfg, A.apply(lead, input), A.apply(lead, h), c1, weights)
    outputs = [A.take(h_n, 0)] + ([A.take(c_n, 0)] if mode == "LSTM" else [])

    def pullback(g_h: Any = None, g_c: Any = None) -> dict[str, Any]:
        g_hn = A.zeros(A.shape(h_n)) if g_h is None else A.apply(lead, g_h)
        g_cn = None if c_n is None else (A.zeros(A.shape(c_n)) if g_c is None else A.apply(lead, g_c))
        # The one step's output is h_n itself: its cotangent comes through h_n.
        g = stack_vjp(A, tape, A.zeros(A.shape(out)), g_hn, g_cn)
        grads = {"input": A.take(g["input"], 0), "hx": A.take(g["h0"], 0), "w_ih": g["weight_ih_l0"],
                 "w_hh": g["weight_hh_l0"]}
        if c is not None:
            grads["cx"] = A.take(g["c0"], 0)
        if b_ih is not None:
            grads.update(b_ih=g["bias_ih_l0"], b_hh=g["bias_hh_l0"])
        return grads

    return outputs, pullback


def _cell_exact(mode: str, input: np.ndarray, hx: Any, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: Any,
                b_hh: Any) -> tuple[list[np.ndarray], Pullback]:
    h, c = hx if mode == "LSTM" else (hx, None)
    x = _f64(input)
    one = x.ndim == 1  # an unbatched call: one row

    def add(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else (a[None] if one else a)

    outputs, pullback = cell_call(EXACT, mode, add(x), add(_f64(h)), add(_f64(c)), _f64(w_ih), _f64(w_hh),
                                  _f64(b_ih), _f64(b_hh))
    if not one:
        return outputs, pullback

    def unbatched_pullback(*cotangents: np.ndarray | None) -> dict[str, Any]:
        grads = pullback(*(add(g) for g in cotangents))
        return {k: (v[0] if k in ("input", "hx", "cx") else v) for k, v in grads.items()}

    return [o[0] for o in outputs], unbatched_pullback


def _cell_vjp(mode: str) -> Callable[..., dict[str, Any]]:
    def vjp(cotangent: Any, input: np.ndarray, hx: Any, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: Any = None,
            b_hh: Any = None) -> dict[str, Any]:
        """{"input", "hx" (a pair for LSTM), "w_ih", "w_hh", "b_ih", "b_hh"}: the step's backward."""
        _, pullback = _cell_exact(mode, input, hx, w_ih, w_hh, b_ih, b_hh)
        cot = cotangent if mode == "LSTM" else (cotangent,)
        g = pullback(*(None if c is None else np.asarray(c, dtype=np.float64) for c in cot))
        if mode == "LSTM":
            g["hx"] = (g["hx"], g.pop("cx"))
        return g

    vjp.__name__ = f"_{mode.lower()}_cell_vjp"
    return vjp


def _cell_example(gates: int) -> Callable[[np.random.Generator], tuple[tuple, dict]]:
    def example(rng: np.random.Generator) -> tuple[tuple, dict]:
        b, i, h = 3, 4, 2
        return (rng.standard_normal((b, i)), rng.standard_normal((b, h)), rng.uniform(-0.7, 0.7, (gates * h, i)),
                rng.uniform(-0.7, 0.7, (gates * h, h)), rng.uniform(-0.7, 0.7, gates * h),
                rng.uniform(-0.7, 0.7, gates * h)), {}

    return example


_CELL_DOC = """

    input (B, I) or (I,), hx {hx}, w_ih (G·H, I), w_hh (G·H, H), b_ih and b_hh (G·H,) or None
    (G = {gates} gate blocks, stacked by rows in the order above). Returns {returns}."""


@functional(vjp=_cell_vjp("RNN_TANH"), example=_cell_example(1))
def rnn_tanh_cell(input: np.ndarray, hx: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: Any = None,
                  b_hh: Any = None) -> np.ndarray:
    """One Elman step: h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)."""
    return _cell_exact("RNN_TANH", input, hx, w_ih, w_hh, b_ih, b_hh)[0][0]


@functional(vjp=_cell_vjp("RNN_RELU"), example=_cell_example(1))
def rnn_relu_cell(input: np.ndarray, hx: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: Any = None,
                  b_hh: Any = None) -> np.ndarray:
    """One Elman step: h' = relu(x W_ih^T + b_ih + h W_hh^T + b_hh); relu'(0) = 0."""
    return _cell_exact("RNN_RELU", input, hx, w_ih, w_hh, b_ih, b_hh)[0][0]


@functional(vjp=_cell_vjp("LSTM"))
def lstm_cell(input: np.ndarray, hx: Any, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: Any = None,
              b_hh: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """One LSTM step: blocks (i, f, g, o) of a = x W_ih^T + b_ih + h W_hh^T + b_hh; c' = σ(a_f) ⊙ c
    + σ(a_i) ⊙ tanh(a_g); h' = σ(a_o) ⊙ tanh(c')."""
    return tuple(_cell_exact("LSTM", input, hx, w_ih, w_hh, b_ih, b_hh)[0])


@functional(vjp=_cell_vjp("GRU"), example=_cell_example(3))
def gru_cell(input: np.ndarray, hx: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: Any = None,
             b_hh: Any = None) -> np.ndarray:
    """One GRU step: blocks (r, z, n); r = σ(x W_ir^T + b_ir + h W_hr^T + b_hr), z likewise, n =
    tanh(x W_in^T + b_in + r ⊙ (h W_hn^T + b_hn)); h' = (1 - z) ⊙ n + z ⊙ h."""
    return _cell_exact("GRU", input, hx, w_ih, w_hh, b_ih, b_hh)[0][0]


for _fn, _gates, _hx, _ret in ((rnn_tanh_cell, 1, "(B, H) or (H,)", "h'"), (rnn_relu_cell, 1, "(B, H) or (H,)", "h'"),
                               (gru_cell, 3, "(B, H) or (H,)", "h'"),
                               (lstm_cell, 4, "a pair (h, c), each (B, H) or (H,)", "(h', c')")):
    _fn.__doc__ = (_fn.__doc__ or "") + _CELL_DOC.format(hx=_hx, gates=_gates, returns=_ret)


# -- the modules: nn.RNN / LSTM / GRU and nn.RNNCell / LSTMCell / GRUCell.forward ---------------------

@dataclass(frozen=True)
class Form:
    """How a module's input is given: ``batch_first`` (B, T, I), ``unbatched`` (T, I) with h0
    (L·D, P), or ``lengths`` (packed by pack_padded_sequence from the padded input, sorted by
    ``order``: the output is then the packed data)."""

    batch_first: bool = False
    unbatched: bool = False
    lengths: np.ndarray | None = None
    order: np.ndarray | None = None


def module_call(A: Any, cfg: RNNConfig, form: Form, inputs: dict[str, np.ndarray]) -> tuple[dict[str, Any], Pullback]:
    """nn.RNN / LSTM / GRU's forward on the named ``inputs`` (input, h0 and c0 when given, zeros
    otherwise, the weights by torch's names): outputs ``output`` (in the input's form, or the
    packed data), ``h_n`` and ``c_n`` (LSTM), and ``pullback({output name: cotangent})`` giving
    the gradients of input, of h0/c0 when given, and of every weight. A packed batch runs sorted
    by ``form.order`` (h0 and c0 permuted to it, h_n and c_n back to the caller's order), each
    sequence over its own length, on ``vf_call``."""
    x = A.leaf("input", inputs["input"])
    if len(A.shape(x)) != (2 if form.unbatched else 3):
        raise ValueError(f"expected a {'2' if form.unbatched else '3'}-d input, got {A.shape(x)}")
    lstm_mode = cfg.mode == "LSTM"
    unbatched = (lambda a: a[:, None]) if form.unbatched else None
    if unbatched is not None:
        x = A.apply(unbatched, x)
    batch_first = form.batch_first and not form.unbatched
    batch = A.shape(x)[0 if batch_first else 1]
    layers = cfg.num_layers * cfg.directions
    states = {}
    for name, size in (("h0", cfg.out_size), ("c0", cfg.hidden_size)) if lstm_mode else (("h0", cfg.out_size),):
        if name not in inputs:
            states[name] = A.zeros((layers, batch, size))
            continue
        expected = (layers, size) if form.unbatched else (layers, batch, size)
        if inputs[name].shape != expected:
            raise ValueError(f"expected {name} of shape {expected}, got {inputs[name].shape}")
        states[name] = (A.leaf(name, inputs[name]) if unbatched is None
                        else A.apply(unbatched, A.leaf(name, inputs[name])))
    sizes, order = None, None
    x_shape = A.shape(x)
    if form.lengths is not None:
        lengths, order = np.asarray(form.lengths), np.asarray(form.order)
        x = A.apply(lambda a: rnn_utils.pack(a, lengths, order, batch_first), x)
        sizes = rnn_utils.batch_sizes(lengths[order])
        states = {k: A.apply(lambda a: a[:, order], v) for k, v in states.items()}
    weights = {name: A.leaf(name, inputs[name]) for name in parameter_shapes(cfg)}
    outs, pull = vf_call(A, cfg, x, states["h0"], states.get("c0"), weights, batch_first, sizes)
    restore = (lambda a: a[:, np.argsort(order)]) if order is not None else (lambda a: a)
    squeeze = (lambda a: a[:, 0]) if form.unbatched else (lambda a: a)
    outputs = {"output": A.apply(squeeze, outs[0]), "h_n": A.apply(lambda a: squeeze(restore(a)), outs[1])}
    if lstm_mode:
        outputs["c_n"] = A.apply(lambda a: squeeze(restore(a)), outs[2])

    def pullback(cotangents: dict[str, Any]) -> dict[str, Any]:
        expand = (lambda a: a) if unbatched is None else unbatched
        sort = (lambda a: a[:, order]) if order is not None else (lambda a: a)
        g = {k: A.const(cotangents[k]) for k in outputs if k in cotangents}
        g_out = A.apply(expand, g["output"]) if "output" in g else None
        states_g = [A.apply(lambda a: sort(expand(a)), g[k]) if k in g else None for k in ("h_n", "c_n")]
        grads = pull(g_out, *states_g)
        g_x = grads.pop("input")
        if sizes is not None:
            g_x = A.apply(lambda a: rnn_utils.pack_vjp(a, lengths, order, x_shape, batch_first), g_x)
        result = {"input": A.apply(squeeze, g_x)}
        for name in ("h0", "c0"):
            value = grads.pop(name, None)
            if name in inputs:
                result[name] = A.apply(lambda a: squeeze(restore(a)), value)
        result.update(grads)
        return result

    return outputs, pullback


CELL_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def cell_module_call(A: Any, mode: str, inputs: dict[str, np.ndarray]) -> tuple[dict[str, Any], Pullback]:
    """nn.RNNCell / LSTMCell / GRUCell's forward on the named ``inputs`` (input (B, I) or (I,); h0
    and c0 for hx and cx when given, zeros otherwise; weight_ih, weight_hh, bias_ih, bias_hh):
    outputs ``h`` (and ``c``) and ``pullback({"h": …, "c": …})`` giving the gradients by the
    same names (h0/c0 only when given), on ``cell_call``."""
    x = inputs["input"]
    if x.ndim not in (1, 2):
        raise ValueError(f"expected an input (B, I) or (I,), got {x.shape}")
    one = x.ndim == 1
    hidden = inputs["weight_hh"].shape[-1]
    lead = (lambda a: a[None]) if one else (lambda a: a)
    states = {}
    for name in ("h0", "c0") if mode == "LSTM" else ("h0",):
        if name in inputs and inputs[name].shape != (*x.shape[:-1], hidden):
            raise ValueError(f"expected hx of shape {(*x.shape[:-1], hidden)}, got {inputs[name].shape}")
        states[name] = (A.apply(lead, A.leaf(name, inputs[name])) if name in inputs
                        else A.zeros((1 if one else x.shape[0], hidden)))
    w = {name: A.leaf(name, inputs[name]) if name in inputs else None for name in CELL_WEIGHTS}
    outs, pull = cell_call(A, mode, A.apply(lead, A.leaf("input", x)), states["h0"], states.get("c0"), *w.values())
    drop = (lambda a: a[0]) if one else (lambda a: a)
    outputs = {name: A.apply(drop, value) for name, value in zip(("h", "c"), outs)}

    def pullback(cotangents: dict[str, Any]) -> dict[str, Any]:
        g = pull(*(A.apply(lead, A.const(cotangents[k])) if k in cotangents else None for k in outputs))
        result = {"input": A.apply(drop, g["input"])}
        for name, key in (("h0", "hx"), ("c0", "cx")):
            if name in inputs:
                result[name] = A.apply(drop, g[key])
        names = {"w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh"}
        result.update({names[k]: v for k, v in g.items() if k in names})
        return result

    return outputs, pullback


# Example calls of the functions whose arguments nest arrays in tuples and lists (hx pairs, the
# flat parameter list), for the finite-difference check of their VJPs
# (tests/reference/test_recurrent_reference.py).
def _stack_example(mode: str, **kw: Any) -> Callable[[np.random.Generator], tuple[tuple, dict]]:
    def example(rng: np.random.Generator) -> tuple[tuple, dict]:
        cfg = RNNConfig(mode, 3, 2, kw.get("num_layers", 1), True, kw.get("bidirectional", False), kw.get("proj", 0))
        params = [rng.uniform(-0.7, 0.7, s) for s in parameter_shapes(cfg).values()]
        states = (cfg.num_layers * cfg.directions, 3)
        h0 = rng.standard_normal((*states, cfg.out_size))
        hx = (h0, rng.standard_normal((*states, cfg.hidden_size))) if mode == "LSTM" else h0
        sizes = kw.get("batch_sizes")
        padded = (3, 4, 3) if kw.get("batch_first") else (4, 3, 3)  # B = 3, T = 4
        x = rng.standard_normal((int(np.sum(sizes)), 3) if sizes is not None else padded)
        args = (x, hx, params, True, cfg.num_layers, 0.0, False, cfg.bidirectional, kw.get("batch_first", False))
        return args, ({"batch_sizes": np.asarray(sizes)} if sizes is not None else {})

    return example


NESTED_EXAMPLES: dict[str, Callable[[np.random.Generator], tuple[tuple, dict]]] = {
    "rnn_tanh": _stack_example("RNN_TANH", num_layers=2, bidirectional=True),
    "rnn_relu": _stack_example("RNN_RELU", batch_first=True),
    "lstm": _stack_example("LSTM", proj=1, bidirectional=True, batch_sizes=(3, 2, 2, 1)),
    "gru": _stack_example("GRU", num_layers=2, batch_sizes=(3, 3, 1)),
    "lstm_cell": lambda rng: ((rng.standard_normal((3, 4)), (rng.standard_normal((3, 2)), rng.standard_normal((3, 2))),
                               rng.uniform(-0.7, 0.7, (8, 4)), rng.uniform(-0.7, 0.7, (8, 2)),
                               rng.uniform(-0.7, 0.7, 8), rng.uniform(-0.7, 0.7, 8)), {}),
}
