"""Dropout layers: conditional references given the backend's mask, statistics of the masks
(``conformance.families.dropout``)."""

from conformance.families.dropout import dropout
from conformance.spec import Regime, declare
from conformance.strategies.dropout import Form, Invalid, p_outside
from reference import functional as RF

declare(dropout(
    "Dropout", RF.dropout, kind="element",
    notes="Train mode keeps each element with probability 1 - p and scales by 1/(1 - p) (torch rounds 1/(1 - p) to "
          "the dtype, then multiplies: two roundings). p = 0 and eval mode are the identity; p = 1 gives input·0 (NaN "
          "for ±inf/NaN inputs; 0 is accepted there too). The gradient uses the forward's mask and scale. The mask is "
          "read as the output's non-zero elements (random cases draw non-zero finite inputs). Masks are tested for "
          "the drop rate and for independent samples, channels and consecutive elements.",
))

declare(dropout(
    "Dropout1d", RF.dropout1d, kind="channel1d", forms=(Form("(N, C, L)", 3, 2), Form("(C, L)", 2, 1)), edges=True,
    invalid=(p_outside(3), Invalid("input neither 2-d nor 3-d", (0.5, 0.0), ((4,), (2, 3, 2, 2), ())),
             Invalid("input neither 2-d nor 3-d, evaluation", (0.5,), ((4,), (2, 3, 2, 2)), train=False)),
    notes="Train mode keeps each channel (input[i, j] of (N, C, L), input[j] of an unbatched (C, L)) with probability "
          "1 - p and scales it by 1/(1 - p), as Dropout does per element; a mask that is not constant over a channel "
          "is a mismatch. p = 0, eval mode and an empty input are the identity; p = 1 gives input·0. Inputs of any "
          "other rank are invalid in every mode (torch raises RuntimeError).",
))

declare(dropout(
    "Dropout2d", RF.dropout2d, kind="channel2d", forms=(Form("(N, C, H, W)", 4, 2), Form("(C, H, W)", 3, 1)),
    notes="Train mode keeps each channel with probability 1 - p and scales by 1/(1 - p) (two roundings). Units are the "
          "first two dims of the input (a whole channel of a batched input); a 3-d input is treated as (N, C, L) "
          "(torch warns). p = 0 and eval mode are the identity; p = 1 gives input·0 (0 accepted at ±inf/NaN).",
))

declare(dropout(
    "Dropout3d", RF.dropout3d, kind="channel3d", forms=(Form("(N, C, D, H, W)", 5, 2), Form("(C, D, H, W)", 4, 1)),
    notes="Train mode keeps each channel with probability 1 - p and scales by 1/(1 - p) (two roundings). Units are "
          "(N, C) of a batched input and C of an unbatched (C, D, H, W) input. p = 0 and eval mode are the identity; "
          "p = 1 gives input·0 (0 accepted at ±inf/NaN).",
))

declare(dropout(
    "AlphaDropout", RF.alpha_dropout, kind="alpha", tiers=("float",), edges=True,
    regimes=(Regime("0-d input", lambda c: c.inputs["input"].ndim == 0, {"ndim": 0, "train": True, "p": 0.5}),),
    notes="Train mode keeps each element with probability 1 - p as a·x + b and sets the others to a·α' + b, "
          "α' = -1.7580993408473766 (SELU's negative saturation), a = ((1 - p)(1 + p·α'²))^(-1/2), b = -a·α'·p, as "
          "torch computes them: zero mean and unit variance are kept. The gradient is a where kept, 0 where "
          "dropped. p = 0, eval mode and empty inputs are the identity (bit for bit); p = 1 gives input·0 (torch's "
          "special case; the limit of the dropped value; 0 accepted at ±inf/NaN). The mask is read as the output's "
          "elements other than the dropped value (random inputs stay away from -α'). inplace=True must overwrite "
          "the input (documented).",
))

declare(dropout(
    "FeatureAlphaDropout", RF.feature_alpha_dropout, kind="feature-alpha", tiers=("float",), edges=True,
    forms=(Form("(N, C, D, H, W)", 5, 2), Form("(C, D, H, W)", 4, 1)),
    invalid=(p_outside(5), Invalid("fewer than 2 dims in training", (0.5, 0.25), ((4,), ()))),
    notes="Alpha dropout (a·x + b kept, a·α' + b dropped, see AlphaDropout) of whole channels: input[i, j] of "
          "(N, C, D, H, W), input[j] of the documented unbatched (C, D, H, W). p = 0, eval mode and empty inputs are "
          "the identity; p = 1 gives input·0. In training with 0 < p < 1 an input of fewer than 2 dims is invalid "
          "(torch raises). inplace=True must overwrite the input (documented).",
))
