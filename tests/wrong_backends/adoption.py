"""A vendor's adapter as a new adopter would first write it: torch with a few kernels of its own,
each with a mistake real implementers make. ``tests/test_adoption.py`` walks the adoption path with
it (run, triage, rerun with the user's known file, a new bug).

- ``elu-alpha``: ELU's negative branch hard-codes alpha = 1 (out of place; the in-place kernel is
  torch's), so output and gradient are wrong wherever alpha != 1 and some input is negative;
- ``relu-kink``: ReLU's derivative at 0 is 1 (``x >= 0`` for ``x > 0``), wrong only where an input
  is exactly 0;
- ``tanh-strides``: Tanh reads a dense non-contiguous input (permuted, channels_last) in memory
  order as if it were contiguous, so the values land in the wrong places;
- ``leaky-slope`` (the bug planted later): LeakyReLU ignores its negative_slope (uses the default
  0.01; out of place).

``AdoptionVendor`` has the first three; ``AdoptionVendorNextRelease`` all four. Both run torch for
everything else, so torch's own known discrepancies apply to them (``known_as``, the default of a
renamed ``TorchBackend``): LeakyReLU's NaN at -inf with a zero slope stays torch's.
"""

from __future__ import annotations

import torch

from backends.torch_backend import TorchBackend
from tests.wrong_backends.generic import _WrongKinkReLU


class _EluAlphaOne(torch.nn.ELU):
    def forward(self, x):
        return torch.nn.functional.elu(x, alpha=1.0)  # wrong: self.alpha ignored


class _TanhInMemoryOrder(torch.nn.Tanh):
    def forward(self, x):
        if x.is_contiguous() or x.dim() < 2 or 0 in x.stride():
            return torch.tanh(x)
        order = sorted(range(x.dim()), key=lambda d: -x.stride()[d])  # dims outermost first in memory
        stored = x.permute(*order).reshape(-1)  # the elements in memory order
        return torch.tanh(stored).reshape(x.shape)  # wrong: memory order taken as logical order


class _LeakyDefaultSlope(torch.nn.LeakyReLU):
    def forward(self, x):
        return torch.nn.functional.leaky_relu(x, 0.01)  # wrong: self.negative_slope ignored


class AdoptionVendor(TorchBackend):
    """torch-cpu with the vendor's own ELU, ReLU and Tanh kernels (three bugs)."""

    name = "adopt-vendor"
    bugs: tuple[str, ...] = ("elu-alpha", "relu-kink", "tanh-strides")

    def build_module(self, case, cls, kwargs):
        inplace = kwargs.get("inplace", False)
        if case.op == "ELU" and "elu-alpha" in self.bugs and not inplace:
            return _EluAlphaOne(**kwargs)
        if case.op == "ReLU" and "relu-kink" in self.bugs and not inplace:
            return _WrongKinkReLU()
        if case.op == "Tanh" and "tanh-strides" in self.bugs:
            return _TanhInMemoryOrder()
        if case.op == "LeakyReLU" and "leaky-slope" in self.bugs and not inplace:
            return _LeakyDefaultSlope(**kwargs)
        return super().build_module(case, cls, kwargs)


class AdoptionVendorNextRelease(AdoptionVendor):
    """The same adapter a release later: the three bugs still there, and a new one in LeakyReLU."""

    bugs = ("elu-alpha", "relu-kink", "tanh-strides", "leaky-slope")
