"""Logistic losses: BCELoss, BCEWithLogitsLoss, SoftMarginLoss, MultiLabelSoftMarginLoss."""

from conformance.families.loss import reduction_loss
from conformance.numerics import loss as N
from conformance.numerics import loss_modes as NM
from conformance.spec import Regime, declare
from conformance.strategies import loss_binary as B
from conformance.strategies.loss import RARE

declare(reduction_loss(
    "BCELoss", "binary_cross_entropy", cases=B.bce_cases, invalid=B.INVALID_BCE, buffers=("weight",),
    tolerance=N.BCE_TOLERANCE, smooth_at=B.smooth_bce,
    regimes=(Regime("input exactly 0 or 1", N.bce_at_clamp, {"input.exact 0 and 1": RARE},
                    "log 0 clamps at -100; the backward divides by max(x·(1 - x), 1e-12)."),
             B.weights_not_positive("weight")),
    notes="ℓ = -w·(t·max(log x, -100) + (1 - t)·max(log(1 - x), -100)); input and target must lie in [0, 1] "
          "and have one shape; the weight broadcasts to it (not differentiable in torch). dℓ/dx is torch's "
          "w·(x - t)/max(x·(1 - x), 1e-12) (the documented 'linear backward': the derivative wherever x·(1 - x) "
          ">= 1e-12, finite at 0 and 1), dℓ/dt = w·(max(log(1 - x), -100) - max(log x, -100)).",
))

declare(reduction_loss(
    "BCEWithLogitsLoss", "binary_cross_entropy_with_logits", cases=B.logits_cases, invalid=B.INVALID_LOGITS,
    buffers=("weight", "pos_weight"), tolerance=N.LOGITS_TOLERANCE, second_order_error=NM.bce_logits_second_order_error,
    regimes=(Regime("large logits", B.large_logits, {"input.scale": "large"},
                    "|x| from 20 to 1000, both signs: no overflow, no NaN."),
             Regime("pos_weight", lambda case: "pos_weight" in case.inputs, {"pos_weight": True},
                    "pos_weight broadcast over the input (a (C,) vector along the last dim)."),
             B.weights_not_positive("weight", "pos_weight")),
    notes="ℓ = -w·(pw·t·log σ(x) + (1 - t)·log(1 - σ(x))) = w·(pw·t·softplus(-x) + (1 - t)·softplus(x)); weight "
          "and pos_weight broadcast to the input (not differentiable in torch); target must have the input's "
          "shape. dℓ/dx = w·((1 - t)·σ(x) - pw·t·σ(-x)), dℓ/dt = w·(pw·softplus(-x) - softplus(x)).",
))

declare(reduction_loss(
    "SoftMarginLoss", "soft_margin_loss", cases=B.soft_margin_cases, invalid=B.INVALID_SOFT_MARGIN,
    tolerance=N.SOFT_MARGIN_TOLERANCE,
    regimes=(Regime("large margins", N.soft_margin_overflows, {"input.large": RARE},
                    "-y·x beyond log(max): the true loss is ≈ -y·x, finite."),),
    notes="ℓ = log(1 + exp(-y·x)) with targets y = ±1 (torch does not check them), input and target broadcast; "
          "only the input's gradient is compared (the catalogue's). The reference evaluates softplus stably: the "
          "loss stays finite (≈ -y·x) where exp(-y·x) overflows.",
))

declare(reduction_loss(
    "MultiLabelSoftMarginLoss", "multilabel_soft_margin_loss", cases=B.mlsm_cases, invalid=B.INVALID_MLSM,
    buffers=("weight",), tolerance=N.MLSM_TOLERANCE,
    regimes=(Regime("large logits", B.large_logits, {"input.scale": "large"}), B.weights_not_positive("weight")),
    notes="ℓ_n = -(1/C)·Σ_c w_c·(t·log σ(x) + (1 - t)·log σ(-x)) over the last dim, reduced over the samples "
          "('mean' divides by N). Input (C) or (N, C); the weight is a (C,) buffer. dℓ/dt = -w·x/C, which torch "
          "evaluates as the difference of the two log-sigmoids (the bound carries their magnitudes).",
))
