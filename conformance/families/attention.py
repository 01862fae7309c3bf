"""Templates of the attention family: data in, ``LayerSpec`` out.

- ``sdpa(kernel)``: torch.nn.functional.scaled_dot_product_attention on one CPU kernel ("math" or
  "flash"), chosen with ``torch.nn.attention.sdpa_kernel`` around the call, so that a bug is
  attributed to its kernel (the call tree wraps the function with the context manager used as a
  decorator: ``operator.call(sdpa_kernel(SDPBackend(k))(F.scaled_dot_product_attention), q, k, v, ...)``).
- ``multihead_attention(fast=...)``: nn.MultiheadAttention, through autograd (train and eval), or
  its eval fast path (forward only: torch takes it only without gradients).
- ``transformer(name, fast=..., nested=...)``: the five transformer modules, through autograd, or
  their eval fast paths (forward only), or TransformerEncoder's nested-tensor path.

Every declaration shares the reference glue (``conformance.numerics.attention``), the analysed
tolerance (the Bounded twin of the call: ``reference.attention_errors``) and the randomness of its
dropouts (masks replayed from torch's generator, judged through the conditional reference and by
their statistics).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from backends.base import Case, Result
from conformance import strategies as S
from conformance.numerics import attention as N
from conformance.numerics.attention_bounds import attention_errors
from conformance.spec import LayerSpec, Randomness, Regime, TorchMapping, arg, scaffold_node
from conformance.strategies import attention as SA
from conformance.tolerance import analysed_tolerance
from reference import attention as RA

TOLERANCE = analysed_tolerance(attention_errors, N.reduction_length)
KERNELS = {"math": 0, "flash": 1}  # torch.nn.attention.SDPBackend values


def _randomness(deterministic: Callable[[Case], bool]) -> Randomness:
    return Randomness(choices={"dropout": N.random_rule}, sample=N.sample_masks, check=N.check_masks,
                      deterministic=deterministic)


def _mask_kwargs(case: Case, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: arg(name) for name in names if name in case.inputs}


# -- scaled_dot_product_attention ---------------------------------------------------------------------


def _sdpa_reference(case: Case) -> tuple[Result, Any]:
    args = N.sdpa_arguments(case)
    att = RA.sdpa_forward(**args)
    result = Result(outputs={"output": att.out})
    if args["dropout_p"] > 0:
        result.choices["dropout"] = N.used_choice(case)

    def pullback(cotangents: dict) -> dict:
        return dict(zip(("query", "key", "value"), att.pullback(cotangents["output"])))

    return result, pullback


def _kernel_wrapped_sdpa(kernel: str) -> dict[str, Any]:
    """F.scaled_dot_product_attention decorated by ``sdpa_kernel(SDPBackend(kernel))``: scaffolding, built
    as plain Python (``scaffold_node``), never by the backend under test."""
    backend = scaffold_node("torch.nn.attention.SDPBackend", KERNELS[kernel])
    function = scaffold_node("builtins.getattr",
                             scaffold_node("importlib.import_module", {"literal": "torch.nn.functional"}),
                             {"literal": "scaled_dot_product_attention"})
    return scaffold_node("operator.call", scaffold_node("torch.nn.attention.sdpa_kernel", backend), function)


def sdpa(kernel: str, *, regimes: tuple[Regime, ...] = (), notes: str = "") -> LayerSpec:
    """scaled_dot_product_attention on ``kernel`` (variant of the same entry)."""
    return LayerSpec(
        name="scaled_dot_product_attention", catalogue="torch.nn.functional.scaled_dot_product_attention",
        family="attention", kind="function", variant=kernel,
        cases=S.case_strategy(lambda d, dtype: SA.sdpa_case(d, dtype, kernel)),
        invalid_cases=S.case_strategy(lambda d, dtype: SA.sdpa_invalid_case(d, dtype, kernel)),
        reference=_sdpa_reference,
        torch=TorchMapping(
            "operator.call", kind="function",
            args=lambda case: [_kernel_wrapped_sdpa(kernel), "query", "key", "value"],
            kwargs=lambda case: {**_mask_kwargs(case, ("attn_mask",)),
                                 **{k: case.params[k] for k in ("dropout_p", "is_causal", "scale", "enable_gqa")}}),
        # torch's CPU flash kernel takes no dropout: its cases are never random
        tolerance=TOLERANCE,
        randomness=None if kernel == "flash" else _randomness(lambda case: case.params["dropout_p"] == 0),
        regimes=regimes, notes=notes)


# -- MultiheadAttention ---------------------------------------------------------------------------------


def _mha_reference(case: Case) -> tuple[Result, Any]:
    args = N.mha_arguments(case)
    forward = RA.multi_head_attention(**args)
    bf = case.params["batch_first"]
    result = Result(outputs={"output": N.seq_first(forward.output, bf)})
    if forward.weights is not None:
        result.outputs["weights"] = forward.weights
    if N.is_random_attention(case):
        result.choices["dropout"] = N.used_choice(case)

    def pullback(cotangents: dict) -> dict:
        grads = forward.pullback(N.seq_first(cotangents["output"], bf), cotangents.get("weights"))
        out = {RA.MHA_GRAD_NAMES[k]: v for k, v in grads.items() if k in RA.MHA_GRAD_NAMES}
        g_q, g_k, g_v = (N.seq_first(grads[n], bf) for n in ("query", "key", "value"))
        if "key" in case.inputs:
            out.update(query=g_q, key=g_k, value=g_v)
        else:  # self-attention: query is key is value
            out["query"] = g_q + g_k + g_v
        return out

    return result, pullback


def _mha_parameters(case: Case) -> list[str]:
    return [n for n in case.inputs if n not in ("query", "key", "value", "key_padding_mask", "attn_mask")]


def multihead_attention(*, fast: bool = False, regimes: tuple[Regime, ...] = (), notes: str = "") -> LayerSpec:
    """nn.MultiheadAttention through autograd, or (``fast``) its eval fast path, forward only."""
    return LayerSpec(
        name="MultiheadAttention", family="attention", kind="module", variant="fast path" if fast else "",
        cases=S.case_strategy(lambda d, dtype: SA.mha_case(d, dtype, fast)),
        invalid_cases=None if fast else S.case_strategy(SA.mha_invalid_case),
        reference=_mha_reference,
        torch=TorchMapping(
            "torch.nn.MultiheadAttention", parameters=_mha_parameters,
            args=lambda case: ["query", "key", "value"] if "key" in case.inputs else ["query"] * 3,
            kwargs=lambda case: {**_mask_kwargs(case, ("key_padding_mask", "attn_mask")), **case.forward_kwargs},
            outputs=("output", "weights")),
        tolerance=TOLERANCE, randomness=None if fast else _randomness(lambda c: not N.is_random_attention(c)),
        backward=not fast, regimes=regimes, notes=notes)


# -- the transformer modules -------------------------------------------------------------------------------

INPUTS = {"TransformerEncoderLayer": ("src",), "TransformerEncoder": ("src",),
          "TransformerDecoderLayer": ("tgt", "memory"), "TransformerDecoder": ("tgt", "memory"),
          "Transformer": ("src", "tgt")}
MASKS = ("src_mask", "mask", "tgt_mask", "memory_mask", "src_key_padding_mask", "tgt_key_padding_mask",
         "memory_key_padding_mask")


def _transformer_reference(case: Case) -> tuple[Result, Any]:
    output, back, names = N.transformer_call(case)
    result = Result(outputs={"output": output})
    if N.is_random_transformer(case):
        result.choices["dropout"] = N.used_choice(case)

    def pullback(cotangents: dict) -> dict:
        *g_inputs, g_params = back(cotangents["output"])
        return {**dict(zip(names, g_inputs)), **g_params}

    return result, pullback


def _activation(case: Case) -> Any:
    name = case.params["activation"]
    if name in SA.MODULE_ACTIVATIONS:
        target, init = SA.MODULE_ACTIVATIONS[name]
        return {"module": {"target": target, "init": init}}
    return name


def _layer_init(case: Case) -> dict[str, Any]:
    p = case.params
    return {"d_model": p["d_model"], "nhead": p["nhead"], "dim_feedforward": p["dim_feedforward"],
            "dropout": p["dropout"], "activation": _activation(case), "layer_norm_eps": p["layer_norm_eps"],
            "batch_first": p["batch_first"], "norm_first": p["norm_first"], "bias": p["bias"]}


def _norm(case: Case) -> dict[str, Any]:
    p = case.params
    return {"module": {"target": "torch.nn.LayerNorm",
                       "init": {"normalized_shape": p["d_model"], "eps": p["layer_norm_eps"], "bias": p["bias"]}}}


def _ctor(case: Case) -> dict[str, Any]:
    p, op = case.params, case.op
    if op in ("TransformerEncoderLayer", "TransformerDecoderLayer"):
        return _layer_init(case)
    if op in ("TransformerEncoder", "TransformerDecoder"):
        layer = {"module": {"target": f"torch.nn.{op}Layer", "init": _layer_init(case)}}
        init = {"encoder_layer" if op == "TransformerEncoder" else "decoder_layer": layer,
                "num_layers": p["num_layers"], "norm": _norm(case) if p["norm"] else None}
        if op == "TransformerEncoder":
            init.update(enable_nested_tensor=p["enable_nested_tensor"], mask_check=p["mask_check"])
        return init
    init = {k: v for k, v in _layer_init(case).items()}
    init.update(num_encoder_layers=p["num_encoder_layers"], num_decoder_layers=p["num_decoder_layers"])
    if p["custom_encoder"]:
        layer = {"module": {"target": "torch.nn.TransformerEncoderLayer", "init": _layer_init(case)}}
        init["custom_encoder"] = {"module": {"target": "torch.nn.TransformerEncoder", "init": {
            "encoder_layer": layer, "num_layers": p["num_encoder_layers"],
            "norm": _norm(case) if p["encoder_norm"] else None}}}
    return init


def _transformer_parameters(case: Case) -> list[str]:
    return [n for n in case.inputs if n not in INPUTS[case.op] and n not in MASKS]


def transformer(name: str, *, fast: bool = False, nested: bool = False, regimes: tuple[Regime, ...] = (),
                notes: str = "") -> LayerSpec:
    """A transformer module through autograd (train and eval), or (``fast``) its eval fast path,
    forward only, or (``nested``) TransformerEncoder's nested-tensor path. Through autograd, the vjp2
    judge also gets the layer norms' tangent rounding (``N.layer_norm_tangent_error``)."""
    variant = "nested" if nested else "fast path" if fast else ""
    return LayerSpec(
        name=name, family="attention", kind="module", variant=variant,
        cases=S.case_strategy(lambda d, dtype: SA.transformer_case(d, dtype, name, fast, nested)),
        invalid_cases=None if fast or nested else S.case_strategy(
            lambda d, dtype: SA.transformer_invalid_case(d, dtype, name)),
        reference=_transformer_reference,
        torch=TorchMapping(f"torch.nn.{name}", ctor=_ctor, parameters=_transformer_parameters,
                           args=lambda case: list(INPUTS[case.op]),
                           kwargs=lambda case: {**_mask_kwargs(case, MASKS), **case.forward_kwargs}),
        tolerance=TOLERANCE, randomness=None if fast or nested else _randomness(
            lambda c: not N.is_random_transformer(c)),
        backward=not (fast or nested), regimes=regimes, notes=notes,
        second_order_error=None if fast or nested else N.layer_norm_tangent_error)


