"""The adapter contract: everything a backend sees and returns. It imports nothing of the project.

A backend receives a ``Case`` (one fully specified call of one catalogue entry, as plain data) and
returns a ``Result`` (named outputs, gradients, values after the call of mutated tensors, and the
random choices it made). ``Capabilities`` say what it implements; anything else is reported as
unsupported. The harness records a backend process that dies as ``BackendCrash``, one that does
not answer as ``BackendTimeout`` and an exception raised inside an isolated worker as
``BackendRaised``; a compiling backend that cannot compile a call raises ``CompileFailure``.
``VERDICTS`` lists what a case can end as.

Every other package depends on this module: ``conformance`` (declarations, runner) uses
``reference``, ``backends`` and ``reports``, and nothing points back.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

# Floating-point formats, best-conditioned first (runs and shrinking start from float64).
DTYPE_NAMES: tuple[str, ...] = ("float64", "float32", "float16", "bfloat16")

# What a case can end as. ``known``: a failure matching a recorded known discrepancy; ``xpass``: a
# strict known entry none of whose matching cases failed; ``unsupported``: outside the backend's
# capabilities (never counted as passed); ``compile``: a compiling backend could not compile the
# call (``CompileFailure``: a graph break, a recompile-limit hit, a compiler error) — never a pass
# and never a wrong value.
VERDICTS = ("pass", "fail", "error", "xpass", "known", "unsupported", "crash", "timeout", "compile")
# Verdicts that make a run non-conforming (exit code 1).
DISCREPANCY_VERDICTS = ("fail", "error", "xpass", "crash", "timeout", "compile")

LAYOUT_KINDS = ("contiguous", "channels_last", "permuted", "strided", "expanded")

# Derivative modes a case can be run in (``Case.mode``; see ``backends.torch_call`` for the torch
# side and ``conformance.modes`` for the judging): ``vjp`` the call and its reverse-mode gradient;
# ``jvp`` forward mode; ``vjp2`` second order; ``vmap`` several cases batched by ``torch.func.vmap``.
MODES = ("vjp", "jvp", "vjp2", "vmap")

# How an input travels to the backend: ``float`` a tensor in the case dtype; ``int64`` and
# ``bool`` tensors of that type; ``int_list`` a Python list of ints (lengths, sizes).
INPUT_TYPES = ("float", "int64", "bool", "int_list")


class BackendCrash(RuntimeError):
    """The backend's process died while running a case."""


class BackendTimeout(RuntimeError):
    """The backend did not answer within the time limit."""


class CompileFailure(RuntimeError):
    """A compiling or exporting backend could not translate the call: a graph break where the call
    must be one graph, a recompile-limit hit, an error of the compiler itself, or a failed export
    (an exporter's error, or an exported model its runtime refuses to load). Recorded as verdict
    ``compile`` with this message; the message starts with the kind (``graph break``,
    ``recompile limit``, ``compiler error``, ``export``)."""


class BackendRaised(RuntimeError):
    """The backend raised inside an isolated worker; the message is the original ``Type: message``."""


