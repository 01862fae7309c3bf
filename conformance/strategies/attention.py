"""Case strategies of the attention family: scaled_dot_product_attention, MultiheadAttention and
the transformer modules.

Every case is valid by construction: sizes drawn within a budget (heads first, then the head dim,
so that embed_dim = heads·head_dim), masks drawn so that every query keeps at least one key unless
a regime asks for a fully masked row, a causal hint only with the causal mask it hints at. The
simplest option is drawn first everywhere (no mask, default arguments, float64-friendly values).
Attention has no exact tier (softmax is transcendental): values are normals or uniforms.

Parameters of a module are drawn from one seed (``parameters.seed``): weights N(0, 1/fan_in),
biases N(0, 1/4), norm weights 1 + N(0, 1/16), so the layers stay well scaled; a case input per
parameter, named by its state-dict path (``layers.1.self_attn.in_proj_weight``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from backends.base import CONTIGUOUS, Case, Layout
from conformance import strategies as S
from conformance.dtypes import DTYPES

SCALES = (None, 0.5, 2.0, 0.125)
DROPOUT_P = (0.0, 0.25, 0.5, 0.125)
EPS = (1e-5, 1e-6, 0.1)
# Activations of the transformer layers: torch's argument -> the reference's name.
ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "ReLU()": "relu", "GELU(tanh)": "gelu_tanh"}
MODULE_ACTIVATIONS = {"ReLU()": ("torch.nn.ReLU", {}), "GELU(tanh)": ("torch.nn.GELU", {"approximate": "tanh"})}
INPUT_KINDS = ("normal", "uniform")
# About one mask in eight leaves some query no key at all (a regime pins it).
DEAD_ROW_ODDS = (False,) * 7 + (True,)


# -- shared draws ------------------------------------------------------------------------------------


def input_values(d: S.Drawer, shape: Sequence[int], dtype: str, label: str, layout: Layout = CONTIGUOUS,
                 scale: float = 1.0) -> np.ndarray:
    """Float-tier values (normal or uniform) of ``shape``, constant along an expanded layout's dims."""
    seed = d.integer(0, 2**32 - 1, f"{label}.seed")
    kind = d.choice(INPUT_KINDS, f"{label}.kind")
    rng = np.random.default_rng(seed)
    arr = S.float_array(rng, S.source_shape(shape, layout), kind, scale)
    return np.broadcast_to(DTYPES[dtype].round(arr), tuple(shape)).copy()


def last_dim_layout(d: S.Drawer, ndim: int, label: str, contiguous_last: bool = False,
                    expanded: bool = True, expand_features: bool = True) -> Layout:
    """A layout (contiguous first); with ``contiguous_last`` one whose last dim keeps stride 1
    (what the flash kernel requires): permutations of the leading dims, steps in them only, and no
    stride-0 last dim."""
    layout = S.layouts(d, ndim, label, channels_last=not contiguous_last, expanded=expanded)
    if not expand_features and layout.kind == "expanded" and ndim - 1 in layout.dims:
        dims = tuple(a for a in layout.dims if a != ndim - 1)
        return Layout("expanded", dims=dims) if dims else CONTIGUOUS
    if not contiguous_last:
        return layout
    if layout.kind == "permuted":
        lead = [a for a in layout.perm if a != ndim - 1]
        perm = (*lead, ndim - 1)
        return Layout("permuted", perm=perm) if perm != tuple(range(ndim)) else CONTIGUOUS
    if layout.kind == "strided":
        step = (*layout.step[:-1], 1)
        return Layout("strided", step=step) if any(s > 1 for s in step) else CONTIGUOUS
    if layout.kind == "expanded":
        dims = tuple(a for a in layout.dims if a != ndim - 1)
        return Layout("expanded", dims=dims) if dims else CONTIGUOUS
    return layout


def key_mask(rng: np.random.Generator, shape: Sequence[int], density: float, dead_row: bool) -> np.ndarray:
    """A bool mask over keys (last axis), True = excluded, excluding each key with probability
    ``density`` but keeping one key of every row — except the first row (of the last two axes'
    rows) when ``dead_row``, which excludes every key."""
    shape = tuple(shape)
    excluded = rng.random(shape) < density
    if shape and shape[-1] > 0 and int(np.prod(shape)) > 0:
        keep = rng.integers(0, shape[-1], size=shape[:-1])
        np.put_along_axis(excluded, keep[..., None], False, axis=-1)
        if dead_row:
            excluded.reshape(-1, shape[-1])[0] = True
    return excluded


