"""The recurrent reference on its own terms (no torch): hand-computed steps, structural identities
(directions, packing, projections, dropout p = 1), and its error analysis against a simulated
low-precision implementation (every elementary result rounded to the format)."""

from __future__ import annotations

import inspect
import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings

from backends.base import Case
from conformance.compare import compare_results
from conformance.dtypes import DTYPES
from conformance.families.recurrent import stack_reference
from conformance.runner import reference_result
from conformance.spec import all_specs
from conformance.strategies.recurrent import config_of, form_of, module_inputs
from reference import functional as RF
from reference import libm, recurrent_core
from reference import recurrent as ref
from reference import rnn_utils as rnn_utils_ref
from reference.finite_differences import vjp_check
from reference.recurrent_errors import Tracked, error_analysis, error_bounds


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _run(cfg, inputs, form=None, cotangents=None):
    outputs, pullback = ref.module_call(ref.EXACT, cfg, form or ref.Form(), inputs)
    return outputs, ({} if cotangents is None else pullback(cotangents))


# -- hand-computed steps ------------------------------------------------------------------------------

def test_lstm_step_by_hand():
    """I = H = 1: gates i, f, g, o from the row blocks; c = f·c0 + i·g; h = o·tanh(c)."""
    cfg = ref.RNNConfig("LSTM", 1, 1)
    w_ih, w_hh, b_ih, b_hh = [0.5, -1.0, 2.0, 0.25], [1.0, 0.5, -0.5, 2.0], [0.1, 0.2, 0.3, 0.4], [0.0, 0.1, 0.0, -0.1]
    x, h0, c0 = 0.8, -0.3, 0.6
    a = [w_ih[k] * x + b_ih[k] + w_hh[k] * h0 + b_hh[k] for k in range(4)]
    i, f, g, o = _sig(a[0]), _sig(a[1]), math.tanh(a[2]), _sig(a[3])
    c = f * c0 + i * g
    h = o * math.tanh(c)
    inputs = {"input": np.array([[[x]]]), "h0": np.array([[[h0]]]), "c0": np.array([[[c0]]]),
              "weight_ih_l0": np.array(w_ih)[:, None], "weight_hh_l0": np.array(w_hh)[:, None],
              "bias_ih_l0": np.array(b_ih), "bias_hh_l0": np.array(b_hh)}
    out, _ = _run(cfg, inputs)
    assert out["output"][0, 0, 0] == pytest.approx(h, rel=1e-15)
    assert out["h_n"][0, 0, 0] == pytest.approx(h, rel=1e-15)
    assert out["c_n"][0, 0, 0] == pytest.approx(c, rel=1e-15)


def test_gru_step_by_hand():
    """r, z from the first two blocks of both products; n = tanh(W_in x + b_in + r·(W_hn h + b_hn));
    h' = (1 - z)·n + z·h."""
    cfg = ref.RNNConfig("GRU", 1, 1)
    w_ih, w_hh, b_ih, b_hh = [0.7, -0.4, 1.5], [-0.2, 0.9, 0.6], [0.05, -0.1, 0.2], [0.3, 0.0, -0.7]
    x, h0 = -1.2, 0.5
    r = _sig(w_ih[0] * x + b_ih[0] + w_hh[0] * h0 + b_hh[0])
    z = _sig(w_ih[1] * x + b_ih[1] + w_hh[1] * h0 + b_hh[1])
    n = math.tanh(w_ih[2] * x + b_ih[2] + r * (w_hh[2] * h0 + b_hh[2]))
    expected = (1 - z) * n + z * h0
    inputs = {"input": np.array([[[x]]]), "h0": np.array([[[h0]]]), "weight_ih_l0": np.array(w_ih)[:, None],
              "weight_hh_l0": np.array(w_hh)[:, None], "bias_ih_l0": np.array(b_ih), "bias_hh_l0": np.array(b_hh)}
    out, _ = _run(cfg, inputs)
    assert out["h_n"][0, 0, 0] == pytest.approx(expected, rel=1e-15)


def test_relu_rnn_integers_exact():
    """A relu RNN on integers is integer arithmetic: h1 = relu(2·1 + 1·0) = 2, h2 = relu(2·(-1) + 1·2) = 0,
    h3 = relu(2·3 + 1·0) = 6."""
    cfg = ref.RNNConfig("RNN_RELU", 1, 1, bias=False)
    inputs = {"input": np.array([1.0, -1.0, 3.0])[:, None, None], "weight_ih_l0": np.array([[2.0]]),
              "weight_hh_l0": np.array([[1.0]])}
    out, _ = _run(cfg, inputs)
    np.testing.assert_array_equal(out["output"][:, 0, 0], [2.0, 0.0, 6.0])


