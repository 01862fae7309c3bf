"""The transformer layers (``nn.TransformerEncoderLayer``, ``nn.TransformerDecoderLayer``, the
stacks ``nn.TransformerEncoder`` / ``nn.TransformerDecoder`` and ``nn.Transformer``) as functional
forms taking their parameters, composed of the declared pieces: ``reference.attention``'s
multi-head attention, ``reference.normalization.layer_norm``, ``reference.linear.linear``, the
activations of ``reference.activation`` / ``reference.smooth_activation`` and the conditional
dropout of ``reference.dropout``. Each is evaluated once with a pullback (the gradient of every
input and parameter).

An encoder layer (x: (L, N, E), (N, L, E) with ``batch_first``, or unbatched (L, E)):

    post-norm (default):  x = norm1(x + SA(x));          x = norm2(x + FF(x))
    norm_first:           x = x + SA(norm1(x));          x = x + FF(norm2(x))
    SA(x) = dropout1(self_attn(x, x, x, src_mask, src_key_padding_mask, need_weights=False))
    FF(x) = dropout2(linear2(dropout(activation(linear1(x)))))

A decoder layer adds, between the two, the cross-attention block over ``memory``
(MHA(x) = dropout2(multihead_attn(x, memory, memory, memory_mask, memory_key_padding_mask)), with
norm2) and its feed-forward block ends in dropout3 and norm3. The attention blocks follow
MultiheadAttention's mask convention (a bool mask is True where attention is NOT allowed) and,
without weights, sdpa's convention for a fully masked query (a zero attention row). The stacks run
their layers in order (every layer's own parameters) and then the optional final norm;
``nn.Transformer`` is encoder(src) → memory → decoder(tgt, memory), each with its final norm.

Parameters are passed as mappings from the module's state-dict names (``self_attn.in_proj_weight``,
``linear1.weight``, ``norm2.bias``...; a bias is None or absent with ``bias=False``). Activation:
"relu", "gelu" (exact), or "gelu_tanh" (the tanh approximation: the callable nn.GELU("tanh")).

Dropout (training, 0 < p < 1) is conditional: ``dropout_masks`` maps each dropout of a layer to its
keep mask ("self_attn" and "multihead_attn": the attention weights' (N, H, L, S); "dropout1",
"dropout2", "dropout3": the block outputs'; "dropout": the feed-forward activation's). A stack
takes one such mapping per layer. The reference draws nothing.

``nested`` (TransformerEncoder only) is the convention of its eval fast path with
``enable_nested_tensor``: the batch is packed into a nested tensor without the padded positions
and padded back with zeros, so the output at a padded position (src_key_padding_mask True) is 0
before the final norm (which then gives the norm's bias there), where the dense computation would
give that position's own attention result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from reference.activation import relu
from reference.attention import MHA_GRAD_NAMES, mha_module_params, multi_head_attention
from reference.dropout import dropout as dropout_kept
from reference.dropout import dropout_vjp
from reference.linear import linear, linear_vjp
from reference.normalization import layer_norm
from reference.registry import FUNCTIONS, functional
from reference.smooth_activation import gelu

Params = Mapping[str, "np.ndarray | None"]
Grads = dict[str, np.ndarray]
Pullback = Callable[[np.ndarray], "tuple[np.ndarray, Grads]"]
ACTIVATIONS = ("relu", "gelu", "gelu_tanh")

ENCODER_LAYER_PARAMS = ("self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
                        "self_attn.out_proj.bias", "linear1.weight", "linear1.bias", "linear2.weight",
                        "linear2.bias", "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias")
DECODER_LAYER_PARAMS = ENCODER_LAYER_PARAMS[:4] + tuple(f"multihead_attn.{n.split('.', 1)[1]}"
                                                        for n in ENCODER_LAYER_PARAMS[:4]) + \
    ENCODER_LAYER_PARAMS[4:] + ("norm3.weight", "norm3.bias")


# -- the pieces, each evaluated once with its pullback ------------------------------------------


def _linear(x: np.ndarray, params: Params, name: str) -> tuple[np.ndarray, Pullback]:
    w, b = params[f"{name}.weight"], params.get(f"{name}.bias")

    def back(g: np.ndarray) -> tuple[np.ndarray, Grads]:
        gx, gw, gb = linear_vjp(x, w, g, b is not None)
        return gx, {f"{name}.weight": gw, **({f"{name}.bias": gb} if b is not None else {})}

    return linear(x, w, b), back


def _norm(x: np.ndarray, params: Params, name: str, eps: float) -> tuple[np.ndarray, Pullback]:
    w, b = params.get(f"{name}.weight"), params.get(f"{name}.bias")
    shape = (x.shape[-1],)

    def back(g: np.ndarray) -> tuple[np.ndarray, Grads]:
        grads = FUNCTIONS["layer_norm"].vjp(g, x, shape, w, b, eps)  # reference.functional's layer_norm VJP
        out = {f"{name}.{k}": v for k, v in grads.items() if k in ("weight", "bias")}
        return grads["input"], out

    return layer_norm(x, shape, w, b, eps), back


def _activation(x: np.ndarray, activation: str) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    if activation == "relu":
        return relu(x), lambda g: FUNCTIONS["relu"].vjp(g, x)["input"]
    if activation in ("gelu", "gelu_tanh"):
        approximate = "tanh" if activation == "gelu_tanh" else "none"
        return gelu(x, approximate), lambda g: FUNCTIONS["gelu"].vjp(g, x, approximate)["input"]
    raise ValueError(f"activation should be relu/gelu, not {activation!r}")


def _dropout(x: np.ndarray, p: float, training: bool, keep: np.ndarray | None
             ) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    if not training or p == 0:
        return x, lambda g: g
    if keep is None:
        raise ValueError("a dropout in training needs its keep mask: the reference draws nothing")
    keep = np.broadcast_to(np.asarray(keep, dtype=bool), x.shape)
    return dropout_kept(x, keep, p), lambda g: dropout_vjp(g, keep, p)


def _attention(x: np.ndarray, kv: np.ndarray, params: Params, name: str, nhead: int, mask: Any, kpm: Any,
               is_causal: bool, p: float, training: bool, keep: np.ndarray | None
               ) -> tuple[np.ndarray, Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, Grads]]]:
    """The attention block's MultiheadAttention (seq-first x): (output, back(g) -> (gx, gkv, grads))."""
    local = {k[len(name) + 1:]: v for k, v in params.items() if k.startswith(f"{name}.")}
    e = x.shape[-1]
    forward = multi_head_attention(x, kv, kv, e, nhead, **mha_module_params(local), add_zero_attn=False,
                                   dropout_p=p, training=training, key_padding_mask=kpm, need_weights=False,
                                   attn_mask=mask, is_causal=is_causal, dropout_mask=keep)

    def back(g: np.ndarray) -> tuple[np.ndarray, np.ndarray, Grads]:
        grads = forward.pullback(g, None)
        named = {f"{name}.{MHA_GRAD_NAMES[k]}": v for k, v in grads.items() if k in MHA_GRAD_NAMES}
        return grads["query"], grads["key"] + grads["value"], named

    return forward.output, back


