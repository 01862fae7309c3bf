"""Piecewise activations and exponential-linear units, declared through the elementwise template.

Conventions: see ``reference.activation``; each declaration's notes state its own. Entries declared
before the edge corners existed keep their draws (``edges=False``)."""

from dataclasses import replace

from conformance.families.elementwise import elementwise
from conformance.numerics import elementwise as N
from conformance.spec import Regime, TorchMapping, declare
from conformance.strategies import elementwise as E
from reference import activation as A

declare(elementwise(
    "ReLU", A.relu, kinks=(0.0,), inplace=True, nan_slopes=(0.0, 1.0), edges=False,
    notes="Gradient 0 at the kink x = 0. NaN propagates; the gradient at NaN may be NaN, 0 or g (PyTorch: g). "
          "Bit-exact in every tier (selection only). inplace=True must mutate the input.",
))

declare(elementwise(
    "ReLU6", A.relu6, kinks=(0.0, 6.0), inplace=True, nan_slopes=(0.0, 1.0), edges=False,
    notes="min(max(x, 0), 6). Gradient 0 at both kinks x = 0 and x = 6. NaN propagates; the gradient at NaN may "
          "be NaN, 0 or g (PyTorch: g). Bit-exact in every tier.",
))

declare(elementwise(
    "Hardtanh", A.hardtanh, edges=False, inplace=True, nan_slopes=(0.0, 1.0),
    params={"range": E.Joint(("min_val", "max_val"), ((-1.0, 1.0), (-2.0, 3.0), (0.0, 6.0), (0.5, 0.515625),
                                                    (1.0, 1.0078125), (-32768.0, 32768.0), (-0.25, -0.125)))},
    kinks=lambda p: (p["min_val"], p["max_val"]),
    invalid={"min_val >= max_val": {"range": E.Joint(("min_val", "max_val"),
                                                   ((1.0, 1.0), (0.0, 0.0), (2.0, -2.0), (0.5, -0.5)))}},
    regimes=(Regime("narrow range", holds=lambda c: c.params["max_val"] - c.params["min_val"] < 0.01,
                    pins={"range": (1.0, 1.0078125), "tier": "float", "input.kind": "corner",
                          "input.corner": "at the kink"},
                    description="max_val - min_val one bfloat16 step, inputs at and around both bounds"),),
    notes="Gradient 0 at both boundaries x = min_val and x = max_val. min_val == max_val is invalid: the module "
          "asserts max_val > min_val (torch.nn.functional.hardtanh accepts it). NaN propagates; the gradient at NaN "
          "may be NaN, 0 or g (PyTorch: g). Bit-exact in every tier.",
))

declare(elementwise(
    "Threshold", A.threshold, params=E.threshold_params, kinks=lambda p: (p["threshold"],), inplace=True,
    nan_slopes=(0.0, 1.0), edges=False,
    notes="y = x if x > threshold else value: x == threshold gives value, with gradient 0. value above and below "
          "the threshold, 0 and -inf. NaN propagates (the documented formula read literally would give value). "
          "The gradient at NaN may be NaN, 0 or g (PyTorch: g). Bit-exact in every tier.",
))

