"""Standalone repro scripts: torch + numpy only, rebuilding one recorded case and re-checking it.

The runner saves the case's arrays beside the script (``repro/<name>.npz``): ``input.<name>``,
``cotangent.<output>``, ``choice.<name>`` (random choices the backend reported), ``ref.<tensor>``
(the reference values of every compared tensor: ``output``, ``grad.input``,
``state.running_mean``, ``random.mask``...) and ``bound.<tensor>`` (the allowed absolute error per
element). A derivative mode's own tensors are saved as its judgement compared them: ``ref.`` and
``bound.`` of ``jvp.<output>``, ``d2.<input>``, ``d2.cotangent.<output>`` (the expected values are
the reference's J·t and finite differences), ``unjudged.<tensor>`` where the run judged some
elements not at all (the reference undefined there: the backend's value stands, as in the run),
and for a jvp case ``jvp.projection``: the projections ⟨u, J·t⟩ on the run's cotangent draws,
whose backend side the script forms from the draws (``projection.u<i>.<output>``, NaN where an
element is left out) and the run's power-of-two scale (``projection.scale``), against the
reference's ⟨Jᵀu, t⟩ and its bound. ``render_repro`` writes the script: the case's call tree and
input description as literals, then the *verbatim source* of the modules the suite itself used to
run and judge it (the call interpreter and the element judge, handed over by the caller), so the
script runs exactly what the suite ran. Exit status 0: everything within bounds; 1: a mismatch.

``--backend module:Class`` (or a registered backend name) runs the case through that adapter
instead of torch.nn: the script rebuilds the ``backends.base.Case`` from the arrays and the recorded
description and call, loads the adapter with ``conformance.registry.load_backend`` and compares
what it returns in the same way, so a vendor's bug is reproduced by the script too. That path
needs nnconform importable (installed, or the script run from a checkout); the default one needs
only torch and numpy.
"""

from __future__ import annotations

import functools
import pprint
import re
import textwrap
from collections.abc import Sequence
from string import Template
from typing import Any

from reports.records import _clean, printable
from reports.render import case_summary

_HEADER = Template('''\
#!/usr/bin/env python3
"""nnconform repro: $op on $backend ($dtype), verdict "$verdict", case $case_id.

$summary

Runs the recorded call with torch and compares every tensor with the reference values and
bounds saved in $npz (needs only torch and numpy):

    python <this script> [--device cpu|cuda] [--npz PATH]

or runs the case through an nnconform adapter (needs nnconform importable: installed, or run
from its checkout), comparing the same way:

    python <this script> --backend module:Class|NAME$backend_hint

Prints one line per compared tensor (for a jvp case also jvp.projection: the projections of J·t
on the run's cotangent draws); exits 1 when any tensor is out of bound, 0 otherwise (2 when
the adapter cannot be loaded). Recorded backend: $backend on device "$device". By default the call
runs through torch itself (the same call interpreter as nnconform's torch adapter, included below).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
''')

