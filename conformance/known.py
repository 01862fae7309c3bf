"""Known real discrepancies: data in ``conformance/known/*.toml`` (one file per family), plus the
user's own files (``load_known(extra=[...])``), all with one schema.

Each ``[[discrepancy]]`` entry has:

- scope: ``op`` (glob over the declaration id, e.g. ``LSTM[packed]``, and the catalogue name;
  ``*`` and ``?`` are wildcards, ``[23]`` a class of digits, other brackets literal; or a list of
  globs, of which any may match: one bug shared by several layers is one entry),
  ``backend`` (a glob, or a list of globs: any may match the backend's name or a name it is known
  as; e.g. ``["torch-compile", "torch-compile:inductor:*"]`` is inductor on the CPU, in any mode,
  and not ``torch-compile:aot_eager``; the torch adapters are also known by their name at torch's
  release, so ``torch-cuda@2.11*`` covers CUDA on torch 2.11 only), ``dtype`` (glob, default ``*``),
  an optional ``when`` (a Python expression
  over ``params``, ``forward_kwargs``, ``shapes`` (input name -> shape tuple), ``layouts`` (input
  name -> layout kind), ``tier``, ``train``, ``dtype``, ``invalid``, ``variant``, ``cpu`` (the
  CPU's feature flags), ``threads`` (the intra-op threads the run gives each backend worker: the
  cores over ``-j``; None where the run does not set them, without isolation), ``regimes`` (the
  names of the declaration's regimes the case lies in) and
  ``values`` (input name -> a summary of its values: ``.min``, ``.max`` (NaN ignored; +inf and -inf
  when empty), ``.nan``, ``.inf``, ``.zero`` (bools: some element is NaN, ±inf, ±0), ``.size``))
  and an optional ``predicate`` (``module:function`` taking the Case, and the LayerSpec as ``spec``
  where it names that parameter, for other conditions on values); ``mode`` (glob over the
  derivative mode, or a list of globs of which any may match; ``vjp`` by default: an entry for a
  forward-mode, second-order or vmap discrepancy says ``mode = "jvp"``, ``"vjp2"``, ``"vmap"``, one
  showing in several ``mode = ["jvp", "vjp2"]``);
- what it explains: ``tensors`` (globs over the compared tensor names, e.g. ``["grad.*"]``;
  default every tensor) and ``symptom`` (one or a list of ``SYMPTOMS``; default any but
  ``statistics``), and for the
  ``value`` symptom a bound on the error it explains: ``max_utilisation`` (error / allowed
  bound) and/or ``max_ulps`` (error in ulps of the reference); for a failure of the call, an
  optional ``message`` (a regular expression the recorded error must match: which export failure,
  which exception);
- optionally ``model`` (``module:function(case, reference, got) -> {tensor name: predicted}``, a
  prediction being a value or ``(value, magnitude)`` for its rounding bound):
  what the bug makes the backend compute, from the reference's results and the backend's own
  (e.g. the indices it returned). The entry then explains a failing tensor only when the backend's
  value agrees with the prediction under that tensor's bound, so a different wrong value in the
  same tensor is not hidden;
- ``reason`` (with a minimal repro) and ``link``; ``strict`` (default true) and, for a non-strict
  entry, ``why_not_strict``; ``restart`` (the bug corrupts the process without killing it).

A failing case whose scope matches is *known* only when every failure of the case is explained by
a matching entry: each failing comparison by an entry naming that tensor, with that symptom and
within its bound, and a failure of the call itself (it raised, accepted an invalid case, crashed,
hung, did not compile) by an entry with that symptom. Anything else in the same case keeps the
case a ``fail``. When a strict entry matched cases of a layer × backend × dtype search and none of
them showed its symptom, the run reports an unexpected pass (*xpass*, a discrepancy), so an entry
whose bug was fixed does not linger.

Loading checks every entry: its keys, its symptoms, that ``when`` compiles and names nothing but
the scope above, and that ``predicate`` imports. A malformed entry is a ValueError naming its file
and line (the command line reports it as a usage error). Entries scoped to a backend that is not
running simply match nothing.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import math
import re
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from backends.base import Case, Result

if TYPE_CHECKING:  # pragma: no cover
    from conformance.spec import LayerSpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

KNOWN_DIR = Path(__file__).with_name("known")
# What an entry can explain. Of a compared tensor: ``value`` (finite values beyond the bound),
# ``nonfinite`` (NaN or ±inf where the reference has none, or the reverse), ``signed-zero`` (a zero
# of the wrong sign where the sign is compared), ``index`` (an integer or boolean tensor differs),
# ``shape`` (missing, extra, or of the wrong shape or dtype). Of the call:
# ``raises`` (a valid case raised), ``accepts-invalid`` (an invalid case did not raise), ``crash``,
# ``timeout``, ``compile`` (a compiling backend could not compile it). Of a stochastic target:
# ``statistics`` (a statistical test of its random choices, tensor ``stat.<test>``, fails), which an
# entry explains only when it names it: a default entry never hides a distribution.
TENSOR_SYMPTOMS = ("value", "nonfinite", "signed-zero", "index", "shape")
CALL_SYMPTOMS = ("raises", "accepts-invalid", "crash", "timeout", "compile")
STAT_SYMPTOM = "statistics"
DEFAULT_SYMPTOMS = TENSOR_SYMPTOMS + CALL_SYMPTOMS
SYMPTOMS = DEFAULT_SYMPTOMS + (STAT_SYMPTOM,)
_PREDICATE_BUILTINS = {f.__name__: f for f in (len, any, all, max, min, abs, isinstance, bool, float, int, str, sum,
                                                tuple, list)}


@dataclass(frozen=True)
class KnownDiscrepancy:
    id: str
    op: str | tuple[str, ...]  # a glob over the declaration id and catalogue name, or several
    backend: str | tuple[str, ...]  # a glob, or several (any may match)
    reason: str
    link: str = ""
    dtype: str = "*"
    when: str = ""
    predicate: str = ""  # "module:function" taking the Case, for conditions an expression can't say
    model: str = ""  # "module:function(case, reference, got) -> {tensor: predicted value}"
    strict: bool = True
    # The discrepancy can corrupt the backend's process without killing it (heap corruption): the
    # worker is replaced after every matching case. Other failures keep the worker.
    restart: bool = False
    tensors: tuple[str, ...] = ("*",)
    symptom: tuple[str, ...] = DEFAULT_SYMPTOMS
    max_utilisation: float | None = None
    max_ulps: float | None = None
    # A regular expression the call's error must match (re.search) for the entry to explain a
    # failure of the call (raises, compile, crash, timeout, accepts-invalid): e.g. the exporter's message.
    message: str = ""
    why_not_strict: str = ""
    mode: str | tuple[str, ...] = "vjp"  # glob(s) over the derivative mode of the case (``backends.base.MODES``)
    source: str = ""  # "file:line" of the entry

    def __post_init__(self) -> None:
        for name in ("tensors", "symptom"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        for name in ("op", "backend", "mode"):
            value = getattr(self, name)
            if not isinstance(value, str):
                object.__setattr__(self, name, tuple(value))
                if not value or not all(isinstance(b, str) for b in value):
                    raise ValueError(f"{name} is a glob or a non-empty list of globs")
        unknown = [s for s in self.symptom if s not in SYMPTOMS]
        if unknown:
            raise ValueError(f"unknown symptom {unknown[0]!r} (one of {', '.join(SYMPTOMS)})")
        if self.message:
            try:
                re.compile(self.message)
            except re.error as exc:
                raise ValueError(f"message is not a regular expression: {exc}") from None

    @property
    def ops(self) -> tuple[str, ...]:
        """The op globs (``op`` as a tuple)."""
        return (self.op,) if isinstance(self.op, str) else self.op

    @property
    def backends(self) -> tuple[str, ...]:
        """The backend globs (``backend`` as a tuple)."""
        return (self.backend,) if isinstance(self.backend, str) else self.backend

    @property
    def modes(self) -> tuple[str, ...]:
        """The mode globs (``mode`` as a tuple)."""
        return (self.mode,) if isinstance(self.mode, str) else self.mode

    def explains_call(self, symptom: str, error: str = "") -> bool:
        """Whether the entry explains a failure of the call itself (``CALL_SYMPTOMS``), whose
        recorded ``error`` text must match the entry's ``message`` (a regular expression) if it has one."""
        return symptom in self.symptom and (not self.message or re.search(self.message, error or "") is not None)

    def explains(self, comparison: Mapping[str, Any], modelled: Collection[str] = ()) -> bool:
        """Whether the entry explains one failing comparison (a ``Comparison.to_dict()``): its
        tensor, its symptoms and, for wrong values, the size of the error; for an entry with a
        ``model``, only tensors in ``modelled`` (those agreeing with the model's prediction)."""
        if not any(_glob(p, comparison["tensor"]) for p in self.tensors):
            return False
        if self.model and comparison["tensor"] not in modelled:
            return False
        symptoms = comparison.get("symptoms") or ["shape"]
        if not all(s in self.symptom for s in symptoms):
            return False
        if "value" in symptoms:
            if self.max_utilisation is not None and _float(comparison.get("finite_utilisation")) > self.max_utilisation:
                return False
            if self.max_ulps is not None and _float(comparison.get("max_ulp")) > self.max_ulps:
                return False
        return True

    def matches(self, spec: LayerSpec, backend: str | tuple[str, ...], case: Case, threads: int | None = None) -> bool:
        """Whether the entry covers ``case`` of ``spec`` on ``backend`` (a name, or a backend's
        name followed by the names it is known as) in a run whose workers have ``threads``."""
        names = (backend,) if isinstance(backend, str) else backend
        op_ok = any(_glob(op, spec.id) or _glob(op, spec.name) for op in self.ops)
        if not (op_ok and any(_glob(b, n) for b in self.backends for n in names) and _glob(self.dtype, case.dtype)
                and any(_glob(m, case.mode) for m in self.modes)):
            return False
        if self.predicate:
            try:
                if not call_predicate(_load_predicate(self.predicate), case, spec):
                    return False
            except Exception:  # a predicate cannot judge this case (e.g. invalid parameters)
                return False
        if not self.when:
            return True
        return evaluate_when(self.when, case_scope(spec, case, when_names(self.when), threads))

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "reason": self.reason, "link": self.link, "strict": self.strict,
                "restart": self.restart, "tensors": list(self.tensors), "symptom": list(self.symptom),
                "mode": self.mode if isinstance(self.mode, str) else list(self.mode), "source": self.source}


