"""Report renderers: terminal summary, HTML, JUnit XML and standalone repro scripts.

Synthetic records cover every verdict; the repro script is run end to end on real torch cases
whose reference values are computed here by hand (NumPy), never by torch.
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from backends.base import Case, Layout
from conformance.artifacts import repro_sources
from conformance.dtypes import DTYPES
from conformance.runner import with_call
from conformance.spec import all_specs
from reports.html import render_html
from reports.junit import build_junit
from reports.publish import render_all
from reports.records import RecordWriter, write_run_info
from reports.repro import render_repro
from reports.terminal import print_summary

REPRO_REL = "repro/Conv2d-torch-cpu-float32-abc.py"


def _case_section(params=None, dtype="float32", layout=None) -> dict:
    return {
        "op": "Conv2d", "dtype": dtype, "tier": "float", "train": True, "invalid": False,
        "params": params or {"in_channels": 2, "out_channels": 3, "kernel_size": [3, 3]},
        "forward_kwargs": {},
        "inputs": {
            "input": {"shape": [1, 2, 5, 5], "dtype": dtype, "layout": layout or {"kind": "channels_last",
                      "perm": [0, 2, 3, 1]}, "strides": [50, 1, 10, 2], "requires_grad": True},
            "weight": {"shape": [3, 2, 3, 3], "dtype": dtype, "layout": {"kind": "contiguous"},
                       "strides": [18, 9, 3, 1], "requires_grad": True},
        },
        "note": "",
    }


def _comparison(tensor, ok, util, worst=()):
    return {"tensor": tensor, "ok": ok, "shape": [1, 3, 3, 3], "size": 27, "mismatches": 0 if ok else 2,
            "max_abs_err": 0.03125 if not ok else 1e-7, "max_rel_err": 0.5 if not ok else 1e-6,
            "max_ulp": 262144.0 if not ok else 1.0, "utilisation": util, "worst_index": [0, 1, 2, 2],
            "exact_elements": 0, "reduction_length": 18, "worst": list(worst),
            "message": "" if ok else "2 of 27 elements out of bound (value)"}


def _record(op="Conv2d", backend="torch-cpu", dtype="float32", verdict="pass", **extra) -> dict:
    record = {
        "type": "case", "run_id": "r1", "op": op, "family": "conv", "backend": backend, "device": "cpu",
        "dtype": dtype, "tier": "float", "verdict": verdict, "final": False, "shrinking": False,
        "case_id": "abc", "case": _case_section(dtype=dtype), "comparisons": [_comparison("output", True, 0.25)],
        "max_utilisation": 0.25, "error": None, "error_side": None, "known": None,
        "call": {"kind": "module", "target": "torch.nn.Conv2d", "init": {"in_channels": 2, "out_channels": 3,
                 "kernel_size": [3, 3]}, "parameters": ["weight"], "buffers": [], "args": [{"input": "input"}],
                 "kwargs": {}, "outputs": "output", "mutated": [], "train": True},
        "regime": None, "regimes": [],
        "artifacts": None, "elapsed_s": {"reference": 0.01, "backend": 0.02},
    }
    record.update(extra)
    return record


WORST = [{"index": [0, 1, 2, 2], "ref": 1.2345678901234567, "got": 1.2658178901234567,
          "err": 0.03125, "bound": 1.5e-6}]


def _synthetic() -> tuple[list[dict], dict]:
    fail = _record(verdict="fail", final=True, max_utilisation=20833.3,
                   case=_case_section(params={"in_channels": 2, "out_channels": 3, "kernel_size": [3, 3],
                                              "padding_mode": "<script>alert(1)</script>"}),
                   comparisons=[_comparison("output", True, 0.3),
                                _comparison("grad.weight", False, 20833.3, WORST)],
                   artifacts={"npz": "repro/Conv2d-torch-cpu-float32-abc.npz", "repro": REPRO_REL})
    records = [
        _record(op="Linear", dtype="float64"),
        _record(op="Linear", dtype="float64"),
        _record(),
        _record(verdict="fail", max_utilisation=40000.0),  # first failure
        _record(verdict="fail", shrinking=True),            # an intermediate shrink step: not counted
        fail,
        _record(op="Linear", dtype="float16", verdict="error", final=True, comparisons=[], max_utilisation=0.0,
                error="RuntimeError: kernel exploded", error_side="backend"),
        _record(op="ReLU", verdict="known", known={"id": "relu-half", "reason": "half ReLU rounds",
                                                    "link": "https://example.org/issue/1"}),
        _record(op="ReLU", dtype="float64", verdict="xpass", final=True,
                known={"id": "relu-half", "reason": "half ReLU rounds", "link": "https://example.org/issue/1"}),
        _record(op="LSTM", dtype="bfloat16", verdict="unsupported", final=True, case=None, comparisons=[],
                call=None, error="torch-cpu does not support bfloat16", elapsed_s={}),
    ]
    run_info = {"argv": ["nnconform", "run", "--ops", "Conv*"], "profile": "ci", "seed": 7,
                "versions": {"torch": "2.x", "numpy": "2.x"}, "duration_s": 1.5, "exit_code": 1,
                "backends": [{"name": "torch-cpu", "available": True, "reason": ""},
                             {"name": "torch-cuda", "available": False, "reason": "no CUDA device"}]}
    return records, run_info


# -- terminal ------------------------------------------------------------------------------------

@pytest.mark.parametrize("width", [80, 120])
def test_terminal_summary_counts_and_failures_first(width):
    records, run_info = _synthetic()
    out = io.StringIO()
    print_summary(records, run_info, Console(file=out, width=width))
    text = out.getvalue()
    assert "Conv2d" in text and "Linear" in text and "ReLU" in text
    rows = [line for line in text.splitlines() if re.match(r"\s*(Conv2d|Linear|ReLU|LSTM)\s", line)]
    # Cells with a discrepancy (Conv2d fail, Linear error, ReLU xpass) come before the clean ones.
    conv = next(line for line in rows if line.lstrip().startswith("Conv2d"))
    assert rows.index(conv) == 0
    clean = [i for i, line in enumerate(rows) if "Linear" in line and "float64" in line]
    assert clean and clean[0] > rows.index(conv)
    # Conv2d drew 2 cases, 1 pass and 1 fail: neither the shrink step nor the shrunk example's final
    # replay is counted (a failing draw counts once)
    if width >= 110:  # one column per verdict
        assert re.search(r"Conv2d\s+torch-cpu\s+float32\s+2\s+1\s+1\s", conv), conv
    else:
        assert "1 pass" in conv and "1 fail" in conv, conv
    assert "torch-cuda" in text and "no CUDA device" in text
    assert "grad.weight" in text and REPRO_REL in text
    assert "<script>alert(1)</script>" in text  # printed verbatim, not interpreted as markup
    assert "kernel exploded" in text


# -- HTML ----------------------------------------------------------------------------------------

def test_html_is_self_contained_and_escaped(tmp_path):
    records, run_info = _synthetic()
    (tmp_path / "repro").mkdir()
    (tmp_path / REPRO_REL).write_text("print('repro <b>script</b>')\n", encoding="utf-8")
    html = render_html(records, run_info, report_dir=tmp_path)
    for tag in re.findall(r"<(?:link|script|img|iframe|source|embed|object)\b[^>]*>", html, flags=re.I):
        assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:)?//", tag, flags=re.I), tag
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "1.2345678901234567" in html and "1.2658178901234567" in html  # worst elements, full precision
    assert "print(&#39;repro &lt;b&gt;script&lt;/b&gt;&#39;)" in html  # repro script inlined, escaped
    assert f'href="{REPRO_REL}"' in html
    assert "half ReLU rounds" in html and 'href="https://example.org/issue/1"' in html
    assert "no CUDA device" in html and "nnconform run --ops &#39;Conv*&#39;" in html
    assert "kernel exploded" in html and "does not support bfloat16" in html
    assert html.count('class="discrepancy') == 3  # fail, error, xpass


# -- JUnit ---------------------------------------------------------------------------------------

def test_junit_counts():
    records, run_info = _synthetic()
    root = ET.fromstring(ET.tostring(build_junit(records, run_info).getroot()))
    cases = {tc.get("name"): tc for tc in root.iter("testcase")}
    assert set(cases) == {"Conv2d[torch-cpu-float32]", "Linear[torch-cpu-float64]", "Linear[torch-cpu-float16]",
                          "ReLU[torch-cpu-float32]", "ReLU[torch-cpu-float64]", "LSTM[torch-cpu-bfloat16]",
                          "backend[torch-cuda]"}
    failed = {n for n, tc in cases.items() if tc.find("failure") is not None}
    skipped = {n for n, tc in cases.items() if tc.find("skipped") is not None}
    assert failed == {"Conv2d[torch-cpu-float32]", "Linear[torch-cpu-float16]", "ReLU[torch-cpu-float64]"}
    assert skipped == {"LSTM[torch-cpu-bfloat16]", "ReLU[torch-cpu-float32]", "backend[torch-cuda]"}
    assert "padding_mode" in cases["Conv2d[torch-cpu-float32]"].find("failure").get("message")
    assert root.get("tests") == "7" and root.get("failures") == "3" and root.get("skipped") == "3"
    for suite in root.iter("testsuite"):
        tcs = suite.findall("testcase")
        assert int(suite.get("tests")) == len(tcs)
        assert int(suite.get("failures")) == sum(tc.find("failure") is not None for tc in tcs)
        assert int(suite.get("skipped")) == sum(tc.find("skipped") is not None for tc in tcs)


def test_render_all_writes_both_files(tmp_path):
    records, run_info = _synthetic()
    with RecordWriter(tmp_path) as writer:
        for record in records:
            writer.write(record)
    write_run_info(tmp_path, run_info)
    paths = render_all(tmp_path)
    assert paths["html"] == tmp_path / "report.html" and paths["junit"] == tmp_path / "junit.xml"
    assert "Conv2d" in paths["html"].read_text(encoding="utf-8")
    assert ET.parse(paths["junit"]).getroot().get("failures") == "3"


# -- repro scripts -------------------------------------------------------------------------------

def _render(record: dict, npz: str) -> str:
    return render_repro(record, npz, repro_sources(), DTYPES[record["dtype"]].max_value,
                        DTYPES[record["dtype"]].unit_roundoff)


def test_repro_script_compiles_for_every_synthetic_record():
    records, _ = _synthetic()
    for record in records:
        compile(_render(record, "x.npz"), "repro.py", "exec")


def test_repro_script_carries_the_suites_interpreter_verbatim():
    """One implementation: the script holds the very source of the call interpreter, its runner
    and the judge (the runner's import of the interpreter aside: the script defines its names)."""
    import inspect

    from backends import torch_call, torch_run
    from conformance import elementwise

    records, _ = _synthetic()
    script = _render(records[0], "x.npz")
    for module in (torch_call, torch_run, elementwise):
        body = inspect.getsource(module).replace("from __future__ import annotations\n", "")
        before, sep, after = body.partition("from backends.torch_call import (")
        parts = [before, after.partition(")\n")[2]] if sep else [body]
        assert all(part in script for part in parts), module.__name__
        assert "from backends.torch_call import" not in script


def _linear_case() -> tuple[Case, dict[str, np.ndarray]]:
    """Linear(3 -> 2) in float32, the input a strided view; reference computed by hand in NumPy."""
    rng = np.random.default_rng(0)
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32).astype(np.float64)  # noqa: E731
    x, w, b = f32(4, 3), f32(2, 3), f32(2)
    case = Case(op="Linear", dtype="float32", params={"in_features": 3, "out_features": 2},
                inputs={"input": x, "weight": w, "bias": b}, differentiable=("input", "weight", "bias"),
                layouts={"input": Layout("strided", step=(2, 3)), "weight": Layout("permuted", perm=(1, 0))})
    g = f32(4, 2)
    refs = {"output": x @ w.T + b, "grad.input": g @ w, "grad.weight": g.T @ x, "grad.bias": g.sum(axis=0)}
    u = 2.0 ** -24
    arrays = {f"input.{k}": v for k, v in case.inputs.items()}
    arrays["cotangent.output"] = g
    for name, ref in refs.items():
        arrays[f"ref.{name}"] = ref
        arrays[f"bound.{name}"] = 8 * u * (1 + np.abs(ref)) * 4  # generous: |terms| are O(1), K <= 4
    return case, arrays


