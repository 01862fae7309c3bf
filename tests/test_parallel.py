"""Parallel jobs, shards and merging: the same cases whichever way a run is split."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conformance.cli import main
from conformance.parallel import Target, shard
from reports.records import read_records, read_run_info

OPS = "Linear,ReLU,Dropout,pad_packed_sequence"
ROOT = Path(__file__).resolve().parents[1]


def _cases(directory: Path) -> Counter:
    """The run's cases as a multiset (the order of targets may differ between runs)."""
    return Counter((r["op"], r["backend"], r["dtype"], r["case_id"], r["verdict"], r["regime"], r["final"])
                   for r in read_records(directory))


def _blocks_are_contiguous(directory: Path) -> bool:
    seen, last = set(), None
    for r in read_records(directory):
        key = (r["op"], r["backend"], r["dtype"])
        if key != last:
            if key in seen:
                return False
            seen.add(key)
            last = key
    return True


def _run(directory: Path, *extra: str) -> int:
    """``nnconform run`` in a fresh process, as a CI job would run a shard."""
    argv = [sys.executable, "-m", "conformance.cli", "run", "--ops", OPS, "--dtypes", "float64,bfloat16", "--quiet",
            "--examples", "4",
            "--report-dir", str(directory), *extra]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900).returncode


def test_jobs_shards_and_merge_hold_exactly_the_cases_of_a_serial_run(tmp_path, capsys):
    assert _run(tmp_path / "serial", "-j", "1") == 0
    assert _run(tmp_path / "parallel", "-j", "2") == 0
    assert _run(tmp_path / "s1", "--shard", "1/2") == 0
    assert _run(tmp_path / "s2", "--shard", "2/2") == 0
    assert main(["merge", "--report-dir", str(tmp_path / "merged"), str(tmp_path / "s1"), str(tmp_path / "s2")]) == 0
    serial = _cases(tmp_path / "serial")
    assert sum(serial.values()) > 100
    for name in ("parallel", "merged"):
        other = _cases(tmp_path / name)
        only = Counter(k[:3] + k[5:6] for k in other - serial) + Counter(("serial", *k[:3]) for k in serial - other)
        assert other == serial, f"{name} differs from the serial run: {dict(only)}"
    assert _cases(tmp_path / "s1") and _cases(tmp_path / "s2")
    for name in ("parallel", "merged"):
        assert _blocks_are_contiguous(tmp_path / name)
    merged = read_run_info(tmp_path / "merged")
    assert merged["cases"] == read_run_info(tmp_path / "serial")["cases"]
    assert (tmp_path / "merged" / "report.html").exists()
    capsys.readouterr()


def test_shards_partition_the_targets_by_cost():
    targets = [Target(f"L{i}", "torch-cpu", "float32") for i in range(10)]
    costs = {f"L{i}|float32": float(i + 1) for i in range(10)}
    parts = [shard(targets, k, 3, costs) for k in (1, 2, 3)]
    assert sorted(t.key for p in parts for t in p) == sorted(t.key for t in targets)
    loads = [sum(costs[f"{t.spec_id}|{t.dtype}"] for t in p) for p in parts]
    assert max(loads) - min(loads) <= max(costs.values())  # greedy longest-first balance
    assert [shard(targets, k, 3, costs) for k in (1, 2, 3)] == parts  # deterministic


def test_another_backends_costs_are_its_own_or_eager_costs_scaled():
    from conformance.parallel import cost_model

    costs = {"A|float32": 1.0, "B|float32": 2.0, "C|float32": 8.0, "ort|A|float32": 10.0, "ort|B|float32": 20.0}
    cost = cost_model(costs)
    assert cost(Target("B", "ort", "float32")) == 20.0  # its own measurement
    assert cost(Target("C", "ort", "float32")) == pytest.approx(80.0)  # eager's, times the fitted ratio (10)
    assert cost(Target("D", "ort", "float32")) == 15.0  # neither: the backend's median
    assert cost(Target("C", "torch-cpu", "float32")) == 8.0
    assert cost(Target("D", "other", "float32")) == 2.0  # a backend never measured: eager's median


