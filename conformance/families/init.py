"""The ``torch.nn.init`` template: an initialiser as data in, its ``LayerSpec`` out.

``initialiser(name, fill, ranks=..., options=..., law=...)`` declares ``torch.nn.init.<name>``
called as ``name(tensor, **params)``: the returned tensor (``output``) and the tensor after the
call (``state.tensor``) are compared. Without ``law`` the fill is deterministic and compared bit
for bit, the sign of zero included. With ``law(params, shape)`` (``conformance.numerics.init``)
it is random: the drawn values are the random choice (read back as the returned tensor's
values), judged per case by their structure and per target by their distribution; the
``[generator]`` variant calls it twice with two ``torch.Generator`` seeded alike and requires the
same draw (``replay``). ``calculate_gain`` has its own template, ``gain``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from backends.base import CONTIGUOUS, Case, Result
from conformance import strategies as S
from conformance.dtypes import DTYPES
from conformance.numerics import init as num
from conformance.numerics import parametrizations as NP
from conformance.spec import LayerSpec, Randomness, Regime, Tolerance, TorchMapping, arg, call_node
from conformance.strategies import init as strat
from conformance.tolerance import analysed_tolerance

EXACT = Tolerance(magnitude="ref", exact="always")
LawFn = Callable[[dict, tuple[int, ...]], num.Law]


def _params(case: Case) -> dict[str, Any]:
    return {k: v for k, v in case.params.items() if k != "generator"}


def _seeded_generator(seed: int) -> dict[str, Any]:
    """Call node: ``torch.Generator(device).manual_seed(seed)`` on the call's device (the method
    applied by a one-step loop)."""
    setter = {"call": {"target": "operator.methodcaller", "args": [{"literal": "manual_seed"}, seed], "kwargs": {}}}
    generator = {"call": {"target": "torch.Generator", "args": [], "kwargs": {"device": {"device": None}}}}
    return {"loop": {"over": [setter], "input": generator}}


def _mapping(name: str, generator: bool) -> TorchMapping:
    target = f"torch.nn.init.{name}"
    if not generator:
        return TorchMapping(target, kind="function", args=("tensor",), kwargs=_params, mutated=("tensor",))

    def calls(case: Case) -> list[Any]:
        kw = {**_params(case), "generator": _seeded_generator(case.params["generator"])}
        return [[call_node(target, "tensor", **kw), call_node(target, "replay", **kw)]]

    return TorchMapping("builtins.tuple", kind="function", args=calls, kwargs=lambda case: {},
                        outputs=("output", "replay"), mutated=("tensor", "replay"))


def _reference(fill: Callable[..., np.ndarray], law: LawFn | None, overlap_ok: bool):
    def reference(case: Case) -> tuple[Result, None]:
        tensor = case.inputs["tensor"]
        params, shape = _params(case), tensor.shape
        if not overlap_ok and strat.writes_overlap(case):
            raise ValueError("the tensor's elements share memory (stride 0): an in-place fill cannot set them apart")
        choices = {}
        if law is None:
            exact = fill(tensor, **params)
            values = num.in_format(exact, case.dtype)
            if (np.isfinite(exact) & ~np.isfinite(values)).any():
                raise ValueError(f"the value overflows {case.dtype}")
        else:
            drawn = law(params, shape)
            values = drawn.point(shape, case.dtype)
            if values is None and "values" in case.choices:
                values = choices["values"] = drawn.canonical(case.choices["values"], shape, case.dtype)
            elif values is None:
                values = drawn.placeholder(shape)
        names = ("tensor", "replay") if case.variant == "generator" else ("tensor",)
        outputs = {"output": values, **({"replay": values} if case.variant == "generator" else {})}
        return Result(outputs=outputs, state={n: values for n in names}, choices=choices), None

    return reference


def _randomness(fill: Callable[..., np.ndarray], law: LawFn) -> Randomness:
    def sample(case: Case, rng: np.random.Generator) -> dict[str, np.ndarray]:
        drawn = fill(case.inputs["tensor"], **_params(case), generator=rng)
        return {"values": DTYPES[case.dtype].round(drawn)}

    def deterministic(case: Case) -> bool:
        tensor = case.inputs["tensor"]
        return law(_params(case), tensor.shape).point(tensor.shape, case.dtype) is not None

    return Randomness(choices={"values": lambda case: {"rule": "value", "of": "output"}}, sample=sample,
                      check=num.check_draws(lambda case: law(_params(case), case.inputs["tensor"].shape)),
                      deterministic=deterministic)


_DECLARED: dict[str, dict[str, Any]] = {}


def generator_variant(name: str) -> LayerSpec:
    """The ``[generator]`` variant of an initialiser declared before (same data, seeded
    generators; no invalid cases or regimes of its own)."""
    return initialiser(**{**_DECLARED[name], "invalid": None, "regimes": (), "generator": True})


def initialiser(name: str, fill: Callable[..., np.ndarray], *, ranks: Sequence[int], options: Mapping[str, Any],
                law: LawFn | None = None, invalid: Mapping[str, Mapping[str, Any]] | None = None,
                regimes: Sequence[Regime] = (), notes: str = "", overlap_ok: bool = False, generator: bool = False,
                tolerance: Tolerance | None = None, empty_dims: Sequence[int] | None = None) -> LayerSpec:
    """The declaration of ``torch.nn.init.<name>``: ``fill`` is its reference (``reference.init``),
    ``ranks`` the tensor ranks it accepts (simplest first), ``options`` each parameter's values
    (simplest first; a function of the shape where they depend on it), ``law`` the law of a random
    draw, ``invalid`` the documented rules torch enforces (``strategies.init.invalid_init_cases``),
    ``overlap_ok`` whether a tensor with stride-0 dims is valid (constant fills), ``generator``
    the variant drawn with seeded generators, ``empty_dims`` the dims a drawn size of 0 may take
    (default: any)."""
    if not generator:
        _DECLARED[name] = dict(name=name, fill=fill, ranks=ranks, options=options, law=law, notes=notes,
                               overlap_ok=overlap_ok, tolerance=tolerance, empty_dims=empty_dims)
    signed = law is None
    comparators = {t: num.signed_exact for t in ("output", "state.tensor")} if signed else {}
    return LayerSpec(
        name=name, family="init", kind="random" if law else "fill", catalogue=f"torch.nn.init.{name}",
        variant="generator" if generator else "",
        cases=strat.init_cases(name, ranks, options, expanded=overlap_ok, generator=generator, empty_dims=empty_dims),
        reference=_reference(fill, law, overlap_ok),
        torch=_mapping(name, generator),
        tolerance=tolerance or EXACT, comparators=comparators, backward=False,
        invalid_cases=strat.invalid_init_cases(name, ranks, options, invalid, generator=generator) if invalid else None,
        randomness=_randomness(fill, law) if law else None,
        regimes=tuple(regimes), notes=notes,
    )


def orthogonal_tolerance() -> Tolerance:
    """orthogonal_'s draws against their nearest semi-orthogonal matrix, under its error analysis."""
    return analysed_tolerance(num.orthogonal_errors)


