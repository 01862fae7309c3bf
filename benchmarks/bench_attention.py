"""Reference (NumPy, float64) vs torch-cpu timings of the attention, linear and distance families,
forward + backward at realistic sizes.

Prints one row per configuration — the reference's time, torch's in float64 (the reference's
precision) and in float32, and the ratio reference / torch-float64 — then the median and worst
ratio. A script, not a test: ``python benchmarks/bench_attention.py [--rounds N]`` (each config's
best over N passes over the table, default 3: see ``_timing.print_table``).

Measured on the project's shared 2-core machine, torch 2.13.0+cpu (2 threads), numpy 2.4.6,
``--rounds 2``; ratio = reference / torch-float64 (PairwiseDistance is the existing range-safe
reference, scaled powers in float64):

    config                                    reference  torch f64  torch f32    ratio
    ----------------------------------------------------------------------------------
    sdpa B4 H8 L128 S128 E64                    21.42ms    15.39ms     5.80ms     1.4x
    sdpa causal B2 H8 L256 E64                  36.90ms    23.54ms     9.05ms     1.6x
    sdpa gqa B2 H8/2 L128 E64                    9.81ms     7.37ms     2.98ms     1.3x
    MHA E256 H8 L64 N8                          34.32ms    22.35ms     9.55ms     1.5x
    EncoderLayer d256 h8 ff1024 L64 N8          95.71ms    51.90ms    22.22ms     1.8x
    DecoderLayer d128 h4 ff512 L32 S48 N8       17.49ms    14.02ms     6.00ms     1.2x
    Linear 1024x512->512                        19.68ms    25.32ms    10.93ms     0.8x
    Bilinear 512x(64,64)->64                    28.47ms   108.80ms    39.27ms     0.3x
    CosineSimilarity 4096x128                   12.47ms     4.80ms     2.69ms     2.6x
    PairwiseDistance p=2 4096x128               11.40ms     2.06ms     1.19ms     5.5x
    median ratio reference / torch-float64: 1.5x (worst 5.5x)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import print_table  # noqa: E402

from reference import attention as RA  # noqa: E402
from reference import distance as RD  # noqa: E402
from reference import linear as RL  # noqa: E402
from reference import transformer as TR  # noqa: E402


@dataclass(frozen=True)
class Config:
    label: str
    layer: str
    sizes: dict[str, Any] = field(default_factory=dict)


CONFIGS = [
    Config("sdpa B4 H8 L128 S128 E64", "sdpa", dict(B=4, H=8, L=128, S=128, E=64)),
    Config("sdpa causal B2 H8 L256 E64", "sdpa", dict(B=2, H=8, L=256, S=256, E=64, is_causal=True)),
    Config("sdpa gqa B2 H8/2 L128 E64", "sdpa", dict(B=2, H=8, Hk=2, L=128, S=128, E=64)),
    Config("MHA E256 H8 L64 N8", "mha", dict(E=256, H=8, L=64, N=8)),
    Config("EncoderLayer d256 h8 ff1024 L64 N8", "encoder", dict(d=256, h=8, ff=1024, L=64, N=8)),
    Config("DecoderLayer d128 h4 ff512 L32 S48 N8", "decoder", dict(d=128, h=4, ff=512, L=32, S=48, N=8)),
    Config("Linear 1024x512->512", "linear", dict(N=1024, i=512, o=512)),
    Config("Bilinear 512x(64,64)->64", "bilinear", dict(N=512, i1=64, i2=64, o=64)),
    Config("CosineSimilarity 4096x128", "cosine", dict(N=4096, D=128)),
    Config("PairwiseDistance p=2 4096x128", "pairwise", dict(N=4096, D=128)),
]


def _module_params(module: Any) -> dict[str, np.ndarray]:
    return {n: p.detach().double().numpy().copy() for n, p in module.named_parameters()}


def steps(cfg: Config, rng: np.random.Generator) -> tuple[Any, Any]:
    import torch

    s = cfg.sizes
    if cfg.layer == "sdpa":
        hk = s.get("Hk", s["H"])
        q = rng.standard_normal((s["B"], s["H"], s["L"], s["E"]))
        k, v = rng.standard_normal((s["B"], hk, s["S"], s["E"])), rng.standard_normal((s["B"], hk, s["S"], s["E"]))
        kw = dict(is_causal=s.get("is_causal", False), enable_gqa=hk != s["H"])
        g = rng.standard_normal(q.shape)

        def ref_step() -> Any:
            att = RA.sdpa_forward(q, k, v, **kw)
            return att.pullback(g)

        def torch_step(dtype: Any) -> Any:
            tq, tk, tv = (torch.tensor(a, dtype=dtype, requires_grad=True) for a in (q, k, v))
            tg = torch.tensor(g, dtype=dtype)
            return lambda: torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, **kw).backward(tg)

        return ref_step, torch_step
    if cfg.layer == "mha":
        module = torch.nn.MultiheadAttention(s["E"], s["H"]).double()
        params = RA.mha_module_params(_module_params(module))
        x = rng.standard_normal((s["L"], s["N"], s["E"]))
        g = rng.standard_normal(x.shape)

        def ref_step() -> Any:
            fw = RA.multi_head_attention(x, x, x, s["E"], s["H"], **params, add_zero_attn=False, dropout_p=0.0,
                                         need_weights=False)
            return fw.pullback(g)

        def torch_step(dtype: Any) -> Any:
            m = torch.nn.MultiheadAttention(s["E"], s["H"]).to(dtype)
            tx = torch.tensor(x, dtype=dtype, requires_grad=True)
            tg = torch.tensor(g, dtype=dtype)
            return lambda: m(tx, tx, tx, need_weights=False)[0].backward(tg)

        return ref_step, torch_step
    if cfg.layer in ("encoder", "decoder"):
        cls = torch.nn.TransformerEncoderLayer if cfg.layer == "encoder" else torch.nn.TransformerDecoderLayer
        module = cls(s["d"], s["h"], s["ff"], dropout=0.0).double()
        params = _module_params(module)
        x = rng.standard_normal((s["L"], s["N"], s["d"]))
        mem = rng.standard_normal((s.get("S", 1), s["N"], s["d"]))
        g = rng.standard_normal(x.shape)

        def ref_step() -> Any:
            if cfg.layer == "encoder":
                _, back = TR.encoder_layer(x, params, s["h"], dropout=0.0)
            else:
                _, back = TR.decoder_layer(x, mem, params, s["h"], dropout=0.0)
            return back(g)

        def torch_step(dtype: Any) -> Any:
            m = cls(s["d"], s["h"], s["ff"], dropout=0.0).to(dtype)
            tx = torch.tensor(x, dtype=dtype, requires_grad=True)
            tm = torch.tensor(mem, dtype=dtype, requires_grad=True)
            tg = torch.tensor(g, dtype=dtype)
            return (lambda: m(tx).backward(tg)) if cfg.layer == "encoder" else (lambda: m(tx, tm).backward(tg))

        return ref_step, torch_step
    if cfg.layer == "linear":
        x, w = rng.standard_normal((s["N"], s["i"])), rng.standard_normal((s["o"], s["i"]))
        b = rng.standard_normal(s["o"])
        g = rng.standard_normal((s["N"], s["o"]))
        return (lambda: (RL.linear(x, w, b), RL._linear_vjp(g, x, w, b)),
                lambda dtype: _torch_call(torch.nn.functional.linear, (x, w, b), g, dtype))
    if cfg.layer == "bilinear":
        x1, x2 = rng.standard_normal((s["N"], s["i1"])), rng.standard_normal((s["N"], s["i2"]))
        w, b = rng.standard_normal((s["o"], s["i1"], s["i2"])), rng.standard_normal(s["o"])
        g = rng.standard_normal((s["N"], s["o"]))
        return (lambda: (RL.bilinear(x1, x2, w, b), RL._bilinear_vjp(g, x1, x2, w, b)),
                lambda dtype: _torch_call(torch.nn.functional.bilinear, (x1, x2, w, b), g, dtype))
    x1, x2 = rng.standard_normal((s["N"], s["D"])), rng.standard_normal((s["N"], s["D"]))
    g = rng.standard_normal(s["N"])
    if cfg.layer == "cosine":
        return (lambda: (RD.cosine_similarity(x1, x2), RD._cosine_similarity_vjp(g, x1, x2)),
                lambda dtype: _torch_call(torch.nn.functional.cosine_similarity, (x1, x2), g, dtype))
    return (lambda: (RD.pairwise_distance(x1, x2, 2.0, 1e-6, False, False),
                     RD.pairwise_distance_vjp(x1, x2, 2.0, 1e-6, False, g, False)),
            lambda dtype: _torch_call(torch.nn.functional.pairwise_distance, (x1, x2), g, dtype))


def _torch_call(fn: Any, arrays: tuple[np.ndarray, ...], g: np.ndarray, dtype: Any) -> Any:
    import torch

    tensors = [torch.tensor(a, dtype=dtype, requires_grad=True) for a in arrays]
    tg = torch.tensor(g, dtype=dtype)
    return lambda: fn(*tensors).backward(tg)


def main() -> None:
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 3
    print_table(CONFIGS, 40, steps, rounds=rounds)


if __name__ == "__main__":
    main()