def test_estimates_from_eager_costs_follow_the_log_linear_fit():
    """A compiler's costs barely follow eager's: the fitted slope is small and an unmeasured target
    with a costly eager reference is estimated near the backend's typical cost, not scaled by the
    median ratio into hours; a slope beyond 1 or below 0 is clipped."""
    from conformance.parallel import cost_model

    eager = {"A|float32": 0.1, "B|float32": 1.0, "C|float32": 10.0, "D|float32": 100.0}
    flat = {**eager, "tc|A|float32": 50.0, "tc|B|float32": 80.0, "tc|C|float32": 50.0}  # no trend: slope ~ 0.1
    estimate = cost_model(flat)(Target("D", "tc", "float32"))
    assert 50.0 < estimate < 100.0  # the median ratio (50) would give 5,000
    falling = {**eager, "tc|A|float32": 100.0, "tc|B|float32": 10.0}  # slope -1: clipped to 0
    assert cost_model(falling)(Target("D", "tc", "float32")) == pytest.approx(math.sqrt(1000.0))
    steep = {**eager, "tc|A|float32": 0.001, "tc|B|float32": 1.0}  # slope 3: clipped to 1
    assert cost_model(steep)(Target("D", "tc", "float32")) == pytest.approx(100.0 * math.sqrt(0.01))


def test_costs_are_looked_up_by_the_name_the_backend_reports():
    """A shard of ``--backend torch-compile:cache=DIR`` uses torch-compile's measured costs."""
    from conformance.parallel import cost_model

    costs = {"A|float32": 1.0, "B|float32": 2.0, "torch-compile|A|float32": 300.0, "torch-compile|B|float32": 100.0}
    given = "torch-compile:cache=/tmp/c"
    assert cost_model(costs, {given: "torch-compile"})(Target("A", given, "float32")) == 300.0
    assert cost_model(costs)(Target("A", given, "float32")) == 1.0  # unknown name: eager's cost, unscaled
    targets = [Target(s, given, "float32") for s in ("A", "B")]
    parts = [shard(targets, k, 2, costs, {given: "torch-compile"}) for k in (1, 2)]
    assert parts == [[targets[0]], [targets[1]]]  # A (300 s) first, then B to the lighter shard


def test_a_parallel_run_starts_its_costliest_targets_first(tmp_path):
    """Longest first: a run with jobs hands out its targets costliest first (its own backend's costs,
    by the name it reports), so a long target never starts after the short ones; a serial run keeps
    the catalogue's order."""
    from conformance.parallel import longest_first

    given = "torch-compile:cache=/tmp/c"
    targets = [Target(s, given, "float32") for s in ("A", "B", "C")]
    costs = {"A|float32": 1.0, "B|float32": 2.0, "C|float32": 3.0,
             "torch-compile|A|float32": 300.0, "torch-compile|B|float32": 20.0, "torch-compile|C|float32": 30.0}
    assert [t.spec_id for t in longest_first(targets, costs, {given: "torch-compile"})] == ["A", "C", "B"]
    assert [t.spec_id for t in longest_first(targets, costs)] == ["C", "B", "A"]  # unknown name: eager's costs
    argv = ["run", "--ops", "ReLU,Linear", "--dtypes", "float32", "--examples", "2", "--no-invalid", "--quiet"]
    for jobs in ("1", "2"):
        assert main([*argv, "-j", jobs, "--report-dir", str(tmp_path / jobs)]) == 0
    cost = dict(json.loads((ROOT / "conformance" / "target_costs.json").read_text()))
    parallel = [key.split("|")[0] for key in read_run_info(tmp_path / "2")["planned"]]
    assert parallel == sorted(("ReLU", "Linear"), key=lambda op: -cost[f"{op}|float32"])
    assert [key.split("|")[0] for key in read_run_info(tmp_path / "1")["planned"]] == ["ReLU", "Linear"]