# -- structure -----------------------------------------------------------------------------------------

def _random_inputs(cfg: ref.RNNConfig, steps: int, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    inputs = {n: rng.uniform(-0.6, 0.6, s) for n, s in ref.parameter_shapes(cfg).items()}
    inputs["input"] = rng.standard_normal((steps, batch, cfg.input_size))
    states = cfg.num_layers * cfg.directions
    inputs["h0"] = rng.standard_normal((states, batch, cfg.out_size))
    if cfg.mode == "LSTM":
        inputs["c0"] = rng.standard_normal((states, batch, cfg.hidden_size))
    return inputs


@pytest.mark.parametrize("mode", ["RNN_TANH", "RNN_RELU", "LSTM", "GRU"])
def test_reverse_direction_is_the_forward_recurrence_on_the_flipped_sequence(mode):
    cfg = ref.RNNConfig(mode, 3, 4, bidirectional=True)
    inputs = _random_inputs(cfg, 5, 2)
    out, _ = _run(cfg, inputs)
    uni = ref.RNNConfig(mode, 3, 4)
    rev = {"input": inputs["input"][::-1], "h0": inputs["h0"][1:]}
    if mode == "LSTM":
        rev["c0"] = inputs["c0"][1:]
    rev.update({k.replace("_reverse", ""): v for k, v in inputs.items() if k.endswith("_reverse")})
    rev_out, _ = _run(uni, rev)
    np.testing.assert_allclose(out["output"][:, :, 4:], rev_out["output"][::-1], rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(out["h_n"][1], rev_out["h_n"][0], rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("mode", ["RNN_TANH", "LSTM", "GRU"])
def test_packed_sequence_runs_over_its_own_length(mode):
    """Each sequence of a packed batch, in each direction, equals that sequence run alone, unpadded:
    the reverse direction starts at its own last step, h_n is taken there."""
    cfg = ref.RNNConfig(mode, 2, 3, num_layers=2, bidirectional=True)
    inputs = _random_inputs(cfg, 6, 3)
    lengths = np.array([4, 6, 2])
    order = np.argsort(-lengths, kind="stable")
    out, _ = _run(cfg, inputs, ref.Form(lengths=lengths, order=order))
    rows = np.cumsum(np.r_[0, (lengths[order][None, :] > np.arange(6)[:, None]).sum(axis=1)])
    for b, length in enumerate(lengths):
        alone = {k: (v[:length, b:b + 1] if k == "input" else v[:, b:b + 1] if k in ("h0", "c0") else v)
                 for k, v in inputs.items()}
        alone_out, _ = _run(cfg, alone)
        j = int(np.nonzero(order == b)[0][0])
        np.testing.assert_allclose(out["output"][rows[:length] + j], alone_out["output"][:, 0], rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(out["h_n"][:, b], alone_out["h_n"][:, 0], rtol=1e-13, atol=1e-15)


def test_projection_picks_what_w_hr_says():
    """With W_hr = [1, 0, 0], an LSTM with proj_size 1 is the hidden_size-3 LSTM whose h keeps only its
    first component (W_hh acting on that component alone)."""
    proj = ref.RNNConfig("LSTM", 2, 3, proj_size=1)
    inputs = _random_inputs(proj, 4, 2)
    inputs["weight_hr_l0"] = np.array([[1.0, 0.0, 0.0]])
    full = ref.RNNConfig("LSTM", 2, 3)
    wide = dict(inputs)
    wide.pop("weight_hr_l0")
    wide["weight_hh_l0"] = np.concatenate([inputs["weight_hh_l0"], np.zeros((12, 2))], axis=1)
    wide["h0"] = np.concatenate([inputs["h0"], np.zeros((1, 2, 2))], axis=2)
    out_p, _ = _run(proj, inputs)
    # The wide LSTM feeds back all of h; with W_hh zero beyond column 0 only h[0] matters.
    out_w, _ = _run(full, wide)
    np.testing.assert_allclose(out_p["output"][..., 0], out_w["output"][..., 0], rtol=1e-14)
    np.testing.assert_allclose(out_p["c_n"], out_w["c_n"], rtol=1e-14)


def test_dropout_one_feeds_zeros_to_later_layers():
    cfg = ref.RNNConfig("GRU", 2, 3, num_layers=2, drop_between=True)
    inputs = _random_inputs(cfg, 4, 2)
    out, _ = _run(cfg, inputs)
    second = ref.RNNConfig("GRU", 3, 3)
    layer2 = {"input": np.zeros((4, 2, 3)), "h0": inputs["h0"][1:],
              **{k.replace("_l1", "_l0"): v for k, v in inputs.items() if k.endswith("_l1")}}
    out2, _ = _run(second, layer2)
    np.testing.assert_allclose(out["output"], out2["output"], rtol=1e-15)


def test_backward_of_padded_steps_is_zero():
    """A packed batch: the input gradient past each sequence's length is exactly 0."""
    cfg = ref.RNNConfig("LSTM", 2, 3, bidirectional=True)
    inputs = _random_inputs(cfg, 5, 2)
    lengths = np.array([2, 5])
    form = ref.Form(lengths=lengths, order=np.array([1, 0]))
    out, _ = _run(cfg, inputs, form)
    rng = np.random.default_rng(3)
    cots = {k: rng.standard_normal(v.shape) for k, v in out.items()}
    _, grads = _run(cfg, inputs, form, cots)
    assert np.all(grads["input"][2:, 0] == 0) and np.all(grads["input"][:, 1] != 0)


# -- the error analysis ---------------------------------------------------------------------------------

class _Rounded(recurrent_core.Exact):
    """An implementation in a low-precision format: every elementary result rounded to it, sums
    accumulated term by term (rounded after each addition)."""

    def __init__(self, dtype: str):
        self.fmt = DTYPES[dtype]

    def r(self, x: np.ndarray) -> np.ndarray:
        return self.fmt.round(x)

    def _dot(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        acc = np.zeros(a.shape[:-1] + b.shape[1:])
        for k in range(a.shape[-1]):
            acc = self.r(acc + self.r(a[..., k:k + 1] * b[k]))
        return acc

    def affine(self, x, w, b=None):
        y = self._dot(x, w.T)
        return y if b is None else self.r(y + b)

    def mm(self, a, b):
        return self._dot(a, b)

    def outer_sum(self, a, b):
        return self._dot(a.reshape(-1, a.shape[-1]).T, b.reshape(-1, b.shape[-1]))

    def sum_rows(self, a):
        return self._dot(np.ones((1, a.reshape(-1, a.shape[-1]).shape[0])), a.reshape(-1, a.shape[-1]))[0]

    def add(self, a, b):
        return self.r(a + b)

    def sub(self, a, b):
        return self.r(a - b)

    def mul(self, a, b):
        return self.r(a * b)

    def one_minus(self, a):
        return self.r(1.0 - a)

    def sigmoid(self, a):
        return self.r(libm.sigmoid(a))

    def tanh(self, a):
        return self.r(np.tanh(a))


SEQUENCES = [s for s in all_specs().values() if s.family == "recurrent" and s.kind == "sequence"]


@pytest.mark.parametrize("spec", SEQUENCES, ids=lambda s: s.id)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_error_bound_covers_a_simulated_implementation(spec, dtype):
    """Every compared tensor of an implementation that rounds every elementary result to the format
    lies within the bound; and the bound is used (the largest utilisation over the cases is not tiny)."""
    worst = []

    @settings(max_examples=6)
    @given(case=spec.strategy(dtype))
    def check(case):
        case, result = reference_result(spec, case)
        got_out, pullback = ref.module_call(_Rounded(dtype), config_of(case), form_of(case), module_inputs(case))
        got_grads = pullback(case.cotangents)
        got = {**got_out, **{f"grad.{k}": v for k, v in got_grads.items()}}
        absref = spec.tolerance_for("output").magnitude(case, result)
        fmt = DTYPES[dtype]
        util = 0.0
        for name, value in result.tensors().items():
            if name not in got or np.asarray(value).dtype.kind != "f":
                continue
            allowed = fmt.unit_roundoff * (absref[name] + np.abs(value)) + fmt.min_subnormal
            err = np.abs(got[name] - value)
            assert np.all(err <= allowed), (name, float(np.max(err / allowed)))
            util = max(util, float(np.max(err / allowed, initial=0.0)))
        worst.append(util)

    check()
    assert max(worst) > 0.02, worst


def test_tracked_values_are_the_reference_values():
    cfg = ref.RNNConfig("LSTM", 2, 3, num_layers=2, bidirectional=True, proj_size=2)
    inputs = _random_inputs(cfg, 4, 2)
    out, _ = _run(cfg, inputs)
    cots = {k: np.ones(v.shape) for k, v in out.items()}
    exact_out, exact_grads = _run(cfg, inputs, cotangents=cots)
    tracked_out, pullback = ref.module_call(Tracked(2.0**-24, 2.0**-149, 2.0**-126), cfg, ref.Form(), inputs)
    tracked_grads = pullback(cots)
    for name, value in exact_out.items():
        np.testing.assert_array_equal(tracked_out[name].v, value)
    for name, value in exact_grads.items():
        np.testing.assert_array_equal(tracked_grads[name].v, value)
    bounds = error_bounds(cfg, ref.Form(), inputs, cots, 2.0**-24, 2.0**-149, 2.0**-126)
    assert all(np.all(np.isfinite(b)) and np.all(b >= 0) for b in bounds.values())


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_one_error_analysis_serves_many_cotangents(mode: str):
    """``error_analysis`` keeps the forward analysis for several cotangents (the jvp mode's basis
    projections): each answer equals a fresh ``error_bounds`` run for that cotangent."""
    cfg = ref.RNNConfig(mode, 2, 3, num_layers=2, bidirectional=True)
    inputs = _random_inputs(cfg, 4, 2)
    out, _ = _run(cfg, inputs)
    rng = np.random.default_rng(3)
    fmt = (2.0**-24, 2.0**-149, 2.0**-126)
    analysis = error_analysis(cfg, ref.Form(), inputs, *fmt)
    for _ in range(3):
        cots = {k: rng.standard_normal(v.shape) for k, v in out.items()}
        reused, fresh = analysis(cots), error_bounds(cfg, ref.Form(), inputs, cots, *fmt)
        assert reused.keys() == fresh.keys()
        for name in fresh:
            np.testing.assert_array_equal(reused[name], fresh[name])


def test_config_and_form_reject_what_torch_rejects():
    base = {"input_size": 2, "hidden_size": 3, "num_layers": 1, "bias": True, "batch_first": False,
            "bidirectional": False, "proj_size": 0}
    x = np.zeros((4, 2, 2))
    with pytest.raises(ValueError):
        config_of(Case("LSTM", "float32", {**base, "dropout": 1.5}, {"input": x}))
    with pytest.raises(ValueError):
        config_of(Case("LSTM", "float32", {**base, "dropout": 0.0, "proj_size": 3}, {"input": x}))
    case = Case("LSTM", "float32", {**base, "dropout": 0.0}, {"input": x, "h0": np.zeros((1, 3, 3))})
    with pytest.raises(ValueError):
        stack_reference(case)
    with pytest.raises(ValueError):
        form_of(replace(case, params={**base, "dropout": 0.0, "enforce_sorted": True},
                        inputs={"input": x, "lengths": np.array([1, 4])}))


def test_packed_ties_follow_the_backends_valid_order():
    """Equal lengths may be sorted either way: a result computed in the other valid order (as a
    backend with an unstable sort returns it) passes; an order that does not sort the lengths is
    judged against the reference's own and fails."""
    spec = all_specs()["GRU[packed]"]
    cfg = ref.RNNConfig("GRU", 2, 3)
    inputs = _random_inputs(cfg, 4, 3)
    inputs.pop("h0")
    inputs["lengths"] = np.array([3, 4, 3])
    params = {"input_size": 2, "hidden_size": 3, "num_layers": 1, "bias": True, "batch_first": False,
              "dropout": 0.0, "bidirectional": False, "enforce_sorted": False}
    case = Case("GRU", "float64", params, inputs, differentiable=tuple(k for k in inputs if k != "lengths"),
                types={"lengths": "int_list"}, variant="packed")
    case, result = reference_result(spec, case)
    np.testing.assert_array_equal(result.outputs["sorted_indices"], [1, 0, 2])
    other, pullback = stack_reference(case, np.array([1, 2, 0]))  # the tie (0, 2) the other way
    other.grads = spec.pull(pullback, case, case.cotangents)
    assert not np.array_equal(other.outputs["output"], result.outputs["output"])
    assert all(c.ok for c in compare_results(spec, case, result, other))
    bogus = replace(other, outputs={**other.outputs, "sorted_indices": np.array([0, 1, 2])})
    assert not all(c.ok for c in compare_results(spec, case, result, bogus))


# -- the functional forms (reference.functional) --------------------------------------------------------

def _leaves(prefix: str, value) -> dict[str, np.ndarray]:
    """The float arrays inside nested tuples and lists, by path (``params[3]``, ``hx[1]``)."""
    if isinstance(value, np.ndarray):
        return {prefix: value} if value.dtype.kind == "f" else {}
    if isinstance(value, (list, tuple)):
        return {k: v for i, item in enumerate(value) for k, v in _leaves(f"{prefix}[{i}]", item).items()}
    return {}


def _replaced(prefix: str, value, flat: dict, missing=None):
    """``value`` with every float array at a path of ``flat`` replaced (others: ``missing`` when
    it is given, else kept)."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return flat.get(prefix, value if missing is None else missing)
    if isinstance(value, (list, tuple)):
        return type(value)(_replaced(f"{prefix}[{i}]", v, flat, missing) for i, v in enumerate(value))
    return value if missing is None else None


NESTED = {**ref.NESTED_EXAMPLES, **rnn_utils_ref.NESTED_EXAMPLES}


@pytest.mark.parametrize("name", sorted(NESTED))
def test_nested_vjp_matches_finite_differences(name):
    """The VJPs of the functions whose arguments nest arrays (the flat parameter list, hx pairs,
    PackedSequences) against finite differences of every array inside them: the gradient has the
    argument's structure."""
    rng = np.random.default_rng(7)
    args, kwargs = NESTED[name](rng)
    entry = RF.entries()[name]
    bound = inspect.signature(entry.forward).bind(*args, **kwargs)
    inputs = {k: v for name_, value in bound.arguments.items() for k, v in _leaves(name_, value).items()}

    def forward(flat):
        call = {k: _replaced(k, v, flat) for k, v in bound.arguments.items()}
        out = entry.forward(**call)
        return _leaves("out", out if isinstance(out, (tuple, list)) else (out,))

    outputs = forward(inputs)
    cotangents = {k: rng.standard_normal(v.shape) for k, v in outputs.items()}
    out = entry.forward(*args, **kwargs)
    cot = _replaced("out", out if isinstance(out, (tuple, list)) else (out,), cotangents, missing=np.nan)
    cot = cot if isinstance(out, (tuple, list)) else cot[0]
    grads = RF.vjp(name, *args, cotangent=cot, **kwargs)
    flat = {k: v for arg_name, g in grads.items() for k, v in _leaves(arg_name, g).items()}
    assert set(flat) == set(inputs), (sorted(flat), sorted(inputs))
    check = vjp_check(forward, inputs, cotangents, flat)
    assert check.ok(), check


def _gru_by_loops(x, lengths, h0, params, layers, directions):
    """An independent GRU: explicit loops over layers, directions, sequences and steps (no
    vectorisation, no masks), each sequence run over its own length."""
    def sig(v):
        return 1.0 / (1.0 + np.exp(-v))

    batch = len(lengths)
    out = [[x[:n, b] for b, n in enumerate(lengths)]]  # per layer: per sequence (L_b, features)
    h_n = np.zeros_like(h0)
    for layer in range(layers):
        seqs = out[-1]
        outs = []
        for b in range(batch):
            parts = []
            for d in range(directions):
                w_ih, w_hh, b_ih, b_hh = params[4 * (layer * directions + d):4 * (layer * directions + d) + 4]
                h = h0[layer * directions + d, b]
                steps = range(lengths[b] - 1, -1, -1) if d else range(lengths[b])
                ys = np.zeros((lengths[b], len(h)))
                for t in steps:
                    gi, gh = w_ih @ seqs[b][t] + b_ih, w_hh @ h + b_hh
                    k = len(h)
                    r, z = sig(gi[:k] + gh[:k]), sig(gi[k:2 * k] + gh[k:2 * k])
                    n = np.tanh(gi[2 * k:] + r * gh[2 * k:])
                    h = (1 - z) * n + z * h
                    ys[t] = h
                h_n[layer * directions + d, b] = h
                parts.append(ys)
            outs.append(np.concatenate(parts, axis=1))
        out.append(outs)
    return out[-1], h_n


def test_functional_gru_on_packed_data_is_the_plain_loops():
    rng = np.random.default_rng(3)
    cfg = ref.RNNConfig("GRU", 2, 3, num_layers=2, bidirectional=True)
    params = [rng.uniform(-0.6, 0.6, s) for s in ref.parameter_shapes(cfg).values()]
    lengths = np.array([5, 3, 3, 1])  # sorted, as _VF takes a packed batch
    x = rng.standard_normal((5, 4, 2))
    h0 = rng.standard_normal((4, 4, 3))
    data, sizes, _, _ = RF.pack_padded_sequence(x, lengths)
    output, h_n = RF.gru(data, h0, params, True, 2, 0.0, False, True, False, batch_sizes=sizes)
    expected, expected_h = _gru_by_loops(x, lengths, h0, params, 2, 2)
    rows = np.cumsum(np.r_[0, sizes])
    for b, n in enumerate(lengths):
        np.testing.assert_allclose(output[rows[:n] + b], expected[b], rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(h_n, expected_h, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("mode", ["RNN_TANH", "RNN_RELU", "LSTM", "GRU"])
def test_the_stack_over_time_is_the_cell_step_after_step(mode):
    rng = np.random.default_rng(5)
    cfg = ref.RNNConfig(mode, 3, 2)
    params = [rng.uniform(-0.7, 0.7, s) for s in ref.parameter_shapes(cfg).values()]
    x, h = rng.standard_normal((4, 2, 3)), rng.standard_normal((1, 2, 2))
    lstm_mode = mode == "LSTM"
    hx = (h, rng.standard_normal((1, 2, 2))) if lstm_mode else h
    name = {"RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu", "LSTM": "lstm", "GRU": "gru"}[mode]
    output, *states = getattr(RF, name)(x, hx, params, True, 1, 0.0, True, False, False)
    cell = getattr(RF, f"{name}_cell")
    state = (hx[0][0], hx[1][0]) if lstm_mode else hx[0]
    for t in range(4):
        state = cell(x[t], state, *params)
        np.testing.assert_allclose(output[t], state[0] if lstm_mode else state, rtol=1e-15)
    np.testing.assert_allclose(states[-1][0], state[1] if lstm_mode else state, rtol=1e-15)


def test_functional_stack_rejects_what_torch_rejects():
    rng = np.random.default_rng(0)
    cfg = ref.RNNConfig("GRU", 2, 3, num_layers=2)
    params = [rng.uniform(-0.6, 0.6, s) for s in ref.parameter_shapes(cfg).values()]
    x, h0 = rng.standard_normal((4, 1, 2)), np.zeros((2, 1, 3))
    with pytest.raises(ValueError):  # random dropout between layers: masks unknown
        RF.gru(x, h0, params, True, 2, 0.5, True, False, False)
    with pytest.raises(ValueError):  # one weight short
        RF.gru(x, h0, params[:-1], True, 2, 0.0, True, False, False)
    with pytest.raises(ValueError):  # h0 of one layer
        RF.gru(x, h0[:1], params, True, 2, 0.0, True, False, False)
    dropped = RF.gru(x, h0, params, True, 2, 1.0, True, False, False)[0]
    second = RF.gru(np.zeros((4, 1, 3)), h0[1:], params[4:], True, 1, 0.0, True, False, False)[0]
    np.testing.assert_array_equal(dropped, second)  # p = 1: the second layer sees zeros
    np.testing.assert_array_equal(RF.gru(x, h0, params, True, 2, 0.5, False, False, False)[0],
                                  RF.gru(x, h0, params, True, 2, 0.0, True, False, False)[0])  # eval: none


def test_relu_cell_by_hand_and_its_gradient_at_the_kink():
    """h' = relu(W_ih x + W_hh h): [2·1 + 1·(-2), 1·1 + 0] = [0, 1]; relu'(0) = 0 stops the gradient."""
    w_ih, w_hh = np.array([[2.0], [1.0]]), np.array([[1.0, 0.0], [0.0, 0.0]])
    x, h = np.array([[1.0]]), np.array([[-2.0, 5.0]])
    np.testing.assert_array_equal(RF.rnn_relu_cell(x, h, w_ih, w_hh), [[0.0, 1.0]])
    g = RF.vjp("rnn_relu_cell", x, h, w_ih, w_hh, cotangent=np.array([[1.0, 1.0]]))
    np.testing.assert_array_equal(g["input"], [[1.0]])
    np.testing.assert_array_equal(g["hx"], [[0.0, 0.0]])
    np.testing.assert_array_equal(g["w_ih"], [[0.0], [1.0]])
