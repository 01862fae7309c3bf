"""Known real discrepancies: data in ``conformance/known/*.toml`` (one file per family), plus the
user's own files (``load_known(extra=[...])``), all with one schema.

Each ``[[discrepancy]]`` entry has:

- scope: ``op`` (glob over the declaration id, e.g. ``LSTM[packed]``, and the catalogue name;
  ``*`` and ``?`` are wildcards, ``[23]`` a class of digits, other brackets literal),
  ``backend`` (glob), ``dtype`` (glob, default ``*``), an optional ``when`` (a Python expression
  over ``params``, ``forward_kwargs``, ``shapes`` (input name -> shape tuple), ``layouts`` (input
  name -> layout kind), ``tier``, ``train``, ``dtype``, ``invalid``, ``variant`` and ``cpu`` (the
  CPU's feature flags)) and an optional ``predicate`` (``module:function`` taking the Case, for
  conditions on values); ``mode`` (glob over the derivative mode, ``vjp`` by default: an entry
  for a forward-mode, second-order or vmap discrepancy says ``mode = "jvp"``, ``"vjp2"``,
  ``"vmap"``);
- what it explains: ``tensors`` (globs over the compared tensor names, e.g. ``["grad.*"]``;
  default every tensor) and ``symptom`` (one or a list of ``SYMPTOMS``; default any), and for the
  ``value`` symptom a bound on the error it explains: ``max_utilisation`` (error / allowed
  bound) and/or ``max_ulps`` (error in ulps of the reference);
- ``reason`` (with a minimal repro) and ``link``; ``strict`` (default true) and, for a non-strict
  entry, ``why_not_strict``; ``restart`` (the bug corrupts the process without killing it).

A failing case whose scope matches is *known* only when every failure of the case is explained by
a matching entry: each failing comparison by an entry naming that tensor, with that symptom and
within its bound, and a failure of the call itself (it raised, accepted an invalid case, crashed,
hung, did not compile) by an entry with that symptom. Anything else in the same case keeps the
case a ``fail``. When a strict entry matched cases of a layer × backend × dtype search and none of
them showed its symptom, the run reports an unexpected pass (*xpass*, a discrepancy), so an entry
whose bug was fixed does not linger.
"""

from __future__ import annotations

import functools
import importlib
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backends.base import Case

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
# ``timeout``, ``compile`` (a compiling backend could not compile it).
TENSOR_SYMPTOMS = ("value", "nonfinite", "signed-zero", "index", "shape")
CALL_SYMPTOMS = ("raises", "accepts-invalid", "crash", "timeout", "compile")
SYMPTOMS = TENSOR_SYMPTOMS + CALL_SYMPTOMS
_PREDICATE_BUILTINS = {f.__name__: f for f in (len, any, all, max, min, isinstance, tuple, list, int, str, sum)}


@dataclass(frozen=True)
class KnownDiscrepancy:
    id: str
    op: str
    backend: str
    reason: str
    link: str = ""
    dtype: str = "*"
    when: str = ""
    predicate: str = ""  # "module:function" taking the Case, for conditions an expression can't say
    strict: bool = True
    # The discrepancy can corrupt the backend's process without killing it (heap corruption): the
    # worker is replaced after every matching case. Other failures keep the worker.
    restart: bool = False
    tensors: tuple[str, ...] = ("*",)
    symptom: tuple[str, ...] = SYMPTOMS
    max_utilisation: float | None = None
    max_ulps: float | None = None
    why_not_strict: str = ""
    mode: str = "vjp"  # glob over the derivative mode of the case (``backends.base.MODES``)
    source: str = ""  # "file:line" of the entry

    def __post_init__(self) -> None:
        for name in ("tensors", "symptom"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        unknown = [s for s in self.symptom if s not in SYMPTOMS]
        if unknown:
            raise ValueError(f"unknown symptom {unknown[0]!r} (one of {', '.join(SYMPTOMS)})")

    def explains_call(self, symptom: str) -> bool:
        """Whether the entry explains a failure of the call itself (``CALL_SYMPTOMS``)."""
        return symptom in self.symptom

    def explains(self, comparison: Mapping[str, Any]) -> bool:
        """Whether the entry explains one failing comparison (a ``Comparison.to_dict()``): its
        tensor, its symptoms and, for wrong values, the size of the error."""
        if not any(_glob(p, comparison["tensor"]) for p in self.tensors):
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

    def matches(self, spec: LayerSpec, backend: str | tuple[str, ...], case: Case) -> bool:
        """Whether the entry covers ``case`` of ``spec`` on ``backend`` (a name, or a backend's
        name followed by the names it is known as)."""
        names = (backend,) if isinstance(backend, str) else backend
        op_ok = _glob(self.op, spec.id) or _glob(self.op, spec.name)
        if not (op_ok and any(_glob(self.backend, n) for n in names) and _glob(self.dtype, case.dtype)
                and _glob(self.mode, case.mode)):
            return False
        if self.predicate:
            try:
                if not _load_predicate(self.predicate)(case):
                    return False
            except Exception:  # a predicate cannot judge this case (e.g. invalid parameters)
                return False
        if not self.when:
            return True
        scope = {
            "params": case.params, "forward_kwargs": case.forward_kwargs, "tier": case.tier,
            "train": case.train, "dtype": case.dtype, "invalid": case.invalid, "variant": case.variant,
            "shapes": {k: tuple(v.shape) for k, v in case.inputs.items()},
            "layouts": {k: case.layout(k).kind for k in case.inputs},
            "cpu": cpu_flags(),
        }
        # The scope goes into the globals so that comprehensions in the predicate can see it.
        return bool(eval(self.when, {"__builtins__": _PREDICATE_BUILTINS, **scope}))

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "reason": self.reason, "link": self.link, "strict": self.strict,
                "restart": self.restart, "tensors": list(self.tensors), "symptom": list(self.symptom),
                "mode": self.mode, "source": self.source}


def _float(value: Any) -> float:
    return float(value) if value is not None else 0.0


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
                compile(entry.when, where, "eval")
        except (TypeError, ValueError, SyntaxError) as exc:
            raise ValueError(f"{where}: entry {raw.get('id', '?')!r}: {exc}") from None
        entries.append(entry)
    return entries


def matching(entries: Sequence[KnownDiscrepancy], spec: LayerSpec, backend: str | tuple[str, ...],
             case: Case) -> list[KnownDiscrepancy]:
    """The entries whose scope covers ``case``."""
    return [entry for entry in entries if entry.matches(spec, backend, case)]


def explain(entries: Sequence[KnownDiscrepancy], call_symptom: str | None,
            failing: Sequence[Mapping[str, Any]]) -> list[KnownDiscrepancy] | None:
    """The entries that together explain a failed case (every failing comparison by one entry, and
    the call's own failure ``call_symptom``), in order of use; None when something is left
    unexplained."""
    used: dict[str, KnownDiscrepancy] = {}
    if call_symptom is not None:
        entry = next((e for e in entries if e.explains_call(call_symptom)), None)
        if entry is None:
            return None
        used[entry.id] = entry
    for comparison in failing:
        entry = next((e for e in entries if e.explains(comparison)), None)
        if entry is None:
            return None
        used.setdefault(entry.id, entry)
    return list(used.values()) if used else None