def _accumulate(total: Grads, grads: Mapping[str, np.ndarray]) -> None:
    for k, v in grads.items():
        total[k] = total[k] + v if k in total else v


def _seq_first(x: np.ndarray, batch_first: bool) -> np.ndarray:
    return np.swapaxes(x, 0, 1) if batch_first and x.ndim == 3 else x


class ValuePieces:
    """The declared pieces the layers compose (values): ``pieces`` of every function below. The
    error analysis (``reference.attention_errors.BoundedPieces``) re-evaluates the same composition
    on bounded arrays."""

    asarray = staticmethod(lambda x: np.asarray(x, dtype=np.float64))
    linear = staticmethod(_linear)
    norm = staticmethod(_norm)
    activation = staticmethod(_activation)
    dropout = staticmethod(_dropout)
    attention = staticmethod(_attention)

    @staticmethod
    def where_rows(keep: np.ndarray, x: np.ndarray) -> np.ndarray:
        return np.where(keep, x, 0.0)


VALUES = ValuePieces()


# -- one layer ------------------------------------------------------------------------------------


def encoder_layer(src: np.ndarray, params: Params, nhead: int, src_mask: Any = None, src_key_padding_mask: Any = None,
                  is_causal: bool = False, dropout: float = 0.1, activation: str = "relu",
                  layer_norm_eps: float = 1e-5, batch_first: bool = False, norm_first: bool = False,
                  training: bool = True, dropout_masks: Mapping[str, np.ndarray] | None = None,
                  pieces: Any = VALUES) -> tuple[np.ndarray, Callable[[np.ndarray], tuple[np.ndarray, Grads]]]:
    """TransformerEncoderLayer's forward (module docstring) and its pullback g -> (d src, d params)."""
    masks = dropout_masks or {}
    x = _seq_first(pieces.asarray(src), batch_first)
    p, eps = float(dropout), float(layer_norm_eps)
    if x.ndim not in (2, 3):
        raise ValueError("src must be (L, N, E), (N, L, E) or unbatched (L, E)")
    tape: list[Any] = []

    def sa(h: np.ndarray) -> np.ndarray:
        a, back_a = pieces.attention(h, h, params, "self_attn", nhead, src_mask, src_key_padding_mask, is_causal,
                                     p, training, masks.get("self_attn"))
        y, back_d = pieces.dropout(a, p, training, masks.get("dropout1"))
        tape.append(("sa", back_a, back_d))
        return y

    def ff(h: np.ndarray) -> np.ndarray:
        h1, back_1 = pieces.linear(h, params, "linear1")
        h2, back_act = pieces.activation(h1, activation)
        h3, back_d = pieces.dropout(h2, p, training, masks.get("dropout"))
        h4, back_2 = pieces.linear(h3, params, "linear2")
        y, back_d2 = pieces.dropout(h4, p, training, masks.get("dropout2"))
        tape.append(("ff", back_1, back_act, back_d, back_2, back_d2))
        return y

    if norm_first:
        n1, back_n1 = pieces.norm(x, params, "norm1", eps)
        x1 = x + sa(n1)
        n2, back_n2 = pieces.norm(x1, params, "norm2", eps)
        out = x1 + ff(n2)
    else:
        x1, back_n1 = pieces.norm(x + sa(x), params, "norm1", eps)
        out, back_n2 = pieces.norm(x1 + ff(x1), params, "norm2", eps)

    def pullback(g: np.ndarray) -> tuple[np.ndarray, Grads]:
        g = _seq_first(pieces.asarray(g), batch_first)
        grads: Grads = {}
        (_, back_a, back_d1), (_, back_1, back_act, back_d, back_2, back_d2) = tape

        def ff_back(gy: np.ndarray) -> np.ndarray:
            g4 = back_d2(gy)
            g3, gp = back_2(g4)
            _accumulate(grads, gp)
            g1, gp = back_1(back_act(back_d(g3)))
            _accumulate(grads, gp)
            return g1

        def sa_back(gy: np.ndarray) -> np.ndarray:
            gq, gkv, gp = back_a(back_d1(gy))
            _accumulate(grads, gp)
            return gq + gkv

        if norm_first:
            gn2, gp = back_n2(ff_back(g))
            _accumulate(grads, gp)
            g1 = g + gn2
            gn1, gp = back_n1(sa_back(g1))
            _accumulate(grads, gp)
            gx = g1 + gn1
        else:
            gs2, gp = back_n2(g)
            _accumulate(grads, gp)
            g1 = gs2 + ff_back(gs2)
            gs1, gp = back_n1(g1)
            _accumulate(grads, gp)
            gx = gs1 + sa_back(gs1)
        return _seq_first(gx, batch_first), grads

    return _seq_first(out, batch_first), pullback


