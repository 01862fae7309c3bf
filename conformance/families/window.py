"""The window-operator template: convolution, pooling and Fold/Unfold declared as data.

``window(name, kind, dims, notes=...)`` returns the ``LayerSpec`` of one declaration. The kind
(a fact of the declaration) selects the machinery: the case strategy and the invalid cases
(``conformance.strategies.conv`` / ``pooling`` / ``window``), the reference, built from the
registered ``reference.functional`` forward and VJP (a module's checks and its padding_mode
composed around them), the tolerance policy and comparators (``conformance.numerics.window``),
the corner regimes, and how torch.nn is called.

Kinds: ``direct`` and ``transposed`` convolutions; ``max``, ``avg``, ``lp``, ``unpool``,
``adaptive-max``, ``adaptive-avg`` and ``fractional`` pooling (``drawn=True``: torch draws the
samples, judged through ``Randomness``); ``fold`` and ``unfold``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backends.base import Case, Result
from conformance.numerics import window as N
from conformance.numerics import window_randomness as NR
from conformance.spec import LayerSpec, Pullback, Randomness, Regime, Tolerance, TorchMapping, arg
from conformance.strategies import conv as conv_cases
from conformance.strategies import pooling as pool_cases
from conformance.strategies import pooling_regimes as pool_regimes
from conformance.strategies import window as fold_cases
from reference import conv as conv_ref
from reference import functional as RF

# ---------------------------------------------------------------------------------------------
# References: (Result, pullback) from the registered functional forward and VJP
# ---------------------------------------------------------------------------------------------


def _call(name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], wrt: Callable[[dict], dict] = dict
          ) -> tuple[Any, Pullback]:
    """``RF.<name>(*args, **kwargs)`` and the pullback of its float output's cotangent
    (``wrt`` maps the VJP's gradients to the case's input names)."""
    out = getattr(RF, name)(*args, **kwargs)

    def pullback(cotangents: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return wrt(RF.vjp(name, *args, cotangent=cotangents["output"], **kwargs))

    return out, pullback


def conv_reference(case: Case) -> tuple[Result, Pullback]:
    """torch.nn.Conv{nd}d: the constructor's checks, F.pad with a non-zeros padding_mode, then
    conv{nd}d; ConvTranspose{nd}d: the output padding an output_size selects, then conv_transpose{nd}d."""
    p, nd = case.params, N.spatial_dims(case)
    transposed = N.is_transposed(case)
    N.check_conv_constructor(case.op, p, transposed)
    x, w, b = case.inputs["input"], case.inputs["weight"], case.inputs.get("bias")
    if transposed:
        output_padding = p["output_padding"]
        size = case.forward_kwargs.get("output_size")
        if size is not None:
            per = [conv_ref.per_dim(p[k], nd, k, 0) for k in ("stride", "padding", "dilation")]
            output_padding = conv_ref.output_padding_for_size(size, x.shape[-nd:], x.ndim == nd + 2,
                                                              w.shape[2:], *per[:2], per[2])
        kwargs = dict(stride=p["stride"], padding=p["padding"], output_padding=output_padding, groups=p["groups"],
                      dilation=p["dilation"])
        out, pullback = _call(f"conv_transpose{nd}d", (x, w, b), kwargs)
        return Result(outputs={"output": out}), pullback
    mode = p["padding_mode"]
    kwargs = dict(stride=p["stride"], padding=p["padding"], dilation=p["dilation"], groups=p["groups"])
    if mode == "zeros":
        out, pullback = _call(f"conv{nd}d", (x, w, b), kwargs)
        return Result(outputs={"output": out}), pullback
    amounts = conv_ref.module_padding(p["padding"], w.shape[2:], p["stride"], p["dilation"])
    padded = RF.pad(x, amounts, mode)

    def unpad(grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        grads["input"] = RF.vjp("pad", x, amounts, mode, cotangent=grads["input"])["input"]
        return grads

    out, pullback = _call(f"conv{nd}d", (padded, w, b), {**kwargs, "padding": 0}, unpad)
    return Result(outputs={"output": out}), pullback


def _selection(case: Case, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Result, Pullback]:
    """A max-type pooling: the output, the indices when the module returns them, and the
    reference's arg-max (``meta``, batched) for the comparators."""
    (out, idx), pullback = _call(name, args, {**kwargs, "return_indices": True})
    result = Result(outputs={"output": out}, meta={"argmax": N.batched_like(case, idx)})
    if case.params.get("return_indices"):
        result.outputs["indices"] = idx
    return result, pullback