declare(elementwise(
    "LeakyReLU", A.leaky_relu, kinks=(0.0,), inplace=True, edges=False,
    params={"negative_slope": E.PerTier(float=(0.01, 0.2, 0.5, 0.0, -0.5, -0.01, 1.0, 2.0, 0.3),
                                      exact=(0.5, 0.25, 0.0, -0.5, 1.0, 2.0, -2.0))},
    forward_only=E.inplace_negative("negative_slope"),
    tolerance=N.product_tolerance(lambda case: case.params["negative_slope"]),
    nan_slopes=lambda case: (1.0, case.params["negative_slope"]),
    invalid={"inplace with a negative slope, input requires grad": {"negative_slope": (-0.5, -0.01, -2.0),
                                                                    "inplace": True}},
    backward_rules=("inplace with a negative slope, input requires grad",),
    regimes=(Regime("negative slope", holds=lambda c: c.params["negative_slope"] < 0, pins={"negative_slope": -0.5},
                    description="a negative negative_slope (non-monotone)"),
             Regime("zero slope, infinite inputs", holds=lambda c: c.params["negative_slope"] == 0
                    and bool((abs(c.inputs["input"]) == float("inf")).any()),
                    pins={"negative_slope": 0.0, "tier": "float", "input.kind": "corner", "input.corner": "inf"},
                    description="negative_slope 0 at ±inf: 0·(-inf) must give the limit 0")),
    notes="y = x if x > 0 else negative_slope·x; the gradient at the kink x = 0 is the slope. Slopes negative, zero, "
          "above 1 and the non-representable default 0.01 (its rounding to the dtype is allowed). A zero slope gives "
          "0 at -inf (the limit). inplace with a negative slope is forward-only (its backward is refused: an invalid "
          "case when the input requires grad). The gradient at NaN may be NaN, g or slope·g (PyTorch: slope·g). "
          "Exact tier: power-of-two slopes, bit-exact.",
))

declare(elementwise(
    "PReLU", A.prelu, kinks=(0.0,), edges=False, cases=E.prelu_cases(), invalid_cases=E.prelu_cases(invalid=True),
    torch=TorchMapping("torch.nn.PReLU", parameters=("weight",)), tolerance=N.PRELU_TOLERANCE,
    nan_slopes=lambda case: (1.0, N.prelu_weight(case)), comparators={"grad.weight": N.prelu_weight_comparator},
    regimes=(Regime("rank below 2", holds=lambda c: c.inputs["input"].ndim < 2, pins={"ndim": 1},
                    description="0-d and 1-d inputs: no channel dim, num_parameters must be 1"),
             Regime("per-channel weights", holds=lambda c: c.params["num_parameters"] > 1,
                    pins={"per channel": True, "ndim": 3, "shape[1]": 3},
                    description="num_parameters = C > 1, weights broadcast along dim 1")),
    notes="y = x if x > 0 else w[c]·x, c the channel (dim 1). Below rank 2 there is no channel dim (PyTorch: the "
          "channel count is 1) and num_parameters must be 1; any count other than 1 or C is invalid. The weight is "
          "an input (init only sets its first value). Gradient at the kink x = 0: the weight. A zero weight gives 0 "
          "at -inf (the limit). At NaN inputs the input gradient may be NaN, g or w·g (PyTorch: w·g) and a weight "
          "gradient NaN or the sum without the NaN elements (PyTorch: NaN). dL/dw sums g·x over x <= 0: bit-exact in "
          "the exact tier while Σ|g·x| <= 2^p.",
))

declare(elementwise(
    "Softshrink", A.softshrink, params={"lambd": (0.5, 0.0, 1.0, 0.25, 2.0, 1000.0)},
    kinks=lambda p: (-p["lambd"], p["lambd"]), tolerance="rounding", nan_slopes=(0.0, 1.0), edges=False,
    kink_regime=("at the kink", "inputs exactly at ±lambd and their neighbours"),
    invalid={"negative lambd": {"lambd": (-0.5, -1.0)}},
    notes="y = x - lambd if x > lambd, x + lambd if x < -lambd, else 0; gradient 0 at ±lambd. lambd 0 (the "
          "identity with gradient 0 at 0) and positive; negative lambd is invalid. One rounding (x ± lambd): bit-exact "
          "in the exact tier. The gradient at NaN may be NaN, 0 or g (PyTorch: g).",
))

declare(elementwise(
    "Hardshrink", A.hardshrink, params={"lambd": (0.5, 0.0, 1.0, 0.25, 2.0, 1000.0, -0.5)},
    kinks=lambda p: (-p["lambd"], p["lambd"]), nan_slopes=(0.0, 1.0),
    one_sided=lambda p: {-p["lambd"]: (1.0, 0.0), p["lambd"]: (0.0, 1.0)} if p["lambd"] >= 0 else {},
    regimes=(Regime("negative lambd", holds=lambda c: c.params["lambd"] < 0, pins={"lambd": -0.5},
                    description="lambd < 0 (accepted): no x lies in [-lambd, lambd], the identity"),),
    notes="y = 0 where -lambd <= x <= lambd, else x: selection, bit-exact in every tier. PyTorch's gradient is 0 at "
          "±lambd (the band's); undocumented, so either one-sided derivative is accepted there (at lambd = 0 PyTorch "
          "gives 0 at x = 0 where the function is the identity: 0 or 1). A negative lambd is accepted (no check, "
          "unlike Softshrink) and gives the identity. NaN propagates; the gradient at NaN may be NaN, 0 or g "
          "(PyTorch: g).",
))