def transformer_regimes(name: str, stack: bool = False) -> tuple[Regime, ...]:
    """The regimes every autograd-path transformer declaration shares (``stack``: a stack of layers,
    which adds the two-layer regime); ``name`` picks the first input (src or tgt)."""
    first = "src" if name in ("TransformerEncoderLayer", "TransformerEncoder", "Transformer") else "tgt"
    return (
        Regime("norm_first", lambda c: c.params["norm_first"], {"norm_first": True}, "pre-norm residual blocks"),
        Regime("batch_first", lambda c: c.params["batch_first"] and c.inputs[first].ndim == 3,
               {"batch_first": True, "unbatched": False}, "(N, L, E) inputs"),
        Regime("unbatched", lambda c: c.inputs[first].ndim == 2, {"unbatched": True}, "(L, E) inputs"),
        Regime("bias=False", lambda c: not c.params["bias"], {"bias": False}, "no biases (LayerNorm's included)"),
        Regime("gelu", lambda c: c.params["activation"] == "gelu", {"activation": "gelu"}, "the exact GELU"),
        Regime("callable activation", lambda c: c.params["activation"] == "GELU(tanh)",
               {"activation": "GELU(tanh)"}, "activation=nn.GELU(approximate='tanh'), a module"),
        Regime("dropout in training", N.is_random_transformer, {"train": True, "dropout": 0.25},
               "every dropout's mask replayed from torch's generator"),
        Regime("eval", lambda c: not c.train, {"train": False, "dropout": 0.5}, "dropout off"),
        Regime("float masks", lambda c: "float" in (N.mask_kind(c, m) for m in N.MASK_NAMES),
               {f"{m}": "float" for m in N.MASK_NAMES}, "float masks added to the scores"),
        Regime("layer_norm_eps", lambda c: c.params["layer_norm_eps"] == 0.1, {"layer_norm_eps": 0.1}, "eps = 0.1"),
    ) + ((Regime("two layers", N.has_two_layers, {"num_layers": 2, "num_encoder_layers": 2, "num_decoder_layers": 2},
                 "each layer with its own parameters"),) if stack else ())
