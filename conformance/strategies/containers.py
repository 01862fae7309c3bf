"""Case strategies of the container family: composed models (``model_cases``) and sequences of
container operations (``operation_cases``, see ``reference.containers``).

Composed models: the number of layers is drawn first, then the input, then each layer's kind
among the options its input allows (``conformance.chainable``, simplest first) and its own
parameters, so a failing model shrinks to the fewest and simplest layers that still fail. The
container case names every layer's arrays by their path in the container (``naming``):

- ``index``: children ``0``, ``1``... (Sequential, ModuleList); ``ordered``: children named after
  their kind and position (``conv0``, ``bn1``...: Sequential(OrderedDict), ModuleDict);
- ``module``: ``module.<i>`` (DataParallel's wrapped Sequential);
- ``flat``: parameters numbered in order (a ParameterList); ``keyed``: parameters under
  ``<child>_<local>`` keys (a ParameterDict), both read by a functional model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case
from conformance import strategies as S
from conformance.chainable import CHAINABLE, ORDER, WIDE, Context
from conformance.composition import DrawnLayer, compose_reference, layers_of
from conformance.dtypes import DTYPES
from conformance.numerics import containers as N
from conformance.spec import Regime, all_specs, current_pins
from reference import clip as clip_ref

INPUT_KINDS = ("features", "image", "tokens")
MAX_LAYERS = 5
NAMINGS = ("index", "ordered", "module", "flat", "keyed")
FUNCTIONAL = ("flat", "keyed")  # namings whose model runs as torch.nn.functional calls


def regime_only(label: str, default: Any) -> Any:
    """A choice only a regime makes: the value a regime pins for ``label``, else ``default``,
    without drawing (random cases, and their ids, stay as they are; the stratified regimes reach
    the option)."""
    for pattern, value in current_pins().items():
        if S.pin_matches(pattern, label):
            return value
    return default


# -- drawing a model ----------------------------------------------------------------------------------

def _draw_input(d: S.Drawer, dtype: str, tier: str, kind: str) -> np.ndarray:
    n = d.integer(2, 4, "N")
    if kind == "tokens":
        steps, vocab = d.integer(1, 6, "T"), d.integer(1, 10, "vocabulary")
        rng = np.random.default_rng(d.integer(0, 2**32 - 1, "tokens.seed"))
        return rng.integers(0, vocab, size=(n, steps)).astype(np.int64)
    if kind == "image":
        c = d.integer(1, WIDE if regime_only("wide channels", False) else 3, "C")
        shape: tuple[int, ...] = (n, c, *S.sizes_within(d, 2, 48, hi=6, label="spatial"))
    else:
        shape = (n, d.integer(1, 12, "F"))
    scale = 0.25 if dtype == "float16" else 1.0
    return S.values(d, shape, dtype, tier, "input", int_limit=2, scale=scale).reshape(shape)


def _next_activation(drawn: DrawnLayer, x: np.ndarray, dtype: str, tier: str, train: bool) -> np.ndarray:
    """The drawn layer's output on ``x`` (its reference; the next layer is drawn for its shape)."""
    sub = Case(op=drawn.op, dtype=dtype, params=drawn.params, inputs={"input": x, **drawn.arrays},
               train=train, tier=tier)
    with np.errstate(all="ignore"):
        return all_specs()[drawn.op].evaluate(sub).outputs["output"]


def draw_model(d: S.Drawer, dtype: str, functional: bool,
               split_invariant: bool = False) -> tuple[np.ndarray, list[DrawnLayer], str, bool]:
    """(input, layers, tier, train): the number of layers first, then the input, then each layer's
    kind among those its input allows (simplest first) and its own parameters. ``split_invariant``:
    no layer whose result depends on how the batch is split (BatchNorm with batch statistics)."""
    count = d.integer(1, MAX_LAYERS, "layers")
    kind = d.choice(INPUT_KINDS, "input kind")
    tier = S.tier(d)
    train = d.choice((True, False), "train")
    x = _draw_input(d, dtype, tier, kind)
    first = x
    layers: list[DrawnLayer] = []
    for i in range(count):
        last = i == count - 1
        options = [op for op in ORDER if CHAINABLE[op].accepts(x) and (tier == "float" or CHAINABLE[op].exact)
                   and not (split_invariant and train and op.startswith("BatchNorm"))
                   and (not CHAINABLE[op].terminal or (last and functional))]
        op = d.choice(options, f"layer[{i}]")
        ctx = Context(dtype=dtype, tier=tier, position=i, previous=layers[-1].op if layers else None,
                      functional=functional, label=f"layer[{i}]", split_invariant=split_invariant,
                      wide=regime_only("wide channels", False))
        drawn = CHAINABLE[op].draw(d, ctx, x)
        layers.append(drawn)
        x = _next_activation(drawn, x, dtype, tier, train)
    return first, layers, tier, train


# -- naming the model's tensors in a container --------------------------------------------------------

def child_names(layers: list[DrawnLayer], naming: str) -> list[str]:
    """The containers' names of the layers: positions, or kind and position (``conv0``)."""
    if naming in ("ordered", "keyed"):
        return [f"{CHAINABLE[layer.op].short}{i}" for i, layer in enumerate(layers)]
    return [str(i) for i in range(len(layers))]


def _paths(naming: str, name: str, layer: DrawnLayer, counter: int) -> dict[str, str]:
    """Local array name -> its path in the container (also the case input holding it)."""
    if naming == "flat":  # a ParameterList: parameters numbered in order
        paths = {local: local for local in layer.extras}  # a loss's target: the case input "target"
        paths.update({local: str(counter + k) for k, local in enumerate(layer.parameters)})
        return paths
    if naming == "keyed":  # a ParameterDict: one key per parameter (a key cannot hold a ".")
        return {local: local if local in layer.extras else f"{name}_{local}" for local in layer.arrays}
    prefix = "module." if naming == "module" else ""
    return {local: f"{prefix}{name}.{local}" for local in layer.arrays}


def assemble(op: str, variant: str, dtype: str, x: np.ndarray, layers: list[DrawnLayer], tier: str, train: bool,
             d: S.Drawer, naming: str) -> Case:
    """The container case: every layer's arrays under its container path, as case inputs."""
    names = child_names(layers, naming)
    inputs = {"input": x}
    described = []
    counter = 0
    for i, layer in enumerate(layers):
        paths = _paths(naming, names[i], layer, counter)
        counter += len(layer.parameters)
        inputs.update({paths[local]: layer.arrays[local] for local in paths})
        described.append({"op": layer.op, "params": layer.params, "name": names[i],
                          "parameters": list(layer.parameters), "buffers": list(layer.buffers),
                          "mutated": list(layer.mutated), "extras": list(layer.extras), "paths": paths})
    differentiable = (("input",) if x.dtype.kind == "f" else ()) + tuple(
        layer["paths"][local] for layer in described for local in layer["parameters"])
    return Case(op=op, dtype=dtype, params={"layers": described}, inputs=inputs, differentiable=differentiable,
                train=train, tier=tier, cotangent_seed=S.seed(d), variant=variant)


