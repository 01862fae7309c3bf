"""Floating-point formats under test: precision, unit roundoff and rounding into the format.

All values travel as float64 NumPy arrays; ``DType.round`` maps them onto the values the
format can represent (round to nearest, ties to even), so the reference can compute in float64
on exactly what the backend received.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backends.base import DTYPE_NAMES


def _round_to_bfloat16(x: np.ndarray) -> np.ndarray:
    """Round float64 values to bfloat16 (via float32 bits, nearest-even), returned as float64."""
    f32 = np.asarray(x, dtype=np.float64).astype(np.float32)
    bits = f32.view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    out = rounded.astype(np.uint32).view(np.float32)
    out = np.where(np.isnan(f32), np.float32(np.nan), out)
    return out.astype(np.float64)


@dataclass(frozen=True)
class DType:
    """A floating-point format: ``precision`` significand bits including the implicit one."""

    name: str
    precision: int
    min_exponent: int  # exponent of the smallest normal number
    max_value: float

    @property
    def unit_roundoff(self) -> float:
        """u = 2^-p: the largest relative error of one correctly rounded operation."""
        return 2.0 ** -self.precision

    @property
    def min_normal(self) -> float:
        return 2.0 ** self.min_exponent

    @property
    def min_subnormal(self) -> float:
        return 2.0 ** (self.min_exponent - self.precision + 1)

    @property
    def exact_integer_limit(self) -> int:
        """Every integer of magnitude <= 2^p is exactly representable."""
        return 2 ** self.precision

    def round(self, x: np.ndarray) -> np.ndarray:
        """Round float64 values onto this format (as float64 arrays)."""
        x = np.asarray(x, dtype=np.float64)
        if self.name == "float64":
            return x.copy()
        if self.name == "bfloat16":
            return _round_to_bfloat16(x)
        with np.errstate(over="ignore"):
            return x.astype(np.dtype(self.name)).astype(np.float64)

    def ulp(self, x: np.ndarray) -> np.ndarray:
        """Spacing of the format at |x| (the subnormal spacing below the normal range)."""
        ax = np.abs(np.asarray(x, dtype=np.float64))
        with np.errstate(divide="ignore"):
            exp = np.floor(np.log2(np.where(ax > 0, ax, 1.0)))
        exp = np.maximum(exp, self.min_exponent)  # at 0 too: the subnormal spacing
        return 2.0 ** (np.where(ax > 0, exp, self.min_exponent) - self.precision + 1)


DTYPES: dict[str, DType] = {
    "float64": DType("float64", 53, -1022, float(np.finfo(np.float64).max)),
    "float32": DType("float32", 24, -126, float(np.finfo(np.float32).max)),
    "float16": DType("float16", 11, -14, 65504.0),
    "bfloat16": DType("bfloat16", 8, -126, 3.3895313892515355e38),
}

# Order matters: float64 first, so that runs and shrinking start from the best-conditioned case.
assert tuple(DTYPES) == DTYPE_NAMES
__all__ = ["DTYPES", "DTYPE_NAMES", "DType", "dtype"]


def dtype(name: str) -> DType:
    """Look a format up by name; raise ``KeyError`` with the known names otherwise."""
    try:
        return DTYPES[name]
    except KeyError:
        raise KeyError(f"unknown dtype {name!r} (known: {', '.join(DTYPE_NAMES)})") from None
