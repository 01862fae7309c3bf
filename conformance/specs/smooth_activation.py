"""Smooth activations, declared through the elementwise template: each is judged by the first-order
error analysis beside its reference (``reference.smooth_activation``). Entries declared before the
edge corners existed keep their draws (``edges=False``)."""

from dataclasses import replace

from conformance.families.elementwise import elementwise
from conformance.numerics import activation_modes as NM
from conformance.numerics import elementwise as N
from conformance.spec import Regime, declare
from conformance.strategies import elementwise as E
from reference import libm
from reference import smooth_activation as S

declare(elementwise(
    "Sigmoid", libm.sigmoid, tiers=E.FLOAT, error=S.sigmoid_error, edges=False,
    notes="1/(1 + exp(-x)): 0 and 1 at ∓inf, no overflow for large |x|. The backward may be formed from the output, "
          "g·y·(1 - y) (PyTorch), whose error near y = 1 is absolute (≈ (L + 2)·u·|g|). Results in the subnormal range "
          "may be flushed to zero (PyTorch float32 returns 0 below x ≈ -88.7).",
))

declare(elementwise(
    "Tanh", S.tanh, tiers=E.FLOAT, error=S.tanh_error, edges=False,
    notes="tanh(x), ±1 at ±inf; the backward may be formed from the output, g·(1 - y²) (PyTorch).",
))

declare(elementwise(
    "LogSigmoid", S.logsigmoid, tiers=E.FLOAT, error=S.logsigmoid_error, edges=False,
    notes="log σ(x) = min(x, 0) - log1p(exp(-|x|)): must not overflow for large negative or positive x (-inf only at "
          "-inf); gradient σ(-x), g at -inf.",
))

declare(elementwise(
    "Tanhshrink", S.tanhshrink, tiers=E.FLOAT, error=S.tanhshrink_error, edges=False,
    notes="x - tanh(x). Computed directly (PyTorch) it cancels near 0, where y ≈ x³/3: the bound is in the magnitude "
          "of tanh(x) (relative error ≈ 3L/x² there), and the backward's g - g·(1 - tanh²) in the magnitude of g.",
))

declare(elementwise(
    "Softsign", S.softsign, tiers=E.FLOAT, error=S.softsign_error, edges=False,
    notes="x/(1 + |x|); ±1 at ±inf (the limits; x/(1 + |x|) evaluated literally is inf/inf = NaN). The backward as "
          "autograd forms it, g/b - g·(x/b)/b, cancels for large |x|: bound in the magnitude of the terms.",
))

declare(elementwise(
    "Softplus", S.softplus, tiers=E.FLOAT, error=S.softplus_error, edges=False,
    params={"beta": (1.0, 2.0, 0.5, 0.1, 10.0, 100.0, 3.0), "threshold": (20.0, 1.0, 0.5, 5.0, 0.0, 100.0, 1000.0)},
    kinks=E.softplus_switch,
    kink_regime=("at the switch point", "inputs at threshold/β and its neighbours, where the branch changes"),
    comparators={"output": N.softplus_comparator, "grad.input": N.softplus_comparator},
    # (J·t of an element within one rounding of the switch point may follow either branch, which the
    # projected adjoint check cannot accept element by element: outside the jvp domain)
    adjoint_at=lambda case: not N.softplus_branch_ambiguous(case).any(),
    regimes=(Regime("small threshold at the switch point", holds=lambda c: c.params["threshold"] <= 1
                    and E.at_kink(E.softplus_switch)(c),
                    pins={"threshold": 0.5, "tier": "float", "input.kind": "corner", "input.corner": "at the kink"},
                    description="the linear branch differs visibly from log1p(exp(β·x))/β"),
             Regime("large threshold", holds=lambda c: c.params["threshold"] >= 100,
                    pins={"threshold": 1000.0, "tier": "float", "input.kind": "corner", "input.corner": "large"},
                    description="no linear branch below β·x = 1000: exp(β·x) must not overflow")),
    notes="y = x where β·x > threshold (documented: the linear branch), else log1p(exp(β·x))/β; gradient 1 and σ(β·x). "
          "β small, large, below 1 and not representable (0.1); thresholds 0 to 1000. At the switch point the branch "
          "is that of the exact β·x > threshold; within one rounding of it (β·x rounded to the dtype or to float32, "
          "β rounded first) either branch is accepted. Below the threshold the result must not overflow.",
))