def _repro_record(case: Case) -> dict:
    """The record the runner writes, with the call tree the declaration gives the case."""
    case = with_call(all_specs()[case.op], case)
    return {"op": case.op, "backend": "torch-cpu", "device": "cpu", "dtype": case.dtype, "verdict": "fail",
            "case_id": case.case_id(), "case": case.describe(), "call": case.call}


def _load_script(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem + "_repro", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_script(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120)


def test_repro_end_to_end_linear_strided(tmp_path):
    case, arrays = _linear_case()
    np.savez(tmp_path / "lin.npz", **arrays)
    script = tmp_path / "lin.py"
    script.write_text(_render(_repro_record(case), "lin.npz"), encoding="utf-8")
    done = _run_script(script)
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("output", "grad.input", "grad.weight", "grad.bias"):
        assert name in done.stdout

    # The script gives every input the recorded memory layout (same strides as the case).
    module = _load_script(script)
    arrays_in = np.load(tmp_path / "lin.npz")
    interp = module.CallInterpreter("cpu", "float32", {n: arrays_in[f"input.{n}"] for n in case.inputs},
                                    module.TYPES, module.LAYOUTS, set(module.REQUIRES_GRAD))
    for name, info in case.describe()["inputs"].items():
        tensor = interp.tensor(name)
        assert list(tensor.stride()) == info["strides"] and tensor.is_leaf

    arrays["ref.grad.weight"] = arrays["ref.grad.weight"] + 0.5  # corrupt one reference tensor
    np.savez(tmp_path / "lin.npz", **arrays)
    done = _run_script(script)
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(r"grad\.weight .*MISMATCH", done.stdout) and re.search(r"grad\.bias .* ok", done.stdout)


def test_repro_end_to_end_inplace_relu_and_nan_pattern(tmp_path, capsys):
    """ReLU(inplace=True) on a strided float16 input: output, mutated input and grad are checked;
    a reference NaN where torch has a number is a mismatch."""
    x = np.array([[-1.5, 0.0, 2.0], [3.25, -0.5, 0.125]])
    g = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    case = Case(op="ReLU", dtype="float16", params={"inplace": True}, inputs={"input": x},
                differentiable=("input",), layouts={"input": Layout("strided", step=(1, 2))})
    relu = np.maximum(x, 0.0)
    arrays = {"input.input": x, "cotangent.output": g, "ref.output": relu, "ref.state.input": relu,
              "ref.grad.input": np.where(x > 0, g, 0.0)}
    for name in ("output", "state.input", "grad.input"):
        arrays[f"bound.{name}"] = np.zeros(x.shape)  # no arithmetic: bit-exact
    record = _repro_record(case)
    np.savez(tmp_path / "relu.npz", **arrays)
    script = tmp_path / "relu.py"
    script.write_text(_render(record, "relu.npz"), encoding="utf-8")
    done = _run_script(script)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"state\.input .* ok", done.stdout)

    arrays["ref.output"] = np.where(x == 2.0, np.nan, relu)  # NaN pattern differs from torch's
    np.savez(tmp_path / "relu.npz", **arrays)
    assert _load_script(script).main([]) == 1  # in-process: main() returns the exit status
    assert re.search(r"output .*MISMATCH", capsys.readouterr().out)


