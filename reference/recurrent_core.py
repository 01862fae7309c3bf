"""The core of the recurrent reference: RNN (tanh or relu), LSTM (with projections) and GRU cells,
run over time and layers, with their backward through time.

Per time step t and batch row (torch's documented equations; ``x W^T`` row by row):

- RNN:  h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), act = tanh or relu.
- LSTM: a = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh, split into row blocks (i, f, g, o);
  i, f, o = σ(a_i), σ(a_f), σ(a_o), g = tanh(a_g); c_t = f ⊙ c_{t-1} + i ⊙ g;
  h_t = o ⊙ tanh(c_t), then h_t W_hr^T with a projection (proj_size > 0).
- GRU:  blocks (r, z, n): r = σ(x W_ir^T + b_ir + h W_hr^T + b_hr), z likewise,
  n = tanh(x W_in^T + b_in + r ⊙ (h W_hn^T + b_hn)), h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}.

A stack has ``num_layers`` layers of one or two directions; the input of layer l > 0 is the
concatenation of layer l - 1's outputs (forward direction first), zeroed when dropout p = 1 acts
in training mode (the only stochastic point modelled: p = 0 and eval mode apply no dropout, and
dropout never follows the last layer). h_n stacks the final states layer by layer, forward
direction first: index l·D + d. With per-sequence ``lengths`` (a packed batch), sequence b runs
over its own steps t < L_b in each direction: its state is held outside them, the reverse
direction starts at t = L_b - 1 from h0, and its outputs there are zero (not part of the data).

The core (``stack``, ``stack_vjp``) is time-major and batched: x (T, B, I), h0 (L·D, B, P), c0
(L·D, B, H), output (T, B, D·P), with P = proj_size or H. ``reference.recurrent`` builds torch's
functional and module forms on it.

Every function is written over an arithmetic ``A``: ``EXACT`` (float64 NumPy: the reference) or
``reference.recurrent_errors.Tracked`` (values carrying first-order rounding-error bounds), so the
error analysis runs through exactly the computation of the reference, step by step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from reference import libm

GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


class Exact:
    """Float64 NumPy arithmetic (the reference). ``Tracked`` mirrors every method."""

    def const(self, a: np.ndarray) -> np.ndarray:
        return np.asarray(a, dtype=np.float64)

    def leaf(self, name: str, a: np.ndarray) -> np.ndarray:
        """The module's input ``name`` (input, h0, c0, a weight): a constant here; an arithmetic
        carrying tangents gives it its direction (``reference.recurrent_errors.DualTracked``)."""
        return self.const(a)

    def apply(self, fn: Callable[[np.ndarray], np.ndarray], a: np.ndarray) -> np.ndarray:
        """A linear rearrangement of the elements (transpose, gather, scatter)."""
        return fn(a)

    def shape(self, a: np.ndarray) -> tuple[int, ...]:
        return a.shape

    def zeros(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros(shape)

    def affine(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
        """x W^T + b: x (..., K), w (N, K), b (N,)."""
        y = x @ w.T
        return y if b is None else y + b

    def mm(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """a @ b: (..., K) @ (K, N)."""
        return a @ b

    def outer_sum(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Σ over every leading index of a ⊗ b: (..., M), (..., N) -> (M, N)."""
        return a.reshape(-1, a.shape[-1]).T @ b.reshape(-1, b.shape[-1])

    def sum_rows(self, a: np.ndarray) -> np.ndarray:
        """Σ over every leading index: (..., N) -> (N,)."""
        return a.reshape(-1, a.shape[-1]).sum(axis=0)

    def add(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a + b

    def sub(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a - b

    def mul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a * b

    def one_minus(self, a: np.ndarray) -> np.ndarray:
        return 1.0 - a

    def sigmoid(self, a: np.ndarray) -> np.ndarray:
        return libm.sigmoid(a)

    def tanh(self, a: np.ndarray) -> np.ndarray:
        return np.tanh(a)

    def relu(self, a: np.ndarray) -> np.ndarray:
        return np.maximum(a, 0.0)

    def relu_grad(self, g: np.ndarray, a: np.ndarray) -> np.ndarray:
        """g where a > 0, else 0 (the derivative at 0 is taken as 0, as torch does)."""
        return np.where(a > 0, g, 0.0)

    def where(self, mask: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.where(mask, a, b)

    def split(self, a: np.ndarray, n: int) -> list[np.ndarray]:
        return np.split(a, n, axis=-1)

    def cat(self, parts: list[np.ndarray]) -> np.ndarray:
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)

    def stack(self, parts: list[np.ndarray]) -> np.ndarray:
        return np.stack(parts)

    def take(self, a: np.ndarray, index: Any) -> np.ndarray:
        return a[index]


EXACT = Exact()


@dataclass(frozen=True)
class RNNConfig:
    """A recurrent stack: ``mode`` RNN_TANH | RNN_RELU | LSTM | GRU; ``drop_between``: dropout
    p = 1 acts in training mode, so every layer after the first gets a zero input."""

    mode: str
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    bidirectional: bool = False
    proj_size: int = 0
    drop_between: bool = False

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def out_size(self) -> int:
        """P: the size of h (proj_size, else hidden_size)."""
        return self.proj_size or self.hidden_size

    @property
    def gates(self) -> int:
        return GATES[self.mode]

    def layer_input_size(self, layer: int) -> int:
        return self.input_size if layer == 0 else self.directions * self.out_size

    def validate(self) -> None:
        """What torch's constructor checks (ValueError)."""
        if self.mode not in GATES:
            raise ValueError(f"unknown mode {self.mode!r}")
        if min(self.input_size, self.hidden_size, self.num_layers) < 1:
            raise ValueError("input_size, hidden_size and num_layers must be positive")
        if self.proj_size < 0 or (self.proj_size and self.mode != "LSTM"):
            raise ValueError("proj_size must be >= 0 and is only supported for LSTM")
        if self.proj_size >= self.hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")


def suffix(layer: int, direction: int) -> str:
    return f"_l{layer}" + ("_reverse" if direction else "")


def parameter_shapes(cfg: RNNConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter, in torch's order (per layer, per direction: w_ih, w_hh, b_ih, b_hh, w_hr)."""
    g, h, p = cfg.gates * cfg.hidden_size, cfg.hidden_size, cfg.out_size
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in range(cfg.num_layers):
        for d in range(cfg.directions):
            s = suffix(layer, d)
            shapes[f"weight_ih{s}"] = (g, cfg.layer_input_size(layer))
            shapes[f"weight_hh{s}"] = (g, p)
            if cfg.bias:
                shapes[f"bias_ih{s}"] = (g,)
                shapes[f"bias_hh{s}"] = (g,)
            if cfg.proj_size:
                shapes[f"weight_hr{s}"] = (p, h)
    return shapes


# -- one step of each cell, and its VJP ------------------------------------------------------------
# step(A, xw, h, c, w) -> (h_t, c_t, cache); xw = x_t W_ih^T + b_ih (precomputed for every step).
# step_vjp(A, cache, h, c, dh, dc, w) -> (d of xw, d of h W_hh^T + b_hh, dh_prev, dc_prev).

def _dsigmoid(A: Any, s: Any) -> Any:
    return A.mul(s, A.one_minus(s))


def _dtanh(A: Any, t: Any) -> Any:
    return A.one_minus(A.mul(t, t))


def _rnn_step(A: Any, xw: Any, h: Any, c: Any, w: dict[str, Any], relu: bool) -> tuple[Any, Any, tuple]:
    a = A.add(xw, A.affine(h, w["weight_hh"], w.get("bias_hh")))
    h1 = A.relu(a) if relu else A.tanh(a)
    return h1, None, (a, h1)


def _rnn_step_vjp(A: Any, cache: tuple, h: Any, c: Any, dh: Any, dc: Any, w: dict[str, Any],
                  relu: bool) -> tuple[Any, Any, Any, Any]:
    a, h1 = cache
    da = A.relu_grad(dh, a) if relu else A.mul(dh, _dtanh(A, h1))
    return da, da, A.mm(da, w["weight_hh"]), None


def _lstm_step(A: Any, xw: Any, h: Any, c: Any, w: dict[str, Any]) -> tuple[Any, Any, tuple]:
    a = A.add(xw, A.affine(h, w["weight_hh"], w.get("bias_hh")))
    ai, af, ag, ao = A.split(a, 4)
    i, f, g, o = A.sigmoid(ai), A.sigmoid(af), A.tanh(ag), A.sigmoid(ao)
    c1 = A.add(A.mul(f, c), A.mul(i, g))
    tc = A.tanh(c1)
    hr = A.mul(o, tc)
    h1 = A.affine(hr, w["weight_hr"]) if "weight_hr" in w else hr
    return h1, c1, (i, f, g, o, tc, hr)


def _lstm_step_vjp(A: Any, cache: tuple, h: Any, c: Any, dh: Any, dc: Any,
                   w: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    i, f, g, o, tc, _ = cache
    dhr = A.mm(dh, w["weight_hr"]) if "weight_hr" in w else dh
    dc1 = A.add(dc, A.mul(A.mul(dhr, o), _dtanh(A, tc)))
    da = A.cat([A.mul(A.mul(dc1, g), _dsigmoid(A, i)), A.mul(A.mul(dc1, c), _dsigmoid(A, f)),
                A.mul(A.mul(dc1, i), _dtanh(A, g)), A.mul(A.mul(dhr, tc), _dsigmoid(A, o))])
    return da, da, A.mm(da, w["weight_hh"]), A.mul(dc1, f)


def _gru_step(A: Any, xw: Any, h: Any, c: Any, w: dict[str, Any]) -> tuple[Any, Any, tuple]:
    xr, xz, xn = A.split(xw, 3)
    hr, hz, hn = A.split(A.affine(h, w["weight_hh"], w.get("bias_hh")), 3)
    r, z = A.sigmoid(A.add(xr, hr)), A.sigmoid(A.add(xz, hz))
    n = A.tanh(A.add(xn, A.mul(r, hn)))
    h1 = A.add(A.mul(A.one_minus(z), n), A.mul(z, h))
    return h1, None, (r, z, n, hn)


def _gru_step_vjp(A: Any, cache: tuple, h: Any, c: Any, dh: Any, dc: Any,
                  w: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    r, z, n, hn = cache
    dpn = A.mul(A.mul(dh, A.one_minus(z)), _dtanh(A, n))
    dar = A.mul(A.mul(dpn, hn), _dsigmoid(A, r))
    daz = A.mul(A.mul(dh, A.sub(h, n)), _dsigmoid(A, z))
    d_hh = A.cat([dar, daz, A.mul(dpn, r)])
    return A.cat([dar, daz, dpn]), d_hh, A.add(A.mul(dh, z), A.mm(d_hh, w["weight_hh"])), None


def _cell(mode: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    if mode == "LSTM":
        return _lstm_step, _lstm_step_vjp
    if mode == "GRU":
        return _gru_step, _gru_step_vjp
    relu = mode == "RNN_RELU"
    return ((lambda *a: _rnn_step(*a, relu=relu)), (lambda *a: _rnn_step_vjp(*a, relu=relu)))


# -- one direction of one layer ---------------------------------------------------------------------

@dataclass
class _DirectionTape:
    """What the backward of one direction needs: its weights, input and per-step caches."""

    weights: dict[str, Any]
    x: Any
    steps: list[tuple[int, Any, Any, tuple]]  # (t, h before, c before, cache) in processing order


def _direction(A: Any, cfg: RNNConfig, x: Any, h: Any, c: Any, w: dict[str, Any], active: np.ndarray | None,
               reverse: bool) -> tuple[Any, Any, Any, _DirectionTape]:
    """Run one direction over the T steps of x (T, B, in); returns (outputs (T, B, P), h_n, c_n, tape)."""
    step, _ = _cell(cfg.mode)
    steps_count = A.shape(x)[0]
    xw = A.affine(x, w["weight_ih"], w.get("bias_ih"))
    outs: list[Any] = [None] * steps_count
    tape = _DirectionTape(w, x, [])
    for t in (range(steps_count - 1, -1, -1) if reverse else range(steps_count)):
        h1, c1, cache = step(A, A.take(xw, t), h, c, w)
        tape.steps.append((t, h, c, cache))
        if active is not None and not active[t].all():
            m = active[t][:, None]
            h1 = A.where(m, h1, h)
            c1 = None if c is None else A.where(m, c1, c)
            outs[t] = A.where(m, h1, A.zeros(A.shape(h1)))
        else:
            outs[t] = h1
        h, c = h1, c1
    return A.stack(outs), h, c, tape


def _direction_vjp(A: Any, cfg: RNNConfig, tape: _DirectionTape, g_out: Any, dh: Any, dc: Any,
                   active: np.ndarray | None) -> tuple[Any, Any, Any, dict[str, Any]]:
    """Backward through time of one direction: (grad of x, of h0, of c0, of its weights)."""
    _, step_vjp = _cell(cfg.mode)
    w = tape.weights
    steps_count = len(tape.steps)
    d_ih: list[Any] = [None] * steps_count
    d_hh: list[Any] = [None] * steps_count
    h_prev: list[Any] = [None] * steps_count
    d_h1: list[Any] = [None] * steps_count
    for t, h, c, cache in reversed(tape.steps):
        m = None if active is None or active[t].all() else active[t][:, None]
        g_t = A.take(g_out, t)
        dh = A.add(dh, g_t if m is None else A.where(m, g_t, A.zeros(A.shape(g_t))))
        dih, dhh, dh_prev, dc_prev = step_vjp(A, cache, h, c, dh, dc, w)
        if m is not None:
            zeros_ih, zeros_hh = A.zeros(A.shape(dih)), A.zeros(A.shape(dhh))
            dih, dhh = A.where(m, dih, zeros_ih), A.where(m, dhh, zeros_hh)
            d_h1[t] = A.where(m, dh, A.zeros(A.shape(dh)))
            dh_prev = A.where(m, dh_prev, dh)
            dc_prev = None if dc is None else A.where(m, dc_prev, dc)
        else:
            d_h1[t] = dh
        d_ih[t], d_hh[t], h_prev[t] = dih, dhh, h
        dh, dc = dh_prev, dc_prev
    d_ih_all, d_hh_all = A.stack(d_ih), A.stack(d_hh)
    grads = {"weight_ih": A.outer_sum(d_ih_all, tape.x), "weight_hh": A.outer_sum(d_hh_all, A.stack(h_prev))}
    if "bias_ih" in w:
        grads.update(bias_ih=A.sum_rows(d_ih_all), bias_hh=A.sum_rows(d_hh_all))
    if "weight_hr" in w:
        hr = A.stack([cache[5] for _, _, _, cache in sorted(tape.steps, key=lambda s: s[0])])
        grads["weight_hr"] = A.outer_sum(A.stack(d_h1), hr)
    return A.mm(d_ih_all, w["weight_ih"]), dh, dc, grads


# -- the stack ---------------------------------------------------------------------------------------

@dataclass
class Tape:
    """The forward's record for ``stack_vjp``."""

    cfg: RNNConfig
    active: np.ndarray | None
    layers: list[list[_DirectionTape]]


def active_steps(lengths: np.ndarray | None, steps: int) -> np.ndarray | None:
    """(T, B) mask of the steps each sequence runs over (None: all of them)."""
    if lengths is None:
        return None
    return np.arange(steps)[:, None] < np.asarray(lengths)[None, :]


def stack(A: Any, cfg: RNNConfig, x: Any, h0: Any, c0: Any, weights: dict[str, Any],
          lengths: np.ndarray | None = None) -> tuple[Any, Any, Any, Tape]:
    """The whole stack: x (T, B, I), h0 (L·D, B, P), c0 (L·D, B, H) (LSTM; else None), weights by
    torch's names. Returns (output (T, B, D·P), h_n, c_n or None, tape)."""
    active = active_steps(lengths, A.shape(x)[0])
    tape = Tape(cfg, active, [])
    h_n, c_n = [], []
    layer_in = x
    for layer in range(cfg.num_layers):
        if layer and cfg.drop_between:
            layer_in = A.zeros(A.shape(layer_in))
        outs, dirs = [], []
        for d in range(cfg.directions):
            k = layer * cfg.directions + d
            w = {name: weights[name + suffix(layer, d)] for name in
                 ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr") if name + suffix(layer, d) in weights}
            out, h, c, dtape = _direction(A, cfg, layer_in, A.take(h0, k), None if c0 is None else A.take(c0, k),
                                          w, active, reverse=d == 1)
            outs.append(out)
            dirs.append(dtape)
            h_n.append(h)
            c_n.append(c)
        tape.layers.append(dirs)
        layer_in = A.cat(outs)
    return layer_in, A.stack(h_n), (None if c0 is None else A.stack(c_n)), tape


def stack_vjp(A: Any, tape: Tape, g_out: Any, g_hn: Any, g_cn: Any) -> dict[str, Any]:
    """Backward through time and layers: grads of input, h0, c0 (LSTM) and every weight."""
    cfg = tape.cfg
    grads: dict[str, Any] = {}
    dh0: list[Any] = [None] * (cfg.num_layers * cfg.directions)
    dc0: list[Any] = [None] * (cfg.num_layers * cfg.directions)
    g_layer = g_out
    for layer in range(cfg.num_layers - 1, -1, -1):
        parts = A.split(g_layer, cfg.directions)
        g_in = None
        for d, dtape in enumerate(tape.layers[layer]):
            k = layer * cfg.directions + d
            gx, dh0[k], dc0[k], wgrads = _direction_vjp(A, cfg, dtape, parts[d], A.take(g_hn, k),
                                                        None if g_cn is None else A.take(g_cn, k), tape.active)
            g_in = gx if g_in is None else A.add(g_in, gx)
            grads.update({name + suffix(layer, d): value for name, value in wgrads.items()})
        if layer and cfg.drop_between:
            g_in = A.zeros(A.shape(g_in))
        g_layer = g_in
    grads.update(input=g_layer, h0=A.stack(dh0))
    if g_cn is not None:
        grads["c0"] = A.stack(dc0)
    return grads