def _sliding_kwargs(case: Case, *names: str) -> dict[str, Any]:
    g = N.sliding(case)
    values = {"kernel_size": g.kernel, "stride": g.stride, "padding": g.padding, "dilation": g.dilation,
              "ceil_mode": g.ceil_mode}
    return {name: values[name] for name in names}


def max_pool_reference(case: Case) -> tuple[Result, Pullback]:
    kwargs = _sliding_kwargs(case, "kernel_size", "stride", "padding", "dilation", "ceil_mode")
    return _selection(case, f"max_pool{N.spatial_dims(case)}d", (case.inputs["input"],), kwargs)


def avg_pool_reference(case: Case) -> tuple[Result, Pullback]:
    p, nd = case.params, N.spatial_dims(case)
    kwargs = {**_sliding_kwargs(case, "kernel_size", "stride", "padding", "ceil_mode"),
              "count_include_pad": bool(p.get("count_include_pad", True))}
    if nd > 1:
        kwargs["divisor_override"] = p.get("divisor_override")
    out, pullback = _call(f"avg_pool{nd}d", (case.inputs["input"],), kwargs)
    return Result(outputs={"output": out}), pullback


def lp_pool_reference(case: Case) -> tuple[Result, Pullback]:
    kwargs = _sliding_kwargs(case, "stride", "ceil_mode")
    args = (case.inputs["input"], float(case.params["norm_type"]), N.sliding(case).kernel)
    out, pullback = _call(f"lp_pool{N.spatial_dims(case)}d", args, kwargs)
    return Result(outputs={"output": out}), pullback


def adaptive_max_reference(case: Case) -> tuple[Result, Pullback]:
    return _selection(case, f"adaptive_max_pool{N.spatial_dims(case)}d",
                      (case.inputs["input"], case.params["output_size"]), {})


def adaptive_avg_reference(case: Case) -> tuple[Result, Pullback]:
    out, pullback = _call(f"adaptive_avg_pool{N.spatial_dims(case)}d",
                          (case.inputs["input"], case.params["output_size"]), {})
    return Result(outputs={"output": out}), pullback


def fractional_reference(case: Case) -> tuple[Result, Pullback]:
    """Fractional max pooling given its samples (an input, or the backend's reported choice); the
    module's checks (exactly one of output_size and output_ratio, the ratio in (0, 1)) first."""
    x = case.inputs["input"]
    size = N.fractional_output(case, N.batched_input(case))
    samples = N.fractional_samples(case)
    kwargs = {"output_size": size, "_random_samples": samples, "interval_round": N.round_fn(case)}
    result, pullback = _selection(case, f"fractional_max_pool{N.spatial_dims(case)}d",
                                  (x, case.params["kernel_size"]), kwargs)
    if "_random_samples" in case.choices:
        result.choices["_random_samples"] = samples
    return result, pullback


def unpool_reference(case: Case) -> tuple[Result, Pullback]:
    kernel, stride, padding = N.unpool_geometry(case)
    args = (case.inputs["input"], case.inputs["indices"], kernel)
    kwargs = {"stride": stride, "padding": padding, "output_size": case.forward_kwargs.get("output_size")}
    out, pullback = _call(f"max_unpool{N.spatial_dims(case)}d", args, kwargs)
    return Result(outputs={"output": out}), pullback