# -- terminal: grouping and order ----------------------------------------------------------------

def _known_record(dtype, verdict="known"):
    return _record(op="ReLU", dtype=dtype, verdict=verdict, known={"id": "relu-half", "reason": "half ReLU rounds",
                                                                   "link": "https://example.org/issue/1"})


def test_terminal_groups_known_entries_and_puts_failures_first():
    records, run_info = _synthetic()
    records += [_known_record("float16"), _known_record("bfloat16"), _known_record("bfloat16")]
    out = io.StringIO()
    print_summary(records, run_info, Console(file=out, width=120))
    text = out.getvalue()
    # One paragraph for the entry, naming every dtype it covered (float32, float64, float16, bfloat16).
    assert text.count("Known relu-half") == 1, text
    assert "ReLU on torch-cpu: float64, float32, float16, bfloat16" in text
    assert "4 known, 1 xpass" in text
    # the failures come last, where a CI log is read (findings, or without them the discrepancies)
    assert text.index("Known relu-half") < text.index("Unavailable backend") < text.index("discrepancies:")
    # The clean Linear/float64 cell has its own row; clean cells of one layer × backend share a row.
    clean = [_record(op="Linear", dtype=d) for d in ("float64", "float32", "bfloat16")]
    out = io.StringIO()
    print_summary(clean, {}, Console(file=out, width=120))
    assert re.search(r"Linear\s+torch-cpu\s+f64 f32 bf16\s+3\s+3\s", out.getvalue()), out.getvalue()


