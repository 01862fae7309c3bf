"""Padding: ``torch.nn.functional.pad`` and the padding modes of convolutions.

Every mode is a gather along each padded axis: output position j of an axis padded by (left,
right) copies input position ``source(j - left)`` (``pad_source_index``), or holds the constant
``value`` where the constant mode reaches outside the input. A negative pad crops. The VJP is the
adjoint gather, a scatter-add of each output position's gradient onto its source.

The index of an axis of length L padded by (l, r), for output positions j = 0 .. L + l + r - 1
and t = j - l (the position in the input's coordinates):

- constant: t if 0 <= t < L, else the value;
- reflect: the reflection about the edge elements, t -> -t below 0, 2(L - 1) - t from L on;
- replicate: the edge element, clip(t, 0, L - 1);
- circular: the periodic extension of the input, t mod L.

A crop therefore only removes output positions; it never changes what the remaining positions
read ("pad, then crop"). torch's circular kernel reads it the other way round where one side
crops and the other pads: it crops first and wraps around what remains
(``pad_circular_remainder``, an alternative reading the documentation leaves open: "values at
the end are used to pad the beginning. If negative padding is applied then the ends of the
tensor get removed").

The domain follows torch's rules (``pad`` raises ValueError outside it): constant mode crops
before it pads, so the two crops of an axis together remove at most L elements; reflect needs
every pad below L, replicate and reflect an output of at least one element and non-empty
non-batch dims; circular pads at most L elements on a side (one wrap around).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from reference.registry import functional

MODES = ("constant", "reflect", "replicate", "circular")
# Convolutions name the constant-0 mode "zeros".
CONV_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate", "circular": "circular"}
IndexFn = Callable[[int, int, int, str], np.ndarray]


def pad_source_index(length: int, left: int, right: int, mode: str) -> np.ndarray:
    """For each position of the padded axis (length left + L + right), the input index it copies
    (for ``constant``, alias ``zeros``: -1 where the position lies outside the input). Negative pads
    crop.

    reflect: mirror about the edge elements (needs left, right < L); replicate: clamp to the edge
    (needs L >= 1 where it pads); circular: wrap around (needs left, right <= L).
    """
    mode = CONV_MODES.get(mode, mode)
    j = np.arange(-left, length + right)
    if mode == "constant":
        return np.where((j >= 0) & (j < length), j, -1)
    if mode == "reflect":
        if left >= length or right >= length:
            raise ValueError(f"reflect padding ({left}, {right}) must be smaller than the input size {length}")
        return np.where(j < 0, -j, np.where(j >= length, 2 * (length - 1) - j, j))
    if mode == "replicate":
        if length == 0 and (left > 0 or right > 0):
            raise ValueError("replicate padding of an empty dimension")
        return np.clip(j, 0, length - 1)
    if mode == "circular":
        if left > length or right > length:
            raise ValueError(f"circular padding ({left}, {right}) wraps around more than once (input size {length})")
        return np.mod(j, length) if length else j
    raise ValueError(f"padding mode must be one of {MODES}, got {mode!r}")


def circular_remainder_index(length: int, left: int, right: int, mode: str = "circular") -> np.ndarray:
    """torch's reading of circular padding with a crop: crop first (``max(-left, 0)`` elements at
    the start, ``max(-right, 0)`` at the end), then wrap around the R elements that remain, so the
    start is padded with the remainder's last ``left`` elements and the end with its first
    ``right``. Equal to ``pad_source_index`` unless one side crops while the other pads. Defined
    when every positive pad is at most R (ValueError otherwise)."""
    start, stop = max(-left, 0), length - max(-right, 0)
    remainder = stop - start
    before, after = max(left, 0), max(right, 0)
    if remainder < 0 or before > remainder or after > remainder:
        raise ValueError(f"circular padding ({left}, {right}) of a dim of {length} wraps around a remainder of "
                         f"{remainder} more than once")
    k = np.arange(before + remainder + after) - before
    return start + (np.mod(k, remainder) if remainder else k)


def _pairs(pad: Sequence[int], ndim: int) -> list[tuple[int, int]]:
    """torch's flat pad tuple (last dim first: left, right, then the dim before...) as (left, right)
    per padded axis, first padded axis first."""
    if len(pad) % 2 or len(pad) // 2 > ndim:
        raise ValueError(f"pad {tuple(pad)} must have an even length of at most 2·{ndim}")
    pairs = [(int(pad[2 * i]), int(pad[2 * i + 1])) for i in range(len(pad) // 2)]
    return pairs[::-1]


def _constant_windows(shape: Sequence[int], pairs: Sequence[tuple[int, int]]
                      ) -> tuple[tuple[int, ...], tuple[slice, ...], tuple[slice, ...]]:
    """Constant padding as one block copy: (the padded shape, the input's slice that survives the
    crops, where it lands in the output)."""
    lead = len(shape) - len(pairs)
    out_shape, src, dst = list(shape[:lead]), [slice(None)] * lead, [slice(None)] * lead
    for size, (left, right) in zip(shape[lead:], pairs):
        start, stop = max(-left, 0), size - max(-right, 0)
        out_shape.append(size + left + right)
        src.append(slice(start, stop))
        dst.append(slice(max(left, 0), max(left, 0) + stop - start))
    return tuple(out_shape), tuple(src), tuple(dst)


def _padded(x: np.ndarray, pairs: Sequence[tuple[int, int]], mode: str, value: float,
            index_of: IndexFn = pad_source_index) -> np.ndarray:
    lead = x.ndim - len(pairs)
    if mode == "constant" and index_of is pad_source_index:
        out_shape, src, dst = _constant_windows(x.shape, pairs)
        out = np.full(out_shape, value, dtype=np.float64)
        out[dst] = x[src]
        return out
    for i, (left, right) in enumerate(pairs):
        if not (left or right):
            continue
        axis = lead + i
        index = index_of(x.shape[axis], left, right, mode)
        if index.size and x.shape[axis] == 0:  # constant padding of an empty axis: all value
            shape = list(x.shape)
            shape[axis] = index.size
            x = np.full(shape, value, dtype=np.float64)
            continue
        taken = np.take(x, np.maximum(index, 0), axis=axis)
        if mode == "constant":
            inside = (index >= 0).reshape((-1,) + (1,) * (x.ndim - axis - 1))
            taken = np.where(inside, taken, value)
        x = taken
    return x


def _scattered(grad_padded: np.ndarray, shape: Sequence[int], pads: Sequence[tuple[int, int]], mode: str,
               index_of: IndexFn = pad_source_index) -> np.ndarray:
    lead = len(shape) - len(pads)
    g = np.asarray(grad_padded, dtype=np.float64)
    if mode == "constant" and index_of is pad_source_index:  # every element copied once: a block copy
        _, src, dst = _constant_windows(shape, pads)
        grad = np.zeros(tuple(shape), dtype=np.float64)
        grad[src] = g[dst]
        return grad
    for i in reversed(range(len(pads))):
        left, right = pads[i]
        if not (left or right):
            continue
        axis = lead + i
        length = shape[axis]
        index = index_of(length, left, right, mode)
        moved = np.moveaxis(g, axis, 0)
        folded = np.zeros((length,) + moved.shape[1:], dtype=np.float64)
        keep = index >= 0
        np.add.at(folded, index[keep], moved[keep])
        g = np.moveaxis(folded, 0, axis)
    return g


def pad_input(x: np.ndarray, pads: Sequence[tuple[int, int]], mode: str) -> np.ndarray:
    """Pad the trailing ``len(pads)`` dims of ``x`` by (left, right) each, first padded dim first,
    with a convolution's ``padding_mode`` (zeros, reflect, replicate, circular)."""
    return _padded(np.asarray(x, dtype=np.float64), pads, CONV_MODES.get(mode, mode), 0.0)


