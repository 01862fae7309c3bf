"""Case strategies of the loss family: the shared draws (the reduction and the deprecated
size_average/reduce flags, values, rare corners) and the regression losses (MSELoss, L1Loss,
SmoothL1Loss, HuberLoss) and KLDivLoss. The other losses' strategies are in ``loss_binary``,
``loss_classification``, ``loss_margin``, ``loss_likelihood`` and ``loss_triplet`` beside this one.

Each strategy draws valid cases by construction, every draw labelled (``S.Drawer``) and the
simplest option first; each regime helper returns a ``Regime`` pinning those labels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import CONTIGUOUS, Case
from conformance import strategies as S
from conformance.dtypes import DTYPES
from conformance.spec import CaseStrategy, Regime
from reference.loss import KL_REDUCTIONS, REDUCTIONS, legacy_reduction


def invalid_kinds(builder: Callable[..., st.SearchStrategy[Case]], kinds: Sequence[str], *args: Any) -> CaseStrategy:
    """Invalid cases: one of ``kinds`` (drawn first), built by ``builder(*args, dtype, invalid=kind)``."""
    return lambda dtype: st.sampled_from(tuple(kinds)).flatmap(lambda kind: builder(*args, dtype, invalid=kind))


# -- the reduction, values, rare corners ---------------------------------------------------------------

_LEGACY_FLAGS = ((None, False), (False, None), (True, None), (None, True), (True, True), (False, True),
                 (True, False), (False, False))


def draw_reduction(d: S.Drawer, reductions: Sequence[str] = REDUCTIONS) -> dict[str, Any]:
    """``reduction`` ('mean' first), or the deprecated size_average/reduce pair (torch warns), which
    overrides a ``reduction`` passed beside it."""
    if d.choice(("reduction", "legacy"), "reduction spelling") == "reduction":
        return {"reduction": d.choice(reductions, "reduction")}
    size_average, reduce = d.choice(_LEGACY_FLAGS, "(size_average, reduce)")
    params: dict[str, Any] = {"size_average": size_average, "reduce": reduce}
    if d.flag("reduction passed too"):
        params["reduction"] = d.choice(reductions, "overridden reduction")
    return params


def reduction_of_params(params: Mapping[str, Any], valid: Sequence[str] = REDUCTIONS) -> str:
    return legacy_reduction(params.get("size_average"), params.get("reduce"), params.get("reduction", "mean"),
                                tuple(valid))


def reduction_of(case: Case) -> str:
    """The reduction the case's loss performs (the deprecated flags resolved)."""
    return reduction_of_params(case.params)


def uses_legacy_flags(case: Case) -> bool:
    return case.params.get("size_average") is not None or case.params.get("reduce") is not None


LEGACY_REGIME = Regime(
    "deprecated size_average/reduce", uses_legacy_flags, {"reduction spelling": "legacy"},
    "The deprecated flags (every combination maps to a reduction and overrides `reduction`).")


def values(d: S.Drawer, shape: Sequence[int], dtype: str, tier: str, label: str, **kwargs: Any) -> np.ndarray:
    """``strategies.values`` with the requested shape kept for 0-d tensors (np.ascontiguousarray
    there returns a 1-element 1-d array)."""
    return S.values(d, shape, dtype, tier, label, **kwargs).reshape(tuple(shape))


RARE = 63


def rare(d: S.Drawer, label: str) -> bool:
    """A corner where torch has a known discrepancy: drawn about once in 64 cases at random (each
    known failure restarts the isolated worker, which dominates the run time) and always in the
    regime that pins ``label`` to ``RARE``."""
    return d.integer(0, RARE, label) == RARE


def seeded_rng(d: S.Drawer, label: str) -> np.random.Generator:
    return np.random.default_rng(d.integer(0, 2**32 - 1, label))




# -- MSELoss, L1Loss, SmoothL1Loss, HuberLoss -------------------------------------------------------------

