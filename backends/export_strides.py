"""torch.export's view of an input's strides, replayed in NumPy for the onnxruntime backend's known entries.

The adapter exports each call from an example it builds (``example_strides``: the strides of the tensor
``backends.torch_call`` materialises, then the adapter's clone). torch.onnx captures dynamic sizes with
backed_size_oblivious, so torch.export's shape environment sees each size as a symbol from 0 and each stride as a
product of sizes or a free stride symbol (``symbolic_strides``). Some of its decisions then fail the export on
empty or overlapping examples: laying out an elementwise result divides by an empty size
(``elementwise_perm_divides_by_zero``), an in-place write's overlap check reads a stride symbol
(``inplace_write_export_failure``). These replays take the example's sizes and strides only; they are fitted to
torch 2.13's behaviour (see each docstring) and imports nothing of ``conformance``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from backends.aten_strides import dims_by_stride, stride_order


def _c_strides(shape) -> list[int]:
    """Row-major element strides, torch's rule (a dim of size 0 counts as 1)."""
    strides, acc = [0] * len(shape), 1
    for d in reversed(range(len(shape))):
        strides[d] = acc
        acc *= max(int(shape[d]), 1)
    return strides


def _infer_dense_strides(shape, strides) -> list[int]:
    """ATen's infer_dense_strides (what clone/empty_like give a tensor that is not dense): the dims sorted
    innermost first by stride (a stride of 0 is ambiguous; equal strides put the smaller size first)."""
    ndim = len(shape)
    perm = dims_by_stride(shape, strides)
    out, acc = [0] * ndim, 1
    for d in perm:
        out[d] = acc
        if shape[d] > 1:
            acc *= shape[d]
    return out


def _non_overlapping_and_dense(shape, strides) -> bool:
    """c10's compute_non_overlapping_and_dense (an empty tensor counts as dense: clone keeps its strides)."""
    if 0 in shape:
        return True
    if len(shape) == 1:
        return shape[0] < 2 or strides[0] == 1
    dims = sorted((d for d in range(len(shape)) if shape[d] >= 2), key=lambda d: strides[d])
    need = 1
    for d in dims:
        if strides[d] != need:
            return False
        need *= shape[d]
    return True


def example_strides(case, name: str) -> tuple[int, ...]:
    """The strides of the example tensor the onnxruntime adapter exports from for input ``name``: the tensor
    backends.torch_call.materialise builds (an empty array copied by NumPy has all-zero strides, so an empty
    contiguous, permuted or expanded input has zero strides; a strided input is a view of a torch.full
    buffer), then the adapter's ``t.detach().clone()`` (dense or empty: same strides; otherwise dense in
    the same stride order). An input the call passes as a copy (an in-place call's argument) is exported from
    that copy: backends.torch_call.copy_into_layout stores a permuted or channels-last copy in a fresh
    torch.empty of the stored order, whose strides are nonzero even when it is empty."""
    shape = tuple(int(s) for s in np.shape(case.inputs[name]))
    layout = case.layout(name)
    if layout.kind in ("channels_last", "permuted") and _input_copied(case.call or {}, name):
        strides = [int(s) for s in layout.strides(shape)]
    elif layout.kind == "strided":
        strides = [s * k for s, k in zip(_c_strides([s * k for s, k in zip(shape, layout.step)]), layout.step)]
    elif 0 in shape and layout.kind != "expanded":
        strides = [0] * len(shape)
    elif layout.kind in ("channels_last", "permuted"):
        stored = _c_strides([shape[d] for d in layout.perm])
        strides = [0] * len(shape)
        for k, d in enumerate(layout.perm):
            strides[d] = stored[k]
    elif layout.kind == "expanded":
        base = [min(s, 1) if d in layout.dims else s for d, s in enumerate(shape)]
        strides = [0] * len(shape) if 0 in base else _c_strides(base)
        strides = [0 if d in layout.dims and shape[d] != 1 else s for d, s in enumerate(strides)]
    else:
        strides = _c_strides(shape)
    if not _non_overlapping_and_dense(shape, strides):
        strides = _infer_dense_strides(shape, strides)
    return tuple(strides)