@dataclass(frozen=True)
class Layout:
    """How an input is laid out in memory; its logical shape and values never change.

    - ``contiguous``: row-major.
    - ``channels_last`` / ``permuted``: dense, with dimensions stored in the order ``perm``
      (outermost first); channels_last is perm (0, 2, 3, 1) or (0, 2, 3, 4, 1).
    - ``strided``: a view taking every ``step[d]``-th element of a larger buffer; the gaps hold NaN
      so a kernel that reads them poisons its result.
    - ``expanded``: dimensions ``dims`` have stride 0 (values are constant along them).
    """

    kind: str = "contiguous"
    perm: tuple[int, ...] = ()
    step: tuple[int, ...] = ()
    dims: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in LAYOUT_KINDS:
            raise ValueError(f"unknown layout kind {self.kind!r}")

    def strides(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Element strides of a tensor of ``shape`` in this layout."""
        ndim = len(shape)
        if self.kind in ("channels_last", "permuted"):
            strides = [0] * ndim
            acc = 1
            for d in reversed(self.perm):
                strides[d] = acc
                acc *= max(shape[d], 1)
            return tuple(strides)
        base_shape = list(shape)
        if self.kind == "strided":
            base_shape = [s * k for s, k in zip(shape, self.step)]
        strides = [0] * ndim
        acc = 1
        for d in reversed(range(ndim)):
            strides[d] = acc
            acc *= max(base_shape[d], 1)
        if self.kind == "strided":
            strides = [s * k for s, k in zip(strides, self.step)]
        if self.kind == "expanded":
            strides = [0 if d in self.dims else s for d, s in enumerate(strides)]
        return tuple(strides)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.perm:
            out["perm"] = list(self.perm)
        if self.step:
            out["step"] = list(self.step)
        if self.dims:
            out["dims"] = list(self.dims)
        return out

    @staticmethod
    def from_description(d: dict[str, Any]) -> Layout:
        return Layout(d["kind"], tuple(d.get("perm", ())), tuple(d.get("step", ())), tuple(d.get("dims", ())))


CONTIGUOUS = Layout()


def input_type(values: np.ndarray) -> str:
    """The type an input travels as when its case does not declare one: by NumPy kind."""
    kind = np.asarray(values).dtype.kind
    return "bool" if kind == "b" else "int64" if kind in "iu" else "float"


@dataclass(frozen=True)
class Case:
    """One call of catalogue entry ``op`` (declaration ``variant``) in ``dtype``.

    - ``params``: the entry's parameters (torch.nn constructor arguments, or a function's
      keyword arguments); ``forward_kwargs``: extra keyword arguments of the call.
    - ``inputs``: every named array (arguments, parameters, buffers, targets, lengths); floats
      are float64 values already representable in ``dtype``. ``types`` says how each travels
      (``INPUT_TYPES``; undeclared: by NumPy kind) and ``layouts`` its memory layout.
    - ``differentiable``: the inputs whose gradient is compared; ``cotangents``: the output
      gradients of the backward pass (filled in by the runner from ``cotangent_seed``).
    - ``choices``: random choices a stochastic layer made (a dropout mask), given to the
      conditional reference by the runner; empty for deterministic cases.
    - ``call``: how a torch-like backend calls the entry (a call tree, plain data: see
      ``backends.torch_call``), attached by the runner from the declaration.
    - ``invalid``: the case breaks a documented rule; the backend must raise.
      ``backward_rule``: torch enforces that rule in the backward pass only (it raises there, not
      in the forward), so a forward-only backend cannot be judged on it.
    - ``mode``: the derivative mode (``MODES``): what the backend computes beyond the forward is
      said by ``call["mode"]`` (absent for ``vjp``).
    """

    op: str
    dtype: str
    params: dict[str, Any]
    inputs: dict[str, np.ndarray]
    differentiable: tuple[str, ...] = ()
    layouts: dict[str, Layout] = field(default_factory=dict)
    forward_kwargs: dict[str, Any] = field(default_factory=dict)
    train: bool = True
    tier: str = "float"
    cotangent_seed: int = 0
    cotangents: dict[str, np.ndarray] = field(default_factory=dict)
    invalid: bool = False
    backward_rule: bool = False
    note: str = ""
    variant: str = ""
    types: dict[str, str] = field(default_factory=dict)
    choices: dict[str, np.ndarray] = field(default_factory=dict)
    call: dict[str, Any] | None = None
    mode: str = "vjp"

    @property
    def target(self) -> str:
        """The declaration's id: ``op``, or ``op[variant]``."""
        return f"{self.op}[{self.variant}]" if self.variant else self.op

    @property
    def mode_node(self) -> dict[str, Any]:
        """The call's mode node (``call["mode"]``: ``kind``, ``composition``, ``batch``...); empty
        for a vjp case."""
        return (self.call or {}).get("mode") or {}

    def layout(self, name: str) -> Layout:
        return self.layouts.get(name, CONTIGUOUS)

    def input_type(self, name: str) -> str:
        return self.types.get(name) or input_type(self.inputs[name])

    def with_inputs(self, **arrays: np.ndarray) -> Case:
        return replace(self, inputs={**self.inputs, **arrays})

    def describe(self) -> dict[str, Any]:
        """JSON-able summary: parameters, shapes, types, layouts, strides (no values); the mode
        when it is not ``vjp`` (so that a vjp case keeps its id)."""
        out = {
            "op": self.op,
            "variant": self.variant,
            "dtype": self.dtype,
            "tier": self.tier,
            "train": self.train,
            "invalid": self.invalid,
            "params": jsonable(self.params),
            "forward_kwargs": jsonable(self.forward_kwargs),
            "inputs": {
                name: {
                    "shape": list(arr.shape),
                    "type": self.input_type(name),
                    "dtype": self.dtype if self.input_type(name) == "float" else self.input_type(name),
                    "layout": self.layout(name).describe(),
                    "strides": list(self.layout(name).strides(arr.shape)),
                    "requires_grad": name in self.differentiable,
                }
                for name, arr in self.inputs.items()
            },
            "note": self.note,
        }
        if self.backward_rule:
            out["backward_rule"] = True
        if self.mode != "vjp":
            out["mode"] = self.mode
        return out

    def case_id(self) -> str:
        """Stable short hash of the description and the values."""
        h = hashlib.sha1(json.dumps(self.describe(), sort_keys=True).encode())
        for group in (self.inputs, self.cotangents, self.choices):
            for name in sorted(group):
                h.update(name.encode())
                h.update(np.ascontiguousarray(group[name]).tobytes())
        return h.hexdigest()[:12]


