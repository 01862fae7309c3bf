"""Templates of the vision family: data in, ``LayerSpec`` out.

- ``pixel_layer``: PixelShuffle / PixelUnshuffle (one mechanism, bound to a direction).
- ``resize_layer``: the Upsampling layers, Upsample (module) and F.interpolate (function), for a
  set of modes sharing one tolerance policy: ``selecting`` modes are compared bit for bit (the
  gradient, a sum of cotangents, bit for bit in the exact tier), the others by the error analysis
  of ``reference.interpolate``; torch's shortcut convention is accepted where it applies.
- ``sampler``: grid_sample and affine_grid (functions).

Every reference evaluates the registered ``reference.functional`` function once and returns its VJP
as the pullback.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from backends.base import Case, Result
from conformance.numerics import vision as N
from conformance.spec import LayerSpec, Pullback, Regime, Tolerance, TorchMapping
from conformance.strategies import vision as V
from conformance.tolerance import analysed_tolerance
from reference import functional as RF

FAMILY = "vision"
Arguments = Callable[[Case], "tuple[tuple[Any, ...], dict[str, Any]]"]


def functional_reference(name: str, arguments: Arguments) -> Callable[[Case], tuple[Result, Pullback]]:
    """The reference of a case: ``reference.functional.<name>`` on ``arguments(case)``, the
    pullback its VJP for the cotangent of ``output`` (gradients keyed by argument name, which are
    the case's input names)."""
    forward = getattr(RF, name)

    def reference(case: Case) -> tuple[Result, Pullback]:
        args, kwargs = arguments(case)
        result = Result(outputs={"output": forward(*args, **kwargs)})

        def pullback(cotangents: Mapping[str, Any]) -> dict[str, Any]:
            return RF.vjp(name, *args, cotangent=cotangents["output"], **kwargs)

        return result, pullback

    return reference


# -- pixel shuffle ---------------------------------------------------------------------------------------

def pixel_layer(name: str, *, shuffle: bool, regimes: tuple[Regime, ...], notes: str) -> LayerSpec:
    """PixelShuffle (``shuffle``) or PixelUnshuffle: a permutation, bit-exact in every tier."""
    factor = V.factor_name(shuffle)
    return LayerSpec(
        name=name, family=FAMILY, dims=2, kind="shuffle" if shuffle else "unshuffle",
        cases=V.pixel_cases(name, shuffle),
        reference=functional_reference("pixel_shuffle" if shuffle else "pixel_unshuffle",
                                       lambda case: ((case.inputs["input"], case.params[factor]), {})),
        torch=TorchMapping(f"torch.nn.{name}"),
        tolerance=Tolerance(magnitude="ref", exact="always"),
        invalid_cases=V.pixel_invalid(name, shuffle),
        regimes=regimes, notes=notes)


# -- resizing -------------------------------------------------------------------------------------------

def _resize_arguments(case: Case) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return (case.inputs["input"],), N.resize_arguments(case)


# The tolerance policies of ``resize_layer``: selecting modes (nearest, nearest-exact) and the
# analysed ones (the interpolating modes, area, antialias).
SELECTING = {
    "output": Tolerance(magnitude="ref", exact="always"),  # a gather: bit-exact
    "grad.input": Tolerance(reduction=N.resize_length, magnitude="abs", exact="bitwise"),
}
ANALYSED = analysed_tolerance(N.resize_errors, N.resize_length)


def resize_layer(name: str, *, cases: Callable[[str], Any], invalid: Callable[[str], Any], kind: str,
                 target: str, selecting: bool, regimes: tuple[Regime, ...], notes: str, variant: str = "",
                 shortcuts: bool = True, dims: int | None = None, catalogue: str = "") -> LayerSpec:
    """A resizing declaration: ``kind`` "nearest" / "bilinear" (the Upsampling layers, which fix
    the mode), "upsample" (torch.nn.Upsample) or "interpolate" (the function); ``shortcuts``: the
    modes' kernels take torch's shortcuts (accepted as an alternative convention)."""
    return LayerSpec(
        name=name, variant=variant, family=FAMILY, dims=dims, kind=kind, catalogue=catalogue,
        cases=cases, invalid_cases=invalid,
        reference=functional_reference("interpolate", _resize_arguments),
        torch=TorchMapping(target, kind="function" if kind == "interpolate" else "module"),
        tolerance=SELECTING if selecting else ANALYSED,
        comparators=({t: N.accepting(N.shortcut_alternative) for t in ("output", "grad.input")} if shortcuts
                     else {}),
        readings=_shortcut_readings(selecting) if shortcuts else None,
        regimes=regimes, notes=notes)


def _shortcut_readings(selecting: bool) -> Callable[[LayerSpec, Case], tuple[LayerSpec, ...]]:
    """``LayerSpec.readings`` of a resizing declaration: where torch's shortcut reads other input
    positions (``N.shortcut_differs``), the declaration evaluated on ``N.shortcut_case`` (reference,
    pullback and error analysis of the shortcut's factors), so that the derivative modes judge J·t
    and the second order under the convention the output follows, as the comparators do."""

    def alt(case: Case) -> Case:
        return N.shortcut_case(case) or case

    reference = functional_reference("interpolate", lambda case: _resize_arguments(alt(case)))
    length = lambda case, tensor: N.resize_length(alt(case), tensor)  # noqa: E731
    tolerance = ({"output": SELECTING["output"],
                  "grad.input": Tolerance(reduction=length, magnitude="abs", exact="bitwise")} if selecting
                 else analysed_tolerance(lambda case, result: N.resize_errors(alt(case), result), length))

    def readings(spec: LayerSpec, case: Case) -> tuple[LayerSpec, ...]:
        if not N.shortcut_differs(case):
            return ()
        return (replace(spec, reference=reference, tolerance=tolerance, comparators={}, readings=None),)

    return readings


# -- sampling -------------------------------------------------------------------------------------------

def _grid_sample_arguments(case: Case) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return (case.inputs["input"], case.inputs["grid"]), dict(case.params)


def _affine_grid_arguments(case: Case) -> tuple[tuple[Any, ...], dict[str, Any]]:
    theta = case.inputs["theta"]
    theta = theta.astype(np.int64) if case.input_type("theta") == "int64" else theta  # rejected, as by torch
    return (theta, tuple(case.params["size"])), {"align_corners": case.params["align_corners"]}


GRID_SAMPLE_NEAREST = {
    "output": Tolerance(magnitude="ref", exact="always"),
    # |cotangent| scattered along the same grid (the grid is geometry: not replaced by its |values|)
    "grad.input": Tolerance(reduction=N.grid_sample_length, magnitude="abs", abs_inputs=("input",), exact="bitwise"),
    "grad.grid": Tolerance(magnitude="ref", exact="always"),  # piecewise constant: 0
}


def grid_sample(name: str, *, modes: tuple[str, ...], nearest: bool, regimes: tuple[Regime, ...], notes: str,
                variant: str = "", smooth_at: Callable[[Case], bool] | None = None) -> LayerSpec:
    """torch.nn.functional.grid_sample in ``modes``: ``nearest`` bit-exact (ties: either reading),
    the others by ``reference.sampling.grid_sample_error``."""
    target = "torch.nn.functional.grid_sample"
    return LayerSpec(
        name=name, variant=variant, family=FAMILY, kind="grid_sample", catalogue=target,
        cases=V.grid_sample_cases(name, modes, nearest=nearest),
        invalid_cases=V.grid_sample_invalid(name, modes),
        reference=functional_reference("grid_sample", _grid_sample_arguments),
        torch=TorchMapping(target, kind="function", args=("input", "grid")),
        tolerance=GRID_SAMPLE_NEAREST if nearest else analysed_tolerance(N.grid_sample_errors, N.grid_sample_length),
        comparators={t: N.accepting(N.grid_sample_ties) for t in ("output", "grad.input")} if nearest else {},
        smooth_at=smooth_at, regimes=regimes, notes=notes)


def affine_grid(name: str, *, regimes: tuple[Regime, ...], notes: str) -> LayerSpec:
    """torch.nn.functional.affine_grid, judged by ``reference.sampling.affine_grid_error``."""
    target = "torch.nn.functional.affine_grid"
    return LayerSpec(
        name=name, family=FAMILY, kind="affine_grid", catalogue=target,
        cases=V.affine_grid_cases(name), invalid_cases=V.affine_grid_invalid(name),
        reference=functional_reference("affine_grid", _affine_grid_arguments),
        torch=TorchMapping(target, kind="function", args=("theta",),
                           kwargs=lambda case: {"size": list(case.params["size"]),
                                                "align_corners": case.params["align_corners"]}),
        tolerance=analysed_tolerance(N.affine_grid_errors, N.affine_grid_length),
        regimes=regimes, notes=notes)
