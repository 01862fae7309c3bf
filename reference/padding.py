"""Padding: ``torch.nn.functional.pad`` and the padding modes of convolutions.

Every mode is a gather along each padded axis: output position j of an axis padded by (left,
right) copies input position ``source(j - left)`` (``pad_source_index``), or holds the constant
``value`` where the constant mode reaches outside the input. A negative pad crops. The VJP is the
adjoint gather, a scatter-add of each output position's gradient onto its source.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from reference.registry import functional

MODES = ("constant", "reflect", "replicate", "circular")
# Convolutions name the constant-0 mode "zeros".
CONV_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate", "circular": "circular"}


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
        return np.mod(j, length)
    raise ValueError(f"padding mode must be one of {MODES}, got {mode!r}")


def _pairs(pad: Sequence[int], ndim: int) -> list[tuple[int, int]]:
    """torch's flat pad tuple (last dim first: left, right, then the dim before...) as (left, right)
    per padded axis, first padded axis first."""
    if len(pad) % 2 or len(pad) // 2 > ndim:
        raise ValueError(f"pad {tuple(pad)} must have an even length of at most 2·{ndim}")
    pairs = [(int(pad[2 * i]), int(pad[2 * i + 1])) for i in range(len(pad) // 2)]
    return pairs[::-1]


def _padded(x: np.ndarray, pairs: Sequence[tuple[int, int]], mode: str, value: float) -> np.ndarray:
    lead = x.ndim - len(pairs)
    for i, (left, right) in enumerate(pairs):
        if not (left or right):
            continue
        axis = lead + i
        index = pad_source_index(x.shape[axis], left, right, mode)
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


def pad_input(x: np.ndarray, pads: Sequence[tuple[int, int]], mode: str) -> np.ndarray:
    """Pad the trailing ``len(pads)`` dims of ``x`` by (left, right) each, first padded dim first,
    with a convolution's ``padding_mode`` (zeros, reflect, replicate, circular)."""
    return _padded(np.asarray(x, dtype=np.float64), pads, CONV_MODES.get(mode, mode), 0.0)


def pad_input_vjp(grad_padded: np.ndarray, shape: Sequence[int], pads: Sequence[tuple[int, int]],
                  mode: str) -> np.ndarray:
    """Adjoint of ``pad_input``: sum each padded position's gradient onto its source element."""
    mode = CONV_MODES.get(mode, mode)
    lead = len(shape) - len(pads)
    g = np.asarray(grad_padded, dtype=np.float64)
    for i in reversed(range(len(pads))):
        left, right = pads[i]
        if not (left or right):
            continue
        axis = lead + i
        length = shape[axis]
        index = pad_source_index(length, left, right, mode)
        moved = np.moveaxis(g, axis, 0)
        folded = np.zeros((length,) + moved.shape[1:], dtype=np.float64)
        keep = index >= 0
        np.add.at(folded, index[keep], moved[keep])
        g = np.moveaxis(folded, 0, axis)
    return g


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
    (left_last, right_last, left_second_to_last, ...). Modes: constant (``value``, default 0),
    reflect (mirror about the edge element, pad < size), replicate (repeat the edge element),
    circular (wrap around, pad <= size). Shape: each padded dim grows by left + right.
    """
    if mode not in MODES:
        raise ValueError(f"padding mode must be one of {MODES}, got {mode!r}")
    x = np.asarray(input, dtype=np.float64)
    return _padded(x, _pairs(pad, x.ndim), mode, 0.0 if value is None else float(value))