REPLICAS = {"default": None, "two replicas": [0, 0], "three replicas": [0, 0, 0]}


def model_cases(op: str, variant: str, naming: str) -> Callable[[str], st.SearchStrategy[Case]]:
    """Composed-model cases of container ``op`` whose layers are named by ``naming``."""
    functional, wrapped = naming in FUNCTIONAL, naming == "module"

    @st.composite
    def build(draw: Any, dtype: str) -> Case:
        d = S.Drawer(draw)
        x, layers, tier, train = draw_model(d, dtype, functional, split_invariant=wrapped)
        case = assemble(op, variant, dtype, x, layers, tier, train, d, naming)
        if wrapped:  # DataParallel's device_ids: several replicas on device 0 (ignored without CUDA)
            case.params["device_ids"] = REPLICAS[d.choice(tuple(REPLICAS), "device_ids")]
        return case

    return lambda dtype: build(dtype)


# -- regimes of composed models -----------------------------------------------------------------------

def ops_of(case: Case) -> list[str]:
    return [layer["op"] for layer in layers_of(case)]


def _inplace(case: Case) -> bool:
    return any(layer["op"] == "ReLU" and layer["params"]["inplace"] for layer in layers_of(case))


def _bn(case: Case, track: bool) -> bool:
    return any(layer["op"].startswith("BatchNorm") and layer["params"]["track_running_stats"] == track
               for layer in layers_of(case))


CONV_BLOCK = ("Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Linear")
_FLOAT = {"tier": "float"}
_BLOCK = {f"layer[{i}]": op for i, op in enumerate(CONV_BLOCK)}

MODEL_REGIMES = {regime.name: regime for regime in (
    Regime("exact tier", lambda c: c.tier == "exact", {"tier": "exact", "layers": 3},
           "integer chains of piecewise-linear layers: bit-exact"),
    Regime("five layers", lambda c: len(ops_of(c)) == MAX_LAYERS, {"layers": MAX_LAYERS}),
    Regime("conv block", lambda c: ops_of(c) == list(CONV_BLOCK),
           {**_FLOAT, "input kind": "image", "layers": 5, **_BLOCK},
           "Conv2d → BatchNorm2d → ReLU → MaxPool2d → Linear"),
    Regime("tokens", lambda c: ops_of(c)[0] == "Embedding", {"input kind": "tokens", "layers": 3}, "Embedding first"),
    Regime("in-place ReLU", _inplace, {"layers": 2, "layer[0]": "Linear", "layer[1]": "ReLU",
                                       "layer[1].inplace": True}),
    Regime("Softmax inside", lambda c: "Softmax" in ops_of(c)[:-1], {**_FLOAT, "layers": 3, "layer[1]": "Softmax"}),
    Regime("loss at the end", lambda c: ops_of(c)[-1] == "CrossEntropyLoss",
           {**_FLOAT, "input kind": "features", "layers": 3, "layer[1]": "Linear", "layer[1].out_features": 4,
            "layer[2]": "CrossEntropyLoss"},
           "a functional model ending in F.cross_entropy against class-index targets"),
    Regime("evaluation mode", lambda c: not c.train,
           {"train": False, "input kind": "image", **_FLOAT, "layer[0]": "BatchNorm2d"}),
    Regime("BatchNorm buffers updated", lambda c: c.train and _bn(c, True),
           {**_FLOAT, "train": True, "input kind": "image", "layer[0]": "BatchNorm2d",
            "layer[0].track_running_stats": True}),
    Regime("conv block in eval", lambda c: not c.train and ops_of(c) == list(CONV_BLOCK),
           {**_FLOAT, "train": False, "input kind": "image", "layers": 5, **_BLOCK}),
    Regime("two replicas", lambda c: c.params.get("device_ids") == [0, 0],
           {"device_ids": "two replicas", "N": 3, "layers": 2},
           "on CUDA the batch of 3 is scattered over two replicas (2 + 1) and gathered"),
    Regime("BatchNorm running statistics in eval", lambda c: not c.train and _bn(c, True),
           {**_FLOAT, "train": False, "input kind": "image", "layer[0]": "BatchNorm2d",
            "layer[0].track_running_stats": True}),
)}


def model_regimes(*names: str) -> tuple[Regime, ...]:
    return tuple(MODEL_REGIMES[name] for name in names)


def layer_in_regime(op: str, regime: str) -> Callable[[Case], bool]:
    """Some layer ``op`` of the model lies in its own declaration's regime ``regime`` (judged by that
    declaration's predicate on the layer's sub-case)."""
    def holds(case: Case) -> bool:
        declared = next(r for r in all_specs()[op].regimes if r.name == regime)
        with np.errstate(all="ignore"):
            runs = compose_reference(case)[0].meta["runs"]
        return any(run.spec.name == op and declared.holds(run.case) for run in runs)
    return holds


def _widest(case: Case) -> int:
    widths = [case.inputs["input"].shape[1]] if case.inputs["input"].ndim == 4 else []
    for layer in layers_of(case):
        widths += [v for k, v in layer["params"].items() if k in ("out_channels", "out_features", "num_features")]
    return max(widths, default=0)