def _regime_records() -> list[dict]:
    """MaxPool2d cases: 'ceil_overhang' reached in both dtypes, 'window_in_padding' in float32 only;
    'dilated_padding' is declared (run.json) but never reached."""
    recs = []
    for dtype in ("float32", "float16"):
        recs.append(_record(op="MaxPool2d", dtype=dtype, regime="ceil_overhang", regimes=["ceil_overhang"]))
        recs.append(_record(op="MaxPool2d", dtype=dtype, regimes=[]))
    recs.append(_record(op="MaxPool2d", dtype="float32", regime="window_in_padding",
                        regimes=["window_in_padding", "ceil_overhang"]))
    return recs


def test_regime_coverage_in_terminal_and_html():
    run_info = {"regimes": {"MaxPool2d": ["ceil_overhang", "window_in_padding", "dilated_padding"], "ReLU": []}}
    out = io.StringIO()
    print_summary(_regime_records(), run_info, Console(file=out, width=120))
    text = out.getvalue()
    assert "Regime coverage: 3 regimes of 1 target; 2 left without cases somewhere" in text, text
    assert re.search(r"MaxPool2d: window_in_padding — 0 cases in torch-cpu/float16\b", text)
    assert "MaxPool2d: dilated_padding — 0 cases in any backend × dtype" in text

    html = render_html(_regime_records(), run_info)
    section = html[html.index('id="regimes-section"'):]
    section = section[:section.index("</section>")]
    rows = re.findall(r"<td><strong>MaxPool2d</strong></td><td><code>(\w+)</code></td>(.*?)</tr>", section, flags=re.S)
    counts = {name: re.findall(r'class="num rcol( uncovered)?"[^>]*>(\d+)<', body) for name, body in rows}
    assert counts["ceil_overhang"] == [("", "2"), ("", "1")]  # float32 (2 cases), float16 (1 case)
    assert counts["window_in_padding"] == [("", "1"), (" uncovered", "0")]
    assert counts["dilated_padding"] == [(" uncovered", "0"), (" uncovered", "0")]
    assert "Targets declaring no regimes: ReLU" in section and "2 without cases somewhere" in section


