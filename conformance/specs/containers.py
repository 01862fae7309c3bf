"""Containers running composed models: Sequential (positional and OrderedDict), ModuleList driven by
a loop, ParameterList holding the weights of a functional model, DataParallel.

Every case is a model of 1 to 5 declared catalogue layers whose shapes chain (``conformance.chainable``:
Linear, ReLU, Conv2d, MaxPool2d, BatchNorm1d/2d, AvgPool2d, Softmax, Embedding, CrossEntropyLoss):
the number of layers is drawn first and each layer's kind from the options its input allows,
simplest first, so a failing model shrinks to the fewest and simplest layers that still fail; each
layer draws its own parameters. The input is a feature matrix (N, F), an image batch (N, C, H, W)
or token ids (N, T) (then an Embedding comes first). The reference is the composition of the
layers' references and the bound propagates each layer's own bound through the following layers
(``conformance.composition``). Compared: the output, the input gradient, every parameter gradient
under the container's name for it (``0.weight``, ``conv0.bias``, ``module.2.weight``, ``3``) and
every buffer after the call (BatchNorm's running statistics and num_batches_tracked).

How each container is called (the call tree rebuilds the model, so repro scripts need only torch):

- Sequential: ``torch.nn.Sequential(*modules)``; the [ordered] variant ``Sequential(OrderedDict(...))``
  with named children (``conv0``, ``bn1``...).
- ModuleList: ``torch.nn.ModuleList(modules)`` run by the call interpreter's loop node
  (``x = m(x)`` for each entry, in iteration order): a ModuleList has no forward of its own, and a
  loop written in the call tree needs no wrapper class that a repro script would have to import.
- ParameterList: ``torch.nn.ParameterList(values)`` built from plain tensors (which it must turn into
  Parameters), read back entry by entry by a tree of ``torch.nn.functional`` calls (F.linear,
  F.conv2d, F.batch_norm with batch statistics, F.relu...): a functional model, which may end in
  F.cross_entropy against class-index targets (the case input ``target``).
- DataParallel: ``torch.nn.DataParallel(Sequential(...), device_ids)``, device_ids the default (every
  visible device) or two or three replicas on device 0. Without CUDA it runs the wrapped module
  directly (device_ids is ignored); its parameters and buffers carry the ``module.`` prefix. On CUDA
  the batch is scattered over the replicas (chunks of ceil(N/k): a batch of 3 over 2 replicas is
  2 + 1), each replica runs on its chunk, outputs are gathered on device_ids[0] and parameter
  gradients summed. So that one reference holds either way, its models contain no layer whose
  result depends on the split: BatchNorm appears only in evaluation mode, with running statistics
  (with batch statistics each replica would normalise its own chunk, and only replica 0's buffer
  updates would survive).

Not covered: recurrent layers (an LSTM returns a tuple, which no Sequential or loop can pass on),
keyword arguments scattered by DataParallel and output_device (the models take one input), layouts
other than contiguous for the model's input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case
from conformance import strategies as S
from conformance.chainable import CHAINABLE, ORDER, Context
from conformance.composition import (
    COMPOSED_TOLERANCE,
    DrawnLayer,
    EveryTensor,
    compose_reference,
    composed_comparator,
    layers_of,
)
from conformance.spec import LayerSpec, Regime, TorchMapping, all_specs, declare, result_reference

INPUT_KINDS = ("features", "image", "tokens")
MAX_LAYERS = 5


# -- drawing a model ----------------------------------------------------------------------------------

def _draw_input(d: S.Drawer, dtype: str, tier: str, kind: str) -> np.ndarray:
    n = d.integer(2, 4, "N")
    if kind == "tokens":
        steps, vocab = d.integer(1, 6, "T"), d.integer(1, 10, "vocabulary")
        rng = np.random.default_rng(d.integer(0, 2**32 - 1, "tokens.seed"))
        return rng.integers(0, vocab, size=(n, steps)).astype(np.int64)
    if kind == "image":
        c = d.integer(1, 3, "C")
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
                      functional=functional, label=f"layer[{i}]", split_invariant=split_invariant)
        drawn = CHAINABLE[op].draw(d, ctx, x)
        layers.append(drawn)
        x = _next_activation(drawn, x, dtype, tier, train)
    return first, layers, tier, train


# -- naming the model's tensors in a container --------------------------------------------------------

def _module_paths(prefix: str, names: list[str]) -> Callable[[int, DrawnLayer], dict[str, str]]:
    def paths(i: int, layer: DrawnLayer) -> dict[str, str]:
        return {local: f"{prefix}{names[i]}.{local}" for local in layer.arrays}
    return paths


def _assemble(op: str, variant: str, dtype: str, x: np.ndarray, layers: list[DrawnLayer], tier: str, train: bool,
              d: S.Drawer, naming: str) -> Case:
    """The container case: every layer's arrays under its container path, as case inputs."""
    if naming == "ordered":
        names = [f"{CHAINABLE[layer.op].short}{i}" for i, layer in enumerate(layers)]
    else:
        names = [str(i) for i in range(len(layers))]
    inputs = {"input": x}
    described = []
    counter = 0
    for i, layer in enumerate(layers):
        if naming == "flat":  # a ParameterList: parameters numbered in order
            paths = {local: local for local in layer.extras}  # a loss's target: the case input "target"
            for local in layer.parameters:
                paths[local] = str(counter)
                counter += 1
        else:
            paths = _module_paths("module." if naming == "module" else "", names)(i, layer)
        inputs.update({paths[local]: layer.arrays[local] for local in paths})
        described.append({"op": layer.op, "params": layer.params, "name": names[i],
                          "parameters": list(layer.parameters), "buffers": list(layer.buffers),
                          "mutated": list(layer.mutated), "extras": list(layer.extras), "paths": paths})
    differentiable = (("input",) if x.dtype.kind == "f" else ()) + tuple(
        layer["paths"][local] for layer in described for local in layer["parameters"])
    return Case(op=op, dtype=dtype, params={"layers": described}, inputs=inputs, differentiable=differentiable,
                train=train, tier=tier, cotangent_seed=S.seed(d), variant=variant)


