"""Window reductions of the pooling references: the max (with its arg-max) and the sum over every
window of a pooling, and the sum's VJP.

Windows are described by *taps* (``Taps``, one per spatial dim; see ``reference.pooling``): tap j
of window o of dim d reads input position ``index[p, o, j]`` when ``valid[p, o, j]``, and a window
is the outer product of its per-dim taps, its taps in row-major order.

The *plain form* (``window_positions``, ``_window_max_generic``, ``_window_sum_generic``,
``_window_sum_vjp_generic``) defines the numbers: gather every tap of every window into
``(N·C, *out, *L)`` (padding: -inf for the max, 0 for the sum), reduce with numpy's ``max``,
first arg-max and ``sum`` over the taps, and ``bincount`` the VJP back (a position receives
0.0 + g[w_0] + g[w_1] + … over the windows reading it, in row-major window order). It builds
planes × windows × taps index arrays, which makes it slow.

The forms used compute the same numbers bit for bit, one tap of all windows at a time:

- sliding windows (``_Grid``: tap j reads first + o·stride + j·dilation in every dim, padding
  outside the input) read each tap as one strided view of the input: over the windows where the
  tap is inside (max, VJP), or of a zero-padded copy (sum);
- other windows (adaptive, fractional) gather the taps with one ``take`` of positions shared by
  all planes, or of flat positions when each plane has its own windows, tap-major (``_Slabs``).

The max is a running ``maximum`` (NaN-propagating) and, last tap first, branch-free integer
updates of the number of a tap equal to it, so the first one stays; the sum adds the taps in the
order of numpy's pairwise summation (``_pairwise_sum``); the VJP adds, per position, the windows
in the plain form's order. ``tests/reference/test_pooling_windows_reference.py`` compares every
form with the plain one, bit for bit (NaN payloads aside).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


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


def _plane_strides(spatial: Sequence[int]) -> list[int]:
    strides, acc = [], 1
    for s in reversed(spatial):
        strides.append(acc)
        acc *= int(s)
    return strides[::-1]


# ---------------------------------------------------------------------------------------------
# The plain form
# ---------------------------------------------------------------------------------------------


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


def _window_max_generic(x: np.ndarray, taps: Sequence[Taps]) -> tuple[np.ndarray, np.ndarray]:
    """``window_max`` in the plain form."""
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


def _window_sum_generic(x: np.ndarray, taps: Sequence[Taps]) -> np.ndarray:
    """``window_sum`` in the plain form."""
    n, c = x.shape[:2]
    nd = len(taps)
    flat, valid = window_positions(x.shape[2:], taps)
    vals = np.where(valid, _gather(x, flat), 0.0)
    out = vals.sum(axis=tuple(range(1 + nd, 1 + 2 * nd)))
    return out.reshape(n, c, *out.shape[1:])


def _window_sum_vjp_generic(x_shape: Sequence[int], taps: Sequence[Taps], g: np.ndarray) -> np.ndarray:
    """``window_sum_vjp`` in the plain form."""
    n, c = x_shape[:2]
    nd = len(taps)
    flat, valid = window_positions(x_shape[2:], taps)
    gw = g.reshape(n * c, *g.shape[2:], *([1] * nd))
    weights = np.where(valid, gw, 0.0)
    plane = int(np.prod(x_shape[2:]))
    return _scatter(plane, n * c, flat, weights).reshape(tuple(x_shape))


# ---------------------------------------------------------------------------------------------
# One tap of all windows at a time
# ---------------------------------------------------------------------------------------------


def _arithmetic(t: Taps, size: int) -> tuple[int, int, int] | None:
    """``(first, stride, dilation)`` when tap j of window o reads first + o·stride + j·dilation in
    every plane and a tap is valid exactly when inside ``[0, size)``; else None."""
    if t.index.shape[0] != 1 or t.index.shape[1] == 0 or t.index.shape[2] == 0:
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


# A tap of all windows: (its number in row-major tap order, the windows it covers as an index into
# (N·C, *out), its values there, its validity there or None when valid wherever it covers).
Slab = tuple[int, tuple[slice, ...], np.ndarray, "np.ndarray | None"]


@dataclass(frozen=True)
class _Grid:
    """Sliding windows: along dim d, tap t of window o reads first_d + o·stride_d + t·dilation_d
    (padding outside ``[0, spatial_d)``), so one tap of all windows is one strided view."""

    spatial: tuple[int, ...]
    dims: tuple[tuple[int, int, int], ...]  # (first, stride, dilation) per dim
    outs: tuple[int, ...]
    lengths: tuple[int, ...]

    def padding(self) -> list[tuple[int, int]]:
        """(before, after) padding that puts every tap of every window inside the input."""
        return [(max(0, -f), max(0, f + (o - 1) * s + (n - 1) * d + 1 - size))
                for size, (f, s, d), o, n in zip(self.spatial, self.dims, self.outs, self.lengths)]

    def slabs(self, data: np.ndarray, padded: bool) -> list[Slab]:
        """Every tap as a strided view of ``data`` (the input as ``(N·C, *spatial)``, or padded by
        ``padding()`` when ``padded``): over all windows when padded, else over the windows where
        the tap is inside the input (a tap inside none is left out)."""
        cuts = []
        for size, (f, s, d), o, n, (lo, _) in zip(self.spatial, self.dims, self.outs, self.lengths, self.padding()):
            per_tap = []
            for j in range(n):
                start = f + j * d
                a = 0 if padded else max(0, -(start // s))  # the first window whose tap j is >= 0
                b = o if padded else min(o, (size - 1 - start) // s + 1)
                begin = start + (lo if padded else 0) + a * s
                per_tap.append((slice(a, b), slice(begin, begin + (b - a - 1) * s + 1, s)) if a < b else None)
            cuts.append(per_tap)
        slabs = []
        for number, t in enumerate(np.ndindex(*self.lengths)):
            cut = [c[j] for c, j in zip(cuts, t)]
            if all(k is not None for k in cut):
                slabs.append((number, (slice(None),) + tuple(k[0] for k in cut),
                              data[(slice(None),) + tuple(k[1] for k in cut)], None))
        return slabs

    def positions(self, number: np.ndarray) -> np.ndarray:
        """Flat in-plane position of tap ``number`` of every window (``number``: (N·C, *out))."""
        strides = _plane_strides(self.spatial)
        offsets = np.zeros((), dtype=np.int64)
        for (_, _, d), n, st in zip(self.dims, self.lengths, strides):
            offsets = np.add.outer(offsets, np.arange(n) * (d * st))
        idx = np.take(offsets.ravel(), number)
        for k, ((f, s, _), o, st) in enumerate(zip(self.dims, self.outs, strides)):
            shape = [1] * (1 + len(self.outs))
            shape[1 + k] = o
            idx += ((f + np.arange(o) * s) * st).reshape(shape)
        return idx

    def empty(self, taps: Sequence[Taps]) -> np.ndarray:
        """Windows with no tap inside the input, broadcasting against ``(N·C, *out)``."""
        empty = np.zeros((), dtype=bool)
        for k, t in enumerate(taps):
            shape = [1] * (1 + len(self.outs))
            shape[1 + k] = t.out
            empty = empty | ~t.valid[0].any(axis=-1).reshape(shape)
        return empty


def _grid(x_shape: Sequence[int], taps: Sequence[Taps]) -> _Grid | None:
    """The sliding-window form of ``taps`` when every dim has one (and the input is not empty)."""
    spatial = tuple(int(s) for s in x_shape[2:])
    dims = [_arithmetic(t, size) for size, t in zip(spatial, taps)]
    if int(x_shape[0]) * int(x_shape[1]) == 0 or any(d is None for d in dims):
        return None
    return _Grid(spatial, tuple(dims), tuple(t.out for t in taps), tuple(t.index.shape[2] for t in taps))


def _shared_rows(x: np.ndarray, taps: Sequence[Taps], fill: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    """The plain form's window rows ``(N·C, M, K)`` (``fill`` for padding taps) when all planes
    share the windows, from one ``take`` of the shared positions; with those positions ``(M, K)``
    and their validity (None when all valid). None when the windows are per plane or empty."""
    planes = int(x.shape[0]) * int(x.shape[1])
    if planes == 0 or any(t.index.shape[0] != 1 or 0 in t.index.shape for t in taps):
        return None
    flat, valid = window_positions(x.shape[2:], taps)
    length = int(np.prod([t.index.shape[2] for t in taps]))
    flat, valid = flat.reshape(-1, length), valid.reshape(-1, length)
    source = x.reshape(planes, -1)
    if valid.all():
        valid = None
    else:  # padding taps read a fill column after the input
        source = np.concatenate([source, np.full((planes, 1), fill)], axis=1)
        flat = np.where(valid, flat, source.shape[1] - 1)
    rows = np.take(source, flat.reshape(-1), axis=1).reshape(planes, *flat.shape)
    return rows, np.where(valid, flat, 0) if valid is not None else flat, valid


@dataclass(frozen=True)
class _Slabs:
    """Windows of their own in every plane, gathered tap-major: ``positions`` (K, N·C, M) in-plane
    positions of the K taps of the M windows (0 for a padding tap), ``valid`` likewise or None."""

    positions: np.ndarray
    valid: np.ndarray | None
    outs: tuple[int, ...]

    @staticmethod
    def of(x_shape: Sequence[int], taps: Sequence[Taps]) -> _Slabs | None:
        """The tap-major positions of per-plane ``taps``; None for shared or empty windows."""
        planes, nd = int(x_shape[0]) * int(x_shape[1]), len(taps)
        if (planes == 0 or any(0 in t.index.shape[1:] or t.index.shape[0] not in (1, planes) for t in taps)
                or all(t.index.shape[0] == 1 for t in taps)):
            return None
        outs, lengths = tuple(t.out for t in taps), [t.index.shape[2] for t in taps]
        pos, valid = np.zeros((), dtype=np.int64), np.ones((), dtype=bool)
        for d, (t, st) in enumerate(zip(taps, _plane_strides(x_shape[2:]))):
            shape = [1] * nd + [t.index.shape[0]] + [1] * nd  # (*L, P, *out): windows innermost
            shape[d], shape[nd + 1 + d] = t.index.shape[2], t.out
            pos = pos + (np.where(t.valid, t.index, 0) * st).transpose(2, 0, 1).reshape(shape)
            if not t.valid.all():
                valid = valid & t.valid.transpose(2, 0, 1).reshape(shape)
        size = (int(np.prod(lengths)), planes, int(np.prod(outs)))
        pos = np.broadcast_to(pos, (*lengths, planes, *outs)).reshape(size)
        if valid.all():
            return _Slabs(pos, None, outs)
        return _Slabs(pos, np.broadcast_to(valid, (*lengths, planes, *outs)).reshape(size), outs)

    def slabs(self, x: np.ndarray, fill: float) -> list[Slab]:
        """Every tap's values over all windows (``fill`` for padding taps), from one ``take``."""
        planes = int(x.shape[0]) * int(x.shape[1])
        plane = int(np.prod(x.shape[2:]))
        values = np.take(x.reshape(-1), self.positions + (np.arange(planes) * plane)[:, None])
        if self.valid is not None:
            values[~self.valid] = fill
        full = (slice(None),) * (1 + len(self.outs))
        return [(t, full, values[t].reshape(planes, *self.outs),
                 None if self.valid is None else self.valid[t].reshape(planes, *self.outs))
                for t in range(values.shape[0])]

    def tap_positions(self, number: np.ndarray) -> np.ndarray:
        """Flat in-plane position of tap ``number`` of every window (``number``: (N·C, *out))."""
        _, planes, windows = self.positions.shape
        at = number.reshape(planes, windows).astype(np.int64) * (planes * windows)
        at += np.arange(planes * windows).reshape(planes, windows)
        return np.take(self.positions.reshape(-1), at).reshape(number.shape)


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