def additive_mask(rng: np.random.Generator, excluded: np.ndarray, dtype: str) -> np.ndarray:
    """A float mask: N(0, 1) added where the key takes part, -inf where it is excluded."""
    values = DTYPES[dtype].round(rng.standard_normal(excluded.shape))
    return np.where(excluded, -np.inf, values)


def draw_mask(d: S.Drawer, label: str, shape: Sequence[int], dtype: str, *, attend_true: bool,
              kinds: Sequence[str] = ("none", "bool", "float"), dead_row: bool | None = None
              ) -> tuple[str, np.ndarray | None]:
    """(kind, mask) of a mask argument: none, bool (True = attend when ``attend_true``, sdpa's
    convention; True = excluded otherwise, MultiheadAttention's) or float (-inf excluded)."""
    kind = d.choice(tuple(kinds), f"{label}")
    if kind == "none":
        return kind, None
    rng = np.random.default_rng(d.integer(0, 2**32 - 1, f"{label}.seed"))
    dead = d.choice(DEAD_ROW_ODDS, f"{label}.fully masked row") if dead_row is None else dead_row
    excluded = key_mask(rng, shape, 0.3, dead)
    if kind == "bool":
        return kind, ~excluded if attend_true else excluded
    return kind, additive_mask(rng, excluded, dtype)


# -- scaled_dot_product_attention -------------------------------------------------------------------


def sdpa_case(d: S.Drawer, dtype: str, kernel: str) -> Case:
    """query (*, Hq, L, E), key (*, Hk, S, E), value (*, Hk, S, Ev) with 0-2 batch dims before
    the heads (or none at all: (L, E)); the flash kernel takes (N, H, L, E) with Ev = E, the last
    dim contiguous and no dropout (what torch's CPU flash kernel accepts)."""
    flash = kernel == "flash"
    if flash:
        batch = S.sizes_within(d, 1, 4, hi=3, label="batch")
        heads = True
    else:
        batch = S.sizes_within(d, d.integer(0, 2, "batch ndim"), 4, hi=3, label="batch")
        heads = d.flag("heads dim") if not batch else True
    hk = d.integer(1, 3, "key heads") if heads else 0
    gqa = heads and d.flag("enable_gqa")
    hq = hk * d.integer(2, 3, "heads per group") if gqa else hk
    L, S_ = d.integer(1, 6, "L"), d.integer(1, 6, "S")
    E = d.integer(1, 8, "E")
    Ev = E if flash else d.choice((E, 1, 3, 8), "Ev")
    lead_q, lead_k = (*batch, *([hq] if heads else [])), (*batch, *([hk] if heads else []))
    shapes = {"query": (*lead_q, L, E), "key": (*lead_k, S_, E), "value": (*lead_k, S_, Ev)}
    mask_shape_kind = d.choice(("(L, S)", "full", "broadcast heads"), "attn_mask shape") if heads or batch \
        else "(L, S)"
    mask_shape = {"(L, S)": (L, S_), "full": (*lead_q, L, S_),
                  "broadcast heads": (*batch, *([1] if heads else []), L, S_)}[mask_shape_kind]
    mask_kind, mask = draw_mask(d, "attn_mask", mask_shape, dtype, attend_true=True)
    causal = mask is None and d.flag("is_causal")
    scale = d.choice(SCALES, "scale")
    p = 0.0 if flash else d.choice(DROPOUT_P, "dropout_p")
    layouts = {n: last_dim_layout(d, len(s), f"layout.{n}", contiguous_last=flash) for n, s in shapes.items()}
    inputs = {n: input_values(d, s, dtype, n, layouts[n]) for n, s in shapes.items()}
    params: dict[str, Any] = {"dropout_p": p, "is_causal": causal, "scale": scale, "enable_gqa": gqa,
                              "kernel": kernel}
    types = {}
    if mask is not None:
        inputs["attn_mask"] = mask
        types["attn_mask"] = "bool" if mask_kind == "bool" else "float"
    return Case(op="scaled_dot_product_attention", dtype=dtype, params=params, inputs=inputs,
                differentiable=("query", "key", "value"), layouts=layouts, types=types,
                cotangent_seed=S.seed(d), note=f"mask {mask_kind}")


