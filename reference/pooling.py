"""Pooling: max, average, power-average (LP), fractional max, max-unpool and adaptive pooling.

Arrays are float64, shaped ``(N, C, *spatial)`` with one to three spatial dims (unbatched inputs
are handled by the caller, which adds and removes the batch axis). Indices are int64 positions in
the row-major flattened spatial dims of each ``(n, c)`` plane.

Every pooling is expressed through *taps*: for each spatial dim, the input positions each output
position reads (``Taps.index``, shape ``(P, out, L)``; ``P`` is 1 when all planes share the
geometry, ``N·C`` when each plane has its own, as in fractional pooling) and whether each tap lies
inside the input (``Taps.valid``; padding taps are invalid). The windows are the outer product of
the per-dim taps. The window reductions run tap by tap over strided views of one staged copy of
the input (``_stage``: padded with the reduction's identity, -inf or 0, and gathered per dim where
the taps are not an arithmetic grid), so no planes × windows × taps index array is ever built; they
keep the arithmetic of the plain form exactly: the max and its first arg-max, numpy's pairwise
summation order of the window sum, and the window-ordered accumulation of the gradient
(``_window_max_generic``, ``_window_sum_generic`` and ``_window_sum_vjp_generic`` are that plain
form: one gather of every tap, ``bincount`` to scatter back; tests check the two bit for bit).

Window geometry (torch.nn.MaxPool/AvgPool documentation): with effective kernel e = d·(k-1)+1,

    out = floor((in + 2p - e + (s-1 if ceil_mode else 0)) / s) + 1,

and in ceil mode a last window that would start in the right padding or past it is dropped:
``if (out-1)·s >= in + p: out -= 1``. Parameters must satisfy k, s, d >= 1, 0 <= p <= k // 2
(half the kernel size, not of the dilated kernel) and out >= 1; otherwise ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# ---------------------------------------------------------------------------------------------
# Window geometry
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Taps:
    """Input positions read by each output position along one spatial dim.

    ``index``: int64 ``(P, out, L)``; ``valid``: bool, same shape (False for padding taps).
    """

    index: np.ndarray
    valid: np.ndarray

    @property
    def out(self) -> int:
        return int(self.index.shape[1])


def pool_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1,
                     ceil_mode: bool = False) -> int:
    """Output length of a sliding-window pooling (torch's rule, see the module docstring).

    Raises ``ValueError`` for k, s, d < 1, p < 0, p > k // 2 or an output length below 1.
    """
    if kernel < 1 or stride < 1 or dilation < 1:
        raise ValueError(f"kernel ({kernel}), stride ({stride}) and dilation ({dilation}) must be >= 1")
    if padding < 0 or padding > kernel // 2:
        raise ValueError(f"padding {padding} must be in [0, kernel_size // 2 = {kernel // 2}]")
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if ceil_mode:
        span += stride - 1
    out = span // stride + 1  # floor division (span may be negative)
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    if out < 1:
        raise ValueError(f"input length {size} gives output length {out} < 1")
    return int(out)


def sliding_taps(size: int, out: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> Taps:
    """Taps of output o: positions o·s - p + t·d, t in [0, k); valid where inside [0, size)."""
    index = (np.arange(out)[:, None] * stride - padding + np.arange(kernel)[None, :] * dilation)
    valid = (index >= 0) & (index < size)
    return Taps(index[None].astype(np.int64), valid[None])


def adaptive_bounds(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive window i covers [floor(i·size/out), ceil((i+1)·size/out))."""
    i = np.arange(out, dtype=np.int64)
    start = (i * size) // out
    end = -((-(i + 1) * size) // out)
    return start, end


def adaptive_taps(size: int, out: int) -> Taps:
    """Taps of adaptive pooling: window i reads [start_i, end_i) (see ``adaptive_bounds``)."""
    start, end = adaptive_bounds(size, out)
    length = int((end - start).max()) if out > 0 else 1
    index = start[:, None] + np.arange(length)[None, :]
    valid = index < end[:, None]
    return Taps(np.where(valid, index, start[:, None])[None], valid[None])


def fractional_starts(samples: np.ndarray, size: int, out: int, kernel: int,
                      round_fn: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Window starts of fractional max pooling, one row per sample u (shape ``(P,)`` -> ``(P, out)``).

    torch's pseudo-random sequence (Graham, "Fractional Max-Pooling"), for out > 1:
        alpha = (size - k) / (out - 1)
        start_i = trunc((i + u)·alpha) - trunc(u·alpha),   i < out - 1
        start_{out-1} = size - k.
    torch evaluates it in the input's scalar type; ``round_fn`` rounds after each operation to
    model that (identity: exact float64 arithmetic).
    """
    rnd = round_fn or (lambda v: v)
    u = rnd(np.asarray(samples, dtype=np.float64))[:, None]
    starts = np.full((u.shape[0], out), size - kernel, dtype=np.int64)
    if out > 1:
        alpha = rnd(rnd(np.float64(size - kernel)) / rnd(np.float64(out - 1)))
        i = np.arange(out - 1, dtype=np.float64)[None, :]
        first = np.trunc(rnd(rnd(rnd(i) + u) * alpha))
        offset = np.trunc(rnd(u * alpha))
        starts[:, :-1] = (first - offset).astype(np.int64)
    return starts


def fractional_taps(starts: np.ndarray, kernel: int) -> Taps:
    """Taps of fractional pooling: window i reads [start_i, start_i + k) (always inside)."""
    index = starts[:, :, None] + np.arange(kernel)[None, None, :]
    return Taps(index.astype(np.int64), np.ones(index.shape, dtype=bool))


def _plane_strides(spatial: Sequence[int]) -> list[int]:
    strides, acc = [], 1
    for s in reversed(spatial):
        strides.append(acc)
        acc *= int(s)
    return strides[::-1]


def window_positions(spatial: Sequence[int], taps: Sequence[Taps]) -> tuple[np.ndarray, np.ndarray]:
    """Flat in-plane positions and validity of every tap of every window.

    Returns ``(flat, valid)``, both shaped ``(P, *out, *L)``; invalid taps have position 0.
    """
    nd = len(taps)
    strides = _plane_strides(spatial)
    planes = max(t.index.shape[0] for t in taps)
    full = (planes, *[t.out for t in taps], *[t.index.shape[2] for t in taps])
    flat = np.zeros(full, dtype=np.int64)
    valid = np.ones(full, dtype=bool)
    for d, t in enumerate(taps):
        shape = [t.index.shape[0]] + [1] * (2 * nd)
        shape[1 + d] = t.out
        shape[1 + nd + d] = t.index.shape[2]
        ok = t.valid.reshape(shape)
        flat = flat + np.where(ok, t.index.reshape(shape), 0) * strides[d]
        valid = valid & ok
    return flat, valid


def _gather(x: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """Values of ``x`` (N, C, *spatial) at in-plane positions ``flat`` (P, ...) -> (N·C, ...)."""
    planes = x.shape[0] * x.shape[1]
    xf = x.reshape(planes, -1)
    idx = np.broadcast_to(flat, (planes, *flat.shape[1:])).reshape(planes, -1)
    return np.take_along_axis(xf, idx, axis=1).reshape(planes, *flat.shape[1:])


def _scatter(plane_size: int, planes: int, flat: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Sum ``weights`` (planes, ...) into ``(planes, plane_size)`` at positions ``flat``."""
    flat = np.broadcast_to(flat, weights.shape).reshape(planes, -1)
    offsets = (np.arange(planes, dtype=np.int64) * plane_size)[:, None]
    total = np.bincount((flat + offsets).ravel(), weights=weights.reshape(-1), minlength=planes * plane_size)
    return total.reshape(planes, plane_size)


def max_overlap(spatial: Sequence[int], taps: Sequence[Taps]) -> int:
    """The largest number of windows reading one input position (the reduction length of the
    input gradient); at least 1."""
    flat, valid = window_positions(spatial, taps)
    plane = int(np.prod(spatial))
    counts = _scatter(plane, flat.shape[0], flat, valid.astype(np.float64))
    return max(1, int(counts.max(initial=0)))


# ---------------------------------------------------------------------------------------------
# Staged windows: one tap of all windows as one strided view
# ---------------------------------------------------------------------------------------------


def _arithmetic(t: Taps, size: int) -> tuple[int, int, int] | None:
    """``(first, stride, dilation)`` when tap j of window o reads first + o·stride + j·dilation in
    every plane and a tap is valid exactly when inside ``[0, size)``; else None."""
    if t.index.shape[0] != 1:
        return None
    index = t.index[0]
    out, length = index.shape
    first = int(index[0, 0])
    stride = int(index[1, 0]) - first if out > 1 else 1
    dilation = int(index[0, 1]) - first if length > 1 else 1
    if stride < 1 or dilation < 1:
        return None
    grid = first + np.arange(out)[:, None] * stride + np.arange(length)[None, :] * dilation
    if not (np.array_equal(index, grid) and np.array_equal(t.valid[0], (grid >= 0) & (grid < size))):
        return None
    return first, stride, dilation


def _offset_step(t: Taps) -> int | None:
    """The step δ when every valid tap j of a window reads (its tap 0) + j·δ; else None."""
    delta = int(t.index[0, 0, 1] - t.index[0, 0, 0]) if t.index.shape[2] > 1 else 1
    expected = t.index[:, :, :1] + np.arange(t.index.shape[2]) * delta
    return delta if np.array_equal(np.where(t.valid, t.index, expected), expected) else None


@dataclass(frozen=True)
class _Layout:
    """Where tap j of all windows of dim d sits: ``cuts[d][j]`` = (output slice, staged-data slice),
    None when no window has that tap inside the input. Arithmetic dims (``grid[d]`` = (first,
    stride, dilation)) read the input axis itself (padded by ``lo[d]``, ``hi[d]`` when staged with
    padding; otherwise the output slice keeps only the windows whose tap is inside); other dims
    are gathered to ``out·L`` positions, an invalid tap reading a fill slot after the input."""

    grid: tuple[tuple[int, int, int] | None, ...]
    lo: tuple[int, ...]
    hi: tuple[int, ...]
    cuts: tuple[tuple[tuple[slice, slice] | None, ...], ...]
    outs: tuple[int, ...]

    def taps(self) -> list[tuple[int, tuple[slice, ...], tuple[slice, ...]]]:
        """``(tap number, output index, data index)`` of every tap inside the input for at least one
        window, in row-major tap order (the window order of the plain form)."""
        found = []
        for number, t in enumerate(np.ndindex(*(len(c) for c in self.cuts))):
            cut = [c[j] for c, j in zip(self.cuts, t)]
            if all(k is not None for k in cut):
                found.append((number, (slice(None),) + tuple(k[0] for k in cut),
                              (slice(None),) + tuple(k[1] for k in cut)))
        return found


def _layout(spatial: Sequence[int], taps: Sequence[Taps], padded: bool) -> _Layout:
    """The staged layout of ``taps`` over spatial shape ``spatial`` (see ``_Layout``)."""
    grid = tuple(_arithmetic(t, int(size)) for size, t in zip(spatial, taps))
    lo, hi, cuts = [], [], []
    for size, t, g in zip(spatial, taps, grid):
        out, length = t.index.shape[1:]
        if g is None:
            lo.append(0)
            hi.append(0 if t.valid.all() else 1)
            cuts.append(tuple((slice(0, out), slice(j, j + (out - 1) * length + 1, length)) for j in range(length)))
            continue
        first, stride, dilation = g
        lo.append(max(0, -first) if padded else 0)
        hi.append(max(0, first + (out - 1) * stride + (length - 1) * dilation + 1 - int(size)) if padded else 0)
        per_tap = []
        for j in range(length):
            start = first + j * dilation
            a = 0 if padded else max(0, -(start // stride))  # first window whose tap j is >= 0
            b = out if padded else min(out, (int(size) - 1 - start) // stride + 1)
            begin = start + lo[-1] + a * stride
            per_tap.append((slice(a, b), slice(begin, begin + (b - a - 1) * stride + 1, stride)) if a < b else None)
        cuts.append(tuple(per_tap))
    return _Layout(grid, tuple(lo), tuple(hi), tuple(cuts), tuple(t.out for t in taps))


def _fast_path(x_shape: Sequence[int], taps: Sequence[Taps]) -> bool:
    """Whether the staged form applies: no empty axis, per-plane taps only for all planes, tap
    positions per ``_offset_step``, and in gathered dims tap 0 valid and the valid taps a prefix
    (so no window is empty there and the first tap holding -inf is a valid one)."""
    planes = int(x_shape[0]) * int(x_shape[1])
    if planes == 0 or any(t.index.shape[1] == 0 or t.index.shape[2] == 0 or t.index.shape[0] not in (1, planes)
                          or _offset_step(t) is None for t in taps):
        return False
    return all(_arithmetic(t, int(size)) is not None
               or (t.valid[:, :, 0].all() and not (t.valid[:, :, 1:] & ~t.valid[:, :, :-1]).any())
               for size, t in zip(x_shape[2:], taps))


def _pad(data: np.ndarray, widths: Sequence[tuple[int, int]], fill: float) -> np.ndarray:
    """``data`` with ``widths[d]`` = (before, after) ``fill`` entries added along axis d."""
    out = np.empty(tuple(n + a + b for n, (a, b) in zip(data.shape, widths)))
    out[tuple(slice(a, a + n) for n, (a, _) in zip(data.shape, widths))] = data
    for d, (n, (a, b)) in enumerate(zip(data.shape, widths)):
        for cut in (slice(0, a), slice(a + n, a + n + b)):
            if cut.stop > cut.start:
                out[(slice(None),) * d + (cut,)] = fill
    return out


def _stage(x: np.ndarray, taps: Sequence[Taps], fill: float, padded: bool) -> tuple[np.ndarray, _Layout]:
    """``x`` (N, C, *spatial) staged for ``taps``: ``(data, layout)``, data ``(N·C, *axes)``.
    Gathered dims are copied (``take``, ``fill`` for invalid taps); arithmetic dims are read in
    place, or from a copy padded with ``fill`` when ``padded``."""
    spatial = x.shape[2:]
    planes = int(x.shape[0]) * int(x.shape[1])
    layout = _layout(spatial, taps, padded)
    data = x.reshape(planes, *spatial)
    if any(layout.lo) or any(layout.hi):
        data = _pad(data, [(0, 0)] + list(zip(layout.lo, layout.hi)), fill)
    for d, (t, g) in enumerate(zip(taps, layout.grid)):
        if g is None:
            index = np.where(t.valid, t.index, int(spatial[d]))  # the fill slot
            if index.shape[0] == 1:
                data = np.take(data, index.reshape(-1), axis=1 + d)
            else:
                shape = [planes] + [1] * len(spatial)
                shape[1 + d] = index.shape[1] * index.shape[2]
                data = np.take_along_axis(data, index.reshape(shape), axis=1 + d)
    return data, layout


def _broadcast_dims(per_dim: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Per-dim arrays ``(P_d, out_d)`` reshaped to broadcast over ``(P, *out)``."""
    nd = len(per_dim)
    shaped = []
    for d, a in enumerate(per_dim):
        shape = [a.shape[0]] + [1] * nd
        shape[1 + d] = a.shape[1]
        shaped.append(a.reshape(shape))
    return shaped


def _tap_positions(spatial: Sequence[int], taps: Sequence[Taps], number: np.ndarray) -> np.ndarray:
    """Flat in-plane position of tap ``number`` (row-major over the kernel) of every window:
    (tap 0's position) + the tap's offset, per ``_offset_step``; ``number`` is ``(planes, *out)``."""
    strides = _plane_strides(spatial)
    offsets = np.zeros((), dtype=np.int64)
    for t, st in zip(taps, strides):
        offsets = np.add.outer(offsets, np.arange(t.index.shape[2]) * (_offset_step(t) * st))
    idx = np.take(offsets.ravel(), number)
    for base in _broadcast_dims([t.index[:, :, 0] * st for t, st in zip(taps, strides)]):
        idx += base
    return idx


def _pairwise_sum(terms: Sequence[np.ndarray]) -> np.ndarray:
    """Σ terms (a fresh array) in the order of numpy's pairwise summation of a contiguous run of
    ``len(terms)`` values (``pairwise_sum`` in numpy's loops_utils): sequential below 8 terms, eight
    strided partial sums combined as a tree up to 128, halves (at a multiple of 8) beyond."""
    n = len(terms)
    if n < 8:
        acc = terms[0] + terms[1] if n > 1 else terms[0].copy()
        for t in terms[2:]:
            acc += t
        return acc
    if n <= 128:
        rows = n - n % 8
        partial = [np.add(terms[j], terms[j + 8]) if rows > 8 else terms[j] for j in range(8)]
        for i in range(16, rows, 8):
            for j in range(8):
                partial[j] += terms[i + j]
        acc, scratch = np.add(partial[0], partial[1]), np.add(partial[2], partial[3])
        acc += scratch
        right = np.add(partial[4], partial[5])
        right += np.add(partial[6], partial[7], out=scratch)
        acc += right
        for t in terms[rows:]:
            acc += t
        return acc
    half = n // 2
    half -= half % 8
    acc = _pairwise_sum(terms[:half])
    acc += _pairwise_sum(terms[half:])
    return acc


# ---------------------------------------------------------------------------------------------
# Max pooling (and the scatter shared by every index-returning pooling)
# ---------------------------------------------------------------------------------------------


def window_max(x: np.ndarray, taps: Sequence[Taps]) -> tuple[np.ndarray, np.ndarray]:
    """Max over each window and its in-plane index.

    Padding never wins. A window holding a NaN yields NaN (index: its first NaN). Otherwise the
    index is the first tap in window order (row-major over the kernel) holding the maximum. A
    window with no tap inside the input yields -inf and index -1 (no input element).
    Returns ``(out, indices)`` shaped ``(N, C, *out)``.

    Tap by tap over the staged input, each tap only over the windows where it is inside: the
    running ``maximum`` (NaN-propagating), then, last tap first, branch-free integer updates of the
    number of a tap equal to it, so the first one stays. NaN windows, empty windows and the sign of
    a zero maximum (as numpy's max of the window row gives it, like the plain form) are settled
    afterwards, where they occur.
    """
    if not _fast_path(x.shape, taps):
        return _window_max_generic(x, taps)
    n, c = x.shape[:2]
    data, layout = _stage(x, taps, -np.inf, padded=False)
    found = [(number, out, data[src]) for number, out, src in layout.taps()]
    shape = (n * c, *layout.outs)
    full = [k for k, (_, out, v) in enumerate(found) if v.shape == shape]
    best = found[full[0]][2].copy() if full else np.full(shape, -np.inf)
    for k, (_, out, v) in enumerate(found):
        if not full or k != full[0]:
            np.maximum(best[out], v, out=best[out])
    number = np.zeros(shape, dtype=np.min_scalar_type(-int(np.prod([len(k) for k in layout.cuts]))))
    eq = np.empty(shape, dtype=bool)
    step = np.empty_like(number)
    for t, out, v in reversed(found):
        np.equal(v, best[out], out=eq[out])
        np.subtract(number[out], t, out=step[out])
        np.multiply(step[out], eq[out], out=step[out])
        number[out] -= step[out]
    if np.isnan(best.min()):
        nan = np.isnan(best)
        for t, out, v in reversed(found):
            np.copyto(number[out], t, where=nan[out] & np.isnan(v))
        best[nan] = np.nan
    idx = _tap_positions(x.shape[2:], taps, number)
    empty = np.zeros((), dtype=bool)
    for e in _broadcast_dims([~t.valid.any(axis=-1) for t in taps]):
        empty = empty | e
    if empty.any():
        np.copyto(idx, -1, where=np.broadcast_to(empty, shape))
    if not best.all():  # a zero max: its sign as numpy's max of the window row gives it
        zero = best == 0
        best[zero] = _window_rows(x, taps, zero).max(axis=-1)
    return best.reshape(n, c, *layout.outs), idx.reshape(n, c, *layout.outs)


def _window_rows(x: np.ndarray, taps: Sequence[Taps], where: np.ndarray) -> np.ndarray:
    """The plain form's window rows (padding -inf) of the windows where ``where`` (N·C, *out)
    holds: ``(count, taps per window)``."""
    flat, valid = window_positions(x.shape[2:], taps)
    at = np.nonzero(where)
    sel = (at[0] if flat.shape[0] > 1 else np.zeros_like(at[0]), *at[1:])
    pos, ok = flat[sel].reshape(at[0].size, -1), valid[sel].reshape(at[0].size, -1)
    return np.where(ok, x.reshape(where.shape[0], -1)[at[0][:, None], pos], -np.inf)


def _window_max_generic(x: np.ndarray, taps: Sequence[Taps]) -> tuple[np.ndarray, np.ndarray]:
    """``window_max`` in the plain form: every tap of every window gathered at once."""
    n, c = x.shape[:2]
    nd = len(taps)
    flat, valid = window_positions(x.shape[2:], taps)
    vals = _gather(x, flat)
    planes = n * c
    out_shape = vals.shape[1:1 + nd]
    window = int(np.prod(vals.shape[1 + nd:]))
    vals = vals.reshape(planes, *out_shape, window)
    ok = np.broadcast_to(valid, (planes, *valid.shape[1:])).reshape(planes, *out_shape, window)
    pos_flat = np.broadcast_to(flat, (planes, *flat.shape[1:])).reshape(planes, *out_shape, window)
    nan = ok & np.isnan(vals)
    keyed = np.where(ok & ~nan, vals, -np.inf)
    best = keyed.max(axis=-1)
    has_nan = nan.any(axis=-1)
    target = np.where(has_nan[..., None], nan, ok & (keyed == best[..., None]))
    pos = target.argmax(axis=-1)
    nonempty = ok.any(axis=-1)
    out = np.where(has_nan, np.nan, np.where(nonempty, best, -np.inf))
    idx = np.take_along_axis(pos_flat, pos[..., None], axis=-1)[..., 0]
    idx = np.where(nonempty, idx, -1).astype(np.int64)
    return out.reshape(n, c, *out_shape), idx.reshape(n, c, *out_shape)


def scatter_by_indices(input_shape: Sequence[int], indices: np.ndarray, g: np.ndarray) -> np.ndarray:
    """VJP of an index-selecting pooling: grad_x[n, c, j] = Σ_{o: indices[n, c, o] = j} g[n, c, o].

    Indices outside ``[0, plane)`` (the -1 of an empty window) receive nothing.
    """
    n, c = input_shape[:2]
    plane = int(np.prod(input_shape[2:]))
    idx, weights = indices.reshape(n * c, -1), g.reshape(n * c, -1)
    if idx.size and (idx.min() < 0 or idx.max() >= plane):
        keep = (idx >= 0) & (idx < plane)
        idx, weights = np.where(keep, idx, 0), np.where(keep, weights, 0.0)
    return _scatter(plane, n * c, idx, weights).reshape(tuple(input_shape))


def max_pool(x: np.ndarray, kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int],
             dilation: Sequence[int], ceil_mode: bool) -> tuple[np.ndarray, np.ndarray]:
    """MaxPool{1,2,3}d: y = max over each dilated window of the -inf-padded input; ``(y, indices)``."""
    return window_max(x, pool_taps(x.shape[2:], kernel, stride, padding, dilation, ceil_mode))


def pool_taps(spatial: Sequence[int], kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int],
              dilation: Sequence[int], ceil_mode: bool) -> list[Taps]:
    """Per-dim sliding-window taps (raises ``ValueError`` for invalid parameters)."""
    taps = []
    for size, k, s, p, d in zip(spatial, kernel, stride, padding, dilation):
        out = pool_output_size(int(size), int(k), int(s), int(p), int(d), ceil_mode)
        taps.append(sliding_taps(int(size), out, int(k), int(s), int(p), int(d)))
    return taps


# ---------------------------------------------------------------------------------------------
# Average pooling
# ---------------------------------------------------------------------------------------------


def avg_divisor(spatial: Sequence[int], kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int],
                ceil_mode: bool, count_include_pad: bool, divisor_override: int | None = None) -> np.ndarray:
    """Divisor of every output window, shape ``out``.

    Window o of one dim spans [o·s - p, o·s - p + k). With ``count_include_pad`` it counts the
    positions inside the padded input [-p, in + p) (padding counted, the ceil-mode overhang beyond
    in + p not); otherwise only those inside the input [0, in). ``divisor_override`` replaces it.
    """
    counts = []
    for size, k, s, p in zip(spatial, kernel, stride, padding):
        out = pool_output_size(int(size), int(k), int(s), int(p), 1, ceil_mode)
        start = np.arange(out) * s - p
        end = start + k
        if count_include_pad:
            counts.append(np.minimum(end, size + p) - start)
        else:
            counts.append(np.minimum(end, size) - np.maximum(start, 0))
    if divisor_override is not None:
        if divisor_override == 0:
            raise ValueError("divisor_override must not be zero")
        return np.full(tuple(len(c) for c in counts), float(divisor_override))
    total = np.ones(())
    for c in counts:
        total = np.multiply.outer(total, c.astype(np.float64))
    return total


def avg_pool(x: np.ndarray, kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int],
             ceil_mode: bool, count_include_pad: bool, divisor_override: int | None = None) -> np.ndarray:
    """AvgPool{1,2,3}d: y = (Σ of the input values in the window) / divisor (see ``avg_divisor``)."""
    ones = (1,) * len(kernel)
    taps = pool_taps(x.shape[2:], kernel, stride, padding, ones, ceil_mode)
    div = avg_divisor(x.shape[2:], kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
    return window_sum(x, taps) / div


def avg_pool_vjp(x_shape: Sequence[int], g: np.ndarray, kernel: Sequence[int], stride: Sequence[int],
                 padding: Sequence[int], ceil_mode: bool, count_include_pad: bool,
                 divisor_override: int | None = None) -> np.ndarray:
    """dL/dx_j = Σ_{windows o containing j} g_o / divisor_o."""
    ones = (1,) * len(kernel)
    taps = pool_taps(x_shape[2:], kernel, stride, padding, ones, ceil_mode)
    div = avg_divisor(x_shape[2:], kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
    return window_sum_vjp(x_shape, taps, g / div)


def _window_sum_generic(x: np.ndarray, taps: Sequence[Taps]) -> np.ndarray:
    """``window_sum`` in the plain form: every tap gathered, then numpy's ``sum`` over the taps."""
    n, c = x.shape[:2]
    nd = len(taps)
    flat, valid = window_positions(x.shape[2:], taps)
    vals = np.where(valid, _gather(x, flat), 0.0)
    out = vals.sum(axis=tuple(range(1 + nd, 1 + 2 * nd)))
    return out.reshape(n, c, *out.shape[1:])


def window_sum(x: np.ndarray, taps: Sequence[Taps]) -> np.ndarray:
    """Σ of the input values of each window (padding taps contribute 0); ``(N, C, *out)``.

    Summed tap by tap over the staged input (padded with 0) in the order numpy's ``sum`` over the
    window's taps takes (``_pairwise_sum`` after an initial 0.0): the plain form's result bit for bit.
    """
    if not _fast_path(x.shape, taps):
        return _window_sum_generic(x, taps)
    n, c = x.shape[:2]
    data, layout = _stage(x, taps, 0.0, padded=True)
    total = _pairwise_sum([data[src] for _, _, src in layout.taps()])
    total += 0.0  # numpy's sum starts from +0.0: a sum of -0.0 values is +0.0
    return total.reshape(n, c, *layout.outs)


def window_sum_vjp(x_shape: Sequence[int], taps: Sequence[Taps], g: np.ndarray) -> np.ndarray:
    """Transpose of ``window_sum``: every input position receives Σ of g over the windows reading it.

    The contributions to one position are added in row-major window order, starting from 0.0 (the
    order of the plain form's ``bincount``). Arithmetic taps: added tap by tap, each over the
    windows where it is inside, through the strided views of ``window_max`` (one tap of all windows
    reads distinct positions, and the reverse tap order is the window order of each position).
    Other shared taps: ``_window_sum_vjp_gathered``; per-plane taps: the plain form.
    """
    spatial = [int(s) for s in x_shape[2:]]
    if not _fast_path(x_shape, taps) or any(t.index.shape[0] != 1 for t in taps):
        return _window_sum_vjp_generic(x_shape, taps, g)
    planes = int(x_shape[0]) * int(x_shape[1])
    gp = g.reshape(planes, *g.shape[2:])
    layout = _layout(spatial, taps, padded=False)
    if any(grid is None for grid in layout.grid):
        return _window_sum_vjp_gathered(spatial, taps, gp).reshape(tuple(x_shape))
    grad = np.zeros((planes, *spatial))
    for _, out, src in reversed(layout.taps()):
        grad[src] += gp[out]
    return grad.reshape(tuple(x_shape))


def _windows_of_positions(size: int, t: Taps) -> tuple[np.ndarray, np.ndarray]:
    """For one dim of shared taps: ``(windows, count)``: ``windows[j, u]`` is the u-th window
    (ascending) with a valid tap at position j, and ``out`` (a zero slot) past the ``count[j]``."""
    valid = t.valid[0]
    pos = t.index[0][valid]
    win = np.broadcast_to(np.arange(t.out)[:, None], valid.shape)[valid]
    order = np.argsort(pos, kind="stable")  # windows stay ascending within a position
    pos, win = pos[order], win[order]
    count = np.bincount(pos, minlength=size)
    windows = np.full((size, max(1, int(count.max(initial=0)))), t.out, dtype=np.int64)
    windows[pos, np.arange(pos.size) - np.repeat(np.cumsum(count) - count, count)] = win
    return windows, count


def _window_sum_vjp_gathered(spatial: Sequence[int], taps: Sequence[Taps], g: np.ndarray) -> np.ndarray:
    """``window_sum_vjp`` of shared taps as a gather, ``g`` shaped ``(planes, *out)``:

        grad[j] = 0.0 + Σ_u g[w_1(j_1, u_1), ..., w_nd(j_nd, u_nd)]   (row-major in u, i.e. window order)

    over the windows w_d(j_d, ·) reading j along each dim (``_windows_of_positions``). The first
    window of every dim is gathered for all positions at once, the further ones only where they
    exist (a missing window would add 0, which changes nothing).
    """
    lists = [_windows_of_positions(int(size), t) for size, t in zip(spatial, taps)]
    gz = np.zeros((g.shape[0], *[o + 1 for o in g.shape[1:]]))  # a zero slot after each dim
    gz[(slice(None),) + tuple(slice(0, o) for o in g.shape[1:])] = g
    grad = gz
    for d, (windows, _) in enumerate(lists):
        grad = np.take(grad, windows[:, 0], axis=1 + d)
    grad += 0.0
    for u in list(np.ndindex(*(w.shape[1] for w, _ in lists)))[1:]:
        rows = [np.flatnonzero(count > ud) for (_, count), ud in zip(lists, u)]
        if all(r.size for r in rows):
            src = np.ix_(*[w[r, ud] for (w, _), r, ud in zip(lists, rows, u)])
            grad[(slice(None),) + np.ix_(*rows)] += gz[(slice(None),) + src]
    return grad


def _window_sum_vjp_generic(x_shape: Sequence[int], taps: Sequence[Taps], g: np.ndarray) -> np.ndarray:
    """``window_sum_vjp`` in the plain form: one ``bincount`` over every tap of every window."""
    n, c = x_shape[:2]
    nd = len(taps)
    flat, valid = window_positions(x_shape[2:], taps)
    gw = g.reshape(n * c, *g.shape[2:], *([1] * nd))
    weights = np.where(valid, gw, 0.0)
    plane = int(np.prod(x_shape[2:]))
    return _scatter(plane, n * c, flat, weights).reshape(tuple(x_shape))


# ---------------------------------------------------------------------------------------------
# Power-average (LP) pooling
# ---------------------------------------------------------------------------------------------


def _lp_parts(x: np.ndarray, p: float, kernel: Sequence[int], stride: Sequence[int],
              ceil_mode: bool) -> tuple[list[Taps], np.ndarray, np.ndarray]:
    """(taps, scale = K / count, v = scale · Σ_window x^p) with K the kernel numel."""
    nd = len(kernel)
    taps = pool_taps(x.shape[2:], kernel, stride, (0,) * nd, (1,) * nd, ceil_mode)
    count = avg_divisor(x.shape[2:], kernel, stride, (0,) * nd, ceil_mode, True)
    scale = float(np.prod(kernel)) / count
    v = scale * window_sum(np.power(x, p), taps)
    return taps, scale, v


def lp_pool(x: np.ndarray, norm_type: float, kernel: Sequence[int], stride: Sequence[int],
            ceil_mode: bool) -> np.ndarray:
    """LPPool{1,2}d as torch implements it (torch.nn.functional.lp_pool1d/2d):

        s = avg_pool(x^p) (padding 0; a ceil-clipped window divides by its clipped size)
        y = (sign(s)·relu(|s|) · K)^(1/p) = (K/count · Σ_window x^p)^(1/p),   K = Π kernel.

    x^p has no abs: a negative x with non-integer p gives NaN, and an odd p can make the sum
    negative, whose (1/p)-th power is NaN. For a window not clipped by ceil_mode this is the
    documented f(X) = (Σ x^p)^(1/p); a ceil-clipped window's sum is scaled by K / count, which the
    documentation does not state. p = +inf is max(|x|) and p = -inf is min(|x|) (max pooling).
    """
    nd = len(kernel)
    if np.isinf(norm_type):
        sign = 1.0 if norm_type > 0 else -1.0
        out, _ = max_pool(sign * np.abs(x), kernel, stride, (0,) * nd, (1,) * nd, ceil_mode)
        return sign * out
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # NaN/inf are results here
        _, _, v = _lp_parts(x, norm_type, kernel, stride, ceil_mode)
        return np.power(v, 1.0 / norm_type)


def lp_pool_vjp(x: np.ndarray, g: np.ndarray, norm_type: float, kernel: Sequence[int],
                stride: Sequence[int], ceil_mode: bool, v_override: np.ndarray | None = None) -> np.ndarray:
    """VJP of ``lp_pool``: with v = K/count·Σ x^p,

        dL/dx_j = Σ_{windows o ∋ j} g_o · (1/p)·v_o^(1/p - 1) · K/count_o · p·x_j^(p-1),

    where a window with s = 0 passes no gradient (torch: "if the sum of all inputs to the power
    of p is zero, the gradient is set to zero"). For p = ±inf: sign(x_j)·g at the arg-max/min.
    ``v_override`` replaces v (used to evaluate the gradient's error magnitude).
    """
    nd = len(kernel)
    if np.isinf(norm_type):
        sign = 1.0 if norm_type > 0 else -1.0
        _, idx = max_pool(sign * np.abs(x), kernel, stride, (0,) * nd, (1,) * nd, ceil_mode)
        return np.sign(x) * scatter_by_indices(x.shape, idx, g)
    p = float(norm_type)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # NaN/inf are results here
        taps, scale, v = _lp_parts(x, p, kernel, stride, ceil_mode)
        if v_override is not None:
            v = v_override
        g_v = np.where(v != 0, g * (1.0 / p) * np.power(v, 1.0 / p - 1.0), 0.0)
        g_terms = window_sum_vjp(x.shape, taps, g_v * scale)
        return g_terms * p * np.power(x, p - 1.0)


def lp_pool_sums(x: np.ndarray, norm_type: float, kernel: Sequence[int], stride: Sequence[int],
                 ceil_mode: bool) -> tuple[np.ndarray, np.ndarray]:
    """(v, v_abs): v = K/count·Σ x^p and the same with |x|^p (finite norm types only)."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        _, _, v = _lp_parts(x, norm_type, kernel, stride, ceil_mode)
        _, _, v_abs = _lp_parts(np.abs(x), norm_type, kernel, stride, ceil_mode)
    return v, v_abs


# ---------------------------------------------------------------------------------------------
# Fractional max pooling
# ---------------------------------------------------------------------------------------------


def fractional_max_pool2d(x: np.ndarray, kernel: Sequence[int], output_size: Sequence[int],
                          samples: np.ndarray,
                          round_fn: Callable[[np.ndarray], np.ndarray] | None = None
                          ) -> tuple[np.ndarray, np.ndarray]:
    """FractionalMaxPool2d: max over windows of size k starting at ``fractional_starts``.

    ``samples`` is ``(N, C, 2)`` with u for the width in ``[..., 0]`` and for the height in
    ``[..., 1]`` (torch's order). Requires out + k - 1 <= in per dim (else ``ValueError``).
    """
    n, c, h, w = x.shape
    (kh, kw), (oh, ow) = kernel, output_size
    for size, k, o in ((h, kh, oh), (w, kw, ow)):
        if k < 1 or o < 0:
            raise ValueError(f"kernel {k} must be >= 1 and output size {o} >= 0")
        if o + k - 1 > size:
            raise ValueError(f"pool size {k} too large for input {size} and output {o}")
    u = np.asarray(samples, dtype=np.float64).reshape(n * c, 2)
    taps_h = fractional_taps(fractional_starts(u[:, 1], h, oh, kh, round_fn), kh)
    taps_w = fractional_taps(fractional_starts(u[:, 0], w, ow, kw, round_fn), kw)
    return window_max(x, [taps_h, taps_w])


# ---------------------------------------------------------------------------------------------
# Max unpooling
# ---------------------------------------------------------------------------------------------


def unpool_output_size(in_spatial: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                       padding: Sequence[int], output_size: Sequence[int] | None) -> tuple[int, ...]:
    """Spatial size of MaxUnpool's output.

    Default D = (in - 1)·s - 2p + k per dim. An explicit ``output_size`` (spatial dims, or with
    N and C in front) must satisfy D - s < size < D + s per dim, else ``ValueError``.
    """
    nd = len(kernel)
    default = [(int(i) - 1) * int(s) - 2 * int(p) + int(k)
               for i, k, s, p in zip(in_spatial, kernel, stride, padding)]
    if output_size is None:
        sizes = default
    else:
        sizes = [int(v) for v in output_size]
        if len(sizes) == nd + 2:
            sizes = sizes[2:]
        if len(sizes) != nd:
            raise ValueError(f"output_size must have {nd} or {nd + 2} entries, got {len(sizes)}")
        for dim, (size, dflt, s) in enumerate(zip(sizes, default, stride)):
            if not dflt - s < size < dflt + s:
                raise ValueError(f"output_size[{dim}] = {size} outside ({dflt - s}, {dflt + s})")
    if any(v < 0 for v in sizes):
        raise ValueError(f"negative output size {sizes}")
    return tuple(sizes)


def max_unpool(x: np.ndarray, indices: np.ndarray, out_spatial: Sequence[int]) -> np.ndarray:
    """MaxUnpool{1,2,3}d: y = 0 except y[n, c, indices[n, c, o]] = x[n, c, o].

    Several entries naming one position is legal, and which value lands there is not specified;
    this reference writes the last one (in row-major order). Indices must lie in
    ``[0, Π out_spatial)``, else ``ValueError``.
    """
    n, c = x.shape[:2]
    plane = int(np.prod(out_spatial))
    idx = indices.reshape(n * c, -1)
    if idx.size and (idx.min() < 0 or idx.max() >= plane):
        raise ValueError(f"max_unpool: index out of range [0, {plane})")
    out = np.zeros((n * c, plane))
    rows = np.repeat(np.arange(n * c), idx.shape[1])
    out[rows, idx.ravel()] = x.reshape(n * c, -1).ravel()
    return out.reshape(n, c, *out_spatial)


def max_unpool_vjp(indices: np.ndarray, g: np.ndarray) -> np.ndarray:
    """dL/dx[n, c, o] = g[n, c, indices[n, c, o]] (a gather; exact, duplicates included)."""
    n, c = g.shape[:2]
    gf = g.reshape(n * c, -1)
    idx = indices.reshape(n * c, -1)
    return np.take_along_axis(gf, idx, axis=1).reshape(indices.shape)


# ---------------------------------------------------------------------------------------------
# Adaptive pooling
# ---------------------------------------------------------------------------------------------


def adaptive_max_pool(x: np.ndarray, output_size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """AdaptiveMaxPool{1,2}d: max over [floor(i·in/out), ceil((i+1)·in/out)) per dim; (y, indices)."""
    taps = [adaptive_taps(int(s), int(o)) for s, o in zip(x.shape[2:], output_size)]
    return window_max(x, taps)


def adaptive_avg_pool(x: np.ndarray, output_size: Sequence[int]) -> np.ndarray:
    """AdaptiveAvgPool{1,2}d: mean over the adaptive window (Σ then one division by its size)."""
    taps = [adaptive_taps(int(s), int(o)) for s, o in zip(x.shape[2:], output_size)]
    return window_sum(x, taps) / _adaptive_counts(x.shape[2:], output_size)


def adaptive_avg_pool_vjp(x_shape: Sequence[int], g: np.ndarray, output_size: Sequence[int]) -> np.ndarray:
    """dL/dx_j = Σ_{windows o ∋ j} g_o / |window o|."""
    taps = [adaptive_taps(int(s), int(o)) for s, o in zip(x_shape[2:], output_size)]
    return window_sum_vjp(x_shape, taps, g / _adaptive_counts(x_shape[2:], output_size))


def _adaptive_counts(spatial: Sequence[int], output_size: Sequence[int]) -> np.ndarray:
    total = np.ones(())
    for s, o in zip(spatial, output_size):
        start, end = adaptive_bounds(int(s), int(o))
        total = np.multiply.outer(total, (end - start).astype(np.float64))
    return total
