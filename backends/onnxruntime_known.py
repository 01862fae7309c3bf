"""Value predicates of the onnxruntime backend's known entries (``conformance/known/onnxruntime.toml``).

NumPy only (``backends`` imports nothing of ``conformance``): each takes the ``Case``.
"""

from __future__ import annotations

import numpy as np

from backends.base import Case


def input_has_nan(case: Case) -> bool:
    """The input holds a NaN (ONNX Runtime's max pooling may drop it: which windows do depends on the
    kernel path, see the entry)."""
    x = case.inputs.get("input")
    return x is not None and np.asarray(x).dtype.kind == "f" and bool(np.isnan(x).any())