def _max_of_slabs(shape: tuple[int, ...], slabs: Sequence[Slab], taps: int) -> tuple[np.ndarray, np.ndarray]:
    """``(best, number)`` over ``shape`` = (N·C, *out): the max of every window (padding taps hold
    -inf; NaN if the window holds one) and the number of its first tap equal to it (its first NaN)."""
    full = [k for k, (_, out, v, ok) in enumerate(slabs) if ok is None and v.shape == shape]
    best = slabs[full[0]][2].copy() if full else np.full(shape, -np.inf)
    for k, (_, out, v, _) in enumerate(slabs):
        if not full or k != full[0]:
            np.maximum(best[out], v, out=best[out])
    number = np.zeros(shape, dtype=np.min_scalar_type(-taps))
    eq, step = np.empty(shape, dtype=bool), np.empty_like(number)
    for t, out, v, ok in reversed(slabs):  # number -= (number - t)·[v == best]: the first tap stays
        np.equal(v, best[out], out=eq[out])
        if ok is not None:
            eq[out] &= ok
        np.subtract(number[out], t, out=step[out])
        np.multiply(step[out], eq[out], out=step[out])
        number[out] -= step[out]
    if np.isnan(best.min()):
        nan = np.isnan(best)
        for t, out, v, _ in reversed(slabs):
            np.copyto(number[out], t, where=nan[out] & np.isnan(v))
        best[nan] = np.nan
    return best, number