def symbolic_strides(shape, strides) -> list[tuple[int, tuple[str, ...]]]:
    """The strides torch.export gives an input of these example sizes and strides
    (ShapeEnv._compute_symbolic_stride): each a product coef·symbols, where the sizes are the symbols
    s0, s1, ... (all dynamic: torch.onnx exports with backed_size_oblivious, so no size is specialised)
    and a stride that is not size·stride of the next dim is a new symbol shared by equal values (duck)."""
    out: list = [None] * len(shape)
    candidates: dict[int, tuple[int, tuple[str, ...]]] = {}
    for val, neg_i in sorted((v, -i) for i, v in enumerate(strides)):
        i = -neg_i
        contiguous = i != len(strides) - 1 and strides[i] == shape[i + 1] * strides[i + 1]
        if val in (0, 1) and not contiguous:
            expr = (val, ())
        elif val in candidates:
            expr = candidates[val]
        elif val in (0, 1):
            expr = (val, ())
        else:
            expr = (1, (f"t{val}",))
        out[i] = expr
        coef, syms = expr
        candidates[shape[i] * val] = (0, ()) if coef == 0 else (coef, tuple(sorted(syms + (f"s{i}",))))
    return out


def _monomial_hint(expr, hints) -> int:
    coef, syms = expr
    value = coef
    for s in syms:
        value *= hints[s]
    return value


class _ShapeState:
    """What torch.export's ShapeEnv knows of an input's symbols after guards (the monomials of
    ``symbolic_strides``: sizes s0, s1, ..., stride symbols t<value>): the dims whose size a guard fixed
    to 1 (then substituted) and the ranges guards refined (a size starts at [0, inf), a stride at [2, inf))."""

    def __init__(self, shape) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.one: set[int] = set()
        self.lo: dict[str, int] = {}
        self.hi: dict[str, float] = {}

    def lo_of(self, sym: str) -> int:
        return self.lo.get(sym, 2 if sym[0] == "t" else 0)

    def hi_of(self, sym: str) -> float:
        return self.hi.get(sym, math.inf)

    def norm(self, expr):
        coef, syms = expr
        return coef, tuple(x for x in syms if not (x[0] == "s" and int(x[1:]) in self.one))

    def lower(self, expr) -> float:
        value = expr[0]
        for x in expr[1]:
            value *= self.lo_of(x)
        return value

    def upper(self, expr) -> float:
        if expr[0] == 0:
            return 0
        value = expr[0]
        for x in expr[1]:
            value *= self.hi_of(x)
        return value

    def hint(self, expr) -> int:
        value = expr[0]
        for x in expr[1]:
            value *= self.shape[int(x[1:])] if x[0] == "s" else int(x[1:])
        return value

    @staticmethod
    def _quotient(a, b) -> tuple[str, ...] | None:
        """The symbols of the monomial a / b (b's symbols, with multiplicity, among a's), else None."""
        rest = list(a[1])
        for x in b[1]:
            if x not in rest:
                return None
            rest.remove(x)
        return tuple(rest)

    def ratio_at_least(self, a, b, k) -> bool:
        """a / b is a monomial (b's symbols among a's) statically >= k."""
        rest = self._quotient(a, b)
        return rest is not None and b[0] > 0 and a[0] * self.lower((1, rest)) >= k * b[0]

    def static_lt(self, a, b) -> bool | None:
        """a < b when the ranges decide it (torch's static evaluation), else None."""
        if a == b:
            return False
        if self.upper(a) < self.lower(b):
            return True
        if self.lower(a) >= self.upper(b):
            return False
        if self._single_factor(b, a):  # b = a·s with s >= 2 (torch decides t < s·t, not t < s·s'·t)
            return True
        if self._single_factor(a, b) or (a[1] == b[1] and a[0] >= b[0]):
            return False
        return None

    def _single_factor(self, a, b) -> bool:
        """a = b·x for one symbol x known >= 2 (b > 0)."""
        rest = self._quotient(a, b)
        return rest is not None and len(rest) == 1 and a[0] == b[0] > 0 and self.lo_of(rest[0]) >= 2

    def static_eq(self, a, b) -> bool | None:
        if a == b:
            return True
        if self.static_lt(a, b) or self.static_lt(b, a):
            return False
        return None


