"""Models composed of declared catalogue layers: drawing them, their reference, their error bound.

A *model* is a chain of 1 to 5 layers whose shapes chain (``conformance.chainable`` lists the
layers that may take part and how each one is drawn for a given input). Each layer reuses the
declaration of its catalogue entry: its reference computes the layer, its tolerance bounds the
layer's own rounding error. Nothing of a layer's mathematics is written twice.

Case layout (plain data, so that the call tree and the repro script can rebuild the model):
``case.params["layers"]`` lists, per layer, the declaration (``op``), its constructor arguments
(``params``), the local names of its parameters and buffers, and ``paths``: the name each of them
has in the container (``0.weight``, ``module.2.running_mean``, a ParameterList index ``3``), which
is also the case input holding its value.

The composed reference runs the layers' references forward, then their VJPs backward (each
layer's input gradient is the previous layer's output cotangent). An activation beyond the dtype's
range is passed on as ±inf, as the backend's overflowed value is.

The error bound (float tier) propagates to first order, layer by layer. With E_x the bound on the
error of a layer's input and E_g on its output cotangent, each compared tensor t of the layer gets

    E_t = B_t + P_t(E_x, E_g),

B_t the layer's own bound (its declaration's tolerance evaluated on the layer's sub-case: the error
of computing the layer in the dtype on exact inputs; zero where its declaration claims exactness)
and P_t the propagated error, the layer's first-order sensitivity applied to the incoming bounds
(``Propagation``, per layer kind in ``conformance.chainable``): multilinear layers evaluate their
own reference on |W|, E_x, |g| + E_g, which is exactly |J|·E; selection layers (ReLU, max pooling)
are 1-Lipschitz and route E_g, plus the whole |g| + E_g wherever the incoming error could flip a
selection (an input within E_x of a kink or of its window's maximum); smooth layers (BatchNorm,
Softmax) carry their Jacobian's bound explicitly. The bound on each container tensor (output, every
parameter gradient, every buffer after the call) is then compared through the tolerance engine as a
magnitude (c = 1, K = 1: the bound itself). A tensor whose bound is zero everywhere (integer chains
of piecewise-linear layers in the exact tier, or exact layers alone) is compared bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from backends.base import Case, Result
from conformance.compare import Comparison, compare_tensor
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec, Pullback, Tolerance, all_specs
from conformance.tolerance import bound_for, magnitudes

# -- the model, as case data -------------------------------------------------------------------------

def layers_of(case: Case) -> list[dict[str, Any]]:
    return list(case.params["layers"])


def layer_spec(layer: Mapping[str, Any]) -> LayerSpec:
    return all_specs()[layer["op"]]


def layer_case(case: Case, index: int, x: np.ndarray, cotangent: np.ndarray | None = None) -> Case:
    """The sub-case of layer ``index``: its declaration's parameters, ``x`` as its input, its
    parameters and buffers from the container's case inputs (by path), the container's train flag
    and tier."""
    layer = case.params["layers"][index]
    inputs = {"input": x, **{local: case.inputs[path] for local, path in layer["paths"].items()}}
    differentiable = (("input",) if x.dtype.kind == "f" else ()) + tuple(layer["parameters"])
    return Case(op=layer["op"], dtype=case.dtype, params=dict(layer["params"]), inputs=inputs,
                differentiable=differentiable, train=case.train, tier=case.tier,
                cotangents={} if cotangent is None else {"output": cotangent})


@dataclass
class LayerRun:
    """One layer of an evaluated model: its declaration, sub-case (with the cotangent once the
    backward pass ran) and reference result."""

    spec: LayerSpec
    case: Case
    result: Result

    @property
    def x(self) -> np.ndarray:
        return self.case.inputs["input"]


def layer_reference(spec: LayerSpec, sub: Case, cotangents: Mapping[str, np.ndarray] | None = None) -> Result:
    """A layer's own reference on its sub-case (the container, not the layer, owns in-place
    state): forward, and backward for ``cotangents`` when given."""
    result, pullback = spec.reference(sub)
    if cotangents:
        result.grads = spec.pull(pullback, sub, cotangents)
    return result


def compose_reference(case: Case) -> tuple[Result, Pullback]:
    """The model's reference: each layer's reference forward (its result and pullback kept), and
    the pullback running the layers' pullbacks backward (each layer's input gradient, saturated to
    ±inf beyond the dtype's range as the backend's overflows, is the previous layer's output
    cotangent). Every parameter gradient and buffer is named by its
    container path; ``meta["runs"]`` keeps the per-layer runs for the error bound (the pullback
    attaches each layer's cotangent and gradients to its run)."""
    layers = layers_of(case)
    x = case.inputs["input"]
    runs: list[LayerRun] = []
    pullbacks: list[Pullback | None] = []
    for i, layer in enumerate(layers):
        spec = layer_spec(layer)
        sub = layer_case(case, i, x)
        result, pullback = spec.reference(sub)
        runs.append(LayerRun(spec, sub, result))
        pullbacks.append(pullback)
        x = saturate(result.outputs["output"], case.dtype)
    out = Result(outputs={"output": x}, meta={"runs": runs})
    for layer, run in zip(layers, runs):
        for local, value in run.result.state.items():
            out.state[layer["paths"][local]] = value

    def pullback(cotangents: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        grads: dict[str, np.ndarray] = {}
        g = cotangents["output"]
        for i in reversed(range(len(layers))):
            run = runs[i]
            sub = replace(run.case, cotangents={"output": g})
            run.result.grads = run.spec.pull(pullbacks[i], sub, sub.cotangents)
            runs[i] = LayerRun(run.spec, sub, run.result)
            for local in layers[i]["parameters"]:
                grads[layers[i]["paths"][local]] = run.result.grads[local]
            g = run.result.grads.get("input")
            if i and g is not None:  # the previous layer's output cotangent, as the dtype holds it
                g = saturate(g, case.dtype)
        if "input" in case.differentiable and g is not None:
            grads["input"] = g
        return grads

    return out, pullback


def saturate(x: np.ndarray, dtype: str) -> np.ndarray:
    """An intermediate activation as the dtype can hold it: beyond the largest finite value it is
    ±inf (the next layer receives an overflowed value, as the backend's does)."""
    fmt = DTYPES[dtype]
    if x.dtype.kind != "f":
        return x
    with np.errstate(invalid="ignore"):
        return np.where(np.abs(x) > fmt.max_value * (1 + fmt.unit_roundoff), np.sign(x) * np.inf, x)


# -- propagation of error bounds ------------------------------------------------------------------

@dataclass(frozen=True)
class Propagation:
    """A layer's first-order sensitivity to errors in its input and output cotangent.

    ``forward(run, e_x)`` -> bounds added to ``output`` and ``state.<buffer>``; ``backward(run,
    e_x, e_g)`` -> bounds added to ``grad.input`` and ``grad.<parameter>``. ``e_x`` is None for
    an integer input (exact). Every array is a per-element bound (>= 0) of the tensor's shape.
    """

    forward: Callable[[LayerRun, np.ndarray | None], dict[str, np.ndarray]]
    backward: Callable[[LayerRun, np.ndarray | None, np.ndarray], dict[str, np.ndarray]]


PROPAGATION: dict[str, Propagation] = {}  # op -> propagation, filled by conformance.chainable


def own_bounds(run: LayerRun) -> dict[str, np.ndarray]:
    """The layer's own error bound for every tensor of its result (its declaration's tolerance)."""
    ref_tensors = run.result.tensors()
    with np.errstate(all="ignore"):
        mags = magnitudes(run.spec, run.case, run.result)
        out = {}
        for name, value in ref_tensors.items():
            value = np.asarray(value)
            if value.dtype.kind != "f":
                out[name] = np.zeros(value.shape)
                continue
            allowed = bound_for(run.spec, run.case, name, value, mags[name]).allowed
            # Where the declaration's magnitude and rounding terms vanish (a copy, a zero result)
            # only the engine's floor (K·tiny + the float64 reference's rounding) remains: the layer
            # claims exactness there, and a chain of such elements stays bit-exact.
            claimed = (np.asarray(mags[name]) == 0) & ((run.spec.tolerance_for(name).out_ulps == 0) | (value == 0))
            out[name] = np.where(claimed, 0.0, allowed)
    return out


def chain_bounds(case: Case, result: Result) -> dict[str, np.ndarray]:
    """The bound on every compared tensor of the model (qualified names), see the module docstring."""
    if "bounds" in result.meta:
        return result.meta["bounds"]
    with np.errstate(all="ignore"):  # IEEE bounds where a model's values reach ±inf (inf·0 is NaN there)
        if "runs" not in result.meta:
            _attach_runs(case, result)
        return _chain_bounds(case, result)


def _attach_runs(case: Case, result: Result) -> None:
    """The per-layer runs of a result built without them (the vjp2 mode's first-order bound at a
    shifted point, of a Result holding only the tensors): the model's reference again on ``case``,
    and its pullback of the case's cotangents when the result has gradients."""
    rebuilt, pullback = compose_reference(case)
    if result.grads and case.cotangents:
        pullback(case.cotangents)
    result.meta["runs"] = rebuilt.meta["runs"]


def _forward_bounds(case: Case, runs: Sequence[LayerRun], owns: Sequence[Mapping[str, np.ndarray]],
                    bounds: dict[str, np.ndarray]) -> tuple[list[np.ndarray | None], np.ndarray | None]:
    """The forward half of the propagation: the bound on each layer's input (None for an integer
    input), the model output's, and (into ``bounds``) every buffer's after the call."""
    layers = layers_of(case)
    e_x: np.ndarray | None = np.zeros(case.inputs["input"].shape) if case.inputs["input"].dtype.kind == "f" else None
    inputs_e: list[np.ndarray | None] = []
    for layer, run, own in zip(layers, runs, owns):
        inputs_e.append(e_x)
        prop = PROPAGATION[layer["op"]].forward(run, e_x)
        for name, value in own.items():
            if name == "output" or name.startswith("state."):
                total = value + prop.get(name, 0.0)
                if name == "output":
                    e_x = total
                else:
                    bounds["state." + layer["paths"][name[len("state."):]]] = total
    return inputs_e, e_x


def input_bounds(case: Case) -> list[tuple[LayerRun, np.ndarray | None]]:
    """Each layer's run (forward only) with the bound on the error of its input as the backend
    computes it in the case's dtype (``_forward_bounds``; None for an integer input)."""
    with np.errstate(all="ignore"):
        runs: list[LayerRun] = compose_reference(case)[0].meta["runs"]
        inputs_e, _ = _forward_bounds(case, runs, [own_bounds(run) for run in runs], {})
    return list(zip(runs, inputs_e))


def _chain_bounds(case: Case, result: Result) -> dict[str, np.ndarray]:
    layers = layers_of(case)
    runs: list[LayerRun] = result.meta["runs"]
    bounds: dict[str, np.ndarray] = {}
    owns = [own_bounds(run) for run in runs]
    inputs_e, e_x = _forward_bounds(case, runs, owns, bounds)
    bounds["output"] = e_x if e_x is not None else np.zeros(np.shape(result.outputs["output"]))
    if result.grads:
        e_g = np.zeros(np.shape(result.outputs["output"]))
        for i in reversed(range(len(layers))):
            run, own = runs[i], owns[i]
            prop = PROPAGATION[layers[i]["op"]].backward(run, inputs_e[i], e_g)
            for local in layers[i]["parameters"]:
                bounds["grad." + layers[i]["paths"][local]] = own[f"grad.{local}"] + prop.get(f"grad.{local}", 0.0)
            e_g = own["grad.input"] + prop.get("grad.input", 0.0) if "grad.input" in own else None
        if e_g is not None and "input" in result.grads:
            bounds["grad.input"] = e_g
    with np.errstate(invalid="ignore"):  # NaN where the values are not finite (patterns are compared instead)
        bounds = {k: np.nan_to_num(np.asarray(v, dtype=np.float64), nan=0.0, posinf=np.inf) for k, v in bounds.items()}
    result.meta["bounds"] = bounds
    return bounds


def layer_tangents(case: Case, v: Mapping[str, np.ndarray], h: float = 2.0**-20) -> list[np.ndarray | None]:
    """The tangent of each layer's input along the model's direction ``v`` (J_<ℓ·v: the derivative of
    the activation entering layer ℓ when every input and parameter moves along v), by central
    differences of the layers' inputs (``reference.finite_differences.directional``: four forward
    evaluations of the model, steps exact as the vjp2 mode's); None for an integer input."""
    from reference.finite_differences import directional

    def activations(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        runs = compose_reference(replace(case, inputs=inputs))[0].meta["runs"]
        return {str(i): np.asarray(run.x, dtype=np.float64) for i, run in enumerate(runs) if run.x.dtype.kind == "f"}

    with np.errstate(all="ignore"):
        d = directional(activations, dict(case.inputs), {k: np.asarray(x, dtype=np.float64) for k, x in v.items()}, h)
    out: list[np.ndarray | None] = []
    for i in range(len(layers_of(case))):
        t = d.get(str(i))
        if i == 0 and case.inputs["input"].dtype.kind == "f":
            t = np.asarray(v["input"], dtype=np.float64) if "input" in v else np.zeros(case.inputs["input"].shape)
        elif t is not None:
            t = np.where(np.isfinite(t.estimate), t.estimate, 0.0)
        out.append(t)
    return out


def layer_second_order_bounds(run: LayerRun, v: Mapping[str, np.ndarray], composition: str) -> dict[str, np.ndarray]:
    """{d2.<local input>: the vjp2 mode's bound for the layer alone}: its declaration judged as a case
    of its own (the run's sub-case in the float model, its cotangent, direction ``v``), the bound
    the mode allows its second-order result when the layer is computed in the dtype on exact
    inputs (``Vjp2Mode``: u·(out_ulps·|r| + c·√K·A) + ρ·A + |∂_v B| + its declared terms + ε...);
    0 where the mode judges nothing. (J·v's own term is left out: the model's is judged whole.)"""
    from conformance.modes.vjp2 import Vjp2Mode

    class Along(Vjp2Mode):  # the layer's sub-problem along the model's tangent, not drawn directions
        def directions(self, case: Case) -> dict[str, np.ndarray]:
            return dict(v)

        @staticmethod
        def through_gradients(*args: Any, **kwargs: Any) -> dict[str, np.ndarray]:
            return {}

    node = {"kind": "vjp2", "seed": 0, "tier": "float", "composition": composition}
    sub = replace(run.case, tier="float", mode="vjp2", call={"mode": node})
    with np.errstate(all="ignore"):
        result, pullback = run.spec.reference(sub)
        result.grads = run.spec.pull(pullback, sub, sub.cotangents)
        judged = Along().judge(run.spec, sub, result, pullback, Result(outputs={}))
    return {name: np.where(usable & np.isfinite(allowed), np.abs(allowed), 0.0)
            for name, (_, allowed, usable) in judged.expected.items() if not name.startswith("d2.cotangent.")}


def composed_second_order_error(case: Case, v: Mapping[str, np.ndarray],
                                g: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The vjp2 mode's declared second-order terms of a model (``LayerSpec.second_order_error``):
    its layers' own second-order bounds, composed along the model. The model's second derivative
    ∂/∂θ ⟨Jᵀg, v⟩ is, at layer ℓ, the layer's own ∂/∂θ_ℓ ⟨J_ℓᵀg_ℓ, v_ℓ⟩ with g_ℓ its output
    cotangent (the run's) and v_ℓ its direction: the tangent of its input along v
    (``layer_tangents``) and its parameters' entries of v; the backend computes it from the layer's
    own intermediates, with the rounding the mode allows the layer alone on that sub-problem
    (``layer_second_order_bounds``: its terms at the layer's scale, which the model-level bound
    sees only through the model's: a two-value batch-norm channel whose Hessian terms, 1/σ² times
    the tangent, cancel to 0.06 in exact arithmetic and to 20 in float16). Its parameters' bounds
    are the model's (by container path); its d2.input bound is an error on the second-order
    adjoint reaching the previous layer's output, carried backward to the earlier parameters and
    the model input like a cotangent error (``Propagation.backward`` with E_x = 0: |J|ᵀ·E). The
    errors of the inputs of each sub-problem (x_ℓ, t_ℓ, g_ℓ as the dtype holds them) are the
    model-level terms' (ρ·A, |∂_v B|). Cost: four forward evaluations of the model for the
    tangents, and each layer's vjp2 bound on its own sub-case."""
    layers = layers_of(case)
    if "output" not in g or not layers:
        return {}
    composition = str(case.mode_node.get("composition", "reverse-over-reverse"))
    with np.errstate(all="ignore"):
        model, pullback = compose_reference(case)
        pullback({"output": np.asarray(g["output"], dtype=np.float64)})
        runs: list[LayerRun] = model.meta["runs"]
        tangents = layer_tangents(case, v)
        out: dict[str, np.ndarray] = {}

        def add(name: str, term: np.ndarray) -> None:
            term = np.where(np.isfinite(term), np.abs(term), 0.0)
            out[name] = out[name] + term if name in out else term

        pending: np.ndarray | None = None  # the error reaching the output of layer i, cotangent side
        for i in reversed(range(len(layers))):
            run, paths = runs[i], layers[i]["paths"]
            x = run.x
            arriving: np.ndarray | None = None
            if pending is not None and np.any(pending):
                e_x = np.zeros(x.shape) if x.dtype.kind == "f" else None
                prop = PROPAGATION[layers[i]["op"]].backward(run, e_x, pending)
                for local in layers[i]["parameters"]:
                    if f"grad.{local}" in prop and paths[local] in v:
                        add(f"d2.{paths[local]}", np.broadcast_to(prop[f"grad.{local}"], np.shape(v[paths[local]])))
                arriving = prop.get("grad.input")
            sub_v = {local: np.asarray(v[paths[local]], dtype=np.float64)
                     for local in layers[i]["parameters"] if paths[local] in v}
            if tangents[i] is not None:
                sub_v["input"] = tangents[i]
            if sub_v and run.case.cotangents.get("output") is not None:
                try:
                    terms = layer_second_order_bounds(run, sub_v, composition)
                except Exception:
                    terms = {}
                for local in layers[i]["parameters"]:
                    if f"d2.{local}" in terms and paths[local] in v:
                        add(f"d2.{paths[local]}", np.broadcast_to(terms[f"d2.{local}"], np.shape(v[paths[local]])))
                if "d2.input" in terms and x.dtype.kind == "f" and np.shape(terms["d2.input"]) == x.shape:
                    arriving = terms["d2.input"] if arriving is None else arriving + terms["d2.input"]
            pending = arriving
        if pending is not None and "input" in v and np.shape(pending) == np.shape(v["input"]):
            add("d2.input", pending)
    return out


def composed_magnitude(case: Case, result: Result) -> dict[str, np.ndarray]:
    """absref = bound / u, so that the tolerance engine's c·√K·u·absref (c = 1, K = 1) is the bound."""
    u = DTYPES[case.dtype].unit_roundoff
    with np.errstate(over="ignore"):  # (a bound past float64's range / u: an unbounded element)
        return {name: value / u for name, value in chain_bounds(case, result).items()}


COMPOSED_TOLERANCE = Tolerance(reduction=1, magnitude=composed_magnitude, c=1.0, out_ulps=0.0, exact="none")
EXACT = Tolerance(magnitude="ref", exact="always")


def composed_comparator(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
    """Compare one container tensor against its propagated bound; bit for bit where the bound is 0.

    Two conventions of a composition: the sign of a zero is not compared (a chain of exact sums may
    end in -0.0 or +0.0 depending on the order of its terms; the layers' own declarations judge the
    sign where they copy or select), and an element whose bound reaches past the dtype's largest
    value may have overflowed to an infinity of its sign (the rounding errors the bound admits can
    carry it there)."""
    bounds = chain_bounds(case, result)
    expected = np.asarray(result.tensors()[name])
    actual = got.tensors().get(name)
    bound = bounds.get(name, np.zeros(np.shape(expected)))
    if actual is not None and np.shape(actual) == np.shape(expected) and expected.dtype.kind == "f":
        actual = np.asarray(actual, dtype=np.float64)
        fmt = DTYPES[case.dtype]
        with np.errstate(invalid="ignore", over="ignore"):
            reaches = np.isfinite(expected) & (np.abs(expected) + bound > fmt.max_value) & np.isinf(actual) \
                & (np.sign(actual) == np.sign(expected))
        expected = np.where(reaches, actual, expected) + 0.0  # (-0.0 + 0.0 is +0.0)
        actual = actual + 0.0
    exact = not np.any(bound)
    judged = replace(spec, tolerance=EXACT if exact else COMPOSED_TOLERANCE)
    with np.errstate(over="ignore"):
        absref = bound / DTYPES[case.dtype].unit_roundoff
    return compare_tensor(judged, case, name, expected, actual, got.dtypes.get(name), absref)


class EveryTensor(Mapping):
    """A comparators mapping that gives ``comparator`` for every tensor name (the container's
    tensors are named after the drawn model)."""

    def __init__(self, comparator: Callable[..., Comparison]):
        self._comparator = comparator

    def __getitem__(self, key: str) -> Callable[..., Comparison]:
        return self._comparator

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(())

    def __len__(self) -> int:
        return 0


# -- helpers for propagation rules ------------------------------------------------------------------

def with_inputs(case: Case, **arrays: np.ndarray) -> Case:
    return replace(case, inputs={**case.inputs, **arrays})


def reference_on(run: LayerRun, backward: bool, cotangent: np.ndarray | None = None, **arrays: np.ndarray) -> Result:
    """The layer's reference on modified inputs (and cotangent)."""
    sub = with_inputs(run.case, **arrays)
    if cotangent is not None:
        sub = replace(sub, cotangents={"output": cotangent})
    with np.errstate(all="ignore"):
        return layer_reference(run.spec, sub, sub.cotangents if backward else None)


def multilinear(weights: Sequence[str] = ("weight",), biases: Sequence[str] = ("bias",)) -> Propagation:
    """Layers linear in their input and (separately) in each weight, plus an additive bias
    (Linear, convolutions, average pooling, embedding lookups). Evaluated on non-negative
    arguments the reference gives |J|·E exactly:

    - output: f(E_x; |W|, bias 0);
    - grad.input (linear in g, independent of x): VJP(|x|, |W|; E_g);
    - grad.weight (bilinear in x and g): B(E_x, |g| + E_g) + B(|x|, E_g);
    - grad.bias (Σ g): VJP(...; E_g).
    """

    def _absolute(run: LayerRun) -> dict[str, np.ndarray]:
        arrays = {w: np.abs(run.case.inputs[w]) for w in weights if w in run.case.inputs}
        arrays.update({b: np.zeros_like(run.case.inputs[b]) for b in biases if b in run.case.inputs})
        return arrays

    def forward(run: LayerRun, e_x: np.ndarray | None) -> dict[str, np.ndarray]:
        if e_x is None:
            return {}
        return {"output": reference_on(run, False, input=e_x, **_absolute(run)).outputs["output"]}

    def backward(run: LayerRun, e_x: np.ndarray | None, e_g: np.ndarray) -> dict[str, np.ndarray]:
        arrays = _absolute(run)
        x = run.x
        abs_x = np.abs(x) if x.dtype.kind == "f" else x
        through_g = reference_on(run, True, e_g, input=abs_x, **arrays).grads
        out = {f"grad.{k}": np.abs(v) for k, v in through_g.items()}
        if e_x is not None and any(w in run.case.inputs for w in weights):
            g = np.abs(run.case.cotangents["output"]) + e_g
            through_x = reference_on(run, True, g, input=e_x, **arrays).grads
            for w in weights:
                if f"grad.{w}" in out:
                    out[f"grad.{w}"] = out[f"grad.{w}"] + np.abs(through_x[w])
        return out

    return Propagation(forward, backward)


@dataclass
class DrawnLayer:
    """A drawn layer before it is placed in a container: constructor arguments, arrays by local
    name, which of them are parameters (differentiable) and buffers (mutated by the call)."""

    op: str
    params: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    parameters: tuple[str, ...] = ()
    buffers: tuple[str, ...] = ()
    mutated: tuple[str, ...] = ()
    extras: tuple[str, ...] = ()  # plain call inputs (a loss's target): neither parameters nor buffers
