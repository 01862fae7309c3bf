"""Models of known torch bugs (``model =`` of conformance/known entries) for containers and misc ops:
what torch computes, replayed, so that an entry explains only the values the bug produces."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from backends.base import Case, Result

# -- Sequential built from an OrderedDict (sequential-from-an-ordereddict-renamed-by-del) ----------------

def _torch_sequential_class() -> type:
    """``reference.containers.Container`` with torch 2.13's Sequential operations: ``_modules`` is an
    OrderedDict keyed by name (add_module replaces an existing name in place), ``del`` / ``pop``
    rename every remaining child to its position, ``insert`` shifts children by positional names
    (``_modules[str(i)] = _modules[str(i - 1)]``), ``append`` adds ``str(len)`` and ``+=`` adds
    ``str(i + len)``; a slice keeps the names."""
    from reference import containers as model

    class TorchSequential(model.Container):
        def _set(self, name: str, value: Any) -> None:
            for j, (k, _) in enumerate(self._items):
                if k == name:
                    self._items[j] = (name, value)
                    return
            self._items.append((name, value))

        def _get(self, name: str) -> Any:
            for k, v in self._items:
                if k == name:
                    return v
            raise KeyError(name)

        def append(self, value: Any) -> Any:
            self._set(str(len(self._items)), self._stored(value))
            return self

        def __iadd__(self, values: Any) -> Any:
            if not (isinstance(values, model.Container) and values.kind == "Sequential"):
                raise TypeError("a Sequential adds a Sequential")
            offset = len(self._items)
            for i, value in enumerate(list(values)):
                self._set(str(i + offset), self._stored(value))
            return self

        def __add__(self, other: Any) -> Any:
            if not (isinstance(other, model.Container) and other.kind == "Sequential"):
                raise TypeError("a Sequential adds a Sequential")
            out = TorchSequential("Sequential")
            for value in list(self) + list(other):
                out.append(value)
            return out

        def insert(self, index: int, value: Any) -> None:
            stored = self._stored(value)
            n = len(self._items)
            if not (-n <= index <= n):
                raise IndexError(f"index {index} is out of range")
            if index < 0:
                index += n
            for i in range(n, index, -1):
                self._set(str(i), self._get(str(i - 1)))
            self._set(str(index), stored)
            return self

        def __delitem__(self, index: Any) -> None:
            if isinstance(index, slice):
                del self._items[index]
            else:
                del self._items[self._index(index)]
            self._items[:] = [(str(i), v) for i, (_, v) in enumerate(self._items)]

        def _slice(self, s: slice) -> Any:
            return TorchSequential("Sequential", self._items[s], named=True)

    return TorchSequential


def named_sequential_torch_model(case: Case, reference: Result, got: Result) -> dict[str, Any]:
    """What torch 2.13 observes for a Sequential-operations case: the case's steps replayed on
    torch's Sequential semantics (``_torch_sequential_class``), encoded as the reference encodes
    them. Raises (no prediction) where torch's replay raises."""
    if case.params.get("container") != "Sequential":
        return {}
    predicted = _replay_named_sequential(case)
    theirs = got.tensors()
    ours = reference.tensors()
    out: dict[str, Any] = {}
    for name, value in predicted.items():
        value = np.asarray(value)
        mine = theirs.get(name)
        if name == "forward" and mine is not None and np.shape(mine) == value.shape:
            # the declaration compares the forward without the sign of its zeros (unsigned_zeros)
            value = np.where((value == 0) & (np.asarray(mine) == 0), np.asarray(mine, dtype=value.dtype), value)
        ref = ours.get(name)
        if ref is not None and np.shape(ref) != value.shape:
            if value.dtype.kind not in "iub":
                # a float prediction is judged against the reference's magnitudes, of the reference's
                # shape (conformance.known.modelled_tensors): not predicted (entry
                # sequential-from-an-ordereddict-renamed-by-del-lengths)
                continue
            value = (value, np.zeros(np.shape(ref)))  # integers compare exactly: the magnitude is unused
        out[name] = value
    return out