def jsonable(value: Any) -> Any:
    """Plain JSON data: tuples and arrays become lists, NumPy scalars Python numbers, and
    non-finite floats the strings "inf", "-inf", "nan"."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return repr(value)
    return value


# ``Result.meta`` key: False when the case compiled nothing of its own (it ran on reused graphs).
COMPILED = "compiled"

# Result groups and the prefix of their qualified tensor names.
RESULT_GROUPS = (("outputs", ""), ("grads", "grad."), ("state", "state."), ("choices", "random."))


@dataclass
class Result:
    """What one side computed.

    ``outputs``: the call's results by name; ``grads``: the gradient of each differentiable input;
    ``state``: the value after the call of every tensor the call mutates (an in-place input,
    BatchNorm's running statistics, a renormalised embedding weight, clipped gradients);
    ``choices``: the random choices made (a dropout mask). Arrays are NumPy: float64 for floating
    results, with the dtype each tensor had on the backend in ``dtypes`` (by qualified name).
    ``meta``: scalars the run records (``backend_meta``). One key is read by the harness:
    ``meta[COMPILED] = False`` says the case ran wholly on code compiled for an earlier case (a
    reused graph), so it could not show a compile failure: a known entry explaining only compile
    failures does not count it toward its unexpected-pass check.
    """

    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    grads: dict[str, np.ndarray] = field(default_factory=dict)
    state: dict[str, np.ndarray] = field(default_factory=dict)
    choices: dict[str, np.ndarray] = field(default_factory=dict)
    dtypes: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_tensors(cls, tensors: dict[str, tuple[np.ndarray, str]], meta: dict[str, Any] | None = None,
                     groups: tuple[str, ...] = ("outputs", "grads", "state", "choices")) -> Result:
        """The inverse of ``tensors()``: (array, dtype) by qualified name, each array in its
        group by its prefix; tensors of a group not in ``groups`` are left out."""
        result = cls(meta=dict(meta or {}))
        for qualified, (array, dtype) in tensors.items():
            group, prefix = next(((g, p) for g, p in RESULT_GROUPS[1:] if qualified.startswith(p)), ("outputs", ""))
            if group in groups:
                getattr(result, group)[qualified[len(prefix):]] = array
                result.dtypes[qualified] = dtype
        return result

    def tensors(self) -> dict[str, np.ndarray]:
        """All compared tensors under qualified names: ``output``, ``grad.input``,
        ``state.running_mean``, ``random.mask``."""
        out: dict[str, np.ndarray] = {}
        for group, prefix in RESULT_GROUPS:
            out.update({f"{prefix}{name}": arr for name, arr in getattr(self, group).items()})
        return out


@dataclass(frozen=True)
class Capabilities:
    """What a backend claims to implement, as data.

    ``ops`` lists the catalogue names (or declaration ids such as ``LSTM[packed]``) it
    implements (None: every declared entry); ``modes`` the derivative modes (``MODES``) it runs.
    ``backward``: False for a forward-only backend (an inference runtime): it reports no gradient,
    and the gradients of its cases are recorded as unsupported, never compared and never passed.
    ``accumulates``: it models a tensor's ``.grad``, so that a case whose ``call["grad_init"]``
    presets the gradients (``backends.torch_call.initial_grad``) returns them accumulated; an
    adapter that computes gradients from the cotangents alone leaves it False and gets no such
    case. Anything outside its capabilities is reported as *unsupported*, never as passed.
    """

    devices: tuple[str, ...] = ("cpu",)
    dtypes: tuple[str, ...] = DTYPE_NAMES
    ops: frozenset[str] | None = None
    notes: dict[str, str] = field(default_factory=dict)
    backward: bool = True
    modes: tuple[str, ...] = ("vjp",)
    accumulates: bool = False


class Backend:
    """Base class of adapters. Subclasses set ``name`` and implement ``run``.

    ``run(case)`` executes the case and returns a ``Result``: every output the entry returns
    (named as in ``case.call``'s outputs), the gradient of every name in ``case.differentiable``
    for the cotangents ``case.cotangents``, the value after the call of each tensor named in
    ``case.call["mutated"]`` and, for a stochastic entry, the random choices named in
    ``case.call["random"]``. For a case with ``case.invalid`` set, the backend must raise; a
    ``NotImplementedError`` means "no kernel for this" and is recorded as unsupported.
    """

    name: str = "backend"
    # Other backends' names whose recorded known discrepancies also apply to this one: an adapter
    # that wraps another and replaces a few kernels inherits the known bugs of the rest.
    known_as: tuple[str, ...] = ()

    def capabilities(self) -> Capabilities:
        return Capabilities()

    def availability(self) -> tuple[bool, str]:
        """(available, reason); the reason is shown when unavailable."""
        return True, ""

    def supports(self, op: str, target: str, dtype: str) -> tuple[bool, str]:
        """Whether catalogue entry ``op`` (declaration id ``target``) in ``dtype`` is claimed."""
        caps = self.capabilities()
        if caps.ops is not None and op not in caps.ops and target not in caps.ops:
            return False, f"{self.name} does not implement {target}"
        if dtype not in caps.dtypes:
            return False, f"{self.name} does not support {dtype}"
        return True, ""

    def supports_mode(self, mode: str) -> tuple[bool, str]:
        """Whether the backend runs derivative mode ``mode`` (``Capabilities.modes``)."""
        if mode not in self.capabilities().modes:
            return False, f"{self.name} does not run the {mode} mode"
        return True, ""

    def device(self) -> str:
        return self.capabilities().devices[0]

    def versions(self) -> dict[str, str]:
        return {}

    def run(self, case: Case) -> Result:  # pragma: no cover - interface
        raise NotImplementedError
