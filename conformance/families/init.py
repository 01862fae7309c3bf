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
from typing import Any

import numpy as np

from backends.base import Case, Result
from conformance.dtypes import DTYPES
from conformance.numerics import init as num
from conformance.spec import LayerSpec, Randomness, Regime, Tolerance, TorchMapping, arg, call_node
from conformance.strategies import init as strat
from conformance.tolerance import analysed_tolerance

EXACT = Tolerance(magnitude="ref", exact="always")
LawFn = Callable[[dict, tuple[int, ...]], num.Law]


def _params(case: Case) -> dict[str, Any]:
    return {k: v for k, v in case.params.items() if k != "generator"}


def _seeded_generator(seed: int) -> dict[str, Any]:
    """Call node: ``torch.Generator().manual_seed(seed)`` (the method applied by a one-step loop)."""
    setter = {"call": {"target": "operator.methodcaller", "args": [{"literal": "manual_seed"}, seed], "kwargs": {}}}
    return {"loop": {"over": [setter], "input": {"call": {"target": "torch.Generator", "args": [], "kwargs": {}}}}}


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
    the tensor: its rank, ``layout.tensor`` its layout kind, ``zero-size dim`` an empty tensor)."""
    def default(case: Case) -> bool:
        tensor = case.inputs["tensor"]
        facts = {"ndim": tensor.ndim, "layout.tensor": case.layout("tensor").kind, "zero-size dim": 0 in tensor.shape}
        return all(case.params[k] == v if k in case.params else facts.get(k, v) == v
                   for k, v in pins.items() if k in case.params or k in facts)

    return Regime(name, holds or default, dict(pins), description)


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
    of the calls, compared exactly; float64 only (a Python float has no other format)."""
    return LayerSpec(
        name="calculate_gain", family="init", kind="gain", catalogue="torch.nn.init.calculate_gain",
        cases=strat.gain_cases(), invalid_cases=strat.gain_cases(invalid=True),
        reference=_gain_reference(fn),
        torch=TorchMapping("builtins.tuple", kind="function", args=_gain_args, kwargs=lambda case: {}),
        tolerance=EXACT, comparators={"output": num.gain_comparator}, backward=False, dtypes=("float64",),
        regimes=tuple(regimes), notes=notes,
    )
