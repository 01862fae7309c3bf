"""The dropout family's template: a declaration's data in, a ``LayerSpec`` out.

``dropout(name, fn, kind=..., forms=..., ...)`` declares ``torch.nn.<name>`` computing ``fn``, a
function of ``reference.functional`` given its keep mask (``dropout``, ``dropout1d``...,
``alpha_dropout``, ``feature_alpha_dropout``; the registered VJP is the backward). It derives:

- the cases (``strategies.dropout.cases``: p, train, inplace, the input ``forms`` (None: any rank
  up to 4), layouts and values) and the invalid cases (``invalid``: one ``Invalid`` per rule);
- the conditional reference: the output and gradient for the mask the backend reports (read as
  the output's non-zero elements, or for alpha dropout as its elements other than the dropped
  value), the canonical mask as the case's choice; the identity and input·0 at the deterministic
  points, which live in ``fn``;
- the statistics of the masks (``numerics.dropout.randomness``: rate and independence of units);
- the tolerances and comparators (copies bit for bit, dropout's two roundings, alpha dropout's
  analysis, the missing in-place write);
- the regimes every dropout layer has (p = 0, p = 1, eval, random in place, non-finite inputs at
  p = 1, rare drops; with ``forms``: the unbatched form and many channels), plus ``regimes``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from backends.base import Case, Result
from conformance import strategies as S
from conformance.numerics import dropout as N
from conformance.spec import LayerSpec, Pullback, Regime, TorchMapping
from conformance.strategies import dropout as D
from reference.registry import FUNCTIONS

FAMILY = "dropout"


def conditional_reference(fn: Callable[..., Any]) -> Callable[[Case], tuple[Result, Pullback]]:
    """The reference of a layer computing the registered ``fn``: at a random point with the mask
    the backend reported (all kept before a report), returned in canonical form as the choice
    "mask"; elsewhere ``fn`` itself (identity, input·0, or the error of an invalid case)."""
    entry = FUNCTIONS[fn.__name__]
    if entry.forward is not fn or entry.vjp is None:
        raise ValueError(f"{fn.__name__} is not registered in reference.functional with a VJP")

    def reference(case: Case) -> tuple[Result, Pullback]:
        x = case.inputs["input"]
        kwargs: dict[str, Any] = {"p": case.params["p"], "training": case.train, "inplace": case.params["inplace"]}
        choices = {}
        if D.is_random(case):
            kwargs["mask"] = N.reported_keep(case)
            choices["mask"] = N.canonical_keep(case, kwargs["mask"])
        result = Result(outputs={"output": fn(x, **kwargs)}, choices=choices)
        return result, lambda cot: entry.vjp(cot["output"], x, **kwargs)

    return reference


def common_regimes(forms: Sequence[D.Form] | None, edges: bool) -> tuple[Regime, ...]:
    """The corners of every dropout layer; with ``forms`` (batched first, then unbatched), the
    unbatched form and many channels. (``edges``: the newer declarations also pin the spatial
    sizes of the non-finite corner, so that an unbatched (C, L) input holds three elements.)"""
    sized = {"spatial[*]": 2} if edges else {}
    common = (
        Regime("p = 0", lambda c: c.params["p"] == 0.0, {"p": 0.0, "train": True}, "identity in training mode"),
        Regime("p = 1", lambda c: c.params["p"] == 1.0 and c.train, {"p": 1.0, "train": True},
               "everything dropped (input·0)"),
        Regime("eval mode", lambda c: not c.train, {"train": False, "p": 0.5}, "identity"),
        Regime("random, in place", lambda c: c.params["inplace"] and c.train and 0 < c.params["p"] < 1,
               {"inplace": True, "train": True, "p": 0.5}, "the mask applied to the input itself"),
        Regime("non-finite at p = 1", lambda c: c.params["p"] == 1.0 and c.train and D.has_nonfinite(c),
               D.regime_pins(p=1.0, train=True, **sized), "±inf and NaN inputs when everything is dropped"),
        Regime("rare drop", lambda c: c.params["p"] == 0.1 and c.train, {"p": 0.1, "train": True, "tier": "float"},
               "p small: few units dropped"),
    )
    if forms is not None:
        batched, unbatched = forms
        common += (
            Regime("unbatched", lambda c: c.inputs["input"].ndim == unbatched.rank,
                   {"input form": unbatched, "p": 0.5, "train": True}, f"an unbatched {unbatched.label} input"),
            Regime("many channels", lambda c: c.inputs["input"].ndim == batched.rank
                   and c.inputs["input"].shape[1] >= 8,
                   {"input form": batched, "units[0]": 2, "units[1]": 16, "p": 0.5, "train": True},
                   "16 channels per sample"),
        )
    # The empty-input corner has its own regime (declarations without it never draw "empty").
    return tuple(replace(r, pins={"empty": False, **r.pins}) for r in common)


def edge_regimes() -> tuple[Regime, ...]:
    """Corners of the newer declarations: frequent drops, non-finite inputs of the identity, an
    empty input."""
    return (
        Regime("frequent drop", lambda c: c.params["p"] == 0.9 and c.train,
               {"p": 0.9, "train": True, "tier": "float", "empty": False}, "p large: few units kept"),
        Regime("non-finite, identity", lambda c: not c.train and D.has_nonfinite(c),
               D.regime_pins(train=False, p=0.5, **{"spatial[*]": 2}), "±inf and NaN inputs in evaluation"),
        Regime("empty input", lambda c: c.inputs["input"].size == 0,
               {"empty": True, "train": True, "p": 0.5, "ndim": 2}, "a zero-size dim: nothing drawn, identity"),
    )


def dropout(name: str, fn: Callable[..., Any], *, kind: str, forms: Sequence[D.Form] | None = None,
            tiers: Sequence[str] = S.TIERS, invalid: Sequence[D.Invalid] = (), edges: bool = False,
            regimes: Sequence[Regime] = (), notes: str = "") -> LayerSpec:
    """A declaration of the dropout layer ``torch.nn.<name>`` computing ``fn`` (see the module
    docstring). ``kind`` is the declaration's fact (element, channel2d, alpha...); ``forms`` the
    input forms of a channel layer (batched, unbatched); ``tiers``; ``invalid`` the rules (p
    outside [0, 1] by default); ``edges``: the newer corner regimes (and empty inputs)."""
    alpha = fn.__name__ in ("alpha_dropout", "feature_alpha_dropout")
    rank = forms[0].rank if forms else 2
    tolerance = N.ALPHA_TOLERANCE if alpha else N.DROPOUT_TOLERANCE
    comparators = {"output": N.deterministic_exact, "grad.input": N.deterministic_exact,
                   "state.input": N.inplace_state, **({"random.mask": N.alpha_mask} if alpha else {})}
    return LayerSpec(
        name=name, family=FAMILY, kind=kind,
        cases=D.cases(name, forms, tiers, alpha=alpha, empty=edges),
        reference=conditional_reference(fn),
        torch=TorchMapping(f"torch.nn.{name}", inplace="input"),
        tolerance={"output": tolerance, "state.input": tolerance, "grad.input": tolerance, "random.*": N.EXACT},
        comparators=comparators,
        invalid_cases=D.invalid_cases(name, tuple(invalid) or (D.p_outside(rank),)),
        randomness=N.randomness(name),
        regimes=(*common_regimes(forms, edges), *(edge_regimes() if edges else ()), *regimes),
        smooth_at=lambda case: bool(np.isfinite(case.inputs["input"]).all()),
        notes=notes,
    )
