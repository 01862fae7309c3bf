"""Derivative modes (issue #24): ``--mode`` parsing, backends' mode capabilities, no false alarm on
correct torch over a few entries in every mode, each deliberately wrong adapter of
``tests.wrong_backends.modes`` caught and shrunk, and pytorch#196699 (batch_norm's nested
forward-mode second derivative) as it stands in the installed torch."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from backends.base import MODES, Backend
from backends.torch_backend import TorchBackend
from conformance.cli import main
from conformance.modes import applicable, mode_option, parse_modes
from conformance.reference_backend import ReferenceBackend
from conformance.spec import all_specs
from reports.records import read_records


def _run(tmp_path: Path, backend: str, ops: str, modes: str, examples: int, dtypes: str = "float64") -> int:
    return main(["run", "--backend", backend, "--ops", ops, "--mode", modes, "--dtypes", dtypes,
                 "--profile", "ci", "--examples", str(examples), "--no-invalid", "--no-isolate", "--quiet",
                 "--report-dir", str(tmp_path)])


def test_mode_option_parses_lists_and_all():
    assert parse_modes("vjp") == ("vjp",)
    assert parse_modes("vmap, jvp") == ("jvp", "vmap")  # canonical order
    assert parse_modes("all") == MODES == ("vjp", "jvp", "vjp2", "vmap")
    for bad in ("", "hessian", "jvp,,fwd"):
        with pytest.raises(argparse.ArgumentTypeError):
            mode_option(bad)


def test_backends_declare_their_modes():
    assert TorchBackend("cpu").capabilities().modes == MODES
    assert ReferenceBackend().capabilities().modes == ("vjp",)
    ok, why = Backend().supports_mode("vjp2")
    assert not ok and "vjp2" in why
    assert applicable(all_specs()["Linear"], "jvp") == (True, "")


def test_a_backend_without_a_mode_is_unsupported_never_passed(tmp_path: Path):
    code = _run(tmp_path, "reference", "Linear", "jvp", 4)
    records = list(read_records(tmp_path))
    assert code == 3 and records  # no case was run: an incomplete run, not a pass
    assert [(r["verdict"], r["mode"]) for r in records] == [("unsupported", "jvp")], records
    assert "jvp" in records[0]["error"]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_no_false_alarm_on_correct_torch(tmp_path: Path, dtype: str):
    """The derived bounds (adjoint identity, finite differences with Richardson's error estimate,
    per-slice tolerances) on correct torch, in float64 and float32 (where cancellation, shift
    invariance and the range's edge bite: softmax at large equal inputs, batch norm over two values,
    PReLU near float32's largest value): every case passes or is explained by a known entry of its
    mode (PReLU's forward-mode slope at 0, batch_norm's JVP rule differentiated, softmax's vmap over
    0-d slices), or is unsupported with torch's reason."""
    code = _run(tmp_path, "torch-cpu", "Linear,Softmax,BatchNorm1d,PReLU", "jvp,vjp2,vmap", 4, dtype)
    records = [r for r in read_records(tmp_path) if not r["shrinking"]]
    verdicts = Counter((r["mode"], r["verdict"]) for r in records)
    assert code == 0, verdicts
    assert {v for _, v in verdicts} <= {"pass", "known", "unsupported"}, verdicts
    assert {m for m, v in verdicts if v == "pass"} == {"jvp", "vjp2", "vmap"}, verdicts
    known = {r["known"]["id"] for r in records if r["verdict"] == "known"}
    assert known <= {"batchnorm-jvp-rule-wrong-to-second-order", "prelu-jvp-slope-at-zero-differs-from-backward",
                     "softmax-vmap-scalar-slices-grad-zero-at-nonfinite"}, known


def test_vmap_of_in_place_utilities(tmp_path: Path):
    """clip_grad_value_ under vmap clamps each slice's .grad, which is read back from the parameter
    (not the value that was passed in); vector_to_parameters assigns Tensor.data, which torch.func
    refuses: unsupported, with torch's reason."""
    code = _run(tmp_path, "torch-cpu", "clip_grad_value_,vector_to_parameters", "vmap", 4, "float64")
    records = [r for r in read_records(tmp_path) if not r["shrinking"]]
    verdicts = Counter((r["op"], r["verdict"]) for r in records)
    assert code == 0, verdicts
    clip = {v for op, v in verdicts if op == "clip_grad_value_"}
    assert "pass" in clip and clip <= {"pass", "known", "unsupported"}, verdicts  # (foreach: no batching rule)
    refused = [r for r in records if r["op"] == "vector_to_parameters" and r.get("case_id")]
    assert refused and all(r["verdict"] == "unsupported" and "`data` under vmap" in r["error"] for r in refused)


WRONG = [
    ("SoftmaxJvpDropsNormalisation", "Softmax", "jvp", "jvp."),
    ("LinearJvpDropsWeightTangent", "Linear", "jvp", "jvp."),
    ("BatchNormDoubleBackwardConstantStatistics", "BatchNorm1d", "vjp2", "d2."),
    ("PReLUDoubleBackwardDropsMixedTerm", "PReLU", "vjp2", "d2."),
    ("SoftmaxBatchingRuleAssumesDimZero", "Softmax", "vmap", "vmap["),
    ("BatchNormBatchingRuleMixesCases", "BatchNorm1d", "vmap", "vmap["),
]


@pytest.mark.parametrize(("adapter", "op", "mode", "prefix"), WRONG, ids=[w[0] for w in WRONG])
def test_wrong_adapter_is_caught_and_shrunk(tmp_path: Path, adapter: str, op: str, mode: str, prefix: str):
    code = _run(tmp_path, f"tests.wrong_backends.modes:{adapter}", op, mode, 10)
    assert code == 1
    final = [r for r in read_records(tmp_path) if r["verdict"] == "fail" and r["final"]]
    assert final and all(r["mode"] == mode for r in final)
    failing = {c["tensor"] for r in final for c in r["comparisons"] if not c["ok"]}
    assert failing and all(t.startswith(prefix) for t in failing), failing
    size = min(sum(int(np.prod(i["shape"])) for i in r["case"]["inputs"].values()) for r in final)
    assert size <= 16, final[0]["case"]


def test_vmap_repro_script_compares_every_slice(tmp_path: Path):
    """A vmap discrepancy's repro script holds each slice's reference (``vmap[b].<tensor>``): through
    torch the case conforms, through the wrong adapter it is a discrepancy, and no tensor is missing."""
    import os
    import subprocess
    import sys

    adapter = "tests.wrong_backends.modes:SoftmaxBatchingRuleAssumesDimZero"
    assert _run(tmp_path, adapter, "Softmax", "vmap", 4) == 1
    final = next(r for r in read_records(tmp_path) if r["verdict"] == "fail" and r["final"])
    script = tmp_path / final["artifacts"]["repro"]
    root = Path(__file__).resolve().parents[1]
    runs = {who: subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, cwd=root,
                                env={**os.environ, "PYTHONPATH": str(root)})
            for who, args in (("torch", []), ("adapter", ["--backend", adapter]))}
    for who, run in runs.items():
        assert "MISSING" not in run.stdout and "vmap[1]." in run.stdout, (who, run.stdout, run.stderr)
    assert runs["torch"].returncode == 0 and "conforms" in runs["torch"].stdout, runs["torch"].stdout
    assert runs["adapter"].returncode == 1 and "DISCREPANCY" in runs["adapter"].stdout, runs["adapter"].stdout


