"""Standalone repro scripts: torch + numpy only, rebuilding one recorded case and re-checking it.

The runner saves the case's arrays beside the script (``repro/<name>.npz``): ``input.<name>``,
``cotangent.<output>``, ``choice.<name>`` (random choices the backend reported), ``ref.<tensor>``
(the reference values of every compared tensor: ``output``, ``grad.input``,
``state.running_mean``, ``random.mask``...) and ``bound.<tensor>`` (the allowed absolute error per
element). ``render_repro`` writes the script: the case's call tree and input description as
literals, then the *verbatim source* of the modules the suite itself used to run and judge it (the
call interpreter and the element judge, handed over by the caller), so the script runs exactly
what the suite ran. Exit status 0: everything within bounds; 1: a mismatch.
"""

from __future__ import annotations

import pprint
import textwrap
from collections.abc import Sequence
from string import Template
from typing import Any

from reports.records import _clean
from reports.render import case_summary

_HEADER = Template('''\
#!/usr/bin/env python3
"""nnconform repro: $op on $backend ($dtype), verdict "$verdict", case $case_id.

$summary

Runs the recorded call with torch and compares every tensor with the reference values and
bounds saved in $npz (needs only torch and numpy):

    python <this script> [--device cpu|cuda] [--npz PATH]

Prints one line per compared tensor; exits 1 when any tensor is out of bound, 0 otherwise.
Recorded backend: $backend on device "$device". The call runs through torch itself (the same call
interpreter as nnconform's torch adapter, included below); a custom adapter's own code is not
part of this script.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
''')

_CASE = Template('''
# --- the case (from the nnconform record) ----------------------------------------------------
NPZ = $npz_literal
DTYPE = $dtype_literal
CALL = $call
INVALID = $invalid
TYPES = $types
LAYOUTS = $layouts
REQUIRES_GRAD = $requires_grad
MAX_VALUE = $max_value
UNIT_ROUNDOFF = $unit_roundoff


def check(name, ref, bound, got):
    """One line for one compared tensor; False when it is out of bound."""
    if got is None:
        print(f"{name:<24} MISSING from torch's result")
        return False
    got = got[0]
    if got.shape != ref.shape:
        print(f"{name:<24} SHAPE {list(got.shape)} != expected {list(ref.shape)}")
        return False
    if ref.dtype.kind != "f":
        bad = judge_exact(ref, got)
        err = np.where(bad, np.inf, 0.0)
        ratio = err
    else:
        verdict = judge_floats(ref, got, bound, MAX_VALUE, UNIT_ROUNDOFF)
        bad, err, ratio = verdict["bad"], verdict["err"], verdict["ratio"]
    mismatches = int(bad.sum())
    status = "ok" if mismatches == 0 else "MISMATCH"
    print(f"{name:<24} max abs err {float(err.max()) if err.size else 0.0:.3e}  "
          f"max utilisation {float(ratio.max()) if ratio.size else 0.0:.3g}  "
          f"mismatches {mismatches}/{ref.size}  {status}")
    if mismatches:
        at = np.unravel_index(int(np.argmax(np.where(bad, ratio, -1.0))), ref.shape)
        print(f"{'':<24} worst at {tuple(int(i) for i in at)}: reference {ref[at].item()!r}, "
              f"torch {got[at].item()!r}, bound {float(bound[at]):.3e}")
    return mismatches == 0


def main(argv=None):
    parser = argparse.ArgumentParser(description="nnconform repro")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1...)")
    parser.add_argument("--npz", default=None, help="the arrays (default: %s beside this script)" % NPZ)
    options = parser.parse_args(argv)
    path = Path(options.npz) if options.npz else Path(__file__).resolve().parent / NPZ
    arrays = np.load(path)
    inputs = {k[len("input."):]: arrays[k] for k in arrays.files if k.startswith("input.")}
    cotangents = {k[len("cotangent."):]: arrays[k] for k in arrays.files if k.startswith("cotangent.")}

    def run():
        return run_call(CALL, inputs, dtype=DTYPE, device=options.device, types=TYPES, layouts=LAYOUTS,
                        requires_grad=REQUIRES_GRAD, cotangents=cotangents)

    if INVALID:
        try:
            run()
        except Exception as exc:  # the expected outcome: torch rejects the case
            print(f"torch raised as required: {type(exc).__name__}: {exc}")
            return 0
        print("torch accepted a case the reference rejects as invalid")
        return 1
    got = run()
    ok = True
    for key in arrays.files:
        if key.startswith("ref."):
            name = key[len("ref."):]
            ref = arrays[key]
            bound = arrays["bound." + name] if "bound." + name in arrays.files else np.zeros(ref.shape)
            ok &= check(name, ref, bound, got.get(name))
    print("conforms" if ok else "DISCREPANCY")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
''')


def _literal(value: Any) -> str:
    """Python source for JSON-able data (a long dict one key per line)."""
    value = _clean(value)
    text = pprint.pformat(value, width=10**6, sort_dicts=False)
    if len(text) <= 88 or not isinstance(value, dict):
        return text
    lines = [f"    {k!r}: {pprint.pformat(v, width=10**6, sort_dicts=False)}," for k, v in value.items()]
    return "{\n" + "\n".join(lines) + "\n}"


def _docstring_safe(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def _inline(name: str, source: str) -> str:
    """A module's source, ready to sit inside the script (its future import is the script's)."""
    body = "\n".join(line for line in source.splitlines() if line.strip() != "from __future__ import annotations")
    return f"\n# --- {name}, verbatim from nnconform {'-' * max(0, 70 - len(name))}\n{body}\n"


def render_repro(record: dict[str, Any], npz_filename: str, sources: Sequence[tuple[str, str]],
                 max_value: float, unit_roundoff: float) -> str:
    """A standalone Python script (torch + numpy) that runs ``record``'s call and re-checks it
    against ``npz_filename`` (resolved beside the script; ``--npz`` overrides).

    ``sources`` are (module name, source text) pairs inlined verbatim; they must define
    ``run_call`` (the call interpreter) and ``judge_floats`` / ``judge_exact`` (the element judge).
    ``max_value`` and ``unit_roundoff`` describe the case's dtype for the overflow rule.
    """
    case = record.get("case") or {}
    inputs = case.get("inputs") or {}
    dtype = str(record.get("dtype") or case.get("dtype") or "float32")
    header = _HEADER.substitute(
        op=record.get("op", "?"), backend=record.get("backend", "?"), device=record.get("device", "cpu"),
        dtype=dtype, verdict=record.get("verdict", "?"), case_id=record.get("case_id", "?"),
        summary=_docstring_safe(textwrap.fill(case_summary(record), width=96, break_long_words=False)),
        npz=_docstring_safe(npz_filename))
    body = _CASE.substitute(
        npz_literal=repr(npz_filename), dtype_literal=repr(dtype), call=_literal(record.get("call") or {}),
        invalid=repr(bool(case.get("invalid", False))),
        types=_literal({n: i.get("type") or "float" for n, i in inputs.items()}),
        layouts=_literal({n: i.get("layout") or {"kind": "contiguous"} for n, i in inputs.items()}),
        requires_grad=repr(tuple(n for n, i in inputs.items() if i.get("requires_grad"))),
        max_value=repr(float(max_value)), unit_roundoff=repr(float(unit_roundoff)))
    return header + "".join(_inline(name, src) for name, src in sources) + body
