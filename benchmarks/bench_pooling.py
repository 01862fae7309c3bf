"""Reference (NumPy, float64) vs torch-cpu timings of the pooling family and Fold/Unfold, forward +
backward. The reference runs as the declarations run it: the ``reference.functional`` forward,
then its registered VJP (which evaluates the window maxima or sums again).

Prints one row per representative configuration — the reference's time, torch's in float64 (the
reference's precision) and in float32, and the ratio reference / torch-float64 — then the median
and worst ratio. A script, not a test: ``python benchmarks/bench_pooling.py [--rounds N]`` (each
config's best over N passes over the table, default 3: see ``_timing.print_table``).

Measured 2026-11-29, 2-core shared machine, torch 2.13.0+cpu (2 threads), numpy 2.4.6, ``--rounds 5``;
ratio = reference / torch-float64 (torch's times are noisy under load: a busy spell can make one
row's torch time several times too slow even as a best of rounds):

    config                               reference  torch f64  ratio   (before: reference, ratio)
    MaxPool1d k3 s2 p1 L1024                1.94ms     1.23ms   1.6x   13.03ms  10.3x
    MaxPool2d k3 s2 p1 56x56                9.13ms     4.66ms   2.0x   34.93ms   7.5x
    MaxPool2d k2 d2 ceil 31x31              0.60ms     0.35ms   1.7x    3.29ms  10.2x
    MaxPool3d k2 16^3                       0.68ms     0.36ms   1.9x    2.65ms   7.1x
    AvgPool1d k3 s2 p1 L1024                1.48ms     0.85ms   1.7x    5.31ms   5.6x
    AvgPool2d k3 s2 p1 ceil excl            8.10ms     2.29ms   3.5x   20.09ms   7.2x
    AvgPool3d k3 s2 p1 16^3                 1.96ms     0.40ms   4.9x    3.45ms   9.0x
    LPPool1d p=2 k3 s2 L1024                3.14ms     2.89ms   1.1x   10.80ms   3.5x
    LPPool2d p=2 k3 s2 32x32                4.20ms     1.62ms   2.6x    9.41ms   5.1x
    AdaptiveAvgPool1d 7 of 100              0.36ms     0.07ms   5.1x    0.65ms   6.6x
    AdaptiveAvgPool2d 7x7 of 30x30          3.25ms     0.69ms   4.7x    7.23ms   9.9x
    AdaptiveMaxPool1d 5 of 100              0.34ms     0.10ms   3.4x    0.69ms   5.6x
    AdaptiveMaxPool2d 5x5 of 23x23          1.97ms     0.56ms   3.5x    4.55ms   7.1x
    FractionalMaxPool2d k2 out 20 of 32     2.94ms     1.29ms   2.3x   16.96ms  12.8x
    median 2.4x, worst 5.1x                                            (before: median 7.1x, worst 12.8x)

Re-measured 2026-12-03 through reference.functional, with the 3-d and Fold/Unfold configs, on the
same 2-core machine under a load of about 11 (``--rounds 3``): median 2.1x, worst 9.5x
(AdaptiveMaxPool3d and AdaptiveAvgPool3d, whose irregular windows take the gathered-rows path);
torch's own times were too noisy there to quote row by row.

"Before" is the plain form (every tap of every window gathered into planes × windows × taps
arrays), the reference as it was before ``reference.pooling_windows``; both give the same numbers.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import functional_step, module_step, print_table  # noqa: E402


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
    Config("AvgPool1d k3 s2 p1 L1024", "AvgPool1d", (8, 32, 1024), dict(kernel_size=3, stride=2, padding=1)),
    Config("AvgPool2d k3 s2 p1 ceil excl", "AvgPool2d", (8, 32, 56, 56),
           dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    Config("AvgPool3d k3 s2 p1 16^3", "AvgPool3d", (2, 16, 16, 16, 16), dict(kernel_size=3, stride=2, padding=1)),
    Config("LPPool1d p=2 k3 s2 L1024", "LPPool1d", (8, 32, 1024), dict(norm_type=2.0, kernel_size=3, stride=2)),
    Config("LPPool2d p=2 k3 s2 32x32", "LPPool2d", (8, 32, 32, 32), dict(norm_type=2.0, kernel_size=3, stride=2)),
    Config("AdaptiveAvgPool1d 7 of 100", "AdaptiveAvgPool1d", (8, 64, 100), dict(output_size=7)),
    Config("AdaptiveAvgPool2d 7x7 of 30x30", "AdaptiveAvgPool2d", (8, 64, 30, 30), dict(output_size=7)),
    Config("AdaptiveMaxPool1d 5 of 100", "AdaptiveMaxPool1d", (8, 64, 100), dict(output_size=5)),
    Config("AdaptiveMaxPool2d 5x5 of 23x23", "AdaptiveMaxPool2d", (8, 64, 23, 23), dict(output_size=5)),
    Config("FractionalMaxPool2d k2 out 20 of 32", "FractionalMaxPool2d", (8, 32, 32, 32),
           dict(kernel_size=2, output_size=20)),
    Config("LPPool3d p=2 k2 16^3", "LPPool3d", (2, 16, 16, 16, 16), dict(norm_type=2.0, kernel_size=2)),
    Config("AdaptiveAvgPool3d 5^3 of 16^3", "AdaptiveAvgPool3d", (2, 16, 16, 16, 16), dict(output_size=5)),
    Config("AdaptiveMaxPool3d 5^3 of 16^3", "AdaptiveMaxPool3d", (2, 16, 16, 16, 16), dict(output_size=5)),
    Config("FractionalMaxPool3d k2 out 10 of 16", "FractionalMaxPool3d", (2, 16, 16, 16, 16),
           dict(kernel_size=2, output_size=10)),
    Config("Unfold k3 p1 s2 32x32", "Unfold", (8, 16, 32, 32), dict(kernel_size=3, padding=1, stride=2)),
    Config("Fold k3 p1 s1 of 16x16", "Fold", (8, 16 * 9, 256), dict(output_size=16, kernel_size=3, padding=1)),
]
# reference.functional's name of each layer's prefix
FUNCTIONAL = {"MaxPool": "max_pool", "AvgPool": "avg_pool", "LPPool": "lp_pool", "AdaptiveAvgPool": "adaptive_avg_pool",
              "AdaptiveMaxPool": "adaptive_max_pool", "FractionalMaxPool": "fractional_max_pool"}


def _samples(x: np.ndarray, nd: int) -> np.ndarray:
    return np.random.default_rng(2).random((x.shape[0], x.shape[1], nd))


def _call(cfg: Config, x: np.ndarray) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """The reference.functional call of ``cfg``: (name, args, kwargs)."""
    kw = dict(cfg.kwargs)
    if cfg.layer in ("Fold", "Unfold"):
        lead = (x, kw.pop("output_size")) if cfg.layer == "Fold" else (x,)
        return cfg.layer.lower(), lead, kw
    nd = int(cfg.layer[-2])
    name = FUNCTIONAL[cfg.layer[:-2]] + f"{nd}d"
    if cfg.layer.startswith("LPPool"):
        return name, (x, kw.pop("norm_type"), kw.pop("kernel_size")), kw
    if cfg.layer.startswith("Adaptive"):
        return name, (x, kw.pop("output_size")), kw
    if cfg.layer.startswith("Fractional"):
        kw["_random_samples"] = _samples(x, nd)
    return name, (x, kw.pop("kernel_size")), kw


def reference_step(cfg: Config, x: np.ndarray) -> Callable[[], Any]:
    """Forward then VJP of ``cfg`` through reference.functional, as the declarations' references run them."""
    return functional_step(*_call(cfg, x))


def torch_step(cfg: Config, x: np.ndarray, dtype: Any) -> Callable[[], Any]:
    import torch

    kwargs = dict(cfg.kwargs)
    if cfg.layer.startswith("FractionalMaxPool"):
        kwargs["_random_samples"] = torch.from_numpy(_samples(x, int(cfg.layer[-2]))).to(dtype)
    module = getattr(torch.nn, cfg.layer)(**kwargs)
    return module_step(module, np.abs(x) if cfg.layer.startswith("LPPool") else x, dtype)


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
