"""The running error analysis of the recurrent layers carried along a direction
(``reference.recurrent_errors.DualTracked``, the vjp2 mode's ``second_order_error``): its tangents
are the derivatives of the reference's gradients, its value part is ``Tracked``'s, a hand-computed
saturated gate, and its bounds against a simulated implementation that differentiates its own
rounded computation in forward mode (every elementary result, value and tangent, rounded to the
format; gates' derivatives formed from the rounded outputs, as torch forms them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from conformance.dtypes import DTYPES
from reference import libm
from reference import recurrent as ref
from reference.recurrent_errors import (
    RHO,
    DualTracked,
    Tracked,
    cell_tangent_error_bounds,
    tangent_error_bounds,
)

F32 = (2.0**-24, 2.0**-149, 2.0**-126)


@dataclass
class _P:
    """A value and its tangent, both held in the format."""

    v: np.ndarray
    t: np.ndarray


class _RoundedDual:
    """Forward mode in a low-precision format: values and tangents rounded after every elementary
    operation; sums accumulated term by term; a product's tangent ȧb + aḃ as two rounded products
    and a rounded sum, a matrix product's as two matrix products added; σ' = ŷ(1 - ŷ) and
    tanh' = 1 - ŷ² from the rounded outputs (torch's sigmoid_backward, tanh_backward)."""

    def __init__(self, dtype: str, tangents: dict[str, np.ndarray]):
        self.fmt = DTYPES[dtype]
        self.tangents = tangents

    def r(self, x: np.ndarray) -> np.ndarray:
        return self.fmt.round(np.asarray(x, dtype=np.float64))

    def _dot(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        acc = np.zeros(a.shape[:-1] + b.shape[1:])
        for k in range(a.shape[-1]):
            acc = self.r(acc + self.r(a[..., k:k + 1] * b[k]))
        return acc

    def _mm(self, a: _P, bv: np.ndarray, bt: np.ndarray) -> _P:
        return _P(self._dot(a.v, bv), self.r(self._dot(a.t, bv) + self._dot(a.v, bt)))

    def const(self, a: np.ndarray) -> _P:
        return _P(self.r(a), np.zeros(np.shape(a)))

    def leaf(self, name: str, a: np.ndarray) -> _P:
        t = self.tangents.get(name)
        return _P(self.r(a), np.zeros(np.shape(a)) if t is None else self.r(t))

    def apply(self, fn: Any, a: _P) -> _P:
        return _P(fn(a.v), fn(a.t))

    def shape(self, a: _P) -> tuple[int, ...]:
        return a.v.shape

    def zeros(self, shape: tuple[int, ...]) -> _P:
        return _P(np.zeros(shape), np.zeros(shape))

    def affine(self, x: _P, w: _P, b: _P | None = None) -> _P:
        y = self._mm(x, w.v.T, w.t.T)
        return y if b is None else self.add(y, b)

    def mm(self, a: _P, b: _P) -> _P:
        return self._mm(a, b.v, b.t)

    def outer_sum(self, a: _P, b: _P) -> _P:
        def rows(x: np.ndarray) -> np.ndarray:
            return x.reshape(-1, x.shape[-1])

        return self._mm(_P(rows(a.v).T, rows(a.t).T), rows(b.v), rows(b.t))

    def sum_rows(self, a: _P) -> _P:
        v, t = (x.reshape(-1, x.shape[-1]) for x in (a.v, a.t))
        ones = np.ones((1, v.shape[0]))
        return _P(self._dot(ones, v)[0], self._dot(ones, t)[0])

    def add(self, a: _P, b: _P) -> _P:
        return _P(self.r(a.v + b.v), self.r(a.t + b.t))

    def sub(self, a: _P, b: _P) -> _P:
        return _P(self.r(a.v - b.v), self.r(a.t - b.t))

    def mul(self, a: _P, b: _P) -> _P:
        return _P(self.r(a.v * b.v), self.r(self.r(a.t * b.v) + self.r(a.v * b.t)))

    def one_minus(self, a: _P) -> _P:
        return _P(self.r(1.0 - a.v), -a.t)

    def sigmoid(self, a: _P) -> _P:
        y = self.r(libm.sigmoid(a.v))
        return _P(y, self.r(self.r(a.t * self.r(1.0 - y)) * y))

    def tanh(self, a: _P) -> _P:
        y = self.r(np.tanh(a.v))
        return _P(y, self.r(a.t * self.r(1.0 - self.r(y * y))))

    def relu(self, a: _P) -> _P:
        return _P(np.maximum(a.v, 0.0), np.where(a.v > 0, a.t, 0.0))

    def relu_grad(self, g: _P, a: _P) -> _P:
        return _P(np.where(a.v > 0, g.v, 0.0), np.where(a.v > 0, g.t, 0.0))

    def where(self, mask: np.ndarray, a: _P, b: _P) -> _P:
        return _P(np.where(mask, a.v, b.v), np.where(mask, a.t, b.t))

    def split(self, a: _P, n: int) -> list[_P]:
        return [_P(v, t) for v, t in zip(np.split(a.v, n, axis=-1), np.split(a.t, n, axis=-1))]

    def cat(self, parts: list[_P]) -> _P:
        if len(parts) == 1:
            return parts[0]
        return _P(np.concatenate([p.v for p in parts], axis=-1), np.concatenate([p.t for p in parts], axis=-1))

    def stack(self, parts: list[_P]) -> _P:
        return _P(np.stack([p.v for p in parts]), np.stack([p.t for p in parts]))

    def take(self, a: _P, index: Any) -> _P:
        return _P(a.v[index], a.t[index])


def _short(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Normals on 8 significant bits (exact in every format, as the mode's directions are)."""
    x = rng.standard_normal(shape)
    m, e = np.frexp(x)
    return np.ldexp(np.round(m * 256) / 256, e)


