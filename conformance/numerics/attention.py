"""The attention family's glue between cases and the reference: the arguments of each call, the
analysed tolerance (``reference.attention_errors``), the dropout masks as random choices (their
replay, sampling and statistics) and the known-entry predicates.

Dropout inside attention never reaches an output, so a torch adapter cannot read its mask back
from the results. The masks are replayed instead (``backends.torch_call`` rule ``bernoulli``):
torch draws each dropout as ``empty(shape).bernoulli_(1 − p)`` in execution order after the call's
seed (sdpa's math kernel on the attention weights (*, H, L, S), in float32 for float16 and
bfloat16 inputs; MultiheadAttention with weights on (N·H, L, S) in the input's dtype; the
transformer layers' Dropout modules on their inputs, a batch_first attention block's output being
stored sequence-first). The reference computes the exact result for those masks, so a kernel that
applies a mask to the wrong tensor, in the wrong order, or scales it wrongly does not conform; the
masks themselves are tested for their rate and independence over each target.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from backends.base import Case, Result
from conformance.dtypes import DTYPES
from conformance.stats import StatCheck, UnitMask, element_axes, mask_checks
from conformance.strategies.attention import ACTIVATIONS, stack_layout
from conformance.tolerance import bound_as_magnitude
from reference import attention as RA
from reference import attention_errors as AE
from reference import transformer as TR

ENCODER_DROPOUTS = ("self_attn", "dropout1", "dropout", "dropout2")
DECODER_DROPOUTS = ("self_attn", "dropout1", "multihead_attn", "dropout2", "dropout", "dropout3")
ATTENTION_DROPOUTS = ("self_attn", "multihead_attn")


def _mask(case: Case, name: str) -> np.ndarray | None:
    return case.inputs.get(name)


def seq_first(x: Any, batch_first: bool) -> Any:
    """(N, L, E) <-> (L, N, E) when batch_first (an involution); unbatched and seq-first as is."""
    return x.swapaxes(0, 1) if batch_first and x.ndim == 3 else x


_seq_first = seq_first


# -- scaled_dot_product_attention ------------------------------------------------------------------


def sdpa_arguments(case: Case) -> dict[str, Any]:
    p = case.params
    keep = split_choice(case)["dropout_mask"] if p["dropout_p"] > 0 else None
    return dict(query=case.inputs["query"], key=case.inputs["key"], value=case.inputs["value"],
                attn_mask=_mask(case, "attn_mask"), dropout_p=p["dropout_p"], is_causal=p["is_causal"],
                scale=p["scale"], enable_gqa=p["enable_gqa"], dropout_mask=keep)


def sdpa_weights_shape(case: Case) -> tuple[int, ...]:
    q, k = case.inputs["query"], case.inputs["key"]
    return (*q.shape[:-1], k.shape[-2])


# -- MultiheadAttention ----------------------------------------------------------------------------------


def mha_arguments(case: Case) -> dict[str, Any]:
    """The keyword arguments of ``reference.attention.multi_head_attention`` (sequence-first)."""
    p, kw = case.params, case.forward_kwargs
    q = case.inputs["query"]
    k, v = (case.inputs.get("key", q), case.inputs.get("value", q))
    q, k, v = (_seq_first(x, p["batch_first"]) for x in (q, k, v))
    keep = split_choice(case)["dropout_mask"] if is_random_attention(case) else None
    return dict(query=q, key=k, value=v, embed_dim_to_check=p["embed_dim"], num_heads=p["num_heads"],
                **RA.mha_module_params(case.inputs), add_zero_attn=p["add_zero_attn"], dropout_p=p["dropout"],
                training=case.train, key_padding_mask=_mask(case, "key_padding_mask"),
                need_weights=kw.get("need_weights", True), attn_mask=_mask(case, "attn_mask"),
                average_attn_weights=kw.get("average_attn_weights", True), is_causal=kw.get("is_causal", False),
                dropout_mask=keep)


def mha_weights_shape(case: Case) -> tuple[int, ...]:
    p = case.params
    q = case.inputs["query"]
    k = case.inputs.get("key", q)
    batched = q.ndim == 3
    n = q.shape[0 if p["batch_first"] else 1] if batched else 1
    L = q.shape[1 if p["batch_first"] and batched else 0]
    s = k.shape[1 if p["batch_first"] and batched else 0] + int(p["add_bias_kv"]) + int(p["add_zero_attn"])
    return (n, p["num_heads"], L, s)


def is_random_attention(case: Case) -> bool:
    return bool(case.train and case.params.get("dropout", 0.0) > 0 and not case.invalid)


# -- the transformer modules ------------------------------------------------------------------------------


def layer_dropout_masks(case: Case) -> list[dict[str, np.ndarray]]:
    """Each layer's keep masks (from the case's choices; all kept when none are given yet)."""
    out = []
    split = split_choice(case)
    for (_, prefix), shapes in zip(stack_layout(case.op, case.params), dropout_shapes(case)):
        out.append({piece: split[f"{prefix}{piece}"] for piece in shapes})
    return out


def _lengths(case: Case) -> dict[str, int]:
    bf = case.params["batch_first"]
    return {name: x.shape[1 if bf and x.ndim == 3 else 0] for name, x in case.inputs.items()
            if name in ("src", "tgt", "memory")}


def _batch(case: Case) -> int:
    x = case.inputs.get("src", case.inputs.get("tgt"))
    return (x.shape[0] if case.params["batch_first"] else x.shape[1]) if x.ndim == 3 else 1


def dropout_shapes(case: Case) -> list[dict[str, tuple[int, ...]]]:
    """Per layer (execution order), each dropout's mask shape as the reference applies it (the
    attention weights (N, H, L, S); the blocks' tensors sequence-first)."""
    p = case.params
    lengths = _lengths(case)
    n, h, e, ff = _batch(case), p["nhead"], p["d_model"], p["dim_feedforward"]
    batched = case.inputs.get("src", case.inputs.get("tgt")).ndim == 3
    out = []
    for kind, _ in stack_layout(case.op, p):
        q_len = lengths["tgt"] if kind == "decoder" else lengths["src"]
        mem_len = lengths.get("memory", lengths.get("src", 0))

        def seq(width: int, length: int = q_len) -> tuple[int, ...]:
            return (length, n, width) if batched else (length, width)  # the reference's sequence-first layout

        shapes = {"self_attn": (n, h, q_len, q_len), "dropout1": seq(e)}
        if kind == "decoder":
            shapes.update(multihead_attn=(n, h, q_len, mem_len), dropout2=seq(e), dropout=seq(ff), dropout3=seq(e))
        else:
            shapes.update(dropout=seq(ff), dropout2=seq(e))
        out.append(shapes)
    return out


