"""torch.nn.init: the template is conformance/families/init.py, the laws conformance/numerics/init.py."""

from conformance.families.init import corner, gain, generator_variant, initialiser, orthogonal_tolerance
from conformance.numerics import init as law
from conformance.spec import Regime, declare
from reference import init as RI

declare(initialiser(
    "uniform_", RI.uniform_, ranks=(2, 1, 0, 3, 4), law=law.law_uniform,
    options={"a": (0.0, -1.0, -3.5, 1000.0, -0.001, 1e-30),
             "b": lambda shape, p, dtype: tuple(p["a"] + w for w in (1.0, 0.0, 7.0, 0.5, 1e-3, 3e4))},
    invalid={"a > b": {"b": lambda shape, p, dtype: p["a"] - 1.0}, "expanded tensor": {"layout": "expanded"}},
    regimes=(corner("a == b", {"a": -1.0, "b": -1.0}), corner("0-d tensor", {"ndim": 0, "a": -1.0}),
             corner("far from 0, narrower than the format's spacing", {"a": 1000.0, "b": 1000.5}),
             corner("empty tensor", {"ndim": 2, "zero-size dim": True}),
             corner("non-contiguous", {"ndim": 2, "layout.tensor": "strided", "shape[*]": 16})),
    notes="U(a, b); a == b fills a; values at a or b are accepted (the bounds' rounding in the format)."))

declare(initialiser(
    "normal_", RI.normal_, ranks=(2, 1, 0, 3, 4), law=law.law_normal,
    options={"mean": (0.0, 1.0, -2.5, 1000.0, 1e-3), "std": (1.0, 0.0, 0.01, 3.0, 100.0, 1e-4)},
    invalid={"std < 0": {"std": -1.0}, "expanded tensor": {"layout": "expanded"}},
    regimes=(corner("std = 0", {"std": 0.0, "mean": 1.0}),
             corner("large mean, small std", {"mean": 1000.0, "std": 0.01}), corner("0-d tensor", {"ndim": 0}),
             corner("4-d channels_last", {"ndim": 4, "layout.tensor": "channels_last"})),
    notes="N(mean, std²); std = 0 fills mean."))

declare(initialiser(
    "trunc_normal_", RI.trunc_normal_, ranks=(2, 1, 0, 3), law=law.law_trunc_normal,
    options={"a": (-2.0, 0.0, -1.0, 1.0, 2.5, -100.0),
             "b": lambda shape, p, dtype: tuple(p["a"] + w for w in (4.0, 1.0, 0.0, 0.25, 3.0, 200.0)),
             "std": (1.0, 0.5, 2.0, 0.01, 0.0), "mean": law.trunc_normal_means},
    invalid={"a > b": {"b": lambda shape, p, dtype: p["a"] - 1.0}, "std < 0": {"std": -1.0},
             "expanded tensor": {"layout": "expanded"}},
    regimes=(corner("tail interval (uniform proposals)", {"mean": 0.0, "a": 1.0, "b": 4.0, "std": 1.0, "ndim": 2,
                                                          "shape[*]": 32}),
             corner("narrow interval", {"mean": 0.0, "a": 0.0, "b": 0.25, "std": 1.0}),
             corner("mean outside [a, b]", {"mean": 5.0, "a": 1.0, "b": 2.0, "std": 2.0}),
             corner("wide interval (normal proposals)", {"mean": 1.0, "a": -100.0, "b": 100.0, "std": 2.0}),
             corner("a == b", {"a": 1.0, "b": 1.0, "mean": 0.0, "std": 1.0}),
             corner("std = 0", {"mean": 1.0, "a": 0.0, "b": 1.0, "std": 0.0})),
    notes="N(mean, std²) redrawn until in [a, b] (the bounds rounded to the format); a == b fills a; std = 0 "
          "(mean in [a, b]) fills mean. Means at most 2 std outside [a, b]: beyond, torch warns that the values may "
          "be wrong and its rejection sampler may not end (not exercised)."))

