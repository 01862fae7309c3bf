"""Reference (NumPy, float64) vs torch-cpu timings of the pooling family, forward + backward.

Prints one row per representative configuration — the reference's time, torch's in float64 (the
reference's precision) and in float32, and the ratio reference / torch-float64 — then the median
and worst ratio. A script, not a test: ``python benchmarks/bench_pooling.py [--rounds N]`` (each
config's best over N passes over the table, default 3: see ``_timing.print_table``).
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

from reference import pooling as ref  # noqa: E402


@dataclass(frozen=True)
class Config:
    label: str
    layer: str
    input_shape: tuple[int, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


CONFIGS = [
    Config("MaxPool1d k3 s2 p1 L1024", "MaxPool1d", (8, 32, 1024), dict(kernel_size=3, stride=2, padding=1)),
    Config("MaxPool2d k3 s2 p1 56x56", "MaxPool2d", (8, 32, 56, 56), dict(kernel_size=3, stride=2, padding=1)),
    Config("MaxPool2d k2 d2 ceil 31x31", "MaxPool2d", (4, 32, 31, 31),
           dict(kernel_size=2, stride=2, dilation=2, ceil_mode=True)),
    Config("MaxPool3d k2 16^3", "MaxPool3d", (2, 16, 16, 16, 16), dict(kernel_size=2)),
    Config("AvgPool2d k3 s2 p1 ceil excl", "AvgPool2d", (8, 32, 56, 56),
           dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    Config("AvgPool3d k3 s2 p1 16^3", "AvgPool3d", (2, 16, 16, 16, 16), dict(kernel_size=3, stride=2, padding=1)),
    Config("LPPool2d p=2 k3 s2 32x32", "LPPool2d", (8, 32, 32, 32), dict(norm_type=2.0, kernel_size=3, stride=2)),
    Config("AdaptiveAvgPool2d 7x7 of 30x30", "AdaptiveAvgPool2d", (8, 64, 30, 30), dict(output_size=7)),
    Config("AdaptiveMaxPool2d 5x5 of 23x23", "AdaptiveMaxPool2d", (8, 64, 23, 23), dict(output_size=5)),
    Config("FractionalMaxPool2d k2 out 20 of 32", "FractionalMaxPool2d", (8, 32, 32, 32),
           dict(kernel_size=2, output_size=20)),
]



def _tuple(value: Any, nd: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) * nd


def _samples(x: np.ndarray) -> np.ndarray:
    return np.random.default_rng(2).random((x.shape[0], x.shape[1], 2))


def reference_step(cfg: Config, x: np.ndarray) -> Callable[[], Any]:
    """Forward then VJP of the reference for ``cfg``."""
    nd = int(cfg.layer[-2])
    kw = cfg.kwargs
    if cfg.layer.startswith("MaxPool") or cfg.layer == "FractionalMaxPool2d":
        if cfg.layer == "FractionalMaxPool2d":
            k, out = _tuple(kw["kernel_size"], 2), _tuple(kw["output_size"], 2)
            samples = _samples(x)

            def forward() -> tuple[np.ndarray, np.ndarray]:
                return ref.fractional_max_pool2d(x, k, out, samples)
        else:
            k = _tuple(kw["kernel_size"], nd)
            s = _tuple(kw.get("stride", kw["kernel_size"]), nd)
            p, d = _tuple(kw.get("padding", 0), nd), _tuple(kw.get("dilation", 1), nd)

            def forward() -> tuple[np.ndarray, np.ndarray]:
                return ref.max_pool(x, k, s, p, d, kw.get("ceil_mode", False))

        g = np.ones(forward()[0].shape)

        def step() -> Any:
            _, idx = forward()
            return ref.scatter_by_indices(x.shape, idx, g)

        return step
    if cfg.layer.startswith("AvgPool"):
        args = (_tuple(kw["kernel_size"], nd), _tuple(kw.get("stride", kw["kernel_size"]), nd),
                _tuple(kw.get("padding", 0), nd), kw.get("ceil_mode", False), kw.get("count_include_pad", True))
        g = np.ones(ref.avg_pool(x, *args).shape)
        return lambda: (ref.avg_pool(x, *args), ref.avg_pool_vjp(x.shape, g, *args))
    if cfg.layer.startswith("LPPool"):
        args = (kw["norm_type"], _tuple(kw["kernel_size"], nd), _tuple(kw.get("stride", kw["kernel_size"]), nd),
                kw.get("ceil_mode", False))
        g = np.ones(ref.lp_pool(x, *args).shape)
        return lambda: (ref.lp_pool(x, *args), ref.lp_pool_vjp(x, g, *args))
    out = _tuple(kw["output_size"], nd)
    if cfg.layer.startswith("AdaptiveAvg"):
        g = np.ones(ref.adaptive_avg_pool(x, out).shape)
        return lambda: (ref.adaptive_avg_pool(x, out), ref.adaptive_avg_pool_vjp(x.shape, g, out))
    g = np.ones(ref.adaptive_max_pool(x, out)[0].shape)
    return lambda: ref.scatter_by_indices(x.shape, ref.adaptive_max_pool(x, out)[1], g)


def torch_step(cfg: Config, x: np.ndarray, dtype: Any) -> Callable[[], Any]:
    import torch

    kwargs = dict(cfg.kwargs)
    if cfg.layer == "FractionalMaxPool2d":
        kwargs["_random_samples"] = torch.from_numpy(_samples(x)).to(dtype)
    module = getattr(torch.nn, cfg.layer)(**kwargs)
    tx = torch.from_numpy(np.abs(x) if cfg.layer.startswith("LPPool") else x).to(dtype).requires_grad_(True)
    g = torch.ones(tuple(module(tx).shape), dtype=dtype)

    def step() -> Any:
        tx.grad = None
        module(tx).backward(g)

    return step


def steps(cfg: Config, rng: np.random.Generator) -> tuple[Callable[[], Any], Callable[[Any], Callable[[], Any]]]:
    x = rng.standard_normal(cfg.input_shape)
    if cfg.layer.startswith("LPPool"):
        x = np.abs(x)
    return reference_step(cfg, x), lambda dtype: torch_step(cfg, x, dtype)


def main() -> None:
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 3
    print_table(CONFIGS, 36, steps, rounds=rounds)


if __name__ == "__main__":
    main()
