"""Each deliberately wrong recurrent adapter is caught by a plain ci-profile run, and shrunk."""

from __future__ import annotations

import numpy as np
import pytest

from conformance.cli import main
from reports.records import read_records

CASES = [
    ("LSTMSwapForgetCell", "LSTM", "float64"),
    ("LSTMSwapForgetCell", "LSTM[packed]", "float64"),
    ("GRUSwapResetUpdate", "GRU", "float64"),
    ("ReverseDirectionNotReversed", "LSTM", "float64"),
    ("ReverseDirectionNotReversed", "RNN", "float64"),
    ("RNNIgnoresH0BatchFirst", "RNN", "float64"),
    ("PackedRunsOverPadding", "GRU[packed]", "float64"),
    ("HnDirectionMajor", "GRU", "float64"),
    ("DropoutAfterLastLayer", "LSTM", "float64"),
    ("GRUCellUpdateConvention", "GRUCell", "float64"),
    ("GRUCellResetBeforeMatmul", "GRUCell", "float64"),
    ("PlantedWhhError", "GRU", "float32"),  # 32 ulps in every W_hh: the bound is not loose
]
# These need every regime searched (no --first-failure): the first discrepancy of their target is
# an adapter error, or lies in a regime pinned to long sequences, and the test judges the shortest
# failing example of all the target's searches.
FULL_SEARCH = {("ReverseDirectionNotReversed", "LSTM"), ("ReverseDirectionNotReversed", "RNN"),
               ("PackedRunsOverPadding", "GRU[packed]")}


@pytest.mark.parametrize(("adapter", "op", "dtype"), CASES, ids=[f"{a}-{o}" for a, o, _ in CASES])
def test_wrong_recurrent_adapter_is_caught(tmp_path, adapter, op, dtype):
    first = [] if (adapter, op) in FULL_SEARCH else ["--first-failure"]
    code = main(["run", "--backend", f"tests.wrong_backends.recurrent:{adapter}", "--ops", op,
                 "--dtypes", dtype, "--profile", "ci", "--no-invalid", "--quiet", *first, "--no-isolate", "-j", "1",
                 "--report-dir", str(tmp_path)])
    assert code == 1
    records = list(read_records(tmp_path))
    final = [r for r in records if r["op"] == op and r["verdict"] == "fail" and r["final"]]
    assert final, sorted({r["verdict"] for r in records})
    # Shrunk to a small case: a few steps, a handful of sequences and units (a regime's search
    # shrinks within its pins, e.g. T = 16 for long sequences: the shortest example is judged).
    shortest = min(final, key=lambda r: max(r["case"]["inputs"]["input"]["shape"]))
    shape = shortest["case"]["inputs"]["input"]["shape"]
    assert max(shape) <= 8, (shape, shortest["regime"])


UTILITY_CASES = [
    ("PadSequenceIgnoresPaddingSide", "pad_sequence"),
    ("PackSequenceRowsUnsorted", "pack_sequence"),
    ("UnpadSequenceBatchFirstInverted", "unpad_sequence"),
    ("UnpackSequenceSortedOrder", "unpack_sequence"),
]


@pytest.mark.parametrize(("adapter", "op"), UTILITY_CASES, ids=[a for a, _ in UTILITY_CASES])
def test_wrong_sequence_utility_is_caught(tmp_path, adapter, op):
    code = main(["run", "--backend", f"tests.wrong_backends.recurrent:{adapter}", "--ops", op,
                 "--dtypes", "float64", "--profile", "ci", "--no-invalid", "--quiet", "--first-failure",
                 "--no-isolate", "-j", "1",
                 "--report-dir", str(tmp_path)])
    assert code == 1
    records = list(read_records(tmp_path))
    final = [r for r in records if r["op"] == op and r["verdict"] in ("fail", "error") and r["final"]]
    assert final, sorted({r["verdict"] for r in records})
    # Shrunk to a few short sequences of few features (lengths come from a drawn seed: at most 5).
    def elements(record):
        return sum(int(np.prod(i["shape"])) for i in record["case"]["inputs"].values() if i["type"] == "float")

    smallest = min(final, key=elements)
    assert elements(smallest) <= 40, smallest["case"]["inputs"]