def _cell_inputs(mode: str, rng: np.random.Generator, fmt: Any, scale: float) -> dict[str, np.ndarray]:
    gates, batch, isz, hid = ref.GATES[mode], 3, 3, 2
    inputs = {"input": scale * rng.standard_normal((batch, isz)), "h0": rng.standard_normal((batch, hid)),
              "weight_ih": rng.uniform(-2, 2, (gates * hid, isz)),
              "weight_hh": rng.uniform(-0.5, 0.5, (gates * hid, hid)),
              "bias_ih": rng.uniform(-2, 2, gates * hid), "bias_hh": rng.uniform(-2, 2, gates * hid)}
    if mode == "LSTM":
        inputs["c0"] = rng.standard_normal((batch, hid))
    return {k: fmt.round(v) for k, v in inputs.items()}


def _directions(rng: np.random.Generator, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: _short(rng, v.shape) for k, v in inputs.items()}


def test_dual_values_are_trackeds_and_tangents_are_the_derivatives():
    """The value part (v, e, k) is ``Tracked``'s bit for bit; the tangent t of every gradient is its
    derivative along the direction (central differences of the float64 reference)."""
    rng = np.random.default_rng(7)
    cfg = ref.RNNConfig("GRU", 2, 3, num_layers=2, bidirectional=True)
    inputs = {"input": rng.standard_normal((4, 2, 2)), "h0": rng.standard_normal((4, 2, 3))}
    inputs.update({k: rng.uniform(-0.7, 0.7, s) for k, s in ref.parameter_shapes(cfg).items()})
    v = _directions(rng, inputs)
    out, pull = ref.module_call(ref.EXACT, cfg, ref.Form(), inputs)
    cots = {k: rng.standard_normal(x.shape) for k, x in out.items()}
    d_out, d_pull = ref.module_call(DualTracked(*F32, v), cfg, ref.Form(), inputs)
    t_out, t_pull = ref.module_call(Tracked(*F32), cfg, ref.Form(), inputs)
    dual, tracked = d_pull(cots), t_pull(cots)
    h = 2.0**-20

    def grads(step: float) -> dict[str, np.ndarray]:
        return ref.module_call(ref.EXACT, cfg, ref.Form(), {k: x + step * v[k] for k, x in inputs.items()})[1](cots)

    plus, minus = grads(h), grads(-h)
    for name, d in dual.items():
        np.testing.assert_array_equal(d.v, tracked[name].v)
        np.testing.assert_array_equal(d.e, tracked[name].e)
        np.testing.assert_array_equal(d.k, tracked[name].k)
        fd = (plus[name] - minus[name]) / (2 * h)
        np.testing.assert_allclose(d.t, fd, rtol=1e-5, atol=1e-7 * float(np.max(np.abs(fd))))
    for name, d in d_out.items():
        np.testing.assert_array_equal(d.v, out[name])


