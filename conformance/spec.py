"""The declaration of one catalogue entry, as data, and the registry of declarations.

An entry is declared once (``declare(LayerSpec(...))``) in ``conformance/specs/<family>.py``: its
case strategy, its reference, how a torch-like backend calls it (``TorchMapping``, rendered into
a call tree that the torch adapter and the repro scripts interpret), which tensors are compared
and under which tolerance policy, its corner regimes and, for a stochastic entry, its randomness.
Generic tests and the runner iterate the registry; no entry has a test function of its own.
One catalogue entry may have several declarations (``variant``: LSTM on padded and on packed
input); each is a target of its own, listed under the entry's name.
"""

from __future__ import annotations

import contextvars
import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from hypothesis import strategies as st

from backends.base import DTYPE_NAMES, Case, Result, jsonable

if TYPE_CHECKING:  # pragma: no cover
    from hypothesis.strategies import SearchStrategy

    from conformance.compare import Comparison
    from conformance.stats import StatCheck

# The reference of a declaration: ``reference(case) -> (result, pullback)``. ``result`` holds the
# outputs, the state after the call and the canonical random choices; ``pullback(cotangents)``
# maps the cotangent of every float output (by output name) to the gradients of the inputs (by
# input name; the runner keeps those in ``case.differentiable``), or is None when the call has no
# backward. The forward is evaluated once and the backward once: the runner draws the cotangents
# from the forward's output shapes in between, so a reference never draws anything itself.
Pullback = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]
ReferenceFn = Callable[[Case], "tuple[Result, Pullback | None]"]
CaseStrategy = Callable[[str], "SearchStrategy[Case]"]
# comparator(spec, case, tensor_name, reference_result, backend_result) -> Comparison
Comparator = Callable[["LayerSpec", Case, str, Result, Result], "Comparison"]


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


def _per_case(value: Any, case: Case) -> Any:
    return value(case) if callable(value) else value


@dataclass(frozen=True)
class TorchMapping:
    """How a torch-like backend calls the entry; rendered per case into a call tree (plain data,
    see ``backends.torch_call``) that the torch adapter and the repro scripts interpret.

    - ``target``: the dotted class (``kind="module"``) or function (``kind="function"``).
    - ``ctor(case)``: the module's constructor arguments (default ``case.params``); values are
      call nodes (``arg``, ``packed``...) or plain data; ``ctor_args(case)``: positional ones
      (``Sequential(*modules)``).
    - ``parameters`` / ``buffers``: case inputs installed on the module by attribute path.
    - ``args``: the positional arguments: a name (str) is the case input of that name, anything
      else a call node; ``kwargs(case)``: keyword arguments (default ``case.forward_kwargs``,
      plus ``case.params`` for a function).
    - ``outputs``: names for the results: a tuple of names (one per returned value) or a pattern.
    - ``mutated``: tensors whose value after the call is compared (``state.<name>``);
      ``inplace``: the input that ``inplace=True`` overwrites with the output (compared too).
    - ``forward(case)``: a node evaluated instead of calling the module with ``args`` (a loop over
      a ModuleList, a functional model over a ParameterList's entries).
    - ``prepare(case)``: nodes evaluated once when the module is built, outside any transform a
      derivative mode applies (a lazy module's dry run, which materialises its parameters).
    Every field may also be a function of the case.
    """

    target: str
    kind: str = "module"
    ctor: Callable[[Case], dict[str, Any]] | None = None
    parameters: Sequence[str] | Callable[[Case], Sequence[str]] = ()
    buffers: Sequence[str] | Callable[[Case], Sequence[str]] = ()
    args: Sequence[Any] | Callable[[Case], Sequence[Any]] = ("input",)
    kwargs: Callable[[Case], dict[str, Any]] | None = None
    outputs: Any = ("output",)
    mutated: Sequence[str] | Callable[[Case], Sequence[str]] = ()
    inplace: str | None = None
    ctor_args: Sequence[Any] | Callable[[Case], Sequence[Any]] = ()
    forward: Callable[[Case], Any] | None = None
    prepare: Callable[[Case], Sequence[Any]] | None = None

    def inplace_input(self, case: Case) -> str | None:
        """The input this case overwrites in place (``inplace=True``), if any."""
        return self.inplace if self.inplace and case.params.get("inplace") else None

    def output_pattern(self, case: Case) -> Any:
        outputs = _per_case(self.outputs, case)
        if isinstance(outputs, tuple):
            return outputs[0] if len(outputs) == 1 else list(outputs)
        return outputs

    def describe(self, case: Case) -> dict[str, Any]:
        """The call tree of ``case`` (JSON-able)."""
        inplace = self.inplace_input(case)
        args = [arg(a, copy=a == inplace) if isinstance(a, str) else a for a in _per_case(self.args, case)]
        if self.kwargs is not None:
            kwargs = dict(self.kwargs(case))
        else:
            kwargs = {**(case.params if self.kind == "function" else {}), **case.forward_kwargs}
        call: dict[str, Any] = {
            "kind": self.kind, "target": self.target, "args": args, "kwargs": kwargs,
            "outputs": self.output_pattern(case),
            "mutated": [*_per_case(self.mutated, case), *([inplace] if inplace else [])],
        }
        if self.kind == "module":
            call.update(init=dict(self.ctor(case)) if self.ctor else dict(case.params),
                        parameters=list(_per_case(self.parameters, case)),
                        buffers=list(_per_case(self.buffers, case)), train=case.train)
            init_args = list(_per_case(self.ctor_args, case))
            if init_args:
                call["init_args"] = init_args
            if self.forward is not None:
                call["forward"] = self.forward(case)
            if self.prepare is not None:
                call["prepare"] = list(self.prepare(case))
        return jsonable(call)