REPLICAS = {"default": None, "two replicas": [0, 0], "three replicas": [0, 0, 0]}


def _model_case(op: str, variant: str, naming: str) -> Callable[[str], st.SearchStrategy[Case]]:
    functional, wrapped = naming == "flat", naming == "module"

    @st.composite
    def build(draw: Any, dtype: str) -> Case:
        d = S.Drawer(draw)
        x, layers, tier, train = draw_model(d, dtype, functional, split_invariant=wrapped)
        case = _assemble(op, variant, dtype, x, layers, tier, train, d, naming)
        if wrapped:  # DataParallel's device_ids: several replicas on device 0 (ignored without CUDA)
            case.params["device_ids"] = REPLICAS[d.choice(tuple(REPLICAS), "device_ids")]
        return case

    return lambda dtype: build(dtype)


# -- call trees ---------------------------------------------------------------------------------------

def _module_node(layer: dict[str, Any]) -> dict[str, Any]:
    return {"module": {"target": f"torch.nn.{layer['op']}", "init": layer["params"]}}


def _modules(case: Case) -> list[dict[str, Any]]:
    return [_module_node(layer) for layer in layers_of(case)]


def _all(kind: str) -> Callable[[Case], tuple[str, ...]]:
    def paths(case: Case) -> tuple[str, ...]:
        return tuple(layer["paths"][local] for layer in layers_of(case) for local in layer[kind])
    return paths


def _module_mapping(target: str, **fields: Any) -> TorchMapping:
    fields.setdefault("ctor", lambda c: {})
    return TorchMapping(target, parameters=_all("parameters"), buffers=_all("buffers"), mutated=_all("mutated"),
                        **fields)


def _ordered_dict(case: Case) -> list[Any]:
    pairs = [[layer["name"], _module_node(layer)] for layer in layers_of(case)]
    return [{"call": {"target": "collections.OrderedDict", "args": [pairs], "kwargs": {}}}]


