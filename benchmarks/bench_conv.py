"""Reference (NumPy, float64) vs torch-cpu timings of the convolution family, forward + backward.

Prints one row per representative configuration — the reference's time, torch's in float64 (the
reference's precision) and in float32, and the ratio reference / torch-float64 — then the median
ratio. The reference runs as the declarations run it: ``reference.functional``'s conv{nd}d /
conv_transpose{nd}d forward and registered VJP (a padding_mode: F.pad first, and pad's VJP after).
A script, not a test: ``python benchmarks/bench_conv.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import print_table  # noqa: E402

from reference import conv as ref  # noqa: E402
from reference import functional as RF  # noqa: E402


@dataclass(frozen=True)
class Config:
    label: str
    nd: int
    transposed: bool
    input_shape: tuple[int, ...]
    out_channels: int
    kernel: int
    kwargs: dict[str, Any] = field(default_factory=dict)


CONFIGS = [
    Config("Conv1d 32->64 L256 k5 p2", 1, False, (8, 32, 256), 64, 5, dict(padding=2)),
    Config("Conv2d 16->32 32x32 k3 p1", 2, False, (8, 16, 32, 32), 32, 3, dict(padding=1)),
    Config("Conv2d 32->32 s2 d2 g4 k3", 2, False, (4, 32, 32, 32), 32, 3, dict(stride=2, dilation=2, groups=4)),
    Config("Conv2d depthwise 64 28x28 k3", 2, False, (8, 64, 28, 28), 64, 3, dict(padding=1, groups=64)),
    Config("Conv2d 8->16 reflect p2 k5", 2, False, (4, 8, 32, 32), 16, 5, dict(padding=2, padding_mode="reflect")),
    Config("Conv3d 8->16 16^3 k3 same", 3, False, (2, 8, 16, 16, 16), 16, 3, dict(padding="same")),
    Config("ConvT1d 32->16 L128 k4 s2", 1, True, (8, 32, 128), 16, 4, dict(stride=2, padding=1)),
    Config("ConvT2d 32->16 16x16 k4 s2", 2, True, (4, 32, 16, 16), 16, 4, dict(stride=2, padding=1)),
    Config("ConvT3d 16->8 8^3 k3 s2 op1", 3, True, (2, 16, 8, 8, 8), 8, 3,
           dict(stride=2, padding=1, output_padding=1)),
]



def weight_shape(cfg: Config) -> tuple[int, ...]:
    cin = cfg.input_shape[1]
    groups = cfg.kwargs.get("groups", 1)
    k = (cfg.kernel,) * cfg.nd
    return (cin, cfg.out_channels // groups) + k if cfg.transposed else (cfg.out_channels, cin // groups) + k


def reference_step(cfg: Config, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> Callable[[], Any]:
    """Forward and VJP through reference.functional, as the template's reference composes them (a
    padding_mode: F.pad, then the convolution without padding, and pad's VJP)."""
    kwargs = dict(cfg.kwargs)
    mode = kwargs.pop("padding_mode", "zeros")
    name = f"conv_transpose{cfg.nd}d" if cfg.transposed else f"conv{cfg.nd}d"
    amounts = None
    if mode != "zeros":
        amounts = ref.module_padding(kwargs.get("padding", 0), w.shape[2:], kwargs.get("stride", 1),
                                     kwargs.get("dilation", 1))
        kwargs["padding"] = 0
    g = np.random.default_rng(1).standard_normal(getattr(RF, name)(x if amounts is None else RF.pad(x, amounts, mode),
                                                                   w, b, **kwargs).shape)

    def step() -> Any:
        xin = x if amounts is None else RF.pad(x, amounts, mode)
        getattr(RF, name)(xin, w, b, **kwargs)
        grads = RF.vjp(name, xin, w, b, cotangent=g, **kwargs)
        if amounts is not None:
            grads["input"] = RF.vjp("pad", x, amounts, mode, cotangent=grads["input"])["input"]
        return grads

    return step


def torch_step(cfg: Config, x: np.ndarray, w: np.ndarray, b: np.ndarray, dtype: Any) -> Callable[[], Any]:
    import torch

    cls = getattr(torch.nn, f"ConvTranspose{cfg.nd}d" if cfg.transposed else f"Conv{cfg.nd}d")
    module = cls(x.shape[1], cfg.out_channels, cfg.kernel, **cfg.kwargs).to(dtype)
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(w))
        module.bias.copy_(torch.from_numpy(b))
    tx = torch.from_numpy(x).to(dtype).requires_grad_(True)
    g = torch.from_numpy(np.random.default_rng(1).standard_normal(tuple(module(tx).shape))).to(dtype)

    def step() -> Any:
        tx.grad = None
        module.zero_grad(set_to_none=True)
        module(tx).backward(g)

    return step


def steps(cfg: Config, rng: np.random.Generator) -> tuple[Callable[[], Any], Callable[[Any], Callable[[], Any]]]:
    x = rng.standard_normal(cfg.input_shape)
    w = rng.standard_normal(weight_shape(cfg))
    b = rng.standard_normal(cfg.out_channels)
    return reference_step(cfg, x, w, b), lambda dtype: torch_step(cfg, x, w, b, dtype)


def main() -> None:
    print_table(CONFIGS, 32, steps)


if __name__ == "__main__":
    main()
