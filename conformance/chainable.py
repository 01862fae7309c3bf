"""The catalogue layers a composed model may chain, each reusing its own declaration.

Per layer: which activations it accepts, how its constructor arguments and arrays are drawn for a
given input (small, valid by construction, simplest first), how errors propagate through it (see
``conformance.composition``), whether it is exact on integers (it may then appear in exact-tier
chains) and its functional form (``torch.nn.functional``), used by the ParameterList model.

Error propagation of the non-multilinear layers (first order; E_x, E_g: bounds on the input's and
the output cotangent's errors; all operations elementwise, sums and means per slice):

- ReLU: |relu(x + e) - relu(x)| <= |e|, so E_y = E_x. Backward: E_g where x > E_x, 0 where
  x <= -E_x, and |g| + E_g between (the backend's input may lie on either side of the kink).
- MaxPool2d: the window max is 1-Lipschitz: E_y = max of E_x over the window (the reference on
  E_x). Backward: E_g routed like g, plus |g| + E_g to every position of a window whose maximum is
  ambiguous (another element within E_x of it could be selected instead).
- BatchNorm1d/2d, batch statistics (K values per channel, x̂ = (x - μ)/σ): δμ = mean δx,
  δσ = mean((x - μ)·δx)/σ, so |δx̂| <= D = (E_x + mean E_x)/σ + |x̂|·mean(|x - μ|·E_x)/σ² and
  E_y = |w|·D. Running buffers: m·mean E_x and m·K/(K - 1)·2·mean(|x - μ|·E_x). Backward
  dx = (w/σ)·(g - mean g - x̂·mean(g·x̂)): (|w|/σ)·(E_g + mean E_g + |x̂|·mean(|x̂|·E_g)) from the
  cotangent, (|w|·δσ/σ²)·|bracket| + (|w|/σ)·(D·|mean(g·x̂)| + |x̂|·mean(|g|·D)) from the input;
  grad.weight Σ(E_g·|x̂| + (|g| + E_g)·D), grad.bias Σ E_g. Running statistics (eval): E_y =
  |w|/σ·E_x, dx: |w|/σ·E_g, grad.weight Σ(E_g·|x - mean| + (|g| + E_g)·E_x)/σ.
- Softmax (y along dim): J = diag(y) - y·yᵀ, so E_y = y·(E_x + Σ y·E_x). Backward dx = y·(g - S),
  S = Σ y·g: y·(E_g + Σ y·E_g) from the cotangent, E_y·|g - S| + y·Σ E_y·|g| from the input.
- CrossEntropyLoss (last stage of a functional model, unit sample weights): E_L = Σ |∂L/∂x|·E_x
  (the VJP with unit cotangents); dx = s·g·(softmax(x) - q) changes with x through the softmax
  Jacobian: s·|g|·y·(E_x + Σ y·E_x), s = 1/N for 'mean'.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from conformance import strategies as S
from conformance.composition import PROPAGATION, DrawnLayer, LayerRun, Propagation, multilinear, reference_on
from conformance.dtypes import DTYPES
from reference.pooling import pool_taps, window_positions

F = "torch.nn.functional."


@dataclass(frozen=True)
class Context:
    """What a layer's draw may depend on besides its input."""

    dtype: str
    tier: str
    position: int
    previous: str | None
    functional: bool  # the layer runs through its functional form (ParameterList model)
    label: str  # label prefix of the layer's draws: "layer[i]"
    # the result must not depend on how the batch is split (DataParallel scatters it over devices):
    # BatchNorm only with running statistics, in evaluation mode
    split_invariant: bool = False
    # larger channel counts (up to WIDE): vectorised kernels take other paths past 8 or 16 channels
    wide: bool = False


WIDE = 64


@dataclass(frozen=True)
class Chainable:
    op: str
    short: str  # child-name stem in an OrderedDict model
    accepts: Callable[[np.ndarray], bool]
    draw: Callable[[S.Drawer, Context, np.ndarray], DrawnLayer]
    propagation: Propagation
    functional: Callable[[dict[str, Any], Any, dict[str, Any]], Any]
    exact: bool = False  # bit-exact on integers: may appear in exact-tier chains
    saves_output: bool = False  # its backward reads its output: no in-place layer may follow
    terminal: bool = False  # a loss: only last, and only in a functional model (it takes a target)


