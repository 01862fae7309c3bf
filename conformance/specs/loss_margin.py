"""Margin losses: MarginRankingLoss, HingeEmbeddingLoss, MultiLabelMarginLoss, MultiMarginLoss,
CosineEmbeddingLoss."""

from conformance.families.loss import reduction_loss
from conformance.numerics import loss as N
from conformance.numerics import loss_modes as NM
from conformance.spec import Regime, declare
from conformance.strategies import loss_margin as M
from conformance.strategies.loss import RARE

declare(reduction_loss(
    "MarginRankingLoss", "margin_ranking_loss", cases=M.ranking_cases, invalid=M.invalid_ranking_cases,
    args=("input1", "input2", "target"), tolerance=N.RANKING_TOLERANCE, smooth_at=M.smooth_ranking,
    regimes=(Regime("at the kink", M.ranking_at_kink, {"at the kink": 1.0},
                    "x1 - x2 = y·margin: clamp_min passes the gradient there."),
             Regime("negative margin", M.negative_margin, {"margin": -1.0})),
    notes="ℓ = max(0, -y·(x1 - x2) + margin); the three inputs must have one rank and broadcast. The gradient "
          "at the kink (z = 0) is the active side's (torch's clamp_min passes it at equality); y is "
          "differentiable (dℓ/dy = -(x1 - x2)). Exact tier: integers and integer margins, bit for bit.",
))

declare(reduction_loss(
    "HingeEmbeddingLoss", "hinge_embedding_loss", cases=M.hinge_cases, invalid=M.invalid_hinge_cases,
    tolerance=N.HINGE_TOLERANCE, smooth_at=M.smooth_hinge,
    regimes=(Regime("at the kink", M.hinge_at_kink, {"at the kink": 1.0},
                    "x = margin with y = -1: clamp_min passes the gradient (-1) there."),
             Regime("negative margin", M.negative_margin, {"margin": -1.0})),
    notes="ℓ = x where y = 1, max(0, margin - x) where y = -1 (targets ±1; torch adds both terms for any other "
          "value). The gradient at x = margin (y = -1) is -1: clamp_min passes it at equality. The target is not "
          "differentiable.",
))

declare(reduction_loss(
    "MultiLabelMarginLoss", "multilabel_margin_loss", cases=M.mlm_cases, invalid=M.invalid_mlm_cases,
    tolerance=N.MLM_TOLERANCE, smooth_at=M.smooth_mlm,
    regimes=(Regime("padded -1 targets", lambda case: bool((case.inputs["target"] == -1).any()), {"padded": True},
                    "Only the labels before the first -1 count; values after it do not."),
             Regime("repeated labels", M.repeated_labels, {"labels": "repeated", "classes": 4, "N": 8}),
             Regime("at the kink", M.mlm_pairs_at_kink,
                    {"at the kink": 0.25, "classes": 4, "unbatched (C)": False, "padded": True},
                    "x[y] - x[i] = 1: the kernel tests z > 0, so no gradient flows there.")),
    notes="ℓ_n = Σ_j Σ_{i not a label} max(0, 1 - (x[y_j] - x[i])) / C over the labels y_j before the first -1 "
          "(a repeated label counts again). Input (C) or (N, C), target of the same shape; torch requires every "
          "target entry, padding included, in [-1, C). No gradient at z = 0 (the kernel tests z > 0).",
))

declare(reduction_loss(
    "MultiMarginLoss", "multi_margin_loss", cases=M.mm_cases, invalid=M.invalid_mm_cases, buffers=("weight",),
    tolerance=N.MM_TOLERANCE, smooth_at=M.smooth_mm,
    regimes=(Regime("p = 2", lambda case: case.params["p"] == 2, {"p": 2}),
             Regime("weights with zeros/negatives", M.mm_weights_not_positive,
                    {"weight": True, "weight.kind": "with negatives"}),
             Regime("at the kink", M.mm_z_at_kink, {"at the kink": 1.0, "classes": 3, "p": 1},
                    "x[y] - x[i] = margin: the kernel tests z > 0, so no gradient flows there.")),
    notes="ℓ_n = Σ_{i != y} w[y]·max(0, margin - x[y] + x[i])^p / C (the weight multiplies the power, as the "
          "docs' formula reads), p ∈ {1, 2} (anything else raises), a margin of either sign, weights with zeros "
          "and negatives accepted. Input (C) or (N, C). No gradient at z = 0 (the kernel tests z > 0).",
))

declare(reduction_loss(
    "CosineEmbeddingLoss", "cosine_embedding_loss", cases=M.cosine_cases, invalid=M.invalid_cosine_cases,
    args=("input1", "input2", "target"), tolerance=N.COSINE_TOLERANCE, smooth_at=M.smooth_cosine,
    second_order_error=NM.cosine_embedding_second_order_error,
    regimes=(Regime("zero vectors", N.cosine_zero_vector, {"zero vectors": RARE},
                    "A zero vector: cos = 0/√(ε·(|x2|² + ε)) = 0, with ε = 1e-12 added to each squared norm."),
             Regime("negative margin", M.negative_margin, {"margin": -0.5}),
             Regime("large norms", M.large_norms, {"large norms": RARE},
                    "|x1|²·|x2|² beyond the float16 range: torch's √(m1·m2) overflows there.")),
    notes="ℓ = 1 - cos(x1, x2) where y = 1, max(0, cos - margin) where y = -1 (0 for any other y); cos = "
          "Σx1·x2/√((Σx1² + ε)(Σx2² + ε)) over the last dim with ε = 1e-12 (torch's EPSILON), so a zero vector "
          "has cosine 0 and a finite, large gradient. Inputs (N, D) with y (N), or (D) with y (); y is not "
          "differentiable. The gradient at cos = margin (y = -1) passes (clamp_min).",
))
