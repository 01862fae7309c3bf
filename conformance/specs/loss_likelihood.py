"""Likelihood losses: GaussianNLLLoss, PoissonNLLLoss (template ``families.loss``)."""

from conformance.families.loss import reduction_loss
from conformance.numerics import loss as N
from conformance.spec import Regime, declare
from conformance.strategies import loss_likelihood as G

declare(reduction_loss(
    "GaussianNLLLoss", "gaussian_nll_loss", cases=G.gaussian_cases, invalid=G.invalid_gaussian_cases,
    args=("input", "target", "var"), errors=N.gaussian_errors, length=N.gaussian_length, legacy=False,
    smooth_at=lambda case: not G.var_clamped(case) and bool((G.var_margin(case) > 1e-3).all()),
    regimes=(Regime("var clamped at eps", G.var_clamped,
                    {"eps": 0.5, "var form": "same shape", "var.kind": "below eps", "ndim": 1},
                    "var < eps: the loss uses eps; var's gradient is the derivative at eps, passed through."),
             G.var_form("one dim 1"), G.var_form("last dim dropped"), G.var_form("python float"),
             Regime("full", lambda case: bool(case.params["full"]), {"full": True}, "The constant ½·log 2π added."),
             Regime("target broadcast (one dim 1)", G.target_broadcast,
                    {"target broadcast": True, "ndim": 2, "shape[*]": 3})),
    notes="ℓ = ½·(log max(var, eps) + (x - t)²/max(var, eps)) (+ ½·log 2π with full), reduced over the broadcast "
          "shape ('none', 'mean', 'sum'; no deprecated flags). var: the input's shape, with one dim 1 "
          "(homoscedastic along it), without the last dim (one variance per sample, unsqueezed), or a Python float; "
          "a negative var, a var of another shape or an unknown reduction raise ValueError. The target has the input's "
          "shape or one dim 1. The clamp is ignored by autograd (documented): var's gradient ½·(1/v - d²/v²) is "
          "evaluated at v = max(var, eps) and passed through, also where var < eps. input, target and a tensor var "
          "are differentiable; a float var is not.",
))

declare(reduction_loss(
    "PoissonNLLLoss", "poisson_nll_loss", cases=G.poisson_cases, invalid=G.invalid_poisson_cases,
    errors=N.poisson_errors, length=N.broadcast_length, smooth_at=G.poisson_smooth,
    regimes=(Regime("rate input (log_input=False)", lambda case: not case.params["log_input"], {"log_input": False}),
             Regime("full (Stirling term)", lambda case: bool(case.params["full"]), {"full": True},
                    "t·log t - t + ½·log(2πt) added where t > 1 (0 for t <= 1, a jump of -0.08 at t = 1)."),
             Regime("zero rates", lambda case: not case.params["log_input"] and bool((case.inputs["input"] == 0).any()),
                    {"log_input": False, "rates": "with zeros", "ndim": 1},
                    "x = 0: log(0 + eps); torch's float16 x + eps underflows to 0 for eps = 1e-8 (known)."),
             Regime("zero targets with full", N.poisson_full_zero_target, G.ZERO_TARGET_PINS,
                    "t = 0 with full=True: the Stirling term is masked; torch's target gradient is NaN (known).")),
    notes="ℓ = exp(x) - t·x (log_input, the default: the input is the log-rate) or x - t·log(x + eps) (the rate), "
          "plus with full the Stirling term t·log t - t + ½·log(2πt) where t > 1 only (as torch masks it at t <= 1); "
          "reduction and the deprecated size_average/reduce. Input and target broadcast; both are differentiable: "
          "dℓ/dt = -x or -log(x + eps), plus log t + 1/(2t) where t > 1 (0 below, t = 0 included).",
))