def decoder_layer(tgt: np.ndarray, memory: np.ndarray, params: Params, nhead: int, tgt_mask: Any = None,
                  memory_mask: Any = None, tgt_key_padding_mask: Any = None, memory_key_padding_mask: Any = None,
                  tgt_is_causal: bool = False, memory_is_causal: bool = False, dropout: float = 0.1,
                  activation: str = "relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
                  norm_first: bool = False, training: bool = True,
                  dropout_masks: Mapping[str, np.ndarray] | None = None, pieces: Any = VALUES
                  ) -> tuple[np.ndarray, Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, Grads]]]:
    """TransformerDecoderLayer's forward (module docstring) and its pullback
    g -> (d tgt, d memory, d params)."""
    masks = dropout_masks or {}
    x = _seq_first(pieces.asarray(tgt), batch_first)
    mem = _seq_first(pieces.asarray(memory), batch_first)
    p, eps = float(dropout), float(layer_norm_eps)
    if x.ndim not in (2, 3) or mem.ndim != x.ndim:
        raise ValueError("tgt and memory must both be batched (3-d) or unbatched (2-d)")
    backs: dict[str, Any] = {}

    def sa(h: np.ndarray) -> np.ndarray:
        a, backs["sa"] = pieces.attention(h, h, params, "self_attn", nhead, tgt_mask, tgt_key_padding_mask,
                                          tgt_is_causal, p, training, masks.get("self_attn"))
        y, backs["d1"] = pieces.dropout(a, p, training, masks.get("dropout1"))
        return y

    def mha(h: np.ndarray) -> np.ndarray:
        a, backs["mha"] = pieces.attention(h, mem, params, "multihead_attn", nhead, memory_mask,
                                           memory_key_padding_mask, memory_is_causal, p, training,
                                           masks.get("multihead_attn"))
        y, backs["d2"] = pieces.dropout(a, p, training, masks.get("dropout2"))
        return y

    def ff(h: np.ndarray) -> np.ndarray:
        h1, backs["l1"] = pieces.linear(h, params, "linear1")
        h2, backs["act"] = pieces.activation(h1, activation)
        h3, backs["d"] = pieces.dropout(h2, p, training, masks.get("dropout"))
        h4, backs["l2"] = pieces.linear(h3, params, "linear2")
        y, backs["d3"] = pieces.dropout(h4, p, training, masks.get("dropout3"))
        return y

    if norm_first:
        n1, backs["n1"] = pieces.norm(x, params, "norm1", eps)
        x1 = x + sa(n1)
        n2, backs["n2"] = pieces.norm(x1, params, "norm2", eps)
        x2 = x1 + mha(n2)
        n3, backs["n3"] = pieces.norm(x2, params, "norm3", eps)
        out = x2 + ff(n3)
    else:
        x1, backs["n1"] = pieces.norm(x + sa(x), params, "norm1", eps)
        x2, backs["n2"] = pieces.norm(x1 + mha(x1), params, "norm2", eps)
        out, backs["n3"] = pieces.norm(x2 + ff(x2), params, "norm3", eps)

    def pullback(g: np.ndarray) -> tuple[np.ndarray, np.ndarray, Grads]:
        g = _seq_first(pieces.asarray(g), batch_first)
        grads: Grads = {}

        def through(name: str, gy: np.ndarray) -> np.ndarray:
            gx, gp = backs[name](gy)
            _accumulate(grads, gp)
            return gx

        def ff_back(gy: np.ndarray) -> np.ndarray:
            g3 = through("l2", backs["d3"](gy))
            return through("l1", backs["act"](backs["d"](g3)))

        def att_back(name: str, dname: str, gy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            gq, gkv, gp = backs[name](backs[dname](gy))
            _accumulate(grads, gp)
            return gq, gkv

        if norm_first:
            g2 = g + through("n3", ff_back(g))
            gq, g_mem = att_back("mha", "d2", g2)
            g1 = g2 + through("n2", gq)
            gq, gkv = att_back("sa", "d1", g1)
            gx = g1 + through("n1", gq + gkv)
        else:
            gs3 = through("n3", g)
            gs2 = through("n2", gs3 + ff_back(gs3))
            gq, g_mem = att_back("mha", "d2", gs2)
            gs1 = through("n1", gs2 + gq)
            gq, gkv = att_back("sa", "d1", gs1)
            gx = gs1 + gq + gkv
        return _seq_first(gx, batch_first), _seq_first(g_mem, batch_first), grads

    return _seq_first(out, batch_first), pullback


# -- the stacks -------------------------------------------------------------------------------------


def _layer_params(params: Params, prefix: str) -> dict[str, Any]:
    return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}


