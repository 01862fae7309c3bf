"""Real run directories for the report tests, made once per test session through the CLI.

Two runs of the same two backends on ReLU and Linear (float32, bfloat16):

- ``clean``: torch-cpu and ``VendorFixed`` (a correct adapter called ``vendor``);
- ``bad``: torch-cpu and ``VendorBuggy`` (the same name, with ReLU'(0) = 1: its gradient at the
  kink is wrong), so ``bad`` has new discrepancies against ``clean`` and ``clean`` fixes them.

The adapters live here (not in ``tests/wrong_backends``) because the regression tests need a
buggy and a fixed adapter that share one backend name, as a vendor's release before and after a fix.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from backends.torch_backend import TorchBackend
from tests.wrong_backends.generic import ReluGradAtZero

OPS = "ReLU,Linear"
DTYPES = "float32,bfloat16"


class VendorFixed(TorchBackend):
    """A correct adapter named ``vendor``."""

    name = "vendor"


class VendorBuggy(ReluGradAtZero):
    """The same ``vendor`` adapter with ReLU's derivative at 0 equal to 1."""

    name = "vendor"


_RUNS: dict[str, tuple[Path, int, str]] = {}


def cli(*argv: str) -> tuple[int, str, str]:
    """Run ``nnconform`` in this process; (exit code, stdout, stderr)."""
    from conformance.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def report_run(kind: str, root: Path) -> tuple[Path, int, str]:
    """(directory, exit code, stdout) of the ``clean`` or ``bad`` run, made under ``root`` once."""
    if kind not in _RUNS:
        vendor = {"clean": "VendorFixed", "bad": "VendorBuggy"}[kind]
        directory = root / kind
        code, out, _ = cli("run", "--backend", "torch-cpu", "--backend", f"tests.report_runs:{vendor}",
                           "--ops", OPS, "--dtypes", DTYPES, "--profile", "ci", "--no-isolate", "-j", "1", "--quiet",
                           "--report-dir", str(directory))
        _RUNS[kind] = (directory, code, out)
    return _RUNS[kind]
