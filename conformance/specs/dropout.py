"""Dropout, Dropout2d and Dropout3d: stochastic layers judged through a conditional reference.

Per case, the backend reports its keep mask (a torch adapter reads it as the non-zero elements of
the output: random cases draw non-zero finite inputs, so a kept element can never look dropped);
the reference computes the exact output and gradient for that mask and returns its canonical form
(for channel dropout: a channel counts as kept only if all of it is), so a mask that is not
constant over a channel is a mismatch. Per target, statistical tests check the masks themselves
(``_check_masks``): the drop rate against p, and no dependence between neighbouring channels or
samples, with a false-alarm rate of at most 1e-6 per target. p = 0, p = 1 and eval mode make no
random choice and are compared exactly, with ±0, ±inf and NaN inputs too.

Units: Dropout drops elements. Dropout2d and Dropout3d drop whole channels: the first two dims of
the input, i.e. (N, C) of (N, C, H, W) / (N, C, D, H, W), and C of an unbatched (C, D, H, W) input
to Dropout3d. For a 3-d input Dropout2d (torch warns) performs 1-d channel-wise dropout over
(N, C, L): its units are the first two dims, not the channels of a (C, H, W) image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case, Result
from conformance import strategies as S
from conformance.compare import Comparison, compare_tensor
from conformance.spec import LayerSpec, Randomness, Regime, Tolerance, TorchMapping, declare, result_reference, spec_of
from conformance.stats import StatCheck, bernstein_test, neighbour_agreement
from reference import dropout as ref

# p values, the module's default first; the exact tier keeps 1/(1 - p) a power of two.
P_VALUES = (0.5, 0.0, 1.0, 0.25, 0.75, 0.1, 0.9, 0.125, 1 / 3)
EXACT_P_VALUES = (0.5, 0.0, 1.0, 0.75)
# Input forms per declaration (simplest first): (label, rank).
FORMS = {"Dropout": None, "Dropout2d": (("(N, C, H, W)", 4), ("(C, H, W)", 3)),
         "Dropout3d": (("(N, C, D, H, W)", 5), ("(C, D, H, W)", 4))}
SPECIALS = (0.0, -0.0, np.inf, -np.inf, np.nan)
BUDGET = 2048


def unit_dims(case: Case) -> int:
    """How many leading dims index the independent units (see the module docstring)."""
    spec = spec_of(case)
    rank = case.inputs["input"].ndim
    if spec.kind == "element":
        return rank
    return 1 if (spec.kind == "channel3d" and rank == 4) else min(2, rank)


def _deterministic(case: Case) -> bool:
    p = case.params["p"]
    return p in (0.0, 1.0) or not case.train or case.inputs["input"].size == 0


# -- cases ------------------------------------------------------------------------------------------

def _shape(d: S.Drawer, op: str) -> tuple[int, ...]:
    forms = FORMS[op]
    if forms is None:
        rank = d.integer(0, 4, "ndim")
        return tuple(S.sizes_within(d, rank, BUDGET, lo=1, hi=12, label="shape"))
    _, rank = d.choice(forms, "input form")
    # Channels and batch get room (the statistics look at units); spatial dims stay small.
    units = S.sizes_within(d, 2 if rank in (4, 5) and forms[0][1] == rank else 1, 64, lo=1, hi=16, label="units")
    spatial = S.sizes_within(d, rank - len(units), BUDGET // math.prod(units), lo=1, hi=5, label="spatial")
    return (*units, *spatial)


def _values(d: S.Drawer, shape: tuple[int, ...], dtype: str, tier: str, random: bool,
            layout: Any) -> np.ndarray:
    """Non-zero finite values where the mask must be observable; anything (±0, ±inf, NaN) at the
    deterministic points."""
    if not random:
        x = S.values(d, shape, dtype, tier, "input", int_limit=8, layout=layout, specials=SPECIALS)
        if x.size >= 3 and layout.kind != "expanded" and d.flag("inf, -inf and NaN"):
            x = x.copy()
            x.reshape(-1)[:3] = (np.inf, -np.inf, np.nan)
        return x
    x = S.values(d, shape, dtype, tier, "input", int_limit=8, layout=layout)
    return np.where(x == 0, 1.0, x)


def _cases(op: str):
    def strategy(dtype: str) -> st.SearchStrategy[Case]:
        @st.composite
        def build(draw: Any) -> Case:
            d = S.Drawer(draw)
            tier = S.tier(d)
            p = d.choice(EXACT_P_VALUES if tier == "exact" else P_VALUES, "p")
            train = d.choice((True, False), "train")
            inplace = d.flag("inplace")
            shape = _shape(d, op)
            layout = S.layouts(d, len(shape), "layout.input", expanded=not inplace)
            random = train and 0 < p < 1
            x = _values(d, shape, dtype, tier, random, layout)
            return Case(op=op, dtype=dtype, params={"p": p, "inplace": inplace}, inputs={"input": x},
                        differentiable=("input",), layouts={"input": layout}, train=train, tier=tier,
                        cotangent_seed=S.seed(d), note="random" if random else "deterministic")

        return build()

    return strategy


def _invalid_cases(op: str):
    """p outside [0, 1]: the constructor raises."""
    def strategy(dtype: str) -> st.SearchStrategy[Case]:
        @st.composite
        def build(draw: Any) -> Case:
            d = S.Drawer(draw)
            p = d.choice((-0.1, 1.5, -1.0, 2.0), "p")
            shape = (2, 3, 2, 2, 2)[: {"Dropout": 2, "Dropout2d": 4, "Dropout3d": 5}[op]]
            x = S.values(d, shape, dtype, "float", "input")
            return Case(op=op, dtype=dtype, params={"p": p, "inplace": False}, inputs={"input": x},
                        differentiable=("input",), invalid=True, note="p outside [0, 1]")

        return build()

    return strategy


# -- reference --------------------------------------------------------------------------------------

def _reference(case: Case, backward: bool) -> Result:
    p = float(case.params["p"])
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    x = case.inputs["input"]
    g = S.output_gradient(case, "output", x) if backward else None
    if not case.train or p == 0.0 or x.size == 0:
        result = Result(outputs={"output": x.copy()})
        if backward:
            result.grads["input"] = g.copy()
        return result
    if p == 1.0:
        result = Result(outputs={"output": ref.drop_all(x)})
        if backward:
            result.grads["input"] = np.zeros_like(x)
        return result
    reported = case.choices.get("mask")
    keep = np.ones(x.shape, dtype=bool) if reported is None else ref.canonical_mask(reported, unit_dims(case))
    result = Result(outputs={"output": ref.dropout(x, keep, p)}, choices={"mask": keep})
    if backward:
        result.grads["input"] = ref.dropout_vjp(g, keep, p)
    return result


def _sample(case: Case, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A conforming mask: each unit kept with probability 1 − p, independently."""
    x = case.inputs["input"]
    units = rng.random(ref.unit_shape(x.shape, unit_dims(case))) >= case.params["p"]
    return {"mask": np.broadcast_to(units, x.shape).copy()}


