"""Reference (NumPy, float64) vs torch-cpu timings of the vision (pixel shuffle, interpolation in several
modes, grid_sample, affine_grid), distance and batch-norm entries, forward + backward.

``PairwiseDistance ... float64-only precision``: the reference without its extended-precision
evaluation, as it runs for float32/float16/bfloat16 cases (the extended one serves float64 cases).

Prints one row per representative configuration — the reference's time, torch's in float64 (the
reference's precision) and in float32, and the ratio reference / torch-float64 — then the median
ratio. A script, not a test: ``python benchmarks/bench_vision.py``.
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

from reference import distance as dist  # noqa: E402
from reference import functional as RF  # noqa: E402
from reference import normalization as norm  # noqa: E402
from reference import vision as vis  # noqa: E402


@dataclass(frozen=True)
class Config:
    label: str
    layer: str
    shapes: tuple[tuple[int, ...], ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    train: bool = True


CONFIGS = [
    Config("BatchNorm1d train (256, 64)", "BatchNorm1d", ((256, 64),), dict(num_features=64)),
    Config("BatchNorm1d train (32, 64, 128)", "BatchNorm1d", ((32, 64, 128),), dict(num_features=64)),
    Config("BatchNorm2d train (16, 32, 32, 32)", "BatchNorm2d", ((16, 32, 32, 32),), dict(num_features=32)),
    Config("BatchNorm3d train (4, 16, 16^3)", "BatchNorm3d", ((4, 16, 16, 16, 16),), dict(num_features=16)),
    Config("BatchNorm3d eval (4, 16, 16^3)", "BatchNorm3d", ((4, 16, 16, 16, 16),), dict(num_features=16), False),
    Config("PairwiseDistance p=2 (4096, 64)", "PairwiseDistance", ((4096, 64), (4096, 64)), dict(p=2.0)),
    Config("PairwiseDistance p=1.5 bcast (4096, 64)", "PairwiseDistance", ((4096, 64), (64,)), dict(p=1.5)),
    Config("PairwiseDistance p=1.5 float64-only precision", "PairwiseDistance", ((4096, 64), (64,)),
           dict(p=1.5, precise=False)),
    Config("PairwiseDistance p=inf (4096, 64)", "PairwiseDistance", ((4096, 64), (4096, 64)), dict(p=np.inf)),
    Config("PixelShuffle r=2 (16, 64, 32, 32)", "PixelShuffle", ((16, 64, 32, 32),), dict(upscale_factor=2)),
    Config("PixelUnshuffle r=4 (8, 4, 64, 64)", "PixelUnshuffle", ((8, 4, 64, 64),), dict(downscale_factor=4)),
    Config("UpsamplingNearest2d x2 (8, 32, 32, 32)", "UpsamplingNearest2d", ((8, 32, 32, 32),),
           dict(scale_factor=2.0)),
    Config("UpsamplingNearest2d x1.3 (8, 32, 32, 32)", "UpsamplingNearest2d", ((8, 32, 32, 32),),
           dict(scale_factor=1.3)),
    Config("UpsamplingBilinear2d x2 (8, 32, 32, 32)", "UpsamplingBilinear2d", ((8, 32, 32, 32),),
           dict(scale_factor=2.0)),
    Config("UpsamplingBilinear2d size 20 (8, 32, 32, 32)", "UpsamplingBilinear2d", ((8, 32, 32, 32),),
           dict(size=20)),
    Config("interpolate bicubic x1.5 (8, 16, 32, 32)", "interpolate", ((8, 16, 32, 32),),
           dict(scale_factor=1.5, mode="bicubic", align_corners=False)),
    Config("interpolate trilinear x2 (2, 8, 16^3)", "interpolate", ((2, 8, 16, 16, 16),),
           dict(scale_factor=2.0, mode="trilinear", align_corners=False)),
    Config("interpolate area size 12 (8, 16, 32, 32)", "interpolate", ((8, 16, 32, 32),), dict(size=12, mode="area")),
    Config("interpolate bilinear antialias x0.4 (4, 16, 40, 40)", "interpolate", ((4, 16, 40, 40),),
           dict(scale_factor=0.4, mode="bilinear", antialias=True)),
    Config("grid_sample bilinear reflection (8, 16, 32, 32)", "grid_sample", ((8, 16, 32, 32), (8, 24, 24, 2)),
           dict(mode="bilinear", padding_mode="reflection", align_corners=False)),
    Config("grid_sample bicubic zeros (4, 8, 24, 24)", "grid_sample", ((4, 8, 24, 24), (4, 16, 16, 2)),
           dict(mode="bicubic", padding_mode="zeros", align_corners=True)),
    Config("affine_grid 5-d (16, 3, 4) -> 16^3", "affine_grid", ((16, 3, 4),), dict(size=(16, 1, 16, 16, 16))),
]


def _batch_norm_step(cfg: Config, x: np.ndarray) -> Callable[[], Any]:
    c = x.shape[1]
    w, b, g = np.ones(c), np.zeros(c), np.ones(x.shape)
    rm, rv = np.zeros(c), np.ones(c)
    if cfg.train:
        return lambda: (norm.batch_norm(x, *norm.batch_stats(x), w, b, eps=1e-5),
                        norm.update_running_stats(rm, rv, 0, x, 0.1), norm.batch_norm_train_vjp(x, w, g, 1e-5))
    return lambda: (norm.batch_norm(x, rm, rv, w, b, eps=1e-5), norm.batch_norm_eval_vjp(x, rm, rv, w, g, 1e-5))


def _interpolate_step(cfg: Config, xs: list[np.ndarray]) -> Callable[[], Any]:
    """Forward then VJP of reference.functional.interpolate with the configuration's arguments
    (the Upsampling layers fix the mode; F.interpolate configurations carry theirs)."""
    kwargs = {k: v for k, v in cfg.kwargs.items() if k != "function"}
    if cfg.layer == "UpsamplingNearest2d":
        kwargs["mode"] = "nearest"
    elif cfg.layer == "UpsamplingBilinear2d":
        kwargs.update(mode="bilinear", align_corners=True)
    x = xs[0]
    g = np.ones(RF.interpolate(x, **kwargs).shape)
    return lambda: (RF.interpolate(x, **kwargs), RF.vjp("interpolate", x, cotangent=g, **kwargs))


def _grid_sample_step(cfg: Config, xs: list[np.ndarray]) -> Callable[[], Any]:
    x, grid = xs
    g = np.ones(RF.grid_sample(x, grid, **cfg.kwargs).shape)
    return lambda: (RF.grid_sample(x, grid, **cfg.kwargs), RF.vjp("grid_sample", x, grid, cotangent=g, **cfg.kwargs))


def _affine_grid_step(cfg: Config, xs: list[np.ndarray]) -> Callable[[], Any]:
    theta, size = xs[0], cfg.kwargs["size"]
    g = np.ones(RF.affine_grid(theta, size, False).shape)
    return lambda: (RF.affine_grid(theta, size, False), RF.vjp("affine_grid", theta, size, False, cotangent=g))


def reference_step(cfg: Config, xs: list[np.ndarray]) -> Callable[[], Any]:
    """Forward then VJP of the reference for ``cfg``."""
    if cfg.layer.startswith("BatchNorm"):
        return _batch_norm_step(cfg, xs[0])
    if cfg.layer == "PairwiseDistance":
        x1, x2 = xs
        g = np.ones(np.broadcast_shapes(x1.shape, x2.shape)[:-1])
        p = cfg.kwargs["p"]
        precise = cfg.kwargs.get("precise", True)
        return lambda: (dist.pairwise_distance(x1, x2, p, 1e-6, False, precise),
                        dist.pairwise_distance_vjp(x1, x2, p, 1e-6, False, g, precise))
    if cfg.layer.startswith("Pixel"):
        shuffle = cfg.layer == "PixelShuffle"
        r = cfg.kwargs["upscale_factor" if shuffle else "downscale_factor"]
        fwd, inv = (vis.pixel_shuffle, vis.pixel_unshuffle) if shuffle else (vis.pixel_unshuffle, vis.pixel_shuffle)
        return lambda: inv(np.ascontiguousarray(fwd(xs[0], r)), r)
    if cfg.layer == "grid_sample":
        return _grid_sample_step(cfg, xs)
    if cfg.layer == "affine_grid":
        return _affine_grid_step(cfg, xs)
    return _interpolate_step(cfg, xs)


def torch_step(cfg: Config, xs: list[np.ndarray], dtype: Any) -> Callable[[], Any]:
    import torch

    if cfg.layer in ("interpolate", "grid_sample", "affine_grid"):
        return _torch_function_step(cfg, xs, dtype)
    kwargs = {k: v for k, v in cfg.kwargs.items() if k != "precise"}
    module = getattr(torch.nn, cfg.layer)(**kwargs).to(dtype)
    module.train(cfg.train)
    txs = [torch.from_numpy(x).to(dtype).requires_grad_(True) for x in xs]
    g = torch.ones(tuple(module(*txs).shape), dtype=dtype)

    def step() -> Any:
        for t in txs:
            t.grad = None
        module(*txs).backward(g)

    return step


def _torch_function_step(cfg: Config, xs: list[np.ndarray], dtype: Any) -> Callable[[], Any]:
    import torch
    import torch.nn.functional as F

    tensors = [torch.from_numpy(x).to(dtype).requires_grad_(True) for x in xs]
    if cfg.layer == "interpolate":
        def call() -> Any:
            return F.interpolate(tensors[0], **cfg.kwargs)
    elif cfg.layer == "grid_sample":
        def call() -> Any:
            return F.grid_sample(*tensors, **cfg.kwargs)
    else:
        def call() -> Any:
            return F.affine_grid(tensors[0], cfg.kwargs["size"], align_corners=False)
    g = torch.ones(tuple(call().shape), dtype=dtype)

    def step() -> Any:
        for t in tensors:
            t.grad = None
        call().backward(g)

    return step


def steps(cfg: Config, rng: np.random.Generator) -> tuple[Callable[[], Any], Callable[[Any], Callable[[], Any]]]:
    xs = [rng.standard_normal(shape) for shape in cfg.shapes]
    return reference_step(cfg, xs), lambda dtype: torch_step(cfg, xs, dtype)


def main() -> None:
    print_table(CONFIGS, 46, steps)


if __name__ == "__main__":
    main()
