"""The masking audit (conformance/audit.py) over a sample of targets that known entries cover: no
entry turns a perturbed, correctly computed tensor into ``known``. An entry written the old way
(every tensor, every symptom, no bound) masks, and the audit says so.
``benchmarks/bench_masking.py`` runs the same audit over the whole catalogue."""

from __future__ import annotations

import pytest

from conformance.audit import audit, perturbed
from conformance.driver import RunSettings, Session, Target
from conformance.known import KnownDiscrepancy, load_known

# Targets where known entries match cases on this machine (values, layouts, dtypes), one dtype each.
SAMPLE = [("BatchNorm3d", "float32"), ("GroupNorm", "float64"), ("CELU", "float64"), ("Hardswish", "float32"),
          ("LeakyReLU", "float64"), ("MaxPool3d", "float64"), ("CrossEntropyLoss", "float16"),
          ("Upsample[nearest]", "float64")]


@pytest.fixture(scope="module")
def session():
    settings = RunSettings(report_dir="/tmp/nnconform-masking-test", profile="ci", examples=10, invalid=False)
    with Session(settings) as s:
        yield settings, s


def test_no_known_entry_masks_a_perturbation(session):
    settings, s = session
    totals = audit(settings, [Target(op, "torch-cpu", dtype) for op, dtype in SAMPLE], s)
    assert sum(totals.judged.values()) > 0, "no case of the sample is covered by a known entry"
    assert not totals.masked, totals.masked[:5]


def test_an_entry_describing_nothing_masks_and_is_caught(session):
    settings, _ = session
    broad = KnownDiscrepancy(id="explains-everything", op="LeakyReLU", backend="torch-*", reason="test",
                             when="params['negative_slope'] == 0")
    with Session(settings, known=[*load_known(), broad]) as s:
        totals = audit(settings, [Target("LeakyReLU", "torch-cpu", "float64")], s)
    assert totals.masked and all("explains-everything" in m.entries for m in totals.masked)


def test_perturbation_moves_every_kind_of_value():
    import numpy as np

    from backends.base import Result

    r = Result(outputs={"output": np.array([0.0, -2.0, np.inf]), "indices": np.array([1, 2])},
               grads={"input": np.array([True, False])}, state={"running_mean": np.array([1.0])})
    p = perturbed(r, ["output", "indices", "grad.input"])
    np.testing.assert_array_equal(p.outputs["output"], [0.5, -2.0, np.inf])
    np.testing.assert_array_equal(p.outputs["indices"], [2, 3])
    np.testing.assert_array_equal(p.grads["input"], [False, True])
    np.testing.assert_array_equal(p.state["running_mean"], [1.0])  # untouched
    np.testing.assert_array_equal(r.outputs["output"], [0.0, -2.0, np.inf])  # the original too
