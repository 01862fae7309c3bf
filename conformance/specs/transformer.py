"""The transformer modules: encoder and decoder layers, their stacks, nn.Transformer; autograd and fast paths."""

from conformance.families.attention import transformer, transformer_regimes
from conformance.numerics import attention as N
from conformance.spec import Regime, declare

NOTES = ("Composed of the declared pieces (reference.transformer): post-norm x = norm1(x + SA(x)), x = norm2(x + "
         "FF(x)) or, with norm_first, x = x + SA(norm1(x)), x = x + FF(norm2(x)); a decoder layer adds the cross-"
         "attention block over memory (norm2) and ends with norm3. Masks in MultiheadAttention's convention "
         "(bool True = not allowed, float added); an is_causal hint comes with the causal mask it hints at; "
         "attention blocks without weights give a fully masked query a zero attention row. activation: 'relu', "
         "'gelu' or a callable module (nn.ReLU(), nn.GELU(approximate='tanh')). Train mode with dropout: "
         "conditional reference given every dropout's keep mask, replayed from torch's generator in execution "
         "order (attention weights in sdpa's math kernel, then dropout1, [multihead_attn, dropout2,] dropout, "
         "dropout2/dropout3), judged statistically. Every input and parameter gradient compared; the tolerance "
         "is the running first-order error bound of the composition (reference.attention_errors).")
FAST = ("The eval fast path, forward only (torch takes it only without gradients): eval, batch_first, batched, "
        "bias, relu/gelu (strings, nn.ReLU or nn.GELU), even heads. Same semantics as the autograd path.")


declare(transformer("TransformerEncoderLayer", regimes=transformer_regimes("TransformerEncoderLayer") + (
    Regime("causal", lambda c: c.forward_kwargs.get("is_causal", False),
           {"is_causal": True, "is_causal omitted": False},
           "src_mask the causal mask, is_causal=True"),
    Regime("key padding", lambda c: N.mask_kind(c, "src_key_padding_mask") == "bool",
           {"src_key_padding_mask": "bool"}, "a bool src_key_padding_mask"),
), notes=NOTES))

declare(transformer("TransformerEncoderLayer", fast=True, regimes=(
    Regime("gelu", lambda c: c.params["activation"] == "gelu", {"activation": "gelu"}, "the exact GELU"),
    Regime("callable GELU(tanh)", N.fast_path_tanh_gelu, {"activation": "GELU(tanh)"},
           "torch discrepancy transformer-fast-path-tanh-gelu"),
    Regime("key padding", lambda c: N.mask_kind(c, "src_key_padding_mask") == "bool",
           {"src_key_padding_mask": "bool", "src_key_padding_mask.fully masked row": False}, "a bool padding mask"),
    Regime("fully masked query", N.has_fully_masked_query,
           {"src_key_padding_mask": "bool", "src_key_padding_mask.fully masked row": True,
            "src_key_padding_mask.from lengths": False},
           "torch discrepancy attention-fast-path-fully-masked-query-nan"),
), notes=FAST + " torch._transformer_encoder_layer_fwd."))

declare(transformer("TransformerDecoderLayer", regimes=transformer_regimes("TransformerDecoderLayer") + (
    Regime("causal tgt_mask", lambda c: c.forward_kwargs.get("tgt_is_causal", False),
           {"tgt_is_causal": True, "tgt_is_causal omitted": False},
           "tgt_mask the causal mask, tgt_is_causal=True"),
    Regime("causal memory_mask", lambda c: c.forward_kwargs.get("memory_is_causal", False),
           {"memory_is_causal": True, "memory_is_causal omitted": False},
           "memory_mask the top-left causal mask, memory_is_causal=True"),
    Regime("memory key padding", lambda c: "memory_key_padding_mask" in c.inputs,
           {"memory_key_padding_mask": "bool"}, "padding in the memory"),
), notes=NOTES))

declare(transformer("TransformerDecoderLayer", fast=True, regimes=(
    Regime("gelu", lambda c: c.params["activation"] == "gelu", {"activation": "gelu"}, "the exact GELU"),
    Regime("bool masks", lambda c: N.mask_kind(c, "tgt_mask") == "bool", {"tgt_mask": "bool", "tgt_is_causal": False},
           "a bool tgt_mask: the self-attention's MultiheadAttention fast path"),
), notes=FAST + " Its self-attention takes MultiheadAttention's fast path."))

declare(transformer("TransformerEncoder", regimes=transformer_regimes("TransformerEncoder", stack=True) + (
    Regime("no final norm", lambda c: not c.params["norm"], {"norm": False}, "norm=None"),
    Regime("causal mask detected", lambda c: "is_causal" not in c.forward_kwargs and N.is_causal_mask(c, "mask"),
           {"is_causal": True, "is_causal omitted": True}, "the causal mask without the hint: the stack detects it"),
), notes=NOTES + " enable_nested_tensor and mask_check have no effect on the autograd path."))

declare(transformer("TransformerEncoder", nested=True, regimes=(
    Regime("mask_check off", lambda c: not c.params["mask_check"], {"mask_check": False},
           "the padding mask not checked (it is left-aligned)"),
    Regime("no final norm", lambda c: not c.params["norm"], {"norm": False}, "padded positions stay 0"),
    Regime("gelu", lambda c: c.params["activation"] == "gelu", {"activation": "gelu"}, "the exact GELU"),
), notes=(FAST + " With enable_nested_tensor and a left-aligned bool src_key_padding_mask (and no mask), "
          "TransformerEncoder packs the batch into a nested tensor without the padded positions and pads the "
          "result back with 0: the output at a padded position is 0 before the final norm (its bias after it), "
          "where the dense computation gives that position's own attention result.")))

declare(transformer("TransformerDecoder", regimes=transformer_regimes("TransformerDecoder", stack=True) + (
    Regime("no final norm", lambda c: not c.params["norm"], {"norm": False}, "norm=None"),
    Regime("causal tgt_mask", lambda c: c.forward_kwargs.get("tgt_is_causal", False),
           {"tgt_is_causal": True, "tgt_is_causal omitted": False},
           "tgt_mask the causal mask, tgt_is_causal=True"),
), notes=NOTES + " The memory's gradient sums over the layers."))

declare(transformer("Transformer", regimes=transformer_regimes("Transformer", stack=True) + (
    Regime("custom encoder", lambda c: c.params["custom_encoder"], {"custom_encoder": True},
           "custom_encoder: a TransformerEncoder built by the caller"),
    Regime("custom encoder without norm", lambda c: not c.params["encoder_norm"],
           {"custom_encoder": True, "custom encoder without norm": True}, "a custom encoder with norm=None"),
    Regime("src causal", lambda c: c.forward_kwargs.get("src_is_causal", False),
           {"src_is_causal": True, "src_is_causal omitted": False},
           "src_mask the causal mask, src_is_causal=True"),
    Regime("memory key padding", lambda c: "memory_key_padding_mask" in c.inputs,
           {"memory_key_padding_mask": "bool"}, "padding in the encoder's output"),
), notes=NOTES + " nn.Transformer: memory = encoder(src) with its final norm, then decoder(tgt, memory) with "
                 "its final norm."))

declare(transformer("Transformer", fast=True, regimes=(
    Regime("nested encoder", N.takes_nested_path, {"src_key_padding_mask.from lengths": True, "src_mask": "none",
                                                    "src_is_causal": False, "norm_first": False},
           "the encoder's nested-tensor path, when the padding mask happens to be left-aligned"),
), notes=FAST + " The encoder may take its nested-tensor path (see TransformerEncoder[nested])."))