def _float(value: Any) -> float:
    return float(value) if value is not None else 0.0


# -- the scope of ``when`` -----------------------------------------------------------------------

WHEN_NAMES = ("params", "forward_kwargs", "shapes", "layouts", "tier", "train", "dtype", "invalid", "variant",
              "cpu", "threads", "regimes", "values")


class Values:
    """A summary of one input's values, as ``when`` sees it (``values['input'].min < 0``)."""

    __slots__ = ("min", "max", "nan", "inf", "zero", "size")

    def __init__(self, min: float = math.inf, max: float = -math.inf, nan: bool = False, inf: bool = False,
                 zero: bool = False, size: int = 0):
        self.min, self.max, self.nan, self.inf, self.zero, self.size = min, max, nan, inf, zero, size

    @classmethod
    def of(cls, summary: Mapping[str, Any]) -> Values:
        """From a record's ``values`` entry (``reports.records.summarise_values``)."""
        def number(key: str, default: float) -> float:
            value = summary.get(key)
            return default if value is None else float(value)

        return cls(number("min", math.inf), number("max", -math.inf), bool(summary.get("nan")),
                   bool(summary.get("inf")), bool(summary.get("zero")), int(summary.get("size") or 0))

    def __repr__(self) -> str:
        return (f"Values(min={self.min!r}, max={self.max!r}, nan={self.nan}, inf={self.inf}, zero={self.zero}, "
                f"size={self.size})")