def is_random_transformer(case: Case) -> bool:
    return bool(case.train and case.params.get("dropout", 0.0) > 0 and not case.invalid)


def takes_nested_path(case: Case) -> bool:
    """TransformerEncoder's (and Transformer's encoder's) nested-tensor fast path: eval, no
    gradient, batched batch_first src, a src_key_padding_mask (bool or float) and no mask, enable_nested_tensor,
    post-norm layers with bias, relu/gelu and an even number of heads, and (with mask_check) a
    left-aligned padding mask."""
    p = case.params
    if case.op not in ("TransformerEncoder", "Transformer") or case.train or case.differentiable:
        return False
    if case.op == "TransformerEncoder" and not p["enable_nested_tensor"]:
        return False
    kpm = case.inputs.get("src_key_padding_mask")
    mask = case.inputs.get("mask", case.inputs.get("src_mask"))
    if kpm is None or mask is not None or case.inputs["src"].ndim != 3:
        return False
    if not (p["batch_first"] and p["bias"] and p["nhead"] % 2 == 0 and not p["norm_first"]):
        return False
    if p.get("mask_check", True):
        valid = kpm == 0  # torch reads the mask as kpm.logical_not(), a float one too
        left_aligned = np.all(valid[:, :-1] | ~valid[:, 1:]) if kpm.shape[1] > 1 else True
        if not left_aligned:
            return False
    return True


def transformer_call(case: Case, pieces: Any = TR.VALUES) -> tuple[Any, Any, tuple[str, ...]]:
    """Evaluate the case's module on ``pieces`` (values, or bounded twins): (output, pullback,
    the names of the pullback's input gradients, in order)."""
    p, kw, inputs = case.params, case.forward_kwargs, case.inputs
    common = dict(nhead=p["nhead"], dropout=p["dropout"], activation=ACTIVATIONS.get(p["activation"], p["activation"]),
                  layer_norm_eps=p["layer_norm_eps"], batch_first=p["batch_first"], norm_first=p["norm_first"],
                  training=case.train, pieces=pieces)
    masks = layer_dropout_masks(case) if is_random_transformer(case) else None
    params = {k: v for k, v in inputs.items() if k not in ("src", "tgt", "memory") and "mask" not in k}
    if case.op == "TransformerEncoderLayer":
        out, back = TR.encoder_layer(inputs["src"], params, src_mask=inputs.get("src_mask"),
                                     src_key_padding_mask=inputs.get("src_key_padding_mask"),
                                     is_causal=kw.get("is_causal", False), dropout_masks=masks and masks[0],
                                     **common)
        return out, back, ("src",)
    if case.op == "TransformerDecoderLayer":
        out, back = TR.decoder_layer(inputs["tgt"], inputs["memory"], params, **_decoder_masks(case),
                                     dropout_masks=masks and masks[0], **common)
        return out, back, ("tgt", "memory")
    if case.op == "TransformerEncoder":
        out, back = TR.encoder(inputs["src"], params, p["num_layers"], mask=inputs.get("mask"),
                               src_key_padding_mask=inputs.get("src_key_padding_mask"),
                               is_causal=kw.get("is_causal"), dropout_masks=masks, nested=takes_nested_path(case),
                               **common)
        return out, back, ("src",)
    if case.op == "TransformerDecoder":
        out, back = TR.decoder(inputs["tgt"], inputs["memory"], params, p["num_layers"], **_decoder_masks(case),
                               dropout_masks=masks, **common)
        return out, back, ("tgt", "memory")
    out, back = TR.transformer(inputs["src"], inputs["tgt"], params, p["num_encoder_layers"],
                               p["num_decoder_layers"], src_mask=inputs.get("src_mask"),
                               src_key_padding_mask=inputs.get("src_key_padding_mask"),
                               src_is_causal=kw.get("src_is_causal"), dropout_masks=masks, **_decoder_masks(case),
                               nested=takes_nested_path(case), **common)
    return out, back, ("src", "tgt")