def test_wrong_double_backward_is_a_correct_first_order_rule(tmp_path: Path):
    """The constant-statistics batch norm is right to first order (its jvp and vjp pass): only the
    second order sees the mistake, as with pytorch#196699."""
    assert _run(tmp_path, "tests.wrong_backends.modes:BatchNormDoubleBackwardConstantStatistics", "BatchNorm1d",
                "vjp,jvp", 6) == 0


def _batch_norm_196699(t: torch.Tensor) -> torch.Tensor:
    x = torch.stack([(i + 1) * t + (i % 3 - 1) * t * t + i for i in range(8)]).reshape(2, 2, 2)
    weight = torch.tensor([1.5, -0.5], dtype=t.dtype)
    bias = torch.tensor([0.25, 1.0], dtype=t.dtype)
    y = torch.nn.functional.batch_norm(x, None, None, weight=weight, bias=bias, training=True, momentum=0.1, eps=0.25)
    return (y * torch.arange(1, 9, dtype=t.dtype).reshape(2, 2, 2)).sum()


def test_pytorch_196699_batch_norm_forward_over_forward():
    """pytorch#196699: the nested forward-mode second derivative of F.batch_norm (training, float64,
    CPU) is -2.1324 where the true value is -0.20703. Reverse-over-reverse and forward-over-reverse
    (the compositions the vjp2 mode uses) are right; forward-over-forward is still wrong in
    torch 2.13. When torch fixes it, this test says so."""
    t, one = torch.tensor(-6.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)
    truth = -0.20703015646993195
    h = 2.0**-10
    fd = ((_batch_norm_196699(t + h) - 2 * _batch_norm_196699(t) + _batch_norm_196699(t - h)) / h**2).item()
    assert fd == pytest.approx(truth, rel=1e-6)
    tr = t.clone().requires_grad_()
    (g,) = torch.autograd.grad(_batch_norm_196699(tr), tr, create_graph=True)
    (reverse_over_reverse,) = torch.autograd.grad(g, tr)
    assert reverse_over_reverse.item() == pytest.approx(truth, rel=1e-12)
    forward_over_reverse = torch.func.jvp(torch.func.grad(_batch_norm_196699), (t,), (one,))[1]
    assert forward_over_reverse.item() == pytest.approx(truth, rel=1e-12)
    first = lambda s: torch.func.jvp(_batch_norm_196699, (s,), (torch.ones_like(s),))[1]  # noqa: E731
    forward_over_forward = torch.func.jvp(first, (t,), (one,))[1].item()
    if forward_over_forward != pytest.approx(truth, rel=1e-12):
        assert forward_over_forward == pytest.approx(-2.132438339486815, rel=1e-12), (
            f"pytorch#196699 changed: forward-over-forward gives {forward_over_forward}")