declare(elementwise(
    "ELU", A.elu, params={"alpha": (1.0, 0.5, 2.0, 0.0, -1.0, -0.5, 0.1, 1.5)}, kinks=(0.0,), tiers=E.FLOAT,
    inplace=True, forward_only=E.inplace_negative("alpha"), error=A.elu_error, nan_slopes=(1.0,), edges=False,
    invalid={"inplace with a negative alpha, input requires grad": {"alpha": (-1.0, -0.5), "inplace": True}},
    backward_rules=("inplace with a negative alpha, input requires grad",),
    regimes=(Regime("negative alpha", holds=lambda c: c.params["alpha"] < 0, pins={"alpha": -1.0},
                    description="alpha < 0: the negative branch rises to -alpha"),),
    notes="y = x if x > 0 else alpha·(exp(x) - 1); the gradient at the kink x = 0 is alpha (the exponential "
          "branch). alpha negative, zero and non-representable (0.1). Error bound in the magnitude of the terms "
          "alpha·(exp(x) + 1): the textbook exp(x) - 1, which cancels for small |x|, conforms (PyTorch uses expm1), "
          "and the backward may be formed from the output, g·(y + alpha), as PyTorch does in place. inplace with a "
          "negative alpha is forward-only (invalid when the input requires grad). The gradient at NaN may be NaN or "
          "g (PyTorch: g).",
))

declare(elementwise(
    "SELU", A.selu, kinks=(0.0,), tiers=E.FLOAT, inplace=True, error=A.selu_error, nan_slopes=(A.SELU_SCALE,),
    edges=False,
    notes="scale·ELU(x, alpha) with PyTorch's constants (rounded once to the dtype: allowed); the gradient at the "
          "kink x = 0 is scale·alpha. Error analysis as ELU's. The gradient at NaN may be NaN or scale·g "
          "(PyTorch: scale·g).",
))

declare(replace(elementwise(
    "CELU", A.celu, params={"alpha": (1.0, 0.5, 2.0, 0.1, 1 / 3, -1.0, -0.5, 3.0)}, kinks=(0.0,), tiers=E.FLOAT,
    inplace=True, forward_only=E.inplace_negative("alpha"), error=A.celu_error, nan_slopes=(1.0,),
    invalid={"alpha = 0": {"alpha": 0.0},
             "inplace with a negative alpha, input requires grad": {"alpha": (-1.0, -0.5), "inplace": True}},
    backward_rules=("inplace with a negative alpha, input requires grad",),
    regimes=(Regime("negative alpha", holds=lambda c: c.params["alpha"] < 0, pins={"alpha": -1.0},
                    description="alpha < 0: the negative branch rises to -alpha"),
             Regime("alpha not a float32", holds=lambda c: c.params["alpha"] in (0.1, 1 / 3), pins={"alpha": 0.1},
                    description="alpha = 0.1: 1/alpha and alpha are not float32 values")),
    notes="y = x if x > 0 else alpha·(exp(x/alpha) - 1) (documented max(0, x) + min(0, ...), read for alpha > 0; "
          "PyTorch computes this form for a negative alpha too). Gradient 1 at x = 0 (smooth there), exp(x/alpha) "
          "below. Error bound as ELU's with the rounded 1/alpha and the product x·(1/alpha); the backward may be "
          "formed from the output (in place). alpha = 0 is invalid (division by zero); inplace with a negative "
          "alpha is forward-only (invalid when the input requires grad). The gradient at NaN may be NaN or g.",
), second_order_error=N.celu_second_order_error))