def _final_norm(x: np.ndarray, params: Params, prefix: str, eps: float,
                pieces: Any) -> tuple[np.ndarray, Pullback | None]:
    if params.get(f"{prefix}weight") is None:
        return x, None
    local = {"norm.weight": params[f"{prefix}weight"], "norm.bias": params.get(f"{prefix}bias")}
    y, back = pieces.norm(x, local, "norm", eps)

    def pullback(g: np.ndarray) -> tuple[np.ndarray, Grads]:
        gx, grads = back(g)
        return gx, {f"{prefix}{k.split('.', 1)[1]}": v for k, v in grads.items()}

    return y, pullback


def encoder(src: np.ndarray, params: Params, num_layers: int, nhead: int, mask: Any = None,
            src_key_padding_mask: Any = None, is_causal: bool | None = None, dropout: float = 0.1,
            activation: str = "relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
            norm_first: bool = False, training: bool = True,
            dropout_masks: Sequence[Mapping[str, np.ndarray]] | None = None, nested: bool = False,
            prefix: str = "", norm_eps: float | None = None, pieces: Any = VALUES
            ) -> tuple[np.ndarray, Callable[[np.ndarray], tuple[np.ndarray, Grads]]]:
    """TransformerEncoder: ``num_layers`` encoder layers (parameters ``{prefix}layers.{i}.<name>``),
    then the final norm when ``{prefix}norm.weight`` is given. ``is_causal`` None: the mask is
    causal iff it is the square subsequent mask (the same computation either way). ``nested``: the
    eval fast path's padded positions are 0 before the final norm (module docstring)."""
    x = pieces.asarray(src)
    causal = bool(is_causal)
    backs = []
    for i in range(num_layers):
        x, back = encoder_layer(x, _layer_params(params, f"{prefix}layers.{i}."), nhead, mask,
                                src_key_padding_mask, causal, dropout, activation,
                                layer_norm_eps, batch_first, norm_first, training,
                                (dropout_masks or [{}] * num_layers)[i], pieces)
        backs.append(back)
    keep_rows = None
    if nested and src_key_padding_mask is not None:
        if x.ndim != 3:
            raise ValueError("the nested-tensor fast path needs a batched src")
        kpm = np.asarray(src_key_padding_mask) != 0  # torch packs with kpm.logical_not()
        keep_rows = ~(kpm if batch_first else kpm.T)[..., None]
        x = pieces.where_rows(keep_rows, x)
    out, back_norm = _final_norm(x, params, f"{prefix}norm.", layer_norm_eps if norm_eps is None else norm_eps,
                                 pieces)

    def pullback(g: np.ndarray) -> tuple[np.ndarray, Grads]:
        grads: Grads = {}
        g = pieces.asarray(g)
        if back_norm is not None:
            g, gp = back_norm(g)
            grads.update(gp)
        if keep_rows is not None:
            g = pieces.where_rows(keep_rows, g)
        for i in reversed(range(num_layers)):
            g, gp = backs[i](g)
            grads.update({f"{prefix}layers.{i}.{k}": v for k, v in gp.items()})
        return g, grads

    return out, pullback


