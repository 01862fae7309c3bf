"""Reference (NumPy, float64) vs torch-cpu timings of the normalisation layers at realistic sizes,
forward + backward (one call each of the registered ``reference.functional`` forward and VJP).

Prints one row per configuration — the reference's time, torch's in float64 (the reference's
precision) and in float32, and the ratio reference / torch-float64 — then the median ratio. A
script, not a test: ``python benchmarks/bench_normalization.py``.
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

from reference import normalization as norm  # noqa: E402
from reference import normalization_lrn as lrn  # noqa: E402
from reference.registry import FUNCTIONS  # noqa: E402


@dataclass(frozen=True)
class Config:
    label: str
    layer: str  # the torch.nn module
    shape: tuple[int, ...]
    ctor: dict[str, Any] = field(default_factory=dict)
    function: str = ""  # the reference.functional name
    args: Callable[[np.ndarray, dict[str, np.ndarray]], tuple[tuple[Any, ...], dict[str, Any]]] | None = None
    train: bool = True


def _affine(c: int) -> dict[str, np.ndarray]:
    return {"weight": np.linspace(0.5, 1.5, c), "bias": np.linspace(-1, 1, c)}


CONFIGS = [
    Config("BatchNorm2d train (16, 32, 32, 32)", "BatchNorm2d", (16, 32, 32, 32), dict(num_features=32), "batch_norm",
           lambda x, p: ((x, np.zeros(32), np.ones(32), p["weight"], p["bias"]), {"training": True})),
    Config("InstanceNorm2d (16, 32, 32, 32)", "InstanceNorm2d", (16, 32, 32, 32), dict(num_features=32, affine=True),
           "instance_norm", lambda x, p: ((x, None, None, p["weight"], p["bias"]), {})),
    Config("GroupNorm 8 groups (16, 64, 16, 16)", "GroupNorm", (16, 64, 16, 16), dict(num_groups=8, num_channels=64),
           "group_norm", lambda x, p: ((x, 8, p["weight"], p["bias"]), {})),
    Config("LayerNorm (64, 128, 256)", "LayerNorm", (64, 128, 256), dict(normalized_shape=256), "layer_norm",
           lambda x, p: ((x, (256,), p["weight"], p["bias"]), {})),
    Config("RMSNorm (64, 128, 256)", "RMSNorm", (64, 128, 256), dict(normalized_shape=256), "rms_norm",
           lambda x, p: ((x, (256,), p["weight"]), {"eps": 1e-6})),
    Config("LocalResponseNorm 5 (16, 64, 16, 16)", "LocalResponseNorm", (16, 64, 16, 16), dict(size=5),
           "local_response_norm", lambda x, p: ((x, 5), {})),
    Config("CrossMapLRN2d 5 (16, 64, 16, 16)", "CrossMapLRN2d", (16, 64, 16, 16), dict(size=5),
           "cross_map_lrn2d", lambda x, p: ((x, 5), {})),
]
_ = (norm, lrn)  # imported for their registrations


def reference_step(cfg: Config, x: np.ndarray) -> Callable[[], Any]:
    """The registered forward, then its VJP for a cotangent of ones."""
    entry = FUNCTIONS[cfg.function]
    params = _affine(x.shape[1] if cfg.function not in ("layer_norm", "rms_norm") else x.shape[-1])
    args, kwargs = cfg.args(x, params)
    g = np.ones(x.shape)
    return lambda: (entry.forward(*args, **kwargs), entry.vjp(g, *args, **kwargs))


def torch_step(cfg: Config, x: np.ndarray, dtype: Any) -> Callable[[], Any]:
    import torch

    module = getattr(torch.nn, cfg.layer)(**cfg.ctor).to(dtype)
    module.train(cfg.train)
    tx = torch.from_numpy(x).to(dtype).requires_grad_(True)
    g = torch.ones(x.shape, dtype=dtype)

    def step() -> Any:
        tx.grad = None
        module(tx).backward(g)

    return step


def steps(cfg: Config, rng: np.random.Generator) -> tuple[Callable[[], Any], Callable[[Any], Callable[[], Any]]]:
    x = rng.standard_normal(cfg.shape)
    return reference_step(cfg, x), lambda dtype: torch_step(cfg, x, dtype)


def main() -> None:
    print_table(CONFIGS, 40, steps)


if __name__ == "__main__":
    main()