def corner(name: str, pins: Mapping[str, Any], holds: Callable[[Case], bool] | None = None,
           description: str = "") -> Regime:
    """A regime pinning parameters (and shape labels); by default it holds when every pinned
    parameter has its pinned value (pins that are not parameters, such as ``ndim``, are read off
    the tensor: its rank, ``layout.tensor`` its layout kind, ``zero-size dim`` an empty tensor, which
    is pinned off unless asked for)."""
    def default(case: Case) -> bool:
        tensor = case.inputs["tensor"]
        facts = {"ndim": tensor.ndim, "layout.tensor": case.layout("tensor").kind, "zero-size dim": 0 in tensor.shape}
        return all(case.params[k] == v if k in case.params else facts.get(k, v) == v
                   for k, v in pins.items() if k in case.params or k in facts)

    return Regime(name, holds or default, {"zero-size dim": False, **pins}, description)


# -- calculate_gain -------------------------------------------------------------------------------------

def _gain_args(case: Case) -> list[Any]:
    queries = []
    for i, (name, param) in enumerate(case.params["queries"]):
        node: Any = {"literal": param}
        if param == "number":  # the param travels in the float64 input ``param``, as a Python float
            element = {"call": {"target": "operator.getitem", "args": [arg("param"), i], "kwargs": {}}}
            node = {"call": {"target": "builtins.float", "args": [element], "kwargs": {}}}
        queries.append(call_node("torch.nn.init.calculate_gain", {"literal": name}, node))
    return [queries]


