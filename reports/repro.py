"""Standalone repro scripts: torch + numpy only, rebuilding one recorded case and re-checking it.

The runner saves the case's arrays beside the script (``repro/<name>.npz``): ``input.<name>``
(float64 values, or int64), ``cotangent.<output>``, ``ref.<tensor>`` (the reference values of every
compared tensor: ``output``, ``grad.input``, ``state.running_mean``...) and ``bound.<tensor>`` (the
allowed absolute error per element). ``render_repro`` writes the script: the case's data as
literals, then plain torch code that builds each input with the recorded memory layout, builds and
calls the module the way the torch adapter does, runs backward with the cotangents and compares
every tensor with its reference and bound. Exit status 0: everything within bounds; 1: mismatch.
"""

from __future__ import annotations

import json
import pprint
import textwrap
from string import Template
from typing import Any

from reports.records import _clean
from reports.render import case_summary

_TORCH_DTYPES = {"float64": "float64", "float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}

_SCRIPT = Template('''\
#!/usr/bin/env python3
"""nnconform repro: $op on $backend ($dtype), verdict "$verdict", case $case_id.

$summary

Rebuilds the shrunk case with torch.nn and compares every tensor with the reference values
saved in $npz (needs only torch and numpy):

    python <this script> [--device cpu|cuda] [--npz PATH]

Prints one line per compared tensor; exits 1 when any tensor is out of bound, 0 otherwise.
Recorded backend: $backend on device "$device" (a custom adapter's behaviour is not reproduced
here: this script runs torch.nn itself).
"""

import argparse
import importlib
import sys
from pathlib import Path

import numpy as np
import torch

# --- the case (from the nnconform record) ----------------------------------------------------
NPZ = $npz_literal
DTYPE = torch.$torch_dtype
TARGET = $target
CTOR_KWARGS = $ctor_kwargs
PARAMETERS = $parameters
BUFFERS = $buffers
ARGS = $args
OUTPUTS = $outputs
STATE = $state
FORWARD_KWARGS = $forward_kwargs
INPLACE_INPUT = $inplace_input
TRAIN = $train
INVALID = $invalid
# name -> memory layout (kind: contiguous | channels_last | permuted | strided | expanded)
LAYOUTS = $layouts
REQUIRES_GRAD = $requires_grad


def literal(value):
    """JSON data back to Python: lists become tuples (kernel_size=(3, 3)), "inf"/"nan" floats."""
    if isinstance(value, list):
        return tuple(literal(v) for v in value)
    if isinstance(value, dict):
        return {k: literal(v) for k, v in value.items()}
    if isinstance(value, str) and value in ("inf", "-inf", "nan"):
        return float(value)
    return value


def with_layout(values, layout, dtype, device):
    """A tensor holding `values` (logical shape) stored in memory as `layout` says."""
    kind = layout.get("kind", "contiguous")
    shape = values.shape
    if kind in ("channels_last", "permuted"):
        perm = layout["perm"]  # storage order of the dimensions, outermost first
        stored = torch.from_numpy(np.ascontiguousarray(values.transpose(perm))).to(device=device, dtype=dtype)
        return stored.permute(*np.argsort(perm).tolist())
    if kind == "strided":
        step = layout["step"]  # every step[d]-th element of a NaN-filled buffer
        fill = float("nan") if dtype.is_floating_point else 0
        buffer = torch.full([s * k for s, k in zip(shape, step)], fill, dtype=dtype, device=device)
        view = buffer[tuple(slice(None, None, k) for k in step)]
        view.copy_(torch.from_numpy(np.ascontiguousarray(values)).to(device=device, dtype=dtype))
        return view
    if kind == "expanded":
        dims = layout["dims"]  # stride-0 dimensions: values are constant along them
        index = tuple(slice(0, 1) if d in dims else slice(None) for d in range(len(shape)))
        small = torch.from_numpy(np.ascontiguousarray(values[index])).to(device=device, dtype=dtype)
        return small.expand(*shape)
    return torch.from_numpy(np.ascontiguousarray(values)).to(device=device, dtype=dtype)


def build_inputs(arrays, device):
    """Leaf tensors for every case input, in the case dtype (int64 inputs as torch.long)."""
    tensors = {}
    for key in arrays.files:
        if not key.startswith("input."):
            continue
        name = key[len("input."):]
        values = arrays[key]
        if values.dtype.kind in "iub":
            tensors[name] = torch.from_numpy(values.astype(np.int64)).to(device)
            continue
        tensor = with_layout(values, LAYOUTS.get(name, {"kind": "contiguous"}), DTYPE, device).detach()
        tensors[name] = tensor.requires_grad_(REQUIRES_GRAD.get(name, False))
    return tensors


def resolve(target):
    module_name, _, attr = target.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


def build_module(tensors, device):
    kwargs = {}
    for key, value in CTOR_KWARGS.items():
        if key.startswith("_") and isinstance(value, list):  # tensor-valued constructor argument
            kwargs[key] = torch.tensor(np.asarray(literal(value), dtype=np.float64), dtype=DTYPE, device=device)
        else:
            kwargs[key] = literal(value)
    module = resolve(TARGET)(**kwargs).to(device=device, dtype=DTYPE)
    for name in PARAMETERS:
        if name in tensors:
            setattr(module, name, torch.nn.Parameter(tensors[name], requires_grad=REQUIRES_GRAD.get(name, False)))
    for name in BUFFERS:
        if name in tensors:
            setattr(module, name, tensors[name].detach())
    module.train(TRAIN)
    return module


def copy_into_layout(tensor, layout):
    """A differentiable copy of a leaf, stored in `layout` (an in-place layer may not write a leaf)."""
    kind = layout.get("kind", "contiguous")
    if kind in ("channels_last", "permuted"):
        perm = layout["perm"]
        empty = torch.empty([tensor.shape[d] for d in perm], dtype=tensor.dtype, device=tensor.device)
        return empty.permute(*np.argsort(perm).tolist()).copy_(tensor)
    if kind == "strided":
        step = layout["step"]
        buffer = torch.full([s * k for s, k in zip(tensor.shape, step)], float("nan"),
                            dtype=tensor.dtype, device=tensor.device)
        return buffer[tuple(slice(None, None, k) for k in step)].copy_(tensor)
    return tensor.clone()


def flatten(value):
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in flatten(v)]
    return [] if value is None else [value]


def run_case(arrays, device):
    """Forward (and backward when gradients are compared); returns {qualified name: tensor}."""
    tensors = build_inputs(arrays, device)
    module = build_module(tensors, device)
    args = [tensors.get(name) for name in ARGS]
    inplace = bool(INPLACE_INPUT and CTOR_KWARGS.get("inplace"))
    if inplace:
        i = ARGS.index(INPLACE_INPUT)
        args[i] = copy_into_layout(args[i], LAYOUTS.get(INPLACE_INPUT, {"kind": "contiguous"}))
    raw = module(*args, **literal(FORWARD_KWARGS))
    got = dict(zip(OUTPUTS, flatten(raw)))
    if inplace:
        got["mutated_input"] = args[ARGS.index(INPLACE_INPUT)]
    if any(key.startswith("ref.grad.") for key in arrays.files):
        roots, cotangents = [], []
        for name, out in got.items():
            key = "cotangent." + name
            if key in arrays.files and out.requires_grad:
                roots.append(out)
                cotangents.append(torch.from_numpy(arrays[key]).to(device=device, dtype=out.dtype))
        if roots:
            torch.autograd.backward(roots, cotangents)
        for name, wanted in REQUIRES_GRAD.items():
            if not wanted:
                continue
            holder = getattr(module, name) if name in PARAMETERS else tensors[name]
            got["grad." + name] = holder.grad if holder.grad is not None else torch.zeros_like(holder)
    for name in STATE:
        value = getattr(module, name, None)
        if value is not None:
            got["state." + name] = value
    return got


def check(name, ref, bound, got):
    """Compare one tensor: NaN pattern, infinities, then |got - ref| <= bound elementwise."""
    if got is None:
        print(f"{name:<24} MISSING from the torch result")
        return False
    got_np = got.detach().cpu()
    got_np = got_np.to(torch.float64).numpy() if got_np.is_floating_point() else got_np.to(torch.int64).numpy()
    if got_np.shape != ref.shape:
        print(f"{name:<24} SHAPE {list(got_np.shape)} != expected {list(ref.shape)}")
        return False
    with np.errstate(all="ignore"):
        if ref.dtype.kind in "iub":
            err = np.abs(got_np.astype(np.float64) - ref.astype(np.float64))
        else:
            largest = float(torch.finfo(DTYPE).max) * (1 + torch.finfo(DTYPE).eps / 2)
            overflow = np.isfinite(ref) & (np.abs(ref) > largest) & (got_np == np.sign(ref) * np.inf)
            same = (got_np == ref) | (np.isnan(got_np) & np.isnan(ref)) | overflow
            finite = np.isfinite(got_np) & np.isfinite(ref)
            err = np.where(same, 0.0, np.where(finite, np.abs(got_np - ref), np.inf))
        bad = err > bound
        ratio = np.where(bound > 0, err / np.where(bound > 0, bound, 1.0), np.where(err > 0, np.inf, 0.0))
    mismatches = int(bad.sum())
    max_err = float(err.max()) if err.size else 0.0
    max_ratio = float(ratio.max()) if ratio.size else 0.0
    status = "ok" if mismatches == 0 else "MISMATCH"
    print(f"{name:<24} max abs err {max_err:.3e}  max utilisation {max_ratio:.3g}  "
          f"mismatches {mismatches}/{ref.size}  {status}")
    if mismatches:
        at = np.unravel_index(int(np.argmax(np.where(bad, ratio, -1.0))), ref.shape)
        print(f"{'':<24} worst at {tuple(int(i) for i in at)}: reference {ref[at].item()!r}, "
              f"torch {got_np[at].item()!r}, bound {float(bound[at]):.3e}")
    return mismatches == 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1...)")
    parser.add_argument("--npz", default=None, help="the arrays (default: %s beside this script)" % NPZ)
    options = parser.parse_args(argv)
    path = Path(options.npz) if options.npz else Path(__file__).resolve().parent / NPZ
    arrays = np.load(path)
    if INVALID:
        try:
            run_case(arrays, options.device)
        except Exception as exc:  # the expected outcome: torch rejects the case
            print(f"torch raised as required: {type(exc).__name__}: {exc}")
            return 0
        print("torch accepted a case the reference rejects as invalid")
        return 1
    got = run_case(arrays, options.device)
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


def _plain(value: Any) -> Any:
    """JSON-able data as the record holds it (numpy scalars to Python, non-finite floats to strings)."""
    return json.loads(json.dumps(_clean(value), default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def _literal(value: Any) -> str:
    """Python source for JSON-able data; a long dict is written one key per line."""
    value = _plain(value)
    text = pprint.pformat(value, width=10**6, sort_dicts=False)
    if len(text) <= 88 or not isinstance(value, dict):
        return text
    lines = [f"    {k!r}: {pprint.pformat(v, width=10**6, sort_dicts=False)}," for k, v in value.items()]
    return "{\n" + "\n".join(lines) + "\n}"


def _names(names: Any) -> str:
    return repr(tuple(str(n) for n in (names or ())))


def _docstring_safe(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def render_repro(record: dict[str, Any], npz_filename: str) -> str:
    """A standalone Python script (torch + numpy) that rebuilds ``record``'s case and re-checks it
    against ``npz_filename`` (resolved beside the script; ``--npz`` overrides)."""
    case = record.get("case") or {}
    mapping = record.get("torch") or {}
    dtype = str(record.get("dtype") or case.get("dtype") or "float32")
    inputs = case.get("inputs") or {}

    fields = {
        "op": record.get("op", "?"),
        "backend": record.get("backend", "?"),
        "device": record.get("device", "cpu"),
        "dtype": dtype,
        "verdict": record.get("verdict", "?"),
        "case_id": record.get("case_id", "?"),
        "summary": _docstring_safe(textwrap.fill(case_summary(record), width=96, break_long_words=False)),
        "npz": _docstring_safe(npz_filename),
        "npz_literal": repr(npz_filename),
        "torch_dtype": _TORCH_DTYPES.get(dtype, "float32"),
        "target": repr(mapping.get("target", f"torch.nn.{record.get('op', 'Identity')}")),
        "ctor_kwargs": _literal(dict(mapping.get("ctor_kwargs", case.get("params") or {}))),
        "parameters": _names(mapping.get("parameters")),
        "buffers": _names(mapping.get("buffers")),
        "args": _names(mapping.get("args") or ("input",)),
        "outputs": _names(mapping.get("outputs") or ("output",)),
        "state": _names(mapping.get("state")),
        "forward_kwargs": _literal(dict(mapping.get("forward_kwargs", case.get("forward_kwargs")) or {})),
        "inplace_input": repr(None if mapping.get("inplace_input") is None else str(mapping["inplace_input"])),
        "train": repr(bool(mapping.get("train", case.get("train", True)))),
        "invalid": repr(bool(case.get("invalid", False))),
        "layouts": _literal({n: i.get("layout") or {"kind": "contiguous"} for n, i in inputs.items()}),
        "requires_grad": _literal({n: bool(i.get("requires_grad")) for n, i in inputs.items()}),
    }
    return _SCRIPT.substitute(fields)
