"""Each deliberately wrong vision / distance / batch-norm adapter is caught by a ci-profile run
(derandomized, float64): exit code 1, and a final, shrunk failing record of a small case in the
search meant to catch it (the random search, or the regime of the bug's corner)."""

from __future__ import annotations

import numpy as np
import pytest

from conformance.cli import main
from reports.records import read_records

# (adapter, op, the search that must catch it: a regime name, or None for the random search)
CASES = [
    ("PixelShuffleTransposedBlocks", "PixelShuffle", None),
    ("PixelUnshuffleChannelMajor", "PixelUnshuffle", None),
    ("BilinearBackwardDropsBorder", "UpsamplingBilinear2d", None),
    ("BilinearAlignCornersFalse", "UpsamplingBilinear2d", None),
    ("NearestRecomputesScale", "UpsamplingNearest2d", "1/factor differs from in/out"),
    ("UpsampleIgnoresAlignCorners", "Upsample[linear]", "align_corners=True"),
    ("UpsampleNearestRounds", "Upsample[nearest]", "1/factor differs from in/out"),
    ("UpsampleBicubicKeysHalf", "Upsample[bicubic]", None),
    ("GridSampleReflectionMixup", "grid_sample", "reflection folding more than once"),
    ("AffineGridPixelBase", "affine_grid", None),
    ("PairwiseDistanceIgnoresKeepdim", "PairwiseDistance", "keepdim"),
    ("PairwiseDistanceEpsAfterNorm", "PairwiseDistance", "x1 == x2 (eps only)"),
    ("BatchNorm3dEvalBatchStats", "BatchNorm3d", "eval with running stats"),
    ("BatchNormBiasedRunningVar", "BatchNorm1d", "momentum None"),
]
SMALL = 64  # input elements of the shrunk case


@pytest.mark.parametrize(("adapter", "op", "search"), CASES, ids=[f"{a}-{o}" for a, o, _ in CASES])
def test_wrong_vision_adapter_is_caught(tmp_path, adapter, op, search):
    code = main(["run", "--backend", f"tests.wrong_backends.vision:{adapter}", "--ops", op, "--dtypes", "float64",
                 "--profile", "ci", "--examples", "20", "--no-invalid", "--no-isolate", "--quiet",
                 "--report-dir", str(tmp_path)])
    assert code == 1
    records = list(read_records(tmp_path))
    final = [r for r in records if r["op"] == op and r["verdict"] == "fail" and r["final"] and r["regime"] == search]
    assert final, sorted({(r["regime"] or "", r["verdict"]) for r in records if r["final"]})
    size = sum(int(np.prod(i["shape"])) for i in final[0]["case"]["inputs"].values())
    assert size <= SMALL, final[0]["case"]