def arg(name: str, *, copy: bool = False, device: str | None = None) -> dict[str, Any]:
    """Call node: the case input ``name`` (``copy``: a differentiable copy, for in-place calls;
    ``device``: keep it on that device, e.g. lengths on the CPU)."""
    node: dict[str, Any] = {"input": name}
    if copy:
        node["copy"] = True
    if device:
        node["device"] = device
    return node


def call_node(target: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Call node: the result of calling function ``target`` (positional args as in
    ``TorchMapping.args``: a str is a case input)."""
    return {"call": {"target": target, "args": [arg(a) if isinstance(a, str) else a for a in args],
                     "kwargs": kwargs}}


def scaffold_node(target: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Call node run as plain Python, never through the backend under test: scaffolding that builds
    an argument (a ``functools.partial``, a function looked up by name), not part of the computation."""
    node = call_node(target, *args, **kwargs)
    node["call"]["plain"] = True
    return node


def packed(**fields: Any) -> dict[str, Any]:
    """Call node or output pattern: a PackedSequence from / into named parts (data, batch_sizes,
    sorted_indices, unsorted_indices)."""
    return {"packed": fields}


@dataclass(frozen=True)
class Regime:
    """A corner of an entry's parameter space, as data.

    ``holds(case)`` says whether a case lies in it (regime coverage is counted with it);
    ``pins`` fix labelled draws of the case strategy (label or glob -> value) so that the strategy
    produces cases in the regime; a generic test checks that those cases satisfy ``holds``.
    """

    name: str
    holds: Callable[[Case], bool]
    pins: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""


_PINS: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar("nnconform_pins", default=None)


def current_pins() -> Mapping[str, Any]:
    """The pins of the regime a strategy is currently drawing for (read by ``strategies.Drawer``)."""
    return _PINS.get() or {}


@st.composite
def _pinned(draw: Any, strategy: SearchStrategy[Case], pins: Mapping[str, Any]) -> Case:
    token = _PINS.set(pins)
    try:
        return draw(strategy)
    finally:
        _PINS.reset(token)


@dataclass(frozen=True)
class Randomness:
    """How a stochastic entry is judged: through a conditional reference and statistics.

    - The backend reports its random ``choices``. ``choices`` maps each name to how a torch-like
      adapter reads it back: the name of an output (a dropout mask is the non-zero elements of
      that output, exact because such cases draw non-zero inputs), or a function of the case
      giving a rule of ``backends.torch_call`` (``{"rule": "rand", "shape": [...]}``: samples the
      layer drew with ``torch.rand`` right after the call's seed).
    - The runner gives them to the reference (``case.choices``), which computes the exact output
      and gradient for them and returns the choices in their canonical form (a channel mask
      broadcast over the channel), so that a choice of the wrong structure is a mismatch.
    - ``check`` runs over the (case, choices) pairs of a whole target and returns statistical
      tests, each with a stated false-alarm rate; their sum is at most ``false_alarm``.
    - ``deterministic(case)``: no random choice is made (p = 0, p = 1, eval mode); those cases are
      compared exactly, without choices.
    - ``sample(case, rng)``: choices as a conforming backend makes them (the reference backend
      uses it, and the false-alarm test runs ``check`` on it).
    """

    choices: Mapping[str, str | Callable[[Case], dict[str, Any]]]
    sample: Callable[[Case, np.random.Generator], dict[str, np.ndarray]]
    check: Callable[[Sequence[tuple[Case, dict[str, np.ndarray]]], float], list[StatCheck]]
    deterministic: Callable[[Case], bool]
    false_alarm: float = 1e-6

    @staticmethod
    def with_choices(case: Case, choices: Mapping[str, np.ndarray]) -> Case:
        return replace(case, choices={k: np.asarray(v) for k, v in choices.items()})

    def rules(self, case: Case) -> dict[str, dict[str, Any]]:
        """How a torch-like adapter reads each choice back (``call["random"]``)."""
        return {name: {"rule": "nonzero", "of": how} if isinstance(how, str) else dict(how(case))
                for name, how in self.choices.items()}


@dataclass(frozen=True)
class LayerSpec:
    """Everything nnconform knows about one declaration of one catalogue entry.

    ``dims`` (spatial dimensionality) and ``kind`` (a family's sub-kind, e.g. ``transposed``) are
    facts carried as fields: nothing is parsed back out of names.
    """

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
    # The vjp2 mode's error terms the finite differences cannot see: (case, v, g) -> {"d2.<input>":
    # an absolute bound per element} on the rounding of second-order terms that cancel in exact
    # arithmetic along every direction (an invariance of the layer in every direction: the p-norm or
    # the cosine of 1-element vectors), or that the backend forms from rounded intermediates (a
    # saturated gate's σ' = ŷ(1 - ŷ); a composed model's layers' own terms), from the declaration's
    # own error analysis carried along v. None: no such terms.
    second_order_error: Callable[[Case, Mapping[str, np.ndarray], Mapping[str, np.ndarray]],
                                 Mapping[str, np.ndarray]] | None = None
    # Other readings of the call that the documentation allows at this case (the primal tensors'
    # comparators accept them): (spec, case) -> declarations of their own (reference, pullback,
    # tolerances). The derivative modes judge their own tensors (J·t, second order) under each where
    # the documented reading fails, and keep the reading under which everything passes. None: one.
    readings: Callable[[LayerSpec, Case], Sequence[LayerSpec]] | None = None
    # Where the documented gradient is the transpose of the forward's Jacobian, so that the jvp
    # mode's adjoint identity can judge J·t by it (else the case is outside the jvp domain). None:
    # everywhere.
    adjoint_at: Callable[[Case], bool] | None = None
    forward: bool = True
    backward: bool = True
    notes: str = ""
    variant: str = ""
    dims: int | None = None
    kind: str = ""
    regimes: tuple[Regime, ...] = ()
    randomness: Randomness | None = None
    catalogue: str = ""  # the catalogue's name when it differs from ``name`` (dotted utilities)

    @property
    def id(self) -> str:
        """The target's name: ``name``, or ``name[variant]``."""
        return f"{self.name}[{self.variant}]" if self.variant else self.name

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

    def strategy(self, dtype: str, regime: Regime | None = None, invalid: bool = False) -> SearchStrategy[Case]:
        """Cases of this declaration in ``dtype``, in ``regime`` when one is given."""
        make = self.invalid_cases if invalid else self.cases
        if make is None:
            raise ValueError(f"{self.id} declares no invalid cases")
        strategy = make(dtype)
        if regime is not None:
            strategy = _pinned(strategy, regime.pins)
        if self.variant:
            strategy = strategy.map(lambda case: replace(case, variant=self.variant))
        return strategy

    def regimes_of(self, case: Case) -> list[str]:
        """The declared regimes ``case`` lies in."""
        out = []
        for regime in self.regimes:
            try:
                if regime.holds(case):
                    out.append(regime.name)
            except Exception:  # a predicate that cannot judge this case: not in the regime
                continue
        return out

    def is_random(self, case: Case) -> bool:
        """The case makes random choices (a stochastic entry, off its deterministic points)."""
        return self.randomness is not None and not case.invalid and not self.randomness.deterministic(case)

    def call(self, case: Case) -> dict[str, Any]:
        """The call tree a torch-like backend runs for ``case``."""
        call = self.torch.describe(case)
        if self.is_random(case):
            call["random"] = jsonable(self.randomness.rules(case))  # type: ignore[union-attr]
            # A seed per case (from its description and values): distinct cases draw independently.
            call["seed"] = int(case.case_id(), 16) % (2**31)
        return call

    def run_reference(self, case: Case) -> tuple[Result, Pullback | None]:
        """The reference forward (with the in-place input's value after the call, which is the
        output) and its pullback."""
        result, pullback = self.reference(case)
        inplace = self.torch.inplace_input(case)
        if inplace:
            result.state[inplace] = result.outputs["output"]
        return result, pullback

    def pull(self, pullback: Pullback | None, case: Case,
             cotangents: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The gradients of ``case.differentiable`` for ``cotangents`` (none without a backward)."""
        if pullback is None or not cotangents or not (self.backward and case.differentiable):
            return {}
        grads = pullback(cotangents)
        return {name: grads[name] for name in case.differentiable if name in grads}

    def evaluate(self, case: Case, cotangents: Mapping[str, np.ndarray] | None = None) -> Result:
        """The reference result of ``case``: forward, and the backward for ``cotangents`` when
        given (``case.cotangents`` are not read: pass them)."""
        result, pullback = self.run_reference(case)
        if cotangents:
            result.grads = self.pull(pullback, case, cotangents)
        return result


_REGISTRY: dict[str, LayerSpec] = {}


def declare(spec: LayerSpec) -> LayerSpec:
    """Register a declaration (one per catalogue name and variant)."""
    if spec.id in _REGISTRY:
        raise ValueError(f"{spec.id!r} declared twice")
    _REGISTRY[spec.id] = spec
    return spec


def all_specs() -> dict[str, LayerSpec]:
    """Every declaration, by id (imports the family modules on first use)."""
    import conformance.specs  # noqa: F401  (registers the families)

    return dict(_REGISTRY)


def spec_of(case: Case) -> LayerSpec:
    """The declaration a case belongs to."""
    return all_specs()[case.target]


def _names(spec: LayerSpec) -> set[str]:
    names = {spec.id, spec.name, spec.id.lower(), spec.name.lower()}
    if spec.catalogue:
        names |= {spec.catalogue, spec.catalogue.rsplit(".", 1)[-1]}
    return names


def select_specs(patterns: list[str] | None) -> list[LayerSpec]:
    """Declarations matching any of the names or globs (all when ``patterns`` is empty); a
    catalogue name selects all its variants.

    Raises ``KeyError`` naming a pattern that matches nothing.
    """
    specs = all_specs()
    if not patterns:
        return list(specs.values())
    chosen: dict[str, LayerSpec] = {}
    for pattern in patterns:
        hits = [i for i, s in specs.items()
                if any(fnmatch.fnmatchcase(n, pattern) for n in _names(s)) or pattern.lower() in _names(s)]
        if not hits:
            raise KeyError(f"unknown op {pattern!r} (see `nnconform list`)")
        for i in hits:
            chosen[i] = specs[i]
    return list(chosen.values())
