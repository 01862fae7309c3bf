"""A conformance case: one fully specified call of one layer, as plain data.

A ``Case`` carries everything both sides need: the torch.nn constructor parameters, the named
input arrays (float64 values already representable in the case's dtype, or int64 for indices and
targets), the memory layout each input must be given, forward keyword arguments, train/eval mode
and the output cotangents used for the backward pass. It is JSON-describable (see ``describe``),
so records and repro scripts can rebuild it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

LAYOUT_KINDS = ("contiguous", "channels_last", "permuted", "strided", "expanded")


@dataclass(frozen=True)
class Layout:
    """How an input is laid out in memory; its logical shape and values never change.

    - ``contiguous``: row-major.
    - ``channels_last`` / ``permuted``: dense, with dimensions stored in the order ``perm``
      (outermost first); channels_last is perm (0, 2, 3, 1) or (0, 2, 3, 4, 1).
    - ``strided``: a view taking every ``step[d]``-th element of a larger buffer; the gaps hold NaN
      so a kernel that reads them poisons its result.
    - ``expanded``: dimensions ``dims`` have stride 0 (values are constant along them).
    """

    kind: str = "contiguous"
    perm: tuple[int, ...] = ()
    step: tuple[int, ...] = ()
    dims: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in LAYOUT_KINDS:
            raise ValueError(f"unknown layout kind {self.kind!r}")

    def strides(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Element strides of a tensor of ``shape`` in this layout."""
        ndim = len(shape)
        if self.kind in ("channels_last", "permuted"):
            strides = [0] * ndim
            acc = 1
            for d in reversed(self.perm):
                strides[d] = acc
                acc *= max(shape[d], 1)
            return tuple(strides)
        base_shape = list(shape)
        if self.kind == "strided":
            base_shape = [s * k for s, k in zip(shape, self.step)]
        strides = [0] * ndim
        acc = 1
        for d in reversed(range(ndim)):
            strides[d] = acc
            acc *= max(base_shape[d], 1)
        if self.kind == "strided":
            strides = [s * k for s, k in zip(strides, self.step)]
        if self.kind == "expanded":
            strides = [0 if d in self.dims else s for d, s in enumerate(strides)]
        return tuple(strides)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.perm:
            out["perm"] = list(self.perm)
        if self.step:
            out["step"] = list(self.step)
        if self.dims:
            out["dims"] = list(self.dims)
        return out

    @staticmethod
    def from_description(d: dict[str, Any]) -> Layout:
        return Layout(d["kind"], tuple(d.get("perm", ())), tuple(d.get("step", ())), tuple(d.get("dims", ())))


CONTIGUOUS = Layout()


@dataclass(frozen=True)
class Case:
    """One call of layer ``op`` in ``dtype``.

    ``inputs`` maps each named argument or parameter (``input``, ``weight``, ``bias``,
    ``running_mean``, ``target``...) to its array. ``differentiable`` names the inputs whose
    gradient is compared. ``cotangents`` maps each float output to its output gradient; it is
    filled in by the runner once the output shapes are known (see ``conformance.runner``), from
    ``cotangent_seed``.
    """

    op: str
    dtype: str
    params: dict[str, Any]
    inputs: dict[str, np.ndarray]
    differentiable: tuple[str, ...] = ()
    layouts: dict[str, Layout] = field(default_factory=dict)
    forward_kwargs: dict[str, Any] = field(default_factory=dict)
    train: bool = True
    tier: str = "float"
    cotangent_seed: int = 0
    cotangents: dict[str, np.ndarray] = field(default_factory=dict)
    invalid: bool = False
    note: str = ""

    def layout(self, name: str) -> Layout:
        return self.layouts.get(name, CONTIGUOUS)

    def with_inputs(self, **arrays: np.ndarray) -> Case:
        return replace(self, inputs={**self.inputs, **arrays})

    def describe(self) -> dict[str, Any]:
        """JSON-able summary: parameters, shapes, layouts, strides (no values)."""
        return {
            "op": self.op,
            "dtype": self.dtype,
            "tier": self.tier,
            "train": self.train,
            "invalid": self.invalid,
            "params": jsonable(self.params),
            "forward_kwargs": jsonable(self.forward_kwargs),
            "inputs": {
                name: {
                    "shape": list(arr.shape),
                    "dtype": "int64" if arr.dtype.kind in "iub" else self.dtype,
                    "layout": self.layout(name).describe(),
                    "strides": list(self.layout(name).strides(arr.shape)),
                    "requires_grad": name in self.differentiable,
                }
                for name, arr in self.inputs.items()
            },
            "note": self.note,
        }

    def case_id(self) -> str:
        """Stable short hash of the description and the values."""
        h = hashlib.sha1(json.dumps(self.describe(), sort_keys=True).encode())
        for name in sorted(self.inputs):
            h.update(np.ascontiguousarray(self.inputs[name]).tobytes())
        for name in sorted(self.cotangents):
            h.update(np.ascontiguousarray(self.cotangents[name]).tobytes())
        return h.hexdigest()[:12]


def jsonable(value: Any) -> Any:
    """Plain JSON data: tuples and arrays become lists, NumPy scalars Python numbers, and
    non-finite floats the strings "inf", "-inf", "nan"."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return repr(value)
    return value


@dataclass
class Result:
    """What one side computed: named outputs, gradients of the differentiable inputs, state."""

    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    grads: dict[str, np.ndarray] = field(default_factory=dict)
    state: dict[str, np.ndarray] = field(default_factory=dict)
    # dtype names as the backend produced them (e.g. "float16", "int64"); empty for the reference
    dtypes: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def tensors(self) -> dict[str, np.ndarray]:
        """All compared tensors under qualified names: ``output``, ``grad.input``, ``state.x``."""
        out = {name: arr for name, arr in self.outputs.items()}
        out.update({f"grad.{name}": arr for name, arr in self.grads.items()})
        out.update({f"state.{name}": arr for name, arr in self.state.items()})
        return out