def _decoder_masks(case: Case) -> dict[str, Any]:
    kw, inputs = case.forward_kwargs, case.inputs
    return dict(tgt_mask=inputs.get("tgt_mask"), memory_mask=inputs.get("memory_mask"),
                tgt_key_padding_mask=inputs.get("tgt_key_padding_mask"),
                memory_key_padding_mask=inputs.get("memory_key_padding_mask"),
                tgt_is_causal=kw.get("tgt_is_causal", False), memory_is_causal=kw.get("memory_is_causal", False))


# -- the analysed tolerance (its bounds: conformance.numerics.attention_bounds) ---------------------------


def reduction_length(case: Case, tensor: str) -> int:
    """K of the underflow allowance K·tiny: the longest reduction of the call (embedding width,
    key length, feed-forward width)."""
    return max([v.shape[-1] for v in case.inputs.values() if v.ndim] + [1])


# -- dropout masks as random choices ------------------------------------------------------------------------


def _upcast(dtype: str) -> str:
    return "float32" if dtype in ("float16", "bfloat16") else dtype


def dropout_draws(case: Case) -> list[dict[str, Any]]:
    """The keep masks the call draws, in order: {"name", "shape" (as stored), "perm" (stored ->
    the layout the reference applies it in), "view" (stored -> the layout of the layer's tensor;
    default the stored one), "dtype", "p"} (module docstring)."""
    if case.op == "scaled_dot_product_attention":
        p = case.params["dropout_p"]
        return [{"name": "dropout_mask", "shape": list(sdpa_weights_shape(case)), "dtype": _upcast(case.dtype),
                 "p": p}]
    if case.op == "MultiheadAttention":
        need = case.forward_kwargs.get("need_weights", True)
        return [{"name": "dropout_mask", "shape": list(mha_weights_shape(case)), "p": case.params["dropout"],
                 "dtype": case.dtype if need else _upcast(case.dtype)}]
    draws = []
    p = case.params
    transposed = p["batch_first"] and case.inputs.get("src", case.inputs.get("tgt")).ndim == 3
    for (kind, prefix), shapes in zip(stack_layout(case.op, p), dropout_shapes(case)):
        for piece in (DECODER_DROPOUTS if kind == "decoder" else ENCODER_DROPOUTS):
            shape = shapes[piece]
            draw = {"name": f"{prefix}{piece}", "p": p["dropout"], "shape": list(shape),
                    "dtype": _upcast(case.dtype) if piece in ATTENTION_DROPOUTS else case.dtype}
            after_attention = piece == "dropout1" or (kind == "decoder" and piece == "dropout2")
            if transposed and not after_attention and piece not in ATTENTION_DROPOUTS:
                # stored batch-first (N, L, w); an attention block's output is stored sequence-first
                draw.update(shape=[shape[1], shape[0], shape[2]], perm=[1, 0, 2])
            elif transposed and after_attention:
                # the layer drops the attention output as MultiheadAttention returns it: a
                # batch-first view (N, L, E) of the sequence-first (L, N, E) storage
                draw.update(view=[1, 0, 2])
            draws.append(draw)
    return draws


def random_rule(case: Case) -> dict[str, Any]:
    """The ``bernoulli`` replay rule of the choice "dropout" (``backends.torch_call``): every draw,
    flattened in logical order and concatenated."""
    return {"rule": "bernoulli", "draws": [{k: v for k, v in d.items() if k != "name"} for d in dropout_draws(case)]}


def _logical_shape(draw: Mapping[str, Any]) -> tuple[int, ...]:
    shape = draw["shape"]
    return tuple(shape[i] for i in draw["perm"]) if draw.get("perm") else tuple(shape)


