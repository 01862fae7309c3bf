"""Predicates of the known initialiser discrepancies of compiled torch (``conformance/known/torch_compile*.toml``)."""

from __future__ import annotations

import math

import numpy as np

from backends.base import Case
from backends.torch_compile import runs_dynamic_graph
from conformance import strategies as S
from conformance.numerics.init import in_format
from conformance.strategies.init import writes_overlap
from reference import init as init_ref


def _tensor_shape(case: Case) -> tuple[int, ...] | None:
    """The shape of the initialiser's ``tensor`` in a valid case, or None."""
    if case.invalid or "tensor" not in case.inputs:
        return None
    return tuple(int(n) for n in case.inputs["tensor"].shape)


def out_tensor_not_contiguous(case: Case) -> bool:
    """The initialiser's ``tensor`` (written through ``out=``) is valid, not empty and not contiguous to
    torch (dynamo refuses a non-contiguous ``out=`` tensor)."""
    shape = _tensor_shape(case)
    if shape is None or 0 in shape:
        return False  # torch calls an empty tensor contiguous
    return not S.is_torch_contiguous(shape, S.torch_strides(shape, case.layout("tensor")))


def _xavier_fan_sum(shape: tuple[int, ...]) -> int:
    """fan_in + fan_out of a weight of ``shape`` (the reference's, as torch computes them)."""
    return sum(init_ref.calculate_fan_in_and_fan_out(shape))


def _xavier_fan_sum_symbolic(case: Case) -> bool:
    """Whether the case runs a dynamic graph in which xavier's fan_in + fan_out is a symbolic
    expression (some size above 1 enters it; sizes 0 and 1 are specialised to constants)."""
    shape = _tensor_shape(case)
    if shape is None or len(shape) < 2 or not runs_dynamic_graph(case):
        return False
    grown = tuple(n + 1 if n > 1 else n for n in shape)
    return _xavier_fan_sum(grown) != _xavier_fan_sum(shape)


def xavier_uniform_gain_zero_symbolic_bound(case: Case) -> bool:
    """xavier_uniform_ with gain 0 in a dynamic graph whose bound is symbolic: AOTAutograd's sympy
    folds the bound -0.0 to 0, so uniform_(0, 0) fills +0 (eager: uniform_(-0.0, 0.0), -0)."""
    shape = _tensor_shape(case)
    return (shape is not None and math.prod(shape) > 0 and float(case.params.get("gain", 1.0)) == 0.0
            and _xavier_fan_sum_symbolic(case))


def xavier_uniform_bound_guard_fails(case: Case) -> bool:
    """xavier_uniform_ in a dynamic graph where dynamo's guard on the specialised bound, evaluated as
    (gain·√3)·√(2/n), differs in rounding from the value the call computed, √3·(gain·√(2/n))."""
    if not _xavier_fan_sum_symbolic(case):
        return False
    n = _xavier_fan_sum(_tensor_shape(case) or ())
    gain = float(case.params.get("gain", 1.0))
    root = math.sqrt(2.0 / float(n))
    return (gain * math.sqrt(3.0)) * root != math.sqrt(3.0) * (gain * root)


def uniform_tensor_not_dense(case: Case) -> bool:
    """The initialiser's ``tensor`` is valid, not empty and not non-overlapping-and-dense (a strided
    view): inductor's eager fallback for aten.uniform returns other strides than it expects. A case
    whose compilation fails first (xavier_uniform_bound_guard_fails) is left out."""
    shape = _tensor_shape(case)
    if shape is None or math.prod(shape) == 0 or xavier_uniform_bound_guard_fails(case):
        return False
    return not S.is_non_overlapping_and_dense(shape, S.torch_strides(shape, case.layout("tensor")))


def trunc_normal_symbolic_negative_pow(case: Case) -> bool:
    """trunc_normal_ in a dynamic graph (its float arguments symbolic) that reaches the uniform-proposal
    branch with (mode - mean) / std < 0: dynamo's fake-tensor run of pow(negative SymFloat, 2) fails
    (TorchRuntimeError). Replays torch 2.13's flow: std = 0 divides by zero, a mean more than 2 std
    outside [a, b] warns (a graph break) and an acceptance mass p > 0.3 samples normal proposals first."""
    if case.variant or not runs_dynamic_graph(case):
        return False
    p = case.params
    mean, std, a, b = (float(p[k]) for k in ("mean", "std", "a", "b"))
    if std == 0 or mean < a - 2 * std or mean > b + 2 * std:
        return False

    def norm_cdf(x: float) -> float:
        return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0

    if norm_cdf((b - mean) / std) - norm_cdf((a - mean) / std) > 0.3:
        return False
    return (max(a, min(mean, b)) - mean) / std < 0


def trunc_normal_capture_fails(case: Case) -> bool:
    """trunc_normal_ whose capture ends in a graph break (its rejection loop's data-dependent branch,
    or warnings.warn): every case but std = 0 with a mean in [a, b] (ZeroDivisionError while tracing)
    and trunc_normal_symbolic_negative_pow."""
    if case.variant:
        return False
    p = case.params
    mean, std, a, b = (float(p[k]) for k in ("mean", "std", "a", "b"))
    if std == 0 and a <= mean <= b:
        return False
    return not trunc_normal_symbolic_negative_pow(case)


def constant_negative_zero_specialised(case: Case) -> bool:
    """A valid constant_ case filling -0.0 into a non-empty tensor whose write does not overlap, on a dynamic graph:
    the unspecialised float argument is specialised again through sympy, which has no -0.0 (the graph fills +0)."""
    shape = _tensor_shape(case)
    val = case.params.get("val")
    if shape is None or 0 in shape or not isinstance(val, float) or val != 0.0 or math.copysign(1.0, val) > 0:
        return False
    return not writes_overlap(case) and runs_dynamic_graph(case)


def _fill_value(case: Case) -> float | None:
    """constant_'s val as a finite float (None: not a finite real number)."""
    val = case.params.get("val")
    if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val):
        return None
    return float(val)


def inductor_half_fill_overflow_accepted(case: Case) -> bool:
    """An invalid float16/bfloat16 constant_ whose finite val rounds to ±inf, into a tensor of other than one element
    (eager's one-element path fills inf too: init-constant-one-element-half-overflows-to-inf) that does not overlap:
    inductor's fill has no range check and fills ±inf (or nothing) where eager raises."""
    val = _fill_value(case)
    if not case.invalid or case.dtype not in ("float16", "bfloat16") or val is None or "tensor" not in case.inputs:
        return False
    if math.isfinite(float(in_format(np.array(val), case.dtype))):
        return False
    return case.inputs["tensor"].size != 1 and not writes_overlap(case)


def inductor_float32_fill_beyond_max_folded(case: Case) -> bool:
    """A float32 constant_ (valid, rounding to the largest finite value, or invalid, overflowing) whose finite val
    lies beyond float32's largest finite value, into a tensor whose write does not overlap: inductor's constant
    folding of the fill raises eager's range error while compiling."""
    val = _fill_value(case)
    if case.dtype != "float32" or val is None or "tensor" not in case.inputs:
        return False
    return abs(val) > float(np.finfo(np.float32).max) and not writes_overlap(case)