def decoder(tgt: np.ndarray, memory: np.ndarray, params: Params, num_layers: int, nhead: int, tgt_mask: Any = None,
            memory_mask: Any = None, tgt_key_padding_mask: Any = None, memory_key_padding_mask: Any = None,
            tgt_is_causal: bool | None = None, memory_is_causal: bool = False, dropout: float = 0.1,
            activation: str = "relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
            norm_first: bool = False, training: bool = True,
            dropout_masks: Sequence[Mapping[str, np.ndarray]] | None = None, prefix: str = "",
            norm_eps: float | None = None, pieces: Any = VALUES
            ) -> tuple[np.ndarray, Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, Grads]]]:
    """TransformerDecoder: ``num_layers`` decoder layers over the same memory, then the final norm
    when ``{prefix}norm.weight`` is given; the memory's gradient sums over the layers."""
    x = pieces.asarray(tgt)
    backs = []
    for i in range(num_layers):
        x, back = decoder_layer(x, memory, _layer_params(params, f"{prefix}layers.{i}."), nhead, tgt_mask,
                                memory_mask, tgt_key_padding_mask, memory_key_padding_mask, bool(tgt_is_causal),
                                memory_is_causal, dropout, activation, layer_norm_eps, batch_first, norm_first,
                                training, (dropout_masks or [{}] * num_layers)[i], pieces)
        backs.append(back)
    out, back_norm = _final_norm(x, params, f"{prefix}norm.", layer_norm_eps if norm_eps is None else norm_eps,
                                 pieces)

    def pullback(g: np.ndarray) -> tuple[np.ndarray, np.ndarray, Grads]:
        grads: Grads = {}
        g = pieces.asarray(g)
        if back_norm is not None:
            g, gp = back_norm(g)
            grads.update(gp)
        g_mem = None
        for i in reversed(range(num_layers)):
            g, gm, gp = backs[i](g)
            g_mem = gm if g_mem is None else g_mem + gm
            grads.update({f"{prefix}layers.{i}.{k}": v for k, v in gp.items()})
        return g, g_mem, grads

    return out, pullback