declare(elementwise(
    "GELU", S.gelu, tiers=E.FLOAT, error=S.gelu_error, edges=False, params={"approximate": ("none", "tanh")},
    invalid={"approximate is neither 'none' nor 'tanh'": {"approximate": ("Tanh", "erf", "sigmoid")}},
    regimes=(Regime("tanh approximation", holds=lambda c: c.params["approximate"] == "tanh",
                    pins={"approximate": "tanh"}, description="approximate='tanh'"),),
    notes="x·Φ(x) (approximate='none') or 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) ('tanh'); limits +inf and 0 at "
          "±inf, gradients 1 and 0. The textbook 1 + erf (and 1 + tanh) cancels for negative x: the bound is in the "
          "magnitude of the terms (absolute error ≈ L·u·|x|/2), so PyTorch's formulas conform. The tanh and erf "
          "evaluations must return exactly ±1 once saturated (otherwise the tanh backward's x³ factor amplifies a "
          "one-ulp error).",
))

declare(elementwise(
    "SiLU", S.silu, tiers=E.FLOAT, inplace=True, error=S.silu_error,
    notes="x·σ(x); limits +inf and 0 at ±inf, gradients 1 and 0 (x·σ(x) read literally is NaN at -inf). Where σ(x) "
          "is a subnormal, gradual underflow keeps x·σ(x) to |x|·tiny; the result itself may be flushed below the "
          "normal range. The backward g·σ·(1 + x·(1 - σ)) (PyTorch) cancels near x ≈ -1.28: bound in the magnitude "
          "of its terms.",
))

declare(replace(elementwise(
    "Mish", S.mish, tiers=E.FLOAT, inplace=True, error=S.mish_error,
    notes="x·tanh(softplus(x)); limits +inf and 0 at ±inf, gradients 1 and 0 (x·tanh(log1p(exp(x))) read literally is "
          "NaN at -inf). exp(x) may overflow for large x (softplus is then inf, tanh 1: y = x, within the bound). The "
          "backward g·(t + x·σ(x)·(1 - t²)) cancels near x ≈ -1.19: bound in the magnitude of its terms; once tanh "
          "saturates, 1 - t² is 0 to within the exact sech². Second order (create_graph): torch differentiates a "
          "composite with softplus as log1p(exp(x)), whose 1 - t² from the rounded t carries the first-order δW on "
          "every term.",
), second_order_error=NM.mish_second_order_error))

declare(replace(elementwise(
    "GLU", S.glu, error=S.glu_error, cases=E.glu_cases(), invalid_cases=E.glu_cases(invalid=True), shape_regimes=False,
    regimes=(Regime("negative dim", holds=lambda c: c.params["dim"] < -1, pins={"ndim": 3, "dim": -2},
                    description="dim given as a negative index other than the default -1"),
             Regime("empty input", holds=lambda c: c.inputs["input"].size == 0, pins={"ndim": 2, "empty": True},
                    description="a dim of size 0 (the halved dim included: 0 is even)"),
             Regime("halves of size 1", holds=lambda c: c.inputs["input"].shape[c.params["dim"]] == 2,
                    pins={"shape[*]": 1, "empty": False},
                    description="every dim of size 1 before halving: the halved one is 2")),
    notes="a·σ(b) with a, b the first and second halves along dim (every dim, negative too; its size must be even, "
          "a 0-d input and a dim out of range are invalid). A product of two inputs: IEEE arithmetic at ±inf "
          "(a = ±inf with σ(b) = 0 is NaN; b = -inf gives 0). σ(b) as a subnormal keeps a·σ(b) to |a|·tiny. "
          "Backward: g·σ(b) and g·a·σ(b)·(1 - σ(b)), in the magnitude of the terms where 1 - σ(b) cancels; the second "
          "order's σ(b)·(1 - σ(b)) from the rounded σ(b) alike.",
), second_order_error=NM.glu_second_order_error))
