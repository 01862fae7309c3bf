"""The template of the linear family: a multilinear layer, data in, ``LayerSpec`` out.

Every output and gradient is a sum of products of the inputs: its magnitude bound is the
reference evaluated on absolute values (|W|·|x|), its reduction length K per tensor, and the exact
tier is bit-exact wherever the absolute sum stays within 2^p. The reference is the registered
functional (``reference.linear``) with its VJP, as ``(result, pullback)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import reference.linear  # noqa: F401  (registers the functions this template calls)
from backends.base import Case, Result
from conformance.spec import CaseStrategy, LayerSpec, Regime, Tolerance, TorchMapping
from reference.registry import FUNCTIONS


def functional_reference(function: str, arguments: Sequence[str]) -> Callable[[Case], tuple[Result, Any]]:
    """The reference of a layer whose case inputs are the registered function's arguments (by
    name, in order; absent ones are None), as ``(result, pullback)``."""

    def reference(case: Case) -> tuple[Result, Any]:
        args = [case.inputs.get(name) for name in arguments]
        entry = FUNCTIONS[function]  # (not reference.functional: that imports every reference module)
        result = Result(outputs={"output": entry.forward(*args)})

        def pullback(cotangents: dict) -> dict:
            return entry.vjp(cotangents["output"], *args)

        return result, pullback

    return reference


def multilinear(name: str, *, function: str, arguments: Sequence[str], cases: CaseStrategy,
                torch: TorchMapping, reduction: Callable[[Case, str], int] | int = 1, exact: str = "bitwise",
                invalid_cases: CaseStrategy | None = None, regimes: tuple[Regime, ...] = (),
                notes: str = "") -> LayerSpec:
    """A multilinear layer (module docstring)."""
    return LayerSpec(name=name, family="linear", cases=cases, invalid_cases=invalid_cases,
                     reference=functional_reference(function, arguments), torch=torch,
                     tolerance=Tolerance(reduction=reduction, magnitude="abs" if exact != "always" else "ref",
                                         exact=exact),
                     regimes=regimes, notes=notes)