@functools.cache
def when_names(when: str) -> frozenset[str]:
    """The free names a ``when`` expression reads (comprehension variables excluded)."""
    tree = ast.parse(when, mode="eval")
    bound = {target.id for node in ast.walk(tree) if isinstance(node, ast.comprehension)
             for target in ast.walk(node.target) if isinstance(target, ast.Name)}
    return frozenset(node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and node.id not in bound)


def case_scope(spec: LayerSpec, case: Case, names: frozenset[str] | None = None,
               threads: int | None = None) -> dict[str, Any]:
    """The names ``when`` is evaluated with for ``case`` in a run whose workers have ``threads``
    (the costlier ones only when ``names``, the names the expression reads, asks for them)."""
    from reports.records import summarise_values

    scope: dict[str, Any] = {
        "params": case.params, "forward_kwargs": case.forward_kwargs, "tier": case.tier,
        "train": case.train, "dtype": case.dtype, "invalid": case.invalid, "variant": case.variant,
        "shapes": {k: tuple(v.shape) for k, v in case.inputs.items()},
        "layouts": {k: case.layout(k).kind for k in case.inputs},
        "cpu": cpu_flags(), "threads": threads,
    }
    if names is None or "regimes" in names:
        scope["regimes"] = frozenset(spec.regimes_of(case)) if not case.invalid else frozenset()
    if names is None or "values" in names:
        scope["values"] = {k: Values.of(v) for k, v in summarise_values(case.inputs).items()}
    return scope