def test_the_shard_plan_is_the_fewest_shards_within_the_time():
    from conformance.parallel import cost_model, over_budget, partition, plan_shards

    targets = [Target(f"L{i}", "b", "float32") for i in range(10)]
    costs = {f"b|L{i}|float32": float(i + 1) for i in range(10)}  # 55 s in all, the costliest 10 s
    predicted = plan_shards(targets, 12.0, 1, costs)
    assert max(predicted) <= 12.0 and len(predicted) >= 5  # 55 / 12 needs 5 shards at least
    cost = cost_model(costs)
    fewer = partition(targets, len(predicted) - 1, cost)
    assert max(sum(map(cost, part)) for part in fewer) > 12.0  # one shard fewer does not fit
    two_jobs = plan_shards(targets, 12.0, 2, costs)  # two jobs in a shard halve its time ...
    assert len(two_jobs) < len(predicted)
    assert max(plan_shards(targets, 10.0, 8, costs)) == 10.0  # ... but never below its costliest target
    over = plan_shards(targets, 8.0, 2, costs)  # L9 (10 s) and L8 (9 s) cannot fit: each shard as long as they
    parts = partition(targets, len(over), cost)
    assert all(time <= max(8.0, *map(cost, part)) for time, part in zip(over, parts))
    assert sorted(over)[-2:] == [9.0, 10.0] and sum(time > 8.0 for time in over) == 2
    assert [(t.spec_id, c) for t, c in over_budget(targets, 8.0, costs)] == [("L9", 10.0), ("L8", 9.0)]
    assert len(plan_shards(targets, 1e-9, 2, costs)) == len(targets)  # one target a shard, at worst
    uneven = {"b|A|float32": 6.0, "b|B|float32": 5.0, "b|C|float32": 5.0}  # 8 s each for 2 jobs, were they divisible
    three = [Target(op, "b", "float32") for op in "ABC"]
    assert plan_shards(three, 10.0, 2, uneven) == [10.0]  # 6 s, then 5 + 5 on the other job
    assert len(plan_shards(three, 9.0, 2, uneven)) == 2


def test_makespan_hands_each_target_to_the_job_free_first():
    from conformance.parallel import makespan

    assert makespan([5.0, 6.0, 5.0], 2) == 10.0
    assert makespan([3.0, 3.0, 2.0, 2.0, 2.0], 2) == 7.0  # 3+2+2 against 3+2: list scheduling, not optimal (6)
    assert makespan([4.0], 3) == 4.0 and makespan([], 2) == 0.0
    assert makespan([1.0, 2.0, 3.0], 1) == 6.0


def test_costs_leave_out_the_steps_of_shrinking_and_unfinished_targets(tmp_path):
    from conformance.parallel import measured_costs
    from reports.records import write_run_info

    records = [{"type": "case", "op": op, "dtype": "float32", "backend": "torch-compile", "shrinking": shrinking,
                "verdict": "pass", "elapsed_s": {"backend": seconds, "reference": 0.5}} for op, shrinking, seconds in
               (("ReLU", False, 2.0), ("ReLU", False, 3.0), ("ReLU", True, 40.0), ("ReLU", True, 50.0),
                ("Tanh", False, 7.0))]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    write_run_info(tmp_path, {"completed": ["ReLU|torch-compile|float32"]})  # Tanh was still running
    assert measured_costs([tmp_path]) == {"torch-compile|ReLU|float32": 6.0}


def test_costs_survive_in_a_saved_coverage_table(tmp_path, capsys):
    """A coverage table saved from a run keeps each target's cost (shrinking steps and all its cases'
    reference and backend seconds), so measurements outlive the run directories; a later source's
    measurement of a target replaces an earlier one's."""
    from conformance.parallel import measured_costs
    from reports.records import write_run_info

    run = tmp_path / "run"
    run.mkdir()
    records = [{"type": "case", "op": "ReLU", "dtype": "float32", "backend": "torch-compile", "shrinking": shrinking,
                "tier": tier, "verdict": "pass", "comparisons": [{"ok": True}],
                "elapsed_s": {"backend": seconds, "reference": 0.5}} for shrinking, tier, seconds in
               ((False, "exact", 2.0), (False, "invalid", 3.0), (True, "exact", 40.0))]
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    write_run_info(run, {"completed": ["ReLU|torch-compile:cache=/c|float32"], "run_id": "r1",
                         "backends": [{"name": "torch-compile", "spec": "torch-compile:cache=/c"}]})
    table = tmp_path / "tc.jsonl"
    assert main(["coverage", str(run), "--save", str(table)]) == 0
    row = json.loads(table.read_text())
    assert row["seconds"] == 6.0 and row["cases"] == 2 and row["class"] == "compared"
    assert (row["op"], row["backend"], row["dtype"], row["mode"]) == ("ReLU", "torch-compile", "float32", "vjp")
    assert measured_costs([table]) == measured_costs([run]) == {"torch-compile|ReLU|float32": 6.0}
    older = tmp_path / "older.jsonl"
    legacy = {k: v for k, v in row.items() if k not in ("op", "dtype", "mode")}  # saved before rows had them
    older.write_text(json.dumps({**legacy, "seconds": 99.0}) + "\n" + json.dumps(
        {"target": "Linear|torch-compile|float32", "backend": "torch-compile", "class": "compared"}) + "\n")
    assert measured_costs([older, table]) == {"torch-compile|ReLU|float32": 6.0}  # no seconds: not a cost
    capsys.readouterr()
    assert main(["costs", str(older), str(table)]) == 0
    assert json.loads(capsys.readouterr().out) == {"torch-compile|ReLU|float32": 6.0}
    (tmp_path / "bad.jsonl").write_text("not json\n")
    (tmp_path / "records.jsonl").write_text(json.dumps(records[0]) + "\n")  # a results file, not a table
    (tmp_path / "empty").mkdir()
    for bad, reason in [("bad.jsonl", "is not a coverage table saved with --save"),
                        ("records.jsonl", "line 1 is not a row with target, backend and class"),
                        ("missing", "does not exist"), ("empty", "has no results.jsonl")]:
        for command in ("costs", "coverage"):  # one check of a source, with one message, for both
            assert main([command, str(tmp_path / bad)]) == 2
            err = capsys.readouterr().err
            assert reason in err and len(err.strip().splitlines()) == 1, (command, err)