def _functional_forward(case: Case) -> Any:
    x: Any = {"input": "input"}
    for layer in layers_of(case):
        nodes = {local: {"input": path} if local in layer["extras"] else {"attribute": path}
                 for local, path in layer["paths"].items()}
        x = CHAINABLE[layer["op"]].functional(layer["params"], x, nodes)
    return x


LOOP = {"loop": {"over": {"attribute": ""}, "input": {"input": "input"}}}

MAPPINGS = {
    "Sequential": _module_mapping("torch.nn.Sequential", ctor_args=_modules),
    "Sequential[ordered]": _module_mapping("torch.nn.Sequential", ctor_args=_ordered_dict),
    "ModuleList": TorchMapping("torch.nn.ModuleList", ctor=lambda c: {"modules": {"list": _modules(c)}},
                               parameters=_all("parameters"), buffers=_all("buffers"), mutated=_all("mutated"),
                               args=(), forward=lambda c: LOOP),
    "ParameterList": TorchMapping("torch.nn.ParameterList",
                                  ctor=lambda c: {"values": {"list": [{"input": p} for p in _all("parameters")(c)]}},
                                  parameters=_all("parameters"), args=(), forward=_functional_forward),
    "DataParallel": _module_mapping("torch.nn.DataParallel", ctor=lambda c: {"module": {"call": {
        "target": "torch.nn.Sequential", "args": _modules(c), "kwargs": {}}}, "device_ids": c.params["device_ids"]}),
}


# -- regimes ------------------------------------------------------------------------------------------

def _ops(case: Case) -> list[str]:
    return [layer["op"] for layer in layers_of(case)]


def _inplace(case: Case) -> bool:
    return any(layer["op"] == "ReLU" and layer["params"]["inplace"] for layer in layers_of(case))


def _bn(case: Case, track: bool) -> bool:
    return any(layer["op"].startswith("BatchNorm") and layer["params"]["track_running_stats"] == track
               for layer in layers_of(case))


_CONV_BLOCK = ("Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Linear")
_FLOAT = {"tier": "float"}


REGIMES = {regime.name: regime for regime in (
    Regime("exact tier", lambda c: c.tier == "exact", {"tier": "exact", "layers": 3},
           "integer chains of piecewise-linear layers: bit-exact"),
    Regime("five layers", lambda c: len(_ops(c)) == MAX_LAYERS, {"layers": MAX_LAYERS}),
    Regime("conv block", lambda c: _ops(c) == list(_CONV_BLOCK),
           {**_FLOAT, "input kind": "image", "layers": 5, **{f"layer[{i}]": op for i, op in enumerate(_CONV_BLOCK)}},
           "Conv2d → BatchNorm2d → ReLU → MaxPool2d → Linear"),
    Regime("tokens", lambda c: _ops(c)[0] == "Embedding", {"input kind": "tokens", "layers": 3}, "Embedding first"),
    Regime("in-place ReLU", _inplace, {"layers": 2, "layer[0]": "Linear", "layer[1]": "ReLU",
                                       "layer[1].inplace": True}),
    Regime("Softmax inside", lambda c: "Softmax" in _ops(c)[:-1], {**_FLOAT, "layers": 3, "layer[1]": "Softmax"}),
    Regime("loss at the end", lambda c: _ops(c)[-1] == "CrossEntropyLoss",
           {**_FLOAT, "input kind": "features", "layers": 3, "layer[1]": "Linear", "layer[1].out_features": 4,
            "layer[2]": "CrossEntropyLoss"},
           "a functional model ending in F.cross_entropy against class-index targets"),
    Regime("evaluation mode", lambda c: not c.train,
           {"train": False, "input kind": "image", **_FLOAT, "layer[0]": "BatchNorm2d"}),
    Regime("BatchNorm buffers updated", lambda c: c.train and _bn(c, True),
           {**_FLOAT, "train": True, "input kind": "image", "layer[0]": "BatchNorm2d",
            "layer[0].track_running_stats": True}),
    Regime("conv block in eval", lambda c: not c.train and _ops(c) == list(_CONV_BLOCK),
           {**_FLOAT, "train": False, "input kind": "image", "layers": 5,
            **{f"layer[{i}]": op for i, op in enumerate(_CONV_BLOCK)}}),
    Regime("two replicas", lambda c: c.params.get("device_ids") == [0, 0],
           {"device_ids": "two replicas", "N": 3, "layers": 2},
           "on CUDA the batch of 3 is scattered over two replicas (2 + 1) and gathered"),
    Regime("BatchNorm running statistics in eval", lambda c: not c.train and _bn(c, True),
           {**_FLOAT, "train": False, "input kind": "image", "layer[0]": "BatchNorm2d",
            "layer[0].track_running_stats": True}),
)}
# Sequential carries every regime of module containers; the others run the same models under other
# names or calls, so each takes the regimes where its own mechanism matters (naming, the loop,
# buffers, replicas, a functional model ending in a loss).
_SEQUENTIAL = ("exact tier", "five layers", "conv block", "tokens", "in-place ReLU", "Softmax inside",
               "evaluation mode", "BatchNorm buffers updated", "BatchNorm running statistics in eval")