def fold_reference(case: Case) -> tuple[Result, Pullback]:
    p = case.params
    geometry = {k: p[k] for k in ("kernel_size", "dilation", "padding", "stride")}
    if N.pool_kind(case) == "fold":
        out, pullback = _call("fold", (case.inputs["input"], p["output_size"]), geometry)
    else:
        out, pullback = _call("unfold", (case.inputs["input"],), geometry)
    return Result(outputs={"output": out}), pullback


# ---------------------------------------------------------------------------------------------
# The template
# ---------------------------------------------------------------------------------------------


def selection_outputs(case: Case) -> tuple[str, ...]:
    """A max-type module returns (output, indices) when return_indices is set, else the output."""
    return ("output", "indices") if case.params.get("return_indices") else ("output",)


@dataclass(frozen=True)
class Kind:
    """The machinery of one kind of window operator."""

    family: str
    cases: Callable[[str, int], Any]
    invalid: Callable[[str, int], Any]
    reference: Callable[[Case], tuple[Result, Pullback]]
    tolerance: Tolerance | Mapping[str, Tolerance]
    regimes: Callable[[int], tuple[Regime, ...]]
    comparators: Mapping[str, Any] = field(default_factory=dict)
    smooth_at: Callable[[Case], bool] | None = None
    outputs: Any = ("output",)
    args: tuple[str, ...] = ("input",)
    parameters: tuple[str, ...] = ()
    adjoint_at: Callable[[Case], bool] | None = None  # LayerSpec.adjoint_at


KINDS: dict[str, Kind] = {
    "direct": Kind("convolution", lambda op, nd: conv_cases.conv_cases(op, nd, False),
                   lambda op, nd: conv_cases.conv_invalid(op, nd, False), conv_reference, N.CONV_TOLERANCE,
                   conv_cases.conv_regimes, parameters=("weight", "bias")),
    "transposed": Kind("convolution", lambda op, nd: conv_cases.conv_cases(op, nd, True),
                       lambda op, nd: conv_cases.conv_invalid(op, nd, True), conv_reference, N.CONV_TOLERANCE,
                       conv_cases.transposed_regimes, parameters=("weight", "bias")),
    "max": Kind("pooling", pool_cases.max_pool_cases, lambda op, nd: pool_cases.sliding_invalid(op, nd, "max"),
                max_pool_reference, N.SELECTION_TOLERANCE, pool_regimes.max_pool_regimes, N.SELECTION_COMPARATORS,
                N.no_ties, selection_outputs),
    "avg": Kind("pooling", pool_cases.avg_pool_cases, lambda op, nd: pool_cases.sliding_invalid(op, nd, "avg"),
                avg_pool_reference, N.AVG_TOLERANCE, pool_regimes.avg_pool_regimes),
    "lp": Kind("pooling", pool_cases.lp_pool_cases, lambda op, nd: pool_cases.sliding_invalid(op, nd, "lp"),
               lp_pool_reference, N.LP_TOLERANCE, pool_regimes.lp_pool_regimes, smooth_at=N.lp_smooth),
    "unpool": Kind("pooling", pool_cases.unpool_cases, pool_cases.unpool_invalid, unpool_reference,
                   Tolerance(magnitude="ref", exact="always"), pool_regimes.unpool_regimes,
                   {"output": N.unpool_output_comparator}, N.unpool_smooth, args=("input", "indices"),
                   adjoint_at=N.unpool_smooth),
    "adaptive-max": Kind("pooling", lambda op, nd: pool_cases.adaptive_cases(op, nd, True),
                         pool_cases.adaptive_invalid, adaptive_max_reference, N.SELECTION_TOLERANCE,
                         lambda nd: pool_regimes.adaptive_regimes(nd, selection=True), N.SELECTION_COMPARATORS,
                         N.no_ties, selection_outputs),
    "adaptive-avg": Kind("pooling", lambda op, nd: pool_cases.adaptive_cases(op, nd, False),
                         pool_cases.adaptive_invalid, adaptive_avg_reference, N.ADAPTIVE_AVG_TOLERANCE,
                         lambda nd: pool_regimes.adaptive_regimes(nd, selection=False)),
    "fractional": Kind("pooling", lambda op, nd: pool_cases.fractional_cases(op, nd, drawn=False),
                       lambda op, nd: pool_cases.fractional_invalid(op, nd, drawn=False), fractional_reference,
                       N.SELECTION_TOLERANCE, lambda nd: pool_regimes.fractional_regimes(nd, drawn=False),
                       N.SELECTION_COMPARATORS, N.no_ties, selection_outputs),
    "fractional[drawn]": Kind("pooling", lambda op, nd: pool_cases.fractional_cases(op, nd, drawn=True),
                              lambda op, nd: pool_cases.fractional_invalid(op, nd, drawn=True),
                              fractional_reference, N.SELECTION_TOLERANCE,
                              lambda nd: pool_regimes.fractional_regimes(nd, drawn=True), N.SELECTION_COMPARATORS,
                              N.no_ties, selection_outputs),
    "fold": Kind("shape", lambda op, nd: fold_cases.fold_cases(op), lambda op, nd: fold_cases.fold_invalid(op),
                 fold_reference, {"output": N.FOLD_SUM, "grad.input": N.COPY},
                 lambda nd: fold_cases.fold_regimes(image_input=False), {"grad.input": N.copy_comparator}),
    "unfold": Kind("shape", lambda op, nd: fold_cases.unfold_cases(op), lambda op, nd: fold_cases.unfold_invalid(op),
                   fold_reference, {"output": N.COPY, "grad.input": N.FOLD_SUM},
                   lambda nd: fold_cases.fold_regimes(image_input=True), {"output": N.copy_comparator}),
}