def test_regime_the_backend_declined_is_not_a_coverage_gap():
    """A regime whose float16 cases the backend reported unsupported (no half kernel) is shown as
    n/a, not as a regime the search left without cases."""
    run_info = {"regimes": {"MaxPool2d": ["ceil_overhang", "window_in_padding"]}}
    records = _regime_records() + [_record(op="MaxPool2d", dtype="float16", regime="window_in_padding",
                                           verdict="unsupported", comparisons=[], max_utilisation=None)]
    out = io.StringIO()
    print_summary(records, run_info, Console(file=out, width=120))
    assert "2 regimes of 1 target, each with cases in every backend × dtype" in out.getvalue(), out.getvalue()
    html = render_html(records, run_info)
    assert 'title="1 cases of this regime unsupported by the backend">n/a<' in html


# -- HTML: plots, filters, comparison ------------------------------------------------------------

def test_html_has_plots_filters_sorting_and_comparison():
    records, run_info = _synthetic()
    records += [_record(backend="torch-compile"), _record(backend="torch-compile", dtype="float64")]
    html = render_html(records, run_info)
    for control in ("filter-family", "filter-backend", "filter-dtype", "filter-verdict", "filter-text"):
        assert f'id="{control}"' in html
    assert '<option value="convolution"' not in html and '<option value="conv">conv</option>' in html
    assert '<svg id="colour-map"' in html and html.count('class="mrow filterable"') == 4  # Conv2d, Linear, ReLU, LSTM
    assert html.count('<svg class="spark"') >= 5 and '<svg class="errplot"' in html
    assert 'table class="sortable" id="results"' in html
    assert html.count("<details class=\"discrepancy") == 3
    # Side by side: Conv2d/float32 failed on torch-cpu and passed on torch-compile.
    compare = html[html.index('id="comparison-section"'):]
    compare = compare[:compare.index("</section>")]
    differs = re.findall(r'<tr class="filterable compare-row differs"[^>]*>\s*<td><strong>(\w+)</strong></td>'
                         r'<td>(\w+)</td>', compare)
    assert differs == [("Conv2d", "float32")]  # Conv2d/float64 passed on both; Linear ran on torch-cpu only
    assert re.search(r'<tr class="filterable compare-row"[^>]*>\s*<td><strong>Conv2d</strong></td><td>float64</td>',
                     compare)
    # Filters read data attributes: the failing Conv2d cell is a discrepancy on torch-cpu/float32.
    row = re.search(r'<tr id="cell-1" class="filterable s-fail" ([^>]*)>', html).group(1)
    assert 'data-backend="|torch-cpu|"' in row and 'data-dtype="|float32|"' in row
    assert re.search(r'data-verdict="\|[^"]*fail\|[^"]*discrepancy\|"', row)
    # Self-contained: one inline script, no external resources.
    assert html.count("<script>") == 1 and "<script src" not in html and "http://www.w3.org/2000/svg" in html


def test_html_repro_script_folds_the_verbatim_modules(tmp_path):
    records, run_info = _synthetic()
    script = _render(records[5], "x.npz")
    (tmp_path / "repro").mkdir()
    (tmp_path / REPRO_REL).write_text(script, encoding="utf-8")
    html = render_html(records, run_info, report_dir=tmp_path)
    assert "backends/torch_call.py, verbatim from nnconform:" in html and "folded here" in html
    assert "def run_call(" not in html and "def main(argv=None):" in html
    assert len(html) < len(script) + 150_000


def test_plots_bins_and_error_plot_edge_cases():
    from reports import plots

    assert [plots.util_bin(v) for v in (0.0, 5e-5, 1e-4, 0.3, 1.0, 1.0000001, float("inf"), float("nan"))] == \
        [0, 1, 1, 5, 6, 7, 7, 7]
    assert plots.utilisation_histogram([0.0, 0.0, 2.0]) == [2, 0, 0, 0, 0, 0, 0, 1]
    svg = plots.error_vs_bound([{"index": [0], "err": 2.0, "bound": 0.0},
                                {"index": [1], "err": "inf", "bound": 1e-6},
                                {"index": [2], "err": "nan", "bound": 1e-3},
                                {"index": ["<b>"], "err": 1e-7, "bound": 1e-6}])
    assert svg.count("<circle") == 4 and svg.count('fill="#dc2626"') == 3  # three out of bound, one within
    assert "&lt;b&gt;" in svg and "<b>" not in svg
    assert plots.error_vs_bound([]) == ""
    ET.fromstring(svg)  # well-formed XML
    ET.fromstring(plots.utilisation_sparkline([3, 0, 1, 0, 0, 0, 0, 2]))