def _replay_named_sequential(case: Case) -> dict[str, np.ndarray]:
    from conformance.strategies.container_ops import VOCABULARY
    from reference import containers as model

    p = case.params
    cls = _torch_sequential_class()
    resolver = model.Resolver(p["entries"], case.inputs)
    if p["named"]:
        empty = cls("Sequential", named=True)
        container = cls("Sequential", [(k, resolver(v, empty)) for k, v in p["init"]], named=True)
    else:
        container = cls("Sequential", [resolver(v, cls("Sequential")) for v in p["init"]])
    return model.run(container, p["steps"], resolver, model.Encoder(VOCABULARY))


def named_sequential_torch_raises(case: Case) -> bool:
    """A named-Sequential case (``containers.named_sequential_reordered``) whose steps fail on torch's
    Sequential operations (insert's ``_modules[str(i - 1)]`` KeyError) but not on the documented ones."""
    from conformance.numerics.containers import named_sequential_reordered

    if case.invalid or not named_sequential_reordered(case):
        return False
    try:
        _replay_named_sequential(case)
    except Exception:
        return True
    return False


def named_sequential_lengths_differ(case: Case) -> bool:
    """A named-Sequential case whose torch replay reads parameters or a state_dict of another length
    than the documented semantics (the float tensors a model cannot be judged on: see
    ``named_sequential_torch_model``)."""
    from conformance.numerics.containers import named_sequential_reordered
    from conformance.strategies.container_ops import observed

    if case.invalid or not named_sequential_reordered(case):
        return False
    try:
        mine = _replay_named_sequential(case)
    except Exception:
        return False
    documented = observed(case)
    return any(name in mine and name in documented and np.shape(mine[name]) != np.shape(documented[name])
               for name in ("parameters.values", "state_dict.values"))


# -- cosine_similarity's clamped norms (cosine-similarity-clamped-norm-gradient-*) -------------------------

def cosine_clamped_norm_gradient_model(case: Case, reference: Result, got: Result) -> dict[str, Any]:
    """``clamped_norm_gradient`` with eps rounded to the case's format, as torch's eager kernels hold it; a float16
    case replayed op by op in float16 (each eager kernel rounds its result: ((x/N)/N), the product with the
    cotangent and the norm's gradient overflow or underflow where the float64 formula does not)."""
    return clamped_norm_gradient(case, case.dtype, compute="float16" if case.dtype == "float16" else None)


def inductor_cosine_clamped_norm_gradient_model(case: Case, reference: Result, got: Result) -> dict[str, Any]:
    """``clamped_norm_gradient`` with eps a float32 constant, as inductor's generated code holds it for a
    float16/bfloat16 input (its float32 computation also keeps a gradient near 65504 from the eps rounding that
    moves eager's across the range); a float16 case replayed op by op in float32 with the two reductions' results
    (the norms the backward reads, the clamped norm's gradient) stored in float16 buffers, which reproduced
    inductor's gradients bit for bit on the sweep's two unexplained cases (a norm below eps beside zeros)."""
    if case.dtype == "float16":
        return clamped_norm_gradient(case, "float32", compute="float32", stored=("norm", "norm_grad"))
    return clamped_norm_gradient(case, "float64" if case.dtype == "float64" else "float32")