def sdpa_invalid_case(d: S.Drawer, dtype: str, kernel: str) -> Case:
    """A rule torch enforces, broken: the head dims of key and value differ, query's and key's
    embeddings differ, an explicit mask with is_causal, GQA heads that do not divide, a mask that
    does not broadcast, a float mask of another dtype."""
    rule = d.choice(("key/value length", "embedding", "mask with is_causal", "gqa heads", "mask shape",
                     "mask dtype"), "rule")
    hq, hk = (4, 3) if rule == "gqa heads" else (2, 2)
    shapes = {"query": (1, hq, 3, 4), "key": (1, hk, 5, 4 if rule != "embedding" else 3),
              "value": (1, hk, 5 if rule != "key/value length" else 4, 4)}
    inputs = {n: input_values(d, s, dtype, n) for n, s in shapes.items()}
    params: dict[str, Any] = {"dropout_p": 0.0, "is_causal": rule == "mask with is_causal", "scale": None,
                              "enable_gqa": rule == "gqa heads", "kernel": kernel}
    types = {}
    if rule in ("mask with is_causal", "mask shape", "mask dtype"):
        inputs["attn_mask"] = np.ones((3, 4 if rule == "mask shape" else 5), dtype=bool)
        if rule == "mask dtype":
            inputs["attn_mask"] = np.zeros((3, 5), dtype=np.int64)
            types["attn_mask"] = "int64"
    return Case(op="scaled_dot_product_attention", dtype=dtype, params=params, inputs=inputs,
                differentiable=("query", "key", "value"), types=types, invalid=True, note=rule)


# -- MultiheadAttention -------------------------------------------------------------------------------


def head_sizes(d: S.Drawer, even: bool = False) -> tuple[int, int]:
    """(num_heads, embed_dim): heads first (even for the fast path), embed_dim a multiple."""
    heads = 2 * d.integer(1, 2, "num_heads/2") if even else d.integer(1, 3, "num_heads")
    return heads, heads * d.integer(1, 4, "head_dim")


def module_parameters(d: S.Drawer, shapes: dict[str, tuple[int, ...]], dtype: str) -> dict[str, np.ndarray]:
    """Every parameter from one seed: weights N(0, 1/fan_in), biases N(0, 1/4) (bias_k, bias_v
    too), norm weights 1 + N(0, 1/16) (module docstring)."""
    rng = np.random.default_rng(d.integer(0, 2**32 - 1, "parameters.seed"))
    out = {}
    for name, shape in shapes.items():
        z = rng.standard_normal(shape)
        leaf = name.rsplit(".", 1)[-1]
        if name.split(".")[-2:-1] and name.split(".")[-2].startswith("norm") and leaf == "weight":
            value = 1 + z / 4
        elif len(shape) == 2 and not leaf.startswith("bias"):
            value = z / math.sqrt(max(shape[1], 1))
        else:
            value = z / 2
        out[name] = DTYPES[dtype].round(value)
    return out


def mha_parameter_shapes(e: int, kdim: int, vdim: int, bias: bool, add_bias_kv: bool, prefix: str = ""
                         ) -> dict[str, tuple[int, ...]]:
    """MultiheadAttention's parameters by state-dict path: packed in_proj_weight when kdim = vdim =
    embed_dim, else the three separate projection weights."""
    shapes: dict[str, tuple[int, ...]] = {}
    if kdim == e and vdim == e:
        shapes[f"{prefix}in_proj_weight"] = (3 * e, e)
    else:
        shapes.update({f"{prefix}q_proj_weight": (e, e), f"{prefix}k_proj_weight": (e, kdim),
                       f"{prefix}v_proj_weight": (e, vdim)})
    if bias:
        shapes[f"{prefix}in_proj_bias"] = (3 * e,)
    if add_bias_kv:
        shapes.update({f"{prefix}bias_k": (1, 1, e), f"{prefix}bias_v": (1, 1, e)})
    shapes[f"{prefix}out_proj.weight"] = (e, e)
    if bias:
        shapes[f"{prefix}out_proj.bias"] = (e,)
    return shapes