declare(elementwise(
    "Hardsigmoid", A.hardsigmoid, kinks=(-3.0, 3.0), inplace=True, error=A.hardsigmoid_error,
    nan_slopes=(0.0, 1 / 6), one_sided=lambda p: {-3.0: (0.0, 1 / 6), 3.0: (1 / 6, 0.0)},
    notes="0 for x <= -3, 1 for x >= 3, x/6 + 1/2 between; PyTorch's gradient is 0 at ±3 (undocumented: either "
          "one-sided derivative, 0 or 1/6, is accepted there). Error analysis for (x + 3)/6 and x·(1/6) + 1/2; the "
          "exact tier's integers hit both kinks. NaN propagates; the gradient at NaN may be NaN, 0 or g/6 "
          "(PyTorch: 0).",
))

declare(elementwise(
    "Hardswish", A.hardswish, kinks=(-3.0, 3.0), inplace=True, error=A.hardswish_error,
    nan_slopes=(0.0, 1.0), one_sided=lambda p: {-3.0: (0.0, -0.5), 3.0: (1.5, 1.0)},
    notes="x·relu6(x + 3)/6: 0 for x <= -3, x for x >= 3; limits 0 at -inf and +inf at +inf, and x (no overflow) for "
          "huge finite x. PyTorch's gradient at the kinks is the outer branch's (0 at -3, 1 at 3; undocumented: the "
          "inner one, -1/2 and 3/2, is accepted too); x/3 + 1/2 between, in the magnitude of its terms (it cancels "
          "at -3/2). NaN propagates; the gradient at NaN may be NaN, 0 or g (PyTorch: g).",
))

declare(elementwise(
    "RReLU", A.rrelu, kinks=(0.0,), tiers=E.FLOAT, inplace=True, reference=N.rrelu_reference,
    params={"bounds": E.Joint(("lower", "upper"), ((1 / 8, 1 / 3), (0.1, 0.3), (0.25, 0.25), (0.0, 0.5), (-0.5, -0.1),
                                                 (0.5, 2.0), (0.0, 0.0), (-0.5, 0.25)))},
    randomness=N.RRELU_RANDOMNESS, random=E.rrelu_random, tolerance=N.RRELU_TOLERANCE,
    forward_only=E.inplace_negative(E.rrelu_slope, train=False),
    comparators={"random.noise": N.noise_comparator},
    nan_slopes=lambda c: (1.0, E.rrelu_slope(c.params)), one_sided=lambda p: {0.0: (E.rrelu_slope(p), 1.0)},
    invalid={"lower > upper": {"bounds": E.Joint(("lower", "upper"), ((0.5, 0.1), (1 / 3, 1 / 8)))},
             "inplace in evaluation with a negative slope, input requires grad": {
                 "bounds": E.Joint(("lower", "upper"), ((-0.5, -0.1),)), "inplace": True, "train": False}},
    backward_rules=("inplace in evaluation with a negative slope, input requires grad",),
    regimes=E.rrelu_regimes(),
    notes="Training: y = x if x > 0 else a·x, a drawn from U(lower, upper) per element (torch draws where x <= 0); "
          "judged given the slopes read back as output/input (random cases draw finite inputs with |x| >= 2^-10), "
          "slopes canonical (1 at x > 0, within [lower, upper]), the gradient g·a with the forward's slopes, and the "
          "slopes tested against U(lower, upper) and for independence (DKW, false alarms <= 1e-6 per target). "
          "lower == upper draws lower itself: compared exactly as a fixed slope. Evaluation: the slope "
          "(lower + upper)/2 (a Python float: its rounding is allowed); at x = 0 PyTorch's gradient is the slope "
          "(undocumented: 1 is accepted too); a zero slope gives 0 at -inf. lower > upper is invalid; in place in "
          "evaluation with a negative slope is forward-only. Float tier only. The gradient at NaN may be NaN, g or "
          "slope·g. PyTorch's CPU has no float16 kernel for training (NotImplementedError: unsupported).",
))