def test_saturated_sigmoid_by_hand():
    """y = σ(9), ȧ = 1, exact a: E_y = ρ·y + normal/u; the tangent ȧ·ŷ(1 - ŷ) carries |1 - 2y|·E_y
    (1 - ŷ off by u·E_y in absolute terms), 3 roundings of |ẏ| and tiny/u: 3u·(1 - 2y)/(1 - y) of
    |ẏ| near saturation, where the value part says only ρ·u."""
    u, tiny, normal = F32
    arith = DualTracked(u, tiny, normal, {"a": np.array([1.0])})
    out = arith.sigmoid(arith.leaf("a", np.array([9.0])))
    y = 1.0 / (1.0 + np.exp(-9.0))
    e_y = RHO * y + normal / u
    assert out.e[0] == pytest.approx(e_y, rel=1e-12)
    assert out.t[0] == pytest.approx(y * (1 - y), rel=1e-12)
    assert out.te[0] == pytest.approx(abs(1 - 2 * y) * e_y + 3 * y * (1 - y) + tiny / u, rel=1e-12)
    assert out.tk[0] == pytest.approx(u * e_y * e_y, rel=1e-12)
    # The rounded computation in float32 is off by that much relative to ẏ (not by a few u):
    f32 = np.float32
    yhat = f32(y)
    computed = float(f32(f32(1.0) * f32(f32(1.0) - yhat)) * yhat)
    assert abs(computed - y * (1 - y)) > 10 * u * y * (1 - y)
    assert abs(computed - y * (1 - y)) <= u * (out.te[0] + out.tk[0])


@pytest.mark.parametrize("mode", ["GRU", "LSTM", "RNN_TANH"])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_cell_bound_covers_a_simulated_forward_mode(mode, dtype):
    """Every gradient's tangent, as a format that differentiates its own rounded computation
    forms it, lies within u·Ė of the exact tangent, on unsaturated and saturated cells (inputs ×16:
    gates within a few ulps of 0 or 1)."""
    fmt = DTYPES[dtype]
    worst = 0.0
    for seed in range(12):
        rng = np.random.default_rng(seed)
        inputs = _cell_inputs(mode, rng, fmt, 16.0 if seed % 2 else 1.0)
        v = _directions(rng, inputs)
        out, _ = ref.cell_module_call(ref.EXACT, mode, inputs)
        cots = {k: fmt.round(rng.standard_normal(x.shape)) for k, x in out.items()}
        exact = ref.cell_module_call(DualTracked(fmt.unit_roundoff, fmt.min_subnormal, fmt.min_normal, v), mode,
                                     inputs)[1](cots)
        got = ref.cell_module_call(_RoundedDual(dtype, v), mode, inputs)[1](cots)
        bounds = cell_tangent_error_bounds(mode, inputs, cots, v, fmt.unit_roundoff, fmt.min_subnormal,
                                           fmt.min_normal)
        for name, g in got.items():
            allowed = fmt.unit_roundoff * bounds[name]
            err = np.abs(g.t - exact[name].t)
            assert np.all(err <= allowed), (name, seed, float(np.max(err / allowed)))
            worst = max(worst, float(np.max(err / np.where(allowed > 0, allowed, np.inf), initial=0.0)))
    assert worst > 0.02, worst  # the bound is of the error's size, not a blanket


@pytest.mark.parametrize("mode", ["GRU", "LSTM"])
def test_packed_stack_bound_covers_a_simulated_forward_mode(mode):
    """The same over time, layers, directions and unequal lengths (a packed batch), saturated."""
    fmt = DTYPES["float32"]
    cfg = ref.RNNConfig(mode, 3, 2, num_layers=2, bidirectional=True)
    rng = np.random.default_rng(3)
    inputs = {"input": 12.0 * rng.standard_normal((4, 3, 3)), "h0": rng.standard_normal((4, 3, 2))}
    if mode == "LSTM":
        inputs["c0"] = rng.standard_normal((4, 3, 2))
    inputs.update({k: rng.uniform(-1.5, 1.5, s) for k, s in ref.parameter_shapes(cfg).items()})
    inputs = {k: fmt.round(x) for k, x in inputs.items()}
    v = _directions(rng, inputs)
    form = ref.Form(lengths=np.array([2, 4, 3]), order=np.array([1, 2, 0]))
    out, _ = ref.module_call(ref.EXACT, cfg, form, inputs)
    cots = {k: fmt.round(rng.standard_normal(x.shape)) for k, x in out.items()}
    exact = ref.module_call(DualTracked(*F32, v), cfg, form, inputs)[1](cots)
    got = ref.module_call(_RoundedDual("float32", v), cfg, form, inputs)[1](cots)
    bounds = tangent_error_bounds(cfg, form, inputs, cots, v, *F32)
    for name, g in got.items():
        err = np.abs(g.t - exact[name].t)
        assert np.all(err <= F32[0] * bounds[name]), (name, float(np.max(err / (F32[0] * bounds[name]))))


# -- against torch: the saturated cells the vjp2 mode found ------------------------------------------

