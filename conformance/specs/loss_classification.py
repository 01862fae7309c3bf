"""Classification losses: CrossEntropyLoss, NLLLoss, NLLLoss2d."""

from conformance.families.loss import reduction_loss
from conformance.numerics import loss as N
from conformance.numerics import loss_modes as NM
from conformance.spec import Regime, declare
from conformance.strategies import loss_classification as C
from conformance.strategies.loss import RARE

declare(reduction_loss(
    "CrossEntropyLoss", "cross_entropy", cases=C.ce_cases, invalid=C.invalid_ce_cases, buffers=("weight",),
    tolerance=N.CE_TOLERANCE, second_order_error=NM.ce_second_order_error,
    regimes=(*C.ignore_regimes("target form", "class indices"),
             Regime("weights with zeros/negatives", C.weights_not_positive,
                    {"weight": True, "weight.kind": "with negatives"},
                    "Negative class weights (torch accepts them): 'mean' divides by a Σ w[target] that cancels."),
             Regime("total weight <= 0", C.total_weight_not_positive,
                    {"target form": "class indices", "ignore_index": "default -100", "ignored fraction": 0.0,
                     "weight": True, "weight.kind": "all negative"},
                    "Every class weight negative: 'mean' = Σ w·ℓ / Σ w[target] with a negative normaliser.")),
    notes="Targets become (1 - ε)·target + ε/C (one-hot for class indices). 'mean' divides by the sum of "
          "w[target] over non-ignored positions (class indices; every target ignored → 0/0 = NaN, and no gradient) "
          "or by the number of positions (probabilities). Class weights may be zero or negative, and their sum "
          "may be negative; the strategy avoids an exact cancellation to 0 of non-zero weights (a non-zero sum over "
          "0: no defined gradient). ignore_index applies to class indices only (a negative one has no effect on "
          "probabilities; torch rejects a non-negative one there). label_smoothing must lie in [0, 1] "
          "(documented); torch 2.13 accepts negative values and treats them as 0, which the invalid search reports.",
))

declare(reduction_loss(
    "NLLLoss", "nll_loss", cases=C.nll_cases("NLLLoss"), invalid=C.invalid_nll_cases("NLLLoss"), buffers=("weight",),
    tolerance=N.NLL_TOLERANCE,
    regimes=(*C.ignore_regimes(),
             Regime("ignore_index above the classes, present", C.ignore_index_above_classes,
                    {"ignore_index": "above the classes", "ignored fraction": 0.3}),
             Regime("weights with zeros/negatives", C.weights_not_positive,
                    {"weight": True, "weight.kind": "with negatives"},
                    "Negative class weights (torch accepts them): 'mean' divides by a W that may be small.")),
    notes="ℓ = -w[t]·x[t] per position, 0 where t = ignore_index (any value: a class, negative, or above the "
          "classes); 'mean' divides by Σ w[t] over the counted positions (every target ignored, or a zero weight "
          "sum: NaN). Negative and zero class weights are accepted. A counted target outside [0, C) raises "
          "IndexError on the CPU and is a device-side assert (a crash) on CUDA. Scores (C), (N, C) or "
          "(N, C, d1, ..., dK). Exact tier: small integer scores and weights, every sum exact, 'mean' rounds once.",
))

declare(reduction_loss(
    "NLLLoss2d", "nll_loss", cases=C.nll_cases("NLLLoss2d"), invalid=C.invalid_nll_cases("NLLLoss2d"),
    buffers=("weight",), tolerance=N.NLL_TOLERANCE, dims=2,
    regimes=(*C.ignore_regimes(),
             Regime("channels_last input", N.nll_4d_dense_non_contiguous_input,
                    {"layout.input": "channels_last", "dense non-contiguous 4-D input": RARE, "classes": 3,
                     "N, H, W[0]": 2, "N, H, W[1]": 2, "N, H, W[2]": 2},
                    "A dense non-contiguous 4-D input: torch's backward rejects its grad_input (known).")),
    notes="ℓ = -w[t]·x[t] per position, 0 where t = ignore_index (any value: a class, negative, or above the "
          "classes); 'mean' divides by Σ w[t] over the counted positions (every target ignored, or a zero weight "
          "sum: NaN). Negative and zero class weights are accepted. A counted target outside [0, C) raises "
          "IndexError on the CPU and is a device-side assert (a crash) on CUDA. torch 2.13 still defines "
          "torch.nn.NLLLoss2d, a deprecated subclass of NLLLoss (identical semantics); it is declared on its own, "
          "on (N, C, H, W) scores and (N, H, W) targets.",
))
