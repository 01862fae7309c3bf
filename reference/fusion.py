"""``torch.nn.utils.fusion``: folding an evaluation-mode BatchNorm into the convolution before it.

conv then bn computes, per output channel o, (conv(x)_o - rm_o)·s_o + β_o with s = γ/√(rv + eps):
the same as one convolution with weight w·s (output channel o of w scaled by s_o) and bias
(b - rm)·s + β (b = 0 without a conv bias; γ = 1 and β = 0 without BatchNorm's affine parameters).
A ConvTranspose weight holds its output channels in dim 1 (per group: (C_in, C_out/groups, *k)),
which ``transpose=True`` selects.
"""

from __future__ import annotations

import numpy as np

from reference.registry import functional


def bn_scale(bn_rv: np.ndarray, bn_eps: float, bn_w: np.ndarray | None) -> np.ndarray:
    """s = γ/√(rv + eps) per channel (γ = 1 when None)."""
    s = 1.0 / np.sqrt(np.asarray(bn_rv, dtype=np.float64) + bn_eps)
    return s if bn_w is None else np.asarray(bn_w, dtype=np.float64) * s


@functional()
def fuse_conv_bn_weights(conv_w: np.ndarray, conv_b: np.ndarray | None, bn_rm: np.ndarray, bn_rv: np.ndarray,
                         bn_eps: float, bn_w: np.ndarray | None, bn_b: np.ndarray | None,
                         transpose: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(fused weight, fused bias) = (w·s per output channel, (b - rm)·s + β), s = γ/√(rv + eps).

    ``conv_w`` is (C_out, C_in/groups, *k), or with ``transpose`` a ConvTranspose weight (C_in,
    C_out/groups, *k) whose output channel g·(C_out/groups) + j is dim 1's j in group g (the groups
    split dim 0); ``bn_*`` are (C_out,); a None conv bias is 0, a None γ 1, a None β 0."""
    w = np.asarray(conv_w, dtype=np.float64)
    rm = np.asarray(bn_rm, dtype=np.float64)
    s = bn_scale(bn_rv, bn_eps, bn_w)
    b = np.zeros_like(rm) if conv_b is None else np.asarray(conv_b, dtype=np.float64)
    beta = np.zeros_like(rm) if bn_b is None else np.asarray(bn_b, dtype=np.float64)
    spatial = (1,) * (w.ndim - 2)
    if transpose:
        groups = s.size // w.shape[1]
        if groups * w.shape[1] != s.size or w.shape[0] % groups:
            raise ValueError(f"fuse: {s.size} BatchNorm channels do not match a ConvTranspose weight {w.shape}")
        per_group = s.reshape(groups, 1, w.shape[1], *spatial)  # [g, ., j]: channel g·(C_out/G) + j
        fused_w = (w.reshape(groups, w.shape[0] // groups, *w.shape[1:]) * per_group).reshape(w.shape)
    else:
        if w.shape[0] != s.size:
            raise ValueError(f"fuse: {s.size} BatchNorm channels do not match a convolution weight {w.shape}")
        fused_w = w * s.reshape(-1, 1, *spatial)
    return fused_w, (b - rm) * s + beta


def fusion_errors(conv_w: np.ndarray, conv_b: np.ndarray | None, bn_rm: np.ndarray, bn_rv: np.ndarray,
                  bn_eps: float, bn_w: np.ndarray | None, bn_b: np.ndarray | None,
                  transpose: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """First-order error bounds (units of the format's u) of the fused weight and bias as torch
    forms them in the parameters' format: rv + eps rounds once (half a rounding after the root),
    rsqrt is counted as two (a square root and a division), γ·rsqrt one: s carries 3.5 relative
    roundings, and w·s one more: 5·|w·s|. The bias ((b - rm)·rsqrt)·γ + β: the difference (1
    relative to |b - rm|), rsqrt (2.5), the two products (2), then the sum (1 relative to the
    result): 6·|b - rm|·|s| + |result|."""
    fused_w, fused_b = fuse_conv_bn_weights(conv_w, conv_b, bn_rm, bn_rv, bn_eps, bn_w, bn_b, transpose)
    rm = np.asarray(bn_rm, dtype=np.float64)
    b = np.zeros_like(rm) if conv_b is None else np.asarray(conv_b, dtype=np.float64)
    s = np.abs(bn_scale(bn_rv, bn_eps, bn_w))
    return 5 * np.abs(fused_w), 6 * np.abs(b - rm) * s + np.abs(fused_b)