def transformer(src: np.ndarray, tgt: np.ndarray, params: Params, num_encoder_layers: int, num_decoder_layers: int,
                nhead: int, src_mask: Any = None, tgt_mask: Any = None, memory_mask: Any = None,
                src_key_padding_mask: Any = None, tgt_key_padding_mask: Any = None,
                memory_key_padding_mask: Any = None, src_is_causal: bool | None = None,
                tgt_is_causal: bool | None = None, memory_is_causal: bool = False, dropout: float = 0.1,
                activation: str = "relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
                norm_first: bool = False, training: bool = True,
                dropout_masks: Sequence[Mapping[str, np.ndarray]] | None = None,
                encoder_norm_eps: float | None = None, decoder_norm_eps: float | None = None,
                nested: bool = False, pieces: Any = VALUES
                ) -> tuple[np.ndarray, Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, Grads]]]:
    """nn.Transformer: memory = encoder(src) (parameters ``encoder.*``), output = decoder(tgt,
    memory) (``decoder.*``); ``dropout_masks`` lists the encoder's layers, then the decoder's;
    ``nested``: the encoder's nested-tensor convention (``encoder``)."""
    src, tgt = pieces.asarray(src), pieces.asarray(tgt)
    if src.ndim != tgt.ndim or src.ndim not in (2, 3):
        raise ValueError("src and tgt must both be batched (3-d) or unbatched (2-d)")
    if src.ndim == 3 and src.shape[0 if batch_first else 1] != tgt.shape[0 if batch_first else 1]:
        raise ValueError("the batch number of src and tgt must be equal")
    masks = list(dropout_masks or [{}] * (num_encoder_layers + num_decoder_layers))
    memory, back_enc = encoder(src, params, num_encoder_layers, nhead, src_mask, src_key_padding_mask, src_is_causal,
                               dropout, activation, layer_norm_eps, batch_first, norm_first, training,
                               masks[:num_encoder_layers], nested, prefix="encoder.", norm_eps=encoder_norm_eps,
                               pieces=pieces)
    out, back_dec = decoder(tgt, memory, params, num_decoder_layers, nhead, tgt_mask, memory_mask,
                            tgt_key_padding_mask, memory_key_padding_mask, tgt_is_causal, memory_is_causal, dropout,
                            activation, layer_norm_eps, batch_first, norm_first, training,
                            masks[num_encoder_layers:], prefix="decoder.", norm_eps=decoder_norm_eps,
                            pieces=pieces)

    def pullback(g: np.ndarray) -> tuple[np.ndarray, np.ndarray, Grads]:
        g_tgt, g_mem, grads = back_dec(g)
        g_src, enc_grads = back_enc(g_mem)
        grads.update(enc_grads)
        return g_src, g_tgt, grads

    return out, pullback