def split_choice(case: Case) -> dict[str, np.ndarray]:
    """The case's choice "dropout" split into each draw's keep mask (logical shape); all kept when
    the case carries no choice yet (the first, unconditional evaluation)."""
    draws = dropout_draws(case)
    flat = case.choices.get("dropout")
    out, start = {}, 0
    for d in draws:
        shape = _logical_shape(d)
        size = int(np.prod(shape, dtype=np.int64))
        if flat is None:
            out[d["name"]] = np.ones(shape, dtype=bool)
        else:
            part = np.asarray(flat, dtype=bool).reshape(-1)[start:start + size]
            if part.size != size:
                raise ValueError(f"the dropout choice holds {np.size(flat)} masks elements, expected more")
            out[d["name"]] = part.reshape(shape)
        start += size
    if flat is not None and np.size(flat) != start:
        raise ValueError(f"the dropout choice holds {np.size(flat)} mask elements, expected {start}")
    return out


def used_choice(case: Case) -> np.ndarray:
    """The choice "dropout" as the reference used it (the canonical form: every draw's keep mask,
    flattened in logical order and concatenated)."""
    parts = [m.reshape(-1) for m in split_choice(case).values()]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)


def sample_masks(case: Case, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Keep masks as a conforming backend draws them: each element kept with probability 1 − p."""
    parts = [(rng.random(_logical_shape(d)) >= d["p"]).reshape(-1) for d in dropout_draws(case)]
    return {"dropout": np.concatenate(parts) if parts else np.zeros(0, dtype=bool)}


def check_masks(samples: Sequence[tuple[Case, dict[str, np.ndarray]]], alpha: float) -> list[StatCheck]:
    """The drop rate of every mask element against p, and the independence of neighbouring
    elements of each mask (in its logical shape): along the samples of a batch (dim 0), the
    channels or heads (dim 1) and consecutive elements (the last dim): Bernstein tests at alpha/4
    each (``conformance.stats.mask_checks``)."""
    masks = []
    for case, choices in samples:
        split = split_choice(replace(case, choices=dict(choices)))
        for d in dropout_draws(case):
            m = split[d["name"]]
            masks.append(UnitMask(m, 1 - d["p"], element_axes(m.ndim)))
    return mask_checks(masks, ("samples", "channels", "consecutive elements"), alpha, unit="mask elements")


# -- regime and known-entry predicates ----------------------------------------------------------------

def mask_kind(case: Case, name: str = "attn_mask") -> str:
    """"none", "bool" or "float": how the case passes mask ``name``."""
    mask = case.inputs.get(name)
    return "none" if mask is None else "bool" if mask.dtype.kind == "b" else "float"


MASK_NAMES = ("src_mask", "mask", "tgt_mask", "memory_mask", "src_key_padding_mask", "tgt_key_padding_mask",
              "memory_key_padding_mask")


def has_two_layers(case: Case) -> bool:
    return max(case.params.get(k, 1) for k in ("num_layers", "num_encoder_layers", "num_decoder_layers")) >= 2


def is_causal_mask(case: Case, name: str) -> bool:
    """Mask ``name`` excludes exactly the keys after each query (top-left causal)."""
    mask = case.inputs.get(name)
    if mask is None or mask.ndim != 2:
        return False
    excluded = mask if mask.dtype.kind == "b" else np.isneginf(mask)
    allowed_values = mask.dtype.kind == "b" or bool(np.all((mask == 0) | np.isneginf(mask)))
    rows, cols = np.indices(mask.shape)
    return allowed_values and bool(np.array_equal(excluded, cols > rows))


def has_dead_sdpa_row(case: Case) -> bool:
    """sdpa's attn_mask leaves some query no key (bool: all False; float: all -inf)."""
    mask = case.inputs.get("attn_mask")
    if mask is None or mask.shape[-1] == 0:
        return False
    attends = mask if mask.dtype.kind == "b" else ~np.isneginf(mask)
    return bool(np.any(~np.any(attends, axis=-1)))


def causal_hint_with_appended_keys(case: Case) -> bool:
    """MultiheadAttention with is_causal, without weights and without a key padding mask, and with
    keys appended (add_bias_kv or add_zero_attn): torch drops the explicit attn_mask and lets sdpa
    apply its own causal triangle over the extended keys, which masks the appended ones for the
    first queries (the explicit mask is padded with 'attend')."""
    kw, p = case.forward_kwargs, case.params
    return bool(kw.get("is_causal") and not kw.get("need_weights", True) and "key_padding_mask" not in case.inputs
                and (p["add_bias_kv"] or p["add_zero_attn"]))


def has_fully_masked_query(case: Case) -> bool:
    """Some query attends no key (its merged masks exclude every key) — in any attention block."""
    for mask_name, kpm_name, heads in _mask_pairs(case):
        excluded = _excluded(case, mask_name, kpm_name, heads)
        if excluded is not None and bool(np.any(np.all(excluded, axis=-1))):
            return True
    return False


def _mask_pairs(case: Case) -> list[tuple[str, str, int]]:
    if case.op == "MultiheadAttention":
        return [("attn_mask", "key_padding_mask", case.params["num_heads"])]
    h = case.params.get("nhead", 1)
    return [("src_mask", "src_key_padding_mask", h), ("mask", "src_key_padding_mask", h),
            ("tgt_mask", "tgt_key_padding_mask", h), ("memory_mask", "memory_key_padding_mask", h)]


def _excluded(case: Case, mask_name: str, kpm_name: str, heads: int) -> np.ndarray | None:
    mask, kpm = case.inputs.get(mask_name), case.inputs.get(kpm_name)
    if mask is None and kpm is None:
        return None
    as_excluded = (lambda m: m if m.dtype.kind == "b" else np.isneginf(m))  # noqa: E731
    parts = []
    if mask is not None:
        m = as_excluded(mask)
        parts.append(m[None] if m.ndim == 2 else m)
    if kpm is not None:
        k = as_excluded(kpm)
        parts.append((k if k.ndim == 2 else k[None])[:, None, :])
    if len(parts) == 1:
        return parts[0]
    a, b = parts
    if a.shape[0] != b.shape[0] and a.shape[0] > 1:  # (N·H, L, S) against (N, 1, S)
        b = np.repeat(b, heads, axis=0)
    return a | b


def fast_path_dead_query(case: Case) -> bool:
    """A fast path meets a fully masked query: MultiheadAttention's native kernel without weights
    (also inside a decoder layer's self-attention, which takes it with bool or no masks) and the
    encoder layer's kernel give NaN there, where the autograd path gives a zero attention row."""
    return encoder_fast_path_dead_query(case) or attention_fast_path_dead_query(case)


def encoder_fast_path_dead_query(case: Case) -> bool:
    """``fast_path_dead_query`` in an encoder layer's kernel (TransformerEncoderLayer; TransformerEncoder and
    nn.Transformer's encoder off the nested-tensor path, which drops a fully padded sequence and gives zeros there):
    a fully masked query of src_mask (or mask) with src_key_padding_mask, in eval without gradients."""
    return encoder_kernel_dead_query(case) and not takes_nested_path(case)


def encoder_kernel_dead_query(case: Case) -> bool:
    """An encoder layer's kernel (TransformerEncoderLayer, TransformerEncoder, nn.Transformer's encoder) meets a
    fully masked query of src_mask (or mask) with src_key_padding_mask, in eval without gradients."""
    if case.differentiable or case.train or case.op not in ("TransformerEncoderLayer", "TransformerEncoder",
                                                            "Transformer"):
        return False
    h = case.params.get("nhead", 1)
    return any(_dead(_excluded(case, m, "src_key_padding_mask", h)) for m in ("src_mask", "mask"))


def attention_fast_path_dead_query(case: Case) -> bool:
    """``fast_path_dead_query`` in MultiheadAttention's native kernel: MultiheadAttention itself without weights,
    or a decoder layer's self-attention with bool (or no) tgt masks, in eval without gradients."""
    if case.differentiable or case.train:
        return False
    if case.op == "MultiheadAttention":
        return not case.forward_kwargs.get("need_weights", True) and has_fully_masked_query(case)
    h = case.params.get("nhead", 1)
    decoder = case.op in ("TransformerDecoderLayer", "TransformerDecoder", "Transformer")
    bool_masks = all(mask_kind(case, m) != "float" for m in ("tgt_mask", "tgt_key_padding_mask"))
    return decoder and bool_masks and _dead(_excluded(case, "tgt_mask", "tgt_key_padding_mask", h))


def _dead(excluded: np.ndarray | None) -> bool:
    return excluded is not None and excluded.shape[-1] > 0 and bool(np.any(np.all(excluded, axis=-1)))


def nested_all_padded(case: Case) -> bool:
    """The encoder's nested-tensor path with every position padding (as torch reads the mask:
    non-zero)."""
    kpm = case.inputs.get("src_key_padding_mask")
    return takes_nested_path(case) and kpm is not None and bool(np.all(kpm != 0))


def fast_path_tanh_gelu(case: Case) -> bool:
    """An encoder layer's eval fast path (dense or nested) with activation=nn.GELU(approximate='tanh'):
    torch's kernel computes the exact GELU."""
    return (case.op in ("TransformerEncoderLayer", "TransformerEncoder", "Transformer")
            and case.params.get("activation") == "GELU(tanh)" and not case.differentiable and not case.train)


def cloned_decoder_tanh_gelu(case: Case) -> bool:
    """TransformerDecoder / Transformer built with a decoder layer whose activation is a module
    (nn.GELU(approximate='tanh')): the clones compute ReLU."""
    return case.op in ("TransformerDecoder", "Transformer") and case.params.get("activation") == "GELU(tanh)"


def fast_path_tanh_gelu_only(case: Case) -> bool:
    return fast_path_tanh_gelu(case) and not fast_path_dead_query(case)


def fast_path_dead_query_and_tanh_gelu(case: Case) -> bool:
    return fast_path_dead_query(case) and fast_path_tanh_gelu(case)


def fast_path_float_mask(case: Case) -> bool:
    """An encoder's eval fast path (TransformerEncoderLayer's kernel, TransformerEncoder's nested
    tensors, nn.Transformer's encoder) given a float src_mask or src_key_padding_mask with finite
    non-zero entries: torch reads the float mask as a bool (non-zero = masked, or padding), where a
    float mask is documented as added to the scores."""
    if case.differentiable or case.train or case.op not in ("TransformerEncoderLayer", "TransformerEncoder",
                                                              "Transformer"):
        return False
    for name in ("src_mask", "mask", "src_key_padding_mask"):
        m = case.inputs.get(name)
        if m is not None and m.dtype.kind == "f" and bool(np.any(np.isfinite(m) & (m != 0))):
            return True
    return False


def reverse_over_forward_with_dead_sdpa_row(case: Case) -> bool:
    """A vjp2 case composed reverse-over-forward (``torch.func.grad`` of ``torch.func.jvp``) whose
    sdpa attn_mask leaves some query no key (``has_dead_sdpa_row``)."""
    node = case.mode_node
    return node.get("composition") == "reverse-over-forward" and has_dead_sdpa_row(case)


# -- what torch computes where it swaps the configured activation ----------------------------------


class _SwappedActivations(TR.ValuePieces):
    """The reference's pieces with the feed-forward activations taken, in call order (encoder
    layers, then decoder layers), from ``names``: what torch computes when it swaps them."""

    def __init__(self, names: Sequence[str]):
        self.names = list(names)

    def activation(self, x: np.ndarray, activation: str) -> Any:  # type: ignore[override]
        return TR.ValuePieces.activation(x, self.names.pop(0) if self.names else activation)


def encoder_layer_fast_path(case: Case) -> bool:
    """Whether an encoder layer of the case runs torch's eval fast path
    (``torch._transformer_encoder_layer_fwd``): eval, no gradient, a batched src, batch_first,
    biases and an even number of heads (TransformerEncoderLayer.forward's conditions; the
    nested-tensor path (``takes_nested_path``) implies them)."""
    p = case.params
    src = case.inputs.get("src")
    return (case.op in ("TransformerEncoderLayer", "TransformerEncoder", "Transformer") and not case.train
            and not case.differentiable and src is not None and src.ndim == 3 and bool(p["batch_first"])
            and bool(p["bias"]) and p["nhead"] % 2 == 0)


def _layer_counts(case: Case) -> tuple[int, int]:
    p = case.params
    return {"TransformerEncoderLayer": (1, 0), "TransformerEncoder": (p.get("num_layers", 0), 0),
            "TransformerDecoderLayer": (0, 1), "TransformerDecoder": (0, p.get("num_layers", 0)),
            "Transformer": (p.get("num_encoder_layers", 0), p.get("num_decoder_layers", 0))}[case.op]


def swapped_activation_result(case: Case, fast_path_gelu: bool = True, cloned_relu: bool = True
                              ) -> dict[str, np.ndarray]:
    """The compared tensors torch computes with GELU(approximate='tanh') configured: the exact GELU
    in encoder layers on the fast path (``fast_path_gelu``), ReLU in the decoder layers that
    TransformerDecoder clones (``cloned_relu``); the reference's composition otherwise."""
    with np.errstate(all="ignore"):
        output, back, names = transformer_call(case, _SwappedActivations(_swapped_names(case, fast_path_gelu,
                                                                                        cloned_relu)))
        out = {"output": np.asarray(output, dtype=np.float64)}
        if "output" in case.cotangents:
            *g_inputs, g_params = back(case.cotangents["output"])
            out.update({f"grad.{n}": np.asarray(g, dtype=np.float64) for n, g in zip(names, g_inputs)})
            out.update({f"grad.{n}": np.asarray(g, dtype=np.float64) for n, g in g_params.items()})
    return out


class _SwappedBounded(AE.BoundedPieces):
    """``_SwappedActivations``' twin on bounded arrays: the error analysis of the swapped composition."""

    def __init__(self, u: float, names: Sequence[str]):
        super().__init__(u)
        object.__setattr__(self, "names", list(names))  # (a frozen dataclass; the list is consumed)

    def activation(self, x: Any, name: str) -> Any:  # type: ignore[override]
        return AE.activation(x, self.names.pop(0) if self.names else name, self.u)


def _swapped_names(case: Case, fast_path_gelu: bool = True, cloned_relu: bool = True) -> list[str]:
    configured = ACTIVATIONS.get(case.params["activation"], case.params["activation"])
    tanh_gelu = case.params["activation"] == "GELU(tanh)"
    n_enc, n_dec = _layer_counts(case)
    enc = "gelu" if fast_path_gelu and tanh_gelu and encoder_layer_fast_path(case) else configured
    dec = "relu" if cloned_relu and tanh_gelu and case.op in ("TransformerDecoder", "Transformer") else configured
    return [enc] * n_enc + [dec] * n_dec


def swapped_activation_model(case: Case, reference: Result, got: Result) -> dict[str, Any]:
    """Model of ``transformer-fast-path-tanh-gelu-*`` and ``transformer-decoder-clones-relu-*``:
    torch's results are the reference's composition with both swaps applied, each with the rounding
    bound of the swapped composition (its Bounded twin: a ReLU decoder's gradients are not the
    configured one's, nor their cancellations)."""
    values = swapped_activation_result(case)
    u = DTYPES[case.dtype].unit_roundoff
    try:
        with AE.rounding(u), np.errstate(all="ignore"):
            output, back, names = transformer_call(case, _SwappedBounded(u, _swapped_names(case)))
            errors = {"output": output.e}
            if "output" in case.cotangents:
                *g_inputs, g_params = back(case.cotangents["output"])
                errors.update({f"grad.{n}": b.e for n, b in zip(names, g_inputs)})
                errors.update({f"grad.{n}": b.e for n, b in g_params.items()})
    except Exception:
        return values
    factor = 2.0 if case.dtype == "float64" else 1.0
    out: dict[str, Any] = {}
    for name, value in values.items():
        e = errors.get(name)
        if e is None or np.shape(e) != np.shape(value):
            out[name] = value
            continue
        k = reduction_length(case, name)
        out[name] = (value, np.maximum(np.abs(value), bound_as_magnitude(factor * e, k)))
    return out


def fast_path_exact_gelu_beyond_bound(case: Case) -> bool:
    """An encoder layer on the eval fast path configured with GELU(approximate='tanh'), no fully
    masked query (``fast_path_dead_query``) nor float mask (``fast_path_float_mask``: both give
    NaN), and the exact GELU moving some compared tensor beyond its bound: where the swap shows."""
    from conformance.numerics.elementwise import beyond_bound

    if (not (fast_path_tanh_gelu(case) and encoder_layer_fast_path(case)) or fast_path_dead_query(case)
            or fast_path_float_mask(case)):
        return False
    return beyond_bound(case, swapped_activation_result(case, cloned_relu=False))


def cloned_decoder_relu_beyond_bound(case: Case) -> bool:
    """A cloned decoder (TransformerDecoder, nn.Transformer) configured with
    GELU(approximate='tanh') whose layers' ReLU moves some compared tensor beyond its bound. Not
    where the encoder's fast path returns NaN (``fast_path_dead_query``, ``fast_path_float_mask``):
    the NaN reaches the decoder's every output and hides the swap."""
    from conformance.numerics.elementwise import beyond_bound

    if not cloned_decoder_tanh_gelu(case) or fast_path_dead_query(case) or fast_path_float_mask(case):
        return False
    return beyond_bound(case, swapped_activation_result(case, fast_path_gelu=False))

def sdpa_mask_with_causal_only(case: Case) -> bool:
    """An sdpa case whose only broken rule is an explicit attn_mask given with is_causal=True (the
    mask broadcasting to the scores): the arguments are valid without the mask."""
    args = sdpa_arguments(case)
    mask = args["attn_mask"]
    if not args["is_causal"] or mask is None:
        return False
    try:
        RA.check_sdpa(args["query"], args["key"], args["value"], None, args["dropout_p"], True, args["scale"],
                      args["enable_gqa"])
        L, S = args["query"].shape[-2], args["key"].shape[-2]
        np.broadcast_shapes(np.shape(mask), (*args["query"].shape[:-2], L, S))
    except ValueError:
        return False
    return True


def float16_single_feature_layer_norm(case: Case) -> bool:
    """A float16 transformer case with d_model = 1: every LayerNorm row is one element (var = 0), so
    var + eps = eps and rstd³ = eps^-1.5, which overflows float16 (65504) for eps below
    65504^(-2/3) ≈ 6.2e-4. torch's layer_norm forward-mode rule and double-backward formula form
    rstd³ in float16 (LayerNorm's layernorm-float16-composite-out-of-range), and inf·0
    gives NaN in every second derivative (and in reverse-over-forward's gradients, the JVP rule's
    transpose). Rows of d_model > 1 may also overflow; they are not in this scope."""
    if case.invalid or case.dtype != "float16":
        return False
    p = case.params
    return p.get("d_model") == 1 and float(p.get("layer_norm_eps", 1e-5)) ** -1.5 > DTYPES["float16"].max_value


def reverse_over_forward_with_fully_masked_query(case: Case) -> bool:
    """A transformer vjp2 case composed reverse-over-forward (``torch.func.grad`` of
    ``torch.func.jvp``) with some query whose merged masks exclude every key
    (``has_fully_masked_query``): sdpa's math kernel, differentiated in reverse through its
    forward-mode rule, gives NaN there (sdpa-reverse-over-forward-nan-at-dead-row)."""
    from conformance.modes import reverse_over_forward

    return not case.invalid and reverse_over_forward(case) and has_fully_masked_query(case)


# -- vjp2: the layer norms' tangent rounding (``LayerSpec.second_order_error``) ---------------------

_TANGENT_STEP = 2.0**-20  # central differences of the norms' inputs along v (the vjp2 mode's FD_STEP)
_TANGENT_ROUNDINGS = 3  # roundings of each tangent term: t - mean(t), its product with r, with x̂ (or t_r)


class _RecordedNorms(TR.ValuePieces):
    """The reference's pieces recording each layer norm's input, weight and (once pulled back) the
    cotangent of its output, in call order."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def norm(self, x: np.ndarray, params: Mapping[str, Any], name: str, eps: float) -> Any:  # type: ignore[override]
        y, back = TR.ValuePieces.norm(x, params, name, eps)
        record = {"x": np.asarray(x, dtype=np.float64), "w": params.get(f"{name}.weight"), "eps": float(eps),
                  "g": None}
        self.calls.append(record)

        def pullback(g: np.ndarray) -> Any:
            record["g"] = np.asarray(g, dtype=np.float64)
            return back(g)

        return y, pullback


def _recorded_norms(case: Case) -> list[dict[str, Any]]:
    pieces = _RecordedNorms()
    with np.errstate(all="ignore"):
        _, back, _ = transformer_call(case, pieces)
        if "output" in case.cotangents:
            back(case.cotangents["output"])
    return pieces.calls


def layer_norm_tangent_error(case: Case, v: Mapping[str, np.ndarray],
                             g: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The vjp2 mode's declared second-order rounding of the layer norms' weights: d2.<norm>.weight =
    Σ_rows (ġ·x̂ + g·ẋ̂), and the tangent of x̂ = c·r (c = x − mean, r = 1/√(var + eps)) is formed as
    ṫ·r + c·ṙ with ṫ = ẋ − mean(ẋ), ṙ = −r³·mean(c·ṫ). The two terms cancel where x̂ is flat (a row of
    two values: x̂ = ±d/√(d² + eps), flat up to eps/d²) in every direction, so no difference sees
    their rounding: per element u·k·(r·|ṫ| + |x̂|·r·|mean(x̂·ṫ)|) (k roundings of each), summed with
    |g| over the rows. ẋ, the tangent of the norm's input along v, is the reference's central
    difference (a magnitude)."""
    if "output" not in g or not v:
        return {}
    case = replace(case, cotangents={k: np.asarray(x, dtype=np.float64) for k, x in g.items()})
    calls = _recorded_norms(case)
    shifted = []
    for sign in (1.0, -1.0):
        inputs = dict(case.inputs)
        for name, d in v.items():
            inputs[name] = np.asarray(case.inputs[name], dtype=np.float64) + sign * _TANGENT_STEP * np.asarray(d)
        shifted.append(_recorded_norms(replace(case, inputs=inputs, cotangents={})))
    if any(len(s) != len(calls) for s in shifted):
        return {}
    names = {id(x): k for k, x in case.inputs.items()}
    u = DTYPES[case.dtype].unit_roundoff
    out: dict[str, np.ndarray] = {}
    for call, plus, minus in zip(calls, *shifted):
        name, g_out = names.get(id(call["w"])), call["g"]
        if name is None or g_out is None:
            continue
        x, k = call["x"], call["x"].shape[-1]
        with np.errstate(all="ignore"):
            t = (plus["x"] - minus["x"]) / (2 * _TANGENT_STEP)
            c = x - x.mean(axis=-1, keepdims=True)
            r = 1.0 / np.sqrt((c * c).mean(axis=-1, keepdims=True) + call["eps"])
            xhat = c * r
            at = np.abs(t) + np.abs(t.mean(axis=-1, keepdims=True))  # (ṫ's terms: ẋ and its mean)
            terms = r * at + np.abs(xhat) * r * (np.abs(xhat) * at).mean(axis=-1, keepdims=True)
            per_row = _TANGENT_ROUNDINGS * u * np.abs(g_out) * terms
            bound = per_row.reshape(-1, k).sum(axis=0)
        bound = np.where(np.isfinite(bound), bound, 0.0)
        out[f"d2.{name}"] = out.get(f"d2.{name}", 0.0) + bound
    return out


def float16_layer_norm_rstd_cubed_overflow(case: Case) -> bool:
    """``float16_single_feature_layer_norm``, or a float16 case some of whose layer norms (any layer,
    the stacks' final norms) reads a row with var + eps below 65504^(-2/3) ≈ 6.2e-4 (the reference's
    norm inputs: two close values at d_model = 2), where rstd³ overflows float16 as well."""
    if float16_single_feature_layer_norm(case):
        return True
    if case.invalid or case.dtype != "float16":
        return False
    limit = DTYPES["float16"].max_value ** (-2.0 / 3.0)
    try:
        calls = _recorded_norms(replace(case, cotangents={}))
    except Exception:
        return False
    for call in calls:
        x = call["x"]
        with np.errstate(all="ignore"):
            var = ((x - x.mean(axis=-1, keepdims=True)) ** 2).mean(axis=-1)
        if x.size and bool(np.any(var + call["eps"] < limit)):
            return True
    return False