def _torch_d2(cls: str, inputs: dict[str, np.ndarray], v: dict[str, np.ndarray], g: dict[str, np.ndarray],
              dtype: Any) -> dict[str, np.ndarray]:
    """torch's double backward: d2.<input> = ∂/∂x ⟨Jᵀg, v⟩, in ``dtype``."""
    import torch

    isz, hid = inputs["input"].shape[-1], inputs["weight_hh"].shape[-1]
    module = getattr(torch.nn, cls)(isz, hid).to(dtype)
    leaves = {k: torch.tensor(x, dtype=dtype, requires_grad=True) for k, x in inputs.items()}
    params = {k: leaves[k] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    hx = (leaves["h0"], leaves["c0"]) if cls == "LSTMCell" else leaves["h0"]
    out = torch.func.functional_call(module, params, (leaves["input"], hx))
    outs = out if isinstance(out, tuple) else (out,)
    cots = [torch.tensor(g[k], dtype=dtype) for k in ("h", "c")[:len(outs)]]
    grads = torch.autograd.grad(outs, list(leaves.values()), cots, create_graph=True)
    dot = sum((gr * torch.tensor(v[k], dtype=dtype)).sum() for gr, k in zip(grads, leaves))
    d2 = torch.autograd.grad(dot, list(leaves.values()))
    return {k: t.double().numpy() for k, t in zip(leaves, d2)}


@pytest.mark.parametrize("cls", ["GRUCell", "LSTMCell"])
def test_cell_second_order_error_bounds_torch_when_saturated(cls):
    """torch float32's double backward of a saturated cell (inputs ×16) against float64: within the
    declaration's ``second_order_error`` everywhere, though off by far more than a few u of the
    tensor (the gates' derivatives formed from rounded outputs)."""
    from backends.base import Case
    from conformance.numerics import recurrent as NR

    mode = "GRU" if cls == "GRUCell" else "LSTM"
    fmt = DTYPES["float32"]
    large = 0.0
    for seed in range(6):
        rng = np.random.default_rng(100 + seed)
        inputs = _cell_inputs(mode, rng, fmt, 16.0)
        v = _directions(rng, inputs)
        out, _ = ref.cell_module_call(ref.EXACT, mode, inputs)
        g = {k: fmt.round(rng.standard_normal(x.shape)) for k, x in out.items()}
        case = Case(op=cls, dtype="float32", params={"input_size": 3, "hidden_size": 2, "bias": True}, inputs=inputs)
        bound = NR.cell_second_order_error(case, v, g)
        import torch

        got, exact = _torch_d2(cls, inputs, v, g, torch.float32), _torch_d2(cls, inputs, v, g, torch.float64)
        for name, value in got.items():
            err = np.abs(value - exact[name])
            assert np.all(err <= bound[f"d2.{name}"]), (name, seed, float(np.max(err / bound[f"d2.{name}"])))
            scale = float(np.max(np.abs(exact[name])))
            large = max(large, float(err.max()) / (fmt.unit_roundoff * scale) if scale else 0.0)
    assert large > 30, large  # (unsaturated cells stay within a few u of the tensor's largest)


RECURRENT = ["RNNCell", "LSTMCell", "GRUCell", "RNN", "RNN[packed]", "LSTM", "LSTM[packed]", "GRU", "GRU[packed]"]


@pytest.mark.parametrize("target", RECURRENT)
def test_second_order_error_covers_every_drawn_case(target):
    """The declaration's ``second_order_error`` runs on the cases its strategy draws (unbatched,
    packed, projections, h0 omitted...): one finite, non-negative bound per d2.<input> (the vjp2
    mode drops a bound that raises, so a silent failure would leave those terms unbounded)."""
    from hypothesis import HealthCheck, given, settings

    from conformance.modes.base import _differentiable
    from conformance.runner import reference_result
    from conformance.spec import all_specs

    spec = all_specs()[target]
    assert spec.second_order_error is not None

    @settings(max_examples=8, suppress_health_check=list(HealthCheck), deadline=None)
    @given(case=spec.strategy("float32"))
    def check(case):
        case, result = reference_result(spec, case)
        names = _differentiable(case)
        v = {n: np.ones(np.shape(case.inputs[n])) for n in names}
        g = {k: np.ones(np.shape(x)) for k, x in case.cotangents.items()}
        bound = spec.second_order_error(case, v, g)
        assert bound and set(bound) == {f"d2.{n}" for n in names if n in result.grads}
        for name, b in bound.items():
            assert np.shape(b) == np.shape(case.inputs[name[3:]]) and np.all(np.isfinite(b)) and np.all(b >= 0)

    check()