def test_vjp2_demands_exact_zeros_only_where_the_gradient_is_constant(tmp_path: Path):
    """The zero rule (an identically zero second derivative, returned as exact zeros) holds where the
    reference's gradient stays the same one coarse step along v and v∘s: Hardtanh between its kinks,
    LayerNorm over one element. Central differences also vanish for LayerNorm of values far below
    √eps (the gradient is even there) and of values too large for the step to move: those cases are
    judged by the difference's bound, and torch's tiny non-zero second derivative passes."""
    code = _run(tmp_path, "torch-cpu", "LayerNorm,Hardtanh", "vjp2", 40)
    records = [r for r in read_records(tmp_path) if not r["shrinking"] and r["verdict"] != "unsupported"]
    verdicts = Counter(r["verdict"] for r in records)
    assert code == 0 and set(verdicts) <= {"pass", "known"}, verdicts
    known = {r["known"]["id"] for r in records if r["verdict"] == "known"}
    zero = Counter((r["op"], (r.get("mode_info") or {}).get("second_order")) for r in records)
    assert zero[("Hardtanh", "zero")] and zero[("LayerNorm", "nonzero")], zero
    extreme = [r for r in records if r["op"] == "LayerNorm" and "one normalized element (K = 1)" not in r["regimes"]
               and {"huge magnitudes", "tiny magnitudes"} & set(r["regimes"])]  # (K = 1: a constant layer)
    assert known <= {"layernorm-jvp-rule-wrong-to-second-order", "layernorm-jvp-rstd-cubed-underflow-transposed"}
    assert extreme and all(r["mode_info"]["second_order"] == "nonzero" for r in extreme), extreme[:1]


def test_vjp_entries_with_a_model_explain_vmap_slices(tmp_path: Path):
    """CosineSimilarity's clamped-norm gradient entry explains a tensor only where torch's value
    agrees with its model; under vmap the runner applies that model to each slice (its own case,
    reference and results), so the slices torch gets wrong in that way are known, not findings."""
    code = _run(tmp_path, "torch-cpu", "CosineSimilarity", "vmap", 40, "float64")
    records = [r for r in read_records(tmp_path) if not r["shrinking"]]
    known = [r for r in records if r["verdict"] == "known"]
    assert code == 0, Counter(r["verdict"] for r in records)
    assert any(r["known"]["id"].startswith("cosine-similarity-clamped-norm") for r in known)
