"""The container family's templates: composed models, container operations, gradient utilities.

- ``composed(op, naming, ...)``: a container running a randomly composed model of declared layers
  (``conformance.strategies.containers.model_cases``); its reference composes the layers' own
  references and pullbacks and its bound propagates each layer's bound (``conformance.composition``).
  ``naming`` says how the container holds the layers and how it is called (``CALLS``).
- ``operations(op, ...)``: a container edited by a drawn sequence of documented operations and
  observed (lengths, keys, which entries and parameters are registered, values), against the plain
  Python model of the documented semantics (``reference.containers``); see ``operation_call``.
- ``gradient_utility(function, ...)``: a torch.nn.utils function over gradients or parameters
  (``UTILITIES``: its call and its reference, built from the registered ``reference.functional``
  function).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from backends.base import Case, Result
from conformance.chainable import CHAINABLE
from conformance.composition import (
    COMPOSED_TOLERANCE,
    EveryTensor,
    compose_reference,
    composed_comparator,
    composed_second_order_error,
    layers_of,
)
from conformance.dtypes import DTYPES
from conformance.numerics import containers as N
from conformance.spec import CaseStrategy, Comparator, LayerSpec, Pullback, Regime, Tolerance, TorchMapping
from conformance.strategies import container_ops as SO
from conformance.strategies import containers as SC
from conformance.tolerance import analysed_tolerance
from reference import clip as clip_ref
from reference import functional as RF

# -- composed models: how each container holds and runs the layers -----------------------------------


def _module_node(layer: Mapping[str, Any]) -> dict[str, Any]:
    return {"module": {"target": f"torch.nn.{layer['op']}", "init": layer["params"]}}


def _modules(case: Case) -> list[dict[str, Any]]:
    return [_module_node(layer) for layer in layers_of(case)]


def _all(kind: str) -> Callable[[Case], tuple[str, ...]]:
    def paths(case: Case) -> tuple[str, ...]:
        return tuple(layer["paths"][local] for layer in layers_of(case) for local in layer[kind])
    return paths


def _ordered_dict(case: Case) -> dict[str, Any]:
    pairs = [[layer["name"], _module_node(layer)] for layer in layers_of(case)]
    return {"call": {"target": "collections.OrderedDict", "args": [pairs], "kwargs": {}}}


def _functional_forward(case: Case) -> Any:
    """The model as torch.nn.functional calls reading the container's entries by path."""
    x: Any = {"input": "input"}
    for layer in layers_of(case):
        nodes = {local: {"input": path} if local in layer["extras"] else {"attribute": path}
                 for local, path in layer["paths"].items()}
        x = CHAINABLE[layer["op"]].functional(layer["params"], x, nodes)
    return x


def _keyed_values(case: Case) -> dict[str, Any]:
    """A ParameterDict's constructor argument: an OrderedDict of plain tensors, by key."""
    pairs = [[path, {"input": path}] for path in _all("parameters")(case)]
    return {"call": {"target": "collections.OrderedDict", "args": [pairs], "kwargs": {}}}


LOOP = {"loop": {"over": {"attribute": ""}, "input": {"input": "input"}}}
# ModuleDict has no forward: a loop over its values(), in their order (a sequence of operations
# on the container, ``backends.torch_call``'s ``steps`` node: one step, chained through the input).
VALUES_LOOP = {"steps": {"on": {"attribute": ""}, "do": [
    {"method": "values", "chain": {"input": "input"}, "read": True}]}}


def _mapping(target: str, **fields: Any) -> TorchMapping:
    fields.setdefault("ctor", lambda c: {})
    fields.setdefault("buffers", _all("buffers"))
    fields.setdefault("mutated", _all("mutated"))
    return TorchMapping(target, parameters=_all("parameters"), **fields)


CALLS: dict[str, TorchMapping] = {
    "Sequential": _mapping("torch.nn.Sequential", ctor_args=_modules),
    "Sequential[ordered]": _mapping("torch.nn.Sequential", ctor_args=lambda c: [_ordered_dict(c)]),
    "ModuleList": _mapping("torch.nn.ModuleList", ctor=lambda c: {"modules": {"list": _modules(c)}}, args=(),
                           forward=lambda c: LOOP),
    "ModuleDict": _mapping("torch.nn.ModuleDict", ctor=lambda c: {"modules": _ordered_dict(c)}, args=(),
                           forward=lambda c: VALUES_LOOP, outputs=lambda c: ["output"]),
    "ParameterList": _mapping("torch.nn.ParameterList", buffers=(), mutated=(), args=(),
                              ctor=lambda c: {"values": {"list": [{"input": p} for p in _all("parameters")(c)]}},
                              forward=_functional_forward),
    "ParameterDict": _mapping("torch.nn.ParameterDict", buffers=(), mutated=(), args=(),
                              ctor=lambda c: {"parameters": _keyed_values(c)}, forward=_functional_forward),
    "DataParallel": _mapping("torch.nn.DataParallel", ctor=lambda c: {"module": {"call": {
        "target": "torch.nn.Sequential", "args": _modules(c), "kwargs": {}}}, "device_ids": c.params["device_ids"]}),
}


