"""Pack a run directory for a trip back from a lent machine: its non-pass records (gzip) and the
verdict counts per mode, within the few files such a machine returns.

Usage: ``python scripts/pack_run.py RUN_DIR OUT_PREFIX`` writes ``OUT_PREFIX_nonpass.jsonl.gz`` and
prints ``{"(mode, verdict)": count}``; ``nnconform findings`` reads the records back (gunzipped as
``results.jsonl`` of a directory)."""

from __future__ import annotations

import gzip
import json
import sys
from collections import Counter
from pathlib import Path


def pack(run_dir: Path, prefix: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    results = run_dir / "results.jsonl"
    if not results.exists():
        return counts
    with results.open(errors="replace") as src, gzip.open(f"{prefix}_nonpass.jsonl.gz", "wt") as out:
        for line in src:
            try:
                record = json.loads(line)
            except ValueError:  # a torn last line
                continue
            counts[str((record.get("mode"), record.get("verdict")))] += 1
            if record.get("verdict") != "pass":
                out.write(line)
    return counts


if __name__ == "__main__":
    print(json.dumps(pack(Path(sys.argv[1]), sys.argv[2])))
