"""Drafts from findings: strict known entries scoped by each finding's rule (``nnconform triage``),
written as TOML, and what the declarations say about the tensors of a finding (for bug reports).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

# -- drafting known entries ----------------------------------------------------------------------

TRIAGED_KINDS = ("fail", "raises", "accepts-invalid", "crash", "timeout", "compile")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def _bound(value: float, margin: float) -> float:
    """``value`` × ``margin`` rounded up to two significant digits."""
    x = value * margin
    if x <= 0 or not math.isfinite(x):
        return x
    scale = 10.0 ** (math.floor(math.log10(x)) - 1)
    return math.ceil(x / scale - 1e-9) * scale


def draft_entries(findings: Sequence[dict[str, Any]], run_info: Mapping[str, Any], report_dir: str,
                  existing_ids: Iterable[str] = (), margin: float = 10.0) -> tuple[list[dict[str, Any]], list[str]]:
    """Strict known entries for the findings a known entry can explain, and a note for each other
    (an unexpected pass, a statistical check, a harness error). Each entry is scoped by its
    finding's layer, backend, the dtypes it failed in and its rule; it explains the finding's
    tensors and symptoms and, for wrong values, errors up to ``margin`` times the largest seen.
    Returns (entries, notes)."""
    taken = set(existing_ids)
    entries, notes = [], []
    specs = {info.get("name"): info.get("spec") or info.get("name") for info in run_info.get("backends") or []
             if isinstance(info, dict)}
    for finding in findings:
        if finding["kind"] not in TRIAGED_KINDS:
            notes.append(f"{finding['id']} ({finding['title']}): not drafted — "
                         + ("remove or relax that known entry" if finding["kind"] == "xpass" else
                            "write its entry by hand, with symptom = \"statistics\" and a reason that says why "
                            "the draws are not the declared distribution" if finding["kind"] == "stat" else
                            "a harness error is not a known discrepancy"))
            continue
        base = _slug(f"{finding['backend']}-{finding['op']}-{'-'.join(finding['tensors'] or [finding['kind']])}-"
                     f"{'-'.join(finding['symptoms'])}")[:80]
        entry_id, n = base, 2
        while entry_id in taken:
            entry_id, n = f"{base}-{n}", n + 1
        taken.add(entry_id)
        rule = finding.get("rule") or {}
        conditions = [rule["when"]] if rule.get("when") else []
        dtype = "*"
        if set(finding["dtypes"]) != set(finding["dtypes_run"]) and finding["dtypes"]:
            if len(finding["dtypes"]) == 1:
                dtype = finding["dtypes"][0]
            elif not any(c.startswith("dtype") for c in rule.get("conditions", [])):
                conditions.insert(0, f"dtype in {tuple(finding['dtypes'])!r}")
        if finding["invalid"]:
            conditions.insert(0, "invalid")
        entry: dict[str, Any] = {"id": entry_id, "op": finding["op"], "backend": finding["backend"], "dtype": dtype}
        if conditions:
            entry["when"] = " and ".join(f"({c})" if " or " in c else c for c in conditions)
        symptoms = list(finding["symptoms"])
        if finding["tensors"]:
            entry["tensors"] = list(finding["tensors"])
        entry["symptom"] = symptoms if len(symptoms) > 1 else symptoms[0]
        worst = finding.get("worst") or {}
        bound_note = ""
        if "value" in symptoms:
            if worst.get("utilisation") is not None:
                entry["max_utilisation"] = _bound(worst["utilisation"], margin)
                bound_note = (f" Bound: {margin:g}× the largest error seen (utilisation "
                              f"{worst['utilisation']:.3g}), so a grosser failure is still reported.")
            elif worst.get("ulps") is not None:
                entry["max_ulps"] = _bound(worst["ulps"], margin)
                bound_note = (f" Bound: {margin:g}× the largest error seen ({worst['ulps']:.3g} ulps), so a grosser "
                              "failure is still reported.")
        entry["strict"] = True
        entry["reason"] = _reason(finding, run_info, report_dir, specs.get(finding["backend"]), bound_note)
        entries.append(entry)
    return entries, notes


def _reason(finding: Mapping[str, Any], run_info: Mapping[str, Any], report_dir: str, backend_spec: str | None,
            bound_note: str) -> str:
    from reports.render import call_text, input_text

    rule = finding.get("rule") or {}
    dtypes = ", ".join(f"{d} ({n})" for d, n in finding["by_dtype"].items())
    text = (f"{finding['title']}. {finding['cases']} failing case{'s' if finding['cases'] != 1 else ''} in {dtypes}; "
            f"where: {rule.get('text', 'everywhere')} ({rule.get('quality', 'no rule')}).")
    example = finding.get("example") or {}
    case = example.get("case") or {}
    if case:
        inputs = ", ".join(input_text(n, i) for n, i in (case.get("inputs") or {}).items())
        text += f" Smallest example: {call_text(example)} on {inputs}"
        failing = [c for c in example.get("comparisons") or [] if not c.get("ok", True) and c.get("worst")]
        if failing:
            w = failing[0]["worst"][0]
            at = f"[{', '.join(map(str, w.get('index') or ()))}]" if w.get("index") else ""
            text += f"; {failing[0]['tensor']}{at}: reference {w.get('ref')!r}, got {w.get('got')!r}"
        text += "."
    elif example.get("error"):
        text += f" Error: {str(example['error']).strip().splitlines()[0][:200]}."
    repro = (example.get("artifacts") or {}).get("repro")
    if repro:
        command = f"python {os.path.join(report_dir, repro)}"
        if backend_spec and backend_spec not in ("torch-cpu", "torch-cuda"):
            command += f" --backend {backend_spec}"
        text += f" Repro: {command} (needs that run's report directory)."
    text += bound_note
    started = run_info.get("started") or ""
    text += f" Drafted by nnconform triage from run {run_info.get('run_id', '?')}" + (f" ({started[:10]})" if started
                                                                                       else "") + "."
    return text


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(float(value)) if isinstance(value, float) else str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def entries_toml(entries: Sequence[dict[str, Any]]) -> str:
    """The entries as ``[[discrepancy]]`` tables, each after a comment saying what it explains."""
    blocks = []
    for entry in entries:
        lines = [f"# {_comment(entry['reason'].split('. ')[0])}", "[[discrepancy]]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in entry.items()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def _comment(text: str) -> str:
    return " ".join(str(text).split())[:200]


HEADER = """# Known discrepancies of this project's backends (nnconform's schema: see conformance/known.py).
# Drafted by `nnconform triage`; review each entry: its scope (op, backend, dtype, when), what it
# explains (tensors, symptom, bound) and its reason, then link the bug you filed.
"""


def write_known_file(path: str | os.PathLike[str], entries: Sequence[dict[str, Any]]) -> Path:
    """Append ``entries`` to the known file ``path`` (created with a header when missing), checking
    that the result loads (``conformance.known.load_file``) before replacing it."""
    from conformance.known import load_file

    path = Path(path)
    old = path.read_text(encoding="utf-8") if path.exists() else HEADER
    text = old.rstrip("\n") + "\n\n" + entries_toml(entries) if entries else old
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    try:
        load_file(tmp)
    except ValueError:
        tmp.unlink()
        raise
    os.replace(tmp, path)
    return path



# -- what the declarations say, for bug reports --------------------------------------------------

def _policy_text(tol: Any) -> str:
    """A declaration's tolerance policy for one tensor, in words."""
    if callable(tol.magnitude):
        magnitude = "the layer's own first-order error analysis"
    elif tol.magnitude == "ref":
        magnitude = "absref = |ref| (an elementwise function)"
    else:
        magnitude = "absref = the computation on absolute values (|W|·|X| for a product)"
    exact = {"always": "bit-exact in every tier (a copy or selection)",
             "bitwise": "bit-exact in the exact tier wherever every partial sum is an integer the dtype holds",
             "rounded": "exact up to one final rounding in the exact tier",
             "none": "no exactness claim"}.get(tol.exact, tol.exact)
    return f"{magnitude}; c = {tol.c:g}, out_ulps = {tol.out_ulps:g}; {exact}"


def declaration_facts(findings: Sequence[Mapping[str, Any]]) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """({finding id: {tensor: tolerance policy}}, {op: torch target}) from the declarations (empty
    where a finding's layer is not declared in this nnconform)."""
    from conformance.spec import all_specs

    specs = all_specs()
    policies: dict[str, dict[str, str]] = {}
    targets: dict[str, str] = {}
    for finding in findings:
        spec = specs.get(str(finding.get("op")))
        if spec is None:
            continue
        targets[spec.id] = spec.torch.target
        tensors = set(finding.get("tensors") or ())
        example = finding.get("example") or {}
        tensors |= {str(c.get("tensor")) for c in example.get("comparisons") or [] if not c.get("ok", True)}
        policies[str(finding.get("id"))] = {t: _policy_text(spec.tolerance_for(t)) for t in sorted(tensors)
                                            if not t.startswith("stat.")}
    return policies, targets
