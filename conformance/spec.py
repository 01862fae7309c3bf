"""The declaration of one layer, as data, and the registry of declared layers.

A layer is declared once (``declare(LayerSpec(...))``) in ``conformance/specs/<family>.py``:
its case strategy, its reference, how a torch adapter builds and calls it, which tensors are
compared and under which tolerance policy. Generic tests and the runner iterate the registry;
no layer has a test function of its own.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conformance.case import Case, Result
from conformance.dtypes import DTYPE_NAMES

if TYPE_CHECKING:  # pragma: no cover
    from hypothesis.strategies import SearchStrategy

    from conformance.compare import Comparison

# reference(case, backward) -> Result: outputs (and state) always; grads of case.differentiable
# for case.cotangents when backward is True.
ReferenceFn = Callable[[Case, bool], Result]
CaseStrategy = Callable[[str], "SearchStrategy[Case]"]
# comparator(case, tensor_name, reference_result, backend_result) -> Comparison
Comparator = Callable[[Case, str, Result, Result], "Comparison"]


@dataclass(frozen=True)
class Tolerance:
    """Error model for one compared tensor (see ``conformance.tolerance``).

    bound = out_ulps·u·|ref| + c·√K·u·absref + K·tiny, with u the dtype's unit roundoff, K the
    reduction length (``reduction(case, tensor)``) and absref a magnitude of the computation:
    - ``magnitude="abs"``: the reference re-evaluated on |inputs| (those in ``abs_inputs``, all
      float inputs when None) and |cotangents|; this is |W|·|X| for multilinear layers.
    - ``magnitude="ref"``: |ref| itself (elementwise functions).
    - a callable ``(case, ref) -> {tensor: absref}`` for layers with their own error analysis.

    ``exact`` says when the comparison is bit-exact: "always" (no arithmetic: max, relu, copies),
    "bitwise" (exact tier, wherever absref <= 2^p so every partial sum is an exact integer),
    "rounded" (exact tier, sums exact but one final rounding allowed: out_ulps·u·|ref|),
    "none" (always the float model).
    """

    reduction: Callable[[Case, str], int] | int = 1
    magnitude: str | Callable[[Case, Result], Mapping[str, Any]] = "abs"
    abs_inputs: tuple[str, ...] | None = None
    c: float = 2.0
    out_ulps: float = 1.0
    exact: str = "bitwise"

    def reduction_length(self, case: Case, tensor: str) -> int:
        return int(self.reduction(case, tensor)) if callable(self.reduction) else int(self.reduction)


@dataclass(frozen=True)
class TorchMapping:
    """How a torch adapter builds and calls the layer; plain data, also rendered into repro scripts.

    The module ``target`` is built with ``ctor(case)`` keyword arguments (``case.params`` by
    default); each name in ``parameters`` / ``buffers`` is then replaced by the case input of that
    name; forward is called with the case inputs named in ``args`` then ``case.forward_kwargs``;
    its return value (a tensor or a tuple) is named by ``outputs``; after forward, the buffers in
    ``state`` are read back. ``inplace_input`` names the argument an ``inplace=True`` layer mutates.
    """

    target: str
    ctor: Callable[[Case], dict[str, Any]] | None = None
    parameters: tuple[str, ...] = ()
    buffers: tuple[str, ...] = ()
    args: tuple[str, ...] = ("input",)
    outputs: tuple[str, ...] = ("output",)
    state: tuple[str, ...] = ()
    inplace_input: str | None = None

    def constructor_kwargs(self, case: Case) -> dict[str, Any]:
        return dict(self.ctor(case)) if self.ctor else dict(case.params)

    def mutates_input(self, case: Case) -> bool:
        """True when this call works in place; its mutated argument is then compared as the
        extra output ``mutated_input`` (it must equal ``output``)."""
        return bool(self.inplace_input and case.params.get("inplace"))


@dataclass(frozen=True)
class LayerSpec:
    """Everything nnconform knows about one catalogue entry."""

    name: str
    family: str
    cases: CaseStrategy
    reference: ReferenceFn
    torch: TorchMapping
    tolerance: Tolerance | Mapping[str, Tolerance] = field(default_factory=Tolerance)
    invalid_cases: CaseStrategy | None = None
    comparators: Mapping[str, Comparator] = field(default_factory=dict)
    dtypes: tuple[str, ...] = DTYPE_NAMES
    # Predicate: the layer is differentiable at this case (no input at a kink or tie), so the
    # finite-difference check of the reference VJP applies. None: smooth wherever inputs are finite.
    smooth_at: Callable[[Case], bool] | None = None
    forward: bool = True
    backward: bool = True
    notes: str = ""

    def tolerance_for(self, tensor: str) -> Tolerance:
        """Policy for a qualified tensor name (``output``, ``grad.weight``...): exact key, then
        ``grad.*``-style glob keys, then ``*``."""
        if isinstance(self.tolerance, Tolerance):
            return self.tolerance
        if tensor in self.tolerance:
            return self.tolerance[tensor]
        for pattern, tol in self.tolerance.items():
            if fnmatch.fnmatchcase(tensor, pattern):
                return tol
        return Tolerance()


_REGISTRY: dict[str, LayerSpec] = {}


def declare(spec: LayerSpec) -> LayerSpec:
    """Register a layer declaration (one per catalogue name)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"layer {spec.name!r} declared twice")
    _REGISTRY[spec.name] = spec
    return spec


def all_specs() -> dict[str, LayerSpec]:
    """Every declared layer, by name (imports the family modules on first use)."""
    import conformance.specs  # noqa: F401  (registers the families)

    return dict(_REGISTRY)


def select_specs(patterns: list[str] | None) -> list[LayerSpec]:
    """Declared layers matching any of the names or globs (all when ``patterns`` is empty).

    Raises ``KeyError`` naming a pattern that matches nothing.
    """
    specs = all_specs()
    if not patterns:
        return list(specs.values())
    chosen: dict[str, LayerSpec] = {}
    for pattern in patterns:
        hits = [n for n in specs if fnmatch.fnmatchcase(n, pattern) or n.lower() == pattern.lower()]
        if not hits:
            raise KeyError(f"unknown op {pattern!r} (see `nnconform list`)")
        for n in hits:
            chosen[n] = specs[n]
    return list(chosen.values())