REGRESSION_NOTES = ("reduction and the deprecated size_average/reduce (reduce=False → 'none', else "
                    "size_average=False → 'sum', else 'mean'; they override reduction). Input and target broadcast "
                    "(torch warns); their gradients sum over the broadcast dims; 'mean' divides by the broadcast "
                    "element count.")

def _broadcast_shapes(d: S.Drawer, shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(input shape, target shape) broadcasting to ``shape``: per dim, both full or one of them 1;
    leading dims where an operand is 1 may be dropped from it."""
    x_shape, t_shape = list(shape), list(shape)
    for i in range(len(shape)):
        side = d.choice(("both", "input", "target"), f"broadcast[{i}]")
        if side == "input":
            x_shape[i] = 1
        elif side == "target":
            t_shape[i] = 1

    def drop_leading(s: list[int], label: str) -> tuple[int, ...]:
        ones = next((i for i, v in enumerate(s) if v != 1), len(s))
        return tuple(s[d.integer(0, ones, label):])

    return drop_leading(x_shape, "input dims dropped"), drop_leading(t_shape, "target dims dropped")


def _power_of_two_sizes(d: S.Drawer, ndim: int) -> tuple[int, ...]:
    """Sizes in {1, 2, 4, 8} (at most 8^4 = 4096 elements)."""
    return tuple(2 ** d.integer(0, 3, f"log2 size[{i}]") for i in range(ndim))


_BETAS = (1.0, 0.0, 0.5, 2.0)


_TIE_FRACTIONS = (0.0, 0.25, 1.0)


_DELTAS = (1.0, 0.5, 2.0, 0.25)


def _regression_params(op: str, d: S.Drawer) -> dict[str, Any]:
    if op == "HuberLoss":  # no deprecated flags; delta > 0
        return {"reduction": d.choice(REDUCTIONS, "reduction"), "delta": d.choice(_DELTAS, "delta")}
    params = draw_reduction(d)
    if op == "SmoothL1Loss":
        params["beta"] = d.choice(_BETAS, "beta")
    return params


def _exact_limit(op: str, dtype: str, numel: int) -> int:
    """Largest integer m such that the sum of every term stays within 2^p: (2m)² per term for
    MSE, 2m for L1."""
    limit = DTYPES[dtype].exact_integer_limit / max(1, numel)
    return max(1, int(math.sqrt(limit) / 2) if op == "MSELoss" else int(limit / 2))


def _with_kinks(d: S.Drawer, op: str, params: dict[str, Any], inputs: dict[str, np.ndarray],
                layouts: dict[str, Any]) -> None:
    """Move a drawn fraction of positions onto the kinks: target = input (L1, smooth L1, Huber) and,
    for smooth L1 with β > 0 and Huber, |input - target| = β (δ) on small dyadic values (exact in every
    format)."""
    if inputs["input"].shape != inputs["target"].shape or op == "MSELoss":
        return
    shape = inputs["input"].shape
    ties = d.choice(_TIE_FRACTIONS, "target ties")
    width = params.get("beta", params.get("delta", 0.0))
    edges = d.choice(_TIE_FRACTIONS, "|input - target| = beta") if width else 0.0
    if not (ties or edges):
        return
    rng = seeded_rng(d, "kink.seed")
    tie = rng.random(shape) < ties
    edge = ~tie & (rng.random(shape) < edges)
    x = np.where(edge, rng.integers(-8, 9, shape) / 4, inputs["input"])
    t = np.where(tie, x, inputs["target"])
    t = np.where(edge, x + np.where(rng.random(shape) < 0.5, -1.0, 1.0) * width, t)
    inputs.update(input=x, target=t)
    layouts["target"] = CONTIGUOUS  # arbitrary values: no stride-0 dims
    if edge.any():
        layouts["input"] = CONTIGUOUS


@st.composite
def _regression_case(draw, op: str, dtype: str) -> Case:
    """Any shape (0-d to 4-d), optionally broadcast input/target, both differentiable.

    In the exact tier (MSE, L1) a 'mean' reduction gets power-of-two sizes, so that dividing by the
    element count is exact and every tensor must be bit-exact. L1 and smooth L1 put a drawn
    fraction of positions on their kinks.
    """
    d = S.Drawer(draw)
    tier = S.tier(d, S.TIERS if op not in ("SmoothL1Loss", "HuberLoss") else ("float",))
    params = _regression_params(op, d)
    ndim = d.integer(0, 4, "ndim")
    if tier == "exact" and reduction_of_params(params) == "mean":
        shape = _power_of_two_sizes(d, ndim)
    else:
        shape = tuple(S.sizes_within(d, ndim, S.DEFAULT_BUDGET // 2, hi=12, label="shape"))
    x_shape, t_shape = _broadcast_shapes(d, shape) if ndim and d.flag("broadcast") else (shape, shape)
    limit = _exact_limit(op, dtype, math.prod(shape))
    layouts = {"input": S.layouts(d, len(x_shape), "layout.input", expanded=True),
               "target": S.layouts(d, len(t_shape), "layout.target", expanded=True)}
    # Keep |x - t|² within the format: an elementwise square that overflows (float16 'mixed'
    # magnitudes) makes 'mean' inf even where the mean itself is representable.
    bound = 2.0 ** math.floor(math.log2(math.sqrt(DTYPES[dtype].max_value) / 2))
    inputs = {name: np.asarray(np.clip(values(d, s, dtype, tier, name, int_limit=limit, layout=layouts[name]),
                                       -bound, bound)) for name, s in (("input", x_shape), ("target", t_shape))}
    _with_kinks(d, op, params, inputs, layouts)
    return Case(op=op, dtype=dtype, params=params, inputs=inputs, differentiable=("input", "target"),
                layouts=layouts, tier=tier, cotangent_seed=S.seed(d))


@st.composite
def _invalid_regression_case(draw, op: str, dtype: str) -> Case:
    """Shapes that do not broadcast, an unknown reduction string, a negative beta (smooth L1) or a
    non-positive delta (Huber)."""
    d = S.Drawer(draw)
    kinds = ("shapes", "reduction") + {"SmoothL1Loss": ("negative beta",), "HuberLoss": ("delta <= 0",)}.get(op, ())
    kind = d.choice(kinds, "invalid kind")
    params: dict[str, Any] = {"reduction": "mean"}
    if kind == "shapes":
        n = d.integer(2, 6, "size")
        x_shape, t_shape = (n,), (n + d.integer(1, 3, "extra"),)
    else:
        x_shape = t_shape = (d.integer(1, 6, "size"),)
        if kind == "reduction":
            params["reduction"] = d.choice(("average", "Mean", "elementwise", "batchmean"), "reduction")
        elif kind == "negative beta":
            params["beta"] = d.choice((-1.0, -0.5), "beta")
        else:
            params["delta"] = d.choice((0.0, -1.0), "delta")
    inputs = {name: values(d, s, dtype, "float", name) for name, s in (("input", x_shape), ("target", t_shape))}
    return Case(op=op, dtype=dtype, params=params, inputs=inputs, differentiable=("input", "target"),
                invalid=True, note=kind)


def _broadcast_regime() -> Regime:
    return Regime("broadcast input/target", lambda case: case.inputs["input"].shape != case.inputs["target"].shape,
                  {"ndim": 2, "shape[0]": 3, "shape[1]": 3, "log2 size[0]": 1, "log2 size[1]": 1,
                   "broadcast": True, "broadcast[0]": "input"})


def _kink_regime(pins: Mapping[str, Any]) -> Regime:
    return Regime("input equals target (kink)",
                  lambda case: bool(np.any(case.inputs["input"] == case.inputs["target"])),
                  {"broadcast": False, "target ties": 1.0, "ndim": 1, **pins},
                  "x = t: the gradient there is 0 (sign(0)).")




def regression_cases(op: str) -> CaseStrategy:
    """Cases of MSELoss, L1Loss, SmoothL1Loss or HuberLoss (``_regression_case``)."""
    return lambda dtype: _regression_case(op, dtype)


def invalid_regression_cases(op: str) -> CaseStrategy:
    return lambda dtype: _invalid_regression_case(op, dtype)


BROADCAST_REGIME = _broadcast_regime()


def kink_regime(**pins: Any) -> Regime:
    """input == target at some positions (the kink of |d|)."""
    return _kink_regime(pins)


def at_branch_boundary(case: Case) -> bool:
    """|input - target| equals beta (SmoothL1Loss) or delta (HuberLoss) somewhere."""
    width = case.params.get("beta", case.params.get("delta", 1.0))
    return bool(np.any(np.abs(np.subtract(case.inputs["input"], case.inputs["target"])) == width))


def branch_boundary_pins(name: str, value: float) -> dict[str, Any]:
    """Pins putting every position of a 1-d case on |input - target| = ``name`` (beta or delta)."""
    return {"broadcast": False, name: value, "target ties": 0.0, "|input - target| = beta": 1.0, "ndim": 1}


# -- KLDivLoss ---------------------------------------------------------------------------------------------

_KL_TARGETS = ("distribution", "uniform", "with zeros")


@st.composite
def _kl_case(draw, dtype: str) -> Case:
    """Input log-probabilities (a log-softmax along the last dim, or any values) and target
    probabilities (a distribution, uniform values, or with exact zeros) or log-probabilities
    (log_target=True), same shape 0-d to 4-d; both differentiable."""
    d = S.Drawer(draw)
    params = draw_reduction(d, KL_REDUCTIONS)
    params["log_target"] = d.flag("log_target")
    ndim = d.integer(0, 4, "ndim")
    shape = tuple(S.sizes_within(d, ndim, S.DEFAULT_BUDGET // 2, hi=12, label="shape"))
    layouts = {"input": S.layouts(d, ndim, "layout.input", expanded=True)}
    x = values(d, shape, dtype, "float", "input", layout=layouts["input"])
    if ndim and d.flag("input is a log-softmax"):
        z = x - np.max(x, axis=-1, keepdims=True)
        x = DTYPES[dtype].round(z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True)))
    rng = seeded_rng(d, "target.seed")
    kind = d.choice(_KL_TARGETS, "target.kind")
    if kind == "distribution" and ndim:
        z = rng.standard_normal(shape)
        t = np.exp(z - z.max(axis=-1, keepdims=True))
        t = t / t.sum(axis=-1, keepdims=True)
    else:
        t = rng.random(shape)
        if kind == "with zeros":
            t = np.where(rng.random(shape) < 0.3, 0.0, t)
            t = np.array(t)
            t.flat[0] = 0.0
    if params["log_target"]:
        t = np.log(np.where(t > 0, t, 0.5))
    inputs = {"input": x, "target": DTYPES[dtype].round(t)}
    return Case(op="KLDivLoss", dtype=dtype, params=params, inputs=inputs, differentiable=("input", "target"),
                layouts=layouts, tier="float", cotangent_seed=S.seed(d))


@st.composite
def _invalid_kl_case(draw, dtype: str) -> Case:
    d = S.Drawer(draw)
    kind = d.choice(("shapes", "reduction"), "invalid kind")
    params: dict[str, Any] = {"reduction": "mean"}
    n = d.integer(2, 6, "size")
    x_shape, t_shape = ((n,), (n + d.integer(1, 3, "extra"),)) if kind == "shapes" else ((n,), (n,))
    if kind == "reduction":
        params["reduction"] = d.choice(("average", "Batchmean", "elementwise"), "reduction")
    inputs = {"input": values(d, x_shape, dtype, "float", "input"),
              "target": DTYPES[dtype].round(seeded_rng(d, "target.seed").random(t_shape))}
    return Case(op="KLDivLoss", dtype=dtype, params=params, inputs=inputs, differentiable=("input", "target"),
                invalid=True, note=kind)




kl_cases, invalid_kl_cases = _kl_case, _invalid_kl_case


def kl_reduction(case: Case) -> str:
    """The reduction of a KLDivLoss case ('batchmean' allowed)."""
    return reduction_of_params(case.params, KL_REDUCTIONS)