def pad_input_vjp(grad_padded: np.ndarray, shape: Sequence[int], pads: Sequence[tuple[int, int]],
                  mode: str) -> np.ndarray:
    """Adjoint of ``pad_input``: sum each padded position's gradient onto its source element."""
    return _scattered(grad_padded, shape, pads, CONV_MODES.get(mode, mode))


def check_pad(shape: Sequence[int], pad: Sequence[int], mode: str, value: float | None = None) -> None:
    """torch's rules for ``F.pad(input of shape, pad, mode, value)``; ValueError where it raises.

    Every mode: an even number of amounts, at most two per dim. constant: each axis' two crops
    together remove at most its length (torch narrows before padding). Other modes: no ``value``;
    a (C, *) or (N, C, *) input (one or two more dims than padded); reflect and replicate: every
    dim but the batch dim non-empty and every padded dim at least one element long after padding,
    reflect: every amount below the dim's length; circular: every pad at most the dim's length
    (one wrap around) and no padded dim of negative length.
    """
    if mode not in MODES:
        raise ValueError(f"padding mode must be one of {MODES}, got {mode!r}")
    if len(pad) % 2:
        raise ValueError(f"padding length must be divisible by 2, got {len(pad)}")
    ndim, dims = len(shape), len(pad) // 2
    if dims > ndim:
        raise ValueError(f"padding length {len(pad)} too large for a {ndim}-d input")
    pairs = _pairs(pad, ndim)
    sizes = list(shape[ndim - dims:])
    if mode == "constant":
        for size, (left, right) in zip(sizes, pairs):
            if max(-left, 0) + max(-right, 0) > size:
                raise ValueError(f"cropping ({left}, {right}) removes more than the dim's {size} elements")
        return
    if value is not None:
        raise ValueError(f"padding mode {mode!r} doesn't take a value")
    if ndim not in (dims + 1, dims + 2):
        raise ValueError(f"{mode} padding of {dims} dims needs a {dims + 1}-d or {dims + 2}-d input, got {ndim}-d")
    if mode in ("reflect", "replicate") and min(shape[ndim - dims - 1:] if ndim == dims + 2 else shape) == 0:
        raise ValueError(f"{mode} padding needs non-empty dims (but the batch dim), got {tuple(shape)}")
    for size, (left, right) in zip(sizes, pairs):
        out = size + left + right
        if mode in ("reflect", "replicate"):
            if out < 1:
                raise ValueError(f"input size {size} too small: padded size {out}")
            if mode == "reflect" and (left >= size or right >= size):
                raise ValueError(f"reflect padding ({left}, {right}) must be smaller than the input size {size}")
        elif max(left, right) > size or out < 0:
            raise ValueError(f"circular padding ({left}, {right}) wraps around more than once (input size {size})")


