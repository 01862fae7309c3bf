"""Models of known torch discrepancies in padding, weight_norm and interpolation (the ``model`` of
entries in conformance/known/padding.toml, init.toml and vision.toml): what torch computes, so
that an entry explains only the wrong values its bug produces (the masking audit,
conformance/audit.py)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from backends.base import Case, Result
from conformance.strategies import copies as C

# -- circular-pad-remainder-overrun -------------------------------------------------------------


def _slice(size: int, start: int, end: int) -> slice:
    """aten::slice's bounds: negative start/end count from the end, then both are clamped to
    [0, size] with end >= start."""
    if start < 0:
        start += size
    if end < 0:
        end += size
    start = min(max(start, 0), size)
    end = min(max(end, start), size)
    return slice(start, end)


def circular_pad_sources(shape: Sequence[int], flat: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Replay of torch's ``_pad_circular`` (aten/src/ATen/native/PadNd.cpp) on the flat indices of
    an input of ``shape`` (leading dims not padded): for each output element, the flat input index
    its value comes from (-1: memory the kernel never wrote), and whether the element lies in the
    central block (the input's crop, copied first and never overwritten). Each copy reads a
    snapshot of the output before it writes (autograd's view of the in-place copy_, which its
    backward transposes); copy_ broadcasts a source of length 1."""
    shape = tuple(int(s) for s in shape)
    k = len(flat) // 2
    out_shape = list(shape)
    for i in range(k):  # flat[2i], flat[2i+1] pad dim -1-i
        d = len(shape) - 1 - i
        out_shape[d] = shape[d] + flat[2 * i] + flat[2 * i + 1]
    src = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    out = np.full(out_shape, -1, dtype=np.int64)
    central = np.zeros(out_shape, dtype=bool)
    o_idx: list[slice] = [slice(None)] * len(shape)
    i_idx: list[slice] = [slice(None)] * len(shape)
    for i in range(k):
        d = len(shape) - 1 - i
        pl, pr = flat[2 * i], flat[2 * i + 1]
        o_idx[d] = _slice(out_shape[d], max(pl, 0), out_shape[d] - max(pr, 0))
        i_idx[d] = _slice(shape[d], max(-pl, 0), shape[d] - max(-pr, 0))
    out[tuple(o_idx)] = src[tuple(i_idx)]  # raises where torch's copy_ does (sizes differ)
    central[tuple(o_idx)] = True
    for i in range(k):
        d = len(shape) - 1 - i
        pl, pr = flat[2 * i], flat[2 * i + 1]
        n = out_shape[d]
        if pl > 0:
            dst = [slice(None)] * len(shape)
            srcs = [slice(None)] * len(shape)
            dst[d] = _slice(n, 0, pl)
            srcs[d] = _slice(n, n - pl - max(pr, 0), n - max(pr, 0))
            out[tuple(dst)] = out[tuple(srcs)].copy()
        if pr > 0:
            dst = [slice(None)] * len(shape)
            srcs = [slice(None)] * len(shape)
            dst[d] = _slice(n, n - pr, n)
            srcs[d] = _slice(n, max(pl, 0), max(pl, 0) + pr)
            out[tuple(dst)] = out[tuple(srcs)].copy()
    return out, central


def circular_overrun_model(case: Case, reference: Result, got: Result) -> dict[str, object]:
    """What ``circular-pad-remainder-overrun`` predicts torch computes. ``grad.input``: the
    transpose of the replayed copies (``circular_pad_sources``): each cotangent element is added to
    the input element the output element was copied from, none where it came from memory never
    written, with the magnitude of the sums. ``output``: the reference in the central block (the
    input's crop, which no copy overwrites); the padding, copied from inside the output (and within
    one copy_ possibly from elements the same copy writes, in the kernel's vectorised order, or from
    uninitialised memory), is torch's own value. Any other wrong value stays unexplained."""
    x = np.asarray(case.inputs["input"])
    sources, central = circular_pad_sources(x.shape, C.flat_padding(case))
    predicted: dict[str, object] = {}
    if "output" in reference.outputs and "output" in got.outputs:
        ref = np.asarray(reference.outputs["output"])
        theirs = np.asarray(got.outputs["output"])
        if ref.shape == central.shape and theirs.shape == central.shape:
            predicted["output"] = np.where(central, ref.astype(np.float64), theirs.astype(np.float64))
    cot = case.cotangents.get("output")
    if cot is not None and "input" in got.grads:
        cot = np.broadcast_to(np.asarray(cot, dtype=np.float64), sources.shape).ravel()
        idx = sources.ravel()
        keep = idx >= 0
        size = x.size
        # (float64 even when nothing is gathered: bincount then returns integers)
        grad = np.bincount(idx[keep], weights=cot[keep], minlength=size)[:size].astype(np.float64)
        magnitude = np.bincount(idx[keep], weights=np.abs(cot[keep]), minlength=size)[:size].astype(np.float64)
        predicted["grad.input"] = (grad.reshape(x.shape), magnitude.reshape(x.shape))
    return predicted


# -- parametrizations-weight-norm-dim-minus-one-is-the-whole-tensor --------------------------------


def _whole_norm_parts(case: Case) -> tuple[np.ndarray, np.ndarray, float]:
    from conformance.numerics.parametrizations import WEIGHT

    v = np.asarray(case.inputs[f"{WEIGHT}.original1"], dtype=np.float64)
    g = np.asarray(case.inputs[f"{WEIGHT}.original0"], dtype=np.float64)
    return v, g, float(np.sqrt(np.sum(np.square(v))))


