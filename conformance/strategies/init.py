"""Case strategies of ``torch.nn.init``: a tensor of a drawn rank, shape and layout (its values are
overwritten, so it starts as NaN: an element the call leaves unwritten shows), the function's
parameters drawn from per-entry options (simplest first), and, for the ``[generator]`` variants,
a generator seed. Invalid cases start from a valid draw and break one documented rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from backends.base import CONTIGUOUS, Case, Layout
from conformance import strategies as S

# A parameter's options: a tuple (simplest first), a function of (shape, the parameters drawn
# before it, dtype) giving one, or a mapping from labels (drawn and pinned by label) to values or
# to such functions giving the value.
Options = Sequence[Any] | Callable[[tuple[int, ...], dict, str], Sequence[Any]] | Mapping[str, Any]
BUDGET = 1024  # elements of a drawn tensor (the statistics pool every element of every case)
SIZE_HI = 40


def draw_shape(d: S.Drawer, ranks: Sequence[int], budget: int = BUDGET,
               empty_dims: Sequence[int] | None = None) -> tuple[int, ...]:
    """A rank from ``ranks`` (its first is the shrink target), then sizes within the budget; one
    size may be 0 (an empty tensor) when drawn as such, at one of ``empty_dims`` (default: any;
    empty: never)."""
    rank = d.choice(tuple(ranks), "ndim")
    shape = S.sizes_within(d, rank, budget, lo=1, hi=SIZE_HI, label="shape")
    dims = [i for i in (range(rank) if empty_dims is None else empty_dims) if i < rank]
    if dims and d.flag("zero-size dim"):
        shape[dims[d.integer(0, len(dims) - 1, "zero-size dim index")]] = 0
    return tuple(shape)


def draw_params(d: S.Drawer, options: Mapping[str, Options], shape: tuple[int, ...], dtype: str) -> dict[str, Any]:
    """One value per parameter, in declaration order (a callable's options depend on the shape,
    the parameters drawn before and the dtype)."""
    params: dict[str, Any] = {}
    for name, opts in options.items():
        if isinstance(opts, Mapping):
            value = opts[d.choice(tuple(opts), name)]
            params[name] = value(shape, params, dtype) if callable(value) else value
        else:
            params[name] = d.choice(tuple(opts(shape, params, dtype) if callable(opts) else opts), name)
    return params


def draw_layout(d: S.Drawer, ndim: int, expanded: bool) -> Layout:
    """A layout of the tensor (``strategies.layouts``), where a permuted 2-d tensor is always the
    transpose (``layouts`` may draw the identity permutation, a contiguous tensor)."""
    layout = S.layouts(d, ndim, "layout.tensor", expanded=expanded) if ndim else CONTIGUOUS
    if ndim == 2 and layout.kind == "contiguous" and d.flag("layout.tensor.transposed"):
        return Layout("permuted", perm=(1, 0))
    return layout


def init_cases(op: str, ranks: Sequence[int], options: Mapping[str, Options], *, expanded: bool = False,
               generator: bool = False, budget: int = BUDGET, empty_dims: Sequence[int] | None = None
               ) -> Callable[[str], Any]:
    """The case strategy of one initialiser: ``tensor`` (and ``replay``, the tensor a second
    identically seeded generator fills, in the generator variant) of a drawn shape and layout."""

    def build(d: S.Drawer, dtype: str) -> Case:
        shape = draw_shape(d, ranks, budget, empty_dims)
        params = draw_params(d, options, shape, dtype)
        layout = draw_layout(d, len(shape), expanded)
        return _case(op, dtype, shape, params, layout, generator, d)

    return S.case_strategy(build)


def _case(op: str, dtype: str, shape: tuple[int, ...], params: dict[str, Any], layout: Layout, generator: bool,
          d: S.Drawer, invalid: bool = False, note: str = "") -> Case:
    names = ("tensor", "replay") if generator else ("tensor",)
    if generator:
        params = {**params, "generator": d.integer(0, 2**31 - 1, "generator seed")}
    return Case(op=op, dtype=dtype, params=params, inputs={n: np.full(shape, np.nan) for n in names},
                layouts={n: layout for n in names}, tier="float", invalid=invalid, note=note,
                variant="generator" if generator else "")


def invalid_init_cases(op: str, ranks: Sequence[int], options: Mapping[str, Options],
                       rules: Mapping[str, Mapping[str, Any]], *, generator: bool = False) -> Callable[[str], Any]:
    """Invalid cases: a valid draw, then one rule broken. A rule is data: parameter overrides,
    ``"ranks"`` (the tensor's rank drawn from these instead), ``"shape"`` (a fixed shape) and
    ``"layout": "expanded"`` (a stride-0 tensor the call must not write in place); an override may
    be a function of (shape, parameters, dtype) like an option; ``"dtypes"`` limits a rule to the
    formats where it is one (a finite float64 value always fits in float64)."""

    def build(d: S.Drawer, dtype: str) -> Case:
        kind = d.choice(tuple(k for k, r in rules.items() if dtype in r.get("dtypes", (dtype,))), "invalid kind")
        rule = {k: v for k, v in rules[kind].items() if k != "dtypes"}
        shape = tuple(rule.pop("shape")) if "shape" in rule else draw_shape(d, rule.pop("ranks", ranks), 64, ())
        params = draw_params(d, options, shape, dtype)
        expanded = rule.pop("layout", None) == "expanded"
        if expanded and not any(size > 1 for size in shape):  # stride 0 needs a dim of 2 or more to overlap
            shape = (2, *shape[1:]) if shape else (2,)
        params.update({k: v(shape, params, dtype) if callable(v) else v for k, v in rule.items()})
        layout = expanded_layout(d, shape) if expanded else CONTIGUOUS
        return _case(op, dtype, shape, params, layout, generator, d, invalid=True, note=kind)

    return S.case_strategy(build)


def expanded_layout(d: S.Drawer, shape: tuple[int, ...]) -> Layout:
    """Stride 0 along a dim of size > 1 (several elements share one memory location)."""
    wide = [i for i, s in enumerate(shape) if s > 1] or [0]
    return Layout("expanded", dims=(wide[d.integer(0, len(wide) - 1, "expanded dim")],))


def writes_overlap(case: Case) -> bool:
    """The tensor has stride 0 along a dim of size > 1: an in-place write cannot give its elements
    different values (torch's random fills raise on it)."""
    layout = case.layout("tensor")
    shape = case.inputs["tensor"].shape
    return layout.kind == "expanded" and any(shape[i] > 1 for i in layout.dims) and 0 not in shape


def gain_cases(invalid: bool = False) -> Callable[[str], Any]:
    """calculate_gain on a batch of queries (nonlinearity, param): every nonlinearity, param None or
    a number (leaky_relu reads it, the others ignore it) travelling in the float64 input ``param``
    (one element per query; a None query leaves its element 0; every value is exact in every
    format, as the generic strategy test asks of float inputs). Invalid: one query with an unknown
    nonlinearity, or leaky_relu with a bool or a string param."""
    from reference.init import NONLINEARITIES

    def build(d: S.Drawer, dtype: str) -> Case:
        if invalid:
            kind = d.choice(("unknown nonlinearity", "bool param", "string param"), "invalid kind")
            name = d.choice(("gelu", "softmax", "Relu", "identity"), "nonlinearity") if kind.startswith("unknown") \
                else "leaky_relu"
            param = {"bool param": d.choice((True, False), "param"), "string param": "0.1"}.get(kind)
            return Case(op="calculate_gain", dtype=dtype, params={"queries": [[name, param]]},
                        inputs={"param": np.zeros(1)}, invalid=True, note=kind)
        queries, values = [], []
        for i in range(d.integer(1, 6, "queries")):
            name = d.choice(("relu", *[n for n in NONLINEARITIES if n != "relu"]), f"nonlinearity[{i}]")
            param = d.choice((None, 0.1875, 0.0, 1.0, -0.5, 3.0, 96.0, 2.0**-20, 2.0**14), f"param[{i}]")
            queries.append([name, None if param is None else "number"])
            values.append(0.0 if param is None else param)
        return Case(op="calculate_gain", dtype=dtype, params={"queries": queries}, inputs={"param": np.array(values)})

    return S.case_strategy(build)


# -- parametrizations and fusion: cases built on an eager declaration's case ---------------------------------

WEIGHT = "parametrizations.weight"


def eager_case(d: S.Drawer, eager_id: str, dtype: str, pins: Mapping[str, Any]) -> Case:
    """A case of the eager declaration ``eager_id`` drawn under the current regime's pins and
    ``pins`` (float tier: the parametrised weight is no integer)."""
    from conformance.spec import Regime, all_specs, current_pins

    regime = Regime("", lambda case: True, {**current_pins(), **pins})
    return d(all_specs()[eager_id].strategy(dtype, regime), "module case")


def unit_vector(d: S.Drawer, size: int, dtype: str, label: str) -> np.ndarray:
    """A Gaussian direction normalised, in ``dtype``."""
    from conformance.dtypes import DTYPES

    rng = np.random.default_rng(d.integer(0, 2**32 - 1, f"{label}.seed"))
    v = rng.standard_normal(size)
    return DTYPES[dtype].round(v / np.linalg.norm(v))


def weight_norm_draw(d: S.Drawer, weight: np.ndarray, dtype: str) -> tuple[dict, dict, dict]:
    """dim (simplest first: 0, None, 1, the last, -1, -2), g of the norm's kept shape, v = the weight."""
    from reference.parametrizations import norm_except_dim

    dim = d.choice(tuple(dict.fromkeys((0, None, 1, weight.ndim - 1, -1, -2))), "dim")
    g = S.values(d, np.shape(norm_except_dim(weight, dim)), dtype, "float", "g")
    return {"dim": dim}, {f"{WEIGHT}.original0": g.reshape(np.shape(norm_except_dim(weight, dim))),
                          f"{WEIGHT}.original1": weight}, {}


def spectral_norm_draw(d: S.Drawer, weight: np.ndarray, dtype: str, transposed: bool) -> tuple[dict, dict, dict]:
    """n_power_iterations, eps (tiny, small, or half the weight's Frobenius norm: large enough to
    cap normalize's divisor, not so large that σ underflows), dim (None: torch's default, 1 for
    ConvTranspose else 0), and the u, v buffers (unit vectors of the weight matrix's height and
    width)."""
    from reference.parametrizations import weight_matrix

    eps = d.choice(("1e-12", "1e-3", "half the weight's norm"), "eps")
    params = {"n_power_iterations": d.choice((1, 2, 5, 15), "n_power_iterations"),
              "eps": float(eps) if eps[0] == "1" else float(np.float32(np.linalg.norm(weight) / 2)),
              "dim": d.choice(tuple(dict.fromkeys((None, 0, 1, weight.ndim - 1, -1))), "dim")}
    h, w = weight_matrix(weight, spectral_dim(params["dim"], weight.ndim, transposed)).shape
    return params, {f"{WEIGHT}.original": weight}, {f"{WEIGHT}.0._u": unit_vector(d, h, dtype, "u"),
                                                     f"{WEIGHT}.0._v": unit_vector(d, w, dtype, "v")}


def spectral_dim(dim: int | None, ndim: int, transposed: bool) -> int:
    """spectral_norm's dim: None is 1 for a ConvTranspose weight, else 0; negative counts from the end."""
    return (1 if transposed else 0) if dim is None else dim % ndim


def orthogonal_draw(d: S.Drawer, weight: np.ndarray, dtype: str) -> tuple[dict, dict, dict]:
    """orthogonal_map (None: matrix_exp when square, else householder), use_trivialization, the
    original X (householder: a ±1 diagonal of the tall view, which is a sign, not a parameter) and
    the base (a Haar orthogonal matrix per matrix of the batch)."""
    from conformance.dtypes import DTYPES
    from reference.parametrizations import haar_orthogonal

    params = {"orthogonal_map": d.choice((None, "matrix_exp", "cayley", "householder"), "orthogonal_map"),
              "use_trivialization": d.choice((True, False), "use_trivialization")}
    rng = np.random.default_rng(d.integer(0, 2**32 - 1, "original.seed"))
    x = rng.standard_normal(weight.shape) * d.choice((0.5, 0.1, 2.0, 0.01), "original.scale")
    n, k = max(weight.shape[-2:]), min(weight.shape[-2:])
    if orthogonal_kind(params["orthogonal_map"], weight.shape) == "householder":
        tall = x if weight.shape[-2] >= weight.shape[-1] else np.swapaxes(x, -1, -2)
        tall[..., np.arange(k), np.arange(k)] = np.where(rng.random((*weight.shape[:-2], k)) < 0.5, -1.0, 1.0)
    buffers = {}
    if params["use_trivialization"]:
        buffers[f"{WEIGHT}.0.base"] = DTYPES[dtype].round(haar_orthogonal(rng, (*weight.shape[:-2], n, n)))
    return params, {f"{WEIGHT}.original": DTYPES[dtype].round(x)}, buffers


def orthogonal_kind(orthogonal_map: str | None, shape: tuple[int, ...]) -> str:
    """The map torch uses: ``orthogonal_map``, or by default matrix_exp for square matrices, else householder."""
    return orthogonal_map or ("matrix_exp" if shape[-1] == shape[-2] else "householder")