def mha_case(d: S.Drawer, dtype: str, fast: bool) -> Case:
    """MultiheadAttention: constructor arguments, forward keyword arguments, sequence inputs in
    (L, N, E) / (N, L, E) / unbatched (L, E) form, masks in MultiheadAttention's convention.
    ``fast``: the eval fast path's conditions (batched, batch_first, self-attention, even heads,
    bias, no bias_kv / zero attention, bool masks, no gradient)."""
    heads, e = head_sizes(d, even=fast)
    if fast:
        bias, bias_kv, zero_attn, batch_first, batched, self_attn = True, False, False, True, True, True
        kdim = vdim = e
        p, train = 0.0, False
    else:
        bias = d.choice((True, False), "bias")
        bias_kv, zero_attn = d.flag("add_bias_kv"), d.flag("add_zero_attn")
        batch_first = d.flag("batch_first")
        batched = not d.flag("unbatched")
        self_attn = d.choice(("cross", "self"), "attention") == "self"
        kdim = e if self_attn else d.choice((e, 1, 3), "kdim")
        vdim = e if self_attn else d.choice((e, 2, 5), "vdim")
        train = d.flag("train")
        p = d.choice(DROPOUT_P, "dropout")
    n = d.integer(1, 3, "N") if batched else 1
    L = d.integer(1, 5, "L")
    S_ = L if self_attn else d.integer(1, 5, "S")
    s_full = S_ + int(bias_kv) + int(zero_attn)

    def seq(length: int, width: int) -> tuple[int, ...]:
        if not batched:
            return (length, width)
        return (n, length, width) if batch_first else (length, n, width)

    names = ("query",) if self_attn else ("query", "key", "value")
    shapes = {"query": seq(L, e)} if self_attn else {"query": seq(L, e), "key": seq(S_, kdim),
                                                       "value": seq(S_, vdim)}
    layouts = {name: last_dim_layout(d, len(s), f"layout.{name}") for name, s in shapes.items()}
    inputs = {name: input_values(d, s, dtype, name, layouts[name]) for name, s in shapes.items()}
    inputs.update(module_parameters(d, mha_parameter_shapes(e, kdim, vdim, bias, bias_kv), dtype))
    kinds = ("none", "bool") if fast else ("none", "bool", "float")
    need_weights = d.choice((True, False), "need_weights")
    average = d.choice((True, False), "average_attn_weights")
    causal = d.flag("is_causal")
    kwargs: dict[str, Any] = {"need_weights": need_weights, "average_attn_weights": average}
    types: dict[str, str] = {}
    kpm_kind, kpm = draw_mask(d, "key_padding_mask", (n, S_) if batched else (S_,), dtype, attend_true=False,
                              kinds=kinds)
    if causal:
        mask_kind, mask = d.choice(("bool", "float"), "attn_mask"), ~S_causal(L, S_)
        if mask_kind == "float":
            mask = np.where(mask, -np.inf, 0.0)
    else:
        dims = d.choice((2, 3), "attn_mask dims")
        mask_shape = (L, S_) if dims == 2 else (n * heads, L, S_)
        mask_kind, mask = draw_mask(d, "attn_mask", mask_shape, dtype, attend_true=False, kinds=kinds)
    for name, kind, value in (("key_padding_mask", kpm_kind, kpm), ("attn_mask", mask_kind, mask)):
        if value is not None:
            inputs[name] = value
            types[name] = "bool" if kind == "bool" else "float"
    if causal:
        kwargs["is_causal"] = True
    params = {"embed_dim": e, "num_heads": heads, "dropout": p, "bias": bias, "add_bias_kv": bias_kv,
              "add_zero_attn": zero_attn, "kdim": kdim, "vdim": vdim, "batch_first": batch_first}
    differentiable = () if fast else tuple(n_ for n_ in inputs if n_ not in ("key_padding_mask", "attn_mask"))
    return Case(op="MultiheadAttention", dtype=dtype, params=params, inputs=inputs, differentiable=differentiable,
                layouts=layouts, types=types, forward_kwargs=kwargs, train=train, cotangent_seed=S.seed(d),
                note=f"{'self' if self_attn else 'cross'}-attention, s' = {s_full}, inputs {','.join(names)}")