declare(initialiser(
    "constant_", RI.constant_, ranks=(2, 1, 0, 3, 4), overlap_ok=True,
    options={"val": law.CONSTANT_VALUES},
    invalid={"val beyond the format's range": {"val": law.beyond_range, "dtypes": ("float32", "float16", "bfloat16")},
             "val not a number": {"val": "one"}},
    regimes=(Regime("-0.0", lambda c: c.params["val"] == 0 and str(c.params["val"]) == "-0.0", {"val": "-0"}),
             Regime("NaN", lambda c: c.params["val"] != c.params["val"], {"val": "nan"}),
             Regime("-inf", lambda c: c.params["val"] == float("-inf"), {"val": "-inf"}),
             Regime("subnormal", law.fills_subnormal, {"val": "smallest subnormal"}),
             Regime("largest finite value", law.fills_largest, {"val": "largest"}),
             Regime("above the largest finite value, rounding to it", law.above_largest,
                    {"val": "just above the largest"}, "valid: the rounded value is finite"),
             Regime("just above a midpoint", law.at_double_rounding_corner, {"val": "double-rounding corner"},
                    "1 + 2^-p + 2^-40: rounds up in float16/bfloat16 (one rounding), is float32's midpoint"),
             corner("expanded tensor", {"ndim": 2, "layout.tensor": "expanded"})),
    notes="Fills val correctly rounded to the format (one rounding; ±0, ±inf and NaN kept; the sign of zero compared). "
          "A finite val whose rounding overflows (at least the largest finite value plus half its spacing) raises."))

declare(initialiser("ones_", RI.ones_, ranks=(2, 1, 0, 3, 4), options={}, overlap_ok=True,
                    regimes=(corner("expanded tensor", {"layout.tensor": "expanded", "ndim": 3}),
                             corner("empty tensor", {"ndim": 2, "zero-size dim": True})),
                    notes="Fills 1."))

declare(initialiser("zeros_", RI.zeros_, ranks=(2, 1, 0, 3, 4), options={}, overlap_ok=True,
                    regimes=(corner("expanded tensor", {"layout.tensor": "expanded", "ndim": 3}),
                             corner("0-d tensor", {"ndim": 0})),
                    notes="Fills +0.0 (the sign of zero compared)."))

declare(initialiser(
    "eye_", RI.eye_, ranks=(2,), options={},
    invalid={"not 2-d": {"ranks": (3, 1, 0, 4)}, "expanded tensor": {"layout": "expanded"}},
    regimes=(Regime("wide", lambda c: c.inputs["tensor"].shape[0] < c.inputs["tensor"].shape[1],
                    {"shape[0]": 2, "shape[1]": 5, "zero-size dim": False}),
             Regime("tall", lambda c: c.inputs["tensor"].shape[0] > c.inputs["tensor"].shape[1],
                    {"shape[0]": 5, "shape[1]": 2, "zero-size dim": False}),
             corner("empty", {"zero-size dim": True}),
             Regime("transposed layout", lambda c: c.layout("tensor").kind == "permuted",
                    {"layout.tensor": "contiguous", "layout.tensor.transposed": True, "shape[*]": 4})),
    notes="1 where i == j, +0 elsewhere, for any (rows, cols). A tensor with stride-0 dims cannot hold it: torch "
          "must raise."))

declare(initialiser(
    "dirac_", RI.dirac_, ranks=(3, 4, 5), options={"groups": law.dirac_groups},
    invalid={"not 3-d to 5-d": {"ranks": (2, 6, 1)}, "groups do not divide dim 0": {"groups": law.non_divisor},
             "groups = 0": {"groups": 0}, "groups < 0": {"groups": -1}, "expanded tensor": {"layout": "expanded"}},
    regimes=(Regime("groups > 1", lambda c: c.params["groups"] > 1, {"shape[0]": 6, "groups": 3}),
             Regime("more outputs per group than inputs", lambda c: c.inputs["tensor"].shape[0] // c.params["groups"]
                    > c.inputs["tensor"].shape[1], {"shape[0]": 6, "shape[1]": 2, "groups": 1, "zero-size dim": False}),
             Regime("more inputs than outputs per group", lambda c: c.inputs["tensor"].shape[0] // c.params["groups"]
                    < c.inputs["tensor"].shape[1], {"shape[0]": 4, "shape[1]": 6, "groups": 2, "zero-size dim": False}),
             Regime("even kernel", lambda c: any(s % 2 == 0 and s > 0 for s in c.inputs["tensor"].shape[2:]),
                    {"shape[0]": 2, "shape[1]": 2, "shape[2]": 4, "shape[3]": 2, "shape[4]": 2,
                     "zero-size dim": False}),
             corner("5-d", {"ndim": 5}), corner("4-d channels_last", {"ndim": 4, "layout.tensor": "channels_last"})),
    notes="Zeros, and 1 at [g·out/groups + d, d, k//2...] for d < min(out/groups, in); groups a positive divisor of "
          "dim 0. A tensor with stride-0 dims cannot hold it: torch must raise."))