def test_error_plot_labels_never_overlap_over_many_decades():
    from reports import plots

    svg = plots.error_vs_bound([{"index": [0], "err": 1e-300, "bound": 1e-310},
                                {"index": [1], "err": 3e20, "bound": 1e-16}])
    ticks = [float(x) for x in re.findall(r'<text class="tick" x="([\d.]+)"', svg)]
    labels = re.findall(r'<text class="tick"[^>]*>(1e-?\d+)</text>', svg)
    assert 5 <= len(ticks) < 20 and labels[0] == "1e-310"  # one label every few decades, not 331
    assert min(b - a for a, b in zip(ticks, ticks[1:])) >= 34  # room for "1e-308" between labels
    assert svg.count("<line") >= 331  # every decade keeps its grid line
    few = plots.error_vs_bound([{"index": [0], "err": 1e-7, "bound": 1e-6}])
    assert re.findall(r'<text class="tick"[^>]*>(1e-?\d+)</text>', few) == ["1e-8", "1e-7", "1e-6", "1e-5"]


def test_colour_map_names_never_run_together_and_unsupported_is_hatched():
    from reports import plots

    def matrix(backends):
        cells = [{"status": "pass", "util": 0.0, "title": "", "anchor": "", "row_id": ""},
                 {"status": "unsupported", "util": None, "title": "", "anchor": "", "row_id": ""}]
        return {"backends": [(b, ["float32"]) for b in backends],
                "rows": [{"op": "ReLU", "attrs": "", "cells": cells[: len(backends)]}]}

    wide = plots.colour_map(matrix(["a", "b"]))
    assert 'transform="rotate(-' not in wide  # short names stay level
    slanted = plots.colour_map(matrix(["torch-compile:inductor", "my-accelerator-backend"]))
    names = re.findall(r'<text class="mback" x="([\d.]+)"[^>]*transform="rotate\(-35', slanted)
    assert len(names) == 2 and float(names[1]) - float(names[0]) >= 30  # each over its own column
    assert ">torch-compile:inductor<" in slanted and "…" not in slanted  # whole names, slanted
    # bit-exact passes and unsupported cells look nothing alike: teal against grey hatching
    assert 'fill="url(#hatch-unsupported)"' in slanted and 'id="hatch-unsupported"' in slanted
    assert f'fill="{plots.BIN_COLOURS[0]}"' in slanted and plots.BIN_COLOURS[0] != "#d4d4d8"
    ET.fromstring(slanted)
    ET.fromstring(plots.colour_map_legend())


@pytest.mark.parametrize("error, line", [
    ("the search failed: FailedHealthCheck: Data generation is extremely slow\nSee settings(\n    deadline=None,\n)",
     "the search failed: FailedHealthCheck: Data generation is extremely slow"),
    ("Traceback (most recent call last):\n  File \"x.py\", line 1, in f\nValueError: bad shape\n  (2, 3)\n)",
     "ValueError: bad shape"),
    ("RuntimeError: kernel exploded", "RuntimeError: kernel exploded"),
    (")\n", ""),
])
def test_an_errors_headline_is_what_happened_never_a_bracket(error, line):
    from reports.render import error_line, headline

    record = _record(verdict="error", comparisons=[], error=error, error_side="harness")
    assert error_line(record) == line and headline(record) == line


def test_html_leads_with_findings_and_shows_the_shrunk_inputs(tmp_path):
    from conformance.findings import analyse

    records, run_info = _synthetic()
    (tmp_path / "repro").mkdir()
    arrays = {"input.input": np.arange(50.0).reshape(1, 2, 5, 5), "input.weight": np.full((3, 2, 3, 3), 0.5),
              "cotangent.output": np.ones((1, 3, 3, 3))}
    np.savez(tmp_path / "repro" / "Conv2d-torch-cpu-float32-abc.npz", **arrays)
    findings = analyse(records)
    html = render_html(records, run_info, report_dir=tmp_path, findings=findings)
    assert html.index('id="findings-section"') < html.index('id="map-section"')
    assert "finding (probable bugs)" in html or "findings (probable bugs)" in html
    section = html[html.index('id="findings-section"'):html.index('id="map-section"')]
    assert 'class="discrepancy filterable fail nested"' in section  # the cases sit under their finding
    # the weight (18 elements) in full, the input (50) in full too; a summary beyond 64 elements
    assert "[[[0.5, 0.5, 0.5], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]" in section
    assert "[[[[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]" in section
    assert f"python {tmp_path}/{REPRO_REL}" in section
    from reports.render import array_text

    summary = array_text(np.arange(100.0))
    assert not summary["full"] and summary["text"].startswith("min 0, max 99, mean 49.5; 0 NaN, 0 ±inf, 1 zeros")


# -- repro scripts through a custom adapter -------------------------------------------------------