def clamped_norm_gradient(case: Case, eps_format: str, compute: str | None = None,
                          stored: tuple[str, ...] = ()) -> dict[str, Any]:
    """The gradients torch 2.13's cosine_similarity computes: y = Σ (x1/N1)·(x2/N2) with N = the
    norm n clamped in place to eps under NoGradGuard, so autograd differentiates the division by N
    as by a variable whose own gradient is the unclamped norm's, x/n (0 where n = 0):

        grad.x1 = g·(a2/N1 − (Σ x1·a2)/N1² · x1/n1),  a2 = x2/N2   (and symmetrically),

    summed over the axes an input was broadcast along, with eps rounded to ``eps_format``. With ``compute`` None,
    in float64, rounded once to the case's format (the rounding of torch's own steps is left to the tensor's
    bound; beyond the range it is ±inf). With ``compute`` a format, autograd's graph is replayed op by op, each
    op's result rounded to it: ga = g·a2, ga/N1 (div's self gradient), -ga·((x1/N1)/N1) (div's other gradient)
    summed over the reduced dim into the norm's gradient gN, gN·(x1/n1) (the norm's backward), their sum, then
    the broadcast sum; ``stored`` names the intermediates kept in the case's format between kernels ("norm",
    "norm_grad")."""
    from conformance.dtypes import DTYPES
    from conformance.numerics.distance import _cosine_norms, _unbroadcast

    x1, x2, n1, n2, axis = _cosine_norms(case)
    g = case.cotangents.get("output")
    if g is None:
        return {}
    eps = float(DTYPES[eps_format].round(np.asarray(float(case.params["eps"]))))
    g = np.expand_dims(np.asarray(g, dtype=np.float64), axis) if np.ndim(g) < x1.ndim else np.asarray(g, np.float64)
    out_round = DTYPES[case.dtype].round
    if compute is None:
        c1, c2 = np.maximum(n1, eps), np.maximum(n2, eps)
        a1, a2 = x1 / c1, x2 / c2
        out: dict[str, Any] = {}
        with np.errstate(divide="ignore", invalid="ignore"):
            for name, x, n, c, other in (("x1", x1, n1, c1, a2), ("x2", x2, n2, c2, a1)):
                through_norm = np.where(n > 0, x / np.where(n > 0, n, 1.0), 0.0)
                grad = g * (other / c - np.sum(x * other, axis=axis, keepdims=True) / (c * c) * through_norm)
                shape = np.shape(case.inputs[name])
                # rounded to the format, so that a gradient beyond its range is the ±inf any implementation returns
                out[f"grad.{name}"] = out_round(_unbroadcast(grad, shape).reshape(shape))
        return out
    op = DTYPES[compute].round

    def keep(what: str, value: np.ndarray) -> np.ndarray:
        return out_round(value) if what in stored else op(value)

    out = {}
    with np.errstate(all="ignore"):
        n1, n2 = keep("norm", n1), keep("norm", n2)
        c1, c2 = np.maximum(n1, eps), np.maximum(n2, eps)
        a1, a2 = op(x1 / c1), op(x2 / c2)
        for name, x, n, c, other in (("x1", x1, n1, c1, a2), ("x2", x2, n2, c2, a1)):
            ga = op(g * other)
            norm_grad = keep("norm_grad", np.sum(op(-ga * op(op(x / c) / c)), axis=axis, keepdims=True))
            through_norm = np.where(n > 0, op(x / np.where(n > 0, n, 1.0)), 0.0)
            grad = op(op(ga / c) + op(norm_grad * through_norm))
            shape = np.shape(case.inputs[name])
            out[f"grad.{name}"] = out_round(_unbroadcast(grad, shape).reshape(shape))
    return out


# -- PairwiseDistance's unscaled powers (pairwise-distance-unscaled-powers-*) ---------------------------------