def elementwise_perm_divides_by_zero(shape, strides, offsets, state: _ShapeState | None = None) -> bool:
    """Whether torch._prims_common.compute_elementwise_output_logical_to_physical_perm (what empty_like,
    clone and elementwise ops call to lay out their result) raises ZeroDivisionError on a fake tensor of
    an export with dynamic sizes: the input of example ``shape`` and ``strides``, viewed with sizes
    ``shape[i] + offsets[i]`` (a narrow). Under backed_size_oblivious no size is known to be 0, so two dims
    of (symbolically) equal stride are ordered by ``size_b % size_a``, whose hint divides by 0 when the
    size it divides by is an empty dim. Guards are evaluated as torch does without a hint: a size symbol
    ranges over [0, inf), a stride symbol over [2, inf); sizes s + k compare only with the same symbol.
    ``state``: what guards an earlier trace left (sizes known to be 1, refined ranges), else none."""
    ndim = len(shape)
    if ndim < 2:
        return False
    refined = state is not None
    state = state or _ShapeState(shape)
    size_hint = {f"s{i}": shape[i] for i in range(ndim)}
    size_hint.update({f"t{v}": v for v in strides})
    st = [state.norm(e) for e in symbolic_strides(shape, strides)]
    sizes = [(-1 if i in state.one else i, offsets[i] + (1 if i in state.one else 0)) for i in range(ndim)]
    hint = [shape[i] + offsets[i] for i in range(ndim)]

    def lower(expr):  # lower bound of a monomial: sizes >= 0, stride symbols >= 2 (unless refined)
        return state.lower(expr)

    def stride_ge(a, b):
        if a == b or b[0] == 0:
            return True
        if not b[1]:
            return lower(a) >= b[0] if a[1] else a[0] >= b[0]
        return refined and state.ratio_at_least(a, b, 1)

    def divides(a, b):  # b divides a symbolically (sympy: p/q is an integer)
        if b == (1, ()) or a == b or a[0] == 0:
            return True
        rest = list(a[1])
        for s in b[1]:
            if s not in rest:
                return False
            rest.remove(s)
        return a[0] % b[0] == 0

    class Zero(Exception):
        pass

    def ge_stride(a, b):
        if b[0] == 0:
            return True
        if a[0] == 0:
            return False
        if stride_ge(a, b):
            return True
        if _monomial_hint(b, size_hint) == 0:
            raise Zero
        return divides(a, b)

    def ge_size(i, j):  # shape[i] >= shape[j], as ge(a, b) in should_swap (a size known to be 1: symbol -1)
        if sizes[i][0] == sizes[j][0] and sizes[i][1] >= sizes[j][1]:
            return True
        if sizes[j] == (-1, 0):  # b == 0 is statically false, a % 1 == 0
            return True
        if sizes[i][0] >= 0 and sizes[j][0] >= 0 and not sizes[i][1] and not sizes[j][1] \
                and state.lo_of(f"s{sizes[i][0]}") >= state.hi_of(f"s{sizes[j][0]}"):
            return True
        if sizes[i] == (-1, 0) and sizes[j][0] >= 0 and not sizes[j][1] and state.hi_of(f"s{sizes[j][0]}") <= 1:
            return True
        if hint[j] == 0:
            raise Zero
        return sizes[i] == sizes[j]

    def should_swap(a, b):
        sa, sb = st[a], st[b]
        if sa[0] == 0 or sb[0] == 0:
            return 0
        if sa == sb:
            return 0 if ge_size(b, a) else 1
        if ge_stride(sb, sa):
            return -1
        if ge_stride(sa, sb):
            return 1
        return 0

    def dense(order):  # definitely contiguous in this dim order (only sizes the state knows to be 1 skipped)
        expected = (1, ())
        for k, d in enumerate(order):
            if d in state.one and not offsets[d]:
                continue
            if st[d] != expected:
                return False
            if offsets[d] and k < len(order) - 1:  # a narrowed size in a stride's product: never equal
                return False
            expected = state.norm((expected[0], tuple(sorted(expected[1] + (f"s{d}",)))))
        return True

    contiguous = dense(list(reversed(range(ndim))))
    channels_last = ndim in (4, 5) and dense([1] + list(range(ndim - 1, 1, -1)) + [0])
    if contiguous != channels_last:
        return False
    try:
        stride_order(ndim, should_swap)
    except Zero:
        return True
    return False


def _has_stride_symbol(*exprs) -> bool:
    return any(x[0] == "t" for e in exprs for x in e[1])


