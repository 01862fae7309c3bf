"""Attention: scaled_dot_product_attention (per CPU kernel) and MultiheadAttention."""

from conformance.families.attention import multihead_attention, sdpa
from conformance.numerics import attention as N
from conformance.spec import Regime, declare

declare(sdpa("math", regimes=(
    Regime("is_causal, L != S", lambda c: c.params["is_causal"] and c.inputs["query"].shape[-2] != c.inputs[
        "key"].shape[-2], {"attn_mask": "none", "is_causal": True, "L": 2, "S": 5},
           "query i attends keys j <= i, the triangle aligned at the top-left"),
    Regime("bool mask broadcast", lambda c: N.mask_kind(c) == "bool" and c.inputs["attn_mask"].ndim < c.inputs[
        "query"].ndim, {"attn_mask": "bool", "attn_mask shape": "(L, S)", "batch ndim": 2},
           "an (L, S) bool mask over two batch dims and the heads"),
    Regime("float mask", lambda c: N.mask_kind(c) == "float", {"attn_mask": "float", "attn_mask shape": "full"},
           "a float mask added to the scores, -inf excluding keys"),
    Regime("fully masked row", N.has_dead_sdpa_row, {"attn_mask": "bool", "attn_mask.fully masked row": True},
           "a query attending no key: a zero output row and zero gradients"),
    Regime("grouped-query attention", lambda c: c.params["enable_gqa"],
           {"batch ndim": 1, "enable_gqa": True, "key heads": 2}, "two key/value heads serving 4 or 6 query heads"),
    Regime("explicit scale", lambda c: c.params["scale"] == 2.0, {"scale": 2.0}, "scale = 2 instead of 1/sqrt(E)"),
    Regime("dropout", lambda c: c.params["dropout_p"] > 0, {"dropout_p": 0.5},
           "dropout on the attention weights: masks replayed from torch's generator"),
    Regime("no batch dims", lambda c: c.inputs["query"].ndim == 2, {"batch ndim": 0, "heads dim": False},
           "(L, E) query, (S, E) key and value"),
    Regime("value width differs", lambda c: c.inputs["value"].shape[-1] != c.inputs["query"].shape[-1],
           {"Ev": 3, "E": 5}, "Ev != E"),
    Regime("strided inputs", lambda c: c.layout("query").kind == "strided", {"layout.query": "strided"},
           "a query read through steps (NaN in the gaps)"),
), notes=("scaled_dot_product_attention on the math kernel, forced with torch.nn.attention.sdpa_kernel. "
          "softmax(Q·Kᵀ·scale + mask)·V over the keys; scale defaults to 1/sqrt(E). A bool attn_mask says which "
          "keys a query attends (True = attends), a float mask is added; masks broadcast over batch and heads. "
          "is_causal: query i attends keys j <= i, aligned at the top-left also when L != S; with an explicit "
          "mask it is an error. A fully masked query row gives a zero output row and passes no gradient "
          "(torch's safe softmax). enable_gqa: each key/value head serves Hq/Hk consecutive query heads. "
          "Dropout: conditional reference given the keep masks, replayed from torch's generator (the math kernel "
          "drops the weights (*, Hq, L, S) with at::dropout, in float32 for float16/bfloat16 inputs), the "
          "masks judged by their drop rate and independence. No exact tier (softmax). Tolerance: the running "
          "first-order error bound of the computation (reference.attention_errors).")))

declare(sdpa("flash", regimes=(
    Regime("is_causal, L != S", lambda c: c.params["is_causal"] and c.inputs["query"].shape[-2] != c.inputs[
        "key"].shape[-2], {"attn_mask": "none", "is_causal": True, "L": 5, "S": 2},
           "query i attends keys j <= i, the triangle aligned at the top-left"),
    Regime("bool mask broadcast", lambda c: N.mask_kind(c) == "bool" and c.inputs["attn_mask"].ndim < c.inputs[
        "query"].ndim, {"attn_mask": "bool", "attn_mask shape": "(L, S)"}, "an (L, S) bool mask over batch and heads"),
    Regime("float mask", lambda c: N.mask_kind(c) == "float", {"attn_mask": "float", "attn_mask shape": "full"},
           "a float mask added to the scores, -inf excluding keys"),
    Regime("fully masked row", N.has_dead_sdpa_row, {"attn_mask": "bool", "attn_mask.fully masked row": True},
           "a query attending no key: a zero output row and zero gradients"),
    Regime("grouped-query attention", lambda c: c.params["enable_gqa"], {"enable_gqa": True, "key heads": 2},
           "two key/value heads serving 4 or 6 query heads"),
    Regime("explicit scale", lambda c: c.params["scale"] == 0.125, {"scale": 0.125}, "scale = 1/8"),
    Regime("strided key", lambda c: c.layout("key").kind == "strided", {"layout.key": "strided",
                                                                         "layout.key.step[0]": 2},
           "a key read through steps in its leading dims (the last dim stays contiguous)"),
), notes=("scaled_dot_product_attention on the CPU flash kernel, forced with torch.nn.attention.sdpa_kernel; "
          "conventions as for the math kernel. Cases are those the CPU flash kernel accepts (otherwise torch "
          "raises 'No available kernel'): 4-d (N, H, L, E) inputs, Ev = E, the last dim contiguous, no dropout.")))

