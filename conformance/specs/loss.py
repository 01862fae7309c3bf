"""Regression losses: MSELoss, L1Loss, SmoothL1Loss, HuberLoss, KLDivLoss (template ``families.loss``)."""

import numpy as np

from backends.base import Case
from conformance.dtypes import DTYPES
from conformance.families.loss import reduction_loss
from conformance.numerics import loss as N
from conformance.spec import Regime, declare
from conformance.strategies import loss as L

# The vjp2 mode's central differences step x + s·v with |s| <= 2^-20 along directions of
# |v| <= 8·2^ceil(log2(|x| + 2^-10)) < 16·(|x| + 2^-10) (``torch_run.direction_values``: normals on
# 8 bits, beyond 8σ with probability 1e-15 per element), so d = x - t moves by at most
# 2^-20·16·(|x| + |t| + 2^-9) = 2^-16·(|x| + |t| + 2^-9).
STEP_REACH = 2.0**-16


def smooth_regression_at(case: Case) -> bool:
    """The vjp2 domain of L1Loss, SmoothL1Loss and HuberLoss: every d = x - t is beyond the central
    differences' reach (``STEP_REACH``) of the kinks of the second derivative, d = 0 (L1, β = 0) and
    |d| = w (w = β or δ, where the quadratic branch meets the linear one), and |d| is farther from w
    than torch's rounding of d (and of w) in the case's dtype, u·(|d| + w): torch picks the branch on
    its rounded d (bfloat16: x - t = 1.99609375 rounds to β = 2, the linear branch, whose second
    derivative is 0 where the exact d's is 1/β)."""
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    t = np.asarray(case.inputs["target"], dtype=np.float64)
    with np.errstate(all="ignore"):
        d = x - t
        reach = STEP_REACH * (np.abs(x) + np.abs(t) + 2.0**-9)
        if not np.all(np.abs(d) > reach):
            return False
        if case.op == "L1Loss":
            return True
        w = float(case.params.get("beta", case.params.get("delta", 1.0)))
        u = DTYPES[case.dtype].unit_roundoff
        return bool(np.all(np.abs(np.abs(d) - w) > reach + u * (np.abs(d) + w)))

declare(reduction_loss(
    "MSELoss", "mse_loss", cases=L.regression_cases("MSELoss"), invalid=L.invalid_regression_cases("MSELoss"),
    tolerance=N.MSE_TOLERANCE, regimes=(L.BROADCAST_REGIME,),
    notes="ℓ = (x - t)². " + L.REGRESSION_NOTES + " Exact tier: integer values (power-of-two sizes for 'mean'), "
          "compared bit for bit.",
))

declare(reduction_loss(
    "L1Loss", "l1_loss", cases=L.regression_cases("L1Loss"), invalid=L.invalid_regression_cases("L1Loss"),
    tolerance=N.L1_TOLERANCE, regimes=(L.BROADCAST_REGIME, L.kink_regime()), smooth_at=smooth_regression_at,
    notes="ℓ = |x - t|. " + L.REGRESSION_NOTES + " The gradient at x = t is 0 (sign(0)).",
))

declare(reduction_loss(
    "SmoothL1Loss", "smooth_l1_loss", cases=L.regression_cases("SmoothL1Loss"),
    invalid=L.invalid_regression_cases("SmoothL1Loss"), errors=N.smooth_l1_errors, length=N.broadcast_length,
    smooth_at=smooth_regression_at,
    regimes=(L.BROADCAST_REGIME, L.kink_regime(beta=1.0),
             Regime("beta = 0 (L1)", lambda case: case.params.get("beta", 1.0) == 0, {"beta": 0.0}),
             Regime("|input - target| = beta (branch boundary)", L.at_branch_boundary,
                    L.branch_boundary_pins("beta", 0.5))),
    notes="ℓ = 0.5·d²/β where |d| < β, else |d| - 0.5·β (d = x - t); β = 0 is the L1 loss and β < 0 is rejected. "
          "The gradient at |d| = β is sign(d), at d = 0 it is 0. " + L.REGRESSION_NOTES,
))

declare(reduction_loss(
    "HuberLoss", "huber_loss", cases=L.regression_cases("HuberLoss"), invalid=L.invalid_regression_cases("HuberLoss"),
    errors=N.huber_errors, length=N.broadcast_length, legacy=False, smooth_at=smooth_regression_at,
    regimes=(L.BROADCAST_REGIME, L.kink_regime(delta=1.0),
             Regime("|input - target| = delta (branch boundary)", L.at_branch_boundary,
                    L.branch_boundary_pins("delta", 0.5),
                    "Both branches meet with equal value and slope δ·sign(d): either side is right."),
             Regime("delta != 1 (not SmoothL1)", lambda case: case.params["delta"] != 1.0, {"delta": 2.0},
                    "Huber = δ·SmoothL1(β = δ): they agree at δ = 1 only.")),
    notes="ℓ = 0.5·d² where |d| < δ, else δ·(|d| - 0.5·δ) (d = x - t), so Huber(δ) = δ·SmoothL1(β = δ); the "
          "derivative d or δ·sign(d) is continuous (0 at d = 0). δ <= 0 raises. reduction 'none', 'sum', 'mean' "
          "(no deprecated flags); input and target broadcast (torch warns), gradients summed over broadcast dims.",
))

declare(reduction_loss(
    "KLDivLoss", "kl_div", cases=L.kl_cases, invalid=L.invalid_kl_cases, errors=N.kl_errors, length=N.kl_length,
    smooth_at=lambda case: bool(case.params.get("log_target") or (case.inputs["target"] > 0).all()),
    regimes=(Regime("log_target", lambda case: bool(case.params.get("log_target")), {"log_target": True}),
             Regime("batchmean", lambda case: L.kl_reduction(case) == "batchmean",
                    {"reduction spelling": "reduction", "reduction": "batchmean"}),
             Regime("zero targets", lambda case: not case.params.get("log_target") and
                    bool((case.inputs["target"] == 0).any()),
                    {"log_target": False, "target.kind": "with zeros", "ndim": 2, "shape[0]": 4, "shape[1]": 4})),
    notes="ℓ = t·(log t - x) with 0·log 0 = 0 (torch: xlogy(t, t) - t·x), or exp(t)·(t - x) with log_target. "
          "'batchmean' divides the sum by input.shape[0] (a 0-d input: the sum); 'mean' by every element. "
          "dℓ/dt = log t + 1 - x is NaN at t = 0 (t·log t has no derivative there; torch gives NaN too). "
          "The deprecated flags map as for every loss (reduce=False → 'none', size_average=False → 'sum').",
))