# -- the registered functional forms of the two layers ------------------------------------------


def _names(prefix_params: Sequence[str]) -> list[str]:
    return [n.replace(".", "_") for n in prefix_params]


def _encoder_args(args: tuple, kwargs: dict) -> tuple[np.ndarray, dict[str, Any], dict[str, Any]]:
    names = ["src", *_names(ENCODER_LAYER_PARAMS)]
    bound = dict(zip(names, args))
    bound.update({k: kwargs.pop(k) for k in list(kwargs) if k in names})
    params = {n: bound.get(n.replace(".", "_")) for n in ENCODER_LAYER_PARAMS}
    return bound["src"], params, kwargs


def _encoder_layer_vjp(cotangent, *args, **kwargs) -> dict[str, np.ndarray]:
    """d src and the gradient of every parameter (argument names: state-dict names with '_')."""
    src, params, rest = _encoder_args(args, dict(kwargs))
    _, pullback = encoder_layer(src, params, **rest)
    g_src, grads = pullback(cotangent)
    return {"src": g_src, **{k.replace(".", "_"): v for k, v in grads.items()}}


def _layer_example(rng: np.random.Generator, names: Sequence[str], e: int = 4, ff: int = 3) -> list[np.ndarray]:
    shapes = {"in_proj_weight": (3 * e, e), "in_proj_bias": (3 * e,), "out_proj.weight": (e, e),
              "out_proj.bias": (e,), "linear1.weight": (ff, e), "linear1.bias": (ff,), "linear2.weight": (e, ff),
              "linear2.bias": (e,)}
    out = []
    for n in names:
        key = n.split(".", 1)[1] if n.split(".", 1)[0] in ("self_attn", "multihead_attn") else n
        shape = shapes.get(key, (e,))
        value = rng.standard_normal(shape)
        out.append(1.0 + 0.2 * value if n.endswith("norm1.weight") or n.endswith("norm2.weight") else value)
    return out


def _encoder_example(rng: np.random.Generator) -> tuple[tuple, dict]:
    src = rng.standard_normal((3, 2, 4))
    keep = {"self_attn": rng.random((2, 2, 3, 3)) > 0.3, "dropout1": rng.random((3, 2, 4)) > 0.3,
            "dropout": rng.random((3, 2, 3)) > 0.3, "dropout2": rng.random((3, 2, 4)) > 0.3}
    return (src, *_layer_example(rng, ENCODER_LAYER_PARAMS)), dict(
        nhead=2, src_mask=rng.standard_normal((3, 3)), dropout=0.25, activation="gelu", norm_first=True,
        dropout_masks=keep)


@functional(vjp=_encoder_layer_vjp, example=_encoder_example)
def transformer_encoder_layer(src, self_attn_in_proj_weight, self_attn_in_proj_bias, self_attn_out_proj_weight,
                              self_attn_out_proj_bias, linear1_weight, linear1_bias, linear2_weight, linear2_bias,
                              norm1_weight, norm1_bias, norm2_weight, norm2_bias, nhead, src_mask=None,
                              src_key_padding_mask=None, is_causal=False, dropout=0.1, activation="relu",
                              layer_norm_eps=1e-5, batch_first=False, norm_first=False, training=True,
                              dropout_masks=None):
    """nn.TransformerEncoderLayer as a function of its parameters (module docstring):
    x = norm1(x + SA(x)); x = norm2(x + FF(x)) (or the norm_first order). Shapes: src (L, N, E),
    (N, L, E) with batch_first, or (L, E); same shape out. Biases may be None (bias=False)."""
    params = dict(zip(ENCODER_LAYER_PARAMS, (self_attn_in_proj_weight, self_attn_in_proj_bias,
                                             self_attn_out_proj_weight, self_attn_out_proj_bias, linear1_weight,
                                             linear1_bias, linear2_weight, linear2_bias, norm1_weight, norm1_bias,
                                             norm2_weight, norm2_bias)))
    out, _ = encoder_layer(src, params, nhead, src_mask, src_key_padding_mask, is_causal, dropout, activation,
                           layer_norm_eps, batch_first, norm_first, training, dropout_masks)
    return out


