"""Attention: ``scaled_dot_product_attention`` and ``multi_head_attention_forward`` (torch's
functional forms), their VJPs, and the attention-weight helpers the transformer layers share.

Scaled dot-product attention, for query (*, L, E), key (*, S, E), value (*, S, Ev) with the same
leading dims (the last leading dim is the heads when there is one):

    Z = Q·Kᵀ·scale + B,   P = softmax(Z) over the keys,   P̃ = P·keep/(1 − p),   out = P̃·V.

Conventions, torch 2.13's (each is also stated in the declarations' notes):
- ``scale`` defaults to 1/√E.
- ``attn_mask`` (broadcast to (*, L, S)): a bool mask says which keys a query may attend (True =
  takes part); a float mask is added to the scores. ``is_causal``: query i attends keys j ≤ i, the
  triangle aligned at the top-left also when L ≠ S (torch's upper-left causal bias); an explicit
  ``attn_mask`` together with ``is_causal`` is an error.
- A query whose every score is -inf (a fully masked row) attends nothing: its output row is 0 and
  it passes no gradient (torch's "safe softmax" on every CPU kernel).
- ``enable_gqa``: Hq = G·Hk query heads share each key/value head, the G consecutive query heads
  h = G·j .. G·j + G − 1 serving key/value head j (``repeat_interleave`` over the head dim); the
  gradient of a key/value head sums over its group.
- Dropout (0 < p < 1) is a random choice: the reference never draws it. It is given the keep mask
  (``dropout_mask``, the shape of the attention weights (*, Hq, L, S)) and computes the exact
  result for it, P̃ = P·keep/(1 − p).

Multi-head attention (``multi_head_attention_forward``) follows torch's functional form: sequence
first, query (L, N, E) or unbatched (L, E); the in-projection (packed ``in_proj_weight`` or the
separate q/k/v weights for kdim/vdim), ``bias_k``/``bias_v`` appended as one more key and value,
``add_zero_attn`` appending a zero key and value, the heads, the masks, attention, the
out-projection. Its masks follow MultiheadAttention's convention, the opposite of sdpa's: a bool
mask is True where attention is NOT allowed (it becomes -inf and is added); ``key_padding_mask``
(N, S) broadcasts over heads and queries, ``attn_mask`` is (L, S) or (N·H, L, S); both are padded
with 0 (attended) for the appended bias and zero columns and added together. ``is_causal`` is a
hint that ``attn_mask`` is the causal mask: the reference always uses the mask it is given. With
``need_weights`` torch takes a plain softmax, so a fully masked query row is NaN (output and
weights); without, sdpa's convention (a zero row) holds. The attention weights returned are the
dropped-out weights P̃, averaged over the heads when ``average_attn_weights``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from reference.linear import linear
from reference.registry import functional
from reference.softmax import softmax, softmax_vjp

# -- masks ----------------------------------------------------------------------------------------


def causal_mask(L: int, S: int) -> np.ndarray:
    """(L, S) bool: query i may attend key j iff j ≤ i (the top-left aligned lower triangle)."""
    return np.arange(S)[None, :] <= np.arange(L)[:, None]


def square_subsequent_mask(size: int) -> np.ndarray:
    """(size, size) float: 0 on and below the diagonal, -inf above (torch's
    ``Transformer.generate_square_subsequent_mask``)."""
    return np.where(causal_mask(size, size), 0.0, -np.inf)


def sdpa_bias(attn_mask: np.ndarray | None, is_causal: bool, L: int, S: int) -> np.ndarray | None:
    """The additive score bias of sdpa's mask arguments: 0 / -inf for a bool mask (True = may
    attend) or the causal triangle, the float mask itself otherwise (None: no mask)."""
    if is_causal:
        if attn_mask is not None:
            raise ValueError("scaled_dot_product_attention: an explicit attn_mask cannot be given with is_causal=True")
        return np.where(causal_mask(L, S), 0.0, -np.inf)
    if attn_mask is None:
        return None
    mask = np.asarray(attn_mask)
    if mask.dtype.kind == "b":
        return np.where(mask, 0.0, -np.inf)
    if mask.dtype.kind != "f":
        raise TypeError("attn_mask must be a bool or float array")
    return mask.astype(np.float64)


def mha_bias(mask: np.ndarray | None) -> np.ndarray | None:
    """MultiheadAttention's mask convention: bool True = not allowed (-inf), float added as is."""
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.dtype.kind == "b":
        return np.where(mask, -np.inf, 0.0)
    if mask.dtype.kind != "f":
        raise TypeError("only bool and float masks are supported")
    return mask.astype(np.float64)