def _gain_reference(fn: Callable[..., float]):
    def reference(case: Case) -> tuple[Result, None]:
        gains = [fn(name, None if param is None else float(case.inputs["param"][i]) if param == "number" else param)
                 for i, (name, param) in enumerate(case.params["queries"])]
        return Result(outputs={"output": np.array(gains, dtype=np.float64)}), None

    return reference


def gain(fn: Callable[..., float], *, regimes: Sequence[Regime] = (), notes: str = "") -> LayerSpec:
    """calculate_gain over a batch of queries (``strategies.init.gain_cases``): ``builtins.tuple``
    of the calls, compared exactly (``numerics.init.gain_comparator``). The gains do not depend on
    the dtype: every dtype's target asks the same queries."""
    return LayerSpec(
        name="calculate_gain", family="init", kind="gain", catalogue="torch.nn.init.calculate_gain",
        cases=strat.gain_cases(), invalid_cases=strat.gain_cases(invalid=True),
        reference=_gain_reference(fn),
        torch=TorchMapping("builtins.tuple", kind="function", args=_gain_args, kwargs=lambda case: {}),
        tolerance=EXACT, comparators={"output": num.gain_comparator}, backward=False, regimes=tuple(regimes),
        notes=notes,
    )


# -- torch.nn.utils.parametrizations: a parametrised eager layer ------------------------------------------------

def _eager(eager_id: str) -> LayerSpec:
    from conformance.spec import all_specs

    return all_specs()[eager_id]


def _layer_case(case: Case, weight: np.ndarray) -> Case:
    """The eager layer's case (``case.params["module"]``) with the parametrised weight."""
    eager = _eager(case.params["module"])
    inputs = {"input": case.inputs["input"], "weight": weight,
              **({"bias": case.inputs["bias"]} if "bias" in case.inputs else {})}
    return replace(case, op=eager.name, variant=eager.variant, params=case.params["module_params"], inputs=inputs,
                   differentiable=tuple(inputs), layouts={k: v for k, v in case.layouts.items() if k in inputs},
                   choices={}, call=None)