def S_causal(L: int, S_: int) -> np.ndarray:  # noqa: N802 (sdpa's convention: True = may attend)
    return np.arange(S_)[None, :] <= np.arange(L)[:, None]


def mha_invalid_case(d: S.Drawer, dtype: str) -> Case:
    """embed_dim not divisible by num_heads; the query's last dim not embed_dim; a 2-d attn_mask of
    the wrong shape; is_causal without a mask; a 3-d query with a 1-d key_padding_mask."""
    rule = d.choice(("heads do not divide", "query width", "attn_mask shape", "is_causal without mask",
                     "key_padding_mask rank"), "rule")
    e, heads = (6, 4) if rule == "heads do not divide" else (4, 2)
    q = input_values(d, (3, 2, e + (1 if rule == "query width" else 0)), dtype, "query")
    inputs = {"query": q, **module_parameters(d, mha_parameter_shapes(e, e, e, True, False), dtype)}
    kwargs: dict[str, Any] = {}
    types = {}
    if rule == "attn_mask shape":
        inputs["attn_mask"], types["attn_mask"] = np.zeros((3, 4), dtype=bool), "bool"
    if rule == "key_padding_mask rank":
        inputs["key_padding_mask"], types["key_padding_mask"] = np.zeros(3, dtype=bool), "bool"
    if rule == "is_causal without mask":
        kwargs["is_causal"] = True
    params = {"embed_dim": e, "num_heads": heads, "dropout": 0.0, "bias": True, "add_bias_kv": False,
              "add_zero_attn": False, "kdim": e, "vdim": e, "batch_first": False}
    return Case(op="MultiheadAttention", dtype=dtype, params=params, inputs=inputs, types=types,
                forward_kwargs=kwargs, differentiable=("query",), invalid=True, note=rule)


# -- the transformer modules ---------------------------------------------------------------------------

LAYER_NAMES = {"TransformerEncoderLayer": "encoder", "TransformerDecoderLayer": "decoder"}


def layer_parameter_shapes(kind: str, d_model: int, ff: int, bias: bool, prefix: str) -> dict[str, tuple[int, ...]]:
    """An encoder or decoder layer's parameters by state-dict path (without biases when bias=False,
    LayerNorm's included)."""
    shapes = mha_parameter_shapes(d_model, d_model, d_model, bias, False, f"{prefix}self_attn.")
    if kind == "decoder":
        shapes.update(mha_parameter_shapes(d_model, d_model, d_model, bias, False, f"{prefix}multihead_attn."))
    shapes.update({f"{prefix}linear1.weight": (ff, d_model), f"{prefix}linear2.weight": (d_model, ff)})
    if bias:
        shapes.update({f"{prefix}linear1.bias": (ff,), f"{prefix}linear2.bias": (d_model,)})
    for norm in ("norm1", "norm2") + (("norm3",) if kind == "decoder" else ()):
        shapes[f"{prefix}{norm}.weight"] = (d_model,)
        if bias:
            shapes[f"{prefix}{norm}.bias"] = (d_model,)
    return shapes


