"""Each deliberately wrong container / gradient-utility adapter is caught by a ci-profile run."""

from __future__ import annotations

import pytest

from conformance.cli import main
from reports.records import read_records

CASES = [
    ("ClipReturnsNormAfterClipping", "clip_grad_norm_"),
    ("ClipNeverClamps", "clip_grad_norm_"),
    ("ClipSumsTensorNorms", "clip_grad_norm_"),
    ("SequentialSkipsLast", "Sequential"),
    ("BatchNormBuffersFrozen", "ModuleList"),
    # a bug planted in one layer, found when only the container entries run
    ("Conv2dIgnoresBias", "ModuleList,DataParallel"),
    ("SequentialSortsNames", "Sequential[ordered]"),
    ("DataParallelGathersReversed", "DataParallel"),
    # "a ModuleList whose __setitem__ mishandles a negative index": caught by `--ops ModuleList`
    ("ModuleListNegativeSetitemOffByOne", "ModuleList[semantics]"),
    ("ModuleDictUpdateSorted", "ModuleDict"),
    ("ParameterDictKeepsPlainTensors", "ParameterDict[semantics]"),
    ("ClipValueOnlyPositive", "clip_grad_value_"),
    ("TotalNormInfAsSum", "get_total_norm"),
    ("VectorToParametersReversed", "vector_to_parameters"),
]


@pytest.mark.parametrize(("adapter", "ops"), CASES, ids=[a for a, _ in CASES])
def test_wrong_container_adapter_is_caught(tmp_path, adapter, ops):
    code = main(["run", "--backend", f"tests.wrong_backends.containers:{adapter}", "--ops", ops,
                 "--dtypes", "float32", "--profile", "ci", "--examples", "10", "--no-invalid", "--quiet",
                 "--report-dir", str(tmp_path)])
    assert code == 1
    records = list(read_records(tmp_path))
    assert any(r["verdict"] in ("fail", "error") and r["final"] for r in records), \
        sorted({(r["op"], r["verdict"]) for r in records})
