"""Each deliberately wrong attention / transformer / Bilinear / CosineSimilarity adapter is caught by
a ci-profile run (derandomized, float64, few random examples): exit code 1, and a final, shrunk
failing record of a small case. Transformer mistakes are run on the forward-only fast-path
declarations (the wrong module replaces torch's kernel there too), which keeps these runs short."""

from __future__ import annotations

import numpy as np
import pytest

from conformance.cli import main
from reports.records import read_records

# (adapter, declaration, the largest shrunk case in input elements)
CASES = [
    ("SdpaSoftmaxOverQueries", "scaled_dot_product_attention[flash]", 64),
    ("SdpaCausalBottomRight", "scaled_dot_product_attention[flash]", 64),
    ("SdpaGqaTiledHeads", "scaled_dot_product_attention[flash]", 96),
    ("SdpaScaleIgnored", "scaled_dot_product_attention[flash]", 64),
    ("SdpaDropoutNotRescaled", "scaled_dot_product_attention[math]", 64),
    ("MhaKeyPaddingOverQueries", "MultiheadAttention[fast path]", 96),
    ("EncoderResidualAfterNorm", "TransformerEncoderLayer[fast path]", 160),
    ("EncoderFeedForwardWithoutActivation", "TransformerEncoderLayer[fast path]", 160),
    ("DecoderIgnoresMemoryPadding", "TransformerDecoderLayer[fast path]", 200),
    ("BilinearWeightTransposed", "Bilinear", 64),
    ("CosineClampsProduct", "CosineSimilarity", 64),
    ("CosineEpsAddedToNorms", "CosineSimilarity", 64),
]


@pytest.fixture
def one_thread():
    """Tiny kernels run many times faster on one intra-op thread (torch's threads spin when the
    machine's cores are shared); restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(("adapter", "op", "small"), CASES, ids=[a for a, _, _ in CASES])
def test_wrong_attention_adapter_is_caught(tmp_path, one_thread, adapter, op, small):
    code = main(["run", "--backend", f"tests.wrong_backends.attention:{adapter}", "--ops", op, "--dtypes", "float64",
                 "--profile", "ci", "--examples", "6", "--no-invalid", "--no-isolate", "--quiet", "--first-failure",
                 "--report-dir", str(tmp_path)])
    assert code == 1
    records = list(read_records(tmp_path))
    final = [r for r in records if r["op"] == op and r["verdict"] == "fail" and r["final"] and r["case"]]
    assert final, sorted({(r["regime"] or "", r["verdict"]) for r in records if r["final"]})
    size = min(sum(int(np.prod(i["shape"])) for i in r["case"]["inputs"].values()) for r in final)
    assert size <= small, final[0]["case"]
