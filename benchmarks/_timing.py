"""Timing and table code shared by the reference-vs-torch benchmark scripts (``bench_conv``, ``bench_pooling``,
``bench_copies``): the two steps a config is timed by, and the table."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Step = Callable[[], Any]  # a forward + backward of one configuration, ready to time
TorchStep = Callable[[Any], Step]  # builds the torch step in the given torch dtype


def functional_step(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Step:
    """The reference's forward then its registered VJP (``reference.functional``), for a cotangent of
    ones shaped like the (first) output: how the declarations' references run."""
    from reference import functional as RF

    forward = getattr(RF, name)
    out = forward(*args, **kwargs)
    g = np.ones(np.shape(out[0] if isinstance(out, tuple) else out))

    def step() -> Any:
        forward(*args, **kwargs)
        return RF.vjp(name, *args, cotangent=g, **kwargs)

    return step


def module_step(module: Any, x: np.ndarray, dtype: Any) -> Step:
    """torch's forward and backward of ``module`` on ``x`` in ``dtype``, for a cotangent of ones."""
    import torch

    tx = torch.from_numpy(x).to(dtype).requires_grad_(True)
    g = torch.ones(tuple(module(tx).shape), dtype=dtype)

    def step() -> Any:
        tx.grad = None
        module(tx).backward(g)

    return step


def best_time(fn: Callable[[], Any], budget_s: float = 1.0, max_repeats: int = 50) -> float:
    """Best wall time of ``fn`` over repeats (after one warm-up call; at least 3, until ``budget_s`` is spent)."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < budget_s and len(times) < max_repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def time_config(reference_step: Step, torch_step: TorchStep) -> tuple[float, float, float]:
    """Best times of one configuration's forward + backward: the reference, torch float64, torch float32.

    ``torch_step(dtype)`` builds the torch step in that dtype.
    """
    import torch

    return (best_time(reference_step), best_time(torch_step(torch.float64)),
            best_time(torch_step(torch.float32)))


def print_table(configs: Sequence[Any], width: int,
                steps: Callable[[Any, np.random.Generator], tuple[Step, TorchStep]], rounds: int = 3) -> None:
    """Time every config and print one row each, then the median and worst ratio reference / torch-float64.

    ``steps(cfg, rng)`` draws the config's data from the shared ``rng`` and returns the reference step
    and a function of the torch dtype that builds the torch step. Each config has a ``label``.
    Every config is timed in ``rounds`` passes over the whole table, keeping each column's best:
    on a shared machine a busy spell (torch's worker threads waiting for a core) can last seconds,
    longer than one config's timing, and the passes spread each config's repeats over the run.
    """
    import torch

    rng = np.random.default_rng(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; numpy {np.__version__}; "
          f"best of {rounds} rounds")
    prepared = []
    for cfg in configs:
        reference_step, torch_step = steps(cfg, rng)
        prepared.append((reference_step, torch_step(torch.float64), torch_step(torch.float32)))
    best = [[float("inf")] * 3 for _ in configs]
    for _ in range(max(1, rounds)):
        for row, fns in zip(best, prepared):
            row[:] = [min(old, best_time(fn)) for old, fn in zip(row, fns)]
    header = f"{'config':{width}} {'reference':>10} {'torch f64':>10} {'torch f32':>10} {'ratio':>8}"
    print(header)
    print("-" * len(header))
    ratios = []
    for cfg, (t_ref, t64, t32) in zip(configs, best):
        ratios.append(t_ref / t64)
        print(f"{cfg.label:{width}} {t_ref * 1e3:8.2f}ms {t64 * 1e3:8.2f}ms {t32 * 1e3:8.2f}ms {t_ref / t64:7.1f}x")
    print(f"median ratio reference / torch-float64: {statistics.median(ratios):.1f}x (worst {max(ratios):.1f}x)")
