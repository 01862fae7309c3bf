"""Elementwise activations and the softmax family.

Gradient conventions at kinks follow PyTorch's documented/implemented choice and are stated per
function (e.g. ReLU'(0) = 0).
"""

from __future__ import annotations

import numpy as np


def relu(x: np.ndarray) -> np.ndarray:
    """y = max(x, 0), elementwise; any shape. NaN propagates."""
    return np.where(x > 0, x, np.where(np.isnan(x), x, 0.0))


def relu_vjp(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """dL/dx = g·[x > 0]; the derivative at the kink x = 0 is taken as 0."""
    return np.where(x > 0, g, 0.0)
