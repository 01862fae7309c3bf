"""Compare two runs' results.jsonl: the same case ids in the same order per target, and the same
verdicts (a refactoring must change neither, or say why).

    python benchmarks/compare_runs.py BEFORE_DIR AFTER_DIR [--ops GLOB]

Prints, per target (declaration × backend × dtype), where the case id sequences first differ and
every case whose verdict changed; exits 1 when anything differs.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reports.records import read_records  # noqa: E402


def _cases(directory: Path, ops: str) -> dict[tuple[str, str, str], list[tuple[str, str, str | None]]]:
    targets: dict[tuple[str, str, str], list[tuple[str, str, str | None]]] = defaultdict(list)
    for r in read_records(directory):
        if r.get("type") != "case" or r.get("shrinking") or not fnmatch.fnmatchcase(r["op"], ops):
            continue
        targets[(r["op"], r["backend"], r["dtype"])].append((r["case_id"], r["verdict"], r.get("regime")))
    return targets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--ops", default="*", help="glob over declaration ids")
    args = parser.parse_args(argv)
    before, after = _cases(args.before, args.ops), _cases(args.after, args.ops)
    differ = 0
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key, []), after.get(key, [])
        ids_a, ids_b = [c[0] for c in a], [c[0] for c in b]
        name = "|".join(key)
        if ids_a != ids_b:
            differ += 1
            first = next((i for i, (x, y) in enumerate(zip(ids_a, ids_b)) if x != y), min(len(ids_a), len(ids_b)))
            print(f"{name}: case ids differ from #{first} ({len(ids_a)} before, {len(ids_b)} after)")
        verdicts_a = {c[0]: c[1] for c in a}
        changed = [(cid, verdicts_a[cid], v) for cid, v, _ in b if cid in verdicts_a and verdicts_a[cid] != v]
        for cid, old, new in changed:
            differ += 1
            print(f"{name}: case {cid}: {old} -> {new}")
        count_a, count_b = _counts(a), _counts(b)
        if count_a != count_b and ids_a != ids_b:
            print(f"    verdicts before {count_a}, after {count_b}")
    print(f"{len(set(before) | set(after))} targets compared; {differ} differences")
    return 1 if differ else 0


def _counts(cases: list[tuple[str, str, str | None]]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for _, verdict, _ in cases:
        out[verdict] += 1
    return dict(sorted(out.items()))


if __name__ == "__main__":
    sys.exit(main())
