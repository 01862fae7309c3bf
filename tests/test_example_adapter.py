"""Plugging in from outside: the example adapter package (examples/nnconform-numpy-adapter), installed
into a fresh virtual environment beside nnconform, is found through the ``nnconform.backends``
entry-point group; and the README's adapter example works as written from a fresh directory.

The virtual environment reuses the packages of the running one (numpy, torch, hypothesis...) through
a ``.pth`` file, so nothing is downloaded; nnconform (this checkout) and the example package are
installed into it with ``pip install --no-deps -e``, as a user would.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from reports.records import read_records

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "nnconform-numpy-adapter"
CLAIMED = ("ReLU", "Linear", "Softmax", "MSELoss")
UNCLAIMED = ("Conv2d", "BatchNorm2d")


def _readme_example() -> str:
    """The README's adapter example, verbatim: the first Python block of "Writing a backend adapter"."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Writing a backend adapter"):]
    start = section.index("```python\n") + len("```python\n")
    return section[start:section.index("```\n", start)]


def _site_dirs() -> list[str]:
    """The running environment's package directories (nox's virtualenv, or the system's)."""
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    paths.update(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))
    return sorted(p for p in paths if os.path.isdir(p))


def _bin(env: Path, name: str) -> Path:
    return env / ("Scripts" if os.name == "nt" else "bin") / name


def _run(args: list[str | os.PathLike[str]], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return subprocess.run([str(a) for a in args], cwd=cwd, env=environ, capture_output=True, text=True,
                          timeout=timeout)


def _pip_install(python: Path, project: Path, cwd: Path) -> None:
    args: list[str | os.PathLike[str]] = [python, "-m", "pip", "install", "--no-deps", "--no-input",
                                          "--disable-pip-version-check", "-q", "-e", project]
    if importlib.util.find_spec("setuptools") is not None:  # else pip fetches one (build isolation)
        args.insert(4, "--no-build-isolation")
    done = _run(args, cwd)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment holding nnconform and the example package (editable installs)."""
    pytest.importorskip("pip")
    base = tmp_path_factory.mktemp("venv")
    env = base / "env"
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(env)
    python = _bin(env, "python")
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], base).stdout.strip()
    Path(purelib, "_outer_environment.pth").write_text("\n".join(_site_dirs()) + "\n", encoding="utf-8")
    # Build from copies, so that the checkout stays untouched (no egg-info, no build directory).
    nnconform = shutil.copytree(ROOT, base / "nnconform", ignore=shutil.ignore_patterns(
        ".git", ".nox", ".venv", "*.egg-info", "build", "__pycache__", "nnconform-report", "examples", ".hypothesis"))
    example = shutil.copytree(EXAMPLE, base / "example", ignore=shutil.ignore_patterns("*.egg-info", "build"))
    _pip_install(python, nnconform, base)
    _pip_install(python, example, base)
    return env


def test_example_package_is_found_and_judged_only_on_what_it_claims(fresh_env: Path, tmp_path: Path) -> None:
    nnconform = _bin(fresh_env, "nnconform")
    listed = _run([nnconform, "backends", "--json"], tmp_path)
    assert listed.returncode == 0, listed.stderr
    info = {b["name"]: b for b in json.loads(listed.stdout)}
    assert "numpy-example" in info, sorted(info)
    assert info["numpy-example"]["available"]
    assert info["numpy-example"]["ops"] == sorted(CLAIMED)
    assert info["numpy-example"]["dtypes"] == ["float64", "float32"]

    report = tmp_path / "report"
    done = _run([nnconform, "run", "--backend", "numpy-example", "--ops", ",".join(CLAIMED + UNCLAIMED),
                 "--dtypes", "float32,float64,float16", "--profile", "ci", "--examples", "4", "--quiet",
                 "-j", "1", "--report-dir", report], tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records = [r for r in read_records(report) if r.get("type", "case") == "case"]
    verdicts: dict[tuple[str, str], set[str]] = {}
    for r in records:
        verdicts.setdefault((r["op"], r["dtype"]), set()).add(r["verdict"])
    for op in CLAIMED + UNCLAIMED:
        for dtype in ("float32", "float64", "float16"):
            claimed = op in CLAIMED and dtype != "float16"
            expected = {"pass"} if claimed else {"unsupported"}
            assert verdicts.get((op, dtype)) == expected, (op, dtype, verdicts.get((op, dtype)))
    assert all(r["backend"] == "numpy-example" for r in records)


def test_readme_adapter_example_runs_from_a_fresh_directory(fresh_env: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "fresh"
    workdir.mkdir()
    (workdir / "my_backend.py").write_text(_readme_example(), encoding="utf-8")
    done = _run([_bin(fresh_env, "nnconform"), "run", "--backend", "my_backend:MyBackend", "--ops", "ReLU,Linear",
                 "--dtypes", "float32,float64", "--examples", "6", "--quiet", "-j", "1"], workdir)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records = list(read_records(workdir / "nnconform-report"))
    verdicts = {(r["op"], r["dtype"]): set() for r in records}
    for r in records:
        verdicts[(r["op"], r["dtype"])].add(r["verdict"])
    assert verdicts == {("ReLU", "float32"): {"pass"}, ("ReLU", "float64"): {"unsupported"},
                        ("Linear", "float32"): {"unsupported"}, ("Linear", "float64"): {"unsupported"}}
    assert all(r["backend"] == "my-accelerator" for r in records)