def _overlap_check_reads_stride(shape, st, state: _ShapeState) -> bool:
    """Replays c10's has_internal_overlap (what meta copy_ checks before an in-place write) on an input of
    symbolic strides ``st``, as torch.export does with hints: is_non_overlapping_and_dense (contiguity walks
    in the contiguous and, for 4-d/5-d, channels-last orders; then dims sorted by stride by std::sort's
    insertion sort, sizes < 2 last, and a walk in that order), then a stride == 0 test of each dim the
    size-oblivious check takes for > 1. Updates ``state`` with the guards' refinements; True when a guard
    that the ranges do not decide reads a stride symbol (the exported graph keeps an aten.sym_stride)."""
    reads = False
    nd = len(shape)

    def guard(result, a, b, hinted):
        nonlocal reads
        if result is not None:
            return result
        reads = reads or _has_stride_symbol(a, b)
        return hinted

    def eq(a, b):
        return guard(state.static_eq(a, b), a, b, state.hint(a) == state.hint(b))

    def lt(a, b):
        return guard(state.static_lt(a, b), a, b, state.hint(a) < state.hint(b))

    def size_is_one(d):  # a guard Eq(s, 1) narrows s to [1, 2] (torch substitutes nothing for a size-like s)
        sym = f"s{d}"
        if d in state.one:
            return True
        if state.hi_of(sym) < 1 or state.lo_of(sym) > 1:
            return False
        if shape[d] == 1:
            state.one.add(d)
            state.lo[sym], state.hi[sym] = 1, min(state.hi_of(sym), 2)
        return shape[d] == 1

    def size_lt2(d):  # a guard s < 2 narrows s to [0, 2], s >= 2 to [2, inf)
        sym = f"s{d}"
        if state.hi_of(sym) < 2:
            return True
        if state.lo_of(sym) >= 2:
            return False
        if shape[d] < 2:
            state.hi[sym] = min(state.hi_of(sym), 2)
        else:
            state.lo[sym] = 2
        return shape[d] < 2

    def mul(expr, d):
        return expr[0], tuple(sorted(expr[1] + (f"s{d}",)))

    def walk(order):
        expected = (1, ())
        for d in order:
            if size_is_one(d):
                continue
            if not eq(st[d], expected):
                return False
            expected = mul(expected, d)
        return True

    def comp(a, b):
        if size_lt2(a):
            return False
        if size_lt2(b):
            return True
        return lt(st[a], st[b])

    def sorted_dense():
        perm = list(range(nd))
        for i in range(1, nd):
            v = perm[i]
            if comp(v, perm[0]):
                perm[1:i + 1] = perm[0:i]
                perm[0] = v
                continue
            j = i
            while comp(v, perm[j - 1]):
                perm[j] = perm[j - 1]
                j -= 1
            perm[j] = v
        expected = (1, ())
        for d in perm:
            if size_lt2(d):
                return True
            if not eq(st[d], expected):
                return False
            expected = mul(expected, d)
        return True

    if walk(list(reversed(range(nd)))):
        return reads
    if nd in (4, 5) and walk([1, *range(nd - 1, 1, -1), 0]):
        return reads
    if (size_lt2(0) or eq(st[0], (1, ()))) if nd == 1 else sorted_dense():
        return reads
    for d in range(nd):  # size-oblivious s > 1 holds unless a guard bounded s by 2
        if state.hi_of(f"s{d}") > 2:
            eq(st[d], (0, ()))
    return reads


def inplace_write_export_failure(shape, strides) -> str | None:
    """How torch.export (dynamic sizes, backed_size_oblivious: torch.onnx's capture) fails on an in-place
    elementwise op (silu_, hardswish_, hardsigmoid_, celu_, mish_: the op computed out of place, then
    copy_ into the input) of an input of example ``shape`` and ``strides``, or None where it exports:
    "overlap" where a dim of size >= 2 has stride 0 (copy_'s "more than one element of the written-to
    tensor refers to a single memory location"); "modulo" where laying out the op's result divides by an
    empty dim's size, in the first trace or in the second (aot_export), which sees the guards copy_'s
    overlap check left (elementwise_perm_divides_by_zero); "sym_stride" where that check guarded on a
    stride symbol (_overlap_check_reads_stride: the ONNX translation finds no function for
    aten.sym_stride)."""
    shape = tuple(int(s) for s in shape)
    strides = [int(s) for s in strides]
    if any(n >= 2 and s == 0 for n, s in zip(shape, strides)):
        return "overlap"
    zeros = [0] * len(shape)
    if elementwise_perm_divides_by_zero(shape, strides, zeros):
        return "modulo"
    state = _ShapeState(shape)
    reads = _overlap_check_reads_stride(shape, symbolic_strides(shape, strides), state)
    if elementwise_perm_divides_by_zero(shape, strides, zeros, state):
        return "modulo"
    return "sym_stride" if reads else None


def _input_copied(node: Any, name: str) -> bool:
    """Whether the call tree ``node`` passes input ``name`` as a copy (an in-place call's argument:
    backends.torch_call.copy_into_layout)."""
    if isinstance(node, dict):
        if node.get("input") == name and node.get("copy"):
            return True
        return any(_input_copied(v, name) for v in node.values())
    if isinstance(node, (list, tuple)):
        return any(_input_copied(v, name) for v in node)
    return False
