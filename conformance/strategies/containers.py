"""Case strategies of the container family's composed models (``model_cases``). The container
operations are drawn in ``strategies.container_ops``, the gradient utilities of torch.nn.utils in
``strategies.grad_utils``.

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
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case
from conformance import strategies as S
from conformance.chainable import CHAINABLE, ORDER, WIDE, Context
from conformance.composition import DrawnLayer, compose_reference, layers_of
from conformance.spec import Regime, all_specs, current_pins

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
