"""Per-example overhead of the harness: where the time of one conformance case goes.

Runs the ci profile over a few layers against torch-cpu and splits the wall time into reference,
backend and harness (strategy drawing, comparison, tolerance model, records). Prints a table; it
is a measurement, not a test.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from conformance.isolation import IsolatedBackend
from conformance.profiles import PROFILES
from conformance.registry import load_backend
from conformance.runner import Runner, RunRequest
from conformance.spec import all_specs
from reports.records import RecordWriter, read_records


def _warm_up_case():
    """One tiny ReLU case to start the worker outside the measurement."""
    import numpy as np

    from backends.base import Case

    spec = all_specs()["ReLU"]
    return spec, Case(op="ReLU", dtype="float32", params={"inplace": False}, inputs={"input": np.ones(1)})


def measure(op: str, examples: int = 40) -> tuple[int, float, float, float]:
    # The isolated worker is what `nnconform run` uses (a torch heap corruption, such as the
    # max-pooling empty-window bug, must not take the benchmark down); start it before timing.
    backend = IsolatedBackend("torch-cpu", load_backend("torch-cpu"))
    backend.availability()
    with tempfile.TemporaryDirectory() as tmp:
        request = RunRequest(backends=[backend], specs=[all_specs()[op]], dtypes=["float32"],
                             profile=PROFILES["ci"], report_dir=Path(tmp), examples=examples, invalid=False)
        with RecordWriter(tmp) as writer:
            runner = Runner(request, writer)
            backend.run(*_warm_up_case())
            t0 = time.perf_counter()
            runner.run()
            wall = time.perf_counter() - t0
        backend.close()
        records = list(read_records(tmp))
    ref = sum(r["elapsed_s"].get("reference", 0.0) for r in records)
    backend = sum(r["elapsed_s"].get("backend", 0.0) for r in records)
    return len(records), wall, ref, backend


def main(ops: list[str]) -> None:
    print(f"{'layer':<20}{'cases':>7}{'cases/s':>10}{'ref ms':>9}{'torch ms':>10}{'harness ms':>12}")
    for op in ops:
        n, wall, ref, backend = measure(op)
        harness = wall - ref - backend
        per_case = [1e3 * t / n for t in (ref, backend, harness)]
        print(f"{op:<20}{n:>7}{n / wall:>10.1f}{per_case[0]:>9.2f}{per_case[1]:>10.2f}{per_case[2]:>12.2f}")


if __name__ == "__main__":
    main(sys.argv[1:] or [op for op in ("ReLU", "Linear", "Conv2d", "MaxPool2d", "CrossEntropyLoss")
                          if op in all_specs()])