def unscaled_powers_model(case: Case, reference: Result, got: Result) -> dict[str, Any]:
    """torch 2.13's PairwiseDistance for finite p ∉ {0, 1, 2}, replayed op by op with each result
    rounded to the case's format: d = (x1 − x2) + eps; at::norm's Σ|d|^p and its 1/p power in the
    opmath type (float32 for float16/bfloat16/float32, float64 for float64), rounded once; the
    backward (norm_backward) in the format itself, each op rounded: d·|d|^(p-2) (sgn(d)·|d|^(p-1) for
    p < 2) times g / N^(p-1) (0 where N = 0); for p < 1 sgn(d)·|d|^(p-1) (0 at d = 0)·g·N^(1-p).
    A reduction over one element returns |d| (torch's norm kernel takes no powers there). The
    powers are unscaled, so they overflow / underflow as torch's do (the forward's powers of a
    half format are exact in float32 up to its own rounding: the sum is one float64 rounding to
    float32 here, torch's a float32 accumulation, left to the tensor's bound)."""
    from conformance.dtypes import DTYPES
    from conformance.numerics.distance import _params, _unbroadcast

    p, eps, keepdim = _params(case)
    if not math.isfinite(p) or p in (0.0, 1.0, 2.0):
        return {}
    rd = DTYPES[case.dtype].round
    opmath = DTYPES["float64" if case.dtype == "float64" else "float32"].round
    x1 = np.asarray(case.inputs["x1"], dtype=np.float64)
    x2 = np.asarray(case.inputs["x2"], dtype=np.float64)
    with np.errstate(all="ignore"):
        d = rd(rd(x1 - x2) + eps)
        a = np.abs(d)
        powers = opmath(np.power(a, p))
        norm = rd(opmath(np.power(opmath(np.sum(powers, axis=-1, keepdims=True)), 1.0 / p)))
        if d.shape[-1:] == (1,):  # a reduction over one element is |d| itself (no powers)
            norm = a
        out: dict[str, Any] = {"output": norm if keepdim else norm[..., 0]}
        g = case.cotangents.get("output")
        if g is None:
            return out
        g = np.asarray(g, dtype=np.float64)
        g = g if keepdim else g[..., None]
        if p < 1:
            scaled = np.where(d == 0, 0.0, rd(np.sign(d) * rd(np.power(a, p - 1))))
            grad = rd(rd(scaled * g) * rd(np.power(norm, 1 - p)))
        else:
            scaled = rd(np.sign(d) * rd(np.power(a, p - 1))) if p < 2 else rd(d * rd(np.power(a, p - 2)))
            scale_v = np.where(norm == 0, 0.0, rd(g / rd(np.power(norm, p - 1))))
            grad = rd(scaled * scale_v)
    for name, sign in (("x1", 1.0), ("x2", -1.0)):
        shape = np.shape(case.inputs[name])
        out[f"grad.{name}"] = rd(_unbroadcast(sign * grad, shape)).reshape(shape)
    return out


# -- MultiheadAttention's causal hint over appended keys (mha-causal-hint-drops-appended-keys-*) ---------------

def causal_hint_appended_keys_model(case: Case, reference: Result, got: Result) -> dict[str, Any]:
    """What torch 2.13's MultiheadAttention computes with is_causal=True, need_weights=False, no
    key_padding_mask and keys appended (add_bias_kv / add_zero_attn): the reference's
    multi_head_attention with the explicit attn_mask replaced by sdpa's own causal triangle over
    the extended keys (query i attends keys j <= i, so the first queries do not see the appended
    bias / zero keys), and its pullback, in float64 (the format's rounding left to the bound)."""
    from conformance.numerics import attention as NA
    from reference import attention as RA

    args = NA.mha_arguments(case)
    bf = case.params["batch_first"]

    def causal(attn_mask, key_padding_mask, n, h, L, s_full):
        return np.where(np.triu(np.ones((L, s_full), dtype=bool), 1), -np.inf, 0.0)[None, None]

    original = RA.attention_masks
    RA.attention_masks = causal
    try:
        forward = RA.multi_head_attention(**args)
    finally:
        RA.attention_masks = original
    out: dict[str, Any] = {"output": NA.seq_first(forward.output, bf)}
    g = case.cotangents.get("output")
    if g is None:
        return out
    grads = forward.pullback(NA.seq_first(np.asarray(g, dtype=np.float64), bf), None)
    for k, v in grads.items():
        if k in RA.MHA_GRAD_NAMES:
            out[f"grad.{RA.MHA_GRAD_NAMES[k]}"] = v
    g_q, g_k, g_v = (NA.seq_first(grads[n], bf) for n in ("query", "key", "value"))
    if "key" in case.inputs:
        out.update({"grad.query": g_q, "grad.key": g_k, "grad.value": g_v})
    else:  # self-attention: query is key is value
        out["grad.query"] = g_q + g_k + g_v
    return out


# -- CosineEmbeddingLoss's norm product in float16 (cosine-embedding-half-norm-product-out-of-range) -------