def test_repro_script_runs_a_custom_adapter(tmp_path_factory, capsys, monkeypatch):
    """The repro of a discrepancy found on a buggy adapter: run as a script from the checkout with
    --backend module:Class it reproduces the adapter's bug (exit 1); torch.nn and the fixed adapter
    conform (exit 0); an unloadable adapter is exit 2."""
    from tests.report_runs import report_run

    directory, code, _ = report_run("bad", tmp_path_factory.mktemp("runs"))
    assert code == 1
    script = next((directory / "repro").glob("ReLU-vendor-float32-*.py"))
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(script), "--backend", "tests.report_runs:VendorBuggy"],
                          capture_output=True, text=True, timeout=120, cwd=repo)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "running the case through backend vendor" in done.stdout
    assert re.search(r"grad\.input .*MISMATCH", done.stdout)
    worst = re.search(r"reference 0\.0, backend vendor (\S+),", done.stdout)  # ReLU'(0) taken as 1
    assert worst and float(worst.group(1)) != 0.0, done.stdout

    monkeypatch.chdir(repo)
    module = _load_script(script)  # the other paths in this process (torch is already imported)
    assert module.main([]) == 0 and "conforms" in capsys.readouterr().out
    assert module.main(["--backend", "tests.report_runs:VendorFixed"]) == 0
    assert module.main(["--backend", "no_such_module:Backend"]) == 2
    assert "cannot load backend" in capsys.readouterr().out


# -- derivative modes: the mode of a finding and the entry × mode table ------------------------------

def _mode_records() -> list[dict]:
    fail = dict(comparisons=[_comparison("d2.input", False, 20833.3, WORST)], max_utilisation=20833.3)
    return [
        _record(verdict="pass", entry="Conv2d"),
        _record(verdict="pass", mode="jvp", entry="Conv2d"),
        _record(verdict="pass", mode="jvp", entry="Conv2d", case_id="def"),
        _record(verdict="fail", mode="vjp2", entry="Conv2d", **fail),
        _record(verdict="fail", mode="vjp2", entry="Conv2d", final=True, **fail),  # its shrunk replay
        _record(type="unsupported", verdict="unsupported", mode="vmap", entry="Conv2d", case_id=None,
                error="torch: Batching rule not implemented"),
        _record(op="Linear", verdict="known", mode="vmap", entry="Linear", known={"id": "k", "strict": True}),
    ]


def test_entry_by_mode_table_counts_drawn_cases_per_mode():
    from reports.render import mode_cell_text, mode_coverage

    coverage = mode_coverage(_mode_records())
    assert coverage["shown"] and coverage["modes"] == ["vjp", "jvp", "vjp2", "vmap"]
    rows = {r["entry"]: r for r in coverage["rows"]}
    assert [mode_cell_text(c) for c in rows["Conv2d"]["cells"]] == ["1 pass", "2 pass", "1 found", "1 unsupported"]
    assert [mode_cell_text(c) for c in rows["Linear"]["cells"]] == ["–", "–", "–", "1 known"]
    assert rows["Conv2d"]["found"] == 1 and rows["Linear"]["found"] == 0
    assert not mode_coverage([_record(verdict="pass")])["shown"]  # a vjp-only run has no table


def test_modes_in_terminal_html_and_markdown(tmp_path):
    from conformance.findings import analyse
    from reports.markdown import findings_markdown, mode_table_markdown

    records = _mode_records()
    run_info = {"run_id": "r1", "backends": [{"name": "torch-cpu", "available": True}]}
    findings = analyse(records)
    assert findings and all(f.get("example", {}).get("mode") == "vjp2" for f in findings)
    out = io.StringIO()
    print_summary(records, run_info, Console(file=out, width=120), findings=findings)
    text = out.getvalue()
    assert "by mode" in text and "[mode vjp2]" in text
    assert re.search(r"Conv2d\s+1 pass\s+2 pass\s+1 found\s+1 unsupported", text), text
    html = render_html(records, run_info, report_dir=tmp_path, findings=findings)
    section = html[html.index('id="modes-section"'):]
    assert "<th>vjp2</th>" in section and 'class="v-fail">1 found</td>' in section
    assert "mode vjp2</span>" in html[html.index('id="findings-section"'):]
    table = mode_table_markdown(records)
    assert table.splitlines()[0] == "| Entry | vjp | jvp | vjp2 | vmap |"
    assert "| Conv2d | 1 pass | 2 pass | 1 found | 1 unsupported |" in table
    md = findings_markdown(findings, run_info, str(tmp_path), records=records)
    assert "Derivative mode: `vjp2`." in md and md.rstrip().endswith("| Linear | – | – | – | 1 known |")
    # vjp alone: no mode anywhere
    plain = [_record(verdict="pass")]
    assert "by mode" not in summary_text(plain) and 'id="modes-section"' not in render_html(plain, {})


def summary_text(records: list[dict]) -> str:
    out = io.StringIO()
    print_summary(records, {}, Console(file=out, width=120))
    return out.getvalue()


def test_reports_never_import_conformance():
    """Package arrows point one way: conformance imports reports, never the reverse."""
    import ast

    for path in Path(__file__).resolve().parent.parent.joinpath("reports").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))  # (a generated script's text is a string, not an import)
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [m for m in names if m.split(".")[0] == "conformance"], path.name