def _parametrized_reference(method: NP.Parametrisation):
    def reference(case: Case) -> tuple[Result, Any]:
        method.check(case)
        weight, state = method.weight(case)
        layer = _layer_case(case, weight)
        out, pull = _eager(case.params["module"]).reference(layer)
        result = Result(outputs=dict(out.outputs), state=state, meta={"layer": layer, "layer result": out})

        def pullback(cotangents: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            grads = pull(cotangents)
            result.meta["layer grads"] = grads
            return {"input": grads["input"], **method.vjp(case, grads["weight"]),
                    **({"bias": grads["bias"]} if "bias" in case.inputs else {})}

        return result, pullback

    return reference


def _parametrized_errors(method: NP.Parametrisation):
    """The layer's own bound (its declaration's tolerance, with the parametrised weight), plus the
    weight's error carried through the layer (linear in the weight: the layer on |input| and the
    weight's error bound), plus the parametrisation's bounds of the originals' gradients and of
    the buffers; all in units of u."""
    from conformance.tolerance import bound_for, magnitudes

    def errors(case: Case, result: Result) -> dict[str, np.ndarray]:
        layer = replace(result.meta["layer"], cotangents=dict(case.cotangents))
        grads = result.meta.get("layer grads", {})
        full = Result(outputs=result.meta["layer result"].outputs, grads=grads)
        eager = _eager(case.params["module"])
        absref = magnitudes(eager, layer, full)
        u = DTYPES[case.dtype].unit_roundoff
        tensors = full.tensors()

        def own(name: str) -> np.ndarray:
            return bound_for(eager, layer, name, tensors[name], absref[name]).allowed / u

        err = method.errors(case, grads.get("weight"), own("grad.weight") if "weight" in grads else None)
        rel, absolute = err.pop("weight")
        spread = replace(layer, inputs={"input": np.abs(layer.inputs["input"]),
                                        "weight": rel * np.abs(layer.inputs["weight"]) + absolute,
                                        **({"bias": np.zeros_like(layer.inputs["bias"])} if "bias" in layer.inputs
                                           else {})})
        through, pull = eager.reference(spread)
        out = {"output": own("output") + through.outputs["output"], **err}
        if grads:
            out["grad.input"] = own("grad.input") + pull({"output": np.abs(case.cotangents["output"])})["input"]
            if "bias" in grads:
                out["grad.bias"] = own("grad.bias")
        return out

    return errors


def _parametrized_mapping(target: str, extra: Sequence[str]) -> TorchMapping:
    def ctor(case: Case) -> dict[str, Any]:
        layer = _eager(case.params["module"]).torch
        init = case.params["module_params"]
        module = {"module": {"target": layer.target, "init": init}}
        return {"module": module, **{k: v for k, v in case.params.items() if k in extra}}

    def named(prefix: str):
        return lambda case: [n for n in case.inputs if n.startswith(prefix)]

    return TorchMapping(target, ctor=ctor, parameters=lambda case: [n for n in case.differentiable if n != "input"],
                        buffers=named(f"{NP.WEIGHT}.0."), mutated=named(f"{NP.WEIGHT}.0._"), args=("input",))


def _parametrized_cases(name: str, bases: Sequence[str], draw: Callable[..., tuple[dict, dict, dict]], train: bool,
                        invalid: Mapping[str, Mapping[str, Any]] | None = None):
    def build(d: Any, dtype: str) -> Case:
        base = d.choice(tuple(bases), "module")
        layer = strat.eager_case(d, base, dtype, {"tier": "float"})
        params, originals, buffers = draw(d, layer.inputs["weight"], dtype, base)
        kind = None
        if invalid:
            kind = d.choice(tuple(invalid), "invalid kind")
            params.update({k: v(layer) if callable(v) else v for k, v in invalid[kind].items()})
        bias = {"bias": layer.inputs["bias"]} if "bias" in layer.inputs else {}
        inputs = {"input": layer.inputs["input"], **originals, **bias, **buffers}
        return Case(op=name, dtype=dtype, params={"module": base, "module_params": layer.params, **params},
                    inputs=inputs, differentiable=("input", *originals, *bias),
                    layouts={k: v for k, v in layer.layouts.items() if k in ("input", "bias")},
                    forward_kwargs=layer.forward_kwargs, train=d.choice((True, False), "train") if train else True,
                    tier="float", cotangent_seed=layer.cotangent_seed, invalid=kind is not None, note=kind or "")

    return S.case_strategy(build)


def parametrized(name: str, method: NP.Parametrisation, draw: Callable[..., tuple[dict, dict, dict]], *,
                 bases: Sequence[str], params: Sequence[str], invalid: Mapping[str, Mapping[str, Any]],
                 train: bool = False, smooth_at: Callable[[Case], bool] | None = None,
                 comparators: Mapping[str, Any] | None = None, regimes: Sequence[Regime] = (),
                 notes: str = "") -> LayerSpec:
    """The declaration of ``torch.nn.utils.parametrizations.<name>`` applied to the weight of an
    eager layer drawn from ``bases`` (declaration ids): ``draw(drawer, layer weight, dtype, base)``
    gives its parameters (``params`` are passed to torch), originals and buffers; the layer's
    output, the gradients of the input, the originals and the bias, and the buffers after the call
    are compared; ``train`` draws training and evaluation mode."""
    return LayerSpec(
        name=name, family="utility", kind="parametrization", catalogue=f"torch.nn.utils.parametrizations.{name}",
        cases=_parametrized_cases(name, bases, draw, train),
        invalid_cases=_parametrized_cases(name, bases, draw, train, invalid),
        reference=_parametrized_reference(method),
        torch=_parametrized_mapping(f"torch.nn.utils.parametrizations.{name}", params),
        tolerance=analysed_tolerance(_parametrized_errors(method)), smooth_at=smooth_at,
        comparators=dict(comparators or {}), regimes=tuple(regimes), notes=notes,
    )


# -- torch.nn.utils.fusion.fuse_conv_bn_eval -----------------------------------------------------------------

def _fusion_cases(bases: Sequence[str], invalid: Sequence[str] = ()):
    def build(d: Any, dtype: str) -> Case:
        base = d.choice(tuple(bases), "module")
        layer = strat.eager_case(d, base, dtype, {"tier": "float"})
        channels = layer.params["out_channels"]
        kind = d.choice(tuple(invalid), "invalid kind") if invalid else None
        bn = {"num_features": channels, "eps": d.choice((1e-5, 1e-3, 0.1), "eps"),
              "affine": d.choice((True, False), "affine"), "track_running_stats": kind != "no running statistics"}
        inputs = {"0.weight": layer.inputs["weight"], **({"0.bias": layer.inputs["bias"]} if "bias" in layer.inputs
                                                          else {})}
        values = {"1.running_mean": {}, "1.running_var": {"positive": True}, "1.weight": {}, "1.bias": {}}
        for path, kw in values.items():
            if (path.endswith("running_mean") or path.endswith("running_var")) or bn["affine"]:
                inputs[path] = S.values(d, (channels,), dtype, "float", path, **kw)
        if not bn["track_running_stats"]:
            inputs = {k: v for k, v in inputs.items() if "running" not in k}
        return Case(op="fuse_conv_bn_eval", dtype=dtype, tier="float", inputs=inputs, invalid=kind is not None,
                    params={"module": base, "module_params": layer.params, "bn": bn,
                            "transpose": _eager(base).kind == "transposed"},
                    train=kind == "training mode", note=kind or "",
                    layouts={"0.weight": layer.layouts.get("weight", CONTIGUOUS)})

    return S.case_strategy(build)


def _fusion_reference(fuse: Callable[..., tuple[np.ndarray, np.ndarray]]):
    def reference(case: Case) -> tuple[Result, None]:
        if case.train:
            raise ValueError("fusion only for eval: conv and bn must be in evaluation mode")
        if not case.params["bn"]["track_running_stats"]:
            raise ValueError("bn.running_mean and bn.running_var must not be None")
        i = case.inputs
        weight, bias = fuse(i["0.weight"], i.get("0.bias"), i["1.running_mean"], i["1.running_var"],
                            case.params["bn"]["eps"], i.get("1.weight"), i.get("1.bias"), case.params["transpose"])
        return Result(outputs={"weight": weight, "bias": bias}), None

    return reference


def _fusion_mapping() -> TorchMapping:
    def modules(case: Case) -> list[Any]:
        layer = _eager(case.params["module"])
        nd = layer.dims
        return [{"module": {"target": layer.torch.target, "init": case.params["module_params"]}},
                {"module": {"target": f"torch.nn.BatchNorm{nd}d", "init": case.params["bn"]}}]

    def forward(case: Case) -> dict[str, Any]:
        fused = call_node("torch.nn.utils.fusion.fuse_conv_bn_eval", {"attribute": "0"}, {"attribute": "1"},
                          transpose=case.params["transpose"])
        read = {"call": {"target": "operator.attrgetter", "args": [{"literal": "weight"}, {"literal": "bias"}],
                         "kwargs": {}}}
        return {"loop": {"over": [read], "input": fused}}

    return TorchMapping("torch.nn.Sequential", ctor=lambda case: {}, ctor_args=modules,
                        parameters=lambda case: [n for n in ("0.weight", "0.bias", "1.weight", "1.bias")
                                                 if n in case.inputs],
                        buffers=lambda case: [n for n in ("1.running_mean", "1.running_var") if n in case.inputs],
                        forward=forward, outputs=("weight", "bias"), args=())


def fusion(fuse: Callable[..., tuple[np.ndarray, np.ndarray]], errors: Callable[..., tuple[np.ndarray, np.ndarray]],
           *, bases: Sequence[str], invalid: Sequence[str], regimes: Sequence[Regime] = (),
           notes: str = "") -> LayerSpec:
    """``torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn, transpose)`` on a Sequential(conv, bn)
    in evaluation mode whose parameters and buffers are the case's: the fused weight and bias are
    compared under ``errors`` (``reference.fusion.fusion_errors``)."""
    def bounds(case: Case, result: Result) -> dict[str, np.ndarray]:
        i = case.inputs
        w, b = errors(i["0.weight"], i.get("0.bias"), i["1.running_mean"], i["1.running_var"],
                      case.params["bn"]["eps"], i.get("1.weight"), i.get("1.bias"), case.params["transpose"])
        return {"weight": w, "bias": b}

    return LayerSpec(
        name="fuse_conv_bn_eval", family="utility", kind="fusion", catalogue="torch.nn.utils.fusion.fuse_conv_bn_eval",
        cases=_fusion_cases(bases), invalid_cases=_fusion_cases(bases, invalid),
        reference=_fusion_reference(fuse), torch=_fusion_mapping(), tolerance=analysed_tolerance(bounds),
        backward=False, regimes=tuple(regimes), notes=notes,
    )
