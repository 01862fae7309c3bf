"""Findings: a run's failing cases grouped by probable root cause, each with where it fails.

A *finding* is one probable bug of one layer (declaration) on one backend. It is built from the
records of a run (``results.jsonl``), in four steps:

1. **Failures.** Each failing case record gives its failure keys: ``(tensor, symptom)`` for each
   out-of-bound compared tensor (``("output", "value")``, ``("grad.input", "nonfinite")``...), or
   ``("call", symptom)`` for the call itself (``raises`` with the exception type, ``accepts-invalid``,
   ``crash``, ``timeout``, ``compile``). Valid and invalid cases are separate *domains*.
2. **Grouping.** In each domain (layer × backend × valid/invalid), the keys are grouped by the cases
   they fail in: two keys are one finding when their failing cases mostly coincide (Jaccard index
   at least 1/2), or when the rule learned for one (step 3) covers every failing case of the other
   while at least half the cases it covers fail (a forward bug that also shows in the gradient, a
   NaN among wrong values). A group whose rule is poor (fewer than half the cases it covers fail)
   is *split* where its failing regions differ: when up to three exact rules cover its failing
   cases, each becomes a finding.
3. **Rule learning** (``conformance.finding_rules``). The rule says where a finding fails, as a
   conjunction of at most three conditions over what records say about a case: parameters
   (``alpha != 1.0``), forward keyword arguments, dtype, memory layouts, tier, train/eval, rank or emptiness
   of inputs, the declared regimes the case lies in and, when the records carry value summaries
   (``values``), signs, zeros, NaN and infinities of inputs (``min(input) < 0``). It is learned from
   every case the search evaluated for that layer and backend (in every dtype, shrinking steps
   included: shrinking probes right at the boundary): every condition holds on all failing cases of
   the finding, and conditions are added greedily, each the one leaving the fewest passing cases
   covered (simpler kinds first on ties), while they exclude any; then conditions that exclude
   nothing are dropped. Each condition is the most general one that holds on every failing case
   (``alpha != 1.0`` rather than ``alpha == 0.5``; an interval's open end), so it also covers the
   cases a longer search would draw. The rule comes with its confusion counts on the cases seen: it
   is *exact* when it covers every failing case and no other.
4. **Counts.** Cases and dtypes are counted over the cases the searches drew (``replays``: never a
   shrinking step or a shrunk example's replay); the shrunk examples are counted apart, and the
   smallest one (fewest input elements) represents the finding.

Every rule is also a ``when`` expression of ``conformance.known`` (the same names and the same
evaluation, ``known.evaluate_when``), so ``nnconform triage`` turns a finding into a strict known
entry scoped by it (``conformance.finding_drafts.draft_entries``).

Unexpected passes (a strict known entry none of whose cases failed), failed statistical checks of
random layers and harness errors are findings of their own, without a rule.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends.base import DISCREPANCY_VERDICTS
from conformance.finding_rules import learn_clauses, learn_rule
from conformance.known import Values
from reports.baseline import error_kind
from reports.render import cell_key, dtype_rank, is_case_record, is_drawn_case, replays

FINDINGS_FILE = "findings.json"
CO_OCCURRENCE = 0.8  # two failure keys are one finding when the rarer fails with the other this often
LEARNING = ("a conjunction of at most 3 conditions over parameters, forward arguments, dtype, layouts, tier, "
            "train/eval, input ranks, regimes and (when recorded) input value summaries; each condition holds "
            "on every failing case of the finding and is the most general such; conditions are added greedily "
            "while they exclude passing cases, learned from every case evaluated for the layer and backend "
            "(shrinking steps included)")
SYMPTOM_WORDS = {
    "value": "wrong values", "nonfinite": "wrong NaN/inf positions", "signed-zero": "wrong signs of zero",
    "index": "wrong indices", "shape": "wrong shapes or dtypes", "raises": "raises on valid input",
    "accepts-invalid": "accepts invalid arguments", "crash": "crashes", "timeout": "hangs",
    "compile": "does not compile", "xpass": "no longer fails (known entry out of date)",
    "stat": "random choices fail their statistical check", "harness": "harness error",
}
CALL_KIND = {"crash": "crash", "timeout": "timeout", "compile": "compile"}


# -- facts of a record ---------------------------------------------------------------------------

def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def record_scope(record: Mapping[str, Any]) -> dict[str, Any]:
    """The names a known entry's ``when`` sees (``conformance.known.case_scope``), rebuilt from a
    case record: what its description says, its regimes and, when recorded, its value summaries."""
    case = record.get("case") or {}
    inputs = case.get("inputs") or {}
    scope: dict[str, Any] = {
        "params": _tuples(case.get("params") or {}), "forward_kwargs": _tuples(case.get("forward_kwargs") or {}),
        "tier": case.get("tier"), "train": bool(case.get("train", True)), "dtype": record.get("dtype"),
        "invalid": bool(case.get("invalid", record.get("tier") == "invalid")),
        "variant": record.get("variant", case.get("variant", "")),
        "shapes": {name: tuple(info.get("shape") or ()) for name, info in inputs.items()},
        "layouts": {name: (info.get("layout") or {}).get("kind", "contiguous") for name, info in inputs.items()},
        "cpu": frozenset(), "regimes": frozenset(record.get("regimes") or ()),
    }
    if isinstance(record.get("values"), dict):
        scope["values"] = {name: Values.of(v) for name, v in record["values"].items() if isinstance(v, dict)}
    return scope


def failure_keys(record: Mapping[str, Any]) -> frozenset[tuple[str, str]]:
    """What failed in a record (see the module docstring); empty for a pass or a known case."""
    verdict = record.get("verdict")
    if verdict == "fail":
        keys = set()
        for c in record.get("comparisons") or []:
            if not c.get("ok", True):
                for symptom in c.get("symptoms") or ["shape"]:
                    keys.add((str(c.get("tensor", "?")), str(symptom)))
        return frozenset(keys or {("?", "value")})
    if verdict == "error":
        if record.get("error_side") != "backend":
            return frozenset({("harness", str(record.get("error_side") or "harness"))})
        if record.get("tier") == "invalid":
            return frozenset({("call", "accepts-invalid")})
        return frozenset({("call", f"raises:{error_kind(record.get('error'))}")})
    if verdict in CALL_KIND:
        return frozenset({("call", CALL_KIND[verdict])})
    return frozenset()


def _symptom(key: tuple[str, str]) -> str:
    return key[1].split(":", 1)[0]


# -- findings ------------------------------------------------------------------------------------

@dataclass
class _Domain:
    op: str
    backend: str
    invalid: bool
    records: list[dict[str, Any]] = field(default_factory=list)  # distinct cases, first record of each
    keys: list[frozenset[tuple[str, str]]] = field(default_factory=list)
    scopes: list[dict[str, Any]] = field(default_factory=list)


def _case_records(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str, bool], _Domain]:
    domains: dict[tuple[str, str, bool], _Domain] = {}
    seen: dict[tuple[str, str, str, str], int] = {}
    for record in records:
        if not is_case_record(record) or not record.get("case") or record.get("tier") == "stat":
            continue
        if record.get("verdict") in ("known", "unsupported", "xpass"):
            continue  # explained, or no case: neither failing nor passing evidence
        op, backend, dtype = cell_key(record)
        identity = (op, backend, dtype, str(record.get("case_id") or id(record)))
        invalid = record.get("tier") == "invalid"
        domain = domains.setdefault((op, backend, invalid), _Domain(op, backend, invalid))
        if identity in seen:  # the same case again (a final replay): what failed in either counts
            index = seen[identity]
            domain.keys[index] = domain.keys[index] | failure_keys(record)
            continue
        seen[identity] = len(domain.records)
        domain.records.append(record)
        domain.keys.append(failure_keys(record))
        domain.scopes.append(record_scope(record))
    return domains


def _groups(domain: _Domain) -> list[set[int]]:
    """The failing cases of each probable root cause (indices into the domain's records)."""
    by_key: dict[tuple[str, str], set[int]] = defaultdict(set)
    for i, keys in enumerate(domain.keys):
        for key in keys:
            if key[0] != "harness":
                by_key[key].add(i)
    keys = sorted(by_key)
    parent = {k: k for k in keys}

    def root(k: tuple[str, str]) -> tuple[str, str]:
        while parent[k] != k:
            k = parent[k]
        return k

    rules = {k: learn_rule(domain.scopes, by_key[k]) for k in keys} if len(keys) > 1 else {}
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            pa, pb = by_key[a], by_key[b]
            together = len(pa & pb) >= CO_OCCURRENCE * min(len(pa), len(pb))
            within = any(sum(rules[x].covers(domain.scopes[j]) for j in by_key[y]) >= CO_OCCURRENCE * len(by_key[y])
                         for x, y in ((a, b), (b, a)))
            if together or within:
                parent[root(b)] = root(a)
    merged: dict[tuple[str, str], set[int]] = defaultdict(set)
    for k in keys:
        merged[root(k)] |= by_key[k]
    out = []
    for cases in merged.values():
        rule = learn_rule(domain.scopes, cases)
        parts = learn_clauses(domain.scopes, cases) if not rule.conditions and rule.fp else None
        out.extend(parts if parts and len(parts) > 1 else [cases])
    return out


def _input_size(record: Mapping[str, Any]) -> int:
    inputs = (record.get("case") or {}).get("inputs") or {}
    return sum(math.prod(info.get("shape") or []) for info in inputs.values())


def _smallest(records: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    if not records:
        return None
    # the random search shrinks toward the simplest values; a regime's search pins corners
    return min(records, key=lambda r: (_input_size(r), len((r.get("case") or {}).get("inputs") or {}),
                                       r.get("regime") is not None, dtype_rank(str(r.get("dtype"))),
                                       str(r.get("case_id"))))


def _worst(records: Sequence[Mapping[str, Any]], tensors: set[str]) -> dict[str, Any]:
    """The largest finite utilisation and error in ulps among the failing comparisons of these
    tensors (None when none is finite)."""
    utils, ulps = [], []
    for record in records:
        for c in record.get("comparisons") or []:
            if not c.get("ok", True) and c.get("tensor") in tensors and "value" in (c.get("symptoms") or []):
                for key, out in (("finite_utilisation", utils), ("max_ulp", ulps)):
                    try:
                        x = float(c.get(key))
                    except (TypeError, ValueError):
                        continue
                    out.append(x)
    finite_utils = [u for u in utils if math.isfinite(u)]
    finite_ulps = [u for u in ulps if math.isfinite(u)]
    return {"utilisation": max(finite_utils) if finite_utils and len(finite_utils) == len(utils) else None,
            "ulps": max(finite_ulps) if finite_ulps and len(finite_ulps) == len(ulps) else None}


def title_of(finding: Mapping[str, Any]) -> str:
    """``ELU on vendor: wrong values in output, grad.input where alpha != 1``."""
    kind = finding["kind"]
    what = ", ".join(SYMPTOM_WORDS.get(s, s) for s in finding["symptoms"]) or SYMPTOM_WORDS.get(kind, kind)
    if finding["tensors"]:
        what += " in " + ", ".join(finding["tensors"])
    if finding.get("errors"):
        what = f"raises {', '.join(finding['errors'])} on valid input"
    where = ""
    rule = finding.get("rule")
    if rule and rule["conditions"]:
        where = f" where {rule['text']}"
    invalid = " (invalid arguments)" if finding.get("invalid") and kind != "accepts-invalid" else ""
    return f"{finding['op']} on {finding['backend']}: {what}{where}{invalid}"


def analyse(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The findings of a run's records (JSON-able dicts, see ``write_findings``), most cases first
    within a layer, layers by name."""
    replayed = replays(list(records))
    finals_by_id = {id(r) for r in records if r.get("final")}
    # Every evaluated record of a case (draws, shrinking steps, finals) with its failure keys.
    by_case: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if is_case_record(record) and record.get("case"):
            op, backend, dtype = cell_key(record)
            by_case[(op, backend, dtype, str(record.get("case_id") or id(record)))].append(record)
    findings: list[dict[str, Any]] = []
    for (op, backend, _), domain in sorted(_case_records(records).items()):
        for cases in _seen_outside_shrinking(domain, _groups(domain), by_case, replayed):
            keys = set().union(*(domain.keys[i] for i in cases))
            group_keys = {k for k in keys if k[0] != "harness"}
            all_records = [r for i in cases for r in by_case[(op, backend, str(domain.records[i].get("dtype")),
                                                              str(domain.records[i].get("case_id") or
                                                                  id(domain.records[i])))]]
            all_records = [r for r in all_records if failure_keys(r) & group_keys]
            findings.append(_finding(domain, cases, group_keys, all_records, replayed, finals_by_id))
    findings += _standalone(records, replayed)
    findings.sort(key=lambda f: (f["op"], f["backend"], f["invalid"], -f["cases"]))
    for n, finding in enumerate(findings, 1):
        finding["id"] = f"F{n}"
    return findings


def _seen_outside_shrinking(domain: _Domain, groups: list[set[int]], by_case: Mapping[Any, list[dict[str, Any]]],
                            replayed: set[int]) -> list[set[int]]:
    """The groups, those whose failing cases were all met while shrinking another failure (never
    drawn, never a shrunk example) merged into the largest group of their domain: they belong to
    the failure that was being shrunk."""
    def drawn_or_final(i: int) -> bool:
        record = domain.records[i]
        key = (domain.op, domain.backend, str(record.get("dtype")), str(record.get("case_id") or id(record)))
        return any(not r.get("shrinking") or r.get("final") for r in by_case[key])

    kept = [g for g in groups if any(drawn_or_final(i) for i in g)]
    if not kept:
        return groups
    kept.sort(key=len, reverse=True)
    for g in groups:
        if not any(drawn_or_final(i) for i in g):
            kept[0] = kept[0] | g
    return kept


def _finding(domain: _Domain, cases: set[int], keys: set[tuple[str, str]], records: list[dict[str, Any]],
             replayed: set[int], finals: set[int]) -> dict[str, Any]:
    drawn = [r for r in records if is_drawn_case(r, replayed)]
    shrunk = [r for r in records if id(r) in finals and r.get("verdict") in DISCREPANCY_VERDICTS]
    tensors = sorted({k[0] for k in keys if k[0] != "call"}, key=_tensor_order)
    symptoms = sorted({_symptom(k) for k in keys}, key=_symptom_order)
    errors = sorted({k[1].split(":", 1)[1] for k in keys if k[1].startswith("raises:")})
    kind = "fail" if tensors else symptoms[0]
    rule = learn_rule(domain.scopes, cases)
    by_dtype = Counter(str(r.get("dtype")) for r in drawn)
    example = _smallest(shrunk) or _smallest(drawn) or _smallest(records)
    first = records[0] if records else domain.records[min(cases)]
    finding = {
        "id": "", "op": domain.op, "entry": first.get("entry", domain.op), "variant": first.get("variant", ""),
        "family": first.get("family", ""), "backend": domain.backend, "invalid": domain.invalid, "kind": kind,
        "tensors": tensors, "symptoms": symptoms, "errors": errors,
        "keys": sorted(f"{t}:{s}" for t, s in keys),
        "cases": len(drawn), "shrunk": len(shrunk),
        "dtypes": sorted(by_dtype, key=dtype_rank),
        "by_dtype": dict(sorted(by_dtype.items(), key=lambda x: dtype_rank(x[0]))),
        "dtypes_run": sorted({str(r.get("dtype")) for r in domain.records}, key=dtype_rank),
        "rule": rule.describe(),
        "worst": _worst(records, set(tensors)),
        "example": example,
        "examples": [_example_summary(r) for r in sorted(shrunk, key=lambda r: (dtype_rank(str(r.get("dtype"))),
                                                                               _input_size(r)))],
        "case_ids": [str(r.get("case_id")) for r in drawn],
    }
    finding["title"] = title_of(finding)
    return finding


def _example_summary(record: Mapping[str, Any]) -> dict[str, Any]:
    return {"case_id": record.get("case_id"), "dtype": record.get("dtype"), "regime": record.get("regime"),
            "verdict": record.get("verdict"), "artifacts": record.get("artifacts"), "size": _input_size(record)}


def _standalone(records: Sequence[dict[str, Any]], replayed: set[int]) -> list[dict[str, Any]]:
    """Findings without a rule: unexpected passes (one per known entry and layer × backend),
    failed statistical checks, harness errors."""
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if not is_case_record(record) or record.get("shrinking"):
            continue
        verdict = record.get("verdict")
        op, backend, _ = cell_key(record)
        if verdict == "xpass":
            groups[(op, backend, "xpass", str((record.get("known") or {}).get("id", "?")))].append(record)
        elif record.get("tier") == "stat" and verdict in DISCREPANCY_VERDICTS:
            groups[(op, backend, "stat", "")].append(record)
        elif verdict == "error" and record.get("error_side") in ("harness", "reference") and \
                id(record) not in replayed:
            groups[(op, backend, "harness", str(record.get("error_side")))].append(record)
    out = []
    for (op, backend, kind, detail), group in sorted(groups.items()):
        tensors = sorted({str(c.get("tensor")) for r in group for c in r.get("comparisons") or []
                          if not c.get("ok", True)}) if kind == "stat" else []
        by_dtype = Counter(str(r.get("dtype")) for r in group)
        finding = {
            "id": "", "op": op, "entry": group[0].get("entry", op), "variant": group[0].get("variant", ""),
            "family": group[0].get("family", ""), "backend": backend, "invalid": False, "kind": kind,
            "tensors": tensors, "symptoms": [kind], "errors": [], "keys": [f"{kind}:{detail}"],
            "cases": len(group), "shrunk": 0, "dtypes": sorted(by_dtype, key=dtype_rank),
            "by_dtype": dict(by_dtype), "dtypes_run": sorted(by_dtype, key=dtype_rank), "rule": None,
            "worst": {"utilisation": None, "ulps": None}, "example": group[0], "examples": [],
            "case_ids": [str(r.get("case_id")) for r in group], "known_id": detail if kind == "xpass" else None,
        }
        finding["title"] = (f"{op} on {backend}: known entry {detail!r} matched cases and none failed"
                            if kind == "xpass" else
                            f"{op} on {backend}: {SYMPTOM_WORDS[kind]}" + (f" ({detail})" if detail else ""))
        out.append(finding)
    return out


def _tensor_order(name: str) -> tuple[int, str]:
    prefix = 2 if name.startswith("grad.") else 1 if name.startswith(("state.", "random.")) else 0
    return (prefix, name)


def _symptom_order(symptom: str) -> int:
    order = ("value", "nonfinite", "signed-zero", "index", "shape", "raises", "accepts-invalid", "crash", "timeout",
             "compile")
    return order.index(symptom) if symptom in order else len(order)


# -- the findings file ---------------------------------------------------------------------------

def findings_document(findings: Sequence[dict[str, Any]], run_info: Mapping[str, Any]) -> dict[str, Any]:
    """``findings.json``: the findings (each with its cases' ids and its smallest example's record)
    and how rules are learned."""
    return {"version": 1, "run_id": run_info.get("run_id"), "learning": LEARNING,
            "counts": {"findings": len(findings), "cases": sum(f["cases"] for f in findings),
                       "shrunk": sum(f["shrunk"] for f in findings)},
            "findings": list(findings)}


def write_findings(directory: str | os.PathLike[str], findings: Sequence[dict[str, Any]],
                   run_info: Mapping[str, Any]) -> Path:
    from reports.records import _clean

    path = Path(directory) / FINDINGS_FILE
    tmp = path.with_name(f".{FINDINGS_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(_clean(findings_document(findings, run_info)), indent=1, sort_keys=True,
                              allow_nan=False), encoding="utf-8")
    os.replace(tmp, path)
    return path


def render_run(directory: str | os.PathLike[str], baseline: Any = None) -> tuple[dict[str, Path], list[dict[str, Any]]]:
    """Compute the findings of the run in ``directory``, write ``findings.json`` and render the
    HTML and JUnit reports with them. Returns (report paths, findings)."""
    from reports.publish import render_all
    from reports.render import load

    records, run_info = load(directory)
    findings = analyse(records)
    paths = {"findings": write_findings(directory, findings, run_info)}
    paths.update(render_all(directory, baseline, findings=findings))
    return paths, findings
