"""Case strategies of the dropout family (Dropout, Dropout1d/2d/3d, AlphaDropout, FeatureAlphaDropout).

A case draws its tier, p (the module's default 0.5 first), the train flag, inplace, the input's
form and shape (channel dropout: batch and channels get room, spatial dims stay small, since the
statistics look at units), a memory layout and values. Random cases (training, 0 < p < 1) draw
values a kept element can never be mistaken for a dropped one by: non-zero for dropout (a mask is
read as the output's non-zero elements), away from SELU's saturation −λα for alpha dropout (a
dropped element reads as a·(−λα) + b). The deterministic points (p = 0, p = 1, eval mode) may hold
±0, ±inf and NaN. Invalid cases break one rule each (``Invalid``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from backends.base import Case, Layout
from conformance import strategies as S
from conformance.dtypes import DTYPES
from reference.dropout import ALPHA_PRIME

# p values, the module's default first; the exact tier keeps 1/(1 - p) a power of two.
P_VALUES = (0.5, 0.0, 1.0, 0.25, 0.75, 0.1, 0.9, 0.125, 1 / 3)
EXACT_P_VALUES = (0.5, 0.0, 1.0, 0.75)
SPECIALS = (0.0, -0.0, np.inf, -np.inf, np.nan)
BUDGET = 2048
# Random alpha-dropout inputs keep |x + λα| >= ALPHA_MARGIN: a kept a·x + b then lies at least
# a·ALPHA_MARGIN from the dropped value a·(−λα) + b, far beyond any rounding.
ALPHA_MARGIN = 0.25
# A corner drawn one time in eight (its regime pins it): False first, so it shrinks away.
RARELY = (False,) * 7 + (True,)


@dataclass(frozen=True)
class Form:
    """An input form of a channel-dropout layer: its label, rank and how many leading dims are
    drawn as units (batch and channels: up to 16 each; the rest spatial: up to 5)."""

    label: str
    rank: int
    units: int

    def __repr__(self) -> str:
        return self.label


@dataclass(frozen=True)
class Invalid:
    """One invalid rule: its note, the p values that break it (or a valid p), the input shapes
    (each breaking it, or valid) and the train flag."""

    note: str
    p: Sequence[float]
    shapes: Sequence[tuple[int, ...]]
    train: bool = True


P_OUTSIDE = (-0.1, 1.5, -1.0, 2.0)


def p_outside(rank: int) -> Invalid:
    """p outside [0, 1] (the constructor raises), for an input of ``rank`` dims."""
    return Invalid("p outside [0, 1]", P_OUTSIDE, ((2, 3, 2, 2, 2)[:rank],))


def _shape(d: S.Drawer, forms: Sequence[Form] | None, empty: bool) -> tuple[int, ...]:
    if forms is None:
        rank = d.integer(0, 4, "ndim")
        shape = list(S.sizes_within(d, rank, BUDGET, lo=1, hi=12, label="shape"))
    else:
        form = d.choice(forms, "input form")
        # Channels and batch get room (the statistics look at units); spatial dims stay small.
        units = S.sizes_within(d, form.units, 64, lo=1, hi=16, label="units")
        spatial = S.sizes_within(d, form.rank - len(units), BUDGET // math.prod(units), lo=1, hi=5, label="spatial")
        shape = [*units, *spatial]
    if empty and shape and d.choice(RARELY, "empty"):
        shape[d.integer(0, len(shape) - 1, "empty dim")] = 0
    return tuple(shape)


def _values(d: S.Drawer, shape: tuple[int, ...], dtype: str, tier: str, random: bool, layout: Layout,
            alpha: bool) -> np.ndarray:
    """Non-zero finite values where the mask must be observable (away from −λα for alpha dropout);
    anything (±0, ±inf, NaN) at the deterministic points."""
    if not random:
        x = S.values(d, shape, dtype, tier, "input", int_limit=8, layout=layout, specials=SPECIALS)
        if x.size >= 3 and layout.kind != "expanded" and d.flag("inf, -inf and NaN"):
            x = x.copy()
            x.reshape(-1)[:3] = (np.inf, -np.inf, np.nan)
        return x
    x = S.values(d, shape, dtype, tier, "input", int_limit=8, layout=layout)
    x = np.where(x == 0, 1.0, x)
    if alpha:
        x = DTYPES[dtype].round(np.where(np.abs(x + ALPHA_PRIME) < ALPHA_MARGIN, x + 2 * ALPHA_MARGIN, x))
    return x


def cases(op: str, forms: Sequence[Form] | None, tiers: Sequence[str] = S.TIERS, alpha: bool = False,
          empty: bool = False):
    """The valid cases of ``op``: ``forms`` (None: any rank from 0 to 4), ``tiers``; ``alpha``:
    random inputs kept away from −λα; ``empty``: an input with a zero-size dim may be drawn."""

    def build(d: S.Drawer, dtype: str) -> Case:
        tier = S.tier(d, tiers)
        p = d.choice(EXACT_P_VALUES if tier == "exact" else P_VALUES, "p")
        train = d.choice((True, False), "train")
        inplace = d.flag("inplace")
        shape = _shape(d, forms, empty)
        layout = S.layouts(d, len(shape), "layout.input", expanded=not inplace)
        random = train and 0 < p < 1 and math.prod(shape) > 0
        x = _values(d, shape, dtype, tier, random, layout, alpha)
        return Case(op=op, dtype=dtype, params={"p": p, "inplace": inplace}, inputs={"input": x},
                    differentiable=("input",), layouts={"input": layout}, train=train, tier=tier,
                    cotangent_seed=S.seed(d), note="random" if random else "deterministic")

    return S.case_strategy(build)


def invalid_cases(op: str, rules: Sequence[Invalid]):
    """Cases breaking one of ``rules`` each (a choice among several is drawn first)."""

    def build(d: S.Drawer, dtype: str) -> Case:
        rule = rules[0] if len(rules) == 1 else d.choice(rules, "rule")
        p = d.choice(rule.p, "p")
        shape = rule.shapes[0] if len(rule.shapes) == 1 else d.choice(rule.shapes, "shape")
        x = S.values(d, shape, dtype, "float", "input")
        return Case(op=op, dtype=dtype, params={"p": p, "inplace": False}, inputs={"input": x},
                    differentiable=("input",), train=rule.train, invalid=True, note=rule.note)

    return S.case_strategy(build)


def has_nonfinite(case: Case) -> bool:
    return not bool(np.isfinite(case.inputs["input"]).all())


def is_random(case: Case) -> bool:
    """The case makes random choices: training with 0 < p < 1 on a non-empty input."""
    p = case.params["p"]
    return bool(case.train) and 0 < p < 1 and case.inputs["input"].size > 0 and not case.invalid


def regime_pins(**extra: Any) -> dict[str, Any]:
    """Pins drawing a small contiguous input whose first elements are ±inf and NaN."""
    return {"inf, -inf and NaN": True, "ndim": 2, "shape[*]": 3, "units[*]": 2, "layout.input": "contiguous",
            "empty": False, **extra}