_CASE = Template('''
# --- the case (from the nnconform record) ----------------------------------------------------
NPZ = $npz_literal
DTYPE = $dtype_literal
CASE = $case
CALL = $call
INVALID = $invalid
TYPES = $types
LAYOUTS = $layouts
REQUIRES_GRAD = $requires_grad
MAX_VALUE = $max_value
UNIT_ROUNDOFF = $unit_roundoff


def check(name, ref, bound, got, who="torch", unjudged=None):
    """One line for one compared tensor; False when it is out of bound. Elements marked
    ``unjudged`` were not judged by the run (no reference there): the backend's value stands."""
    if got is None:
        print(f"{name:<24} MISSING from {who}'s result")
        return False
    got = got[0]
    if got.shape != ref.shape:
        print(f"{name:<24} SHAPE {list(got.shape)} != expected {list(ref.shape)}")
        return False
    if unjudged is not None:
        ref, bound = np.where(unjudged, got, ref), np.where(unjudged, 0.0, bound)
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
              f"{who} {got[at].item()!r}, bound {float(bound[at]):.3e}")
    return mismatches == 0


def projections(arrays, got):
    """jvp.projection as the run formed it from the backend's J·t: ⟨u, J·t⟩ summed over the
    outputs for each saved cotangent draw u (NaN in u: an element left out), times the run's
    scale; None when a jvp.<output> is missing or misshapen."""
    draws = {}
    for key in arrays.files:
        if key.startswith("projection.u"):
            index, output = key[len("projection.u"):].split(".", 1)
            draws.setdefault(int(index), []).append((output, arrays[key]))
    values = []
    for index in sorted(draws):
        terms = []
        for output, u in draws[index]:
            y = got.get("jvp." + output)
            if y is None or np.shape(y[0]) != u.shape:
                return None
            with np.errstate(all="ignore"):
                terms.append(np.sum(np.where(np.isnan(u), 0.0, u * np.asarray(y[0], dtype=np.float64))))
        values.append(float(sum(terms)))
    return np.array(values) * float(arrays["projection.scale"]), None


def _recorded(value):
    """A recorded parameter as the case held it: JSON lists back to tuples, "inf"/"nan" to floats."""
    if isinstance(value, list):
        return tuple(_recorded(v) for v in value)
    if isinstance(value, dict):
        return {k: _recorded(v) for k, v in value.items()}
    if isinstance(value, str) and value in ("inf", "-inf", "nan"):
        return float(value)
    return value


def load_adapter(spec):
    """An nnconform backend by name or module:Class (needs nnconform importable)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # a checkout, and adapters beside it, as `python -m` would see them
    from conformance.registry import load_backend

    return load_backend(spec)


def run_adapter(backend, inputs, cotangents, choices):
    """Rebuild the recorded Case and run it through ``backend``; {qualified name: (array, dtype)}."""
    from backends.base import Case, Layout

    case = Case(op=CASE["op"], dtype=DTYPE, params=_recorded(CASE["params"]), inputs=dict(inputs),
                differentiable=tuple(REQUIRES_GRAD),
                layouts={n: Layout.from_description(d) for n, d in LAYOUTS.items()},
                forward_kwargs=_recorded(CASE["forward_kwargs"]), train=CASE["train"], tier=CASE["tier"],
                cotangents=dict(cotangents), invalid=INVALID, note=CASE["note"], variant=CASE["variant"],
                types=dict(TYPES), choices=dict(choices), call=CALL)
    result = backend.run(case)
    return {name: (np.asarray(value, dtype=np.float64) if np.asarray(value).dtype.kind == "f" else np.asarray(value),
                   result.dtypes.get(name)) for name, value in result.tensors().items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description="nnconform repro")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1...)")
    parser.add_argument("--npz", default=None, help="the arrays (default: %s beside this script)" % NPZ)
    parser.add_argument("--backend", default=None, metavar="module:Class|NAME",
                        help="run the case through this nnconform adapter instead of torch.nn")
    options = parser.parse_args(argv)
    path = Path(options.npz) if options.npz else Path(__file__).resolve().parent / NPZ
    arrays = np.load(path)
    inputs = {k[len("input."):]: arrays[k] for k in arrays.files if k.startswith("input.")}
    cotangents = {k[len("cotangent."):]: arrays[k] for k in arrays.files if k.startswith("cotangent.")}
    choices = {k[len("choice."):]: arrays[k] for k in arrays.files if k.startswith("choice.")}
    who = "torch"
    if options.backend:
        try:
            backend = load_adapter(options.backend)
        except Exception as exc:
            print(f"cannot load backend {options.backend!r}: {type(exc).__name__}: {exc}")
            return 2
        available, reason = backend.availability()
        if not available:
            print(f"backend {backend.name} is unavailable: {reason}")
            return 2
        who = f"backend {backend.name}"
        print(f"running the case through {who} ({options.backend})")

    def run():
        if options.backend:
            return run_adapter(backend, inputs, cotangents, choices)
        return run_call(CALL, inputs, dtype=DTYPE, device=options.device, types=TYPES, layouts=LAYOUTS,
                        requires_grad=REQUIRES_GRAD, cotangents=cotangents)

    if INVALID:
        try:
            run()
        except Exception as exc:  # the expected outcome: the case is rejected
            print(f"{who} raised as required: {type(exc).__name__}: {exc}")
            return 0
        print(f"{who} accepted a case the reference rejects as invalid")
        return 1
    got = run()
    grad_init = (CALL or {}).get("grad_init")
    if grad_init:  # the case accumulated into a preset .grad: subtract it (exact), as nnconform does
        for name, (value, dtype) in list(got.items()):
            short = name[len("grad."):]
            if name.startswith("grad.") and short in grad_init.get("scale", {}) and value.dtype.kind == "f":
                got[name] = (np.asarray(value, dtype=np.float64) - initial_grad(grad_init, short, value.shape), dtype)
    if "projection.scale" in arrays.files:  # a jvp case: ⟨u, J·t⟩ against the reference's ⟨Jᵀu, t⟩
        got["jvp.projection"] = projections(arrays, got)
    ok = True
    for key in arrays.files:
        if key.startswith("ref."):
            name = key[len("ref."):]
            ref = arrays[key]
            bound = arrays["bound." + name] if "bound." + name in arrays.files else np.zeros(ref.shape)
            unjudged = arrays["unjudged." + name] if "unjudged." + name in arrays.files else None
            ok &= check(name, ref, bound, got.get(name), who, unjudged)
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


def _docstring_safe(text: Any, multiline: bool = True) -> str:
    """Text that stays inside the script's docstring, as data: backslashes and quotes escaped,
    control characters (newlines too, unless ``multiline``) shown escaped."""
    return printable(text, multiline).replace("\\", "\\\\").replace('"', '\\"')


def _inline(name: str, source: str, siblings: Sequence[str] = ()) -> str:
    """A module's source, ready to sit inside the script: its future import is the script's, and its
    imports from the ``siblings`` (the other modules inlined, by module name) are left out: the
    script defines every inlined name in its one namespace."""
    body = "\n".join(line for line in source.splitlines() if line.strip() != "from __future__ import annotations")
    for module in siblings:
        body = re.sub(rf"^[ \t]*from {re.escape(module)} import (\([^)]*\)|[^\n(]*)\n", "", body, flags=re.M)
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
    line = functools.partial(_docstring_safe, multiline=False)
    header = _HEADER.substitute(
        op=line(record.get("op", "?")), backend=line(record.get("backend", "?")),
        device=line(record.get("device", "cpu")), dtype=line(dtype), verdict=line(record.get("verdict", "?")),
        case_id=line(record.get("case_id", "?")),
        summary=_docstring_safe(textwrap.fill(case_summary(record), width=96, break_long_words=False)),
        npz=_docstring_safe(npz_filename),
        backend_hint=_docstring_safe(f"\n\n(recorded with --backend {record['backend_spec']})"
                                     if record.get("backend_spec") else ""))
    body = _CASE.substitute(
        npz_literal=repr(npz_filename), dtype_literal=repr(dtype), call=_literal(record.get("call") or {}),
        case=_literal({"op": case.get("op", record.get("entry") or record.get("op", "?")),
                       "variant": case.get("variant", record.get("variant") or ""),
                       "params": case.get("params") or {}, "forward_kwargs": case.get("forward_kwargs") or {},
                       "train": bool(case.get("train", True)), "tier": case.get("tier", "float"),
                       "note": case.get("note", "")}),
        invalid=repr(bool(case.get("invalid", False))),
        types=_literal({n: i.get("type") or "float" for n, i in inputs.items()}),
        layouts=_literal({n: i.get("layout") or {"kind": "contiguous"} for n, i in inputs.items()}),
        requires_grad=repr(tuple(n for n, i in inputs.items() if i.get("requires_grad"))),
        max_value=repr(float(max_value)), unit_roundoff=repr(float(unit_roundoff)))
    modules = [name.removesuffix(".py").replace("/", ".") for name, _ in sources]
    return header + "".join(_inline(name, src, [m for m in modules if m != modules[i]])
                            for i, (name, src) in enumerate(sources)) + body
