"""Softmax, Softmin, LogSoftmax and Softmax2d, declared through the softmax template: error analyses
beside their references (``reference.softmax``) over the slice length K."""

from dataclasses import replace

from conformance.families.elementwise import softmax_like
from conformance.numerics import activation_modes as NM
from conformance.spec import Regime, declare
from conformance.strategies import elementwise as E
from reference import softmax as M

DIMS = ("dim: every dim, negative spellings, and None (deprecated, warns: dim 0 for 0-, 1- and 3-d inputs, else 1). "
        "Large inputs must not overflow (max shift). ")

declare(replace(softmax_like(
    "Softmax", M.softmax, M.softmax_error,
    notes=DIMS + "-inf entries give 0; a slice of all -inf, or holding NaN or +inf, gives NaN (IEEE: -inf - -inf).",
), second_order_error=NM.softmax_second_order_error))

declare(replace(softmax_like(
    "Softmin", M.softmin, M.softmin_error,
    notes=DIMS + "Softmax(-x): +inf entries give 0; a slice of all +inf, or holding NaN or -inf, gives NaN. Error "
                 "analysis: Softmax's on -x.",
), second_order_error=NM.softmax_second_order_error))

declare(softmax_like(
    "LogSoftmax", M.log_softmax, M.log_softmax_error,
    notes=DIMS + "(x - max) - log Σ exp(x - max): -inf entries give -inf (gradient g); a slice of all -inf, or "
                 "holding NaN or +inf, gives NaN. Error bound in the magnitude of x - max and max + log Σ (either "
                 "association conforms).",
))

declare(replace(softmax_like(
    "Softmax2d", M.softmax2d, M.softmax2d_error,
    cases=E.softmax2d_cases(), invalid_cases=E.softmax2d_cases(invalid=True),
    regimes=(*E.softmax_regimes()[:4],
             Regime("unbatched (C, H, W)", holds=lambda c: c.inputs["input"].ndim == 3, pins={"ndim": 3},
                    description="a 3-d input: softmax over dim 0"),
             Regime("empty input", holds=lambda c: c.inputs["input"].size == 0, pins={"empty": True},
                    description="a dim of size 0 (the channels included)"),
             Regime("one channel", holds=lambda c: c.inputs["input"].shape[-3] == 1,
                    pins={"shape[*]": 1, "empty": False}, description="C = 1: every probability is 1")),
    notes="Softmax over the channels, dim -3, of a (C, H, W) or (N, C, H, W) input; any other rank is invalid "
          "(ValueError). As Softmax otherwise: -inf entries give 0; a channel slice of all -inf, or holding NaN or "
          "+inf, gives NaN; large inputs must not overflow.",
), second_order_error=NM.softmax_second_order_error))
