"""Running a call tree (``run_call``): plainly, with its backward (``backends.torch_call.run_vjp``),
or in a derivative mode of the call interpreter (``backends.torch_call``), with the arrays the
modes draw.

Derivative *modes* (``"mode": {"kind": ..., "seed": s, "tier": tier, ...}``; absent: the plain
call and its backward, ``vjp``). Every array a mode needs is generated from the node's seed by the
NumPy functions below (``mode_values``, ``vmap_slice``), so that the reference and a repro script
draw the same ones:

- ``jvp``: forward-mode AD (``torch.autograd.forward_ad``): every input that requires grad, parameters
  included, gets the tangent ``mode_values(seed, "tangent." + name, ...)``; the results are the
  outputs and ``jvp.<output>`` (J·t).
- ``vjp2``: second order. With the cotangents g and the directions v (``direction_values``),
  the derivatives of s = ⟨Jᵀg, v⟩ with respect to every input (``d2.<input>``, = H_g·v) and to g
  (``d2.cotangent.<output>``, = J·v), and the first-order ``grad.<input>`` (Jᵀg) on the way, by
  one ``composition``: ``reverse-over-reverse`` (double backward,
  ``torch.autograd.grad(create_graph=True)``), ``forward-over-reverse`` (``torch.func.jvp`` of
  ``torch.func.vjp``) or ``reverse-over-forward`` (``torch.func.grad`` of ``torch.func.jvp``, the
  nested forward mode).
- ``vmap``: ``batch`` cases stacked along a new dim, ``torch.func.vmap`` over
  ``torch.func.functional_call``: slice 0 is the case, slice b its seeded permutation
  (``vmap_slice``); each input is stacked at ``in_dim[name]`` (a mutated buffer always, a
  parameter unless listed in ``shared``: shared parameters are the case's own, unbatched), in the
  case's layout with the batch dim outermost; ``inner`` is ``"forward"`` or ``"vjp"``
  (``torch.func.vjp`` with the slice's cotangents inside); ``randomness`` is vmap's flag. Results:
  ``vmap[b].<name>`` for every result name of the slice.

A transform that torch cannot apply to the call (no forward-mode formula, double backward not
implemented, no batching rule, data-dependent control flow under vmap) raises
``NotImplementedError`` with torch's message (``transform_unsupported``).

This module imports only NumPy, torch and ``backends.torch_call``, and every repro script carries
its source verbatim after that module's (less the import of it: in a script both share one
namespace).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from backends.torch_call import (
    CallInterpreter,
    _export,
    _export_choices,
    _float_tensor,
    _fresh,
    _plain,
    _random_choices,
    _roots,
    _seed,
    _torch,
    materialise,
    run_vjp,
    to_numpy,
    transform_unsupported,
)

# -- running a call ------------------------------------------------------------------------------------

def run_call(call: dict[str, Any], inputs: dict[str, np.ndarray], *, dtype: str, device: str = "cpu",
             types: dict[str, str] | None = None, layouts: dict[str, dict[str, Any]] | None = None,
             requires_grad: tuple[str, ...] = (), cotangents: dict[str, np.ndarray] | None = None,
             build: Callable[[Any, dict[str, Any]], Any] | None = None,
             invoke: Callable[[Any, list[Any], dict[str, Any]], Any] | None = None,
             synchronise: Callable[[], None] = lambda: None) -> dict[str, tuple[np.ndarray, str]]:
    """Run ``call`` and return every compared tensor by qualified name: outputs by their names,
    ``grad.<input>``, ``state.<mutated>`` and ``random.<choice>``, each as (array, dtype name); in
    a mode (``call["mode"]``, see the module docstring) that mode's results.

    Backward runs when cotangents are given: one ``torch.autograd.backward`` over every output
    that has a cotangent of its shape and requires grad (after presetting ``.grad`` when the call
    has ``grad_init``).
    """
    interp = CallInterpreter(device, dtype, inputs, types or {}, layouts or {}, frozenset(requires_grad),
                             build=build, invoke=invoke)
    mode = call.get("mode") or {}
    kind = mode.get("kind", "vjp")
    runners = {"vjp": run_vjp, "jvp": run_jvp, "vjp2": run_vjp2, "vmap": run_vmap}
    if kind not in runners:
        raise ValueError(f"unknown mode {kind!r}")
    if kind == "vjp":
        return run_vjp(interp, call, tuple(requires_grad), cotangents or {}, synchronise)
    try:
        return runners[kind](interp, call, tuple(requires_grad), cotangents or {}, synchronise)
    except NotImplementedError:
        raise
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        if transform_unsupported(text):
            raise NotImplementedError(f"{kind}: {text}") from exc
        raise


# -- arrays the modes draw from their seeds (NumPy only: the reference draws the same) ----------------

def short_values(values: np.ndarray, bits: int = 8) -> np.ndarray:
    """``values`` rounded to ``bits`` significant bits (half to even), magnitudes below 2^-8
    flushed to 0: exactly representable in float64, float32, float16 and bfloat16 alike."""
    values = np.asarray(values, dtype=np.float64)
    mantissa, exponent = np.frexp(values)
    short = np.ldexp(np.round(np.ldexp(mantissa, bits)), exponent - bits)
    return np.where(np.abs(short) < 2.0**-8, 0.0, short)


def mode_values(seed: int, name: str, shape: Any, tier: str = "float",
                layout: dict[str, Any] | None = None) -> np.ndarray:
    """An array a mode needs (a tangent, a second-order direction), drawn from ``seed`` and its
    ``name``: integers in [-2, 2] in the exact tier, else normals on 8 significant bits. Along the
    stride-0 dims of an ``expanded`` layout it is constant (the tangent of an expanded tensor)."""
    shape = tuple(int(n) for n in shape)
    rng = _seed(seed, name)
    values = (rng.integers(-2, 3, size=shape).astype(np.float64) if tier == "exact"
              else short_values(rng.standard_normal(shape)))
    if layout and layout.get("kind") == "expanded" and values.size:
        index = tuple(slice(0, 1) if d in layout["dims"] else slice(None) for d in range(len(shape)))
        values = np.broadcast_to(values[index], shape).copy()
    return values


def direction_values(seed: int, name: str, values: np.ndarray, tier: str = "float",
                     layout: dict[str, Any] | None = None) -> np.ndarray:
    """The second-order direction v of input ``name`` (``values``): ``mode_values`` scaled element
    by element by a power of two at the magnitude of the input (2^ceil(log2(|x| + 2^-10)), within
    [2^-10, 2^12]), so that a small step along v moves every element by a like fraction of itself
    and x + h·v is exact for a power-of-two h."""
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        exponent = np.ceil(np.log2(np.abs(values) + 2.0**-10))
        exponent = np.clip(np.where(np.isfinite(exponent), exponent, 0.0), -10, 12)
    return mode_values(seed, "direction." + name, values.shape, tier, layout) * np.exp2(exponent)


def vmap_slice(seed: int, b: int, name: str, values: np.ndarray, layout: dict[str, Any] | None = None) -> np.ndarray:
    """Slice ``b`` of a vmap case: slice 0 is the case's own ``values``, slice b >= 1 a seeded
    permutation of them (the same values, so every constraint on a value's range still holds; the
    structure of an ``expanded`` layout is kept by permuting its distinct values only)."""
    values = np.asarray(values)
    if b == 0 or values.size <= 1:
        return values.copy()
    rng = _seed(seed, f"slice{b}.{name}")
    if layout and layout.get("kind") == "expanded":
        index = tuple(slice(0, 1) if d in layout["dims"] else slice(None) for d in range(values.ndim))
        core = values[index]
        return np.broadcast_to(rng.permutation(core.reshape(-1)).reshape(core.shape), values.shape).copy()
    return rng.permutation(values.reshape(-1)).reshape(values.shape)


# -- the modes ------------------------------------------------------------------------------------------


def _differentiable(interp: CallInterpreter, requires_grad: tuple[str, ...]) -> list[str]:
    """The inputs a transform differentiates: float tensors that require grad."""
    return [n for n in requires_grad if n in interp.inputs and (interp.types.get(n) or "float") == "float"
            and np.asarray(interp.inputs[n]).dtype.kind == "f"]


def _direction(interp: CallInterpreter, seed: int, tier: str, name: str, like: Any) -> Any:
    """The second-order direction of input ``name``, stored like the input (``like``)."""
    layout = interp.layouts.get(name, {"kind": "contiguous"})
    values = direction_values(seed, name, interp.inputs[name], tier, layout)
    return materialise(values, layout, like.dtype, like.device)


def run_jvp(interp: CallInterpreter, call: dict[str, Any], requires_grad: tuple[str, ...],
             cotangents: dict[str, np.ndarray], synchronise: Callable[[], None]) -> dict[str, tuple[np.ndarray, str]]:
    """Forward mode: J·t for tangents t of every differentiable input (``jvp.<output>``)."""
    torch = _torch()
    fwad = torch.autograd.forward_ad
    mode = call["mode"]
    interp.setup(call)
    out: dict[str, tuple[np.ndarray, str]] = {}
    with fwad.dual_level():
        values = {}
        for name in _differentiable(interp, requires_grad):
            primal = interp.tensor(name).detach()
            layout = interp.layouts.get(name, {"kind": "contiguous"})
            t = mode_values(mode["seed"], "tangent." + name, primal.shape, mode.get("tier", "float"), layout)
            values[name] = fwad.make_dual(primal, materialise(t, layout, primal.dtype, primal.device))
        named = interp.run_with(call, values)
        synchronise()
        primals: dict[str, Any] = {}
        for name, value in named.items():
            if not torch.is_tensor(value):
                if value is not None:
                    out[name] = _plain(value)
                continue
            primal, tangent = fwad.unpack_dual(value)
            primals[name] = primal
            out[name] = to_numpy(primal)
            if primal.is_floating_point() and not name.startswith("state."):
                out[f"jvp.{name}"] = to_numpy(tangent if tangent is not None else torch.zeros_like(primal))
        choices = _random_choices(call, primals, interp, interp.device,
                                  {k: fwad.unpack_dual(v).primal for k, v in values.items()})
    out.update(_export_choices(choices, interp))
    return out


def _fresh_buffers(interp: CallInterpreter, call: dict[str, Any], taken: Any) -> dict[str, Any]:
    """Private copies of the mutated module buffers (a torch.func transform may not mutate a tensor
    it captured): made inside the transformed function, read back as ``state.<name>``."""
    mutated = set(call.get("mutated", ()))
    return {p: interp.tensor(p).detach().clone() for p in interp.module_paths(call) if p in mutated and p not in taken}


def run_vjp2(interp: CallInterpreter, call: dict[str, Any], requires_grad: tuple[str, ...],
              cotangents: dict[str, np.ndarray], synchronise: Callable[[], None]) -> dict[str, tuple[np.ndarray, str]]:
    """Second order: the derivatives of s = ⟨Jᵀg, v⟩ (see the module docstring)."""
    torch = _torch()
    mode = call["mode"]
    composition = mode.get("composition", "reverse-over-reverse")
    seed, tier = mode["seed"], mode.get("tier", "float")
    diff = _differentiable(interp, requires_grad)
    out: dict[str, tuple[np.ndarray, str]] = {}
    if composition == "reverse-over-reverse":
        named = interp.call(call)
        synchronise()
        parameters = tuple(call.get("parameters", ()))
        holders = {n: interp.holder(n, parameters) for n in diff}
        holders = {n: h for n, h in holders.items() if h is not None and h.requires_grad}
        names, roots, gs = _roots(named, cotangents)
        gs = [g.requires_grad_(True) for g in gs]
        leaves = list(holders.values())
        first = (torch.autograd.grad(roots, leaves, gs, create_graph=True, allow_unused=True)
                 if roots and leaves else [None] * len(leaves))
        dirs = {n: _direction(interp, seed, tier, n, h) for n, h in holders.items()}
        terms = [(f * dirs[n]).sum() for n, f in zip(holders, first) if f is not None]
        s = sum(terms) if terms else None
        wrt = leaves + gs
        second = (torch.autograd.grad(s, wrt, allow_unused=True) if s is not None and s.requires_grad
                  else [None] * len(wrt))
        synchronise()
        for (n, h), f, d in zip(holders.items(), first, second):
            out[f"grad.{n}"] = to_numpy(f if f is not None else torch.zeros_like(h))
            out[f"d2.{n}"] = to_numpy(d if d is not None else torch.zeros_like(h))
        for name, r, d in zip(names, roots, second[len(leaves):]):
            out[f"d2.cotangent.{name}"] = to_numpy(d if d is not None else torch.zeros_like(r))
        for name, value in named.items():
            if value is not None:
                out[name] = _export(value)
        for name in call.get("mutated", ()):
            value = interp.mutated(name)
            if value is not None:
                out[f"state.{name}"] = to_numpy(value)
        out.update(_export_choices(_random_choices(call, named, interp, interp.device), interp))
        return out
    interp.setup(call)
    primals = {n: interp.tensor(n).detach() for n in diff}
    dirs = {n: _direction(interp, seed, tier, n, p) for n, p in primals.items()}
    like = {n: t for n, t in primals.items()}
    cots: dict[str, Any] = {}

    def forward(vals: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        named = interp.run_with(call, {**vals, **_fresh_buffers(interp, call, vals)})
        outs = {}
        for name, cot in cotangents.items():
            t = named.get(name)
            if _float_tensor(t) and tuple(t.shape) == tuple(cot.shape):
                outs[name] = t
                if name not in cots:
                    cots[name] = _fresh(np.asarray(cot, dtype=np.float64)).to(device=t.device, dtype=t.dtype)
        aux = {k: v for k, v in named.items() if torch.is_tensor(v)}
        return outs, aux

    if composition == "forward-over-reverse":
        def first_order(vals: dict[str, Any]) -> tuple[tuple[dict[str, Any], dict[str, Any]], dict[str, Any]]:
            outs, vjp_fn, aux = torch.func.vjp(forward, vals, has_aux=True)
            grads = vjp_fn({k: cots[k] for k in outs})[0] if outs else {n: torch.zeros_like(v) for n, v in vals.items()}
            return (grads, outs), aux

        (grads, outs), (hv, jv), aux = torch.func.jvp(first_order, (primals,), (dirs,), has_aux=True)
    elif composition == "reverse-over-forward":
        def pairing(vals: dict[str, Any], tans: dict[str, Any]) -> tuple[Any, tuple[dict[str, Any], dict[str, Any]]]:
            outs, jv, aux = torch.func.jvp(forward, (vals,), (tans,), has_aux=True)
            zero = torch.zeros((), dtype=interp.dtype, device=interp.device)
            total = sum(((jv[k] * cots[k]).sum() for k in jv), zero)
            return total, (jv, aux)

        (hv, grads), (jv, aux) = torch.func.grad(pairing, argnums=(0, 1), has_aux=True)(primals, dirs)
    else:
        raise ValueError(f"unknown composition {composition!r}")
    synchronise()
    for n, p in like.items():
        out[f"grad.{n}"] = to_numpy(grads.get(n, torch.zeros_like(p)))
        out[f"d2.{n}"] = to_numpy(hv.get(n, torch.zeros_like(p)))
    for name, t in jv.items():
        out[f"d2.cotangent.{name}"] = to_numpy(t)
    for name, value in aux.items():
        out[name] = to_numpy(value)
    out.update(_export_choices(_random_choices(call, aux, interp, interp.device, primals, logical=True), interp))
    return out


def stacked_layout(layout: dict[str, Any], ndim: int, at: int) -> dict[str, Any]:
    """The layout of a case's input stacked along a new dim ``at``: the case's layout for its own
    dims, the batch dim stored outermost."""
    kind = layout.get("kind", "contiguous")
    shift = [d if d < at else d + 1 for d in range(ndim)]
    if kind in ("channels_last", "permuted"):
        return {"kind": "permuted", "perm": [at, *[shift[d] for d in layout["perm"]]]}
    if kind == "strided":
        step = list(layout["step"])
        return {"kind": "strided", "step": step[:at] + [1] + step[at:]}
    if kind == "expanded":
        return {"kind": "expanded", "dims": [shift[d] for d in layout["dims"]]}
    return {"kind": "permuted", "perm": [at, *shift]} if at else {"kind": "contiguous"}


def run_vmap(interp: CallInterpreter, call: dict[str, Any], requires_grad: tuple[str, ...],
              cotangents: dict[str, np.ndarray], synchronise: Callable[[], None]) -> dict[str, tuple[np.ndarray, str]]:
    """``batch`` cases at once through ``torch.func.vmap`` (see the module docstring)."""
    torch = _torch()
    mode = call["mode"]
    seed, batch, out_dim = mode["seed"], int(mode["batch"]), int(mode.get("out_dim", 0))
    in_dim, shared = dict(mode.get("in_dim", {})), set(mode.get("shared", ()))
    fixed = set(mode.get("fixed", ()))  # inputs every slice repeats unpermuted (a mask under a causal hint)
    interp.setup(call)
    interp.in_vmap = True
    paths = set(interp.module_paths(call))
    mutated = set(call.get("mutated", ()))
    stacked: dict[str, Any] = {}
    for name, values in interp.inputs.items():
        kind = interp.types.get(name) or ("bool" if values.dtype.kind == "b" else
                                          "int64" if values.dtype.kind in "iu" else "float")
        if kind == "int_list" or (name in shared and name in paths and name not in mutated):
            continue
        at = int(in_dim.get(name, 0))
        layout = interp.layouts.get(name, {"kind": "contiguous"})
        slices = [vmap_slice(seed, b, name, values, layout) if kind == "float" and name not in fixed
                  else np.asarray(values)
                  for b in range(batch)]
        array = np.stack(slices, axis=at)
        if kind == "float":
            stacked[name] = materialise(array, stacked_layout(layout, np.ndim(values), at), interp.dtype,
                                        interp.device)
        else:
            stacked[name] = _fresh(np.asarray(array, dtype=np.int64 if kind == "int64" else bool)).to(interp.device)
    diff = [n for n in _differentiable(interp, requires_grad) if n in stacked or n in paths]
    inner = mode.get("inner", "forward") if cotangents and diff else "forward"
    diff_vals = {n: stacked[n] if n in stacked else interp.tensor(n).detach() for n in diff}
    fixed_vals = {n: t for n, t in stacked.items() if n not in diff_vals}
    cots = {k: _fresh(np.stack([vmap_slice(seed, b, "cotangent." + k, v) for b in range(batch)])).to(
        device=interp.device, dtype=interp.dtype) for k, v in cotangents.items()} if inner == "vjp" else {}

    def per_slice(d: dict[str, Any], fixed: dict[str, Any], g: dict[str, Any]) -> dict[str, Any]:
        def forward(vals: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
            # A buffer the call updates in place is the slice's own copy, made inside the transform
            # (torch.func.vjp may not mutate a tensor it captured).
            own = {k: (v.clone() if k in mutated and k in paths else v) for k, v in fixed.items()}
            named = interp.run_with(call, {**own, **vals})
            outs = {k: named[k] for k in g
                    if _float_tensor(named.get(k)) and tuple(named[k].shape) == tuple(g[k].shape)}
            if not outs:  # no output of the cotangents' shapes (reported by the comparison): nothing to pull
                outs = {"": torch.zeros((), dtype=interp.dtype, device=interp.device)}
            return outs, {k: v for k, v in named.items() if torch.is_tensor(v)}

        if inner == "vjp" and d:
            outs, vjp_fn, aux = torch.func.vjp(forward, d, has_aux=True)
            grads = vjp_fn({k: g[k] if k else torch.zeros_like(v) for k, v in outs.items()})[0]
            result = {**aux, **{f"grad.{n}": v for n, v in grads.items()}}
        else:
            _, result = forward(d)
        choices = _random_choices(call, result, interp, interp.device, {**fixed, **d}, replay=False)
        result.update({f"random.{k}": v for k, v in choices.items() if v is not None})
        return result

    dims = ({n: (in_dim.get(n, 0) if n in stacked else None) for n in diff_vals},
            {n: in_dim.get(n, 0) for n in fixed_vals}, {k: 0 for k in cots})
    results = torch.func.vmap(per_slice, in_dims=dims, out_dims=out_dim,
                              randomness=mode.get("randomness", "error"))(diff_vals, fixed_vals, cots)
    synchronise()
    out: dict[str, tuple[np.ndarray, str]] = {}
    for name, value in results.items():
        for b in range(batch):
            if value.dim() <= out_dim or value.shape[out_dim] != batch:  # not batched as asked: as it came
                out[f"vmap[{b}].{name}"] = to_numpy(value)
                continue
            part = value.select(out_dim, b)
            if name.startswith("random.") and part.dtype == torch.float64 and interp.dtype != torch.float64:
                out[f"vmap[{b}].{name}"] = (part.cpu().numpy().copy(), "float64")
            else:
                out[f"vmap[{b}].{name}"] = to_numpy(part)
    return out
