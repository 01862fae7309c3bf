"""What every ``nnconform`` command shares: exit codes, the one-line errors (``UsageError``, exit 2;
``HarnessError``, exit 3), robust output streams, the saved traceback of an internal error, and the
argument types of the parser.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any, NoReturn

EXIT_OK, EXIT_DISCREPANCY, EXIT_USAGE, EXIT_HARNESS, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
ERROR_LOG = "nnconform-error.log"
DEFAULT_TIMEOUT = 120.0
DEFAULT_REPORT_DIR = "nnconform-report"


class UsageError(Exception):
    """Bad user input: printed as one line, exit code 2."""


class HarnessError(Exception):
    """The harness could not do its job (an unreadable results file, an incomplete merge): one
    line, exit code 3."""


def one_line(text: object, limit: int = 400) -> str:
    """``text`` as one printable line: control characters (terminal escapes too) shown escaped."""
    flat = " ".join(str(text).split())
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in flat)[:limit]


def say(text: str) -> None:
    """One line on stderr, whatever state the stream is in."""
    try:
        print(one_line(text), file=sys.stderr)
    except Exception:  # pragma: no cover - stderr itself is gone
        pass


class PipeSafe:
    """stdout that survives a reader going away (``nnconform list | head``): after a broken pipe,
    further output is dropped and the command still returns its own exit code."""

    def __init__(self, stream: Any):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except (BrokenPipeError, ValueError):
            self._detach()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (BrokenPipeError, ValueError):
            self._detach()

    def _detach(self) -> None:
        import os

        try:  # the interpreter flushes stdout at exit: point the descriptor at /dev/null first
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
        except (OSError, ValueError):
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def robust_streams() -> None:
    """Unencodable characters are escaped (``PYTHONIOENCODING=ascii``), a closed pipe is no error."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        with contextlib.suppress(Exception):
            stream.reconfigure(errors="backslashreplace")
    if not isinstance(sys.stdout, PipeSafe) and hasattr(sys.stdout, "fileno"):
        sys.stdout = PipeSafe(sys.stdout)


def save_traceback(directory: str | None) -> str:
    """Write the current exception's traceback to ``DIR/nnconform-error.log`` (or a temporary
    file); return the path."""
    import tempfile
    import traceback

    text = traceback.format_exc()
    for where in ([directory] if directory else []) + [tempfile.gettempdir()]:
        try:
            path = Path(where)
            path.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                target = path / ERROR_LOG
                target.write_text(text, encoding="utf-8")
                return str(target)
        except OSError:
            continue
    return "(not saved)"


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2, no usage dump
        raise UsageError(message)


def csv_list(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return out


def positive(kind: type) -> Any:
    """An argparse type: a number of ``kind`` (int or float) that must be > 0."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0:
            noun = "integer" if kind is int else "number"
            raise argparse.ArgumentTypeError(f"expected a positive {noun}, got {text!r}")
        return value

    return parse


def shard_arg(text: str) -> tuple[int, int]:
    """K/N with 1 <= K <= N."""
    k, sep, n = text.partition("/")
    try:
        index, count = int(k), int(n)
    except ValueError:
        index = count = 0
    if sep != "/" or not 1 <= index <= count:
        raise argparse.ArgumentTypeError(f"expected K/N with 1 <= K <= N, got {text!r}")
    return index, count


def int_arg(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


BASELINE_HELP = ("an earlier run's report directory: show new, fixed and unchanged discrepancies, "
                  "and exit 1 only when something is new")


def baseline_arg(path: str | None) -> Any:
    """The baseline run of ``--baseline`` (read up front: a bad path fails before the run)."""
    if path is None:
        return None
    from reports.baseline import BaselineError, load_baseline

    try:
        return load_baseline(path)
    except BaselineError as exc:
        raise UsageError(str(exc)) from None



def writable_report_dir(path: Path) -> Path:
    """The report directory, created; a one-line usage error when that is impossible."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".nnconform-write-test"
        probe.write_text("", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write the report directory {str(path)!r}: {exc.strerror or exc}") from None
    return path
