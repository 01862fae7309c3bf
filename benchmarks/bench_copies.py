"""Reference (NumPy, float64) vs torch-cpu timings of the copies family (padding, Flatten,
Unflatten, ChannelShuffle), forward + backward, as the declarations run them: the
``reference.functional`` forward, then its registered VJP (a scatter-add, ``np.add.at`` per padded
dim, for the padding modes).

A script, not a test: ``python benchmarks/bench_copies.py [--rounds N]`` (each config's best over N
passes over the table, default 3: see ``_timing.print_table``). Measured numbers: the copies
family's report (2-core shared machine under load, so torch's times are noisy).
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
    Config("ZeroPad2d 1 of 56x56", "ZeroPad2d", (8, 32, 56, 56), dict(padding=1)),
    Config("ConstantPad3d (1,2,0,1,2,0) of 16^3", "ConstantPad3d", (2, 16, 16, 16, 16),
           dict(padding=(1, 2, 0, 1, 2, 0), value=0.5)),
    Config("ReflectionPad1d 3 of L1024", "ReflectionPad1d", (8, 32, 1024), dict(padding=3)),
    Config("ReflectionPad2d 3 of 56x56", "ReflectionPad2d", (8, 32, 56, 56), dict(padding=3)),
    Config("ReflectionPad3d 2 of 16^3", "ReflectionPad3d", (2, 16, 16, 16, 16), dict(padding=2)),
    Config("ReplicationPad2d (4,-2,2,3) of 56x56", "ReplicationPad2d", (8, 32, 56, 56), dict(padding=(4, -2, 2, 3))),
    Config("CircularPad2d 4 of 32x32", "CircularPad2d", (8, 32, 32, 32), dict(padding=4)),
    Config("Flatten 1..-1 of (8,32,28,28)", "Flatten", (8, 32, 28, 28)),
    Config("Unflatten 1 (4,-1) of (8,256,196)", "Unflatten", (8, 256, 196), dict(dim=1, unflattened_size=(4, -1))),
    Config("ChannelShuffle 4 of (8,64,28,28)", "ChannelShuffle", (8, 64, 28, 28), dict(groups=4)),
]
MODES = {"Zero": "constant", "Constant": "constant", "Reflection": "reflect", "Replication": "replicate",
         "Circular": "circular"}


def _call(cfg: Config, x: np.ndarray) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """The reference.functional call of ``cfg``: (name, args, kwargs)."""
    kw = dict(cfg.kwargs)
    if cfg.layer == "Flatten":
        return "flatten", (x, 1, -1), {}
    if cfg.layer == "Unflatten":
        return "unflatten", (x, kw["dim"], kw["unflattened_size"]), {}
    if cfg.layer == "ChannelShuffle":
        return "channel_shuffle", (x, kw["groups"]), {}
    nd = int(cfg.layer[-2])
    padding = kw["padding"]
    flat = tuple(padding) if isinstance(padding, tuple) else (padding,) * (2 * nd)
    mode = MODES[cfg.layer[: cfg.layer.index("Pad")]]
    value = kw.get("value", 0.0) if mode == "constant" else None
    return "pad", (x, flat), {"mode": mode, "value": value}


def reference_step(cfg: Config, x: np.ndarray) -> Callable[[], Any]:
    return functional_step(*_call(cfg, x))


def torch_step(cfg: Config, x: np.ndarray, dtype: Any) -> Callable[[], Any]:
    import torch

    return module_step(getattr(torch.nn, cfg.layer)(**cfg.kwargs), x, dtype)


def steps(cfg: Config, rng: np.random.Generator) -> tuple[Callable[[], Any], Callable[[Any], Callable[[], Any]]]:
    x = rng.standard_normal(cfg.input_shape)
    return reference_step(cfg, x), lambda dtype: torch_step(cfg, x, dtype)


def main() -> None:
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 3
    print_table(CONFIGS, 38, steps, rounds=rounds)


if __name__ == "__main__":
    main()
