"""The attention family's analysed tolerance: the first-order bounds of every compared tensor from
the Bounded twin of the case's call (``reference.attention_errors``), forward once per case
(``analysis_cache``) and pulled back for each cotangent asked."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from backends.base import Case, Result
from conformance.dtypes import DTYPES
from conformance.numerics import analysis_cache as AC
from conformance.numerics.attention import _seq_first, mha_arguments, sdpa_arguments, transformer_call
from reference import attention as RA
from reference import attention_errors as AE


def attention_errors(case: Case, result: Result) -> dict[str, np.ndarray]:
    """The first-order bounds (units of u) of every compared tensor: the Bounded twin of the case's
    call (``reference.attention_errors``), forward and pullback with the case's cotangents. In
    float64 the reference's own rounding is of the same size and is added (twice the bound).
    Evaluated once per case and result (the tolerance engine asks once per compared tensor)."""
    cached = result.meta.get("attention_errors")
    if cached is not None and cached[0] is case:
        return cached[1]
    bounds = AC.forward(AC.case_key(case), lambda: _analysis(case))(case.cotangents)
    result.meta["attention_errors"] = (case, bounds)
    return bounds


def _analysis(case: Case) -> AC.Analysis:
    """The forward error analysis of the case's call, as a function of the cotangents."""
    u = DTYPES[case.dtype].unit_roundoff
    factor = 2.0 if case.dtype == "float64" else 1.0
    out: dict[str, np.ndarray] = {}
    with AE.rounding(u), np.errstate(all="ignore"):
        if case.op == "scaled_dot_product_attention":
            att = AE.sdpa(**sdpa_arguments(case))
            out["output"] = att.out.e

            def back(g: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
                grads = att.pullback(g["output"])
                return {f"grad.{n}": b.e for n, b in zip(("query", "key", "value"), grads)}
        elif case.op == "MultiheadAttention":
            args = mha_arguments(case)
            params = {k: case.inputs[k] for k in case.inputs if k in RA.MHA_GRAD_NAMES.values()}
            output, weights, pullback = AE.multi_head_attention(
                args["query"], args["key"], args["value"], args["num_heads"], params, args["add_zero_attn"],
                args["dropout_p"], args["training"], args["key_padding_mask"], args["need_weights"],
                args["attn_mask"], args["average_attn_weights"], args["dropout_mask"])
            bf = case.params["batch_first"]
            out["output"] = _seq_first(output, bf).e
            if weights is not None:
                out["weights"] = weights.e

            def back(g: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
                return _mha_grad_bounds(case, pullback(_seq_first(g["output"], bf), g.get("weights")))
        else:
            output, pull, names = transformer_call(case, AE.BoundedPieces(u))
            out["output"] = output.e

            def back(g: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
                *g_inputs, g_params = pull(g["output"])
                grads = {f"grad.{n}": b.e for n, b in zip(names, g_inputs)}
                grads.update({f"grad.{n}": b.e for n, b in g_params.items()})
                return grads

    def bounds(cotangents: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        total = dict(out)
        if cotangents and "output" in cotangents:
            with AE.rounding(u), np.errstate(all="ignore"):
                total.update(back(cotangents))
        return {k: factor * v for k, v in total.items()}

    return bounds


def _mha_grad_bounds(case: Case, grads: Mapping[str, Any]) -> dict[str, np.ndarray]:
    bf = case.params["batch_first"]
    out = {f"grad.{k}": v.e for k, v in grads.items() if k not in ("query", "key", "value")}
    if "key" in case.inputs:
        out.update({f"grad.{n}": _seq_first(grads[n], bf).e for n in ("query", "key", "value")})
    else:
        out["grad.query"] = (_seq_first(grads["query"], bf) + _seq_first(grads["key"], bf)
                             + _seq_first(grads["value"], bf)).e
    return out
