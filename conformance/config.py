"""The adopter's project configuration: a ``[tool.nnconform]`` table in their ``pyproject.toml``.

::

    [tool.nnconform]
    backends = ["my_adapter:MyBackend"]       # default --backend (a list, or one string)
    ops = ["Conv*", "Linear"]                 # default --ops (names, declaration ids or globs)
    dtypes = ["float32", "bfloat16"]          # default --dtypes
    profile = "ci"                            # default --profile
    known = ["nnconform-known.toml"]          # the project's known-discrepancy files (--known adds more)
    report-dir = "build/nnconform"            # default --report-dir (``report_dir`` is accepted too)

The file is found from the current directory upward: the nearest ``pyproject.toml`` is the
project's, and its table (if it has one) applies; ``--config FILE`` names another file and
``--no-config`` ignores it. Paths in the table (``known``, ``report-dir``) are relative to the
directory of the file that holds it. Options given on the command line win over the table, except
``--known``, whose files are added to the table's. Both ``nnconform`` and the pytest plugin read it.

A table that cannot be used (a TOML syntax error, an unknown key, a value of the wrong type) is a
``ConfigError`` naming the file and, where it can, the line.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PYPROJECT = "pyproject.toml"
TABLE = "tool.nnconform"
LISTS = ("backends", "ops", "dtypes", "known")
KEYS = (*LISTS, "profile", "report-dir")
_ALIASES = {"report_dir": "report-dir", "backend": "backends"}


class ConfigError(ValueError):
    """The configuration cannot be used (a one-line message naming the file and line)."""


@dataclass(frozen=True)
class Config:
    """The settings of one ``[tool.nnconform]`` table (empty where the table says nothing)."""

    path: Path | None = None
    backends: tuple[str, ...] = ()
    ops: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ()
    profile: str | None = None
    known: tuple[str, ...] = ()  # absolute paths
    report_dir: str | None = None  # relative to the current directory when below it, else absolute
    keys: tuple[str, ...] = field(default=(), compare=False)  # the keys the table set

    def describe(self) -> dict[str, Any]:
        """What run.json records of it."""
        return {"path": str(self.path) if self.path else None, "keys": list(self.keys)}


def find_pyproject(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The nearest ``pyproject.toml`` from ``start`` (default: the current directory) upward."""
    here = Path(start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / PYPROJECT
        if candidate.is_file():
            return candidate
    return None


def load_config(path: str | os.PathLike[str] | None = None, start: str | os.PathLike[str] | None = None,
                required: bool = False) -> Config:
    """The ``[tool.nnconform]`` table of ``path``, or of the nearest pyproject.toml from ``start``
    upward (an empty ``Config`` when there is none). ``required``: ``path`` must hold the table."""
    if path is None:
        found = find_pyproject(start)
        if found is None:
            return Config()
        path = found
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the configuration ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    table = data.get("tool", {}).get("nnconform") if isinstance(data.get("tool"), dict) else None
    if table is None:
        if required:
            raise ConfigError(f"{path}: has no [{TABLE}] table")
        return Config()
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{TABLE}] must be a table")
    return _parse(path, text, table)


def _line_of(text: str, key: str) -> str:
    """``:LINE`` of ``key = ...`` inside the table (empty when it cannot be found)."""
    in_table = False
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("["):
            in_table = stripped.replace(" ", "") in (f"[{TABLE}]",)
            continue
        if in_table and re.match(rf'["\']?{re.escape(key)}["\']?\s*=', stripped):
            return f":{number}"
    return ""


def _parse(path: Path, text: str, table: dict[str, Any]) -> Config:
    base = path.resolve().parent
    values: dict[str, Any] = {}
    for raw_key, value in table.items():
        key = _ALIASES.get(raw_key, raw_key)
        where = f"{path}{_line_of(text, raw_key)}"
        if key not in KEYS:
            raise ConfigError(f"{where}: unknown key {raw_key!r} in [{TABLE}] (known: {', '.join(KEYS)})")
        if key in LISTS:
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list) or not all(isinstance(v, str) and v.strip() for v in items) or not items:
                raise ConfigError(f"{where}: {raw_key} must be a non-empty string or list of strings")
            values[key] = tuple(v.strip() for v in items)
        elif not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where}: {raw_key} must be a non-empty string")
        else:
            values[key] = value.strip()
    if "profile" in values:
        from conformance.profiles import PROFILES

        if values["profile"] not in PROFILES:
            raise ConfigError(f"{path}{_line_of(text, 'profile')}: unknown profile {values['profile']!r} "
                              f"(one of {', '.join(sorted(PROFILES))})")
    known = tuple(str(_resolve(base, p)) for p in values.get("known", ()))
    report_dir = _display_path(_resolve(base, values["report-dir"])) if "report-dir" in values else None
    return Config(path=path, backends=values.get("backends", ()), ops=values.get("ops", ()),
                  dtypes=values.get("dtypes", ()), profile=values.get("profile"), known=known,
                  report_dir=report_dir, keys=tuple(values))


def _resolve(base: Path, value: str) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else base / path


def _display_path(path: Path) -> str:
    """``path`` relative to the current directory when it lies below it (so commands printed with
    it work from here), else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())