def _decoder_layer_vjp(cotangent, tgt, memory, *args, **kwargs) -> dict[str, np.ndarray]:
    """d tgt, d memory and the gradient of every parameter (state-dict names with '_')."""
    names = _names(DECODER_LAYER_PARAMS)
    bound = dict(zip(names, args))
    rest = dict(kwargs)
    bound.update({k: rest.pop(k) for k in list(rest) if k in names})
    params = {n: bound.get(n.replace(".", "_")) for n in DECODER_LAYER_PARAMS}
    _, pullback = decoder_layer(tgt, memory, params, **rest)
    g_tgt, g_mem, grads = pullback(cotangent)
    return {"tgt": g_tgt, "memory": g_mem, **{k.replace(".", "_"): v for k, v in grads.items()}}


def _decoder_example(rng: np.random.Generator) -> tuple[tuple, dict]:
    tgt, memory = rng.standard_normal((3, 2, 4)), rng.standard_normal((2, 2, 4))
    keep = {"self_attn": rng.random((2, 2, 3, 3)) > 0.3, "dropout1": rng.random((3, 2, 4)) > 0.3,
            "multihead_attn": rng.random((2, 2, 3, 2)) > 0.3, "dropout2": rng.random((3, 2, 4)) > 0.3,
            "dropout": rng.random((3, 2, 3)) > 0.3, "dropout3": rng.random((3, 2, 4)) > 0.3}
    return (tgt, memory, *_layer_example(rng, DECODER_LAYER_PARAMS)), dict(
        nhead=2, memory_mask=rng.standard_normal((3, 2)), dropout=0.25, activation="gelu_tanh",
        dropout_masks=keep)


@functional(vjp=_decoder_layer_vjp, example=_decoder_example)
def transformer_decoder_layer(tgt, memory, self_attn_in_proj_weight, self_attn_in_proj_bias,
                              self_attn_out_proj_weight, self_attn_out_proj_bias, multihead_attn_in_proj_weight,
                              multihead_attn_in_proj_bias, multihead_attn_out_proj_weight,
                              multihead_attn_out_proj_bias, linear1_weight, linear1_bias, linear2_weight,
                              linear2_bias, norm1_weight, norm1_bias, norm2_weight, norm2_bias, norm3_weight,
                              norm3_bias, nhead, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                              memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False,
                              dropout=0.1, activation="relu", layer_norm_eps=1e-5, batch_first=False,
                              norm_first=False, training=True, dropout_masks=None):
    """nn.TransformerDecoderLayer as a function of its parameters (module docstring): self-attention,
    cross-attention over ``memory``, feed-forward, each with its norm. Shapes: tgt (T, N, E),
    memory (S, N, E) (batch first: (N, T, E), (N, S, E); unbatched: no N); output like tgt."""
    values = (self_attn_in_proj_weight, self_attn_in_proj_bias, self_attn_out_proj_weight, self_attn_out_proj_bias,
              multihead_attn_in_proj_weight, multihead_attn_in_proj_bias, multihead_attn_out_proj_weight,
              multihead_attn_out_proj_bias, linear1_weight, linear1_bias, linear2_weight, linear2_bias,
              norm1_weight, norm1_bias, norm2_weight, norm2_bias, norm3_weight, norm3_bias)
    out, _ = decoder_layer(tgt, memory, dict(zip(DECODER_LAYER_PARAMS, values)), nhead, tgt_mask, memory_mask,
                           tgt_key_padding_mask, memory_key_padding_mask, tgt_is_causal, memory_is_causal, dropout,
                           activation, layer_norm_eps, batch_first, norm_first, training, dropout_masks)
    return out
