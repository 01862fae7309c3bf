"""Case strategies of the likelihood losses: GaussianNLLLoss and PoissonNLLLoss (see
``conformance.strategies.loss`` for the shared draws)."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case
from conformance import strategies as S
from conformance.dtypes import DTYPES
from conformance.spec import Regime
from conformance.strategies.loss import RARE, draw_reduction, invalid_kinds, rare, seeded_rng, values
from reference.loss import REDUCTIONS

# -- GaussianNLLLoss ----------------------------------------------------------------------------------

GAUSSIAN_EPS = (1e-6, 0.5, 1e-2)
VAR_FORMS = ("same shape", "one dim 1", "last dim dropped", "python float")
PYTHON_VARS = (1.0, 0.25, 2.0, 0.0)
GAUSSIAN_INVALID = ("negative var", "negative python float var", "var size", "reduction")


def _one_dim_1(d: S.Drawer, shape: tuple[int, ...], label: str) -> tuple[int, ...]:
    i = d.integer(0, len(shape) - 1, label)
    return shape[:i] + (1,) + shape[i + 1:]


@st.composite
def _gaussian_case(draw: Any, dtype: str, invalid: str = "") -> Case:
    """Expectations (*) of 0 to 3 dims in any layout; the target of the same shape or with one dim 1;
    var of the input's shape, with one dim 1 (homoscedastic along it), without the last dim (one
    variance per sample), or a Python float; var positive, or with entries below eps (0, eps/2),
    which the loss clamps to eps. input, target and a tensor var are differentiable."""
    d = S.Drawer(draw)
    params: dict[str, Any] = {"full": d.flag("full"), "eps": d.choice(GAUSSIAN_EPS, "eps"),
                              "reduction": d.choice(REDUCTIONS, "reduction")}
    ndim = d.integer(0, 3, "ndim")
    shape = tuple(S.sizes_within(d, ndim, S.DEFAULT_BUDGET // 4, hi=12, label="shape"))
    layouts = {"input": S.layouts(d, ndim, "layout.input", expanded=True)}
    x = values(d, shape, dtype, "float", "input", layout=layouts["input"])
    t_shape = _one_dim_1(d, shape, "target broadcast dim") if ndim and d.flag("target broadcast") else shape
    inputs = {"input": x, "target": values(d, t_shape, dtype, "float", "target")}
    form = d.choice(VAR_FORMS if ndim else ("same shape", "python float"), "var form")
    forward_kwargs: dict[str, Any] = {}
    if form == "python float":
        forward_kwargs["var"] = d.choice(PYTHON_VARS, "var")
    else:
        if form == "one dim 1":
            v_shape = _one_dim_1(d, shape, "var dim")
        else:
            v_shape = shape if form == "same shape" else shape[:-1]
        rng = seeded_rng(d, "var.seed")
        var = rng.uniform(0.1, 2.0, v_shape)
        if d.choice(("positive", "below eps"), "var.kind") == "below eps":
            pick = np.array(rng.random(v_shape) < 0.3)
            pick.flat[0] = True
            var = np.where(pick, params["eps"] * rng.choice((0.0, 0.5), v_shape), var)
        inputs["var"] = DTYPES[dtype].round(var)
    if invalid:
        _break_gaussian(d, invalid, params, inputs, forward_kwargs, shape)
    differentiable = ("input", "target", "var") if "var" in inputs else ("input", "target")
    return Case(op="GaussianNLLLoss", dtype=dtype, params=params, inputs=inputs, differentiable=differentiable,
                forward_kwargs=forward_kwargs, layouts=layouts, tier="float", cotangent_seed=S.seed(d),
                invalid=bool(invalid), note=invalid)


def _break_gaussian(d: S.Drawer, kind: str, params: dict[str, Any], inputs: dict[str, np.ndarray],
                    forward_kwargs: dict[str, Any], shape: tuple[int, ...]) -> None:
    """A negative variance (tensor or float), a var of no accepted shape (one more dim), or an
    unknown reduction string: torch raises ValueError for each."""
    if kind == "negative var":
        forward_kwargs.pop("var", None)
        var = np.array(inputs.get("var", np.ones(shape)))
        var.flat[d.integer(0, max(0, var.size - 1), "bad position")] = d.choice((-0.5, -2.0), "bad value")
        inputs["var"] = var
    elif kind == "negative python float var":
        inputs.pop("var", None)
        forward_kwargs["var"] = d.choice((-1.0, -0.25), "var")
    elif kind == "var size":
        forward_kwargs.pop("var", None)
        inputs["var"] = np.ones(shape + (2,))
    else:
        params["reduction"] = d.choice(("batchmean", "average", "Sum"), "reduction")


gaussian_cases = _gaussian_case
invalid_gaussian_cases = invalid_kinds(_gaussian_case, GAUSSIAN_INVALID)


def var_clamped(case: Case) -> bool:
    """Some variance (a tensor entry or the float) lies below eps: the loss uses eps there."""
    var = case.inputs.get("var", case.forward_kwargs.get("var"))
    return bool(np.any(np.asarray(var) < case.params["eps"]))


def var_margin(case: Case) -> np.ndarray:
    """|var - eps| (the distance of every variance from the clamp)."""
    return np.abs(np.asarray(case.inputs.get("var", case.forward_kwargs.get("var"))) - case.params["eps"])


def target_broadcast(case: Case) -> bool:
    return case.inputs["target"].shape != case.inputs["input"].shape


def var_form(form: str) -> Regime:
    """Cases whose var has ``form`` (one of ``VAR_FORMS``)."""
    def holds(case: Case) -> bool:
        x, var = case.inputs["input"], case.inputs.get("var")
        if var is None:
            return form == "python float"
        if form == "last dim dropped":
            return var.ndim == x.ndim - 1
        if form == "one dim 1":
            return var.ndim == x.ndim and var.shape != x.shape
        return var.shape == x.shape
    pins = {"var form": form, **({} if form == "same shape" else {"ndim": 2, "shape[*]": 3})}
    return Regime(f"var {form}", holds, pins)


# -- PoissonNLLLoss -----------------------------------------------------------------------------------

POISSON_EPS = (1e-8, 1e-3, 0.5)
POISSON_TARGETS = ("counts", "continuous")


@st.composite
def _poisson_case(draw: Any, dtype: str, invalid: str = "") -> Case:
    """Log-rates (normal) or rates (uniform on (0, 4], with exact zeros as a drawn kind, where
    log(x + eps) takes eps) of 0 to 3 dims in any layout; targets: Poisson counts (0, 1, 2...) or
    continuous values in [0, 6), of the input's shape. With full=True a zero count makes torch's
    target gradient NaN (known): there zeros become ones, except in rare cases. Both differentiable."""
    d = S.Drawer(draw)
    params = draw_reduction(d)
    params.update(log_input=d.choice((True, False), "log_input"), full=d.flag("full"),
                  eps=d.choice(POISSON_EPS, "eps"))
    ndim = d.integer(0, 3, "ndim")
    shape = tuple(S.sizes_within(d, ndim, S.DEFAULT_BUDGET // 4, hi=12, label="shape"))
    layouts = {"input": S.layouts(d, ndim, "layout.input", expanded=True)}
    rng = seeded_rng(d, "values.seed")
    if params["log_input"]:
        x = values(d, shape, dtype, "float", "input", layout=layouts["input"])
    else:
        source = S.source_shape(shape, layouts["input"])
        rates = rng.uniform(0.0, 4.0, source)
        if d.choice(("positive", "with zeros"), "rates") == "with zeros" and rates.size:
            rates = np.where(rng.random(source) < 0.3, 0.0, rates)
            rates.flat[0] = 0.0
        x = np.broadcast_to(rates, shape).copy()
    if d.choice(POISSON_TARGETS, "target.kind") == "counts":
        t = rng.poisson(2.0, shape).astype(np.float64)
    else:
        t = rng.uniform(0.0, 6.0, shape)
    if params["full"] and not rare(d, "zero targets with full"):
        t = np.where(t == 0, 1.0, t)
    elif params["full"] and t.size:
        t = np.array(t)
        t.flat[0] = 0.0
    inputs = {"input": DTYPES[dtype].round(x), "target": DTYPES[dtype].round(t)}
    if invalid == "shapes":  # (n) against (n + 1): they do not broadcast
        n = d.integer(2, 6, "size")
        inputs = {"input": DTYPES[dtype].round(rng.uniform(0.5, 2.0, n)), "target": np.ones(n + 1)}
        layouts = {}
    elif invalid:
        params = {k: v for k, v in params.items() if k not in ("size_average", "reduce")}
        params["reduction"] = d.choice(("batchmean", "average", "Sum"), "reduction")
    return Case(op="PoissonNLLLoss", dtype=dtype, params=params, inputs=inputs, differentiable=("input", "target"),
                layouts=layouts, tier="float", cotangent_seed=S.seed(d), invalid=bool(invalid), note=invalid)


poisson_cases = _poisson_case
invalid_poisson_cases = invalid_kinds(_poisson_case, ("shapes", "reduction"))


ZERO_TARGET_PINS = {"full": True, "zero targets with full": RARE, "target.kind": "counts", "ndim": 1, "shape[0]": 8}


def poisson_smooth(case: Case) -> bool:
    """Finite differences apply: rates away from 0 (log(x + eps)), and with full=True targets away
    from 0 and from the jump of the Stirling term at t = 1."""
    x, t = case.inputs["input"], case.inputs["target"]
    rates_ok = case.params.get("log_input", True) or bool(np.all(x > 1e-2))
    return rates_ok and (not case.params.get("full") or bool(np.all((np.abs(t - 1) > 1e-3) & (t > 1e-3))))
