"""Compare two runs' results.jsonl: the same case ids in the same order per target, and the same
verdicts (a refactoring must change neither, or say why).

    python benchmarks/compare_runs.py BEFORE_DIR AFTER_DIR [--ops GLOB] [--only-before-ops] [--common]
                                      [--table] [--markdown FILE]

Prints, per target (declaration × backend × dtype × mode), where the case id sequences first differ
and every case whose verdict changed; exits 1 when anything differs. ``--only-before-ops`` keeps the
declarations the first run has (an old run over fewer entries). ``--table`` adds, per declaration ×
dtype, each run's verdict counts and how many case ids both runs drew and agree on, then the classes
of difference: verdict changes of a shared case id (with the known entries they carry), and the
declarations whose drawn cases changed; ``--markdown FILE`` writes that table as markdown.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reports.records import read_records  # noqa: E402

Key = tuple[str, str, str, str]  # op, backend, dtype, mode


@dataclass(frozen=True)
class CaseRow:
    case_id: str
    verdict: str
    regime: str | None
    known: str | None  # the id of the known entry a 'known' case carries


def _cases(directory: Path, ops: str) -> dict[Key, list[CaseRow]]:
    targets: dict[Key, list[CaseRow]] = defaultdict(list)
    for r in read_records(directory):
        if r.get("type") != "case" or r.get("shrinking") or not fnmatch.fnmatchcase(r["op"], ops):
            continue
        if not r.get("case_id"):  # a target-level record (unsupported, statistical) has no drawn case
            continue
        known = (r.get("known") or {}).get("id") if isinstance(r.get("known"), dict) else r.get("known")
        key = (r["op"], r["backend"], r["dtype"], r.get("mode") or "vjp")
        targets[key].append(CaseRow(r["case_id"], r["verdict"], r.get("regime"), known))
    return targets


def _counts(cases: list[CaseRow]) -> dict[str, int]:
    return dict(sorted(Counter(c.verdict for c in cases).items()))


def _fmt(counts: dict[str, int]) -> str:
    return " ".join(f"{v} {n}" for v, n in counts.items()) or "-"


def compare(before: dict[Key, list[CaseRow]], after: dict[Key, list[CaseRow]], quiet: bool = False) -> int:
    """Print the target-by-target differences; the number of differences."""
    differ = 0
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key, []), after.get(key, [])
        ids_a, ids_b = [c.case_id for c in a], [c.case_id for c in b]
        name = "|".join(key)
        if ids_a != ids_b:
            differ += 1
            first = next((i for i, (x, y) in enumerate(zip(ids_a, ids_b)) if x != y), min(len(ids_a), len(ids_b)))
            if not quiet:
                print(f"{name}: case ids differ from #{first} ({len(ids_a)} before, {len(ids_b)} after)")
        verdicts_a = {c.case_id: c.verdict for c in a}
        changed = [(c.case_id, verdicts_a[c.case_id], c.verdict) for c in b
                   if c.case_id in verdicts_a and verdicts_a[c.case_id] != c.verdict]
        for cid, old, new in changed:
            differ += 1
            if not quiet:
                print(f"{name}: case {cid}: {old} -> {new}")
        if not quiet and _counts(a) != _counts(b) and ids_a != ids_b:
            print(f"    verdicts before {_fmt(_counts(a))}, after {_fmt(_counts(b))}")
    return differ


def table(before: dict[Key, list[CaseRow]], after: dict[Key, list[CaseRow]]) -> list[str]:
    """Markdown lines: the per declaration × dtype table (rows where anything differs, then a total
    row over every target), and the classes of difference."""
    lines = ["Rows: the targets whose verdict counts differ, or a shared case id's verdict.", "",
             "| declaration | dtype | before | after | shared ids | same verdict | changed |",
             "|---|---|---|---|---|---|---|"]
    totals = dict(before=Counter(), after=Counter(), shared=0, same=0, changed=0, targets=0, identical=0)
    changes: Counter = Counter()  # (old, new, known entry) over shared case ids
    redrawn: dict[str, list[str]] = defaultdict(list)  # op -> dtypes whose case ids changed
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key, []), after.get(key, [])
        va = {c.case_id: c for c in a}
        shared = [c for c in b if c.case_id in va]
        same = sum(1 for c in shared if va[c.case_id].verdict == c.verdict)
        for c in shared:
            if va[c.case_id].verdict != c.verdict:
                changes[(va[c.case_id].verdict, c.verdict, c.known or va[c.case_id].known or "")] += 1
        ca, cb = _counts(a), _counts(b)
        totals["before"].update(ca)
        totals["after"].update(cb)
        totals["shared"] += len(shared)
        totals["same"] += same
        totals["changed"] += len(shared) - same
        totals["targets"] += 1
        ids_equal = [c.case_id for c in a] == [c.case_id for c in b]
        if not ids_equal:
            redrawn[key[0]].append(key[2])
        if ca == cb and same == len(shared):
            totals["identical"] += 1  # the same verdict counts (and the same verdict for each shared id)
            continue
        lines.append(f"| {key[0]}{'' if key[3] == 'vjp' else ' ' + key[3]} | {key[2]} | {_fmt(ca)} | {_fmt(cb)} "
                     f"| {len(shared)}/{len(b)} | {same} | {len(shared) - same} |")
    lines.append(f"| **all {totals['targets']} targets** ({totals['identical']} with equal counts, not listed) | | "
                 f"{_fmt(dict(sorted(totals['before'].items())))} | {_fmt(dict(sorted(totals['after'].items())))} "
                 f"| {totals['shared']} | {totals['same']} | {totals['changed']} |")
    lines += ["", "Verdict changes of a case id both runs drew (old -> new, known entry, cases):", ""]
    lines += [f"- {old} -> {new}{f' ({known})' if known else ''}: {n}" for (old, new, known), n in
              sorted(changes.items(), key=lambda kv: -kv[1])] or ["- none"]
    lines += ["", "Declarations whose drawn case ids changed (dtypes):", ""]
    lines += [f"- {op}: {', '.join(dtypes)}" for op, dtypes in sorted(redrawn.items())] or ["- none"]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--ops", default="*", help="glob over declaration ids")
    parser.add_argument("--only-before-ops", action="store_true",
                        help="keep only the declarations the first run has")
    parser.add_argument("--common", action="store_true",
                        help="keep only the targets both runs have (an unfinished run)")
    parser.add_argument("--table", action="store_true", help="print the per declaration × dtype table")
    parser.add_argument("--markdown", type=Path, help="write the table to this markdown file")
    args = parser.parse_args(argv)
    before, after = _cases(args.before, args.ops), _cases(args.after, args.ops)
    if args.only_before_ops:
        ops = {k[0] for k in before}
        after = {k: v for k, v in after.items() if k[0] in ops}
    if args.common:
        before = {k: v for k, v in before.items() if k in after}
        after = {k: v for k, v in after.items() if k in before}
    differ = compare(before, after, quiet=args.table)
    if args.table or args.markdown:
        lines = table(before, after)
        if args.table:
            print("\n".join(lines))
        if args.markdown:
            args.markdown.write_text("\n".join(lines) + "\n")
    print(f"{len(set(before) | set(after))} targets compared; {differ} differences")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