def _units(case: Case, mask: np.ndarray) -> np.ndarray:
    """The mask reduced to its units (one value per unit)."""
    k = unit_dims(case)
    return np.asarray(mask, dtype=bool)[tuple([slice(None)] * k + [0] * (mask.ndim - k))]


def _check_masks(samples: Sequence[tuple[Case, dict[str, np.ndarray]]], alpha: float) -> list[StatCheck]:
    """Drop rate and independence of the masks of a target's random cases (rate <= alpha).

    - drop rate: every unit of every case is dropped with probability p (Bernstein test);
    - independence: disjoint pairs of neighbouring units along the channel axis and along the
      sample axis agree with probability p² + (1 − p)² (a mask shared across channels or samples
      agrees everywhere).
    alpha is split equally over the three tests (union bound).
    """
    dropped, rates, units, keeps = [], [], {0: [], 1: []}, {0: [], 1: []}
    for case, choices in samples:
        u = _units(case, choices["mask"])
        p = float(case.params["p"])
        dropped.append(~u.reshape(-1))
        rates.append(np.full(u.size, p))
        for axis in (0, 1):
            units[axis].append(u)
            keeps[axis].append(1 - p)
    share = alpha / 3
    checks = [bernstein_test("drop rate", "units dropped, against p", np.concatenate(dropped) if dropped else [],
                             np.concatenate(rates) if rates else [], share)]
    for axis, label in ((1, "channels"), (0, "samples")):
        agree, expected = neighbour_agreement(units[axis], keeps[axis], axis)
        checks.append(bernstein_test(f"independent {label}", f"neighbouring {label} with the same choice",
                                     agree, expected, share))
    return checks


RANDOMNESS = Randomness(choices={"mask": "output"}, sample=_sample, check=_check_masks,
                        deterministic=_deterministic)