def _window_rows(x: np.ndarray, taps: Sequence[Taps], where: np.ndarray) -> np.ndarray:
    """The plain form's window rows (padding -inf) of the windows where ``where`` (N·C, *out) holds."""
    flat, valid = window_positions(x.shape[2:], taps)
    length = int(np.prod(flat.shape[1 + len(taps):]))
    flat, valid = flat.reshape(flat.shape[0], -1, length), valid.reshape(flat.shape[0], -1, length)
    plane, window = np.nonzero(where.reshape(where.shape[0], -1))
    sel = plane if flat.shape[0] > 1 else np.zeros_like(plane)
    rows = x.reshape(where.shape[0], -1)[plane[:, None], flat[sel, window]]
    rows[~valid[sel, window]] = -np.inf
    return rows


# ---------------------------------------------------------------------------------------------
# The reductions
# ---------------------------------------------------------------------------------------------


def window_max(x: np.ndarray, taps: Sequence[Taps]) -> tuple[np.ndarray, np.ndarray]:
    """Max over each window and its in-plane index.

    Padding never wins. A window holding a NaN yields NaN (index: its first NaN). Otherwise the
    index is the first tap in window order (row-major over the kernel) holding the maximum. A
    window with no tap inside the input yields -inf and index -1 (no input element). The sign of
    a zero maximum is that of numpy's max over the window row (as in the plain form).
    Returns ``(out, indices)`` shaped ``(N, C, *out)``.

    Sliding and per-plane windows: tap by tap (``_max_of_slabs``). Other shared windows: numpy's
    ``max`` and ``argmax`` over the gathered window rows (``_shared_rows``).
    """
    n, c = x.shape[:2]
    outs = tuple(t.out for t in taps)
    shape = (n * c, *outs)
    grid = _grid(x.shape, taps)
    if grid is None:
        rows = _shared_rows(x, taps, -np.inf)
        if rows is not None:
            best, idx = _max_of_rows(*rows)
            return best.reshape(n, c, *outs), idx.reshape(n, c, *outs)
        per_plane = _Slabs.of(x.shape, taps)
        if per_plane is None:
            return _window_max_generic(x, taps)
        best, number = _max_of_slabs(shape, per_plane.slabs(x, -np.inf), per_plane.positions.shape[0])
        idx = per_plane.tap_positions(number)
        empty = np.zeros((), dtype=bool) if per_plane.valid is None else ~per_plane.valid.any(axis=0).reshape(shape)
    else:
        slabs = grid.slabs(x.reshape(n * c, *grid.spatial), padded=False)
        best, number = _max_of_slabs(shape, slabs, int(np.prod(grid.lengths)))
        idx, empty = grid.positions(number), grid.empty(taps)
    if empty.any():
        np.copyto(idx, -1, where=np.broadcast_to(empty, shape))
    if not best.all():  # a zero max: its sign as numpy's max of the window row gives it
        zero = best == 0
        best[zero] = _window_rows(x, taps, zero).max(axis=-1)
    return best.reshape(n, c, *outs), idx.reshape(n, c, *outs)