def composed_reference(case: Case) -> tuple[Result, Pullback]:
    return compose_reference(case)


def composed(op: str, naming: str, *, variant: str = "", regimes: Sequence[Regime] = (), notes: str = "") -> LayerSpec:
    """Container ``op`` running composed models whose layers it holds under ``naming``
    (``conformance.strategies.containers``); ``CALLS[op or op[variant]]`` says how torch runs it.
    The vjp2 judge also gets its layers' own second-order error terms, composed along the model
    (``conformance.composition.composed_second_order_error``)."""
    key = f"{op}[{variant}]" if variant else op
    return LayerSpec(
        name=op, variant=variant, family="container", kind="composed",
        cases=SC.model_cases(op, variant, naming), reference=composed_reference, torch=CALLS[key],
        tolerance=COMPOSED_TOLERANCE, comparators=EveryTensor(composed_comparator), smooth_at=N.model_smooth_at,
        second_order_error=composed_second_order_error, regimes=tuple(regimes), notes=notes,
    )


# -- gradient utilities ----------------------------------------------------------------------------------

def _parameter_nodes(case: Case) -> list[dict[str, Any]]:
    """Each parameter as an nn.Parameter holding its gradient ``grad<i>`` (if it has one)."""
    nodes = []
    for i in range(case.params["count"]):
        grad = f"grad{i}" if f"grad{i}" in case.inputs and case.params["form"] != "no gradients" else None
        nodes.append({"parameter": f"param{i}", "grad": grad})
    return nodes


def _gradient_nodes(case: Case) -> list[dict[str, Any]]:
    return [{"input": name} for name in N.grad_names(case)]


def _param_nodes(case: Case) -> list[dict[str, Any]]:
    return [{"input": name} for name in _param_names(case)]


def _in_form(case: Case, nodes: list[Any]) -> list[Any]:
    """The positional argument holding ``nodes`` as the case's ``form`` passes it."""
    form = case.params["form"]
    if form == "single tensor":
        return [nodes[0]]
    if form == "tuple":
        return [nodes]  # a JSON list is a tuple of nodes
    if form == "iterator":
        return [{"call": {"target": "builtins.iter", "args": [{"list": nodes}], "kwargs": {}}}]
    return [{"list": [] if form == "empty list" else nodes}]


def _norm_type(case: Case) -> Any:
    return {"literal": "inf"} if case.params["norm_type_as"] == "string" else case.params["norm_type"]


def _mutated_grads(case: Case) -> tuple[str, ...]:
    return tuple(N.grad_names(case)) if case.params["form"] != "no gradients" else ()


def _total_norm(case: Case) -> np.ndarray:
    """The total norm as torch returns it (``numerics.dtype_total``); raises where
    error_if_nonfinite asks torch to."""
    total = N.dtype_total(case)
    if case.params["error_if_nonfinite"] and not np.isfinite(total):
        raise ValueError("the total norm is non-finite and error_if_nonfinite is set")
    return np.array(total)


def _clipped(case: Case, total: np.ndarray, result: Result) -> Result:
    names = N.grad_names(case)
    clipped = RF.clip_grads_with_norm_([case.inputs[n] for n in names], case.params["max_norm"], total)
    result.state.update(zip(names, clipped))
    result.meta["coefficient"] = clip_ref.clip_coefficient(case.params["max_norm"], float(total))
    return result


def _clip_grad_norm(case: Case) -> tuple[Result, Pullback | None]:
    total = _total_norm(case)
    return _clipped(case, total, Result(outputs={"output": total})), None


def _get_total_norm(case: Case) -> tuple[Result, Pullback | None]:
    return Result(outputs={"output": _total_norm(case)}), None


def _clip_grads_with_norm(case: Case) -> tuple[Result, Pullback | None]:
    total = case.inputs["total_norm"] if case.params["total_norm_as"] == "tensor" else float(case.inputs["total_norm"])
    if not isinstance(total, np.ndarray):
        raise TypeError("total_norm must be a tensor")
    return _clipped(case, total, Result()), None


def _clip_grad_value(case: Case) -> tuple[Result, Pullback | None]:
    names = N.grad_names(case)
    # torch compares in the dtype: clamping to the clip value rounded to the dtype is the same
    # (no value of the dtype lies strictly between the clip value and its rounding).
    bound = float(DTYPES[case.dtype].round(np.float64(case.params["clip_value"])))
    clipped = RF.clip_grad_value_([case.inputs[n] for n in names], bound)
    return Result(state=dict(zip(names, clipped))), None


