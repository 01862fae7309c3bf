"""Linear layers: Linear, Bilinear, Identity."""

from conformance import strategies as S
from conformance.families.linear import multilinear
from conformance.numerics.linear import bilinear_reduction, has_special_values, linear_reduction
from conformance.spec import Regime, TorchMapping, declare
from conformance.strategies import linear as L

declare(multilinear(
    "Linear", function="linear", arguments=("input", "weight", "bias"), cases=L.linear_case,
    invalid_cases=L.invalid_linear_case, reduction=linear_reduction,
    torch=TorchMapping("torch.nn.Linear", parameters=("weight", "bias")),
    regimes=(
        Regime("1-d input", lambda case: case.inputs["input"].ndim == 1, {"batch ndim": 0},
               "an input of shape (in_features,): output (out_features,)"),
        Regime("no bias", lambda case: not case.params["bias"], {"bias": False}, "bias=False"),
        Regime("three leading dims", lambda case: case.inputs["input"].ndim == 4, {"batch ndim": 3},
               "an input (A, B, C, in_features): grads of weight and bias sum over every leading dim"),
        Regime("zero-size batch", lambda case: case.inputs["input"].size == 0,
               {"batch ndim": 1, "zero-size batch dim": True},
               "a leading dim of size 0: empty output, zero gradients of weight and bias"),
        Regime("expanded input", lambda case: case.layout("input").kind == "expanded", {"layout.input": "expanded"},
               "an input with stride-0 dims (one row broadcast over the batch)"),
    ),
    notes="Input (*, in_features), including a 1-d input; grads of weight and bias sum over every leading dim.",
))

declare(multilinear(
    "Bilinear", function="bilinear", arguments=("input1", "input2", "weight", "bias"),
    cases=S.case_strategy(L.bilinear_case), invalid_cases=S.case_strategy(L.bilinear_invalid_case),
    reduction=bilinear_reduction,
    torch=TorchMapping("torch.nn.Bilinear", parameters=("weight", "bias"), args=("input1", "input2")),
    regimes=(
        Regime("1-d inputs", lambda c: c.inputs["input1"].ndim == 1, {"batch ndim": 0}, "(in1,) and (in2,) inputs"),
        Regime("three leading dims", lambda c: c.inputs["input1"].ndim == 4, {"batch ndim": 3},
               "gradients of weight and bias sum over every leading dim"),
        Regime("no bias", lambda c: not c.params["bias"], {"bias": False}, "bias=False"),
        Regime("zero-size batch", lambda c: c.inputs["input1"].size == 0,
               {"batch ndim": 1, "zero-size batch dim": True},
               "an empty leading dim: empty output, zero weight and bias gradients"),
        Regime("strided weight", lambda c: c.layout("weight").kind == "strided", {"layout.weight": "strided"},
               "the (out, in1, in2) weight read through steps (NaN in the gaps)"),
        Regime("square features", lambda c: c.params["in1_features"] == c.params["in2_features"],
               {"in1_features": 3, "in2_features": 3}, "in1 = in2: a transposed weight is no shape error"),
    ),
    notes=("y = x1ᵀ·A·x2 + b over the last dims: y[..., o] = Σ_ij x1[..., i]·A[o, i, j]·x2[..., j] + b[o]; the "
           "inputs share their leading dims (any number, none: 1-d inputs). Sums of products: bit-exact on "
           "small integers, bounded by |x1|·|A|·|x2| otherwise."),
))

declare(multilinear(
    "Identity", function="identity", arguments=("input",), cases=S.case_strategy(L.identity_case), exact="always",
    torch=TorchMapping("torch.nn.Identity", ctor=lambda case: case.params["kwargs"],
                       ctor_args=lambda case: case.params["args"]),
    regimes=(
        Regime("constructor arguments", lambda c: bool(c.params["args"] or c.params["kwargs"]),
               {"constructor arguments": L.IDENTITY_ARGS[3]}, "positional and keyword arguments, all ignored"),
        Regime("special values", has_special_values, {"tier": "float", "input.kind": "special", "ndim": 2,
                                                      "empty dims allowed": False},
               "±0, ±inf and NaN passed through bit for bit"),
        Regime("empty input", lambda c: c.inputs["input"].size == 0, {"empty dims allowed": True, "ndim": 2,
                                                                        "shape[0]": 0}, "a dim of size 0"),
        Regime("0-d input", lambda c: c.inputs["input"].ndim == 0, {"ndim": 0}, "a scalar tensor"),
    ),
    notes="y = x bit for bit (-0, ±inf, NaN), any shape; the gradient is the cotangent. nn.Identity ignores every "
          "constructor argument.",
))