def _max_of_rows(rows: np.ndarray, positions: np.ndarray, valid: np.ndarray | None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``window_max`` from shared window rows (see ``_shared_rows``): numpy's max of each row, its
    first arg-max (a first NaN wins), except that a -inf max points at the first valid tap."""
    windows, length = positions.shape
    best = rows.max(axis=-1)
    first = rows.argmax(axis=-1)
    if np.isnan(best.min()):
        best[np.isnan(best)] = np.nan
    if valid is not None and (best == -np.inf).any():
        none = ~valid.any(axis=-1)
        np.copyto(first, valid.argmax(axis=-1), where=best == -np.inf)
        idx = np.take(positions.reshape(-1), first + np.arange(0, windows * length, length))
        np.copyto(idx, -1, where=(best == -np.inf) & none)
    else:
        idx = np.take(positions.reshape(-1), first + np.arange(0, windows * length, length))
    return best, idx


def window_sum(x: np.ndarray, taps: Sequence[Taps]) -> np.ndarray:
    """Σ of the input values of each window (padding taps contribute 0); ``(N, C, *out)``.

    As numpy's ``sum`` over the taps of each window (the plain form) gives it, bit for bit.
    Sliding windows: tap by tap over strided views of the zero-padded input, in that sum's
    pairwise order (``_pairwise_sum``) after an initial 0.0. Other shared windows: numpy's ``sum``
    of the gathered window rows (``_shared_rows``).
    """
    n, c = x.shape[:2]
    grid = _grid(x.shape, taps)
    if grid is not None:
        data = x.reshape(n * c, *grid.spatial)
        pad = grid.padding()
        if any(a or b for a, b in pad):
            padded = np.zeros((n * c, *[s + a + b for s, (a, b) in zip(grid.spatial, pad)]))
            padded[(slice(None),) + tuple(slice(a, a + s) for s, (a, _) in zip(grid.spatial, pad))] = data
            data = padded
        slabs, outs = grid.slabs(data, padded=True), grid.outs
    else:
        rows = _shared_rows(x, taps, 0.0)
        if rows is None:
            return _window_sum_generic(x, taps)
        return rows[0].sum(axis=-1).reshape(n, c, *(t.out for t in taps))  # the plain form's own sum
    total = _pairwise_sum([v for _, _, v, _ in slabs])
    total += 0.0  # numpy's sum starts from +0.0: a sum of -0.0 values is +0.0
    return total.reshape(n, c, *outs)


def window_sum_vjp(x_shape: Sequence[int], taps: Sequence[Taps], g: np.ndarray) -> np.ndarray:
    """Transpose of ``window_sum``: every input position receives Σ of g over the windows reading it,
    added as the plain form's ``bincount`` adds them: 0.0 + g[w_0] + g[w_1] + … in window order.

    Sliding windows: tap by tap, last tap first, into strided views of the gradient, each tap over
    the windows where it is inside (one tap of all windows reads distinct positions, and the
    reverse tap order is the window order of each position). Other shared windows: a gather of
    g at the first window reading each position, then the second ones where they exist, and so on.
    """
    planes = int(x_shape[0]) * int(x_shape[1])
    grid = _grid(x_shape, taps)
    if grid is not None:
        gp = g.reshape(planes, *grid.outs)
        grad = np.zeros((planes, *grid.spatial))
        for _, out, view, _ in reversed(grid.slabs(grad, padded=False)):
            view += gp[out]
        return grad.reshape(tuple(x_shape))
    if planes == 0 or any(t.index.shape[0] != 1 or 0 in t.index.shape for t in taps):
        return _window_sum_vjp_generic(x_shape, taps, g)
    plane = int(np.prod(x_shape[2:]))
    flat, valid = window_positions(x_shape[2:], taps)
    windows = int(np.prod([t.out for t in taps]))
    at = flat.reshape(-1)  # window-major, taps in order within a window
    win = np.repeat(np.arange(windows), at.size // windows)
    keep = valid.reshape(-1)
    at, win = at[keep], win[keep]
    order = np.argsort(at, kind="stable")  # by position; windows stay ascending within one
    at, win = at[order], win[order]
    count = np.bincount(at, minlength=plane)
    rank = np.arange(at.size) - np.repeat(np.cumsum(count) - count, count)
    gz = np.zeros((planes, windows + 1))  # a zero slot for positions no window reads
    gz[:, :windows] = g.reshape(planes, windows)
    gz += 0.0  # the plain form's sums start from +0.0 (so a -0.0 alone gives +0.0)
    first = np.full(plane, windows)
    first[at[rank == 0]] = win[rank == 0]
    grad = np.take(gz, first, axis=1)
    for u in range(1, int(count.max(initial=0))):
        grad[:, at[rank == u]] += gz[:, win[rank == u]]
    return grad.reshape(tuple(x_shape))


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


def max_overlap(spatial: Sequence[int], taps: Sequence[Taps]) -> int:
    """The largest number of windows reading one input position (the reduction length of the
    input gradient); at least 1."""
    flat, valid = window_positions(spatial, taps)
    plane = int(np.prod(spatial))
    counts = _scatter(plane, flat.shape[0], flat, valid.astype(np.float64))
    return max(1, int(counts.max(initial=0)))
