"""Repro scripts of derivative-mode discrepancies (issue #24) compare the mode's own tensors: a
wrong adapter whose J·t (``jvp.*``) or second-order tensors (``d2.*``) are off by 1% is found by a
small run, and the script of its shrunk case, run through that adapter, names the mode tensor as a
MISMATCH and exits 1, while the same case through torch conforms (exit 0). A large jvp output is
judged by its projections only: the script forms ⟨u, J·t⟩ from the saved draws."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backends.torch_backend import TorchBackend
from reports.records import read_records
from tests.test_modes import _run
from tests.test_reports import _load_script, _record, _render

ROOT = Path(__file__).resolve().parents[1]


class _ScalesModeTensors(TorchBackend):
    """torch, with every result tensor whose name starts with ``prefix`` multiplied by 1.01."""

    prefix = ""

    def run(self, case):
        result = super().run(case)
        result.outputs = {k: np.asarray(v) * 1.01 if k.startswith(self.prefix) else v
                          for k, v in result.outputs.items()}
        return result


class JvpScaled(_ScalesModeTensors):
    name = "wrong-jvp-scaled"
    prefix = "jvp."


class SecondOrderScaled(_ScalesModeTensors):
    name = "wrong-d2-scaled"
    prefix = "d2."


RUNS = {"JvpScaled": ("Tanh", "jvp"), "SecondOrderScaled": ("Linear", "vjp2")}
_SCRIPTS: dict[str, Path] = {}


@pytest.fixture
def script_of(tmp_path_factory):
    """The repro script of a final discrepancy of ``adapter``'s small run (made once per session)."""

    def script(adapter: str) -> Path:
        if adapter not in _SCRIPTS:
            directory = tmp_path_factory.mktemp(adapter)
            op, mode = RUNS[adapter]
            assert _run(directory, f"tests.test_repro_modes:{adapter}", op, mode, 4) == 1
            final = next(r for r in read_records(directory) if r["verdict"] == "fail" and r["final"])
            assert "artifact_error" not in final, final["artifact_error"]
            _SCRIPTS[adapter] = directory / final["artifacts"]["repro"]
        return _SCRIPTS[adapter]

    return script


def _main(script: Path, capsys, *argv: str) -> tuple[int, str]:
    code = _load_script(script).main(list(argv))
    return code, capsys.readouterr().out


# adapter, the tensors its script must compare (each line starts with the name), the mode's prefix
CASES = [("JvpScaled", ("jvp.output", "jvp.projection"), "jvp."),
         ("SecondOrderScaled", ("d2.input", "d2.weight", "d2.cotangent.output"), "d2.")]


@pytest.mark.parametrize(("adapter", "tensors", "prefix"), CASES, ids=[c[0] for c in CASES])
def test_repro_script_judges_the_mode_tensors(script_of, capsys, monkeypatch, adapter: str, tensors: tuple[str, ...],
                                              prefix: str):
    script = script_of(adapter)
    monkeypatch.chdir(ROOT)
    code, out = _main(script, capsys, "--backend", f"tests.test_repro_modes:{adapter}")
    assert code == 1 and "DISCREPANCY" in out, out
    mismatched = set(re.findall(r"^(\S+) .*MISMATCH$", out, re.M))
    assert mismatched and all(t.startswith(prefix) for t in mismatched), out  # the primal side is right
    code, out = _main(script, capsys)  # the same case through torch
    assert code == 0 and out.rstrip().endswith("conforms") and "MISSING" not in out, out
    assert all(re.search(rf"^{re.escape(tensor)} .* ok$", out, re.M) for tensor in tensors), out


def test_standalone_script_of_a_second_order_case(script_of):
    """The script as a separate process, with the adapter imported from the checkout."""
    script = script_of("SecondOrderScaled")
    done = subprocess.run([sys.executable, str(script), "--backend", "tests.test_repro_modes:SecondOrderScaled"],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          timeout=120)
    assert done.returncode == 1 and re.search(r"^d2\.\S+ .*MISMATCH$", done.stdout, re.M), done.stdout + done.stderr


def test_projection_alone_catches_a_wrong_jvp(script_of, tmp_path: Path, capsys, monkeypatch):
    """Without the elementwise jvp.<output> (a large output is judged by projections only), the
    script still finds the wrong J·t through jvp.projection, and torch's conforms."""
    script = script_of("JvpScaled")
    arrays = np.load(script.with_suffix(".npz"))
    kept = {k: arrays[k] for k in arrays.files if not re.match(r"(ref|bound|unjudged)\.jvp\.(?!projection$)", k)}
    assert {k for k in kept if k.startswith("projection.u")} and "ref.jvp.projection" in kept
    np.savez(tmp_path / "projection_only.npz", **kept)
    monkeypatch.chdir(ROOT)
    npz = str(tmp_path / "projection_only.npz")
    code, out = _main(script, capsys, "--npz", npz, "--backend", "tests.test_repro_modes:JvpScaled")
    assert code == 1 and re.search(r"^jvp\.projection .*MISMATCH$", out, re.M) and "jvp.output" not in out, out
    code, out = _main(script, capsys, "--npz", npz)
    assert code == 0 and re.search(r"^jvp\.projection .* ok$", out, re.M), out


def test_unjudged_elements_take_the_backends_value(tmp_path: Path):
    """An element the run did not judge (no reference there) is not judged by the script either."""
    script = tmp_path / "repro.py"
    script.write_text(_render(_record(dtype="float64"), "x.npz"), encoding="utf-8")
    module = _load_script(script)
    ref, bound = np.array([1.0, np.nan]), np.array([0.1, np.nan])
    got = (np.array([1.05, 7.0]),)
    assert module.check("d2.input", ref, bound, got, unjudged=np.array([False, True]))
    assert not module.check("d2.input", ref, bound, got)
    assert not module.check("d2.input", ref, bound, (np.array([1.5, 7.0]),), unjudged=np.array([False, True]))