def cosine_embedding_rows(case: Case) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, str, int]:
    """CosineEmbeddingLoss's operands in float64: input1 and input2 (rows of length D on the last dim),
    target y, margin, the reduction (the legacy flags resolved) and the number of rows N (at least 1)."""
    from conformance.strategies.loss import reduction_of

    x1 = np.asarray(case.inputs["input1"], dtype=np.float64)
    x2 = np.asarray(case.inputs["input2"], dtype=np.float64)
    y = np.asarray(case.inputs["target"], dtype=np.float64)
    return x1, x2, y, float(case.params.get("margin", 0.0)), reduction_of(case), max(y.size, 1)


def cosine_row_cotangent(case: Case, reduction: str, n: int, shape: tuple[int, ...],
                         rd: Callable[[Any], Any] = np.asarray) -> np.ndarray | None:
    """Each row's cotangent of its loss term: g/N (mean, the quotient rounded by ``rd``), g (sum) or
    the rows' own (none); None when the case draws no cotangent."""
    g = case.cotangents.get("output")
    if g is None:
        return None
    g = np.asarray(g, dtype=np.float64)
    if reduction == "mean":
        return np.broadcast_to(rd(g / n), shape)
    return np.broadcast_to(g, shape) if reduction == "sum" else g


def cosine_cos_cotangent(y: np.ndarray, shifted: np.ndarray, g_row: np.ndarray) -> np.ndarray:
    """Each row's ∂loss/∂cos: −g for y = 1, g for y = −1 where cos − margin (``shifted``) >= 0, else 0."""
    return np.where((y == -1) & (shifted >= 0), g_row, 0.0) - np.where(y == 1, g_row, 0.0)


def cosine_embedding_half_model(case: Case, reference: Result, got: Result) -> dict[str, Any]:
    """torch 2.13's cosine_embedding_loss replayed op by op in the case's format (each result
    rounded, sums accumulated exactly then rounded): s = Σx1·x2, m = Σx² + 1e-12, cos = s/√(m1·m2)
    (the product m1·m2 overflowing or underflowing as torch's does), ℓ = 1 − cos (y = 1),
    max(0, cos − margin) (y = −1), reduced; and autograd's backward through the same ops (div:
    g/den and −g·((s/den)/den), sqrt: g/(2·den), the product, x·x twice)."""
    from conformance.dtypes import DTYPES

    rd = DTYPES[case.dtype].round
    x1, x2, y, margin, reduction, n = cosine_embedding_rows(case)
    with np.errstate(all="ignore"):
        s = rd(np.sum(rd(x1 * x2), axis=-1))
        m1 = rd(rd(np.sum(rd(x1 * x1), axis=-1)) + 1e-12)
        m2 = rd(rd(np.sum(rd(x2 * x2), axis=-1)) + 1e-12)
        product = rd(m1 * m2)
        den = rd(np.sqrt(product))
        cos = rd(s / den)
        pos = rd(1.0 - cos)
        shifted = rd(cos - margin)
        neg = np.maximum(shifted, 0.0)
        loss = np.where(y == 1, pos, 0.0) + np.where(y == -1, neg, 0.0)
        if reduction == "mean":
            output = rd(np.sum(loss) / n)
        elif reduction == "sum":
            output = rd(np.sum(loss))
        else:
            output = loss
        out: dict[str, Any] = {"output": output}
        g_row = cosine_row_cotangent(case, reduction, n, loss.shape, rd)
        if g_row is None:
            return out
        g_cos = rd(cosine_cos_cotangent(y, shifted, g_row))
        g_s = rd(g_cos / den)
        g_den = rd(-g_cos * rd(rd(s / den) / den))
        g_product = rd(g_den / rd(2.0 * den))
        g_m1, g_m2 = rd(g_product * m2), rd(g_product * m1)
        for name, x, other, g_m in (("input1", x1, x2, g_m1), ("input2", x2, x1, g_m2)):
            through_s = rd(g_s[..., None] * other)
            through_m = rd(g_m[..., None] * x)
            out[f"grad.{name}"] = rd(through_s + rd(through_m + through_m))
    return out
