"""Reference (NumPy, float64) vs torch-cpu timings of the structured losses at realistic sizes,
forward + backward (one call each of the registered ``reference.functional`` forward and VJP).

Prints one row per configuration — the reference's time, torch's in float64 and in float32, and
the ratio reference / torch-float64 — then the median ratio. A script, not a test:
``python benchmarks/bench_loss_structured.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import print_table  # noqa: E402

from reference import loss_adaptive as adaptive  # noqa: E402
from reference import loss_ctc as ctc  # noqa: E402
from reference.registry import FUNCTIONS  # noqa: E402
from reference.softmax import log_softmax  # noqa: E402

_ = (adaptive, ctc)  # imported for their registrations


class Config:
    def __init__(self, label: str, kind: str, **sizes: int):
        self.label, self.kind, self.sizes = label, kind, sizes


CONFIGS = [
    Config("CTCLoss T=50 N=16 C=20 S=30", "ctc", t=50, n=16, c=20, s=30),
    Config("CTCLoss T=200 N=8 C=32 S=60", "ctc", t=200, n=8, c=32, s=60),
    Config("AdaptiveLogSoftmax N=256 d=128 classes 2000 [100, 1000]", "adaptive", n=256, d=128, classes=2000),
    Config("LinearCrossEntropy N=512 d=256 C=1000", "lce", n=512, d=256, c=1000),
]


def _steps(cfg: Config, rng: np.random.Generator) -> tuple[Any, Any]:
    import torch

    z = cfg.sizes
    if cfg.kind == "ctc":
        lp = log_softmax(rng.standard_normal((z["t"], z["n"], z["c"])), -1)
        targets = rng.integers(1, z["c"], size=(z["n"], z["s"]))
        il, tl = np.full(z["n"], z["t"]), rng.integers(z["s"] // 2, z["s"] + 1, z["n"])
        args, kwargs, g = (lp, targets, il, tl), {"reduction": "mean"}, np.array(1.0)
        entry = FUNCTIONS["ctc_loss"]

        def torch_step(dtype):
            x = torch.from_numpy(lp).to(dtype).requires_grad_(True)
            t, i, ll = torch.from_numpy(targets), torch.from_numpy(il), torch.from_numpy(tl)
            return lambda: torch.nn.functional.ctc_loss(x, t, i, ll).backward()
    elif cfg.kind == "adaptive":
        cutoffs, d = [100, 1000], z["d"]
        sizes = adaptive.cluster_sizes(d, z["classes"], cutoffs, 4.0)
        head = rng.standard_normal((cutoffs[0] + 2, d)) / np.sqrt(d)
        tail = [(rng.standard_normal((h, d)) / np.sqrt(d), rng.standard_normal((o, h)) / np.sqrt(h)) for h, o in sizes]
        x, target = rng.standard_normal((z["n"], d)), rng.integers(0, z["classes"], z["n"])
        args, kwargs, g = (x, target, head, tail, cutoffs), {}, (np.zeros(z["n"]), np.array(1.0))
        entry = FUNCTIONS["adaptive_log_softmax_with_loss"]

        def torch_step(dtype):
            m = torch.nn.AdaptiveLogSoftmaxWithLoss(d, z["classes"], cutoffs).to(dtype)
            tx, tt = torch.from_numpy(x).to(dtype).requires_grad_(True), torch.from_numpy(target)
            return lambda: m(tx, tt).loss.backward()
    else:
        x, w = rng.standard_normal((z["n"], z["d"])), rng.standard_normal((z["c"], z["d"])) / np.sqrt(z["d"])
        target = rng.integers(0, z["c"], z["n"])
        args, kwargs, g = (x, w, target), {}, np.array(1.0)
        entry = FUNCTIONS["linear_cross_entropy"]

        def torch_step(dtype):
            tx, tw = torch.from_numpy(x).to(dtype).requires_grad_(True), torch.from_numpy(w).to(dtype).requires_grad_()
            tt = torch.from_numpy(target)
            return lambda: torch.nn.functional.linear_cross_entropy(tx, tw, tt).backward()

    return (lambda: (entry.forward(*args, **kwargs), entry.vjp(g, *args, **kwargs))), torch_step


if __name__ == "__main__":
    print_table(CONFIGS, 56, _steps)