def test_costs_command_plans_shards_and_names_the_targets_no_plan_fits(tmp_path, capsys):
    from conformance.parallel import load_costs

    assert main(["costs", "--plan", "600", "--backend", "torch-cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("torch-cpu: --shard K/1 keeps every job within 600 s with -j 2") and "except" not in out
    eager = {key: value for key, value in load_costs().items() if key.count("|") == 1}  # torch-cpu's keys
    costliest = max(eager.items(), key=lambda item: item[1])
    assert main(["costs", "--plan", f"{costliest[1] / 2:g}", "--backend", "torch-cpu"]) == 0
    out = capsys.readouterr().out.splitlines()  # the plan, then the targets no plan keeps within the time
    assert len(out) == 2 and out[1].startswith("except the shard of each target predicted to take longer alone")
    assert " ".join(costliest[0].split("|")) in out[1]
    assert main(["costs"]) == 2
    assert "costs needs run directories" in capsys.readouterr().err


def test_a_shared_example_database_replays_a_failure(tmp_path, capsys):
    """Two machines sharing a database directory: the second run starts from the failure the
    first one found and saved (the dev profile keeps its database; derandomized ci does not)."""
    database = tmp_path / "db"
    argv = ["run", "--backend", "tests.wrong_backends.generic:ReluGradAtZero", "--ops", "ReLU", "--dtypes",
            "float32", "--profile", "dev", "--examples", "60", "--no-invalid", "--quiet", "--database", str(database)]
    assert main([*argv, "--report-dir", str(tmp_path / "first")]) == 1
    assert any(p.is_file() for p in database.rglob("*"))
    assert main([*argv, "--report-dir", str(tmp_path / "second")]) == 1
    first = [r for r in read_records(tmp_path / "first") if r["regime"] is None]
    second = [r for r in read_records(tmp_path / "second") if r["regime"] is None]
    # The saved failing example is replayed first: the second search fails at its first case.
    assert second[0]["verdict"] == "fail"
    assert len(second) <= len(first)
    capsys.readouterr()


def test_costs_command_prints_seconds_per_target(tmp_path, capsys):
    assert main(["run", "--ops", "ReLU", "--dtypes", "float32", "--quiet", "--report-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["costs", str(tmp_path)]) == 0
    costs = json.loads(capsys.readouterr().out)
    assert set(costs) == {"ReLU|float32"} and costs["ReLU|float32"] > 0


def test_each_search_has_its_own_database_key():
    """Searches share one check function; their example-database keys must still differ, or one
    search replays (and deletes) another's failures."""
    from conformance.runner import search_key
    from conformance.spec import all_specs

    regime = all_specs()["ReLU"].regimes[0]
    keys = {search_key("ReLU", "torch-cpu", "float32", None, False),
            search_key("ReLU", "torch-cpu", "float32", regime, False),
            search_key("ReLU", "torch-cpu", "float32", None, True),
            search_key("ReLU", "torch-cpu", "float16", None, False),
            search_key("ReLU", "vendor", "float32", None, False),
            search_key("Softmax", "torch-cpu", "float32", None, False)}
    assert len(keys) == 6
    same = ("ReLU", "torch-cpu", "float32", None, False)
    assert search_key(*same) == search_key(*same)
