"""Known real discrepancies: data in ``conformance/known_discrepancies.toml``.

Each entry names the layer (glob over the declaration id, e.g. ``LSTM[packed]``, and the catalogue
name; ``*`` and ``?`` are wildcards, ``[23]`` a class of digits, other brackets literal),
backend (glob), dtype (glob, optional), an optional
``when`` predicate — a Python expression over ``params``, ``forward_kwargs``, ``shapes`` (input
name -> shape tuple), ``layouts`` (input name -> layout kind), ``tier``, ``train`` and ``dtype``, and/or a
``predicate`` function (``module:function`` taking the Case) for conditions on values —
the ``reason`` and a ``link``. A failing case that matches is reported as *known*. When a strict
entry (the default) matched cases of a layer × backend × dtype search and none of them failed, the
run reports an unexpected pass (*xpass*, a discrepancy), so an entry whose bug was fixed does not
linger. A predicate sees parameters and shapes, not values, so it may match some passing cases too.
"""

from __future__ import annotations

import functools
import importlib
import re
import sys
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

KNOWN_FILE = Path(__file__).with_name("known_discrepancies.toml")
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

    def matches(self, spec: LayerSpec, backend: str | tuple[str, ...], case: Case) -> bool:
        """Whether the entry covers ``case`` of ``spec`` on ``backend`` (a name, or a backend's
        name followed by the names it is known as)."""
        names = (backend,) if isinstance(backend, str) else backend
        op_ok = _glob(self.op, spec.id) or _glob(self.op, spec.name)
        if not (op_ok and any(_glob(self.backend, n) for n in names) and _glob(self.dtype, case.dtype)):
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
                "restart": self.restart}


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


def load_known(path: Path = KNOWN_FILE) -> list[KnownDiscrepancy]:
    """Parse the known-discrepancy file; a malformed entry raises ValueError naming it."""
    if not path.exists():
        return []
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    entries = []
    for i, raw in enumerate(data.get("discrepancy", [])):
        try:
            entries.append(KnownDiscrepancy(**raw))
        except TypeError as exc:
            raise ValueError(f"{path.name}: entry {i} ({raw.get('id', '?')}): {exc}") from None
    return entries


def match_known(entries: list[KnownDiscrepancy], spec: LayerSpec, backend: str | tuple[str, ...],
                case: Case) -> KnownDiscrepancy | None:
    for entry in entries:
        if entry.matches(spec, backend, case):
            return entry
    return None