declare(multihead_attention(regimes=(
    Regime("self-attention", lambda c: "key" not in c.inputs, {"attention": "self"},
           "query is key is value: one input, its gradient the sum of the three roles"),
    Regime("kdim/vdim", lambda c: "q_proj_weight" in c.inputs, {"attention": "cross", "kdim": 3, "vdim": 5},
           "separate q/k/v projection weights"),
    Regime("bias_k/bias_v and zero attention", lambda c: c.params["add_bias_kv"] and c.params["add_zero_attn"],
           {"add_bias_kv": True, "add_zero_attn": True}, "one more key and value from bias_k/bias_v, one of zeros"),
    Regime("bias=False", lambda c: not c.params["bias"], {"bias": False}, "no in/out projection biases"),
    Regime("batch_first", lambda c: c.params["batch_first"] and c.inputs["query"].ndim == 3,
           {"batch_first": True, "unbatched": False}, "(N, L, E) inputs"),
    Regime("unbatched", lambda c: c.inputs["query"].ndim == 2, {"unbatched": True}, "(L, E) inputs"),
    Regime("float key_padding_mask", lambda c: N.mask_kind(c, "key_padding_mask") == "float",
           {"key_padding_mask": "float"}, "a float padding mask added to the scores"),
    Regime("key padding only", lambda c: "key_padding_mask" in c.inputs and "attn_mask" not in c.inputs,
           {"key_padding_mask": "bool", "attn_mask": "none", "is_causal": False}, "a padding mask alone"),
    Regime("3-d attn_mask", lambda c: N.mask_kind(c) != "none" and c.inputs["attn_mask"].ndim == 3,
           {"is_causal": False, "attn_mask dims": 3, "attn_mask": "bool"}, "a mask per batch entry and head"),
    Regime("is_causal", lambda c: c.forward_kwargs.get("is_causal", False), {"is_causal": True},
           "the causal hint with the causal mask it hints at"),
    Regime("weights per head", lambda c: c.forward_kwargs["need_weights"] and not c.forward_kwargs[
        "average_attn_weights"], {"need_weights": True, "average_attn_weights": False}, "(N, H, L, S) weights"),
    Regime("no weights", lambda c: not c.forward_kwargs["need_weights"], {"need_weights": False},
           "the sdpa path"),
    Regime("dropout in training", N.is_random_attention, {"train": True, "dropout": 0.25},
           "dropout on the attention weights: masks replayed from torch's generator"),
    Regime("fully masked query", N.has_fully_masked_query,
           {"key_padding_mask": "bool", "key_padding_mask.fully masked row": True, "unbatched": False},
           "a batch entry whose keys are all padding"),
), notes=("Torch's functional form (sequence first): in-projection (packed in_proj_weight, or q/k/v_proj_weight "
          "with kdim/vdim), bias_k/bias_v appended as one more key and value, add_zero_attn appending a zero key "
          "and value, the heads, the masks, attention with scale 1/sqrt(head_dim), the out-projection. "
          "Masks follow MultiheadAttention's convention: a bool mask is True where attention is NOT allowed "
          "(-inf); float masks are added; key_padding_mask (N, S) and attn_mask (L, S) or (N·H, L, S) are added "
          "together, padded with 'attend' for the appended keys. is_causal is a hint that attn_mask is causal: "
          "the reference uses the mask given. The returned weights are the dropped-out weights, averaged over "
          "heads by default. A fully masked query is NaN with need_weights (a plain softmax) and a zero attention "
          "row without (sdpa's convention). self-attention passes one tensor as query, key and value. Dropout: "
          "masks replayed from torch's generator (at::dropout over (N·H, L, S') in the input's dtype with "
          "weights, over (N, H, L, S') in sdpa's math kernel without). Every input and parameter gradient, and the "
          "weights, compared.")))

declare(multihead_attention(fast=True, regimes=(
    Regime("masks", lambda c: "key_padding_mask" in c.inputs and "attn_mask" in c.inputs,
           {"key_padding_mask": "bool", "attn_mask": "bool", "is_causal": False}, "both masks merged"),
    Regime("key padding only", lambda c: "key_padding_mask" in c.inputs and "attn_mask" not in c.inputs,
           {"key_padding_mask": "bool", "attn_mask": "none", "is_causal": False}, "a padding mask alone"),
    Regime("no weights", lambda c: not c.forward_kwargs["need_weights"], {"need_weights": False},
           "the native kernel without weights"),
    Regime("weights per head", lambda c: c.forward_kwargs["need_weights"] and not c.forward_kwargs[
        "average_attn_weights"], {"need_weights": True, "average_attn_weights": False}, "(N, H, L, S) weights"),
    Regime("fully masked query", N.has_fully_masked_query,
           {"key_padding_mask": "bool", "key_padding_mask.fully masked row": True},
           "a batch entry whose keys are all padding"),
), notes=("MultiheadAttention's eval fast path (torch._native_multi_head_attention): forward only (torch takes "
          "it only without gradients), eval, batch_first, batched self-attention, even heads, bias, no "
          "bias_kv/zero attention, bool masks. Same semantics as the autograd path.")))
