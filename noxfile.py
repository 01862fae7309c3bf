"""nox sessions: ``conformance`` (the suite against torch), ``tests`` (nnconform's own tests),
``lint`` and ``benchmark``.

torch is pinned through ``constraints.txt`` so that a fresh machine installs the same build CI
uses. To test another torch build, point NNCONFORM_CONSTRAINTS at your own constraints file (e.g.
one pinning ``torch==2.5.1+cu124`` with PIP_EXTRA_INDEX_URL set to that build's index).
"""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

CONSTRAINTS = ["-c", os.environ.get("NNCONFORM_CONSTRAINTS", "constraints.txt")]


@nox.session
def conformance(session: nox.Session) -> None:
    """Run the declared catalogue against torch-cpu (and torch-cuda where a GPU is present)."""
    session.install(*CONSTRAINTS, "-e", ".[torch]")
    args = session.posargs or ["--profile", "ci"]
    session.run("nnconform", "backends")
    session.run("nnconform", "run", "--backend", "torch-cpu", "--backend", "torch-cuda", "--skip-unavailable",
                "--report-dir", "nnconform-report", *args)


@nox.session(name="long-backends")
def long_backends(session: nox.Session) -> None:
    """The catalogue through the long backends, one shard: ``nox -s long-backends -- torch-compile 1/4``
    (backend, shard K/N; the compile cache in .nnconform-compile-cache, for CI to keep between runs).
    Exit 0 when every discrepancy is a known entry."""
    session.install(*CONSTRAINTS, "-e", ".[onnx]")
    args = list(session.posargs) or ["torch-compile"]
    backend, part = args[0], args[1] if len(args) > 1 else "1/1"
    if backend.startswith("torch-compile") and "cache=" not in backend:
        backend += ":cache=.nnconform-compile-cache"
    report = f"nnconform-report-{backend.split(':')[0]}-{part.replace('/', '-of-')}"
    session.run("nnconform", "run", "--backend", backend, "--profile", "ci", "--shard", part, "-j", "2",
                "--report-dir", report)


@nox.session
def tests(session: nox.Session) -> None:
    """nnconform's own tests: references, strategies, tolerance model, reports, CLI, wrong backends.
    On every core (pytest-xdist); an idle worker takes pending tests from a busy one (worksteal: a
    few wrong-adapter runs take far longer than the thousands of per-declaration checks, so fixed
    chunks leave one core idle at the end). ``nox -s tests -- -n 0`` runs them in one process."""
    session.install(*CONSTRAINTS, "-e", ".[test]")
    session.run("pytest", "-q", "-n", "auto", "--dist", "worksteal", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session
def benchmark(session: nox.Session) -> None:
    """Speed tables (prints; not a test): per family cases/s, harness overhead and reference/torch
    ratio, -j scaling and shrinking speed (bench_catalogue), then each family's reference-vs-torch
    timings on realistic sizes. ``nox -s benchmark -- --budget`` also times the full ci run and the
    tests."""
    session.install(*CONSTRAINTS, "-e", ".[torch]")
    session.run("python", "benchmarks/bench_catalogue.py", "--jobs", "--shrink", *session.posargs)
    for script in sorted(os.listdir("benchmarks")):
        if script.startswith("bench_") and script.endswith(".py") and script != "bench_catalogue.py":
            session.run("python", f"benchmarks/{script}")