def evaluate_when(when: str, scope: Mapping[str, Any]) -> bool:
    """``when`` evaluated in ``scope`` (the scope goes into the globals, so that comprehensions
    in the expression can see it)."""
    return bool(eval(when, {"__builtins__": _PREDICATE_BUILTINS, **scope}))


def _check_when(when: str) -> None:
    """A ``when`` that compiles and reads only the scope's names and the allowed builtins."""
    compile(when, "<when>", "eval")
    unknown = sorted(when_names(when) - set(WHEN_NAMES) - set(_PREDICATE_BUILTINS) - {"True", "False", "None"})
    if unknown:
        raise ValueError(f"when reads unknown name{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                         f"(it may read {', '.join(WHEN_NAMES)} and {', '.join(sorted(_PREDICATE_BUILTINS))})")


def _check_predicate(predicate: str, kind: str = "predicate") -> None:
    module_name, sep, attr = predicate.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{kind} {predicate!r} is not 'module:function'")
    try:
        target = _load_predicate(predicate)
    except Exception as exc:
        raise ValueError(f"{kind} {predicate!r} cannot be loaded ({type(exc).__name__}: {exc})") from None
    if not callable(target):
        raise ValueError(f"{kind} {predicate!r} is not callable")


_DIGIT_CLASS = re.compile(r"\[(\d+)\]")


def _glob(pattern: str, name: str) -> bool:
    """``*`` and ``?`` are wildcards; a bracket of digits is a class (``Conv[23]d``: Conv2d,
    Conv3d); any other bracket is literal (``LSTM[packed]`` names a variant)."""
    return _glob_regex(pattern).fullmatch(name) is not None


@functools.cache
def _glob_regex(pattern: str) -> re.Pattern[str]:
    parts = _DIGIT_CLASS.split(pattern)  # literal text and digit classes, alternating
    wild = {"*": ".*", "?": "."}
    regex = "".join("".join(wild.get(ch, re.escape(ch)) for ch in part) if i % 2 == 0 else f"[{part}]"
                    for i, part in enumerate(parts))
    return re.compile(regex, flags=re.S)


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of this machine (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def _load_predicate(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module_name), attr)


@functools.cache
def _takes_spec(fn: Callable[..., Any]) -> bool:
    try:
        return "spec" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        return False


def call_predicate(fn: Callable[..., Any], case: Case, spec: LayerSpec, *args: Any) -> Any:
    """``fn(case, *args)``, or ``fn(case, *args, spec=spec)`` for a predicate or model with a ``spec``
    parameter: one that reads the declaration's facts (``spec.dims``, the spatial dimensionality;
    ``spec.kind``) instead of parsing them out of its name."""
    return fn(case, *args, spec=spec) if _takes_spec(fn) else fn(case, *args)


def load_known(extra: Sequence[Path | str] = (), directory: Path = KNOWN_DIR) -> list[KnownDiscrepancy]:
    """Every entry of the built-in files (``directory/*.toml``, by name), then of ``extra`` (the
    user's own files, in order). A malformed entry raises ValueError naming its file and line."""
    entries: list[KnownDiscrepancy] = []
    for path in [*sorted(Path(directory).glob("*.toml")), *map(Path, extra)]:
        entries += load_file(path)
    seen: dict[str, str] = {}
    for entry in entries:
        if entry.id in seen:
            raise ValueError(f"{entry.source}: known entry {entry.id!r} is also defined at {seen[entry.id]}")
        seen[entry.id] = entry.source
    return entries


def load_file(path: Path) -> list[KnownDiscrepancy]:
    """The entries of one file (ValueError naming the file and line of a malformed one)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the known-discrepancy file ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: {exc}") from None
    lines = [i + 1 for i, line in enumerate(text.splitlines()) if line.strip() == "[[discrepancy]]"]
    entries = []
    for i, raw in enumerate(data.get("discrepancy", [])):
        where = f"{path}:{lines[i] if i < len(lines) else '?'}"
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: an entry is a table")
        missing = [k for k in ("id", "op", "backend", "reason") if k not in raw]
        if missing:
            raise ValueError(f"{where}: entry {raw.get('id', '?')!r} lacks {', '.join(missing)}")
        try:
            entry = KnownDiscrepancy(**raw, source=where)
            if entry.when:
                _check_when(entry.when)
            if entry.predicate:
                _check_predicate(entry.predicate)
            if entry.model:
                _check_predicate(entry.model, "model")
        except (TypeError, ValueError, SyntaxError) as exc:
            message = str(exc).replace("KnownDiscrepancy.__init__()", "an entry")
            raise ValueError(f"{where}: entry {raw.get('id', '?')!r}: {message}") from None
        entries.append(entry)
    return entries


def matching(entries: Sequence[KnownDiscrepancy], spec: LayerSpec, backend: str | tuple[str, ...],
             case: Case, threads: int | None = None) -> list[KnownDiscrepancy]:
    """The entries whose scope covers ``case`` in a run whose workers have ``threads``."""
    return [entry for entry in entries if entry.matches(spec, backend, case, threads)]


def modelled_tensors(entries: Sequence[KnownDiscrepancy], spec: LayerSpec, case: Case, reference: Result,
                     got: Result) -> dict[str, frozenset[str]]:
    """For each entry with a ``model``: the tensors whose backend values agree with the model's
    prediction, each compared as a plain tensor (no declaration comparator: the model says exactly
    what the backend computes) under the bound of its magnitude and the reference's (none when the
    model cannot judge the case)."""
    from conformance.compare import compare_tensor, without_accumulation
    from conformance.tolerance import magnitudes

    out: dict[str, frozenset[str]] = {}
    absref: dict[str, np.ndarray] | None = None
    got = without_accumulation(case, got)  # the gradients themselves, as every comparator judges them
    theirs = got.tensors()
    for entry in entries:
        if not entry.model:
            continue
        try:
            predicted = call_predicate(_load_predicate(entry.model), case, spec, reference, got)
            if absref is None:
                with np.errstate(all="ignore"):
                    absref = magnitudes(spec, case, reference)
        except Exception:
            out[entry.id] = frozenset()
            continue
        agreed = set()
        for name, value in predicted.items():
            try:  # (one tensor the model cannot judge, e.g. of another shape, costs only that tensor)
                value, scale = value if isinstance(value, tuple) else (value, None)
                value = np.asarray(value)
                if scale is None:
                    scale = np.abs(value.astype(np.float64)) if value.dtype.kind == "f" else np.zeros(value.shape)
                if name in absref:
                    scale = np.maximum(scale, np.broadcast_to(absref[name], scale.shape))
                with np.errstate(all="ignore"):
                    comparison = compare_tensor(spec, case, name, value, theirs.get(name), got.dtypes.get(name), scale)
            except Exception:
                continue
            if comparison.ok:
                agreed.add(name)
        out[entry.id] = frozenset(agreed)
    return out


def explain(entries: Sequence[KnownDiscrepancy], call_symptom: str | None,
            failing: Sequence[Mapping[str, Any]],
            modelled: Mapping[str, Collection[str]] | None = None,
            call_error: str = "") -> list[KnownDiscrepancy] | None:
    """The entries that together explain a failed case (every failing comparison by one entry, and
    the call's own failure ``call_symptom``), in order of use; None when something is left
    unexplained. ``modelled``: ``modelled_tensors`` of the entries with a model."""
    modelled = modelled or {}
    used: dict[str, KnownDiscrepancy] = {}
    if call_symptom is not None:
        entry = next((e for e in entries if e.explains_call(call_symptom, call_error)), None)
        if entry is None:
            return None
        used[entry.id] = entry
    for comparison in failing:
        entry = next((e for e in entries if e.explains(comparison, modelled.get(e.id, ()))), None)
        if entry is None:
            return None
        used.setdefault(entry.id, entry)
    return list(used.values()) if used else None