def stack_layout(op: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    """The layers of a module, in execution order: (kind, state-dict prefix)."""
    if op == "TransformerEncoderLayer":
        return [("encoder", "")]
    if op == "TransformerDecoderLayer":
        return [("decoder", "")]
    if op == "TransformerEncoder":
        return [("encoder", f"layers.{i}.") for i in range(params["num_layers"])]
    if op == "TransformerDecoder":
        return [("decoder", f"layers.{i}.") for i in range(params["num_layers"])]
    return ([("encoder", f"encoder.layers.{i}.") for i in range(params["num_encoder_layers"])]
            + [("decoder", f"decoder.layers.{i}.") for i in range(params["num_decoder_layers"])])


def final_norms(op: str, params: dict[str, Any]) -> list[str]:
    """The prefixes of the stacks' final norms."""
    if op in ("TransformerEncoder", "TransformerDecoder"):
        return ["norm."] if params["norm"] else []
    if op == "Transformer":
        return ["encoder.norm."] * bool(params["encoder_norm"]) + ["decoder.norm."]
    return []


def transformer_case(d: S.Drawer, dtype: str, op: str, fast: bool = False, nested: bool = False) -> Case:
    """A transformer module's case. Inputs: src (encoders), tgt and memory (decoders), src and tgt
    (Transformer), each (L, N, E), (N, L, E) with batch_first, or unbatched (L, E); masks in
    MultiheadAttention's convention; every parameter. ``fast``: the eval fast path's conditions
    (forward only, eval, batch_first, batched, bias, relu/gelu, even heads); ``nested``: the
    encoder's nested-tensor path (left-aligned src_key_padding_mask, no src_mask)."""
    fast = fast or nested
    heads, e = head_sizes(d, even=fast)
    ff = d.integer(1, 8, "dim_feedforward")
    if fast:
        batch_first, batched, bias, train, p = True, True, True, False, 0.0
        activation = d.choice(("relu", "gelu", "ReLU()", "GELU(tanh)"), "activation")
    else:
        batch_first = d.flag("batch_first")
        batched = not d.flag("unbatched")
        bias = d.choice((True, False), "bias")
        activation = d.choice(tuple(ACTIVATIONS), "activation")
        train = d.flag("train")
        p = d.choice(DROPOUT_P, "dropout")
    params: dict[str, Any] = {"d_model": e, "nhead": heads, "dim_feedforward": ff, "dropout": p,
                              "activation": activation, "layer_norm_eps": d.choice(EPS, "layer_norm_eps"),
                              "batch_first": batch_first, "norm_first": not nested and d.flag("norm_first"),
                              "bias": bias}
    if op in ("TransformerEncoder", "TransformerDecoder"):
        params["num_layers"] = d.integer(1, 2, "num_layers")
        params["norm"] = d.choice((True, False), "norm")
    if op == "TransformerEncoder":
        params["enable_nested_tensor"] = True if nested else d.choice((True, False), "enable_nested_tensor")
        params["mask_check"] = d.choice((True, False), "mask_check")
    if op == "Transformer":
        params["num_encoder_layers"] = d.integer(1, 2, "num_encoder_layers")
        params["num_decoder_layers"] = d.integer(1, 2, "num_decoder_layers")
        params["custom_encoder"] = d.flag("custom_encoder")
        params["encoder_norm"] = not (params["custom_encoder"] and d.flag("custom encoder without norm"))
    n = d.integer(1, 3, "N") if batched else 1
    decoder = op in ("TransformerDecoderLayer", "TransformerDecoder")

    def seq(length: int) -> tuple[int, ...]:
        return (length,) if not batched else ((n, length) if batch_first else (length, n))

    sources = {"tgt": d.integer(1, 5, "T"), "memory": d.integer(1, 5, "S")} if decoder else \
        {"src": d.integer(1, 5, "S"), "tgt": d.integer(1, 5, "T")} if op == "Transformer" else \
        {"src": d.integer(1 if not nested else 2, 5, "S")}
    shapes = {name: (*seq(length), e) for name, length in sources.items()}
    # (a token constant over its features is the layer norm's var = 0 corner, the norm family's)
    layouts = {name: last_dim_layout(d, len(s), f"layout.{name}", expand_features=False) for name, s in shapes.items()}
    inputs = {name: input_values(d, s, dtype, name, layouts[name]) for name, s in shapes.items()}
    shapes_p: dict[str, tuple[int, ...]] = {}
    for kind, prefix in stack_layout(op, params):
        shapes_p.update(layer_parameter_shapes(kind, e, ff, bias, prefix))
    for prefix in final_norms(op, params):
        shapes_p[f"{prefix}weight"] = (e,)
        if bias:
            shapes_p[f"{prefix}bias"] = (e,)
    inputs.update(module_parameters(d, shapes_p, dtype))
    types: dict[str, str] = {}
    kwargs: dict[str, Any] = {}
    kinds = ("none", "bool", "float")
    for mask_name, q_len, k_len, causal_name in masks_of(op, sources):
        if nested and mask_name == "mask":
            continue
        kpm = mask_name.endswith("key_padding_mask")
        shape = ((n, k_len) if batched else (k_len,)) if kpm else (q_len, k_len)
        if kpm and batched and (nested or d.flag(f"{mask_name}.from lengths")):
            lengths = [d.integer(1, k_len, f"{mask_name}.length[{i}]") for i in range(n)]
            if nested and not any(length < k_len for length in lengths):
                lengths[0] = k_len - 1  # some padding, or torch skips the nested path
            inputs[mask_name] = np.arange(k_len)[None, :] >= np.asarray(lengths)[:, None]
            types[mask_name] = "bool"
            continue
        if causal_name and d.flag(causal_name):
            if not d.flag(f"{causal_name} omitted"):  # the stacks detect a causal mask themselves
                kwargs[causal_name] = True
            kind = d.choice(("float", "bool"), mask_name)
            excluded = ~S_causal(q_len, k_len)
            inputs[mask_name] = excluded if kind == "bool" else np.where(excluded, -np.inf, 0.0)
            types[mask_name] = kind
            continue
        kind, mask = draw_mask(d, mask_name, shape, dtype, attend_true=False, kinds=kinds)
        if mask is not None:
            inputs[mask_name], types[mask_name] = mask, "bool" if kind == "bool" else "float"
    differentiable = () if fast or nested else tuple(k for k in inputs if k not in types)
    return Case(op=op, dtype=dtype, params=params, inputs=inputs, differentiable=differentiable, layouts=layouts,
                types=types, forward_kwargs=kwargs, train=train, cotangent_seed=S.seed(d),
                note="batched" if batched else "unbatched")


def masks_of(op: str, lengths: dict[str, int]) -> list[tuple[str, int, int, str]]:
    """(mask argument, query length, key length, its is_causal hint argument) of a module's forward."""
    if op in ("TransformerEncoderLayer", "TransformerEncoder"):
        s = lengths["src"]
        return [("src_mask" if op == "TransformerEncoderLayer" else "mask", s, s, "is_causal"),
                ("src_key_padding_mask", s, s, "")]
    t = lengths["tgt"]
    m = lengths["memory"] if "memory" in lengths else lengths["src"]
    out = []
    if op == "Transformer":
        s = lengths["src"]
        out += [("src_mask", s, s, "src_is_causal"), ("src_key_padding_mask", s, s, "")]
    return out + [("tgt_mask", t, t, "tgt_is_causal"), ("memory_mask", t, m, "memory_is_causal"),
                  ("tgt_key_padding_mask", t, t, ""), ("memory_key_padding_mask", t, m, "")]


def transformer_invalid_case(d: S.Drawer, dtype: str, op: str) -> Case:
    """d_model not divisible by nhead; an activation other than relu/gelu; an input whose last dim
    is not d_model (Transformer: also src and tgt batches that differ)."""
    rules = ("heads do not divide", "unknown activation", "input width") + \
        (("batch sizes differ",) if op == "Transformer" else ())
    rule = d.choice(rules, "rule")
    e, heads = (6, 4) if rule == "heads do not divide" else (4, 2)
    params: dict[str, Any] = {"d_model": e, "nhead": heads, "dim_feedforward": 3, "dropout": 0.0,
                              "activation": "tanh" if rule == "unknown activation" else "relu",
                              "layer_norm_eps": 1e-5, "batch_first": False, "norm_first": False, "bias": True}
    if op in ("TransformerEncoder", "TransformerDecoder"):
        params.update(num_layers=1, norm=False)
    if op == "TransformerEncoder":
        params.update(enable_nested_tensor=False, mask_check=True)
    if op == "Transformer":
        params.update(num_encoder_layers=1, num_decoder_layers=1, custom_encoder=False, encoder_norm=True)
    width = e + (1 if rule == "input width" else 0)
    names = {"TransformerEncoderLayer": ("src",), "TransformerEncoder": ("src",), "Transformer": ("src", "tgt")}.get(
        op, ("tgt", "memory"))
    inputs = {name: input_values(d, (3, 3 if rule == "batch sizes differ" and name == "tgt" else 2, width), dtype,
                                 name) for name in names}
    shapes: dict[str, tuple[int, ...]] = {}
    for kind, prefix in stack_layout(op, params):
        shapes.update(layer_parameter_shapes(kind, e, 3, True, prefix))
    for prefix in final_norms(op, params):
        shapes.update({f"{prefix}weight": (e,), f"{prefix}bias": (e,)})
    inputs.update(module_parameters(d, shapes, dtype))
    return Case(op=op, dtype=dtype, params=params, inputs=inputs, differentiable=names, invalid=True, note=rule)