def call(target: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Call node of a function whose arguments are nodes already."""
    return {"call": {"target": target, "args": list(args), "kwargs": kwargs}}


def _values(d: S.Drawer, ctx: Context, shape: tuple[int, ...], name: str, *, int_limit: int = 1,
            scale: float = 1.0, positive: bool = False) -> np.ndarray:
    arr = S.values(d, shape, ctx.dtype, ctx.tier, f"{ctx.label}.{name}", int_limit=int_limit, scale=scale,
                   positive=positive)
    return arr.reshape(shape)


def _floats(x: np.ndarray) -> bool:
    return x.dtype.kind == "f"


def _image(x: np.ndarray) -> bool:
    return _floats(x) and x.ndim == 4


# -- Linear ----------------------------------------------------------------------------------------

def _draw_linear(d: S.Drawer, ctx: Context, x: np.ndarray) -> DrawnLayer:
    fan_in = x.shape[-1]
    out = d.integer(1, WIDE if ctx.wide else 8, f"{ctx.label}.out_features")
    bias = d.choice((True, False), f"{ctx.label}.bias")
    arrays = {"weight": _values(d, ctx, (out, fan_in), "weight", scale=1 / math.sqrt(fan_in))}
    if bias:
        arrays["bias"] = _values(d, ctx, (out,), "bias", int_limit=2)
    return DrawnLayer("Linear", {"in_features": fan_in, "out_features": out, "bias": bias}, arrays, tuple(arrays))


def _linear_functional(params: dict[str, Any], x: Any, nodes: dict[str, Any]) -> Any:
    return call(F + "linear", x, nodes["weight"], nodes.get("bias"))


# -- Conv2d ----------------------------------------------------------------------------------------

def _draw_conv2d(d: S.Drawer, ctx: Context, x: np.ndarray) -> DrawnLayer:
    """Kernel 1-3, stride 1-2, dilation 1-2, numeric/'same'/'valid' padding, every padding mode
    where its size allows it (zeros in a functional model), plain or depthwise groups."""
    _, channels, h, w = x.shape
    lab = ctx.label
    if d.choice(("plain", "depthwise"), f"{lab}.groups") == "depthwise":
        groups, out = channels, channels * d.integer(1, 2, f"{lab}.depth multiplier")
    else:
        groups, out = 1, d.integer(1, WIDE if ctx.wide else 6, f"{lab}.out_channels")
    kind = d.choice(("numeric", "same", "valid"), f"{lab}.padding kind")
    sizes = (h, w)
    kernel = tuple(d.integer(1, min(3, s) if kind == "valid" else 3, f"{lab}.kernel_size[{i}]")
                   for i, s in enumerate(sizes))
    pads = []
    for i, (k, s) in enumerate(zip(kernel, sizes)):
        low = max(0, -(-(k - s) // 2))
        pads.append(d.integer(low, max(low, k // 2), f"{lab}.padding[{i}]") if kind == "numeric" else 0)
    dilation = tuple(2 if kind != "valid" and s + 2 * p >= 2 * (k - 1) + 1 and d.flag(f"{lab}.dilation[{i}]") else 1
                     for i, (k, s, p) in enumerate(zip(kernel, sizes, pads)))
    stride = (1, 1) if kind == "same" else tuple(d.integer(1, 2, f"{lab}.stride[{i}]") for i in range(2))
    mode = "zeros" if ctx.functional or kind != "numeric" else d.choice(
        ("zeros", "reflect", "replicate", "circular"), f"{lab}.padding_mode")
    if (mode == "reflect" and any(p >= s for p, s in zip(pads, sizes))) or (
            mode == "circular" and any(p > s for p, s in zip(pads, sizes))):
        mode = "zeros"
    bias = d.choice((True, False), f"{lab}.bias")
    fan_in = channels // groups * kernel[0] * kernel[1]
    arrays = {"weight": _values(d, ctx, (out, channels // groups, *kernel), "weight", scale=1 / math.sqrt(fan_in))}
    if bias:
        arrays["bias"] = _values(d, ctx, (out,), "bias", int_limit=2)
    params = {"in_channels": channels, "out_channels": out, "kernel_size": kernel, "stride": stride,
              "padding": tuple(pads) if kind == "numeric" else kind, "dilation": dilation, "groups": groups,
              "bias": bias, "padding_mode": mode}
    return DrawnLayer("Conv2d", params, arrays, tuple(arrays))


def _conv2d_functional(params: dict[str, Any], x: Any, nodes: dict[str, Any]) -> Any:
    return call(F + "conv2d", x, nodes["weight"], nodes.get("bias"), params["stride"], params["padding"],
                params["dilation"], params["groups"])


# -- BatchNorm1d / BatchNorm2d -------------------------------------------------------------------------------------

def _draw_bn(d: S.Drawer, ctx: Context, x: np.ndarray) -> DrawnLayer:
    """BatchNorm1d on (N, C) / (N, C, L), BatchNorm2d on (N, C, H, W): eps, momentum (None:
    cumulative average), affine, running statistics (never in a functional model, which calls
    F.batch_norm with batch statistics)."""
    channels = x.shape[1]
    lab = ctx.label
    params = {"num_features": channels, "eps": d.choice((1e-5, 1e-3), f"{lab}.eps"),
              "momentum": d.choice((0.1, None, 0.5), f"{lab}.momentum"),
              "affine": d.choice((True, False), f"{lab}.affine"),
              "track_running_stats": ctx.split_invariant or (
                  not ctx.functional and d.choice((True, False), f"{lab}.track_running_stats"))}
    arrays: dict[str, np.ndarray] = {}
    if params["affine"]:
        arrays["weight"] = _values(d, ctx, (channels,), "weight")
        arrays["bias"] = _values(d, ctx, (channels,), "bias")
    parameters = tuple(arrays)
    buffers: tuple[str, ...] = ()
    if params["track_running_stats"]:
        arrays["running_mean"] = _values(d, ctx, (channels,), "running_mean")
        rng = np.random.default_rng(d.integer(0, 2**32 - 1, f"{lab}.running_var.seed"))
        arrays["running_var"] = DTYPES[ctx.dtype].round(rng.uniform(0.25, 2.0, channels))
        arrays["num_batches_tracked"] = np.array(d.integer(0, 5, f"{lab}.num_batches_tracked"), dtype=np.int64)
        buffers = ("running_mean", "running_var", "num_batches_tracked")
    return DrawnLayer("BatchNorm2d" if x.ndim == 4 else "BatchNorm1d", params, arrays, parameters, buffers, buffers)


def _bn2d_functional(params: dict[str, Any], x: Any, nodes: dict[str, Any]) -> Any:
    return call(F + "batch_norm", x, None, None, nodes.get("weight"), nodes.get("bias"), True,
                params["momentum"] if params["momentum"] is not None else 0.1, params["eps"])


def _csum(v: np.ndarray) -> np.ndarray:
    """Per-channel (axis 1) sum over every other axis, keeping the dims."""
    return v.sum(axis=tuple(i for i in range(v.ndim) if i != 1), keepdims=True)


def _channel(v: np.ndarray | None, x: np.ndarray, default: float) -> np.ndarray:
    values = np.full(x.shape[1], default) if v is None else np.asarray(v, dtype=np.float64)
    return values.reshape(1, -1, *([1] * (x.ndim - 2)))


def _bn_batch_stats(run: LayerRun) -> bool:
    return run.case.train or not run.case.params["track_running_stats"]


def _bn_parts(run: LayerRun, e_x: np.ndarray) -> dict[str, Any]:
    x = run.x
    c = x.shape[1]
    inp = run.case.inputs
    w = _channel(inp.get("weight"), x, 1.0)
    k = x.size // c
    if _bn_batch_stats(run):
        mean = _csum(x) / k
        var = _csum((x - mean) ** 2) / k
        sigma = np.sqrt(var + run.case.params["eps"])
        dev = np.abs(x - mean)
        d_sigma = _csum(dev * e_x) / k / sigma
        xhat = (x - mean) / sigma
        dxhat = (e_x + _csum(e_x) / k) / sigma + np.abs(xhat) * d_sigma / sigma
    else:
        mean = _channel(inp["running_mean"], x, 0.0)
        sigma = np.sqrt(_channel(inp["running_var"], x, 1.0) + run.case.params["eps"])
        dev, d_sigma = np.abs(x - mean), np.zeros_like(sigma)
        xhat = (x - mean) / sigma
        dxhat = e_x / sigma
    return {"w": w, "k": k, "mean": mean, "sigma": sigma, "dev": dev, "d_sigma": d_sigma, "xhat": xhat,
            "dxhat": dxhat}


def _bn_forward(run: LayerRun, e_x: np.ndarray | None) -> dict[str, np.ndarray]:
    assert e_x is not None
    p = _bn_parts(run, e_x)
    out = {"output": np.abs(p["w"]) * p["dxhat"]}
    params = run.case.params
    if params["track_running_stats"] and run.case.train:
        from reference.normalization import momentum_factor

        m = momentum_factor(params["momentum"], int(run.case.inputs["num_batches_tracked"]) + 1)
        k = p["k"]
        out["state.running_mean"] = (m * _csum(e_x) / k).reshape(-1)
        out["state.running_var"] = (m * k / max(k - 1, 1) * 2 * _csum(p["dev"] * e_x) / k).reshape(-1)
    return out


def _bn_backward(run: LayerRun, e_x: np.ndarray | None, e_g: np.ndarray) -> dict[str, np.ndarray]:
    assert e_x is not None
    p = _bn_parts(run, e_x)
    g = run.case.cotangents["output"]
    ag = np.abs(g)
    w, k, sigma, xhat, dxhat = np.abs(p["w"]), p["k"], p["sigma"], p["xhat"], p["dxhat"]
    out: dict[str, np.ndarray] = {}
    if _bn_batch_stats(run):
        dot = _csum(g * xhat) / k
        bracket = g - _csum(g) / k - xhat * dot
        out["grad.input"] = (w / sigma * (e_g + _csum(e_g) / k + np.abs(xhat) * _csum(np.abs(xhat) * e_g) / k)
                             + w * p["d_sigma"] / sigma**2 * np.abs(bracket)
                             + w / sigma * (dxhat * np.abs(dot) + np.abs(xhat) * _csum(ag * dxhat) / k))
    else:
        out["grad.input"] = w / sigma * e_g
    if "weight" in run.case.inputs:
        out["grad.weight"] = _csum(e_g * np.abs(xhat) + (ag + e_g) * dxhat).reshape(-1)
        out["grad.bias"] = _csum(e_g).reshape(-1)
    return out


# -- ReLU --------------------------------------------------------------------------------------------

def _draw_relu(d: S.Drawer, ctx: Context, x: np.ndarray) -> DrawnLayer:
    """In place only where torch allows it: not on the model's input (a leaf), not after a layer
    whose backward reads its output."""
    allowed = ctx.position > 0 and ctx.previous is not None and not CHAINABLE[ctx.previous].saves_output
    return DrawnLayer("ReLU", {"inplace": allowed and d.flag(f"{ctx.label}.inplace")})


def _relu_forward(run: LayerRun, e_x: np.ndarray | None) -> dict[str, np.ndarray]:
    return {"output": e_x} if e_x is not None else {}


def _relu_backward(run: LayerRun, e_x: np.ndarray | None, e_g: np.ndarray) -> dict[str, np.ndarray]:
    x = run.x
    e = np.zeros(x.shape) if e_x is None else e_x
    g = np.abs(run.case.cotangents["output"])
    return {"grad.input": np.where(x > e, e_g, np.where(x <= -e, 0.0, g + e_g))}


# -- MaxPool2d / AvgPool2d -------------------------------------------------------------------------------

def _draw_window(d: S.Drawer, ctx: Context, x: np.ndarray) -> dict[str, Any]:
    """Kernel 1-3 (at most the input), stride the kernel or 1..kernel, padding <= kernel // 2,
    ceil_mode (dilation 1: a dilated window may lie wholly in the padding, a recorded torch bug)."""
    lab = ctx.label
    kernel = tuple(d.integer(1, min(3, s), f"{lab}.kernel_size[{i}]") for i, s in enumerate(x.shape[2:]))
    stride = None if d.choice(("kernel", "explicit"), f"{lab}.stride kind") == "kernel" else tuple(
        d.integer(1, k, f"{lab}.stride[{i}]") for i, k in enumerate(kernel))
    padding = tuple(d.integer(0, k // 2, f"{lab}.padding[{i}]") for i, k in enumerate(kernel))
    return {"kernel_size": kernel, "stride": stride, "padding": padding, "ceil_mode": d.flag(f"{lab}.ceil_mode")}


def _draw_maxpool(d: S.Drawer, ctx: Context, x: np.ndarray) -> DrawnLayer:
    return DrawnLayer("MaxPool2d", {**_draw_window(d, ctx, x), "dilation": 1, "return_indices": False})


def _draw_avgpool(d: S.Drawer, ctx: Context, x: np.ndarray) -> DrawnLayer:
    params = {**_draw_window(d, ctx, x), "count_include_pad": d.choice((True, False), f"{ctx.label}.count_include_pad"),
              "divisor_override": None}
    return DrawnLayer("AvgPool2d", params)


def _maxpool_forward(run: LayerRun, e_x: np.ndarray | None) -> dict[str, np.ndarray]:
    return {} if e_x is None else {"output": reference_on(run, False, input=e_x).outputs["output"]}


def _windows(run: LayerRun) -> tuple[np.ndarray, np.ndarray]:
    """Flat in-plane positions and validity of every tap of every window: (1, oh, ow, kh·kw)."""
    p = run.case.params
    kernel = tuple(p["kernel_size"])
    stride = tuple(p["stride"]) if p["stride"] is not None else kernel
    taps = pool_taps(run.x.shape[2:], kernel, stride, tuple(p["padding"]), (1, 1), bool(p["ceil_mode"]))
    flat, valid = window_positions(run.x.shape[2:], taps)
    return flat.reshape(*flat.shape[:3], -1), valid.reshape(*valid.shape[:3], -1)


def _maxpool_backward(run: LayerRun, e_x: np.ndarray | None, e_g: np.ndarray) -> dict[str, np.ndarray]:
    x = run.x
    e = np.zeros(x.shape) if e_x is None else e_x
    routed = np.abs(reference_on(run, True, e_g, input=x).grads["input"])
    n, c = x.shape[:2]
    planes, plane = n * c, int(np.prod(x.shape[2:]))
    flat, valid = _windows(run)
    idx = np.broadcast_to(flat, (planes, *flat.shape[1:])).reshape(planes, -1)
    xs = np.take_along_axis(x.reshape(planes, -1), idx, axis=1).reshape(planes, *flat.shape[1:])
    es = np.take_along_axis(e.reshape(planes, -1), idx, axis=1).reshape(planes, *flat.shape[1:])
    ok = np.broadcast_to(valid, xs.shape)
    keyed = np.where(ok, xs, -np.inf)
    top = keyed.max(axis=-1, keepdims=True)
    e_top = np.where(ok & (keyed == top), es, 0.0).max(axis=-1, keepdims=True)
    candidates = ok & (keyed + es >= top - e_top)
    ambiguous = candidates.sum(axis=-1, keepdims=True) >= 2
    weight = (np.abs(run.case.cotangents["output"]) + e_g).reshape(planes, *flat.shape[1:3], 1)
    spread = np.where(candidates & ambiguous, weight, 0.0)
    offsets = (np.arange(planes) * plane)[:, None, None, None]
    extra = np.bincount((np.where(ok, idx.reshape(xs.shape), 0) + offsets).ravel(), weights=spread.ravel(),
                        minlength=planes * plane)
    return {"grad.input": routed + extra.reshape(x.shape)}


def _pool_functional(name: str) -> Callable[[dict[str, Any], Any, dict[str, Any]], Any]:
    def node(params: dict[str, Any], x: Any, nodes: dict[str, Any]) -> Any:
        if name == "max_pool2d":
            return call(F + name, x, params["kernel_size"], params["stride"], params["padding"], params["dilation"],
                        params["ceil_mode"])
        return call(F + name, x, params["kernel_size"], params["stride"], params["padding"], params["ceil_mode"],
                    params["count_include_pad"], params["divisor_override"])
    return node


# -- Softmax -----------------------------------------------------------------------------------------

def _draw_softmax(d: S.Drawer, ctx: Context, x: np.ndarray) -> DrawnLayer:
    return DrawnLayer("Softmax", {"dim": d.choice((-1, 1), f"{ctx.label}.dim")})


def _softmax_parts(run: LayerRun, e_x: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """E_y: the first-order bound y·(E_x + Σ y·E_x), and at least the exact reach of the input box:
    y'_i = y_i·e^{d_i} / Σ_j y_j·e^{d_j} with |d_j| <= E_j lies within [lo_i, hi_i],
    hi_i = y_i·e^{E_i} / (y_i·e^{E_i} + Σ_{j≠i} y_j·e^{-E_j}) and lo_i likewise with the signs
    swapped (computed in logs). The first order underestimates once E_x reaches O(1) (a logit
    error of 6 multiplies a small probability by e^6, not by 7); and y' stays within [0, 1]."""
    y = run.result.outputs["output"]
    axis = run.case.params["dim"] % y.ndim
    first = y * (e_x + np.sum(y * e_x, axis=axis, keepdims=True))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_y = np.log(y)

        def others(log_terms: np.ndarray) -> np.ndarray:  # log Σ_{j≠i} exp(log_terms_j)
            total = np.logaddexp.reduce(log_terms, axis=axis, keepdims=True)
            return total + np.log1p(-np.exp(np.minimum(log_terms - total, 0.0)))

        hi = 1.0 / (1.0 + np.exp(others(log_y - e_x) - (log_y + e_x)))
        lo = 1.0 / (1.0 + np.exp(others(log_y + e_x) - (log_y - e_x)))
        reach = np.nan_to_num(np.maximum(hi - y, y - lo), nan=0.0)
    return y, axis, np.minimum(np.maximum(first, reach), np.maximum(y, 1.0 - y))  # y' stays in [0, 1]


def _softmax_forward(run: LayerRun, e_x: np.ndarray | None) -> dict[str, np.ndarray]:
    assert e_x is not None
    return {"output": _softmax_parts(run, e_x)[2]}


def _softmax_backward(run: LayerRun, e_x: np.ndarray | None, e_g: np.ndarray) -> dict[str, np.ndarray]:
    assert e_x is not None
    y, axis, e_y = _softmax_parts(run, e_x)
    g = run.case.cotangents["output"]
    s = np.sum(y * g, axis=axis, keepdims=True)
    through_g = y * (e_g + np.sum(y * e_g, axis=axis, keepdims=True))
    through_x = e_y * np.abs(g - s) + y * np.sum(e_y * np.abs(g), axis=axis, keepdims=True)
    return {"grad.input": through_g + through_x}


# -- Embedding ---------------------------------------------------------------------------------------

def _draw_embedding(d: S.Drawer, ctx: Context, x: np.ndarray) -> DrawnLayer:
    """A table covering the token ids (and a few more rows), padding_idx, frequency scaling."""
    lab = ctx.label
    rows = int(x.max(initial=0)) + 1 + d.integer(0, 3, f"{lab}.extra rows")
    dim = d.integer(1, 8, f"{lab}.embedding_dim")
    padding = d.choice(("none", "a row"), f"{lab}.padding_idx")
    params = {"num_embeddings": rows, "embedding_dim": dim,
              "padding_idx": None if padding == "none" else d.integer(0, rows - 1, f"{lab}.padding row"),
              "max_norm": None, "norm_type": 2.0,
              # frequency scaling divides: the exact tier keeps to plain sums (as Embedding's own cases do)
              "scale_grad_by_freq": ctx.tier == "float" and d.flag(f"{lab}.scale_grad_by_freq"),
              "sparse": False}
    return DrawnLayer("Embedding", params, {"weight": _values(d, ctx, (rows, dim), "weight", int_limit=2)},
                      ("weight",))


def _embedding_functional(params: dict[str, Any], x: Any, nodes: dict[str, Any]) -> Any:
    return call(F + "embedding", x, nodes["weight"], params["padding_idx"], None, 2.0,
                params["scale_grad_by_freq"], False)


# -- CrossEntropyLoss (the last stage of a functional model) ---------------------------------------------

def _draw_cross_entropy(d: S.Drawer, ctx: Context, x: np.ndarray) -> DrawnLayer:
    """Class-index targets over the (N, C) logits, every reduction, label smoothing; no class
    weights and no ignored target (so each sample's weight is 1)."""
    lab = ctx.label
    rng = np.random.default_rng(d.integer(0, 2**32 - 1, f"{lab}.target.seed"))
    target = rng.integers(0, x.shape[1], size=x.shape[0]).astype(np.int64)
    params = {"reduction": d.choice(("mean", "sum", "none"), f"{lab}.reduction"),
              "label_smoothing": d.choice((0.0, 0.1), f"{lab}.label_smoothing")}
    return DrawnLayer("CrossEntropyLoss", params, {"target": target}, extras=("target",))


def _cross_entropy_functional(params: dict[str, Any], x: Any, nodes: dict[str, Any]) -> Any:
    return call(F + "cross_entropy", x, nodes["target"], reduction=params["reduction"],
                label_smoothing=params["label_smoothing"])


def _ce_softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _ce_forward(run: LayerRun, e_x: np.ndarray | None) -> dict[str, np.ndarray]:
    """|J|·E_x: each loss term depends on its own row of logits only; the VJP with unit cotangents
    gives ∂L_n/∂x_n,c, so E_L = Σ_c |∂L_n/∂x_n,c|·E_n,c (summed over n when reduced)."""
    assert e_x is not None
    out = run.result.outputs["output"]
    grads = np.abs(reference_on(run, True, np.ones(np.shape(out))).grads["input"]) * e_x
    return {"output": grads.sum() if np.ndim(out) == 0 else grads.sum(axis=1)}


def _ce_backward(run: LayerRun, e_x: np.ndarray | None, e_g: np.ndarray) -> dict[str, np.ndarray]:
    """dx_n = s·g_n·(y_n - q_n) with s = 1/N ('mean') or 1 and y = softmax(x_n) (every sample's
    weight is 1): E = s·|g_n|·y·(E_x + Σ y·E_x) from the logits (the softmax Jacobian), plus the
    VJP of E_g from the cotangent."""
    assert e_x is not None
    x = run.x
    g = np.asarray(run.case.cotangents["output"], dtype=np.float64)
    scale = 1.0 / x.shape[0] if run.case.params["reduction"] == "mean" else 1.0
    per_sample = np.abs(g).reshape(-1, 1) if g.ndim else np.full((x.shape[0], 1), abs(float(g)))
    y = _ce_softmax(x)
    through_x = scale * per_sample * y * (e_x + np.sum(y * e_x, axis=1, keepdims=True))
    through_g = np.abs(reference_on(run, True, np.asarray(e_g, dtype=np.float64)).grads["input"])
    return {"grad.input": through_x + through_g}


# -- the table ---------------------------------------------------------------------------------------

def _register(*entries: Chainable) -> dict[str, Chainable]:
    for entry in entries:
        PROPAGATION[entry.op] = entry.propagation
    return {entry.op: entry for entry in entries}


_MULTILINEAR = multilinear()
_SELECT_RELU = Propagation(_relu_forward, _relu_backward)
_SELECT_MAX = Propagation(_maxpool_forward, _maxpool_backward)
_BATCHNORM = Propagation(_bn_forward, _bn_backward)
CHAINABLE: dict[str, Chainable] = _register(
    Chainable("Linear", "fc", _floats, _draw_linear, _MULTILINEAR, _linear_functional, exact=True),
    Chainable("ReLU", "relu", _floats, _draw_relu, _SELECT_RELU, lambda p, x, n: call(F + "relu", x, p["inplace"]),
              exact=True, saves_output=True),
    Chainable("Conv2d", "conv", _image, _draw_conv2d, _MULTILINEAR, _conv2d_functional, exact=True),
    Chainable("MaxPool2d", "pool", _image, _draw_maxpool, _SELECT_MAX, _pool_functional("max_pool2d"), exact=True),
    Chainable("BatchNorm2d", "bn", _image, _draw_bn, _BATCHNORM, _bn2d_functional),
    Chainable("BatchNorm1d", "bn", lambda x: _floats(x) and x.ndim in (2, 3), _draw_bn, _BATCHNORM, _bn2d_functional),
    Chainable("AvgPool2d", "avgpool", _image, _draw_avgpool, multilinear(()), _pool_functional("avg_pool2d")),
    Chainable("Softmax", "softmax", _floats, _draw_softmax, Propagation(_softmax_forward, _softmax_backward),
              lambda p, x, n: call(F + "softmax", x, p["dim"]), saves_output=True),
    Chainable("Embedding", "embed", lambda x: x.dtype.kind in "iu", _draw_embedding, _MULTILINEAR,
              _embedding_functional, exact=True),
    Chainable("CrossEntropyLoss", "loss", lambda x: _floats(x) and x.ndim == 2 and x.shape[1] >= 2,
              _draw_cross_entropy, Propagation(_ce_forward, _ce_backward), _cross_entropy_functional,
              terminal=True),
)
# Options at each position, simplest first (a failing model shrinks toward the first).
ORDER = ("Linear", "ReLU", "Conv2d", "MaxPool2d", "BatchNorm2d", "BatchNorm1d", "AvgPool2d", "Softmax",
         "Embedding", "CrossEntropyLoss")
