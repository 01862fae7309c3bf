"""The masking audit over the whole catalogue (or ``--ops``): how many perturbations of correct
results (outputs, gradients, state) a known entry turns into ``known`` (see conformance/audit.py).

    python benchmarks/bench_masking.py [--ops GLOB,...] [--dtypes ...] [-j N] [--json OUT]

Prints, per group, the perturbations judged and the masked ones (with the entries that masked
them); exits 1 when anything is masked. ``-j N`` splits the targets over N processes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _run_part(ops: list[str], dtypes: list[str], part: int, parts: int) -> dict:
    from conformance.audit import audit
    from conformance.driver import RunSettings, Session, Target
    from conformance.spec import select_specs

    settings = RunSettings(report_dir="/tmp/nnconform-masking", profile="ci", isolate=True)
    targets = [Target(s.id, "torch-cpu", d) for s in select_specs(ops) for d in dtypes]
    targets = targets[part::parts]
    with Session(settings) as session:
        totals = audit(settings, targets, session)
    return {"targets": len(targets), "judged": dict(totals.judged),
            "masked": [m.__dict__ for m in totals.masked]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", default="", help="comma-separated names or globs (default: all)")
    parser.add_argument("--dtypes", default="float64,float32,float16,bfloat16")
    parser.add_argument("-j", "--jobs", type=int, default=1)
    parser.add_argument("--part", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None, help="write the totals as JSON")
    args = parser.parse_args()
    ops = [o for o in args.ops.split(",") if o]
    dtypes = args.dtypes.split(",")
    from conformance.spec import select_specs

    try:  # a bad --ops is a usage error here, not a traceback in each worker
        select_specs(ops)
    except KeyError as exc:
        print(f"bench_masking: {exc.args[0]}", file=sys.stderr)
        return 2
    if args.part is not None:  # a worker: print its part as JSON
        print(json.dumps(_run_part(ops, dtypes, args.part, args.jobs)))
        return 0
    t0 = time.time()
    procs = [subprocess.Popen([sys.executable, __file__, "--ops", args.ops, "--dtypes", args.dtypes, "-j",
                               str(args.jobs), "--part", str(k)], stdout=subprocess.PIPE, text=True)
             for k in range(args.jobs)]
    parts = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    judged = sum((Counter(p["judged"]) for p in parts), Counter())
    masked = [m for p in parts for m in p["masked"]]
    by_group = Counter(m["group"] for m in masked)
    print(f"{sum(p['targets'] for p in parts)} targets in {time.time() - t0:.0f} s")
    print(f"{'group':<10}{'judged':>9}{'masked':>9}")
    for group in ("outputs", "grads", "state"):
        print(f"{group:<10}{judged[group]:>9}{by_group[group]:>9}")
    for entry, n in Counter(e for m in masked for e in m["entries"]).most_common():
        print(f"  masked by {entry}: {n}")
    for m in masked[:20]:
        tensors, entries = ", ".join(m["tensors"]), ", ".join(m["entries"])
        print(f"  {m['target']} case {m['case_id']} {m['group']}: {tensors} ({entries})")
    if args.json:
        Path(args.json).write_text(json.dumps({"judged": judged, "masked": masked}, indent=1))
    return 1 if masked else 0


if __name__ == "__main__":
    sys.exit(main())