def test_coverage_classifies_each_completed_target_by_what_its_valid_cases_reached(tmp_path, capsys):
    from conformance.cli import main
    from reports.coverage import target_classes

    def key(op, dtype="float32"):
        return f"{op}|onnxruntime|{dtype}"

    def ort(op, **extra):
        return _record(op=op, backend="onnxruntime", **extra)

    no_comparison = {"comparisons": []}
    records = [
        ort("Conv2d"),  # compared
        ort("Conv2d", verdict="compile", **no_comparison),
        ort("Fold", verdict="compile", **no_comparison),  # export failed, one known
        ort("Fold", verdict="known", known_symptom="compile", known={"id": "e", "symptom": ["compile"]},
            **no_comparison),
        ort("Fold", verdict="unsupported", **no_comparison),
        ort("Bilinear", verdict="known", known={"id": "e", "symptom": ["compile"]}, **no_comparison),  # older run
        ort("GroupNorm", dtype="bfloat16", verdict="unsupported", **no_comparison),  # unsupported
        ort("GroupNorm", dtype="bfloat16", verdict="pass", tier="invalid", **no_comparison),
        ort("AvgPool3d", verdict="error", error="RuntimeError: x", **no_comparison),  # call failed
        ort("Linear"),  # not completed: left out
        ort("Conv2d", shrinking=True, verdict="fail", **no_comparison),
    ]
    with RecordWriter(tmp_path) as writer:
        for record in records:
            writer.write(record)
    write_run_info(tmp_path, {"completed": [key("Conv2d"), key("Fold"), key("Bilinear"), key("GroupNorm", "bfloat16"),
                                            key("AvgPool3d")]})
    assert target_classes([tmp_path]) == {"onnxruntime": {
        key("Conv2d"): "compared", key("Fold"): "export failed", key("Bilinear"): "export failed",
        key("GroupNorm", "bfloat16"): "unsupported", key("AvgPool3d"): "call failed"}}
    assert main(["coverage", str(tmp_path), "--list", "call failed"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2] == "| onnxruntime | 5 | 1 | 2 | 1 | 1 |" and out[3] == f"call failed: {key('AvgPool3d')}"


def test_coverage_tables_saved_from_shards_merge_with_later_runs(tmp_path, capsys):
    from conformance.cli import main
    from reports.coverage import read_saved

    def run(directory, op, **extra):
        with RecordWriter(directory) as writer:
            writer.write(_record(op=op, backend="onnxruntime", **extra))
        write_run_info(directory, {"completed": [f"{op}|onnxruntime|float32"], "run_id": directory.name,
                                   "started": "2026-12-05T00:00:00"})

    run(tmp_path / "a", "Fold", verdict="compile", comparisons=[])
    run(tmp_path / "b", "Conv2d")
    saved = tmp_path / "table" / "ort.jsonl"
    assert main(["coverage", str(tmp_path / "a"), str(tmp_path / "b"), "--save", str(saved)]) == 0
    rows = read_saved(saved)
    fold = rows["Fold|onnxruntime|float32"]
    assert fold["class"] == "export failed" and fold["run"] == "a"
    assert (fold["op"], fold["dtype"], fold["mode"]) == ("Fold", "float32", "vjp")
    legacy = tmp_path / "legacy.jsonl"  # a row saved before rows carried op, dtype and mode: read from its key
    legacy.write_text(json.dumps({"target": "Fold|onnxruntime|float16|jvp", "backend": "onnxruntime",
                                  "class": "compared"}) + "\n")
    assert {k: read_saved(legacy)["Fold|onnxruntime|float16|jvp"][k] for k in ("op", "dtype", "mode")} == {
        "op": "Fold", "dtype": "float16", "mode": "jvp"}
    legacy.write_text(json.dumps({"target": "Fold", "backend": "onnxruntime", "class": "compared"}) + "\n")
    with pytest.raises(ValueError, match="^line 1 is not a row with op, dtype and mode$"):
        read_saved(legacy)
    run(tmp_path / "c", "Fold")  # a later run compares Fold: it replaces the saved row
    capsys.readouterr()
    assert main(["coverage", str(saved), str(tmp_path / "c")]) == 0
    assert capsys.readouterr().out.splitlines()[2] == "| onnxruntime | 2 | 2 | 0 | 0 | 0 |"


def test_coverage_keys_a_target_run_under_backend_options_by_the_backend_name(tmp_path):
    """A run keys its completed targets by the backend as given (``torch-compile:cache=DIR``), its records
    by the backend's name: the table counts them under the name."""
    from reports.coverage import target_classes

    with RecordWriter(tmp_path) as writer:
        writer.write(_record(op="ReLU", backend="torch-compile"))
    spec = "torch-compile:cache=/tmp/c"
    write_run_info(tmp_path, {"completed": [f"ReLU|{spec}|float32"],
                              "backends": [{"name": "torch-compile", "spec": spec, "available": True}]})
    assert target_classes([tmp_path]) == {"torch-compile": {"ReLU|torch-compile|float32": "compared"}}