# -- the attention core ---------------------------------------------------------------------------


def masked_softmax(z: np.ndarray, safe: bool) -> np.ndarray:
    """softmax over the last axis (``reference.softmax``); a row whose scores are all -inf is 0
    (``safe``, sdpa's convention) or NaN (a plain softmax: MultiheadAttention with weights)."""
    dead = np.all(z == -np.inf, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore"):
        p = softmax(np.where(dead, 0.0, z), dim=-1)
    return np.where(dead, 0.0 if safe else np.nan, p)


def masked_softmax_vjp(p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The VJP of ``masked_softmax`` from its output (``reference.softmax.softmax_vjp``): a dead row
    (P = 0) passes nothing, a NaN row NaN."""
    return softmax_vjp(p, g, -1)


@dataclass
class Attention:
    """The forward of the attention core, kept for its pullback: the weights P, the dropped-out
    weights P̃, the scaled scores' inputs (keys and values repeated over GQA groups) and scale."""

    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    p: np.ndarray
    dropped: np.ndarray
    out: np.ndarray
    scale: float
    keep_scale: np.ndarray | float
    groups: int

    def pullback(self, g_out: np.ndarray, g_weights: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
        """(dQ, dK, dV) for the output cotangent and, optionally, a cotangent of the dropped-out
        weights P̃ (MultiheadAttention returns them); dK and dV summed over each GQA group."""
        v = self.v
        g_dropped = g_out @ np.swapaxes(v, -1, -2)
        if g_weights is not None:
            g_dropped = g_dropped + g_weights
        g_v = np.swapaxes(self.dropped, -1, -2) @ g_out
        g_z = masked_softmax_vjp(self.p, g_dropped * self.keep_scale)
        g_q = (g_z @ self.k) * self.scale
        g_k = (np.swapaxes(g_z, -1, -2) @ self.q) * self.scale
        return g_q, fold_groups(g_k, self.groups), fold_groups(g_v, self.groups)


def repeat_groups(x: np.ndarray, groups: int) -> np.ndarray:
    """Each key/value head repeated for its ``groups`` query heads (dim -3), in order."""
    return x if groups == 1 else np.repeat(x, groups, axis=-3)


def fold_groups(g: np.ndarray, groups: int) -> np.ndarray:
    """The gradient of ``repeat_groups``: the sum over each head's group."""
    if groups == 1:
        return g
    return g.reshape(*g.shape[:-3], g.shape[-3] // groups, groups, *g.shape[-2:]).sum(axis=-3)


def attend(q: np.ndarray, k: np.ndarray, v: np.ndarray, bias: np.ndarray | None, scale: float,
           dropout_p: float = 0.0, keep: np.ndarray | None = None, groups: int = 1,
           safe: bool = True) -> Attention:
    """The attention core on (*, L, E), (*, Hk, S, E), (*, Hk, S, Ev) arrays: scores Q·Kᵀ·scale +
    bias, (safe) softmax, dropout with the keep mask, times V."""
    k, v = repeat_groups(k, groups), repeat_groups(v, groups)
    with np.errstate(invalid="ignore", over="ignore"):
        z = (q @ np.swapaxes(k, -1, -2)) * scale
        if bias is not None:
            z = z + bias
        p = masked_softmax(z, safe)
        if dropout_p > 0:
            if keep is None:
                raise ValueError("dropout_p > 0 needs the keep mask (dropout_mask): the reference draws nothing")
            keep_scale = np.where(np.broadcast_to(keep, p.shape), 1.0 / (1.0 - dropout_p), 0.0)
        else:
            keep_scale = 1.0
        dropped = p * keep_scale
        out = dropped @ v
    return Attention(q, k, v, p, dropped, out, scale, keep_scale, groups)


def check_sdpa(query: np.ndarray, key: np.ndarray, value: np.ndarray, attn_mask: Any, dropout_p: float,
               is_causal: bool, scale: float | None, enable_gqa: bool) -> tuple[np.ndarray | None, float, int]:
    """Validate sdpa's arguments as torch does (ValueError otherwise); return the additive score
    bias, the scale and the GQA group size."""
    if min(query.ndim, key.ndim, value.ndim) < 2:
        raise ValueError("query, key and value must be at least 2-d")
    if not (query.ndim == key.ndim == value.ndim):
        raise ValueError("query, key and value must have the same number of dims")
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(f"query's last dim {query.shape[-1]} != key's {key.shape[-1]}")
    if key.shape[-2] != value.shape[-2] or key.shape[:-2] != value.shape[:-2]:
        raise ValueError("key and value must have the same leading dims and sequence length")
    groups = 1
    if query.shape[:-2] != key.shape[:-2]:
        if not enable_gqa or query.ndim < 3 or query.shape[:-3] != key.shape[:-3] or key.shape[-3] == 0 \
                or query.shape[-3] % key.shape[-3]:
            raise ValueError(f"query {query.shape} and key {key.shape} have different batch or head dims "
                             "(grouped-query attention needs enable_gqa=True and Hq divisible by Hk)")
        groups = query.shape[-3] // key.shape[-3]
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    L, S = query.shape[-2], key.shape[-2]
    bias = sdpa_bias(attn_mask, is_causal, L, S)
    if bias is not None:
        np.broadcast_shapes(bias.shape, (*query.shape[:-2], L, S))
    s = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    return bias, s, groups


def sdpa_forward(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False,
                 dropout_mask=None) -> Attention:
    """``scaled_dot_product_attention`` evaluated once, kept for its pullback (``Attention``)."""
    query, key, value = (np.asarray(t, dtype=np.float64) for t in (query, key, value))
    bias, s, groups = check_sdpa(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa)
    return attend(query, key, value, bias, s, dropout_p, dropout_mask, groups, safe=True)


def _sdpa_vjp(cotangent, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
              enable_gqa=False, *, dropout_mask=None) -> dict[str, np.ndarray]:
    """dQ = dZ·K·scale, dK = dZᵀ·Q·scale, dV = P̃ᵀ·g, with dZ = softmax_vjp(P, (g·Vᵀ)·keep/(1 − p));
    GQA gradients of a key/value head summed over its query heads; a fully masked row passes 0."""
    att = sdpa_forward(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa, dropout_mask)
    g_q, g_k, g_v = att.pullback(np.asarray(cotangent, dtype=np.float64))
    return {"query": g_q, "key": g_k, "value": g_v}


def _sdpa_example(rng: np.random.Generator) -> tuple[tuple, dict]:
    q, k, v = rng.standard_normal((2, 4, 3, 5)), rng.standard_normal((2, 2, 4, 5)), rng.standard_normal((2, 2, 4, 3))
    mask = rng.standard_normal((3, 4))
    keep = rng.random((2, 4, 3, 4)) > 0.3
    return (q, k, v, mask, 0.25), {"scale": 0.7, "enable_gqa": True, "dropout_mask": keep}


@functional(vjp=_sdpa_vjp, example=_sdpa_example)
def scaled_dot_product_attention(query: np.ndarray, key: np.ndarray, value: np.ndarray,
                                 attn_mask: np.ndarray | None = None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale: float | None = None, enable_gqa: bool = False,
                                 *, dropout_mask: np.ndarray | None = None) -> np.ndarray:
    """softmax(Q·Kᵀ·scale + mask)·keep/(1 − p)·V over the keys (module docstring: mask, causal,
    fully masked rows, GQA and dropout conventions). Shapes: query (*, L, E), key (*, S, E), value
    (*, S, Ev) (with enable_gqa the head dim -3 of key/value may divide query's); out (*, L, Ev).
    ``dropout_mask`` (a bool keep mask of shape (*, Hq, L, S)) is required when dropout_p > 0."""
    return sdpa_forward(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa, dropout_mask).out


# -- multi-head attention -------------------------------------------------------------------------


def _split3(x: np.ndarray | None) -> tuple[Any, Any, Any]:
    if x is None:
        return None, None, None
    return tuple(np.split(x, 3, axis=0))  # type: ignore[return-value]


def _heads(x: np.ndarray, n: int, h: int) -> np.ndarray:
    """(S, N, E) -> (N, H, S, E/H)."""
    s = x.shape[0]
    return x.reshape(s, n, h, -1).transpose(1, 2, 0, 3)


def _unheads(x: np.ndarray) -> np.ndarray:
    """(N, H, S, d) -> (S, N, H·d)."""
    n, h, s, d = x.shape
    return x.transpose(2, 0, 1, 3).reshape(s, n, h * d)


def _pad_last(mask: np.ndarray | None, extra: int) -> np.ndarray | None:
    if mask is None or extra == 0:
        return mask
    return np.concatenate([mask, np.zeros((*mask.shape[:-1], extra))], axis=-1)


def attention_masks(attn_mask: np.ndarray | None, key_padding_mask: np.ndarray | None, n: int, h: int, L: int,
                    s_full: int) -> np.ndarray | None:
    """MultiheadAttention's additive score bias (N, H, L, S') from its additive masks: attn_mask
    (L, S) or (N·H, L, S) and key_padding_mask (N, S), each padded with 0 up to S' keys (the
    appended bias and zero keys are attended) and added."""
    bias = None
    if attn_mask is not None:
        mask = _pad_last(attn_mask, s_full - attn_mask.shape[-1])
        bias = mask[None, None] if mask.ndim == 2 else mask.reshape(n, h, L, s_full)
    if key_padding_mask is not None:
        kb = _pad_last(key_padding_mask, s_full - key_padding_mask.shape[-1])[:, None, None, :]
        bias = kb if bias is None else bias + kb
    return bias


@dataclass
class MultiheadForward:
    """``multi_head_attention_forward`` evaluated once, with the pullback of every argument."""

    output: np.ndarray
    weights: np.ndarray | None
    pullback: Callable[[np.ndarray, np.ndarray | None], dict[str, np.ndarray]]


def multi_head_attention(query, key, value, embed_dim_to_check, num_heads, in_proj_weight, in_proj_bias, bias_k,
                         bias_v, add_zero_attn, dropout_p, out_proj_weight, out_proj_bias, training=True,
                         key_padding_mask=None, need_weights=True, attn_mask=None, use_separate_proj_weight=False,
                         q_proj_weight=None, k_proj_weight=None, v_proj_weight=None, static_k=None, static_v=None,
                         average_attn_weights=True, is_causal=False, *, dropout_mask=None) -> MultiheadForward:
    """``multi_head_attention_forward`` (module docstring), evaluated once with its pullback: the
    reference of MultiheadAttention and of the transformer layers' attention blocks."""
    if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
        raise ValueError(f"query must be 2-d (unbatched) or 3-d with key and value alike, got {query.ndim}-d")
    batched = query.ndim == 3
    if key_padding_mask is not None and np.ndim(key_padding_mask) != (2 if batched else 1):
        raise ValueError("key_padding_mask must be (N, S), or (S) for an unbatched query")
    if not batched:
        query, key, value = query[:, None], key[:, None], value[:, None]
        if key_padding_mask is not None:
            key_padding_mask = np.asarray(key_padding_mask)[None]
    L, N, E = query.shape
    S = key.shape[0]
    H = int(num_heads)
    if E != embed_dim_to_check:
        raise ValueError(f"was expecting embedding dimension of {embed_dim_to_check}, but got {E}")
    if H <= 0 or E % H:
        raise ValueError(f"embed_dim {E} not divisible by num_heads {H}")
    hd = E // H
    if use_separate_proj_weight:
        if key.shape[:2] != value.shape[:2]:
            raise ValueError("key's sequence and batch dims do not match value's")
        w_q, w_k, w_v = q_proj_weight, k_proj_weight, v_proj_weight
    else:
        if key.shape != value.shape:
            raise ValueError(f"key shape {key.shape} does not match value shape {value.shape}")
        w_q, w_k, w_v = _split3(in_proj_weight)
    if key.shape[1] != N:
        raise ValueError("query and key batch sizes differ")
    b_q, b_k, b_v = _split3(in_proj_bias)
    kpm = mha_bias(key_padding_mask)
    mask = mha_bias(attn_mask)
    if mask is not None:
        if mask.ndim == 2 and mask.shape != (L, S):
            raise ValueError(f"the 2-d attn_mask is {mask.shape}, expected {(L, S)}")
        if mask.ndim == 3 and mask.shape != (N * H, L, S):
            raise ValueError(f"the 3-d attn_mask is {mask.shape}, expected {(N * H, L, S)}")
        if mask.ndim not in (2, 3):
            raise ValueError("attn_mask must be 2-d or 3-d")
    elif is_causal:
        raise ValueError("is_causal needs attn_mask (the causal mask it hints at)")
    if kpm is not None and kpm.shape != (N, S):
        raise ValueError(f"key_padding_mask is {kpm.shape}, expected {(N, S)}")
    q = linear(query, w_q, b_q)
    k = linear(key, w_k, b_k) if static_k is None else None
    v = linear(value, w_v, b_v) if static_v is None else None
    extra = 0
    if bias_k is not None or bias_v is not None:
        if bias_k is None or bias_v is None or static_k is not None or static_v is not None:
            raise ValueError("bias_k and bias_v go together, and not with static keys")
        k = np.concatenate([k, np.broadcast_to(bias_k.reshape(1, 1, E), (1, N, E))])
        v = np.concatenate([v, np.broadcast_to(bias_v.reshape(1, 1, E), (1, N, E))])
        extra += 1
    qh = _heads(q, N, H)
    kh = _heads(k, N, H) if static_k is None else np.asarray(static_k).reshape(N, H, -1, hd)
    vh = _heads(v, N, H) if static_v is None else np.asarray(static_v).reshape(N, H, -1, hd)
    if add_zero_attn:
        kh = np.concatenate([kh, np.zeros((N, H, 1, hd))], axis=2)
        vh = np.concatenate([vh, np.zeros((N, H, 1, vh.shape[-1]))], axis=2)
        extra += 1
    bias = attention_masks(mask, kpm, N, H, L, kh.shape[2])
    p = float(dropout_p) if training else 0.0
    att = attend(qh, kh, vh, bias, 1.0 / math.sqrt(hd), p, dropout_mask, safe=not need_weights)
    merged = _unheads(att.out)
    out = linear(merged, out_proj_weight, out_proj_bias)
    weights = None
    if need_weights:
        weights = att.dropped.mean(axis=1) if average_attn_weights else att.dropped
        if not batched:
            weights = weights[0]
    output = out if batched else out[:, 0]

    def pullback(g_out: np.ndarray, g_weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
        g_out = np.asarray(g_out, dtype=np.float64)
        if not batched:
            g_out = g_out[:, None]
        gw = None
        if need_weights and g_weights is not None:
            gw = np.asarray(g_weights, dtype=np.float64)
            gw = gw[None] if not batched else gw
            gw = np.broadcast_to(gw[:, None] / H, att.dropped.shape) if average_attn_weights else gw
        rows = g_out.reshape(-1, E)
        grads: dict[str, np.ndarray] = {"out_proj_weight": rows.T @ merged.reshape(-1, E)}
        if out_proj_bias is not None:
            grads["out_proj_bias"] = rows.sum(axis=0)
        g_merged = g_out @ out_proj_weight
        g_qh, g_kh, g_vh = att.pullback(_heads(g_merged, N, H), gw)
        if add_zero_attn:
            g_kh, g_vh = g_kh[:, :, :-1], g_vh[:, :, :-1]
        if static_k is not None:
            grads["static_k"] = g_kh.reshape(N * H, -1, hd)
        if static_v is not None:
            grads["static_v"] = g_vh.reshape(N * H, -1, g_vh.shape[-1])
        g_q = _unheads(g_qh)
        g_k = _unheads(g_kh) if static_k is None else None
        g_v = _unheads(g_vh) if static_v is None else None
        if bias_k is not None:
            grads["bias_k"] = g_k[-1].sum(axis=0).reshape(bias_k.shape)
            grads["bias_v"] = g_v[-1].sum(axis=0).reshape(bias_v.shape)
            g_k, g_v = g_k[:-1], g_v[:-1]
        g_in = {"query": (g_q, query, w_q), "key": (g_k, key, w_k), "value": (g_v, value, w_v)}
        w_grads, b_grads = [], []
        for name, (g, x, w) in g_in.items():
            if g is None:
                w_grads.append(None)
                continue
            grads[name] = (g @ w) if batched else (g @ w)[:, 0]
            w_grads.append(g.reshape(-1, g.shape[-1]).T @ x.reshape(-1, x.shape[-1]))
            b_grads.append(g.reshape(-1, g.shape[-1]).sum(axis=0))
        if use_separate_proj_weight:
            for name, gw_ in zip(("q_proj_weight", "k_proj_weight", "v_proj_weight"), w_grads):
                if gw_ is not None:
                    grads[name] = gw_
        elif all(w is not None for w in w_grads):
            grads["in_proj_weight"] = np.concatenate(w_grads, axis=0)
        if in_proj_bias is not None and len(b_grads) == 3:
            grads["in_proj_bias"] = np.concatenate(b_grads)
        return grads

    return MultiheadForward(output, weights, pullback)


def _mha_vjp(cotangent, *args, dropout_mask=None, **kwargs) -> dict[str, np.ndarray]:
    """The gradient of every float argument: query, key, value (through the in-projection), the
    projection weights and biases, bias_k/bias_v, static_k/static_v. ``cotangent`` is the pair
    (output's, weights') — the weights' may be None."""
    g_out, g_weights = cotangent if isinstance(cotangent, tuple) else (cotangent, None)
    return multi_head_attention(*args, dropout_mask=dropout_mask, **kwargs).pullback(g_out, g_weights)


def _mha_example(rng: np.random.Generator) -> tuple[tuple, dict]:
    E, H, L, S, N = 4, 2, 3, 2, 2
    q, k, v = rng.standard_normal((L, N, E)), rng.standard_normal((S, N, 3)), rng.standard_normal((S, N, 5))
    args = (q, k, v, E, H, None, rng.standard_normal(3 * E), rng.standard_normal((1, 1, E)),
            rng.standard_normal((1, 1, E)), True, 0.3, rng.standard_normal((E, E)), rng.standard_normal(E))
    kwargs = dict(key_padding_mask=rng.standard_normal((N, S)), attn_mask=rng.standard_normal((L, S)),
                  use_separate_proj_weight=True, q_proj_weight=rng.standard_normal((E, E)),
                  k_proj_weight=rng.standard_normal((E, 3)), v_proj_weight=rng.standard_normal((E, 5)),
                  average_attn_weights=False, dropout_mask=rng.random((N, H, L, S + 2)) > 0.3)
    return args, kwargs


@functional(vjp=_mha_vjp, example=_mha_example)
def multi_head_attention_forward(query, key, value, embed_dim_to_check, num_heads, in_proj_weight, in_proj_bias,
                                 bias_k, bias_v, add_zero_attn, dropout_p, out_proj_weight, out_proj_bias,
                                 training=True, key_padding_mask=None, need_weights=True, attn_mask=None,
                                 use_separate_proj_weight=False, q_proj_weight=None, k_proj_weight=None,
                                 v_proj_weight=None, static_k=None, static_v=None, average_attn_weights=True,
                                 is_causal=False, *, dropout_mask=None) -> tuple[np.ndarray, np.ndarray | None]:
    """(attn_output, attn_output_weights) of multi-head attention, torch's functional form (module
    docstring for the masks, bias_k/bias_v, add_zero_attn and fully masked rows). Shapes: query
    (L, N, E) or (L, E), key (S, N, kdim), value (S, N, vdim); output like query; weights (N, L, S')
    averaged over heads or (N, H, L, S') (no N when unbatched), S' = S + [bias_k] + [add_zero_attn];
    None without need_weights. ``dropout_mask`` (N, H, L, S') is needed in training with dropout_p > 0."""
    forward = multi_head_attention(query, key, value, embed_dim_to_check, num_heads, in_proj_weight, in_proj_bias,
                                   bias_k, bias_v, add_zero_attn, dropout_p, out_proj_weight, out_proj_bias,
                                   training, key_padding_mask, need_weights, attn_mask, use_separate_proj_weight,
                                   q_proj_weight, k_proj_weight, v_proj_weight, static_k, static_v,
                                   average_attn_weights, is_causal, dropout_mask=dropout_mask)
    return forward.output, forward.weights


def mha_module_params(params: Mapping[str, np.ndarray | None]) -> dict[str, Any]:
    """The keyword arguments of ``multi_head_attention`` from a MultiheadAttention's parameters
    by state-dict name (``in_proj_weight``, ``out_proj.weight``, ``q_proj_weight``...)."""
    separate = params.get("q_proj_weight") is not None
    return dict(in_proj_weight=params.get("in_proj_weight"), in_proj_bias=params.get("in_proj_bias"),
                bias_k=params.get("bias_k"), bias_v=params.get("bias_v"),
                out_proj_weight=params["out_proj.weight"], out_proj_bias=params.get("out_proj.bias"),
                use_separate_proj_weight=separate, q_proj_weight=params.get("q_proj_weight"),
                k_proj_weight=params.get("k_proj_weight"), v_proj_weight=params.get("v_proj_weight"))


MHA_GRAD_NAMES = {"in_proj_weight": "in_proj_weight", "in_proj_bias": "in_proj_bias", "bias_k": "bias_k",
                  "bias_v": "bias_v", "out_proj_weight": "out_proj.weight", "out_proj_bias": "out_proj.bias",
                  "q_proj_weight": "q_proj_weight", "k_proj_weight": "k_proj_weight",
                  "v_proj_weight": "v_proj_weight"}
