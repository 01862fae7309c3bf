"""Reference (NumPy, float64) vs torch-cpu timings of the recurrent family, forward + backward
through time.

Prints one row per representative configuration — the reference's time, torch's in float64 (the
reference's precision) and in float32, and the ratio reference / torch-float64 — then the median
ratio; then, for the same configurations, the cost of the running error analysis (the tolerance)
relative to the reference. A script, not a test: ``python benchmarks/bench_recurrent.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import best_time, print_table  # noqa: E402

from reference import recurrent as ref  # noqa: E402
from reference.recurrent_errors import Tracked  # noqa: E402
from reference.rnn_utils import sort_order  # noqa: E402


@dataclass(frozen=True)
class Config:
    label: str
    layer: str  # torch.nn class
    mode: str  # reference mode
    steps: int
    batch: int
    input_size: int
    hidden_size: int
    kwargs: dict[str, Any] = field(default_factory=dict)
    lengths: tuple[int, ...] | None = None  # packed input


CONFIGS = [
    Config("RNN tanh T32 B8 64->128", "RNN", "RNN_TANH", 32, 8, 64, 128),
    Config("RNN relu 2 layers T32 B8 64->64", "RNN", "RNN_RELU", 32, 8, 64, 64,
           dict(num_layers=2, nonlinearity="relu")),
    Config("LSTM T32 B8 64->128", "LSTM", "LSTM", 32, 8, 64, 128),
    Config("LSTM 2 layers bidir T16 B4 32->64", "LSTM", "LSTM", 16, 4, 32, 64, dict(num_layers=2, bidirectional=True)),
    Config("LSTM proj 64 T32 B8 64->128", "LSTM", "LSTM", 32, 8, 64, 128, dict(proj_size=64)),
    Config("LSTM packed bidir T32 B8 64->64", "LSTM", "LSTM", 32, 8, 64, 64, dict(bidirectional=True),
           lengths=(32, 30, 25, 20, 17, 9, 5, 1)),
    Config("GRU T32 B8 64->128", "GRU", "GRU", 32, 8, 64, 128),
    Config("GRU 3 layers T16 B4 32->32", "GRU", "GRU", 16, 4, 32, 32, dict(num_layers=3)),
]


def _config(cfg: Config) -> ref.RNNConfig:
    kw = cfg.kwargs
    return ref.RNNConfig(cfg.mode, cfg.input_size, cfg.hidden_size, kw.get("num_layers", 1), True,
                         kw.get("bidirectional", False), kw.get("proj_size", 0))


def _data(cfg: Config, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], ref.Form]:
    rc = _config(cfg)
    k = 1 / np.sqrt(cfg.hidden_size)
    inputs = {n: rng.uniform(-k, k, s) for n, s in ref.parameter_shapes(rc).items()}
    inputs["input"] = rng.standard_normal((cfg.steps, cfg.batch, cfg.input_size))
    form = ref.Form()
    if cfg.lengths is not None:
        lengths = np.asarray(cfg.lengths)
        form = ref.Form(lengths=lengths, order=sort_order(lengths))
    outputs, _ = ref.module_call(ref.EXACT, rc, form, inputs)
    cotangents = {n: rng.standard_normal(v.shape) for n, v in outputs.items()}
    return inputs, cotangents, form


def reference_step(cfg: Config, inputs: dict[str, np.ndarray], cotangents: dict[str, np.ndarray],
                   form: ref.Form, arithmetic: Any = ref.EXACT) -> Callable[[], Any]:
    rc = _config(cfg)

    def step() -> Any:
        outputs, pullback = ref.module_call(arithmetic, rc, form, inputs)
        return outputs, pullback(cotangents)

    return step


def torch_step(cfg: Config, inputs: dict[str, np.ndarray], cotangents: dict[str, np.ndarray],
               dtype: Any) -> Callable[[], Any]:
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence

    module = getattr(torch.nn, cfg.layer)(cfg.input_size, cfg.hidden_size, **cfg.kwargs).to(dtype)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.from_numpy(inputs[name]))
    x = torch.from_numpy(inputs["input"]).to(dtype).requires_grad_(True)
    cots = {n: torch.from_numpy(v).to(dtype) for n, v in cotangents.items()}

    def step() -> Any:
        module.zero_grad(set_to_none=True)
        x.grad = None
        arg = x if cfg.lengths is None else pack_padded_sequence(x, list(cfg.lengths), enforce_sorted=False)
        out, state = module(arg)
        out = out if cfg.lengths is None else out.data
        h, c = state if isinstance(state, tuple) else (state, None)
        roots, grads = [out, h], [cots["output"], cots["h_n"]]
        if c is not None:
            roots.append(c)
            grads.append(cots["c_n"])
        torch.autograd.backward(roots, grads)

    return step


def steps(cfg: Config, rng: np.random.Generator) -> tuple[Callable[[], Any], Callable[[Any], Callable[[], Any]]]:
    inputs, cotangents, form = _data(cfg, rng)
    return reference_step(cfg, inputs, cotangents, form), lambda dtype: torch_step(cfg, inputs, cotangents, dtype)


def main() -> None:
    print_table(CONFIGS, 36, steps)
    print("\nerror analysis (tolerance) / reference:")
    rng = np.random.default_rng(1)
    for cfg in CONFIGS:
        inputs, cotangents, form = _data(cfg, rng)
        t_ref = best_time(reference_step(cfg, inputs, cotangents, form))
        t_err = best_time(reference_step(cfg, inputs, cotangents, form, Tracked(2.0**-24, 2.0**-149, 2.0**-126)))
        print(f"{cfg.label:36} {t_err * 1e3:8.2f}ms {t_err / t_ref:7.1f}x")


if __name__ == "__main__":
    main()
