"""Value predicates and models of the onnxruntime backend's known entries for torch.nn.init, torch.nn.utils and
the containers and shape layers (``conformance/known/onnxruntime_utils.toml``).

NumPy only (``backends`` imports nothing of ``conformance``): each predicate takes the ``Case``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from backends.base import Case
from backends.torch_compile import runs_dynamic_graph

_NARROW = ("float16", "bfloat16")


def _round_bfloat16(x: np.ndarray) -> np.ndarray:
    """float32 values rounded to bfloat16 (round to nearest, ties to even; NaN kept), as float32."""
    x = np.asarray(x, dtype=np.float32)
    bits = x.view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).astype(np.uint32).view(np.float32)
    return np.where(np.isnan(x), x, rounded)


def _in_format(value: float, dtype: str) -> float:
    """``value`` rounded once to ``dtype`` (float64, float32, float16 or bfloat16), as a Python float."""
    with np.errstate(over="ignore"):
        if dtype == "float64":
            return float(value)
        if dtype == "float32":
            return float(np.float32(value))
        if dtype == "float16":
            return float(np.float16(value))
    return _bfloat16_once(float(value))


def _bfloat16_once(v: float) -> float:
    """``v`` rounded once to bfloat16 (nearest, ties to an even last mantissa bit; inf beyond the range)."""
    if not np.isfinite(v) or v == 0:
        return v
    bf_max = float(np.uint32(0x7F7F0000).view(np.float32))
    if abs(v) >= bf_max + 2.0 ** 119:  # at or beyond the midpoint between the largest value and 2^128
        return float(np.copysign(np.inf, v))
    f32 = np.float32(v)  # lies between the two bfloat16 neighbours of v (float32 rounding is monotone)
    low = int(f32.view(np.uint32)) & 0xFFFF0000
    cands = [np.uint32(b).view(np.float32) for b in (low, low + 0x10000) if b <= 0xFFFFFFFF]
    cands = [c for c in cands if np.isfinite(c)]
    # the nearest in exact float64 arithmetic; a tie goes to the even mantissa
    return float(min(cands, key=lambda c: (abs(float(c) - v), (int(c.view(np.uint32)) >> 16) & 1)))


def _fill_graph_lacks_kernel(case: Case) -> bool:
    """The exported constant_ graph of a bfloat16 tensor with a dim, exported with dynamic shapes: an Expand of
    the constant, which ONNX Runtime has no bfloat16 kernel for (the case is unsupported, not run)."""
    return case.dtype == "bfloat16" and runs_dynamic_graph(case) and np.ndim(case.inputs["tensor"]) > 0


def constant_float64_val_rounded_in_float32(case: Case) -> bool:
    """constant_ of a non-empty float64 tensor with a val that float32 does not hold (a fraction such as 0.1, a
    float64 subnormal, or a value beyond float32's range): the exported fill constant is float32's val."""
    val = case.params.get("val")
    if case.invalid or case.dtype != "float64" or not isinstance(val, float) or np.isnan(val):
        return False
    with np.errstate(over="ignore"):
        return np.size(case.inputs["tensor"]) > 0 and float(np.float32(val)) != val


def constant_through_float32_model(case: Case, reference: Any, got: Any) -> dict[str, np.ndarray]:
    """What the exported constant_ graph fills: val rounded to float32, then to the tensor's dtype."""
    with np.errstate(over="ignore"):
        value = np.float64(np.float32(case.params["val"]))
    shape = np.shape(case.inputs["tensor"])
    filled = np.full(shape, value, dtype=np.float64)
    return {"output": filled, "state.tensor": filled}


def constant_narrow_val_rounded_twice(case: Case) -> bool:
    """constant_ of a non-empty float16/bfloat16 tensor with a finite val whose rounding through float32 (two
    roundings) differs from its rounding to the format (one), on a graph ONNX Runtime runs."""
    val = case.params.get("val")
    if case.invalid or case.dtype not in _NARROW or not isinstance(val, float) or not np.isfinite(val):
        return False
    if np.size(case.inputs["tensor"]) == 0 or _fill_graph_lacks_kernel(case):
        return False
    once = _in_format(val, case.dtype)
    f32 = float(np.float32(val))
    twice = float(np.float16(f32)) if case.dtype == "float16" else float(_round_bfloat16(np.float32(f32)))
    return once != twice


def constant_overflowing_val_filled(case: Case) -> bool:
    """An invalid constant_ of a float32/float16/bfloat16 tensor with a finite val whose rounding to the format
    overflows, on a graph ONNX Runtime runs: the exported graph fills inf."""
    val = case.params.get("val")
    if not case.invalid or case.dtype == "float64" or not isinstance(val, float) or not np.isfinite(val):
        return False
    return not np.isfinite(_in_format(val, case.dtype)) and not _fill_graph_lacks_kernel(case)


def unflatten_empty_dim_literal_sizes_dynamic(case: Case) -> bool:
    """Unflatten of an empty dim into sizes given without -1 (so one of them is 0), exported with dynamic
    shapes: torch.onnx's capture does not assume the dim's size symbol is 0 and unflatten's check that the
    sizes multiply up to it fails."""
    if case.invalid or not runs_dynamic_graph(case):
        return False
    dim, sizes = case.params.get("dim"), case.params.get("unflattened_size")
    if not isinstance(dim, int) or not isinstance(sizes, (list, tuple)) or not all(isinstance(s, int) for s in sizes):
        return False
    shape = np.shape(case.inputs["input"])
    return len(shape) > 0 and shape[dim] == 0 and -1 not in sizes


def kaiming_normal_empty_dynamic(case: Case) -> bool:
    """kaiming_normal_ of an empty tensor exported with dynamic shapes: torch.onnx's capture cannot take eager
    torch's early return for a zero-element tensor, so the trace goes on to std = gain / sqrt(fan), which divides
    by zero when the fan of the chosen mode is 0, and otherwise to the in-place normal_ fill, which fails on an
    empty tensor with a dim of 2 or more (``backends.onnxruntime_known:normal_empty_dynamic``). With a generator
    (the [generator] variant) only the division by zero comes before the generator's own export failure
    (onnxruntime_utils.toml ort-dynamo-export-generator-argument)."""
    shape = np.shape(case.inputs["tensor"])
    if case.invalid or len(shape) < 2 or 0 not in shape or not runs_dynamic_graph(case):
        return False
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    fan = (shape[1] if case.params.get("mode", "fan_in") == "fan_in" else shape[0]) * receptive
    if case.variant == "generator":
        return fan == 0
    return case.variant == "" and (fan == 0 or max(shape) >= 2)


def spectral_norm_transposed_matvec(case: Case) -> bool:
    """spectral_norm in training mode with at least one power iteration on a weight matrix (the weight with
    ``dim`` first, flattened to 2-d: rows = its size along dim) of at least 2 rows and 2 columns: the iteration's
    v <- normalize(W^T u) is exported as Transpose + MatMul with a 1-d second operand, which ONNX Runtime's
    MatmulTransposeFusion turns into FusedMatMul(transA=1) that ignores transA (float32 and float64; float16 is not
    fused). A weight with one row or one column is transposed by a reshape, and comes out right."""
    if case.invalid or not case.train or int(case.params.get("n_power_iterations", 1)) < 1:
        return False
    if case.dtype not in ("float32", "float64"):
        return False
    shape = np.shape(case.inputs["parametrizations.weight.original"])
    dim = case.params.get("dim")
    if dim is None:
        dim = 1 if str(case.params.get("module", "")).startswith("ConvTranspose") else 0
    if len(shape) < 2 or not -len(shape) <= dim < len(shape):
        return False
    rows = shape[dim]
    cols = int(np.prod(shape)) // rows if rows else 0
    return rows >= 2 and cols >= 2


def pad_sequence_negative_zero_padding(case: Case) -> bool:
    """pad_sequence with padding_value -0.0 and some padding (a sequence shorter than the longest): torch.export
    drops an argument equal to its schema default, and -0.0 == 0.0 (aten::pad_sequence's padding_value=0.), so the
    graph pads with +0.0."""
    value = case.params.get("padding_value")
    if case.invalid or not isinstance(value, float) or value != 0 or not np.signbit(value):
        return False
    lengths = [np.shape(v)[0] for k, v in case.inputs.items() if k.startswith("sequence") and np.ndim(v) > 0]
    return len(set(lengths)) > 1


# -- composed models (Sequential, ModuleList, ModuleDict, ParameterList, ParameterDict...): the layers' own bugs --

_BATCH_NORMS = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d")
_EPS_NORMS = _BATCH_NORMS + ("LayerNorm", "RMSNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d")


def _layers(case: Case) -> list[dict]:
    """The layers of a composed model's case (none for a container-semantics program)."""
    layers = case.params.get("layers")
    return list(layers) if isinstance(layers, (list, tuple)) else []


def model_training_batchnorm_with_running_stats(case: Case) -> bool:
    """A composed model in training mode with a BatchNorm that tracks running statistics with a momentum: the
    dynamo exporter writes it as an inference BatchNormalization (onnxruntime.toml
    ort-dynamo-export-training-batchnorm-as-inference). Not where another such BatchNorm has momentum None: the
    export fails on it first (model_training_batchnorm_momentum_none)."""
    return not case.invalid and case.train and any(
        layer["op"] in _BATCH_NORMS and layer["params"].get("track_running_stats", True)
        and layer["params"].get("momentum", 0.1) is not None for layer in _layers(case)
    ) and not model_training_batchnorm_momentum_none(case)


def model_training_batchnorm_momentum_none(case: Case) -> bool:
    """A composed model in training mode with a BatchNorm tracking running statistics with momentum None: its
    1 / num_batches_tracked is data-dependent (onnxruntime_layers.toml
    ort-dynamo-export-batchnorm-momentum-none-data-dependent)."""
    return not case.invalid and case.train and any(
        layer["op"] in _BATCH_NORMS and layer["params"].get("track_running_stats", True)
        and layer["params"].get("momentum", 0.1) is None for layer in _layers(case))


def model_norm_eps_not_float32(case: Case) -> bool:
    """A float64 composed model with a normalisation layer whose eps float32 does not hold: the exported
    BatchNormalization/LayerNormalization epsilon is a float32 attribute (onnxruntime_layers.toml
    ort-dynamo-export-norm-eps-float32-float64)."""
    if case.invalid or case.dtype != "float64":
        return False
    for layer in _layers(case):
        eps = layer["params"].get("eps", 1e-5)
        if layer["op"] in _EPS_NORMS and isinstance(eps, float) and float(np.float32(eps)) != eps:
            return True
    return False


def model_cross_entropy_label_smoothing(case: Case) -> bool:
    """A composed model ending in a CrossEntropyLoss with label_smoothing > 0, which the exported
    SoftmaxCrossEntropyLoss drops (onnxruntime_elementwise.toml
    ort-dynamo-export-cross-entropy-label-smoothing-dropped)."""
    return not case.invalid and any(
        layer["op"] == "CrossEntropyLoss" and float(layer["params"].get("label_smoothing", 0.0)) > 0
        for layer in _layers(case))


def model_functional_conv_same_dynamic(case: Case) -> bool:
    """A functional composed model (ParameterList, ParameterDict: the weights are arguments of the call, so their
    sizes are dynamic too) with a convolution of padding 'same', exported with dynamic shapes: the pads derive from
    the kernel's symbolic size and torchlib passes them as Conv's pads attribute, which must be constant."""
    return not case.invalid and runs_dynamic_graph(case) and any(
        layer["op"].startswith("Conv") and layer["params"].get("padding") == "same" for layer in _layers(case))


def spectral_norm_eval_transposed_matvec(case: Case) -> bool:
    """spectral_norm in evaluation mode of a 2-d weight (Linear) with dim 1: the weight matrix is the weight's
    Transpose, and sigma = u . (W^T v) runs Transpose + MatMul with a 1-d operand, which MatmulTransposeFusion
    computes wrongly (at least 2 rows and 2 columns; float32 and float64)."""
    if case.invalid or case.train or case.dtype not in ("float32", "float64"):
        return False
    shape = np.shape(case.inputs["parametrizations.weight.original"])
    dim = case.params.get("dim")
    return len(shape) == 2 and dim in (1, -1) and min(shape) >= 2


def spectral_norm_conv_transpose_output_padding_not_below_stride(case: Case) -> bool:
    """spectral_norm of a ConvTranspose whose output_padding is not below its stride (torch allows it below the
    dilation), called without output_size: ONNX Runtime's ConvTranspose refuses the run."""
    if case.invalid or not str(case.params.get("module", "")).startswith("ConvTranspose"):
        return False
    if case.forward_kwargs.get("output_size") is not None:
        return False
    mp = case.params.get("module_params", {})

    def seq(value: Any) -> list[int]:
        return list(value) if isinstance(value, (list, tuple)) else [int(value)]

    pads, strides = seq(mp.get("output_padding", 0)), seq(mp.get("stride", 1))
    if len(strides) == 1:
        strides = strides * len(pads)
    return any(p >= s for p, s in zip(pads, strides))


def pad_sequence_overflowing_padding_value(case: Case) -> bool:
    """An invalid pad_sequence whose finite padding_value overflows the sequences' dtype (float32, float16,
    bfloat16): eager torch raises, the exported graph (and inductor's fill) pads with inf."""
    value = case.params.get("padding_value")
    if not case.invalid or case.dtype not in ("float32", "float16", "bfloat16") or not isinstance(value, float):
        return False
    return bool(np.isfinite(value)) and not np.isfinite(_in_format(value, case.dtype))


# -- get_total_norm (and the total norm of clip_grad_norm_) ----------------------------------------------------------

def _passed_grads(case: Case) -> list[np.ndarray]:
    """The gradient tensors the call passes, in order (none for the 'empty list' form)."""
    if case.params.get("form") == "empty list":
        return []
    return [np.asarray(case.inputs[f"grad{i}"]) for i in range(int(case.params.get("count", 0)))
            if f"grad{i}" in case.inputs]


def _norm_type(case: Case) -> float:
    """The case's norm_type as a float (the string 'inf' read as inf)."""
    return float(case.params.get("norm_type", 2.0))


def _inf_norm_of_an_empty_tensor(case: Case) -> bool:
    """The infinity norm with an empty tensor among those passed (eager torch raises: it has no identity)."""
    return bool(np.isinf(_norm_type(case))) and any(g.size == 0 for g in _passed_grads(case))


def _total_norm_exports(case: Case) -> bool:
    """A valid total norm the dynamo exporter gets through: tensors passed, foreach not True (aten._foreach_norm has
    no ONNX function) and error_if_nonfinite not set (its check on the total is data-dependent control flow)."""
    return (not case.invalid and bool(_passed_grads(case)) and case.params.get("foreach") is not True
            and not case.params.get("error_if_nonfinite"))


def total_norm_foreach_not_translated(case: Case) -> bool:
    """A valid total norm with foreach=True and error_if_nonfinite not set, over some tensors, which eager torch
    computes (not the infinity norm with an empty tensor): the trace holds aten._foreach_norm, which torchlib has no
    function for. (foreach=None traces the per-tensor linalg.vector_norm: FakeTensors are not foreach-supported.)"""
    return (not case.invalid and case.params.get("foreach") is True and not case.params.get("error_if_nonfinite")
            and bool(_passed_grads(case)) and not _inf_norm_of_an_empty_tensor(case))


def total_norm_error_if_nonfinite_guard(case: Case) -> bool:
    """A valid total norm with error_if_nonfinite over some tensors, not the infinity norm with an empty tensor (eager
    torch raises that first): the check ``if error_if_nonfinite and (isnan or isinf)`` branches on the total's value,
    which torch.export cannot trace (GuardOnDataDependentSymNode). (A sum of p-th powers that overflows makes eager
    torch raise too: the failure is then torch's own, with its own message.)"""
    return (not case.invalid and bool(case.params.get("error_if_nonfinite")) and bool(_passed_grads(case))
            and not _inf_norm_of_an_empty_tensor(case))


def total_norm_inf_empty_refused(case: Case) -> bool:
    """The infinity norm with an empty tensor where the export fails and the adapter reports eager torch's error:
    a static-shape graph (the trace keeps vector_norm's check on the empty size), foreach=True or
    error_if_nonfinite. A dynamic-shape graph of the per-tensor path exports (the next predicate)."""
    if case.invalid or not _inf_norm_of_an_empty_tensor(case):
        return False
    return not (_total_norm_exports(case) and runs_dynamic_graph(case))


def total_norm_inf_empty_dynamic(case: Case) -> bool:
    """The infinity norm with an empty tensor through an exported dynamic-shape graph (per-tensor path): the
    exporter keeps no check on the empty size, ONNX Runtime's ReduceMax of the empty tensor is -inf and the Abs of
    the stacked norms makes the total inf (eager torch raises; the documented total is the others' max)."""
    return _total_norm_exports(case) and _inf_norm_of_an_empty_tensor(case) and runs_dynamic_graph(case)


def total_norm_inf_nan_dropped(case: Case) -> bool:
    """The infinity norm through an exported graph with a NaN in a (non-empty) gradient, where ONNX Runtime's
    ReduceMax does not return NaN: its full reduction returns NaN only when the first element is NaN (otherwise some
    non-NaN element), so the total is NaN only when the first tensor's first element is (checked on 12,000 random
    vectors of 1 to 1,200 elements in float64, float32 and float16)."""
    gs = _passed_grads(case)
    if not _total_norm_exports(case) or not np.isinf(_norm_type(case)) or any(g.size == 0 for g in gs):
        return False
    if not any(np.isnan(g).any() for g in gs):
        return False
    return not bool(np.isnan(gs[0].reshape(-1)[0]))


def total_norm_float64_exponent_rounded(case: Case) -> bool:
    """A float64 p-norm (p finite, not 0, 1 or 2) through an exported graph, with 1/p not a float32 number:
    torchlib's aten_linalg_vector_norm raises the sum of p-th powers to CastLike(1 / p, self), a float32 constant
    cast to float64."""
    p = _norm_type(case)
    if case.dtype != "float64" or not _total_norm_exports(case) or not np.isfinite(p) or p in (0.0, 1.0, 2.0):
        return False
    return float(np.float32(1.0 / p)) != 1.0 / p


def total_norm_float64_exponent_model(case: Case, reference: Any, got: Any) -> dict[str, np.ndarray]:
    """The exported total norm in float64 with the float32 exponent: each tensor's (Σ|g|^p)^c, then the same
    norm of the stacked norms, c = float32(1/p)."""
    p = _norm_type(case)
    c = float(np.float32(1.0 / p))
    with np.errstate(all="ignore"):
        norms = np.array([np.sum(np.abs(g.astype(np.float64)) ** p) ** c for g in _passed_grads(case)])
        total = np.sum(norms ** p) ** c
    return {"output": np.float64(total)}


def kaiming_uniform_fan_zero_dynamic(case: Case) -> bool:
    """kaiming_uniform_ (with or without a generator) of an empty tensor whose fan for the chosen mode is 0,
    exported with dynamic shapes: torch.onnx's capture (backed_size_oblivious) cannot take eager torch's early
    return for a zero-element tensor, and bound = gain * sqrt(3 / fan) divides by zero."""
    shape = np.shape(case.inputs["tensor"])
    if case.invalid or len(shape) < 2 or 0 not in shape or not runs_dynamic_graph(case):
        return False
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    fan = (shape[1] if case.params.get("mode", "fan_in") == "fan_in" else shape[0]) * receptive
    return fan == 0


def zeros_empty_layout_divides_by_zero(case: Case) -> bool:
    """zeros_ (or ones_) of an empty tensor exported with dynamic shapes where laying out the filled result divides
    by the empty dim's size (unknown to be 0 under torch.onnx's backed_size_oblivious): torch's stride ordering
    replayed on the adapter's example (``backends.export_strides.elementwise_perm_divides_by_zero``)."""
    from backends.export_strides import elementwise_perm_divides_by_zero, example_strides

    shape = tuple(int(s) for s in np.shape(case.inputs["tensor"]))
    if case.invalid or 0 not in shape or not runs_dynamic_graph(case):
        return False
    return elementwise_perm_divides_by_zero(shape, list(example_strides(case, "tensor")), [0] * len(shape))


# -- parameters_to_vector, vector_to_parameters ----------------------------------------------------------------------

def _params(case: Case) -> list[np.ndarray]:
    """The parameter tensors of a parameters_to_vector / vector_to_parameters case, in order."""
    return [np.asarray(case.inputs[f"param{i}"]) for i in range(int(case.params.get("count", 0)))
            if f"param{i}" in case.inputs]


def parameters_to_vector_all_empty_static(case: Case) -> bool:
    """parameters_to_vector of parameters that are all empty, exported at static sizes: torchlib's aten_cat drops
    the empty inputs it can see and asserts when none is left (a dynamic-shape graph cannot tell and exports)."""
    ps = _params(case)
    return (not case.invalid and bool(ps) and all(p.size == 0 for p in ps) and not runs_dynamic_graph(case)
            and case.params.get("form") in ("list", "tuple"))


def vector_to_parameters_exported(case: Case) -> bool:
    """vector_to_parameters with a tensor vector at least as long as the parameters (valid, or an invalid longer
    one that eager torch accepts): the call assigns each parameter's ``.data``, which torch.export cannot keep."""
    if case.params.get("vec_as") != "tensor" or "vec" not in case.inputs:
        return False
    return np.size(case.inputs["vec"]) >= sum(p.size for p in _params(case))


# -- dirac_ ------------------------------------------------------------------------------------------------------------

def dirac_dynamic_reused(case: Case) -> bool:
    """A valid dirac_ of a non-empty 3- to 5-d tensor run by a dynamic-shape graph: the export bakes the example's
    centres (size // 2) and loop count into the graph while its program admits other sizes, so a graph the adapter
    reuses for another case writes the ones where the example's sizes put them."""
    shape = np.shape(case.inputs["tensor"])
    return (not case.invalid and 3 <= len(shape) <= 5 and 0 not in shape and runs_dynamic_graph(case)
            and int(case.params.get("groups", 1)) >= 1)


def dirac_baked_centres_model(case: Case, reference: Any, got: Any) -> dict[str, np.ndarray]:
    """A Dirac tensor of the case's shape and groups whose centres and number of identity channels per group are
    read from the backend's own output (the ones of channel pair (0, 0), the pairs (d, d) holding a one; none: a
    graph baked from an example without channels writes zeros): what a graph baked for other sizes writes. Any
    other wrong value stays unexplained."""
    shape = tuple(np.shape(case.inputs["tensor"]))
    theirs = np.asarray(got.outputs.get("output", np.zeros(0)))
    if theirs.shape != shape:
        return {}
    groups = int(case.params.get("groups", 1))
    per_group = shape[0] // groups
    ones = np.argwhere(theirs[0, 0] == 1) if per_group and shape[1] else np.zeros((0, len(shape) - 2), int)
    if len(ones) > 1:
        return {}
    predicted = np.zeros(shape, dtype=np.float64)
    if not len(ones):  # a graph baked with no identity channel (an example with 0 channels): all zeros
        return {"output": predicted, "state.tensor": predicted}
    centre = tuple(int(c) for c in ones[0])
    count = sum(1 for d in range(min(per_group, shape[1])) if theirs[(d, d) + centre] == 1)
    for g in range(groups):
        for d in range(count):
            predicted[(g * per_group + d, d) + centre] = 1.0
    return {"output": predicted, "state.tensor": predicted}


def dirac_export_runs(case: Case) -> bool:
    """dirac_ whose exported graph ONNX Runtime runs: not a bfloat16 dynamic-shape graph, whose zeros_like is an
    Expand of a Shape (onnxruntime 1.32 has no bfloat16 Expand kernel: the session is refused)."""
    return case.dtype != "bfloat16" or not runs_dynamic_graph(case)
