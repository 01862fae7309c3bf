"""Findings as upstream bug reports (``nnconform findings DIR --markdown``).

Each finding (``conformance.findings``) becomes one Markdown section a maintainer can act on:

- a title: the layer, what is wrong (tensors and symptom), where;
- the versions: torch and the backend's, Python, NumPy, the platform, and the CPU (model and the
  feature flags that select kernels: SSE/AVX/AVX-512/AMX/FMA/F16C...);
- a minimal standalone repro: torch code rebuilding the smallest shrunk example with its values
  inline (small arrays) and printing what it got next to the expected values (``torch_snippet``;
  a call the snippet cannot spell out points to the saved repro script and arrays instead);
- expected (the float64 reference, on the very values the backend received) against got, at the
  worst elements, with the error allowed there;
- the bound and why it is the bound (the tolerance model with the dtype's unit roundoff, the
  reduction length and the declaration's policy, in ``policies`` from the caller);
- the failing region: the learned rule, how exact it is on the cases seen, counts and dtypes.

Only ``backends`` and NumPy are imported (reports point nowhere else); the caller hands over what
needs the declarations.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from reports.records import printable
from reports.render import (
    call_text,
    example_arrays,
    finding_modes,
    format_number,
    input_text,
    mode_cell_text,
    mode_coverage,
    value_text,
)

KERNEL_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "avx_vnni", "neon", "asimd", "sve")
SNIPPET_VALUES = 256  # inputs up to this many elements are written into the snippet
UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}
SYMPTOM_EXPLANATIONS = {
    "value": "finite values farther from the reference than the bound allows",
    "nonfinite": "NaN or ±inf where the reference has a finite value, or the reverse (or of the other sign)",
    "signed-zero": "a zero of the wrong sign where the operation copies or selects its input",
    "index": "integer or boolean results that differ",
    "shape": "a result missing, extra, or of the wrong shape or dtype",
    "raises": "an exception on arguments the documentation allows",
    "accepts-invalid": "no exception on arguments the documentation (and the reference) rejects",
    "crash": "the process died", "timeout": "the call did not return", "compile": "the call did not compile",
}


class _Unspellable(Exception):
    """A call tree the snippet cannot write as plain torch code."""


def _py(value: Any) -> str:
    """A Python literal for a call-tree scalar (``"inf"``/``"nan"`` strings are floats)."""
    if isinstance(value, str) and value in ("inf", "-inf", "nan"):
        return f"float({value!r})"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return f"float({str(value)!r})"
        return repr(value)
    if isinstance(value, (bool, int, str)) or value is None:
        return repr(value)
    raise _Unspellable(repr(value))


def _tensor_literal(values: Any, dtype: str) -> str:
    """``torch.tensor([...], dtype=torch.float16)`` holding ``values`` exactly (they are
    representable in the dtype, so rounding to it changes nothing)."""
    import numpy as np

    arr = np.asarray(values)

    def nest(a: Any) -> str:
        if a.ndim == 0:
            x = a.item()
            if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
                return f"float({str(x)!r})"
            return repr(x)
        return "[" + ", ".join(nest(sub) for sub in a) + "]"

    return f"torch.tensor({nest(arr)}, dtype=torch.{dtype})"


class _Snippet:
    """Writes torch code for one call tree (``backends.torch_call``) and its arrays."""

    def __init__(self, record: Mapping[str, Any], arrays: Mapping[str, Any], npz: str | None):
        self.record, self.arrays, self.npz = record, arrays, npz
        case = record.get("case") or {}
        self.inputs = case.get("inputs") or {}
        self.dtype = str(record.get("dtype"))
        self.lines: list[str] = []
        self.made: dict[str, str] = {}
        self.needs_npz = False

    def variable(self, name: str) -> str:
        return "".join(ch if ch.isalnum() else "_" for ch in name) or "x"

    def tensor(self, name: str) -> str:
        """The variable holding input ``name``, built once in its layout, a leaf that requires
        grad when it is differentiable."""
        if name in self.made:
            return self.made[name]
        import numpy as np

        info = self.inputs.get(name) or {}
        values = np.asarray(self.arrays.get(f"input.{name}"))
        var = self.variable(name)
        kind = info.get("type", "float")
        dtype = self.dtype if kind == "float" else ("int64" if kind in ("int64", "int_list") else "bool")
        if values.size > SNIPPET_VALUES:
            self.needs_npz = True
            source = f"torch.from_numpy(arrays['input.{name}']).to(torch.{dtype})"
        else:
            source = _tensor_literal(values.astype(np.float64) if kind == "float" else values, dtype)
        if kind == "int_list":
            self.lines.append(f"{var} = {values.astype(int).reshape(-1).tolist()!r}")
            self.made[name] = var
            return var
        layout = info.get("layout") or {"kind": "contiguous"}
        kind_of_layout = layout.get("kind", "contiguous")
        if kind_of_layout in ("channels_last", "permuted"):
            perm = list(layout["perm"])
            inverse = [perm.index(d) for d in range(len(perm))]
            source = (f"{source}.permute({', '.join(map(str, perm))}).contiguous()"
                      f".permute({', '.join(map(str, inverse))})")
            note = f"  # stored in dim order {tuple(perm)}"
        elif kind_of_layout == "strided":
            step = list(layout["step"])
            big = [s * k for s, k in zip(values.shape, step)]
            slices = ", ".join(f"::{k}" for k in step)
            self.lines.append(f"{var} = torch.full({big}, float('nan'), dtype=torch.{dtype})[{slices}]  "
                              f"# every {step}-th element of a NaN-filled buffer")
            self.lines.append(f"{var}.copy_({source})")
            source = var
            note = ""
        elif kind_of_layout == "expanded":
            dims = list(layout["dims"])
            index = ", ".join("0:1" if d in dims else ":" for d in range(values.ndim))
            if values.size <= SNIPPET_VALUES:
                source = _tensor_literal(values[tuple(slice(0, 1) if d in dims else slice(None)
                                                      for d in range(values.ndim))].astype(np.float64), dtype)
            else:
                source = f"{source}[{index}]"
            source = f"{source}.expand({', '.join(map(str, values.shape))})"
            note = f"  # stride 0 along dims {tuple(dims)}"
        else:
            note = ""
        if info.get("requires_grad"):
            if source.startswith("torch.tensor(") and source.endswith(")") and kind_of_layout == "contiguous":
                source = source[:-1] + ", requires_grad=True)"
            else:
                source = f"{source}.detach().requires_grad_()"
        if source != var:
            self.lines.append(f"{var} = {source}{note}")
        self.made[name] = var
        return var

    def node(self, node: Any) -> str:
        if isinstance(node, list):
            inner = [self.node(n) for n in node]
            return f"({inner[0]},)" if len(inner) == 1 else "(" + ", ".join(inner) + ")"
        if not isinstance(node, dict):
            return _py(node)
        if "input" in node:
            var = self.tensor(node["input"])
            return f"{var}.clone()" if node.get("copy") else var
        if "list" in node:
            return "[" + ", ".join(self.node(n) for n in node["list"]) + "]"
        if "literal" in node:
            return _py(node["literal"]) if not isinstance(node["literal"], (list, dict)) else repr(node["literal"])
        if "module" in node:
            spec = node["module"]
            return f"{spec['target']}({self.kwargs(spec.get('init', {}))})"
        if "call" in node:
            inner = node["call"]
            args = [self.node(n) for n in inner.get("args", ())]
            kwargs = self.kwargs(inner.get("kwargs", {}))
            return f"{inner['target']}({', '.join(args + ([kwargs] if kwargs else []))})"
        raise _Unspellable(f"node {sorted(node)[0]}")

    def kwargs(self, items: Mapping[str, Any]) -> str:
        return ", ".join(f"{k}={self.node(v)}" for k, v in items.items())

    def write(self) -> str:
        call = self.record.get("call") or {}
        if not call or "forward" in call or call.get("random") or call.get("init_args"):
            raise _Unspellable("call")
        outputs = call.get("outputs", "output")
        names = [outputs] if isinstance(outputs, str) else outputs
        if not isinstance(names, list) or not all(isinstance(n, str) or n is None for n in names):
            raise _Unspellable("outputs")
        body: list[str] = []
        if call.get("kind", "module") == "module":
            init = self.kwargs(call.get("init", {}))
            body.append(f"m = {call['target']}({init}).to(torch.{self.dtype})")
            for path in call.get("parameters", ()):
                if f"input.{path}" in self.arrays:
                    var = self.tensor(path)
                    grad = (self.inputs.get(path) or {}).get("requires_grad", False)
                    owner, _, attr = path.rpartition(".")
                    holder = f"m.get_submodule({owner!r})" if owner else "m"
                    body.append(f"setattr({holder}, {attr!r}, torch.nn.Parameter({var}.detach(), "
                                f"requires_grad={grad}))")
            for path in call.get("buffers", ()):
                if f"input.{path}" in self.arrays:
                    var = self.tensor(path)
                    owner, _, attr = path.rpartition(".")
                    holder = f"m.get_submodule({owner!r})" if owner else "m"
                    body.append(f"setattr({holder}, {attr!r}, {var}.detach())")
            if not call.get("train", True):
                body.append("m.eval()")
            fn = "m"
        else:
            fn = call["target"]
        args = [self.node(n) for n in call.get("args", ())]
        kwargs = self.kwargs(call.get("kwargs", {}))
        if call.get("seed") is not None:
            body.append(f"torch.manual_seed({int(call['seed'])})")
        result = names[0] if isinstance(outputs, str) else "result"
        body.append(f"{self.variable(str(result))} = {fn}({', '.join(args + ([kwargs] if kwargs else []))})")
        if not isinstance(outputs, str):
            bound = [self.variable(n) if n else "_" for n in names]
            body.append(f"{', '.join(bound)}{',' if len(bound) == 1 else ''} = "
                        f"result if isinstance(result, tuple) else (result,)")
        roots = [n for n in names if n and f"cotangent.{n}" in self.arrays]
        if roots:
            for n in roots:
                cot = self.arrays[f"cotangent.{n}"]
                g = f"g_{self.variable(n)}"
                if cot.size > SNIPPET_VALUES:
                    self.needs_npz = True
                    body.append(f"{g} = torch.from_numpy(arrays['cotangent.{n}']).to(torch.{self.dtype})")
                else:
                    import numpy as np

                    body.append(f"{g} = {_tensor_literal(np.asarray(cot, dtype=np.float64), self.dtype)}")
            body.append(f"torch.autograd.backward([{', '.join(self.variable(n) for n in roots)}], "
                        f"[{', '.join('g_' + self.variable(n) for n in roots)}])")
        head = ["import torch"]
        if self.needs_npz:
            head += ["import numpy as np", "", f"arrays = np.load({self.npz or 'CASE.npz'!r})  # saved by nnconform"]
        return "\n".join(head + [""] + self.lines + body)

    def got_expression(self, tensor: str) -> str | None:
        """Python reading ``tensor`` (``output``, ``grad.input``, ``state.weight``) after the snippet."""
        call = self.record.get("call") or {}
        if tensor.startswith("grad."):
            name = tensor[5:]
            if name in self.made:
                return f"{self.made[name]}.grad"
            if name in call.get("parameters", ()):
                owner, _, attr = name.rpartition(".")
                holder = f"m.get_submodule({owner!r})" if owner else "m"
                return f"getattr({holder}, {attr!r}).grad"
            return None
        if tensor.startswith("state."):
            name = tensor[6:]
            return self.made.get(name) or (f"m.{name}" if call.get("kind", "module") == "module" else None)
        return self.variable(tensor)


def torch_snippet(record: Mapping[str, Any], report_dir: str | None) -> tuple[str | None, str]:
    """(torch code reproducing ``record`` and printing what it got at the worst elements, or None
    when the call cannot be spelled out; a note on what it needs)."""
    arrays = example_arrays(report_dir, dict(record)) if report_dir else None
    if not arrays:
        return None, "the example's arrays are not beside the report"
    npz = (record.get("artifacts") or {}).get("npz")
    snippet = _Snippet(record, arrays, os.path.join(report_dir or "", npz) if npz else None)
    try:
        code = snippet.write()
    except (_Unspellable, KeyError, TypeError, ValueError) as exc:
        return None, f"the call ({exc}) is not spelled out here"
    checks = []
    for c in record.get("comparisons") or []:
        if c.get("ok", True) or not c.get("worst"):
            continue
        got = snippet.got_expression(str(c.get("tensor")))
        if got is None:
            continue
        for w in c["worst"][:3]:
            index = tuple(w.get("index") or ())
            at = "[" + ", ".join(map(str, index)) + "]" if index else ""
            checks.append(f"print({str(c['tensor']) + at!r}, {got}{at}.item(), 'expected', {_py(w.get('ref'))})")
    if checks:
        code += "\n" + "\n".join(checks)
    note = "torch only" if not snippet.needs_npz else f"torch and numpy; reads {npz} for its larger arrays"
    return code, note


def _versions(run_info: Mapping[str, Any], backend: str) -> list[str]:
    versions = run_info.get("versions") or {}
    lines = []
    mine = {k.split(":", 1)[1]: v for k, v in versions.items() if k.startswith(f"{backend}:")}
    torch_versions = {k: v for k, v in versions.items() if ":" in k and k.split(":", 1)[1] == "torch"}
    if mine:
        lines.append(f"backend `{backend}`: " + ", ".join(f"{k} {v}" for k, v in mine.items()))
    elif torch_versions:
        lines.append("torch " + ", ".join(sorted(set(torch_versions.values()))))
    info = {k: v for k, v in versions.items() if ":" not in k}
    if info:
        lines.append(", ".join(f"{k} {v}" for k, v in info.items()))
    cpu = run_info.get("cpu") or {}
    if cpu:
        flags = [f for f in KERNEL_FLAGS if f in set(cpu.get("flags") or ())]
        lines.append(f"CPU: {cpu.get('model') or '?'} ({cpu.get('cores') or '?'} cores, {cpu.get('machine') or '?'}); "
                     f"kernel-selecting flags: {' '.join(flags) or 'none listed'}")
    return lines


def _worst_table(record: Mapping[str, Any], dtype: str) -> list[str]:
    rows = ["| tensor | index | expected (reference) | got | abs error | allowed | error / allowed |",
            "|---|---|---|---|---|---|---|"]
    count = 0
    for c in record.get("comparisons") or []:
        if c.get("ok", True):
            continue
        for w in (c.get("worst") or [])[:4]:
            err, bound = w.get("err"), w.get("bound")
            try:
                ratio = float(err) / float(bound) if float(bound) > 0 else math.inf
            except (TypeError, ValueError, ZeroDivisionError):
                ratio = math.inf
            rows.append(f"| `{c.get('tensor')}` | {tuple(w.get('index') or ())} | {value_text(w.get('ref', 0))} | "
                        f"{value_text(w.get('got', 0))} | {format_number(err)} | {format_number(bound)} | "
                        f"{format_number(ratio, 3)} |")
            count += 1
    return rows if count else []


def _bound_text(finding: Mapping[str, Any], record: Mapping[str, Any], policies: Mapping[str, str]) -> list[str]:
    dtype = str(record.get("dtype"))
    u = UNIT_ROUNDOFF.get(dtype)
    lines = ["Every element is judged by the error a correct implementation can make in this dtype, "
             "derived from the unit roundoff u, never chosen:", "",
             "    |got − ref| ≤ out_ulps·u·|ref| + c·√K·u·absref + K·tiny", "",
             f"with u = {'2^' + str(int(math.log2(u))) if u else '?'} ({dtype}), K the reduction length of the "
             "tensor, absref the computation on absolute values (or the layer's own first-order error analysis) "
             "and tiny the smallest subnormal; NaN/inf positions and signs must match exactly."]
    for c in record.get("comparisons") or []:
        if c.get("ok", True):
            continue
        tensor = str(c.get("tensor"))
        policy = policies.get(tensor)
        symptoms = ", ".join(SYMPTOM_EXPLANATIONS.get(s, s) for s in c.get("symptoms") or [])
        size = ""
        if "value" in (c.get("symptoms") or []):
            size = (f" Largest finite error {format_number(c.get('max_abs_err'))} ({format_number(c.get('max_ulp'))} "
                    f"ulps), {format_number(c.get('finite_utilisation', c.get('utilisation')))}× the bound.")
        lines.append(f"- `{tensor}` (K = {c.get('reduction_length', 1)}): {c.get('message') or 'out of bound'}: "
                     f"{symptoms}.{size}" + (f" Policy: {policy}." if policy else ""))
    if not any(not c.get("ok", True) for c in record.get("comparisons") or []):
        for s in finding.get("symptoms") or []:
            lines.append(f"- {SYMPTOM_EXPLANATIONS.get(s, s)}.")
    return lines


def finding_markdown(finding: Mapping[str, Any], run_info: Mapping[str, Any], report_dir: str | None,
                     policies: Mapping[str, str] | None = None, target: str = "") -> str:
    """One finding as a bug report (see the module docstring). ``policies``: the declaration's
    tolerance policy per compared tensor, in words; ``target``: what the layer is in torch."""
    example = finding.get("example") or {}
    case = example.get("case") or {}
    backend = str(finding.get("backend"))
    out = [f"## {printable(finding.get('title', '?'), False)}", ""]
    what = target or str(finding.get("op"))
    by_dtype = ", ".join(f"{d} ({n})" for d, n in (finding.get("by_dtype") or {}).items())
    out.append(f"`{what}` on `{backend}`: {finding.get('cases', 0)} failing cases in {by_dtype or '–'} "
               f"({finding.get('shrunk', 0)} shrunk examples) found by nnconform's differential search against a "
               "float64 NumPy reference.")
    modes = finding_modes(dict(finding))
    if modes and modes != ["vjp"]:
        out.append(f"Derivative mode: {', '.join(f'`{m}`' for m in modes)}.")
    out += ["", "**Versions.**", ""] + [f"- {line}" for line in _versions(run_info, backend)]
    out += ["", "### Minimal repro", ""]
    if case:
        inputs = ", ".join(input_text(n, i) for n, i in (case.get("inputs") or {}).items())
        out.append(f"The smallest failing case: `{call_text(example)}` on {inputs or 'no inputs'} "
                   f"(case {example.get('case_id')}).")
        code, note = torch_snippet(example, report_dir)
        if code:
            out += ["", f"```python\n{code}\n```", "", f"({note}.)"]
        else:
            repro = (example.get("artifacts") or {}).get("repro")
            where = os.path.join(report_dir or "", repro) if repro else "(no script saved)"
            out += ["", f"The standalone script `{where}` (torch + numpy, with its `.npz`) replays it: {note}."]
    elif example.get("error"):
        out.append(f"Error: `{printable(str(example['error']).strip().splitlines()[0], False)}`")
    table = _worst_table(example, str(example.get("dtype")))
    if table:
        out += ["", "### Expected (reference) vs got", "",
                "The reference is computed in float64 on the values the backend received (already rounded to "
                f"{example.get('dtype')}).", ""] + table
    if example.get("error") and case:
        first = printable(str(example["error"]).splitlines()[0], False)
        out += ["", f"Error ({example.get('error_side') or '?'}): `{first}`"]
    out += ["", "### Why this is out of bound", ""] + _bound_text(finding, example, policies or {})
    rule = finding.get("rule")
    out += ["", "### Where it fails", ""]
    if rule:
        out.append(f"Learned from the passing and failing cases of the same search: **`{rule.get('text')}`** "
                   f"({rule.get('quality')}).")
        if rule.get("when"):
            out.append(f"As a known-entry scope: `when = {json.dumps(rule['when'])}`.")
    out.append(f"Dtypes: {by_dtype or '–'}; the search ran {', '.join(finding.get('dtypes_run') or [])}.")
    examples = finding.get("examples") or []
    if len(examples) > 1:
        out.append("Shrunk examples: " + "; ".join(
            f"{e.get('dtype')} case {e.get('case_id')}" + (f" (regime {e['regime']!r})" if e.get("regime") else "")
            for e in examples[:8]) + (" …" if len(examples) > 8 else "") + ".")
    argv = run_info.get("argv")
    if isinstance(argv, list):
        out.append(f"Found with `{' '.join(str(a) for a in argv)}`.")
    return "\n".join(out) + "\n"


def mode_table_markdown(records: Sequence[Mapping[str, Any]]) -> str:
    """The entry × mode table as a Markdown table (empty for a run of the vjp mode alone)."""
    coverage = mode_coverage([dict(r) for r in records])
    if not coverage["shown"]:
        return ""
    lines = ["| Entry | " + " | ".join(coverage["modes"]) + " |", "|---" * (len(coverage["modes"]) + 1) + "|"]
    for row in coverage["rows"]:
        lines.append(f"| {printable(row['entry'], False)} | " + " | ".join(mode_cell_text(c) for c in row["cells"])
                     + " |")
    return "\n".join(lines) + "\n"


def findings_markdown(findings: Sequence[Mapping[str, Any]], run_info: Mapping[str, Any], report_dir: str | None,
                      policies: Mapping[str, Mapping[str, str]] | None = None,
                      targets: Mapping[str, str] | None = None,
                      records: Sequence[Mapping[str, Any]] | None = None) -> str:
    """Every finding as a bug report, separated by rules; with ``records``, the entry × mode table
    of the run after them (``mode_table_markdown``)."""
    table = mode_table_markdown(records or [])
    tail = f"\n---\n\n## Entries by mode\n\n{table}" if table else ""
    if not findings:
        return "No findings: nothing failed.\n" + tail
    parts = [finding_markdown(f, run_info, report_dir, (policies or {}).get(str(f.get("id")), {}),
                              (targets or {}).get(str(f.get("op")), "")) for f in findings]
    return "\n---\n\n".join(parts) + tail