_NAMED = ("exact tier", "conv block", "BatchNorm buffers updated")
_LOOP = ("conv block", "in-place ReLU", "BatchNorm buffers updated", "tokens")
_FUNCTIONAL = ("exact tier", "five layers", "conv block", "tokens", "in-place ReLU", "Softmax inside",
               "loss at the end")
_WRAPPED = ("conv block in eval", "BatchNorm running statistics in eval", "two replicas")


def _declare(op: str, variant: str, naming: str, regimes: tuple[str, ...], notes: str) -> None:
    key = f"{op}[{variant}]" if variant else op
    declare(LayerSpec(
        name=op, variant=variant, family="container",
        cases=_model_case(op, variant, naming),
        reference=result_reference(compose_reference),
        torch=MAPPINGS[key],
        tolerance=COMPOSED_TOLERANCE,
        comparators=EveryTensor(composed_comparator),
        smooth_at=_smooth,
        regimes=tuple(REGIMES[name] for name in regimes),
        notes=notes,
    ))


def _smooth(case: Case) -> bool:
    """Finite differences apply where every layer's own declaration says they do at its input
    (no ReLU input near 0, no max-pool tie, no frequency-scaled embedding rows...)."""
    with np.errstate(all="ignore"):
        runs = compose_reference(case, False).meta["runs"]
    return all(run.spec.smooth_at is None or run.spec.smooth_at(run.case) for run in runs)


_declare("Sequential", "", "index", _SEQUENTIAL,
         "torch.nn.Sequential(*modules): children named 0, 1, ...; the input passes through them in order.")
_declare("Sequential", "ordered", "ordered", _NAMED,
         "torch.nn.Sequential(OrderedDict): children named after their kind and position (conv0, bn1, ...).")
_declare("ModuleList", "", "index", _LOOP,
         "torch.nn.ModuleList(modules) driven by a loop (x = m(x) over the list, in iteration order).")
_declare("ParameterList", "", "flat", _FUNCTIONAL,
         "torch.nn.ParameterList of plain tensors (turned into Parameters) holding the weights of a functional "
         "model: torch.nn.functional calls reading entries 0, 1, ... in order. BatchNorm uses batch statistics.")
_declare("DataParallel", "", "module", _WRAPPED,
         "torch.nn.DataParallel(Sequential(...)): on a CPU-only machine it runs the wrapped module directly; "
         "parameters and buffers carry the module. prefix.")


def cross_entropy_smoothing_overflows(case: Case) -> bool:
    """A float16 functional model ending in CrossEntropyLoss with label smoothing whose sum of
    log-probabilities (over the whole batch when reduced, else per sample) leaves float16's range:
    torch forms that sum as a float16 tensor."""
    layers = layers_of(case)
    if case.dtype != "float16" or not layers or layers[-1]["op"] != "CrossEntropyLoss" \
            or not layers[-1]["params"]["label_smoothing"]:
        return False
    with np.errstate(all="ignore"):
        logits = compose_reference(case, False).meta["runs"][-1].x
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    sums = np.abs(log_p).sum(axis=1) if layers[-1]["params"]["reduction"] == "none" else np.abs(log_p).sum()
    return bool(np.any(sums > 65504))