def _whole_norm_weight(case: Case) -> tuple[np.ndarray, dict]:
    v, g, n = _whole_norm_parts(case)
    with np.errstate(all="ignore"):
        return v * (g / n), {}


def _whole_norm_vjp(case: Case, grad_w: np.ndarray) -> dict[str, np.ndarray]:
    """The VJP of W = v·(g/‖v‖_F), g broadcast against v (torch's composite path of
    ``torch._weight_norm`` with dim = -1, which is not v.dim() - 1: no fused kernel)."""
    from conformance.numerics.parametrizations import WEIGHT

    v, g, n = _whole_norm_parts(case)
    G = np.asarray(grad_w, dtype=np.float64)
    with np.errstate(all="ignore"):
        axes = tuple(a for a in range(v.ndim) if g.ndim != v.ndim or g.shape[a] == 1)
        grad_g = np.sum(G * v, axis=axes, keepdims=True).reshape(g.shape) / n
        grad_v = G * (g / n) - v * (np.sum(G * v * g) / n ** 3)
    return {f"{WEIGHT}.original0": grad_g, f"{WEIGHT}.original1": grad_v}


def weight_norm_whole_tensor_model(case: Case, reference: Result, got: Result) -> dict[str, object]:
    """What ``parametrizations-weight-norm-dim-minus-one-is-the-whole-tensor`` predicts torch
    computes: the layer with W = v·(g/‖v‖) (‖v‖ over the whole tensor, g of the case's shape
    broadcast against v) and the VJPs of that map, through the declaration's own layer reference.
    The originals' gradients carry the magnitude of their sums (the layer's gradient of W taken on
    |input| and |cotangent|, widened by 1 + √k for its own k-term sums), as dL/dv cancels."""
    from dataclasses import replace

    from conformance.families.init import _parametrized_reference
    from conformance.numerics.parametrizations import WEIGHT, Parametrisation

    method = Parametrisation(_whole_norm_weight, _whole_norm_vjp, lambda *a: {}, lambda c: None)
    result, pullback = _parametrized_reference(method)(case)
    predicted: dict[str, object] = {k: np.asarray(v) for k, v in result.outputs.items()}
    if not case.cotangents:
        return predicted
    grads = pullback(dict(case.cotangents))
    captured: dict[str, np.ndarray] = {}

    def capture(c: Case, grad_w: np.ndarray) -> dict[str, np.ndarray]:
        captured["G"] = np.abs(np.asarray(grad_w, dtype=np.float64))
        return {}

    spread = replace(case, inputs={**case.inputs, "input": np.abs(np.asarray(case.inputs["input"], dtype=np.float64))},
                     cotangents={k: np.abs(np.asarray(v, dtype=np.float64)) for k, v in case.cotangents.items()})
    _, pull_abs = _parametrized_reference(Parametrisation(_whole_norm_weight, capture, lambda *a: {}))(spread)
    pull_abs(dict(spread.cotangents))
    v, g, n = _whole_norm_parts(case)
    # The layer's gradient of W is itself a sum over the batch and the output positions (k terms
    # per element), rounded in the dtype before the chain rule: its error carries into both.
    k = max(1, max(np.size(c) for c in case.cotangents.values()) // max(1, v.shape[0]))
    G = captured["G"] * (1.0 + np.sqrt(k))
    with np.errstate(all="ignore"):
        axes = tuple(a for a in range(v.ndim) if g.ndim != v.ndim or g.shape[a] == 1)
        mag_g = np.sum(G * np.abs(v), axis=axes, keepdims=True).reshape(g.shape) / n
        mag_v = G * np.abs(g / n) + np.abs(v) * (np.sum(G * np.abs(v * g)) / n ** 3)
    for name, value in grads.items():
        value = np.asarray(value)
        if name == f"{WEIGHT}.original0":
            predicted[f"grad.{name}"] = (value, mag_g)
        elif name == f"{WEIGHT}.original1":
            predicted[f"grad.{name}"] = (value, mag_v)
        else:
            predicted[f"grad.{name}"] = value
    return predicted


# -- upsample-bicubic-backward-copy, interpolate-antialias-single-column-rows ---------------------


def bicubic_backward_copy_model(case: Case, reference: Result, got: Result) -> dict[str, np.ndarray]:
    """What ``upsample-bicubic-backward-copy`` predicts torch computes: the input's gradient is the
    cotangent itself (every output length equals the input's; the backward copies)."""
    cot = case.cotangents.get("output")
    if cot is None:
        return {}
    x = np.asarray(case.inputs["input"])
    return {"grad.input": np.asarray(cot, dtype=np.float64).reshape(x.shape)}


def antialias_single_column_model(case: Case, reference: Result, got: Result) -> dict[str, object]:
    """What ``interpolate-antialias-single-column-rows`` predicts torch computes: every output row
    (along the height) is the first row of the reference's output (computed with row 0's taps and
    weights), with row 0's rounding magnitude (its sum may cancel: a row's own magnitude is not
    the scale of row 0's rounding)."""
    from conformance.spec import spec_of
    from conformance.tolerance import magnitudes

    out = np.asarray(reference.outputs["output"], dtype=np.float64)
    if out.ndim < 2 or out.shape[-2] == 0:
        return {}
    mag = np.broadcast_to(np.asarray(magnitudes(spec_of(case), case, reference)["output"], dtype=np.float64),
                          out.shape)

    def first(a: np.ndarray) -> np.ndarray:
        return np.broadcast_to(a[..., :1, :], out.shape).copy()

    return {"output": (first(out), np.maximum(first(mag), np.abs(first(out))))}
