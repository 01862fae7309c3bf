"""Deliberately wrong Fold/Unfold adapters: each must be caught by the conformance run.

- ``FoldOverwrites``: col2im that assigns each block's values instead of adding them, so where
  blocks overlap the last one written wins.
- ``UnfoldIgnoresDilation``: im2col that reads the taps of a block next to each other whatever
  the dilation.

Every other layer is built as torch builds it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from backends.torch_backend import TorchBackend


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


class _OverwritingFold(torch.nn.Module):
    def __init__(self, output_size, kernel_size, dilation=1, padding=0, stride=1):
        super().__init__()
        self.size, self.kernel = _pair(output_size), _pair(kernel_size)
        self.dilation, self.padding, self.stride = _pair(dilation), _pair(padding), _pair(stride)

    def forward(self, x):
        batched = x.dim() == 3
        x = x if batched else x[None]
        (kh, kw), (dh, dw), (ph, pw), (sh, sw) = self.kernel, self.dilation, self.padding, self.stride
        height, width = self.size[0] + 2 * ph, self.size[1] + 2 * pw
        bh, bw = (height - dh * (kh - 1) - 1) // sh + 1, (width - dw * (kw - 1) - 1) // sw + 1
        cols = x.reshape(x.shape[0], x.shape[1] // (kh * kw), kh, kw, bh, bw)
        out = x.new_zeros(x.shape[0], cols.shape[1], height, width)
        for i in range(kh):
            for j in range(kw):
                rows = slice(i * dh, i * dh + (bh - 1) * sh + 1, sh)
                columns = slice(j * dw, j * dw + (bw - 1) * sw + 1, sw)
                out[:, :, rows, columns] = cols[:, :, i, j]  # the bug: = instead of +=
        out = out[:, :, ph:ph + self.size[0], pw:pw + self.size[1]]
        return out if batched else out[0]


class FoldOverwrites(TorchBackend):
    """Fold whose overlapping blocks overwrite each other instead of summing."""

    name = "wrong-fold-overwrites"

    def build_module(self, case, cls, kwargs):
        return _OverwritingFold(**kwargs) if case.op == "Fold" else super().build_module(case, cls, kwargs)


class _UndilatedUnfold(torch.nn.Unfold):
    def forward(self, x):
        return F.unfold(x, self.kernel_size, 1, self.padding, self.stride)  # the bug: dilation 1


class UnfoldIgnoresDilation(TorchBackend):
    """Unfold that reads every block's taps without the dilation."""

    name = "wrong-unfold-dilation"

    def build_module(self, case, cls, kwargs):
        return _UndilatedUnfold(**kwargs) if case.op == "Unfold" else super().build_module(case, cls, kwargs)