declare(initialiser(
    "xavier_uniform_", RI.xavier_uniform_, ranks=(2, 3, 4, 5), law=law.law_xavier_uniform, empty_dims=(0, 1),
    options={"gain": (1.0, 2.0, 0.5, 5.0 / 3, 0.0)},
    invalid={"fewer than 2 dims": {"ranks": (1, 0)}, "fan_in + fan_out = 0": {"shape": (0, 0)},
             "expanded tensor": {"layout": "expanded"}},
    regimes=(corner("convolution weight", {"ndim": 4}),
             Regime("fan_in ≠ fan_out", lambda c: c.inputs["tensor"].shape[0] != c.inputs["tensor"].shape[1],
                    {"ndim": 2, "shape[0]": 3, "shape[1]": 30, "zero-size dim": False}),
             corner("gain = 0", {"gain": 0.0})),
    notes="U(±gain·√(6/(fan_in + fan_out))), fan_in = size(1)·∏k, fan_out = size(0)·∏k."))

declare(initialiser(
    "xavier_normal_", RI.xavier_normal_, ranks=(2, 3, 4, 5), law=law.law_xavier_normal, empty_dims=(0, 1),
    options={"gain": (1.0, 2.0, 0.5, 5.0 / 3)},
    invalid={"fewer than 2 dims": {"ranks": (1, 0)}, "fan_in + fan_out = 0": {"shape": (0, 0)},
             "expanded tensor": {"layout": "expanded"}},
    regimes=(corner("convolution weight", {"ndim": 3}),
             Regime("fan_in ≠ fan_out", lambda c: c.inputs["tensor"].shape[0] != c.inputs["tensor"].shape[1],
                    {"ndim": 2, "shape[0]": 30, "shape[1]": 3, "zero-size dim": False})),
    notes="N(0, gain²·2/(fan_in + fan_out))."))

for _name, _law in (("kaiming_uniform_", law.law_kaiming_uniform), ("kaiming_normal_", law.law_kaiming_normal)):
    declare(initialiser(
        _name, getattr(RI, _name), ranks=(2, 3, 4, 5), law=_law,
        options={"a": (0.0, 5**0.5, 0.01, 0.2, -0.5, 3.0), "mode": ("fan_in", "fan_out"),
                 "nonlinearity": ("leaky_relu", "relu", "linear", "tanh", "sigmoid", "selu", "conv2d",
                                  "conv_transpose1d")},
        invalid={"fewer than 2 dims": {"ranks": (1, 0)}, "unknown mode": {"mode": "fan_avg"},
                 "unknown nonlinearity": {"nonlinearity": "gelu"},
                 "leaky_relu slope not a number": {"nonlinearity": "leaky_relu", "a": True},
                 "expanded tensor": {"layout": "expanded"}},
        regimes=(Regime("fan_out, fan_in ≠ fan_out", lambda c: c.params["mode"] == "fan_out" and
                        c.inputs["tensor"].shape[0] != c.inputs["tensor"].shape[1],
                        {"mode": "fan_out", "ndim": 2, "shape[0]": 40, "shape[1]": 5, "zero-size dim": False}),
                 Regime("fan_in, fan_in ≠ fan_out", lambda c: c.params["mode"] == "fan_in" and
                        c.inputs["tensor"].shape[0] != c.inputs["tensor"].shape[1],
                        {"mode": "fan_in", "ndim": 2, "shape[0]": 4, "shape[1]": 40, "zero-size dim": False}),
                 corner("relu", {"nonlinearity": "relu"}), corner("leaky_relu with a = √5", {"a": 5**0.5}),
                 corner("convolution weight, fan_out", {"ndim": 4, "mode": "fan_out"}),
                 corner("empty (a no-op)", {"zero-size dim": True})),
        notes="gain = calculate_gain(nonlinearity, a); fan = fan_in or fan_out (mode); uniform: U(±√3·gain/√fan), "
              "normal: N(0, gain²/fan). A zero-element tensor is left as it is."))

