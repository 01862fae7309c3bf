"""torch.nn.utils' gradient clipping: clip_grad_norm_, get_total_norm, clip_grads_with_norm_, clip_grad_value_
(template ``families.containers.gradient_utility``; references ``reference.clip``)."""

from conformance.families.containers import NORM_TOLERANCE, gradient_utility
from conformance.numerics import containers as N
from conformance.spec import Regime, declare
from conformance.strategies import grad_utils as SG

declare(gradient_utility(
    "clip_grad_norm_", cases=SG.clip_norm_cases, invalid=SG.invalid_clip_norm_cases, tolerance=NORM_TOLERANCE,
    comparators={"output": N.total_comparator}, regimes=SG.norm_regimes(clip=True),
    notes="Total norm T = ‖all gradient elements‖_p (NaN if any is NaN, inf if any is inf or T overflows the "
          "gradients' dtype); gradients multiplied by min(max_norm/(T + 1e-6), 1) in place (exactly 1 when "
          "max_norm clearly exceeds T). error_if_nonfinite=True with a non-finite T must raise (invalid cases). "
          "No gradient at all: T = torch.tensor(0.0) in the default dtype. The parameters' own values are not "
          "used; the 'empty list' form passes [] (the drawn tensors are not passed). Bounds: reference.clip's "
          "analysis of T (two norm levels) and of the coefficient.",
))

declare(gradient_utility(
    "get_total_norm", cases=SG.total_norm_cases, invalid=SG.invalid_total_norm_cases, tolerance=NORM_TOLERANCE,
    comparators={"output": N.total_comparator}, regimes=SG.norm_regimes(clip=False),
    notes="T = ‖all elements of the tensors‖_p, returned in their dtype (inf beyond its range); the string 'inf' "
          "is the infinity norm; NaN anywhere gives NaN, an infinite element inf; error_if_nonfinite=True with a "
          "non-finite T must raise (invalid cases). No tensor at all: torch.tensor(0.0) (float32 or the case "
          "dtype accepted). Tensors in any layout, empty ones included (norm 0).",
))

declare(gradient_utility(
    "clip_grads_with_norm_", cases=SG.clip_with_norm_cases, invalid=SG.invalid_clip_with_norm_cases,
    tolerance=NORM_TOLERANCE,
    regimes=(
        Regime("total_norm given as the gradients' norm", lambda c: c.params["max_norm"] < N.used_total(c),
               {"total_norm": "the gradients' norm", "max_norm": "below", "form": "list", "grad0.ndim": 1,
                "grad0.empty": False}),
        Regime("coefficient clamped to 1", lambda c: N.coefficient(c) == 1.0,
               {"total_norm": "given", "max_norm": "above"},
               "max_norm above total_norm + 1e-6: the gradients must be unchanged bit for bit"),
        Regime("total_norm = 0", lambda c: float(c.inputs["total_norm"]) == 0, {"total_norm": "zero"},
               "the coefficient max_norm / 1e-6, clamped to 1 unless max_norm < 1e-6"),
        Regime("negative total_norm", lambda c: float(c.inputs["total_norm"]) < 0,
               {"total_norm": "negative", "max_norm": "above", "form": "list"},
               "the documented formula gives a negative coefficient: gradients flip sign"),
        Regime("NaN total_norm", lambda c: N.coefficient(c) != N.coefficient(c), {"total_norm": "nan", "form": "list"},
               "the coefficient is NaN and so is every clipped gradient"),
        Regime("inf total_norm", lambda c: float(c.inputs["total_norm"]) == float("inf"),
               {"total_norm": "inf", "form": "list"}, "coefficient 0: finite gradients become 0, infinite ones NaN"),
        Regime("max_norm = 0", lambda c: c.params["max_norm"] == 0, {"max_norm": "zero", "total_norm": "given"}),
        Regime("some parameters without a gradient", lambda c: len(N.grad_names(c)) < c.params["count"],
               {"form": "list", "parameters": 4, "grad*.present": False}),
        Regime("no gradients", lambda c: c.params["form"] == "no gradients", {"form": "no gradients"}),
        Regime("non-contiguous gradients", lambda c: any(v.kind != "contiguous" for v in c.layouts.values()),
               {"form": "list", "layout.grad0": "strided", "grad*.ndim": 2, "grad*.empty": False}),
        Regime("foreach=True", lambda c: c.params["foreach"] is True, {"foreach": True}),
        Regime("foreach=False", lambda c: c.params["foreach"] is False, {"foreach": False}),
    ),
    notes="Every existing gradient times c = min(max_norm / (total_norm + 1e-6), 1) in place, for the total_norm "
          "given (a 0-d tensor in the gradients' dtype, any value: a negative one gives a negative c, NaN gives NaN "
          "gradients, inf gives c = 0 and inf·0 = NaN); the coefficient is computed in total_norm's dtype. Returns "
          "None. A total_norm that is not a tensor must raise (invalid cases: torch.clamp of a Python float).",
))

declare(gradient_utility(
    "clip_grad_value_", cases=SG.clip_value_cases, comparators={"state.*": N.clipped_value_comparator},
    regimes=(
        Regime("clip_value cuts", lambda c: any((abs(g) > c.params["clip_value"]).any() for g in N.grads(c)),
               {"clip_value": "cuts", "non-finite": "none", "form": "list", "grad0.empty": False, "tier": "float"}),
        Regime("clip_value above every gradient", lambda c: all(
            (abs(g[g == g]) < c.params["clip_value"]).all() for g in N.grads(c)),
               {"clip_value": "above every gradient", "non-finite": "none"}),
        Regime("clip_value = 0", lambda c: c.params["clip_value"] == 0, {"clip_value": "zero"},
               "every element becomes a zero (of either sign: IEEE max/min of ±0)"),
        Regime("negative clip_value", lambda c: c.params["clip_value"] < 0, {"clip_value": "negative"},
               "min > max: every element becomes clip_value (torch.clamp's rule)"),
        Regime("clip_value = inf", lambda c: c.params["clip_value"] == float("inf"), {"clip_value": "inf"}),
        Regime("NaN gradient", lambda c: any((g != g).any() for g in N.grads(c)),
               {"non-finite": "nan", "form": "list", "grad0.empty": False}, "NaN stays NaN"),
        Regime("infinite gradient", lambda c: any(abs(g).max(initial=0) == float("inf") for g in N.grads(c)),
               {"non-finite": "-inf", "form": "list", "grad0.empty": False}, "-inf becomes -clip_value"),
        Regime("some parameters without a gradient", lambda c: len(N.grad_names(c)) < c.params["count"],
               {"form": "list", "parameters": 4, "grad*.present": False}),
        Regime("single tensor", lambda c: c.params["form"] == "single tensor", {"form": "single tensor"}),
        Regime("non-contiguous gradients", lambda c: any(v.kind != "contiguous" for v in c.layouts.values()),
               {"form": "list", "layout.grad0": "strided", "grad*.ndim": 2, "grad*.empty": False}),
        Regime("foreach=True", lambda c: c.params["foreach"] is True, {"foreach": True}),
        Regime("foreach=False", lambda c: c.params["foreach"] is False, {"foreach": False}),
    ),
    notes="Every existing gradient clamped into [-clip_value, clip_value] in place (torch.clamp: NaN stays NaN; "
          "clip_value < 0 makes min > max and every element clip_value; inf changes nothing), compared bit for bit "
          "(a selection: clamping to clip_value rounded to the dtype is the same, no value of the dtype lies "
          "between the two). Returns None. No documented rule to enforce: no invalid cases.",
))