_IMAGE = {**_FLOAT, "input kind": "image", "spatial[*]": 4}
LAYER_REGIMES = {regime.name: regime for regime in (
    Regime("wide channels", lambda c: _widest(c) >= 16,
           {**_IMAGE, "wide channels": True, "C": 24, "layers": 3, "layer[0]": "Conv2d", "layer[0].groups": "plain",
            "layer[*].out_channels": 32, "layer[*].out_features": 32},
           "24 to 64 channels (vectorised kernels change paths past 8 or 16); drawn only in this regime"),
    Regime("Conv2d in its regime 'reflect padding'", layer_in_regime("Conv2d", "reflect padding"),
           {**_IMAGE, "layers": 2, "layer[0]": "Conv2d", "layer[0].groups": "plain", "layer[0].padding kind": "numeric",
            "layer[0].kernel_size[*]": 3, "layer[0].padding[*]": 1, "layer[0].padding_mode": "reflect"}),
    Regime("Conv2d in its regime 'depthwise'", layer_in_regime("Conv2d", "depthwise"),
           {**_IMAGE, "C": 3, "layers": 2, "layer[0]": "Conv2d", "layer[0].groups": "depthwise"}),
    Regime("MaxPool2d in its regime 'ceil overhang clipped'", layer_in_regime("MaxPool2d", "ceil overhang clipped"),
           {**_IMAGE, "layers": 2, "layer[0]": "MaxPool2d", "layer[0].kernel_size[*]": 3,
            "layer[0].stride kind": "kernel", "layer[0].padding[*]": 0, "layer[0].ceil_mode": True}),
    Regime("AvgPool2d in its regime 'count_include_pad=False with padding'",
           layer_in_regime("AvgPool2d", "count_include_pad=False with padding"),
           {**_IMAGE, "layers": 2, "layer[0]": "AvgPool2d", "layer[0].kernel_size[*]": 3, "layer[0].padding[*]": 1,
            "layer[0].count_include_pad": False}),
    Regime("BatchNorm2d in its regime 'momentum None'", layer_in_regime("BatchNorm2d", "momentum None"),
           {**_IMAGE, "train": True, "layers": 2, "layer[0]": "BatchNorm2d", "layer[0].momentum": None,
            "layer[0].track_running_stats": True}),
    Regime("Linear in its regime 'three leading dims'", layer_in_regime("Linear", "three leading dims"),
           {**_IMAGE, "layers": 2, "layer[0]": "Linear"}),
    Regime("Embedding in its regime 'padding_idx referenced'",
           layer_in_regime("Embedding", "padding_idx referenced"),
           {"input kind": "tokens", "vocabulary": 1, "layers": 2, "layer[0]": "Embedding",
            "layer[0].padding_idx": "a row", "layer[0].padding row": 0}),
)}


def layer_regimes(*names: str) -> tuple[Regime, ...]:
    """Regimes that draw a layer inside one of its own declaration's regimes (or wider), so that a
    bug confined to a corner of a layer is reachable through the container; every name when none."""
    return tuple(LAYER_REGIMES[name] for name in names or LAYER_REGIMES)


# -- gradient utilities (torch.nn.utils) -----------------------------------------------------------------

FORMS = ("list", "tuple", "single tensor", "no gradients", "empty list")
NORM_TYPES = (2.0, 1.0, float("inf"), 0.5, 3.0, 1.5, 10.0, 100.0)
MAX_NORM_KINDS = ("above", "below", "at", "zero", "far below")
NONFINITE = ("none", "nan", "inf", "-inf")
BUDGET = 1024


@st.composite
def _clip_norm_case(draw: Any, dtype: str, invalid: bool = False) -> Case:
    d = S.Drawer(draw)
    form = d.choice(FORMS[:3] if invalid else FORMS, "form")
    count = 1 if form == "single tensor" else d.integer(1, 5, "parameters")
    norm_type = d.choice(NORM_TYPES, "norm_type")
    scale = d.choice((1.0, 1e-3, 64.0), "grad.scale")
    inputs: dict[str, np.ndarray] = {}
    with_grad = []
    for i in range(count):
        shape = tuple(S.sizes_within(d, d.integer(0, 3, f"param{i}.ndim"), BUDGET // count, hi=12,
                                     label=f"param{i}.shape"))
        inputs[f"param{i}"] = np.zeros(shape)
        has_grad = form != "no gradients" and (i == 0 or d.choice((True, False), f"param{i}.has grad"))
        if has_grad:
            # (reshaped: strategies.values returns 1-d for a 0-d shape, np.ascontiguousarray's rule)
            inputs[f"grad{i}"] = S.values(d, shape, dtype, "float", f"grad{i}", scale=scale).reshape(shape)
            with_grad.append(i)
    _plant_nonfinite(d, inputs, with_grad, form, invalid)
    params = {"form": form, "count": count, "norm_type": norm_type, "norm_type_as": "float",
              "error_if_nonfinite": invalid or d.flag("error_if_nonfinite"),
              "foreach": d.choice((None, True, False), "foreach")}
    if np.isinf(norm_type) and d.flag("norm_type as the string 'inf'"):
        params["norm_type_as"] = "string"
    case = Case(op="clip_grad_norm_", dtype=dtype, params=params, inputs=inputs, tier="float",
                invalid=invalid, note="error_if_nonfinite with a non-finite total norm" if invalid else "")
    total = N.dtype_total(case)
    if not invalid and not np.isfinite(total):  # a valid case with a non-finite norm must not ask to raise
        case = replace(case, params={**params, "error_if_nonfinite": False})
        params = case.params
    return replace(case, params={**params, "max_norm": _max_norm(d, total)})


def _plant_nonfinite(d: S.Drawer, inputs: dict[str, np.ndarray], with_grad: list[int], form: str,
                     invalid: bool, layouts: dict[str, Any] | None = None) -> None:
    """One NaN or ±inf in one of the gradients passed (always, for an invalid case); in a tensor
    with stride-0 (expanded) dims, in its stored elements (so every copy of it holds it)."""
    nonfinite = d.choice(NONFINITE[1:] if invalid else NONFINITE, "non-finite")
    with_grad = [i for i in with_grad if inputs[f"grad{i}"].size]  # (an empty tensor holds nothing)
    if nonfinite != "none" and with_grad and form != "empty list":
        i = with_grad[d.integer(0, len(with_grad) - 1, "non-finite grad")]
        layout = (layouts or {}).get(f"grad{i}")
        full = inputs[f"grad{i}"]
        stored = full[tuple(slice(0, 1) if layout is not None and layout.kind == "expanded" and k in layout.dims
                            else slice(None) for k in range(full.ndim))]
        g = stored.copy().reshape(-1)
        if g.size:
            g[d.integer(0, g.size - 1, "non-finite position")] = float(nonfinite)
        inputs[f"grad{i}"] = np.broadcast_to(g.reshape(stored.shape), full.shape).copy()


def _max_norm(d: S.Drawer, total: float) -> float:
    """max_norm above, below, at, far below the total norm, or 0."""
    kind = d.choice(MAX_NORM_KINDS, "max_norm")
    if kind == "zero" or not np.isfinite(total):
        return 0.0 if kind == "zero" else 1.0
    if kind == "at":
        return float(total)
    factor = d.choice((0.5, 0.9, 0.999) if kind == "below" else (2.0, 1.1, 1.001) if kind == "above"
                      else (1e-3, 1e-6), "max_norm factor")
    return float(total) * factor if total > 0 else factor


def clip_norm_cases(dtype: str) -> st.SearchStrategy[Case]:
    return _clip_norm_case(dtype)


def invalid_clip_norm_cases(dtype: str) -> st.SearchStrategy[Case]:
    return _clip_norm_case(dtype, invalid=True)