def _param_names(case: Case) -> list[str]:
    return [f"param{i}" for i in range(case.params["count"])]


def _parameters_to_vector(case: Case) -> tuple[Result, Pullback]:
    names = _param_names(case)
    params = [case.inputs[n] for n in names]
    out = RF.parameters_to_vector(params)

    def pullback(cotangents: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        grads = RF.vjp("parameters_to_vector", params, cotangent=cotangents["output"])["parameters"]
        return dict(zip(names, grads))

    return Result(outputs={"output": out}), pullback


def _vector_to_parameters(case: Case) -> tuple[Result, Pullback | None]:
    names = _param_names(case)
    vec = case.inputs["vec"] if case.params["vec_as"] == "tensor" else case.inputs["vec"].tolist()
    values = RF.vector_to_parameters(vec, [case.inputs[n] for n in names])
    return Result(state=dict(zip(names, values))), None


def _vec_node(case: Case) -> Any:
    return {"input": "vec"} if case.params["vec_as"] == "tensor" else {"literal": case.inputs["vec"].tolist()}


def _total_norm_node(case: Case) -> Any:
    if case.params["total_norm_as"] == "tensor":
        return {"input": "total_norm"}
    return float(case.inputs["total_norm"])


@dataclass(frozen=True)
class Utility:
    """How torch calls one utility (``TorchMapping`` fields) and its reference."""

    reference: Callable[[Case], tuple[Result, Pullback | None]]
    args: Callable[[Case], list[Any]]
    kwargs: Callable[[Case], dict[str, Any]]
    outputs: tuple[str, ...] = ()
    mutated: Callable[[Case], tuple[str, ...]] = lambda case: ()
    backward: bool = False


UTILITIES: dict[str, Utility] = {
    "clip_grad_norm_": Utility(
        _clip_grad_norm, lambda c: _in_form(c, _parameter_nodes(c)),
        lambda c: {"max_norm": c.params["max_norm"], "norm_type": _norm_type(c),
                   "error_if_nonfinite": c.params["error_if_nonfinite"], "foreach": c.params["foreach"]},
        outputs=("output",), mutated=_mutated_grads),
    "get_total_norm": Utility(
        _get_total_norm, lambda c: _in_form(c, _gradient_nodes(c)),
        lambda c: {"norm_type": _norm_type(c), "error_if_nonfinite": c.params["error_if_nonfinite"],
                   "foreach": c.params["foreach"]},
        outputs=("output",)),
    "clip_grads_with_norm_": Utility(
        _clip_grads_with_norm, lambda c: _in_form(c, _parameter_nodes(c)),
        lambda c: {"max_norm": c.params["max_norm"], "total_norm": _total_norm_node(c), "foreach": c.params["foreach"]},
        mutated=_mutated_grads),
    "clip_grad_value_": Utility(
        _clip_grad_value, lambda c: _in_form(c, _parameter_nodes(c)),
        lambda c: {"clip_value": c.params["clip_value"], "foreach": c.params["foreach"]}, mutated=_mutated_grads),
    "parameters_to_vector": Utility(
        _parameters_to_vector, lambda c: _in_form(c, _param_nodes(c)), lambda c: {}, outputs=("output",),
        backward=True),
    "vector_to_parameters": Utility(
        _vector_to_parameters, lambda c: [_vec_node(c), {"list": _param_nodes(c)}], lambda c: {},
        mutated=lambda c: tuple(_param_names(c))),
}

EXACT = Tolerance(magnitude="ref", out_ulps=0.0, exact="always")
NORM_TOLERANCE = analysed_tolerance(N.norm_errors, N.norm_length, out_ulps=0.0)


def gradient_utility(function: str, *, cases: CaseStrategy, invalid: CaseStrategy | None = None,
                     tolerance: Tolerance = EXACT, comparators: Mapping[str, Comparator] | None = None,
                     regimes: Sequence[Regime] = (), notes: str = "") -> LayerSpec:
    """``torch.nn.utils.<function>`` (``UTILITIES[function]``) judged under ``tolerance``."""
    use = UTILITIES[function]
    target = f"torch.nn.utils.{function}"
    return LayerSpec(
        name=function, family="utility", catalogue=target, kind="function", cases=cases, invalid_cases=invalid,
        reference=use.reference,
        torch=TorchMapping(target, kind="function", args=use.args, kwargs=use.kwargs, outputs=use.outputs,
                           mutated=use.mutated),
        tolerance=tolerance, comparators=dict(comparators or {}), backward=use.backward, regimes=tuple(regimes),
        notes=notes,
    )


# -- container operations ---------------------------------------------------------------------------------

def _entry_node(spec: Mapping[str, Any]) -> dict[str, Any]:
    """How torch builds a fresh entry (``reference.containers.fresh``)."""
    kind = spec["kind"]
    if kind == "tensor":
        return {"input": spec["name"]}
    if kind == "parameter":
        return {"parameter": spec["name"]}
    if kind == "relu":
        return {"module": {"target": "torch.nn.ReLU", "init": {}}}
    prelu = {"module": {"target": "torch.nn.PReLU",
                        "init": {"num_parameters": spec["num_parameters"], "init": spec["init"]}}}
    if kind == "prelu":
        return prelu
    if kind == "dict":
        return _call("torch.nn.ModuleDict", _call("collections.OrderedDict", [["inner", prelu]]))
    return _call("torch.nn.Sequential", prelu, {"module": {"target": "torch.nn.ReLU", "init": {}}})


def _call(target: str, *args: Any) -> dict[str, Any]:
    return {"call": {"target": target, "args": list(args), "kwargs": {}}}


def _node(case: Case, data: Any) -> Any:
    """The call node of an argument's data (``reference.containers.Resolver`` reads the same data)."""
    if not isinstance(data, dict):
        return data
    if "new" in data:
        return _entry_node(case.params["entries"][data["new"]])
    if "at" in data:
        return {"attribute": data["at"]}
    if "slice" in data:
        return _call("builtins.slice", *data["slice"])
    if "list" in data:
        return {"list": [_node(case, x) for x in data["list"]]}
    if "mapping" in data:
        pairs = [[k, _node(case, v)] for k, v in data["pairs"]]
        kind = data["mapping"]
        if kind == "pairs":
            return {"list": pairs}
        mapping = _call("builtins.dict" if kind == "dict" else "collections.OrderedDict", pairs)
        return _call(f"torch.nn.{case.params['container']}", mapping) if kind == "container" else mapping
    if "sequential" in data:
        return _call("torch.nn.Sequential", *[_node(case, x) for x in data["sequential"]])
    if "input" in data:
        return {"input": data["input"]}
    if "getitem" in data:
        return _call("operator.getitem", {"attribute": ""}, _node(case, data["getitem"]))
    if "plus" in data:
        return _call("operator.add", {"attribute": ""}, _node(case, data["plus"]))
    raise ValueError(f"unknown argument {data!r}")


def _step_node(case: Case, step: Mapping[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = {"method": step["method"], "args": [_node(case, a) for a in step.get("args", ())]}
    for field_name in ("read", "pairs"):
        if step.get(field_name):
            node[field_name] = True
    for field_name in ("on", "chain"):
        if field_name in step:
            node[field_name] = _node(case, step[field_name])
    return node


def operation_call(case: Case) -> dict[str, Any]:
    """The steps node editing and observing the container under test."""
    return {"steps": {"on": {"attribute": ""}, "do": [_step_node(case, s) for s in case.params["steps"]],
                      "names": list(SO.VOCABULARY)}}


def _constructor(case: Case) -> dict[str, Any]:
    p = case.params
    kind, init = p["container"], p["init"]
    if kind in ("ModuleDict", "ParameterDict"):
        return {"modules" if kind == "ModuleDict" else "parameters": _node(case, init)}
    nodes = {"list": [_node(case, v) for v in init]}
    return {"modules": nodes} if kind == "ModuleList" else {"values": nodes} if kind == "ParameterList" else {}


def _constructor_args(case: Case) -> list[Any]:
    p = case.params
    if p["container"] != "Sequential":
        return []
    if p["named"]:
        return [_call("collections.OrderedDict", [[k, _node(case, v)] for k, v in p["init"]])]
    return [_node(case, v) for v in p["init"]]


def _reads(case: Case) -> list[Any]:
    """The output pattern: the name(s) of every read step, in order."""
    return [s["as"] for s in case.params["steps"] if s.get("read")]


def operations_reference(case: Case) -> tuple[Result, Pullback | None]:
    """The documented semantics (``reference.containers``) run on the same operations."""
    return Result(outputs=SO.observed(case)), None


def operations(op: str, *, regimes: Sequence[Regime] = (), notes: str = "") -> LayerSpec:
    """Container ``op`` edited by drawn operations and observed (``strategies.container_ops``)."""
    return LayerSpec(
        name=op, variant="semantics", family="container", kind="operations",
        cases=SO.operation_cases(op), invalid_cases=SO.invalid_operation_cases(op),
        reference=operations_reference,
        torch=TorchMapping(f"torch.nn.{op}", ctor=_constructor, ctor_args=_constructor_args, args=(),
                           forward=operation_call, outputs=_reads),
        tolerance=EXACT, comparators={"forward": N.unsigned_zeros}, backward=False, regimes=tuple(regimes),
        notes=notes,
    )