def _pad_vjp(cotangent: np.ndarray, input: np.ndarray, pad: Sequence[int], mode: str = "constant",
             value: float | None = None) -> dict[str, np.ndarray]:
    """dL/dinput: each output position's cotangent summed onto the input element it copies."""
    return {"input": pad_input_vjp(cotangent, np.shape(input), _pairs(pad, np.ndim(input)), mode)}


def _pad_example(rng: np.random.Generator) -> tuple[tuple, dict]:
    return (rng.standard_normal((2, 3, 4)), (2, 1, -1, 2)), {"mode": "reflect"}


@functional(vjp=_pad_vjp, example=_pad_example)
def pad(input: np.ndarray, pad: Sequence[int], mode: str = "constant", value: float | None = None) -> np.ndarray:
    """Pad (or, with negative amounts, crop) the trailing ``len(pad) // 2`` dims of ``input``.

    ``pad`` lists (left, right) amounts starting from the last dim, as torch does:
    (left_last, right_last, left_second_to_last, ...). Modes (module docstring): constant
    (``value``, default 0, written as given: -0.0, ±inf and NaN included), reflect (mirror about
    the edge element), replicate (repeat the edge element), circular (the input's periodic
    extension). A crop removes output positions of the padded extension ("pad, then crop").
    Shape: each padded dim grows by left + right; any leading dims for constant, (C, *) or
    (N, C, *) for the others. Torch's rules (``check_pad``) raise ValueError.
    """
    x = np.asarray(input, dtype=np.float64)
    check_pad(x.shape, pad, mode, value)
    return _padded(x, _pairs(pad, x.ndim), mode, 0.0 if value is None else float(value))


def pad_circular_remainder(input: np.ndarray, pad: Sequence[int]) -> np.ndarray:
    """Circular padding read as torch's kernel does (``circular_remainder_index``): crop first,
    then wrap around what remains. The alternative reading of ``pad(input, pad, "circular")``;
    ValueError where a pad exceeds the remainder."""
    x = np.asarray(input, dtype=np.float64)
    check_pad(x.shape, pad, "circular")
    return _padded(x, _pairs(pad, x.ndim), "circular", 0.0, circular_remainder_index)


def pad_circular_remainder_vjp(cotangent: np.ndarray, input: np.ndarray, pad: Sequence[int]) -> dict[str, np.ndarray]:
    """The VJP of ``pad_circular_remainder``: the scatter-add of its gather."""
    shape = np.shape(input)
    return {"input": _scattered(cotangent, shape, _pairs(pad, len(shape)), "circular", circular_remainder_index)}