declare(initialiser(
    "orthogonal_", RI.orthogonal_, ranks=(2, 3, 4), law=law.law_orthogonal, tolerance=orthogonal_tolerance(),
    options={"gain": (1.0, 2.0, 0.5, -1.0, 0.0)},
    invalid={"fewer than 2 dims": {"ranks": (1, 0)}, "expanded tensor": {"layout": "expanded"}},
    regimes=(Regime("wide", lambda c: c.inputs["tensor"].shape[0] < c.inputs["tensor"].size // max(
        c.inputs["tensor"].shape[0], 1), {"ndim": 2, "shape[0]": 3, "shape[1]": 20, "zero-size dim": False}),
             Regime("tall", lambda c: c.inputs["tensor"].shape[0] ** 2 > c.inputs["tensor"].size,
                    {"ndim": 2, "shape[0]": 20, "shape[1]": 3, "zero-size dim": False}),
             corner("square", {"ndim": 2, "shape[0]": 8, "shape[1]": 8}),
             corner("convolution weight (trailing dims flattened)", {"ndim": 3}),
             corner("gain ≠ 1", {"gain": 2.0}),
             corner("channels_last (trailing dims not a view)", {"layout.tensor": "channels_last", "ndim": 4})),
    notes="gain·Q, Q with orthonormal columns (rows >= ∏trailing) or rows, Haar distributed: each case is compared "
          "with its nearest semi-orthogonal matrix, the diagonal's signs must be fair. float16/bfloat16: torch has no "
          "QR for them (unsupported)."))

declare(initialiser(
    "sparse_", RI.sparse_, ranks=(2,), law=law.law_sparse,
    options={"sparsity": (0.1, 0.0, 0.5, 1.0, 0.9, 1 / 3, 0.01), "std": (0.01, 1.0, 0.0, 3.0)},
    invalid={"not 2-d": {"ranks": (1, 3)}, "sparsity > 1": {"sparsity": 1.5}, "sparsity < 0": {"sparsity": -0.5},
             "expanded tensor": {"layout": "expanded"}},
    regimes=(corner("sparsity 0", {"sparsity": 0.0}), corner("sparsity 1 (all zero)", {"sparsity": 1.0}),
             corner("half the rows", {"sparsity": 0.5, "shape[0]": 10}),
             Regime("transposed layout", lambda c: c.layout("tensor").kind == "permuted",
                    {"layout.tensor": "contiguous", "layout.tensor.transposed": True})),
    notes="Every column: exactly ceil(sparsity·rows) zeros at uniformly random rows, the rest N(0, std²)."))

for _name in ("uniform_", "normal_", "trunc_normal_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_",
              "kaiming_normal_", "orthogonal_", "sparse_"):
    declare(generator_variant(_name))

declare(gain(RI.calculate_gain, regimes=(
    Regime("leaky_relu with a slope", lambda c: any(n == "leaky_relu" and p for n, p in c.params["queries"]),
           {"nonlinearity[*]": "leaky_relu", "param[*]": 0.1875}),
    Regime("selu ignores param", lambda c: any(n == "selu" and p for n, p in c.params["queries"]),
           {"nonlinearity[*]": "selu", "param[*]": 3.0}),
    Regime("leaky_relu default slope", lambda c: any(n == "leaky_relu" and p is None for n, p in c.params["queries"]),
           {"nonlinearity[*]": "leaky_relu", "param[*]": None})),
    notes="1 (linear, conv*, conv_transpose*, sigmoid), 5/3 (tanh), √2 (relu), √(2/(1 + s²)) (leaky_relu, s = param "
          "or 0.01; a bool or string param raises), 3/4 (selu); an unknown nonlinearity raises. torch returns the "
          "int 1 for the linear names and sigmoid (an int or a float is accepted); the gains do not depend on the "
          "dtype."))