FRACTIONAL_RANDOMNESS = Randomness(choices={"_random_samples": NR.fractional_sample_rule},
                                   sample=NR.draw_fractional_samples, check=NR.check_fractional_samples,
                                   deterministic=lambda case: False)


def window(name: str, kind: str, dims: int, *, notes: str, variant: str = "") -> LayerSpec:
    """The declaration of window operator ``name`` (the torch.nn class) of ``kind`` with ``dims``
    spatial dims. FractionalMaxPool: ``variant="drawn"`` lets torch draw the samples (judged
    through ``Randomness``); otherwise the samples are an input of the case (``_random_samples``)."""
    drawn = kind == "fractional" and variant == "drawn"
    machinery = KINDS["fractional[drawn]" if drawn else kind]
    ctor = None
    if kind == "fractional" and not drawn:
        def ctor(case: Case) -> dict[str, Any]:
            return {**case.params, "_random_samples": arg("_random_samples")}
    return LayerSpec(
        name=name, family=machinery.family, dims=dims, kind=kind, variant=variant,
        regimes=machinery.regimes(dims), cases=machinery.cases(name, dims),
        reference=machinery.reference,
        # (the samples are a buffer of the module: a transform swaps them through functional_call; as a
        # constructor argument only, vmap's slices would all read the case's own samples)
        torch=TorchMapping(f"torch.nn.{name}", ctor=ctor, parameters=machinery.parameters, args=machinery.args,
                           outputs=machinery.outputs, buffers=("_random_samples",) if ctor is not None else ()),
        tolerance=machinery.tolerance, comparators=machinery.comparators,
        invalid_cases=machinery.invalid(name, dims), smooth_at=machinery.smooth_at,
        adjoint_at=machinery.adjoint_at, randomness=FRACTIONAL_RANDOMNESS if drawn else None, notes=notes,
        second_order_error=N.lp_second_order_error if kind == "lp" else None,
    )