def _tensors(d: S.Drawer, dtype: str, count: int, prefix: str, *, tier: str = "float", scale: float = 1.0,
             missing: bool = False, empty: bool = True) -> tuple[dict[str, np.ndarray], dict[str, Any], list[Any]]:
    """``count`` tensors ``<prefix><i>`` of several shapes (0 to 3 dims, within the budget, a dim of
    size 0 now and then), each in a drawn memory layout; with ``missing``, tensors after the first
    may be left out (a parameter without a gradient). (inputs, layouts, every tensor's shape)."""
    inputs: dict[str, np.ndarray] = {}
    layouts: dict[str, Any] = {}
    shapes = []
    for i in range(count):
        ndim = d.integer(0, 3, f"{prefix}{i}.ndim")
        shape = tuple(S.sizes_within(d, ndim, BUDGET // count, hi=12, label=f"{prefix}{i}.shape"))
        if empty and ndim and d.flag(f"{prefix}{i}.empty"):
            shape = (0,) + shape[1:]
        shapes.append(shape)
        if missing and i and not d.choice((True, False), f"{prefix}{i}.present"):
            continue
        layout = S.layouts(d, ndim, f"layout.{prefix}{i}", expanded=True)
        inputs[f"{prefix}{i}"] = S.values(d, shape, dtype, tier, f"{prefix}{i}", scale=scale, layout=layout)
        layouts[f"{prefix}{i}"] = layout
    return inputs, layouts, shapes


def _present(inputs: dict[str, np.ndarray], prefix: str, count: int) -> list[int]:
    return [i for i in range(count) if f"{prefix}{i}" in inputs]


def _norm_params(d: S.Drawer, invalid: bool) -> dict[str, Any]:
    norm_type = d.choice(NORM_TYPES, "norm_type")
    params = {"norm_type": norm_type, "norm_type_as": "float", "error_if_nonfinite": invalid or d.flag(
        "error_if_nonfinite"), "foreach": d.choice((None, True, False), "foreach")}
    if np.isinf(norm_type) and d.flag("norm_type as the string 'inf'"):
        params["norm_type_as"] = "string"
    return params


@st.composite
def _total_norm_case(draw: Any, dtype: str, invalid: bool = False) -> Case:
    """get_total_norm: tensors in a list, a tuple, alone, or none at all."""
    d = S.Drawer(draw)
    form = d.choice(("list", "tuple", "single tensor") + (() if invalid else ("empty list",)), "form")
    count = 1 if form == "single tensor" else d.integer(1, 5, "tensors")
    scale = d.choice((1.0, 1e-3, 64.0), "grad.scale")
    inputs, layouts, _ = _tensors(d, dtype, count, "grad", scale=scale, empty=not invalid)
    _plant_nonfinite(d, inputs, _present(inputs, "grad", count), form, invalid, layouts)
    params = {"form": form, "count": count, **_norm_params(d, invalid)}
    case = Case(op="get_total_norm", dtype=dtype, params=params, inputs=inputs, layouts=layouts, invalid=invalid,
                note="error_if_nonfinite with a non-finite total norm" if invalid else "")
    if not invalid and not np.isfinite(N.dtype_total(case)):
        case.params["error_if_nonfinite"] = False
    return case


def total_norm_cases(dtype: str) -> st.SearchStrategy[Case]:
    return _total_norm_case(dtype)


def invalid_total_norm_cases(dtype: str) -> st.SearchStrategy[Case]:
    return _total_norm_case(dtype, invalid=True)


def _parameters_with_grads(d: S.Drawer, dtype: str, tier: str, scale: float, invalid: bool = False
                           ) -> tuple[str, int, dict[str, np.ndarray], dict[str, Any], list[int]]:
    """Parameters (``param<i>``, values unused) and their gradients (``grad<i>``; some missing)."""
    form = d.choice(FORMS[:3] if invalid else FORMS, "form")
    count = 1 if form == "single tensor" else d.integer(1, 5, "parameters")
    grads, layouts, shapes = _tensors(d, dtype, count, "grad", tier=tier, scale=scale, missing=True)
    if form == "no gradients":
        grads, layouts = {}, {}
    params = {f"param{i}": np.zeros(shape) for i, shape in enumerate(shapes)}
    return form, count, {**params, **grads}, layouts, _present(grads, "grad", count)


TOTAL_NORM_KINDS = ("the gradients' norm", "given", "zero", "negative", "nan", "inf")


@st.composite
def _clip_with_norm_case(draw: Any, dtype: str, invalid: bool = False) -> Case:
    """clip_grads_with_norm_: parameters with gradients (some without), a given total norm (the
    gradients' 2-norm, another value, 0, negative, NaN, inf) and max_norm around it."""
    d = S.Drawer(draw)
    scale = d.choice((1.0, 1e-3, 64.0), "grad.scale")
    form, count, inputs, layouts, present = _parameters_with_grads(d, dtype, "float", scale, invalid)
    kind = d.choice(TOTAL_NORM_KINDS, "total_norm")
    rounded = DTYPES[dtype].round
    norm = float(rounded(np.float64(clip_ref.total_norm([inputs[f"grad{i}"] for i in present], 2.0))))
    total = {"the gradients' norm": norm, "zero": 0.0, "nan": float("nan"), "inf": float("inf"),
             "given": float(rounded(np.float64(d.choice((1.0, 0.25, 8.0), "total_norm value")))),
             "negative": -float(rounded(np.float64(d.choice((1.0, 0.25), "total_norm value"))))}[kind]
    inputs["total_norm"] = np.array(total)
    params = {"form": form, "count": count, "max_norm": _max_norm(d, abs(total)),
              "total_norm_as": "float" if invalid else "tensor", "foreach": d.choice((None, True, False), "foreach")}
    return Case(op="clip_grads_with_norm_", dtype=dtype, params=params, inputs=inputs, layouts=layouts,
                invalid=invalid, note="total_norm passed as a Python float, not a tensor" if invalid else "")


def clip_with_norm_cases(dtype: str) -> st.SearchStrategy[Case]:
    return _clip_with_norm_case(dtype)


def invalid_clip_with_norm_cases(dtype: str) -> st.SearchStrategy[Case]:
    return _clip_with_norm_case(dtype, invalid=True)


CLIP_VALUE_KINDS = ("cuts", "above every gradient", "zero", "negative", "inf")


@st.composite
def _clip_value_case(draw: Any, dtype: str) -> Case:
    """clip_grad_value_: parameters with gradients (some without), non-finite elements now and
    then, clip_value inside the gradients' range, above it, 0, negative or inf."""
    d = S.Drawer(draw)
    tier = S.tier(d)
    scale = d.choice((1.0, 1e-3, 64.0), "grad.scale")
    form, count, inputs, layouts, present = _parameters_with_grads(d, dtype, tier, scale)
    _plant_nonfinite(d, inputs, present, form, False, layouts)
    finite = [np.abs(g[np.isfinite(g)]) for n, g in inputs.items() if n.startswith("grad")]
    top = max((float(f.max()) for f in finite if f.size), default=1.0) or 1.0
    kind = d.choice(CLIP_VALUE_KINDS, "clip_value")
    if kind == "cuts":
        fraction = d.choice((0.5, 0.25, 0.9), "clip_value fraction")
        value = max(top - 1, 0.5) if tier == "exact" else top * fraction
    else:
        value = {"above every gradient": 2 * top, "zero": 0.0, "negative": -0.5 * top, "inf": float("inf")}[kind]
    params = {"form": form, "count": count, "clip_value": value, "foreach": d.choice((None, True, False), "foreach")}
    return Case(op="clip_grad_value_", dtype=dtype, params=params, inputs=inputs, layouts=layouts, tier=tier)


def clip_value_cases(dtype: str) -> st.SearchStrategy[Case]:
    return _clip_value_case(dtype)


@st.composite
def _to_vector_case(draw: Any, dtype: str, invalid: bool = False) -> Case:
    """parameters_to_vector: parameters of several shapes (0-d, empty, up to 3 dims) in a list, a
    tuple or an iterator (as ``module.parameters()`` is); invalid: no parameter at all."""
    d = S.Drawer(draw)
    form = "list" if invalid else d.choice(("list", "tuple", "iterator"), "form")
    count = 0 if invalid else d.integer(1, 5, "parameters")
    tier = S.tier(d)
    inputs, layouts, _ = _tensors(d, dtype, count, "param", tier=tier)
    if invalid:  # torch.cat of nothing; the case still carries a (unused) tensor
        inputs = {"unused": np.zeros(1)}
    return Case(op="parameters_to_vector", dtype=dtype, params={"form": form, "count": count}, inputs=inputs,
                layouts=layouts, differentiable=tuple(n for n in inputs if n.startswith("param")), tier=tier,
                cotangent_seed=S.seed(d), invalid=invalid, note="no parameters" if invalid else "")


def to_vector_cases(dtype: str) -> st.SearchStrategy[Case]:
    return _to_vector_case(dtype)


def invalid_to_vector_cases(dtype: str) -> st.SearchStrategy[Case]:
    return _to_vector_case(dtype, invalid=True)


VEC_ERRORS = ("shorter", "longer", "a Python list")


@st.composite
def _from_vector_case(draw: Any, dtype: str, invalid: bool = False) -> Case:
    """vector_to_parameters: parameters of several shapes and a vector of exactly their total
    length (in any layout); invalid: a vector one element short or long, or a Python list."""
    d = S.Drawer(draw)
    count = d.integer(1, 5, "parameters")
    tier = S.tier(d)
    inputs, layouts, _ = _tensors(d, dtype, count, "param", tier=tier)
    total = sum(a.size for a in inputs.values())
    error = d.choice(VEC_ERRORS, "invalid vector") if invalid else ""
    if error == "shorter" and not total:
        error = "longer"  # no element to leave out
    length = total - 1 if error == "shorter" else total + 1 if error == "longer" else total
    layout = S.layouts(d, 1, "layout.vec", expanded=True)
    inputs["vec"] = S.values(d, (length,), dtype, tier, "vec", layout=layout)
    layouts["vec"] = layout
    params = {"count": count, "vec_as": "list" if error == "a Python list" else "tensor"}
    return Case(op="vector_to_parameters", dtype=dtype, params=params, inputs=inputs, layouts=layouts, tier=tier,
                invalid=invalid, note=f"vector: {error}" if invalid else "")


def from_vector_cases(dtype: str) -> st.SearchStrategy[Case]:
    return _from_vector_case(dtype)


def invalid_from_vector_cases(dtype: str) -> st.SearchStrategy[Case]:
    return _from_vector_case(dtype, invalid=True)


# -- regimes of the gradient utilities ----------------------------------------------------------------

def _clips(kind: str) -> Callable[[Case], bool]:
    def holds(case: Case) -> bool:
        total, mx = N.used_total(case), case.params["max_norm"]
        if kind == "clipped":
            return bool(np.isfinite(total) and total > 0 and mx < total)
        return bool(np.isfinite(total) and mx > total)
    return holds


_FINITE = {"non-finite": "none", "form": "list"}


def _nonfinite(test: Callable[[np.ndarray], np.ndarray]) -> Callable[[Case], bool]:
    return lambda c: any(test(g).any() for g in N.grads(c))


def norm_regimes(clip: bool) -> tuple[Regime, ...]:
    """The regimes of clip_grad_norm_ (``clip``) and get_total_norm."""
    clipping = (
        Regime("max_norm below the total norm", _clips("clipped"), {"max_norm": "below", **_FINITE}),
        Regime("max_norm above the total norm", _clips("unclipped"),
               {"max_norm": "above", "max_norm factor": 2.0, **_FINITE},
               "the coefficient is clamped to 1: gradients unchanged bit for bit"),
        Regime("max_norm at the total norm", lambda c: c.params["max_norm"] == N.dtype_total(c) > 0,
               {"max_norm": "at", **_FINITE, "grad.scale": 1.0}),
    ) if clip else ()
    return clipping + (
        Regime("inf norm", lambda c: np.isinf(c.params["norm_type"]), {"norm_type": float("inf")}),
        Regime("norm_type as the string 'inf'", lambda c: c.params["norm_type_as"] == "string",
               {"norm_type": float("inf"), "norm_type as the string 'inf'": True}),
        Regime("fractional norm", lambda c: c.params["norm_type"] == 0.5, {"norm_type": 0.5, **_FINITE}),
        Regime("large norm", lambda c: c.params["norm_type"] >= 10 and np.isfinite(c.params["norm_type"]),
               {"norm_type": 10.0, "grad.scale": 1.0, **_FINITE}),
        Regime("1-norm", lambda c: c.params["norm_type"] == 1.0, {"norm_type": 1.0}),
        Regime("NaN gradient", _nonfinite(np.isnan),
               {"non-finite": "nan", "error_if_nonfinite": False, "form": "list"}),
        Regime("infinite gradient", _nonfinite(np.isinf),
               {"non-finite": "-inf", "error_if_nonfinite": False, "form": "list"}),
        Regime("error_if_nonfinite with finite gradients",
               lambda c: c.params["error_if_nonfinite"] and np.isfinite(N.dtype_total(c)),
               {"error_if_nonfinite": True, "norm_type": 2.0, **_FINITE}),
    ) + ((Regime("some parameters without a gradient", lambda c: len(N.grad_names(c)) < c.params["count"],
                 {"form": "list", "parameters": 4, "param*.has grad": False}),) if clip else ()) + (
        Regime("single tensor", lambda c: c.params["form"] == "single tensor", {"form": "single tensor"}),
        Regime("empty iterable", lambda c: c.params["form"] == "empty list", {"form": "empty list"}),
        Regime("foreach=True", lambda c: c.params["foreach"] is True, {"foreach": True}),
        Regime("foreach=False", lambda c: c.params["foreach"] is False, {"foreach": False}),
    ) + (() if clip else (
        Regime("non-contiguous tensors", lambda c: any(v.kind != "contiguous" for v in c.layouts.values()),
               {"layout.grad0": "strided", "grad*.ndim": 2, "grad*.empty": False}),
        Regime("empty tensor", lambda c: any(g.size == 0 for g in N.grads(c)),
               {"grad0.ndim": 2, "grad0.empty": True, "form": "list"}),
    ))


# -- container operations (reference.containers) ----------------------------------------------------------

KEYS = ("a", "b", "conv", "act", "head", "x1")  # dict keys, simplest first
SEQUENTIAL_NAMES = ("conv", "act", "2", "head")  # a Sequential built from an OrderedDict ("2": a numeric name)
SLOPES = (0.5, -1.0, 2.0, -0.5, 1.0, -2.0)  # PReLU slopes: powers of two keep the probe's path exact
MAX_CHAIN = 8  # at most 8 slopes on the probe's path: |x| stays within [2^-9, 2^9] in every dtype
NAMES = tuple(dict.fromkeys(
    (*KEYS, *SEQUENTIAL_NAMES, *(str(i) for i in range(24)))))
VOCABULARY = NAMES + tuple(f"{b}{s}" for s in (".weight", ".0.weight", ".inner.weight") for b in NAMES)

LIST_OPS = {
    "ModuleList": ("append", "extend", "+=", "insert", "setitem", "del", "del slice", "pop", "get", "slice", "plus",
                   "insert at a negative index", "insert past the end"),
    "Sequential": ("append", "extend", "+=", "insert", "setitem", "del", "del slice", "pop", "get", "slice", "plus"),
    "ParameterList": ("append", "extend", "+=", "setitem", "get", "slice", "del", "insert", "pop"),
}
DICT_OPS = {
    "ModuleDict": ("setitem", "update", "pop", "del", "get", "setdefault-like", "reassign", "clear"),
    "ParameterDict": ("setitem", "update", "pop", "del", "get", "setdefault", "reassign", "popitem", "get missing",
                      "clear"),
}
MAPPINGS = ("ordered", "dict", "pairs", "container")


class _Builder:
    """Draws a container case while keeping the model (``reference.containers``) in step."""

    def __init__(self, d: S.Drawer, kind: str, dtype: str):
        self.d, self.kind, self.dtype = d, kind, dtype
        self.modules = kind in ("ModuleList", "Sequential", "ModuleDict")
        self.is_dict = kind in DICT_OPS
        self.entries: dict[str, dict[str, Any]] = {}
        self.inputs: dict[str, np.ndarray] = {}
        self.layouts: dict[str, Any] = {}
        self.steps: list[dict[str, Any]] = []
        self.model: Any = None
        self.resolver: Any = None
        self.note = ""  # what an invalid case breaks
        self.op = "construct"  # the operation being drawn (recorded in each of its steps)
        self.channels = 1  # the probe's channels (module containers)

    # -- fresh entries ---------------------------------------------------------------------------
    def fresh(self, label: str, kinds: tuple[str, ...] | None = None) -> dict[str, Any]:
        k = str(len(self.entries))
        if self.modules:
            kinds = kinds or (("prelu", "relu", "sequential") + (("dict",) if self.kind == "ModuleDict" else ()))
            kind = self.d.choice(kinds, f"{label}.kind")
            spec: dict[str, Any] = {"kind": kind}
            if kind != "relu":
                spec["num_parameters"] = self.d.choice((1, self.channels), f"{label}.num_parameters")
                spec["init"] = self.d.choice(SLOPES, f"{label}.init")
        else:
            kind = self.d.choice(kinds or ("tensor", "parameter"), f"{label}.kind")
            name = f"t{k}"
            ndim = self.d.integer(0, 2, f"{label}.ndim")
            shape = tuple(S.sizes_within(self.d, ndim, 16, hi=4, label=f"{label}.shape"))
            layout = S.layouts(self.d, ndim, f"layout.{name}", expanded=kind == "tensor")
            self.inputs[name] = S.values(self.d, shape, self.dtype, "float", name, layout=layout)
            self.layouts[name] = layout
            spec = {"kind": kind, "name": name}
        self.entries[k] = spec
        return {"new": k}

    def value(self, label: str) -> dict[str, Any]:
        """A fresh entry, or (sometimes) one the container holds already (stored twice)."""
        names = self.model.keys()
        if names and self.d.choice(("fresh", "one it holds"), f"{label}.source") == "one it holds":
            return {"at": self.d.choice(names, f"{label}.entry")}
        return self.fresh(label)

    def key(self, label: str, existing: bool) -> str:
        keys = self.model.keys()
        options = keys if existing else [k for k in KEYS if k not in keys]
        return self.d.choice(options or keys, label)

    # -- applying a step to the model ---------------------------------------------------------------
    def step(self, step: dict[str, Any]) -> None:
        from reference.containers import Encoder, run

        step.setdefault("op", self.op)
        self.steps.append(step)
        run(self.model, [step], self.resolver, Encoder(VOCABULARY))

    def read(self, name: Any, method: str, *args: Any, pairs: bool = False, on: Any = None,
             chain: Any = None) -> None:
        step: dict[str, Any] = {"method": method, "args": list(args), "read": True, "as": name}
        if pairs:
            step["pairs"] = True
        if on is not None:
            step["on"] = on
        if chain is not None:
            step["chain"] = chain
        self.step(step)


def _prelu_path(model: Any) -> int:
    """How many slopes the probe meets going through every entry (None: some entry has no forward)."""
    count = 0
    for entry in model.values():
        if entry.kind == "dict":
            return MAX_CHAIN + 1
        count += entry.kind != "relu"
    return count


def _list_op(b: _Builder, j: int, invalid: bool) -> None:
    d, n = b.d, len(b.model)
    lab = f"op[{j}]"
    if invalid:
        return _invalid_list_op(b, lab)
    ops = [o for o in LIST_OPS[b.kind] if n or o in ("append", "extend", "+=", "insert", "slice", "plus",
                                                   "del slice", "insert past the end")]
    op = b.op = d.choice(ops, lab)
    if op == "append":
        b.step({"method": "append", "args": [b.value(f"{lab}.value")]})
    elif op in ("extend", "+="):
        values = [b.value(f"{lab}.value[{i}]") for i in range(d.integer(0, 3, f"{lab}.count"))]
        arg = {"sequential": values} if b.kind == "Sequential" and op == "+=" else {"list": values}
        b.step({"method": "extend" if op == "extend" else "__iadd__", "args": [arg]})
    elif op.startswith("insert"):
        lo, hi = {"insert": (-n if b.kind == "Sequential" else 0, n), "insert at a negative index": (-n - 1, -1),
                  "insert past the end": (n + 1, n + 3)}[op]
        index = d.integer(lo, hi, f"{lab}.index")
        b.step({"method": "insert", "args": [index, b.value(f"{lab}.value")]})
    elif op in ("setitem", "del", "pop", "get"):
        index = d.integer(-n, n - 1, f"{lab}.index")
        if op == "setitem":
            b.step({"method": "__setitem__", "args": [index, b.value(f"{lab}.value")]})
        elif op == "del":
            b.step({"method": "__delitem__", "args": [index]})
        else:
            b.read(f"op{j}.result", "pop" if op == "pop" else "__getitem__", index)
    else:  # slices, and c + other
        bounds = [d.integer(-4, 4, f"{lab}.start"), d.integer(-4, 4, f"{lab}.stop"),
                  d.choice((None, 1, 2, -1), f"{lab}.step")]
        if op == "del slice":
            b.step({"method": "__delitem__", "args": [{"slice": bounds}]})
            return None
        if op == "slice":
            on = {"getitem": {"slice": bounds}}
        else:
            values = [b.value(f"{lab}.value[{i}]") for i in range(d.integer(0, 2, f"{lab}.count"))]
            on = {"plus": {"sequential": values} if b.kind == "Sequential" else {"list": values}}
        b.read(f"op{j}.entries", "__iter__", on=on)
        if b.modules:
            b.read([f"op{j}.names", f"op{j}.children"], "named_children", pairs=True, on=on)
    return None


def _invalid_list_op(b: _Builder, lab: str) -> None:
    d, n = b.d, len(b.model)
    options = ("index out of range", "assign out of range") + (
        ("store a tensor",) if b.modules else ("extend with a tensor",)) + (
        ("insert out of range",) if b.kind == "Sequential" else ()) + (
        ("insert a tensor",) if b.kind == "ModuleList" else ())
    error = b.op = d.choice(options, f"{lab} (invalid)")
    index = n + d.integer(0, 2, f"{lab}.past")
    if error == "index out of range":
        key = index if d.flag(f"{lab}.positive") else -index - 1
        b.steps.append({"op": b.op, "method": "__getitem__", "args": [key]})
    elif error == "assign out of range":
        b.steps.append({"op": b.op, "method": "__setitem__", "args": [index, b.fresh(f"{lab}.value")]})
    elif error == "insert out of range":
        past = n + 1 + d.integer(0, 2, f"{lab}.past")
        b.steps.append({"op": b.op, "method": "insert", "args": [past, b.fresh(f"{lab}.value")]})
    else:
        tensor = _plain_tensor(b, f"{lab}.tensor")
        method = {"store a tensor": "append", "extend with a tensor": "extend", "insert a tensor": "insert"}[error]
        b.steps.append({"op": b.op, "method": method, "args": ([0] if method == "insert" else []) + [tensor]})
    b.note = error


def _plain_tensor(b: _Builder, label: str) -> dict[str, Any]:
    k = str(len(b.entries))
    b.inputs[f"t{k}"] = S.values(b.d, (2,), b.dtype, "float", f"t{k}")
    b.entries[k] = {"kind": "tensor", "name": f"t{k}"}
    return {"new": k}


def _pairs(b: _Builder, lab: str, mapping: str) -> list[list[Any]]:
    count = b.d.integer(0, 3, f"{lab}.count")
    keys: list[str] = []
    for i in range(count):
        options = [k for k in KEYS if k not in keys]
        keys.append(b.d.choice(options, f"{lab}.key[{i}]"))
    if mapping == "dict" and b.kind == "ParameterDict":
        keys.sort()  # torch sorts a plain dict's items: given sorted, either reading of the docs agrees
    return [[k, b.value(f"{lab}.value[{i}]")] for i, k in enumerate(keys)]


def _dict_op(b: _Builder, j: int, invalid: bool) -> None:
    d, keys = b.d, b.model.keys()
    lab = f"op[{j}]"
    if invalid:
        return _invalid_dict_op(b, lab)
    needs_key = ("pop", "del", "get", "reassign", "popitem", "setdefault")
    ops = [o for o in DICT_OPS[b.kind] if (keys or o not in needs_key) and (len(keys) < len(KEYS) or o in needs_key)]
    op = b.op = d.choice(ops, lab)
    if op in ("setitem", "reassign"):
        b.step({"method": "__setitem__", "args": [b.key(f"{lab}.key", op == "reassign"), b.value(f"{lab}.value")]})
    elif op == "update":
        mapping = d.choice(MAPPINGS, f"{lab}.mapping")
        b.step({"method": "update", "args": [{"mapping": mapping, "pairs": _pairs(b, lab, mapping)}]})
    elif op == "pop":
        b.read(f"op{j}.result", "pop", b.key(f"{lab}.key", True))
    elif op == "del":
        b.step({"method": "__delitem__", "args": [b.key(f"{lab}.key", True)]})
    elif op == "get":
        b.read(f"op{j}.result", "__getitem__", b.key(f"{lab}.key", True))
    elif op == "setdefault-like":  # ModuleDict: `if key not in d: d[key] = m`
        key = b.key(f"{lab}.key", bool(keys) and d.flag(f"{lab}.present"))
        b.read(f"op{j}.present", "__contains__", key)
        if key not in keys:
            b.step({"method": "__setitem__", "args": [key, b.value(f"{lab}.value")]})
    elif op == "setdefault":
        key = b.key(f"{lab}.key", d.flag(f"{lab}.present"))
        b.read(f"op{j}.result", "setdefault", key, b.fresh(f"{lab}.default"))
    elif op == "get missing":
        b.read(f"op{j}.result", "get", b.key(f"{lab}.key", False), b.fresh(f"{lab}.default", ("tensor",)))
    elif op == "popitem":
        b.read([f"op{j}.key", f"op{j}.value"], "popitem")
    else:
        b.step({"method": "clear", "args": []})
    return None


def _invalid_dict_op(b: _Builder, lab: str) -> None:
    d = b.d
    options = ("missing key", "pop a missing key", "a key with a dot", "an empty key") + (
        ("a key shadowing an attribute", "store a tensor") if b.kind == "ModuleDict" else ("a key that is no string",))
    error = b.op = d.choice(options, f"{lab} (invalid)")
    missing = next(k for k in KEYS if k not in b.model.keys()) if len(b.model) < len(KEYS) else "zz"
    if error in ("missing key", "pop a missing key"):
        b.steps.append({"op": b.op, "method": "__getitem__" if error == "missing key" else "pop", "args": [missing]})
    else:
        key = {"a key with a dot": "a.b", "an empty key": "", "a key shadowing an attribute": "update",
               "a key that is no string": 3, "store a tensor": missing}[error]
        value = _plain_tensor(b, f"{lab}.tensor") if error == "store a tensor" else b.fresh(f"{lab}.value")
        b.steps.append({"op": b.op, "method": "__setitem__", "args": [key, value]})
    b.note = error


def _observe(b: _Builder) -> None:
    """The final observations: length, entries, registration, every index or key, the forward."""
    b.op = "observe"
    b.read("length", "__len__")
    if b.is_dict:
        b.read("keys", "keys")
        b.read("values", "values")
    else:
        b.read("entries", "__iter__")
    if b.modules:
        b.read(["children.names", "children.entries"], "named_children", pairs=True)
    b.read(["parameters.names", "parameters.values"], "named_parameters", pairs=True)
    b.read(["state_dict.names", "state_dict.values"], "state_dict", pairs=True)
    if b.is_dict:
        for key in b.model.keys():
            b.read(f"item[{key}]", "__getitem__", key)
        missing = next((k for k in KEYS if k not in b.model.keys()), None)
        if missing is not None:
            b.read(f"contains[{missing}]", "__contains__", missing)
    else:
        for i in range(-len(b.model), len(b.model)):
            b.read(f"item[{i}]", "__getitem__", i)
    if b.modules and _prelu_path(b.model) <= MAX_CHAIN:
        if b.kind == "Sequential":
            b.read("forward", "__call__", {"input": "input"})
        else:
            b.read("forward", "values" if b.is_dict else "__iter__", chain={"input": "input"})


@st.composite
def _operations_case(draw: Any, kind: str, dtype: str, invalid: bool = False) -> Case:
    from reference.containers import Resolver, build

    d = S.Drawer(draw)
    b = _Builder(d, kind, dtype)
    if b.modules:
        b.channels = d.integer(1, 4, "C")
        rng = np.random.default_rng(d.integer(0, 2**32 - 1, "input.seed"))
        shape = (d.integer(1, 3, "N"), b.channels)
        probe = rng.uniform(0.5, 2.0, shape) * rng.choice((-1.0, 1.0), shape)
        b.inputs["input"] = DTYPES[dtype].round(probe)
    named = kind == "Sequential" and d.flag("from an OrderedDict")
    count = d.integer(0 if b.modules else 1, 3, "initial entries")
    if b.is_dict:
        init: Any = {"mapping": d.choice(MAPPINGS[:3], "constructed from"), "pairs": []}
        init["pairs"] = _pairs_init(b, count, init["mapping"])
    elif named:
        init = [[SEQUENTIAL_NAMES[i], b.fresh(f"init[{i}]")] for i in range(count)]
    else:
        init = [b.fresh(f"init[{i}]") for i in range(count)]
    b.resolver = Resolver(b.entries, b.inputs)
    b.model = build(kind, init, named, b.resolver)
    operations = d.integer(0 if invalid else 1, 6 if not invalid else 2, "operations")
    op = _dict_op if b.is_dict else _list_op
    for j in range(operations):
        op(b, j, False)
    if invalid:
        op(b, operations, True)
    else:
        _observe(b)
    params = {"container": kind, "named": named, "init": init, "entries": b.entries, "steps": b.steps}
    return Case(op=kind, dtype=dtype, params=params, inputs=b.inputs, layouts=b.layouts, invalid=invalid,
                note=b.note, variant="semantics")


def _pairs_init(b: _Builder, count: int, mapping: str) -> list[list[Any]]:
    keys: list[str] = []
    for i in range(count):
        keys.append(b.d.choice([k for k in KEYS if k not in keys], f"init[{i}].key"))
    if mapping == "dict" and b.kind == "ParameterDict":
        keys.sort()
    return [[k, b.fresh(f"init[{i}]")] for i, k in enumerate(keys)]


def operation_cases(kind: str) -> Callable[[str], st.SearchStrategy[Case]]:
    """Cases of container ``kind``: constructed with 0 to 3 entries, edited by 1 to 6 documented
    operations drawn among those its state allows (simplest first), then observed."""
    return lambda dtype: _operations_case(kind, dtype)


def invalid_operation_cases(kind: str) -> Callable[[str], st.SearchStrategy[Case]]:
    """Up to two valid operations, then one that breaks a rule torch enforces."""
    return lambda dtype: _operations_case(kind, dtype, invalid=True)


# -- regimes of container operations ------------------------------------------------------------------------

def _args(data: Any) -> list[Any]:
    """Every argument datum inside ``data`` (lists and mappings walked)."""
    if isinstance(data, list):
        return [x for item in data for x in _args(item)]
    if isinstance(data, dict):
        inner = data.get("list") or data.get("sequential") or [v for _, v in data.get("pairs", [])]
        return [data, *_args(inner)]
    return [data]


NEGATIVE_PINS = {"initial entries": 2, "op[0]": "setitem", "op[0].index": -1}


def did(*ops: str) -> Callable[[Case], bool]:
    """The case performs one of ``ops`` (as drawn: ``op[i]``)."""
    return lambda case: any(step.get("op") in ops for step in case.params["steps"])


def negative_index(case: Case) -> bool:
    return any(isinstance(a, int) and not isinstance(a, bool) and a < 0 and step.get("op") != "observe"
               for step in case.params["steps"] for a in step.get("args", ())[:1])


def stored_twice(case: Case) -> bool:
    return any(isinstance(a, dict) and "at" in a for step in case.params["steps"] for a in _args(step.get("args", [])))


def nested(case: Case) -> bool:
    used = {a["new"] for step in case.params["steps"] for a in _args(step.get("args", []))
            if isinstance(a, dict) and "new" in a} | {a["new"] for a in _args(case.params["init"])
                                                      if isinstance(a, dict) and "new" in a}
    return any(case.params["entries"][k]["kind"] in ("sequential", "dict") for k in used)


def plain_tensors(case: Case) -> bool:
    return any(e["kind"] == "tensor" for e in case.params["entries"].values())


def updated_from(mapping: str) -> Callable[[Case], bool]:
    return lambda case: any(step["method"] == "update" and step["args"][0]["mapping"] == mapping
                            for step in case.params["steps"])


def empty_at_the_end(case: Case) -> bool:
    return any(step.get("as") == "length" for step in case.params["steps"]) and observed(case)["length"] == 0


def non_contiguous(case: Case) -> bool:
    return any(layout.kind != "contiguous" for layout in case.layouts.values())


def observed(case: Case) -> dict[str, np.ndarray]:
    """What the documented semantics (``reference.containers``) observe for a container-operations
    case: the reference of ``families.containers.operations``."""
    from reference import containers as model

    p = case.params
    resolver = model.Resolver(p["entries"], case.inputs)
    container = model.build(p["container"], p["init"], p["named"], resolver)
    return model.run(container, p["steps"], resolver, model.Encoder(VOCABULARY))
