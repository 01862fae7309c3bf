"""The attention family's references on their own terms (no torch): hand values, independent
formulas (a loop over heads and positions, explicit GQA repetition), the mask, causal, dropout and
fully-masked-row conventions, the VJPs against finite differences (``vjp_check``), the transformer
composition against a direct composition of the pieces, and the error analysis' twins computing the
reference's values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reference import attention as A
from reference import attention_errors as AE
from reference import transformer as TR
from reference.finite_differences import vjp_check
from reference.normalization import layer_norm

RNG = np.random.default_rng(20240611)


def _naive_attention(q, k, v, allowed, scale):
    """Loop over every query (an independent formula)."""
    out = np.zeros((*q.shape[:-1], v.shape[-1]))
    for idx in np.ndindex(*q.shape[:-1]):
        z = np.array([q[idx] @ k[(*idx[:-1], j)] * scale for j in range(k.shape[-2])])
        ok = allowed[idx] if allowed is not None else np.ones(k.shape[-2], bool)
        if not ok.any():
            continue
        w = np.where(ok, np.exp(z - z[ok].max()), 0.0)
        out[idx] = (w / w.sum()) @ v[idx[:-1]]
    return out


def test_uniform_scores_average_the_values():
    q, k, v = np.zeros((2, 3, 4)), RNG.standard_normal((2, 5, 4)), RNG.standard_normal((2, 5, 3))
    out = A.scaled_dot_product_attention(q, k, v)
    np.testing.assert_allclose(out, np.broadcast_to(v.mean(axis=1, keepdims=True), out.shape), rtol=1e-14)


@pytest.mark.parametrize("L, S", [(2, 5), (5, 2), (3, 3)])
def test_causal_is_the_top_left_triangle_and_bool_masks_attend_where_true(L, S):
    q, k, v = RNG.standard_normal((2, L, 4)), RNG.standard_normal((2, S, 4)), RNG.standard_normal((2, S, 3))
    allowed = np.broadcast_to(np.arange(S)[None] <= np.arange(L)[:, None], (2, L, S))
    expected = _naive_attention(q, k, v, allowed, 0.5)
    np.testing.assert_allclose(A.scaled_dot_product_attention(q, k, v, is_causal=True), expected, atol=1e-14)
    np.testing.assert_allclose(A.scaled_dot_product_attention(q, k, v, A.causal_mask(L, S)), expected, atol=1e-14)
    with pytest.raises(ValueError):
        A.scaled_dot_product_attention(q, k, v, A.causal_mask(L, S), is_causal=True)


def test_fully_masked_rows_are_zero_and_pass_no_gradient():
    q, k, v = RNG.standard_normal((3, 4)), RNG.standard_normal((5, 4)), RNG.standard_normal((5, 2))
    mask = RNG.random((3, 5)) > 0.5
    mask[1] = False
    out = A.scaled_dot_product_attention(q, k, v, mask)
    assert np.all(out[1] == 0)
    grads = A._sdpa_vjp(np.ones_like(out), q, k, v, mask)
    assert np.all(grads["query"][1] == 0)
    # MultiheadAttention's weights path (a plain softmax) gives NaN there; without weights, zero.
    x = RNG.standard_normal((2, 1, 4))
    params = dict(in_proj_weight=RNG.standard_normal((12, 4)), in_proj_bias=None, bias_k=None, bias_v=None,
                  out_proj_weight=RNG.standard_normal((4, 4)), out_proj_bias=None)
    kpm = np.ones((1, 2), dtype=bool)
    with_weights = A.multi_head_attention(x, x, x, 4, 2, **params, add_zero_attn=False, dropout_p=0.0,
                                          key_padding_mask=kpm, need_weights=True)
    without = A.multi_head_attention(x, x, x, 4, 2, **params, add_zero_attn=False, dropout_p=0.0,
                                     key_padding_mask=kpm, need_weights=False)
    assert np.all(np.isnan(with_weights.output)) and np.all(without.output == 0)


def test_grouped_query_attention_repeats_each_head_for_its_group():
    q, k, v = RNG.standard_normal((2, 6, 3, 4)), RNG.standard_normal((2, 2, 5, 4)), RNG.standard_normal((2, 2, 5, 3))
    expected = _naive_attention(q, np.repeat(k, 3, axis=1), np.repeat(v, 3, axis=1), None, 0.3)
    np.testing.assert_allclose(A.scaled_dot_product_attention(q, k, v, scale=0.3, enable_gqa=True), expected,
                               atol=1e-14)
    with pytest.raises(ValueError):
        A.scaled_dot_product_attention(q, k, v)  # heads differ without enable_gqa


def test_float_and_bool_masks_and_dropout():
    q, k, v = RNG.standard_normal((3, 4)), RNG.standard_normal((5, 4)), RNG.standard_normal((5, 2))
    mask = RNG.random((3, 5)) > 0.3
    mask[:, 0] = True
    float_mask = np.where(mask, 0.0, -np.inf)
    np.testing.assert_array_equal(A.scaled_dot_product_attention(q, k, v, mask),
                                  A.scaled_dot_product_attention(q, k, v, float_mask))
    keep = RNG.random((3, 5)) > 0.4
    att = A.sdpa_forward(q, k, v, mask, 0.25, dropout_mask=keep)
    np.testing.assert_allclose(att.out, (att.p * keep / 0.75) @ v, rtol=1e-14)
    with pytest.raises(ValueError):
        A.scaled_dot_product_attention(q, k, v, dropout_p=0.25)  # the reference never draws a mask


@pytest.mark.parametrize("kwargs", [{}, {"is_causal": True}, {"enable_gqa": True, "scale": 0.7},
                                    {"dropout_p": 0.5, "dropout_mask": "keep"}])
def test_sdpa_vjp_matches_finite_differences(kwargs):
    q, k, v = RNG.standard_normal((2, 4, 3, 5)), RNG.standard_normal((2, 2, 4, 5)), RNG.standard_normal((2, 2, 4, 3))
    if not kwargs.get("enable_gqa"):
        k, v = np.repeat(k, 2, axis=1), np.repeat(v, 2, axis=1)
    if kwargs.get("dropout_mask") == "keep":
        kwargs = {**kwargs, "dropout_mask": RNG.random((2, 4, 3, 4)) > 0.5}
    inputs = {"query": q, "key": k, "value": v}
    g = RNG.standard_normal((2, 4, 3, 3))
    grads = A._sdpa_vjp(g, q, k, v, **kwargs)
    check = vjp_check(lambda a: {"out": A.scaled_dot_product_attention(a["query"], a["key"], a["value"], **kwargs)},
                      inputs, {"out": g}, grads)
    assert check.ok(), check


def _mha_loop(query, key, value, params, heads, kpm=None, mask=None):
    """MultiheadAttention with a loop over batch entries and heads (an independent composition)."""
    L, N, E = query.shape
    hd = E // heads
    wq, wk, wv = np.split(params["in_proj_weight"], 3)
    bq, bk, bv = np.split(params["in_proj_bias"], 3)
    out = np.zeros((L, N, E))
    weights = np.zeros((N, L, key.shape[0]))
    for n in range(N):
        q, k, v = query[:, n] @ wq.T + bq, key[:, n] @ wk.T + bk, value[:, n] @ wv.T + bv
        heads_out = []
        for h in range(heads):
            sl = slice(h * hd, (h + 1) * hd)
            z = q[:, sl] @ k[:, sl].T / math.sqrt(hd)
            if mask is not None:
                z = z + np.where(mask, -np.inf, 0.0)
            if kpm is not None:
                z = z + np.where(kpm[n], -np.inf, 0.0)[None]
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p = p / p.sum(axis=1, keepdims=True)
            weights[n] += p / heads
            heads_out.append(p @ v[:, sl])
        out[:, n] = np.concatenate(heads_out, axis=1) @ params["out_proj.weight"].T + params["out_proj.bias"]
    return out, weights


def test_multihead_attention_matches_a_loop_over_heads():
    E, H, L, S, N = 6, 3, 4, 5, 2
    params = {"in_proj_weight": RNG.standard_normal((3 * E, E)), "in_proj_bias": RNG.standard_normal(3 * E),
              "out_proj.weight": RNG.standard_normal((E, E)), "out_proj.bias": RNG.standard_normal(E)}
    q, k, v = RNG.standard_normal((L, N, E)), RNG.standard_normal((S, N, E)), RNG.standard_normal((S, N, E))
    kpm, mask = RNG.random((N, S)) > 0.7, RNG.random((L, S)) > 0.8
    kpm[:, 0] = mask[:, 1] = False
    expected, weights = _mha_loop(q, k, v, params, H, kpm, mask)
    fw = A.multi_head_attention(q, k, v, E, H, **A.mha_module_params(params), add_zero_attn=False, dropout_p=0.0,
                                key_padding_mask=kpm, attn_mask=mask)
    np.testing.assert_allclose(fw.output, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fw.weights, weights, rtol=1e-12, atol=1e-14)


def test_multihead_attention_vjp_matches_finite_differences():
    args, kwargs = A._mha_example(np.random.default_rng(5))
    names = ["query", "key", "value"]
    fw = A.multi_head_attention(*args, **kwargs)
    g, gw = RNG.standard_normal(fw.output.shape), RNG.standard_normal(fw.weights.shape)
    grads = fw.pullback(g, gw)
    inputs = dict(zip(names, args[:3]))
    arrays = {**inputs, "q_proj_weight": kwargs["q_proj_weight"], "bias_k": args[7], "out_proj_weight": args[11]}

    def forward(a):
        call = list(args)
        call[:3] = a["query"], a["key"], a["value"]
        call[7], call[11] = a["bias_k"], a["out_proj_weight"]
        out = A.multi_head_attention(*call, **{**kwargs, "q_proj_weight": a["q_proj_weight"]})
        return {"out": out.output, "w": out.weights}

    check = vjp_check(forward, arrays, {"out": g, "w": gw}, {k: grads[k] for k in arrays})
    assert check.ok(), check


def _layer_params(rng, names, e=4, ff=3):
    return dict(zip(names, TR._layer_example(rng, names, e, ff)))


def test_encoder_layer_is_the_composition_of_its_pieces():
    rng = np.random.default_rng(2)
    params = _layer_params(rng, TR.ENCODER_LAYER_PARAMS)
    x = rng.standard_normal((3, 2, 4))
    out, _ = TR.encoder_layer(x, params, 2, dropout=0.0, activation="relu")
    sa = A.multi_head_attention(x, x, x, 4, 2, **A.mha_module_params(
        {k[10:]: v for k, v in params.items() if k.startswith("self_attn.")}), add_zero_attn=False, dropout_p=0.0,
        need_weights=False).output
    x1 = layer_norm(x + sa, (4,), params["norm1.weight"], params["norm1.bias"])
    ff = np.maximum(x1 @ params["linear1.weight"].T + params["linear1.bias"], 0) @ params["linear2.weight"].T \
        + params["linear2.bias"]
    np.testing.assert_allclose(out, layer_norm(x1 + ff, (4,), params["norm2.weight"], params["norm2.bias"]),
                               rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("kind", ["encoder", "decoder", "transformer"])
def test_stack_pullbacks_match_finite_differences(kind):
    rng = np.random.default_rng(3)
    src, tgt = rng.standard_normal((3, 2, 4)), rng.standard_normal((2, 2, 4))
    params = {}
    layers = {"encoder": [("encoder", "layers.0."), ("encoder", "layers.1.")],
              "decoder": [("decoder", "layers.0."), ("decoder", "layers.1.")],
              "transformer": [("encoder", "encoder.layers.0."), ("decoder", "decoder.layers.0.")]}[kind]
    for k, prefix in layers:
        names = TR.ENCODER_LAYER_PARAMS if k == "encoder" else TR.DECODER_LAYER_PARAMS
        params.update({prefix + n: v for n, v in _layer_params(rng, names).items()})
    norms = {"encoder": ["norm."], "decoder": ["norm."], "transformer": ["encoder.norm.", "decoder.norm."]}[kind]
    for p in norms:
        params[p + "weight"], params[p + "bias"] = 1 + 0.2 * rng.standard_normal(4), rng.standard_normal(4)
    common = dict(nhead=2, dropout=0.0, activation="gelu", norm_first=kind == "decoder")

    def run(a):
        ps = {k: a.get(k, v) for k, v in params.items()}
        if kind == "encoder":
            return TR.encoder(a["src"], ps, 2, src_key_padding_mask=np.array([[False] * 3, [False, False, True]]),
                              **common)
        if kind == "decoder":
            return TR.decoder(a["tgt"], a["src"], ps, 2, tgt_mask=A.square_subsequent_mask(2), **common)
        return TR.transformer(a["src"], a["tgt"], ps, 1, 1, **common)

    inputs = {"src": src, "tgt": tgt, **params}
    out, back = run(inputs)
    g = rng.standard_normal(out.shape)
    res = back(g)
    grads = dict(res[-1])
    if kind == "encoder":
        grads["src"] = res[0]
    elif kind == "decoder":
        grads["tgt"], grads["src"] = res[0], res[1]
    else:
        grads["src"], grads["tgt"] = res[0], res[1]
    assert set(params) <= set(grads)
    check = vjp_check(lambda a: {"out": run(a)[0]}, inputs, {"out": g}, grads)
    assert check.ok(), check


def test_nested_convention_zeroes_padded_positions_before_the_final_norm():
    rng = np.random.default_rng(4)
    params = {"layers.0." + k: v for k, v in _layer_params(rng, TR.ENCODER_LAYER_PARAMS).items()}
    params.update({"norm.weight": np.ones(4), "norm.bias": np.full(4, 0.5)})
    x = rng.standard_normal((2, 3, 4))
    kpm = np.array([[False, False, True], [False, False, False]])
    dense, _ = TR.encoder(x, params, 1, 2, src_key_padding_mask=kpm, dropout=0.0, batch_first=True)
    nested, _ = TR.encoder(x, params, 1, 2, src_key_padding_mask=kpm, dropout=0.0, batch_first=True, nested=True)
    np.testing.assert_array_equal(nested[0, 2], np.full(4, 0.5))  # norm(0) = its bias
    np.testing.assert_array_equal(nested[~kpm], dense[~kpm])


def test_twins_compute_the_reference_values_and_non_negative_bounds():
    rng = np.random.default_rng(6)
    args, kwargs = A._sdpa_example(rng)
    twin = AE.sdpa(*args, **kwargs)
    np.testing.assert_allclose(twin.out.v, A.scaled_dot_product_attention(*args, **kwargs), rtol=1e-13, atol=1e-14)
    assert np.all(twin.out.e >= 0)
    params = _layer_params(rng, TR.DECODER_LAYER_PARAMS)
    tgt, mem = rng.standard_normal((3, 2, 4)), rng.standard_normal((2, 2, 4))
    with AE.rounding(2.0**-24):
        out_b, back_b = TR.decoder_layer(tgt, mem, params, 2, dropout=0.0, activation="gelu_tanh",
                                         pieces=AE.BoundedPieces(2.0**-24))
        g = rng.standard_normal(out_b.shape)
        gt_b, gm_b, grads_b = back_b(g)
    out, back = TR.decoder_layer(tgt, mem, params, 2, dropout=0.0, activation="gelu_tanh")
    gt, gm, grads = back(g)
    np.testing.assert_allclose(out_b.v, out, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(gm_b.v, gm, rtol=1e-10, atol=1e-12)
    assert set(grads_b) == set(grads) and all(np.all(b.e >= 0) for b in grads_b.values())


def test_bounded_arithmetic_covers_float32_rounding():
    """The running bound of a small attention, evaluated in float32 NumPy (an actual rounding of every
    operation), covers the error against float64."""
    rng = np.random.default_rng(7)
    q, k, v = (rng.standard_normal((2, 3, 8)) for _ in range(3))
    exact = A.scaled_dot_product_attention(q, k, v)
    q32, k32, v32 = (a.astype(np.float32) for a in (q, k, v))
    r = np.float32(math.sqrt(1 / math.sqrt(8)))
    z = (q32 * r) @ (k32 * r).swapaxes(-1, -2)
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    got = (p / p.sum(axis=-1, keepdims=True)) @ v32
    bound = AE.sdpa(q32.astype(np.float64), k32.astype(np.float64), v32.astype(np.float64)).out.e * 2.0**-24
    exact32 = A.scaled_dot_product_attention(*(a.astype(np.float64) for a in (q32, k32, v32)))
    assert np.all(np.abs(got - exact32) <= bound + 2.0**-24 * np.abs(exact32))
    assert np.abs(exact - exact32).max() < 1e-5