# -- comparison -------------------------------------------------------------------------------------

def _output_comparator(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
    """At p = 1, torch multiplies by 0, so a ±inf or NaN input gives NaN; 0 (what "zeroes the
    element" says) is accepted there too. Everything else must match as usual."""
    expected = result.tensors()[name]
    value = got.tensors().get(name)
    x = case.inputs["input"]
    if case.train and case.params["p"] == 1.0 and value is not None and np.shape(value) == x.shape:
        either = ~np.isfinite(x) & (np.asarray(value) == 0)
        expected = np.where(either, 0.0, expected)
    return compare_tensor(spec, case, name, expected, value, got.dtypes.get(name), np.abs(expected))


_NOTES = ("Train mode keeps each {unit} with probability 1 - p and scales by 1/(1 - p) (torch rounds "
          "1/(1 - p) to the dtype, then multiplies: two roundings). p = 0 and eval mode are the identity; p = 1 "
          "gives input·0 (NaN for ±inf/NaN inputs; 0 is accepted there too). The gradient uses the forward's "
          "mask and scale. The mask is read as the output's non-zero elements (random cases draw non-zero "
          "finite inputs). {extra}")

# Two roundings (the scale, the product) on a single product: |δ| <= 2u·|ref|; exact on integers when
# 1/(1 - p) is a power of two (the exact tier draws only those p).
TOLERANCE = Tolerance(magnitude="ref", out_ulps=1.0, c=1.0, exact="bitwise")


def _regimes(op: str) -> tuple[Regime, ...]:
    common = (
        Regime("p = 0", lambda c: c.params["p"] == 0.0, {"p": 0.0, "train": True}, "identity in training mode"),
        Regime("p = 1", lambda c: c.params["p"] == 1.0 and c.train, {"p": 1.0, "train": True},
               "everything dropped (input·0)"),
        Regime("eval mode", lambda c: not c.train, {"train": False, "p": 0.5}, "identity"),
        Regime("random, in place", lambda c: c.params["inplace"] and c.train and 0 < c.params["p"] < 1,
               {"inplace": True, "train": True, "p": 0.5}, "the mask applied to the input itself"),
        Regime("non-finite at p = 1", lambda c: c.params["p"] == 1.0 and c.train
               and not np.isfinite(c.inputs["input"]).all(),
               {"p": 1.0, "train": True, "inf, -inf and NaN": True, "ndim": 2, "shape[*]": 3, "units[*]": 2,
                "layout.input": "contiguous"},
               "±inf and NaN inputs when everything is dropped"),
        Regime("rare drop", lambda c: c.params["p"] == 0.1 and c.train, {"p": 0.1, "train": True, "tier": "float"},
               "p small: few units dropped"),
    )
    if op == "Dropout":
        return common
    batched, unbatched = FORMS[op]
    return common + (
        Regime("unbatched", lambda c: c.inputs["input"].ndim == unbatched[1],
               {"input form": unbatched, "p": 0.5, "train": True},
               "(C, H, W) to Dropout2d is (N, C, L) channel dropout; (C, D, H, W) to Dropout3d drops channels"),
        Regime("many channels", lambda c: c.inputs["input"].ndim == batched[1] and c.inputs["input"].shape[1] >= 8,
               {"input form": batched, "units[0]": 2, "units[1]": 16, "p": 0.5, "train": True},
               "16 channels per sample"),
    )


for _op, _kind, _unit in (("Dropout", "element", "element"), ("Dropout2d", "channel2d", "channel"),
                          ("Dropout3d", "channel3d", "channel")):
    declare(LayerSpec(
        name=_op, family="dropout", kind=_kind,
        cases=_cases(_op),
        reference=result_reference(_reference),
        torch=TorchMapping(f"torch.nn.{_op}", inplace="input"),
        tolerance=TOLERANCE,
        comparators={"output": _output_comparator},
        invalid_cases=_invalid_cases(_op),
        randomness=RANDOMNESS,
        regimes=_regimes(_op),
        smooth_at=lambda case: bool(np.isfinite(case.inputs["input"]).all()),
        notes=_NOTES.format(unit=_unit, extra="" if _op == "Dropout" else
                            "Units are the first two dims of the input (a whole channel of a batched input); "
                            "a 3-d input to Dropout2d is treated as (N, C, L) (torch warns), an unbatched "
                            "4-d input to Dropout3d as (C, D, H, W)."),
    ))
