"""How a drawn initialisation is judged: exact fills bit for bit (sign of zero included), random
draws through their law (structure exactly, distribution statistically), and the predicates of
the known torch discrepancies of the family.

A random initialiser's draw is its random choice (``random.values``). Given the draw, the
conditional reference returns it in canonical form: within the support (a uniform's [lo, hi], a
truncated normal's [a, b], both widened to their rounding in the tensor's format), finite, with
exactly ceil(sparsity·rows) zeros in every column (sparse), or the nearest semi-orthogonal matrix
(orthogonal, compared under its error analysis); so a value of the wrong structure is a mismatch
of that case. The draws of a whole target are then tested against the documented law:

- **distribution** (Kolmogorov–Smirnov with the Dvoretzky–Kiefer–Wolfowitz bound): each drawn value y
  is an ideal draw X perturbed by at most R(y), its error model (``reference.init``'s
  ``*_sample_error``: the arithmetic in the accumulation format and the final rounding), so its
  probability transform F(X) lies in [F(y - R), F(y + R)]. Pooling every value of every case of
  the target (n values, iid given their own laws), the largest deviation D of the empirical CDF of
  those intervals from the uniform (``interval_ks``) exceeds ε = √(ln(2/α)/(2n)) with probability
  at most α (Massart's DKW constant, for every n), plus the probability the generator's grid of
  uniforms cannot resolve (``reference.init.grid_mass``);
- **signs** (orthogonal): the diagonal of a Haar orthogonal matrix has independent fair signs;
- **zero rows** (sparse): each column's zeros sit at uniformly random rows, so the first row is
  zero in a column with probability ceil(sparsity·rows)/rows, independently across columns.
- **independence** (uniform, normal, truncated normal: iid values): neighbouring values of a tensor,
  along dim 0, dim 1 and the last dim, fall on the same side of the median as independent ones.
Bernstein tests (``conformance.stats``) judge the indicator counts. The target's false-alarm
budget (``Randomness.false_alarm``) is split equally over the tests its law defines.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from backends.base import Case, Result
from conformance.compare import Comparison, compare_tensor
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec, spec_of
from conformance.stats import INDEPENDENCE, StatCheck, bernstein_test, element_axes, independence_test
from reference import init as ref

# -- exact fills ------------------------------------------------------------------------------------


def in_format(values: np.ndarray, dtype: str) -> np.ndarray:
    """``values`` correctly rounded (one rounding) to ``dtype``: beyond its largest finite value
    (the rounding carried past it) a finite value overflows to ±inf."""
    fmt = DTYPES[dtype]
    rounded = ref.correctly_rounded(values, fmt.precision, fmt.min_exponent)
    return np.where(np.abs(rounded) > fmt.max_value, np.copysign(np.inf, rounded), rounded)


def signed_exact(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
    """Bit-for-bit, the sign of a zero included (a fill of -0.0 is -0.0; zeros_ gives +0.0)."""
    expected = result.tensors()[name]
    value = got.tensors().get(name)
    cmp = compare_tensor(spec, case, name, expected, value, got.dtypes.get(name), np.abs(expected))
    if cmp.ok and value is not None:
        flipped = (np.asarray(expected) == 0) & (np.signbit(expected) != np.signbit(value))
        if flipped.any():
            cmp.ok, cmp.symptoms = False, ["value"]
            cmp.mismatches = int(flipped.sum())
            cmp.worst_index = [int(i) for i in np.argwhere(flipped)[0]]
            cmp.message = f"{cmp.mismatches} of {cmp.size} zeros have the wrong sign"
    return cmp


# -- laws of random draws ----------------------------------------------------------------------------

def formats(dtype: str) -> tuple[float, float]:
    """(u of the tensor's format, u of the format torch samples in: float64 for float64, else float32)."""
    return DTYPES[dtype].unit_roundoff, 2.0**-53 if dtype == "float64" else 2.0**-24


@dataclass(frozen=True)
class Law:
    """What the values of one random initialisation must be (``kind``: uniform, normal, trunc,
    orthogonal, sparse); ``dist`` is the law of a (non-zero) value, ``gain`` orthogonal's factor,
    ``zeros`` sparse's zeros per column."""

    kind: str
    dist: ref.Uniform | ref.Normal | ref.TruncatedNormal | None = None
    gain: float = 1.0
    zeros: int = 0

    # -- structure ---------------------------------------------------------------------------------
    def support(self, dtype: str) -> tuple[float, float]:
        """[lo, hi] widened to where lo and hi round in ``dtype`` (±inf: unbounded)."""
        if self.kind == "uniform":
            lo, hi = self.dist.lo, self.dist.hi
        elif self.kind == "trunc":
            lo, hi = self.dist.a, self.dist.b
        else:
            return -np.inf, np.inf
        rlo, rhi = float(in_format(np.array(lo), dtype)), float(in_format(np.array(hi), dtype))
        return min(lo, rlo), max(hi, rhi)

    def point(self, shape: tuple[int, ...], dtype: str) -> np.ndarray | None:
        """The values when the law is a point mass (no random choice), else None."""
        if 0 in shape or (self.kind == "orthogonal" and self.gain == 0):
            return np.zeros(shape)
        d = self.dist
        value = None
        if self.kind == "uniform" and d.lo == d.hi:
            value = d.lo
        elif self.kind in ("normal", "sparse") and d.std == 0:
            value = d.mean
        elif self.kind == "trunc" and (d.std == 0 or d.a == d.b):
            value = d.mean if d.std == 0 else d.a
        if self.kind == "sparse" and self.zeros >= shape[0]:
            value = 0.0
        return None if value is None else np.full(shape, float(in_format(np.array(value), dtype)))

    def placeholder(self, shape: tuple[int, ...]) -> np.ndarray:
        """Values of the right shape before any draw is known (the reference without choices)."""
        return np.zeros(shape) if self.kind in ("orthogonal", "sparse") else np.full(shape, self._middle())

    def _middle(self) -> float:
        d = self.dist
        if self.kind == "uniform":
            return (d.lo + d.hi) / 2
        return min(max(d.mean, d.a), d.b) if self.kind == "trunc" else d.mean

    def canonical(self, values: np.ndarray, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        """The draw in canonical form (see the module docstring); NaN where no value is right."""
        values = np.asarray(values, dtype=np.float64)
        if values.shape != shape:
            return np.full(shape, np.nan)
        finite = np.isfinite(values)
        if self.kind == "orthogonal":
            return ref.nearest_semi_orthogonal(values, self.gain) if finite.all() else np.zeros(shape)
        if self.kind == "sparse":
            out = np.where(finite, values, 0.0)
            right = np.sum(out == 0, axis=0) == self.zeros
            return np.where(right[None, :], out, np.nan)
        lo, hi = self.support(dtype)
        return np.where(finite, np.clip(values, lo, hi), self._middle())

    # -- statistics --------------------------------------------------------------------------------
    def intervals(self, values: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray, float]:
        """([F(y - R)], [F(y + R)], grid mass) of every value judged by its distribution."""
        y = np.asarray(values, dtype=np.float64).reshape(-1)
        u, u_acc = formats(dtype)
        d = self.dist
        if self.kind == "sparse":
            y = y[y != 0]
        if self.kind == "uniform":
            r = ref.uniform_sample_error(d.lo, d.hi, y, u, u_acc)
            return d.cdf(y - r), d.cdf(y + r), ref.grid_mass(u_acc, 1)
        if self.kind in ("normal", "sparse"):
            r = ref.normal_sample_error(d.mean, d.std, y, u, u_acc)
            return d.cdf(y - r), d.cdf(y + r), ref.grid_mass(u_acc, 2)
        if self.kind == "trunc":
            def err(v):
                return np.maximum(ref.normal_sample_error(d.mean, d.std, v, u, u_acc),
                                  ref.uniform_sample_error(d.a, d.b, v, u, u_acc))
            lo, hi = (float(in_format(np.array(v), dtype)) for v in (d.a, d.b))
            da = abs(lo - d.a) + float(err(np.array(lo)))
            db = abs(hi - d.b) + float(err(np.array(hi)))
            r = err(y)
            return d.shifted(da, db).cdf(y - r), d.shifted(-da, -db).cdf(y + r), ref.grid_mass(u_acc, 2)
        return np.zeros(0), np.zeros(0), 0.0

    def indicators(self, values: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Independent 0/1 outcomes with known means, by test name."""
        values = np.asarray(values, dtype=np.float64)
        if self.kind == "orthogonal":
            rows, cols = ref.flat_shape(values.shape)
            diag = np.diagonal(values.reshape(rows, cols))
            return {"signs": (diag > 0, np.full(diag.shape, 0.5))}
        if self.kind == "sparse":
            rows = values.shape[0]
            first = values[0] == 0 if rows else np.zeros(0, dtype=bool)
            return {"zero rows": (first, np.full(first.shape, self.zeros / max(rows, 1)))}
        return {}

    @staticmethod
    def halves(values: np.ndarray, intervals: tuple[np.ndarray, np.ndarray, float]) -> tuple[np.ndarray, float]:
        """(whether each value's probability transform lies below 1/2, shaped like ``values``; the
        largest error of that probability): read from its ``intervals``, each within its width of
        the transform of the ideal draw, plus the generator's grid mass."""
        lo, hi, grid = intervals
        below = ((lo + hi) / 2 < 0.5).reshape(np.shape(values))
        return below, float(np.max(hi - lo, initial=0.0)) + grid

    def tests(self) -> tuple[str, ...]:
        """The statistical tests this kind of law defines (the false-alarm budget's split): iid
        laws add the independence of neighbouring values (``INDEPENDENT_VALUES``)."""
        special = {"orthogonal": ("signs",), "sparse": ("distribution", "zero rows")}
        return special.get(self.kind, ("distribution", *INDEPENDENT_VALUES))


def uniform_law(lo: float, hi: float) -> Law:
    if lo > hi:
        raise ValueError(f"uniform: a = {lo} > b = {hi}")
    return Law("uniform", ref.Uniform(float(lo), float(hi)))


def normal_law(mean: float, std: float) -> Law:
    if std < 0:
        raise ValueError(f"normal: std = {std} < 0")
    return Law("normal", ref.Normal(float(mean), float(std)))


# -- the law of each initialiser, from its parameters and the tensor's shape ------------------------------

def law_uniform(p: dict, shape: tuple[int, ...]) -> Law:
    return uniform_law(p["a"], p["b"])


def law_normal(p: dict, shape: tuple[int, ...]) -> Law:
    return normal_law(p["mean"], p["std"])


def law_trunc_normal(p: dict, shape: tuple[int, ...]) -> Law:
    ref.check_trunc_normal(p["mean"], p["std"], p["a"], p["b"])
    return Law("trunc", ref.TruncatedNormal(float(p["mean"]), float(p["std"]), float(p["a"]), float(p["b"])))


def law_xavier_uniform(p: dict, shape: tuple[int, ...]) -> Law:
    bound = math.sqrt(3.0) * ref.xavier_std(shape, p["gain"])
    return uniform_law(-bound, bound)


def law_xavier_normal(p: dict, shape: tuple[int, ...]) -> Law:
    return normal_law(0.0, ref.xavier_std(shape, p["gain"]))


def _kaiming_std(p: dict, shape: tuple[int, ...]) -> float:
    ref.calculate_gain(p["nonlinearity"], p["a"])  # validates a and the nonlinearity even when empty
    ref.correct_fan(shape, p["mode"])
    return 0.0 if 0 in shape else ref.kaiming_std(shape, p["a"], p["mode"], p["nonlinearity"])


def law_kaiming_uniform(p: dict, shape: tuple[int, ...]) -> Law:
    bound = math.sqrt(3.0) * _kaiming_std(p, shape)
    return uniform_law(-bound, bound)


def law_kaiming_normal(p: dict, shape: tuple[int, ...]) -> Law:
    return normal_law(0.0, _kaiming_std(p, shape))


def law_orthogonal(p: dict, shape: tuple[int, ...]) -> Law:
    ref.flat_shape(shape)
    return Law("orthogonal", gain=float(p["gain"]))


def law_sparse(p: dict, shape: tuple[int, ...]) -> Law:
    if len(shape) != 2:
        raise ValueError("sparse_: only tensors with 2 dimensions are supported")
    if not 0.0 <= p["sparsity"] <= 1.0:
        raise ValueError(f"sparse_: sparsity {p['sparsity']} is not a fraction in [0, 1]")
    return Law("sparse", ref.Normal(0.0, float(p["std"])), zeros=ref.zeros_per_column(shape[0], p["sparsity"]))


# -- the statistics of a target ------------------------------------------------------------------------

def interval_ks(lo: np.ndarray, hi: np.ndarray) -> float:
    """The largest deviation from U(0, 1) that n probability transforms known only to lie in
    [lo_i, hi_i] must show: max(max_k k/n - hi_(k), max_i lo_(i) - (i - 1)/n) (sorted ascending),
    0 when the intervals are consistent with every CDF within 0 of the uniform."""
    n = lo.size
    if n == 0:
        return 0.0
    k = np.arange(1, n + 1) / n
    return float(max(np.max(k - np.sort(hi)), np.max(np.sort(lo) - (k - 1 / n)), 0.0))


def dkw_threshold(n: int, alpha: float) -> float:
    """ε with 2·exp(-2nε²) = α (Massart's tight DKW constant)."""
    return math.sqrt(math.log(2 / alpha) / (2 * n)) if n else 0.0


def law_checks(draws: Sequence[tuple[Law, np.ndarray, str]], alpha: float) -> list[StatCheck]:
    """The statistical tests of a target's draws, each (law, drawn values, dtype), all of one kind
    of law; the false-alarm budget ``alpha`` split equally over the tests that kind defines."""
    if not draws:
        return []
    names = draws[0][0].tests()
    share = alpha / len(names)
    checks = []
    parts = [law.intervals(values, dtype) for law, values, dtype in draws] if "distribution" in names else []
    if "distribution" in names:
        lo, hi = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        checks.append(StatCheck(
            name="distribution", trials=lo.size, observed=interval_ks(lo, hi), expected=0.0,
            threshold=dkw_threshold(lo.size, share) + max(p[2] for p in parts), false_alarm=share,
            description="Kolmogorov–Smirnov distance of the drawn values from their documented law"))
    for name in names:
        if name in INDEPENDENT_VALUES:
            checks.append(_independence(name, draws, parts, share))
            continue
        if name == "distribution":
            continue
        pairs = [law.indicators(values)[name] for law, values, _ in draws]
        checks.append(bernstein_test(name, INDICATOR_TESTS[name],
                                     np.concatenate([np.asarray(o).reshape(-1) for o, _ in pairs]),
                                     np.concatenate([np.asarray(m).reshape(-1) for _, m in pairs]), share))
    return checks


def _independence(name: str, draws: Sequence[tuple[Law, np.ndarray, str]],
                  intervals: Sequence[tuple[np.ndarray, np.ndarray, float]], alpha: float) -> StatCheck:
    """Neighbouring values of a tensor of iid draws (along dim 0, dim 1 and the last dim:
    ``conformance.stats.element_axes``) fall on the same side of their law's median as often as
    independent ones: 1/2, up to 2δ² for a probability of "below" known within δ (``Law.halves``)."""
    test = name[len("independent "):]
    units, axes, slack = [], [], 0.0
    for (law, values, _), parts in zip(draws, intervals):
        axis = element_axes(np.ndim(values)).get(test)
        if axis is not None and np.size(values):
            below, delta = law.halves(values, parts)
            units.append(below)
            axes.append(axis)
            slack = max(slack, delta)
    return independence_test(name, f"neighbouring {INDEPENDENCE[test]} on the same side of the median", units,
                             [0.5] * len(units), axes, alpha, 2 * slack * slack)


# The independence tests of iid draws (``conformance.stats.INDEPENDENCE``).
INDEPENDENT_VALUES = ("independent samples", "independent channels", "independent consecutive elements")
INDICATOR_TESTS = {"signs": "positive diagonal entries (fair signs)",
                   "zero rows": "zeros in the first row, against ceil(sparsity·rows)/rows"}


def check_draws(law_of: Callable[[Case], Law]) -> Callable[[Sequence[tuple[Case, dict]], float], list[StatCheck]]:
    """The ``Randomness.check`` of an initialiser whose law is ``law_of(case)`` (cases of the
    generator variants are left out: their seeds are drawn per case and may repeat)."""

    def check(samples: Sequence[tuple[Case, dict[str, np.ndarray]]], alpha: float) -> list[StatCheck]:
        return law_checks([(law_of(case), choices["values"], case.dtype) for case, choices in samples
                           if case.variant != "generator" and "values" in choices], alpha)

    return check


# -- parameters that depend on the format or the shape ------------------------------------------------

def _double_rounding_corner(shape: tuple[int, ...], p: dict, dtype: str) -> float:
    """1 + 2^-p + 2^-40: just above the midpoint of 1 and its successor in a format of p bits (for
    float16 and bfloat16; float32 represents it to 24 bits as the midpoint itself)."""
    return 1.0 + 2.0 ** -DTYPES[dtype].precision + 2.0**-40


# constant_'s values, by label (simplest first).
CONSTANT_VALUES = {
    "0": 0.0, "1": 1.0, "-0": -0.0, "0.5": 0.5, "-3.25": -3.25, "inf": float("inf"), "-inf": float("-inf"),
    "nan": float("nan"), "0.1": 0.1, "1/3": 1 / 3, "-1e-3": -1e-3,
    "largest": lambda shape, p, dtype: DTYPES[dtype].max_value,
    "just above the largest": lambda shape, p, dtype: DTYPES[dtype].max_value * (1 + (dtype != "float64") * 2.0**-30),
    "-largest": lambda shape, p, dtype: -DTYPES[dtype].max_value,
    "smallest subnormal": lambda shape, p, dtype: DTYPES[dtype].min_subnormal,
    "below the smallest subnormal": lambda shape, p, dtype: DTYPES[dtype].min_subnormal * 0.75,
    "double-rounding corner": _double_rounding_corner,
}


def beyond_range(shape: tuple[int, ...], p: dict, dtype: str) -> float:
    """A finite value whose rounding to the format overflows (twice its largest finite value)."""
    return DTYPES[dtype].max_value * 2


def fills_largest(case: Case) -> bool:
    return abs(case.params["val"]) == DTYPES[case.dtype].max_value


def fills_subnormal(case: Case) -> bool:
    return 0 < abs(case.params["val"]) < DTYPES[case.dtype].min_normal


def above_largest(case: Case) -> bool:
    """val is at least the format's largest finite value and rounds to it (below the overflow
    threshold; float64 has nothing above it)."""
    top = DTYPES[case.dtype].max_value
    return bool(top <= abs(case.params["val"]) and np.isfinite(in_format(np.array(case.params["val"]), case.dtype)))


def gain_comparator(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
    """calculate_gain returns Python numbers whatever the dtype: the int 1 for the linear names and
    sigmoid (annotated float), floats otherwise; an int or a float of the same value is accepted.
    A backend returning the gains as a tensor of the case's format is accepted too, compared with
    the gains correctly rounded to it. Values are compared exactly."""
    expected = np.asarray(result.outputs[name], dtype=np.float64)
    dtype = got.dtypes.get(name)
    if dtype == case.dtype and dtype != "float64":
        expected = in_format(expected, case.dtype)
    return compare_tensor(spec, case, name, expected, got.outputs.get(name),
                          None if dtype in ("int64", "float64", case.dtype) else dtype, np.abs(expected))


def at_double_rounding_corner(case: Case) -> bool:
    return case.params["val"] == _double_rounding_corner((), {}, case.dtype)


def rounds_twice_differently(case: Case) -> bool:
    """val rounded to float16/bfloat16 through float32 (two roundings) is not val rounded once."""
    if case.dtype not in ("float16", "bfloat16") or not np.isfinite(case.params["val"]):
        return False
    val = np.array(case.params["val"])
    return bool(in_format(val, case.dtype) != in_format(in_format(val, "float32"), case.dtype))


def dirac_groups(shape: tuple[int, ...], p: dict, dtype: str) -> tuple[int, ...]:
    """The positive divisors of dim 0 up to 8 (any up to 3 for an empty dim 0)."""
    return tuple(g for g in range(1, 9) if shape[0] % g == 0) if shape[0] else (1, 2, 3)


def trunc_normal_means(shape: tuple[int, ...], p: dict, dtype: str) -> tuple[float, ...]:
    """Means at most 2 std outside [a, b] (inside it when std = 0), where torch's trunc_normal_
    does not warn; a when none of the usual ones is."""
    near = tuple(m for m in (0.0, 1.0, -0.5, 5.0) if p["a"] - 2 * p["std"] <= m <= p["b"] + 2 * p["std"])
    return near or (p["a"],)


def non_divisor(shape: tuple[int, ...], p: dict, dtype: str) -> int:
    """A groups count that does not divide dim 0."""
    return shape[0] + 1


def orthogonal_errors(case: Case, result: Result) -> dict[str, np.ndarray]:
    """``reference.init.orthogonal_error`` for every compared copy of the drawn matrix."""
    shape = case.inputs["tensor"].shape
    out = {}
    for name, value in result.tensors().items():
        if 0 not in shape:
            out[name] = ref.orthogonal_error(shape, case.params["gain"], value)
    return out


# -- known torch discrepancies (predicates of conformance/known/init.toml) ---------------------------------

def fill_checks_range_before_rounding(case: Case) -> bool:
    """constant_ with a finite val above the format's largest finite value that rounds to it: torch's
    fill raises (it checks the unrounded value), except on a one-element float16/bfloat16 tensor."""
    return (not case.invalid and case.dtype != "float64" and above_largest(case)
            and abs(case.params["val"]) > DTYPES[case.dtype].max_value
            and not (case.inputs["tensor"].size == 1 and case.dtype in ("float16", "bfloat16")))


def batched_fill_checks_range_before_rounding(case: Case) -> bool:
    """``fill_checks_range_before_rounding`` for a vmap case: the fill runs on the stacked tensor of
    every slice (batch × the slice's elements), so a one-element float16/bfloat16 slice no longer takes
    the one-element path that fills the rounded value: it raises like any other tensor."""
    node = case.mode_node
    if case.mode != "vmap" or node.get("kind") != "vmap" or int(node.get("batch", 1)) < 2:
        return False
    return (not case.invalid and case.dtype != "float64" and above_largest(case)
            and abs(case.params["val"]) > DTYPES[case.dtype].max_value)


def one_element_half_fill_overflows(case: Case) -> bool:
    """constant_ of a one-element float16/bfloat16 tensor with a val whose rounding overflows:
    torch fills inf instead of raising."""
    val = case.params["val"]
    return (case.invalid and case.dtype in ("float16", "bfloat16") and case.inputs["tensor"].size == 1
            and np.isfinite(val) and not np.isfinite(in_format(np.array(val), case.dtype)))


def dirac_empty_kernel(case: Case) -> bool:
    """dirac_ of a weight with an empty kernel dim while some group has a filter to set: torch
    indexes the missing centre and raises IndexError."""
    shape, groups = case.inputs["tensor"].shape, case.params["groups"]
    return 0 in shape[2:] and groups > 0 and min(shape[0] // groups, shape[1]) > 0


def orthogonal_view_fails(case: Case) -> bool:
    """orthogonal_ of a tensor whose trailing dims cannot be flattened as a view (permuted,
    channels_last or strided across them): torch's ``tensor.view_as(q)`` raises."""
    from conformance import strategies as S

    shape = case.inputs["tensor"].shape
    if len(shape) < 3 or 0 in shape:
        return False
    strides = S.torch_strides(shape, case.layout("tensor"))
    dims = [i for i in range(1, len(shape)) if shape[i] != 1]
    return any(strides[i] != strides[j] * shape[j] for i, j in zip(dims, dims[1:]))


def _sparse_zero_choices(case: Case) -> float:
    """log10 of C(rows, k)^cols, the number of zero patterns sparse_ chooses from (0: one pattern,
    no or all rows zero)."""
    rows, cols = case.inputs["tensor"].shape
    k = ref.zeros_per_column(rows, case.params["sparsity"])
    return cols * math.log10(math.comb(rows, k)) if 0 < k < rows and cols else 0.0


def sparse_zeros_surely_differ(case: Case) -> bool:
    """Two independent zero patterns of sparse_ coincide with probability at most 10^-6."""
    return _sparse_zero_choices(case) >= 6


def sparse_zeros_may_coincide(case: Case) -> bool:
    return 0 < _sparse_zero_choices(case) < 6


# -- parametrizations: the weight from the originals, its VJP, and its error analysis --------------------------

WEIGHT = "parametrizations.weight"


@dataclass(frozen=True)
class Parametrisation:
    """One of torch.nn.utils.parametrizations, as functions of a case (its originals and buffers
    under their attribute paths, its parameters in ``case.params``):

    - ``weight(case) -> (W, state)``: the weight the layer uses, and the buffers after the call;
    - ``vjp(case, G) -> {original: gradient}`` for the layer's gradient G of W;
    - ``errors(case, G, B_G) -> {"weight": (relative, absolute), original or "state.<buffer>": bound}``
      in units of u (B_G: the bound of G's error, units of u; G None: the weight's only);
    - ``check(case)``: raises for the rules the function enforces.
    """

    weight: Callable[[Case], tuple[np.ndarray, dict[str, np.ndarray]]]
    vjp: Callable[[Case, np.ndarray], dict[str, np.ndarray]]
    errors: Callable[[Case, np.ndarray | None, np.ndarray | None], dict]
    check: Callable[[Case], None] = lambda case: None


def _module_transposed(case: Case) -> bool:
    return case.params["module"].startswith("ConvTranspose")


def _wn_weight(case: Case) -> tuple[np.ndarray, dict]:
    from reference import parametrizations as P

    return P.weight_norm(case.inputs[f"{WEIGHT}.original1"], case.inputs[f"{WEIGHT}.original0"],
                         case.params["dim"]), {}


def _wn_vjp(case: Case, grad_w: np.ndarray) -> dict[str, np.ndarray]:
    from reference import functional as RF

    g = RF.vjp("weight_norm", case.inputs[f"{WEIGHT}.original1"], case.inputs[f"{WEIGHT}.original0"],
               case.params["dim"], cotangent=grad_w)
    return {f"{WEIGHT}.original0": g["g"], f"{WEIGHT}.original1": g["v"]}


def _wn_errors(case: Case, grad_w: np.ndarray | None, grad_w_error: np.ndarray | None) -> dict:
    from reference import parametrizations as P

    e = P.weight_norm_errors(case.inputs[f"{WEIGHT}.original1"], case.inputs[f"{WEIGHT}.original0"],
                             case.params["dim"], grad_w, grad_w_error)
    out: dict = {"weight": (e["weight"], 0.0)}
    if grad_w is not None:
        out.update({f"grad.{WEIGHT}.original0": e["g"], f"grad.{WEIGHT}.original1": e["v"]})
    return out


def _wn_check(case: Case) -> None:
    from reference import parametrizations as P

    P.norm_axes(case.inputs[f"{WEIGHT}.original1"].ndim, case.params["dim"])


def _sn_dim(case: Case) -> int:
    from conformance.strategies.init import spectral_dim

    return spectral_dim(case.params["dim"], case.inputs[f"{WEIGHT}.original"].ndim, _module_transposed(case))


def _sn_uv(case: Case) -> tuple[np.ndarray, np.ndarray]:
    from reference import parametrizations as P

    u, v = case.inputs[f"{WEIGHT}.0._u"], case.inputs[f"{WEIGHT}.0._v"]
    if not case.train:
        return u, v
    p = case.params
    return P.power_iteration(case.inputs[f"{WEIGHT}.original"], u, v, p["n_power_iterations"], p["eps"], _sn_dim(case))


def _sn_weight(case: Case) -> tuple[np.ndarray, dict]:
    from reference import parametrizations as P

    u, v = _sn_uv(case)
    w = P.spectral_normalize(case.inputs[f"{WEIGHT}.original"], u, v, _sn_dim(case))
    return w, {f"{WEIGHT}.0._u": u, f"{WEIGHT}.0._v": v}


def _sn_vjp(case: Case, grad_w: np.ndarray) -> dict[str, np.ndarray]:
    from reference import functional as RF

    u, v = _sn_uv(case)
    return {f"{WEIGHT}.original": RF.vjp("spectral_normalize", case.inputs[f"{WEIGHT}.original"], u, v,
                                         _sn_dim(case), cotangent=grad_w)["weight"]}


def _sn_errors(case: Case, grad_w: np.ndarray | None, grad_w_error: np.ndarray | None) -> dict:
    from reference import parametrizations as P

    p = case.params
    e = P.spectral_norm_errors(case.inputs[f"{WEIGHT}.original"], case.inputs[f"{WEIGHT}.0._u"],
                               case.inputs[f"{WEIGHT}.0._v"], p["n_power_iterations"], p["eps"], _sn_dim(case),
                               case.train, grad_w, grad_w_error)
    out: dict = {"weight": (e["weight"], 0.0), f"state.{WEIGHT}.0._u": e["u"], f"state.{WEIGHT}.0._v": e["v"]}
    if grad_w is not None:
        out[f"grad.{WEIGHT}.original"] = e["weight.grad"]
    return out


def _sn_check(case: Case) -> None:
    w = case.inputs[f"{WEIGHT}.original"]
    dim = case.params["dim"]
    if dim is not None and not -w.ndim <= dim < w.ndim:
        raise IndexError(f"spectral_norm: dim {dim} out of range for {w.ndim} dims")
    if case.params["n_power_iterations"] <= 0:
        raise ValueError("spectral_norm: n_power_iterations must be positive")


def _orth_args(case: Case) -> tuple[np.ndarray, str, np.ndarray | None]:
    from conformance.strategies.init import orthogonal_kind

    x = case.inputs[f"{WEIGHT}.original"]
    return x, orthogonal_kind(case.params["orthogonal_map"], x.shape), case.inputs.get(f"{WEIGHT}.0.base")


def _orth_weight(case: Case) -> tuple[np.ndarray, dict]:
    from reference import parametrizations as P

    return P.orthogonal(*_orth_args(case)), {}


def _orth_vjp(case: Case, grad_w: np.ndarray) -> dict[str, np.ndarray]:
    from reference import functional as RF

    return {f"{WEIGHT}.original": RF.vjp("orthogonal", *_orth_args(case), cotangent=grad_w)["X"]}


def _orth_errors(case: Case, grad_w: np.ndarray | None, grad_w_error: np.ndarray | None) -> dict:
    from reference import parametrizations as P

    e = P.orthogonal_errors(*_orth_args(case), grad_w, grad_w_error)
    out: dict = {"weight": (0.0, e["weight"])}
    if grad_w is not None:
        out[f"grad.{WEIGHT}.original"] = e["X"]
    return out


def orthogonal_smooth(case: Case) -> bool:
    """Differentiable everywhere but through householder's diagonal (a sign, read with int())."""
    return _orth_args(case)[1] != "householder"


def _orth_check(case: Case) -> None:
    from reference import parametrizations as P

    if case.params["orthogonal_map"] not in (None, *P.ORTHOGONAL_MAPS):
        raise ValueError(f"orthogonal_map has to be one of {P.ORTHOGONAL_MAPS}")


WEIGHT_NORM = Parametrisation(_wn_weight, _wn_vjp, _wn_errors, _wn_check)
SPECTRAL_NORM = Parametrisation(_sn_weight, _sn_vjp, _sn_errors, _sn_check)
ORTHOGONAL = Parametrisation(_orth_weight, _orth_vjp, _orth_errors, _orth_check)


# torch.matrix_exp's Taylor-degree thresholds on ‖A‖₁ (degrees 1, 2, 4, 8, 12, 18; then scaling and
# squaring with degree 18), from aten/src/ATen/native/LinearAlgebra.cpp: its degree-8 evaluation
# is inaccurate (errors growing like ‖A‖₁⁵ up to ~10⁶ ulps in float64 at the top of its range).
MATRIX_EXP_DEGREE_8 = {"float64": (3.397168839976962e-04, 4.991228871115323e-02),
                       "float32": (5.116619363445086e-02, 5.800524627688768e-01)}


def _matrix_exp_case(case: Case) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(the skew matrices A of an orthogonal(matrix_exp) case, the cotangents of exp(A) when its
    backward runs), or None for another map."""
    from reference import parametrizations as P

    x, kind, base = _orth_args(case)
    if kind != "matrix_exp":
        return None
    tall, transposed = P.tall_view(np.asarray(x, dtype=np.float64))
    a = P.skew_from(tall)
    if not case.cotangents:
        return a, None

    result = spec_of(case).evaluate(case, case.cotangents)
    g = result.meta["layer grads"]["weight"]
    g = np.swapaxes(g, -1, -2) if transposed else g
    if base is not None:
        g = np.swapaxes(base, -1, -2) @ g
    full = np.zeros(a.shape)
    full[..., : tall.shape[-1]] = g
    return a, full


def matrix_exp_degree_8(case: Case) -> bool:
    """orthogonal(matrix_exp) in float32/float64 whose forward exp(A) or backward exp([[Aᵀ, G], [0, Aᵀ]])
    (torch differentiates a matrix function through the exponential of that block matrix) has a
    1-norm in matrix_exp's degree-8 range."""
    band = MATRIX_EXP_DEGREE_8.get(case.dtype)
    found = _matrix_exp_case(case) if band else None
    if found is None:
        return False
    a, g = found
    norms = [np.max(np.sum(np.abs(a), axis=-2), axis=-1)]
    if g is not None:
        norms.append(np.max(np.sum(np.abs(a), axis=-2) + np.sum(np.abs(g), axis=-2), axis=-1))
    return any(bool(np.any((band[0] < n) & (n <= band[1]))) for n in norms)


def orthogonal_matrix_exp_half(case: Case) -> bool:
    """orthogonal with the matrix_exp map in float16/bfloat16 on matrices of 2 or more rows (in the
    tall view): torch's matrix_exp and its backward return garbage there."""
    x, kind, _ = _orth_args(case)
    return case.dtype in ("float16", "bfloat16") and kind == "matrix_exp" and max(x.shape[-2:]) >= 2


def orthogonal_matrix_exp_half_1x1(case: Case) -> bool:
    """The same on 1 x 1 matrices, where A = 0: the forward is right, and the backward's garbage
    cancels in X - Xᵀ unless it is ±inf or NaN."""
    x, kind, _ = _orth_args(case)
    return case.dtype in ("float16", "bfloat16") and kind == "matrix_exp" and max(x.shape[-2:]) == 1


def spectral_grad_comparator(spec: LayerSpec, case: Case, name: str, result: Result, got: Result) -> Comparison:
    """dL/dW of spectral_norm as torch's autograd forms it: G/σ - Σ(G·W/σ²)·u vᵀ, through W/σ² in the
    weight's format. Where max|W|/σ² or |Σ G·W|/σ² exceeds the format's largest finite value the
    intermediate overflows and an element may come out ±inf or NaN: such elements are accepted
    (the finite ones are judged as usual)."""
    from conformance.tolerance import magnitudes

    expected = np.asarray(result.tensors()[name], dtype=np.float64)
    value = got.tensors().get(name)
    w = case.inputs[f"{WEIGHT}.original"]
    u, v = _sn_uv(case)
    from reference import parametrizations as P

    sigma = float(u @ P.weight_matrix(w, _sn_dim(case)) @ v)
    grad_w = result.meta.get("layer grads", {}).get("weight", np.zeros_like(w))
    top = DTYPES[case.dtype].max_value
    with np.errstate(all="ignore"):
        overflow = max(float(np.max(np.abs(w), initial=0.0)), abs(float(np.sum(grad_w * w)))) / sigma**2 > top
    if overflow and value is not None and np.shape(value) == expected.shape:
        expected = np.where(np.isfinite(value), expected, value)
    absref = magnitudes(spec, case, result)[name]
    return compare_tensor(spec, case, name, expected, value, got.dtypes.get(name), absref)


def lazy_instance_norm_unbatched(case: Case) -> bool:
    """A Lazy InstanceNorm's unbatched input (C, *spatial) with something to materialise (affine
    parameters or running statistics): torch infers num_features from dim 1 instead of dim 0."""
    x = case.inputs["input"]
    return x.ndim == (spec_of(case).dims or 1) + 1 and bool(case.params.get("affine") or
                                                            case.params.get("track_running_stats"))


def instance_norm_runs(case: Case) -> bool:
    """An InstanceNorm case whose call gets past torch's own checks: not a Lazy InstanceNorm's
    unbatched input (``lazy_instance_norm_unbatched``) whose dims 0 and 1 differ (num_features is
    taken from dim 1, then checked against dim 0: torch raises)."""
    shape = case.inputs["input"].shape
    return not (spec_of(case).family == "lazy" and lazy_instance_norm_unbatched(case) and shape[0] != shape[1])


def orthogonal_cayley_reverse_over_forward(case: Case) -> bool:
    """A vjp2 case of orthogonal with the Cayley map (Q = solve(I - A/2, I + A/2)) run as
    ``torch.func.grad`` of ``torch.func.jvp``: torch's forward-mode rule of linalg.solve reuses the
    primal's LU factors, which carry no autograd history, so reverse-mode through that rule drops
    the dependence of A⁻¹ on A (pytorch/pytorch#192540)."""
    from conformance.modes import reverse_over_forward

    return reverse_over_forward(case) and _orth_args(case)[1] == "cayley"


def weight_norm_double_backward(case: Case) -> bool:
    """A vjp2 case of parametrizations.weight_norm differentiated by double backward (the only
    composition torch supports for it: torch._weight_norm has no forward-mode rule): the backward of
    torch._weight_norm_interface's backward treats the saved norms as constants."""
    return case.mode_node.get("composition") == "reverse-over-reverse"


def _weight_norm_differentiable_backward_overflows(case: Case) -> bool:
    """torch's _weight_norm_differentiable_backward (weight_norm's backward when grad mode is on:
    create_graph=True, torch.func) forms, in the weight's format, G∘v, its sums S = Σ G∘v over the
    norm axes and ‖v‖², and only then divides by ‖v‖ (S/‖v‖ is grad g, S/‖v‖² scales v in grad v).
    True when one of them is out of the format's range (in float64, with G the reference's layer
    gradient of the weight), although the gradients themselves may be in range."""
    from reference import parametrizations as P

    top = DTYPES[case.dtype].max_value
    if top >= DTYPES["float32"].max_value or not case.cotangents:
        return False
    v = np.asarray(case.inputs[f"{WEIGHT}.original1"], dtype=np.float64)
    grads = spec_of(case).evaluate(case, case.cotangents).meta.get("layer grads", {})
    if "weight" not in grads:
        return False
    g = np.asarray(grads["weight"], dtype=np.float64)
    axes = P.norm_axes(v.ndim, case.params["dim"])
    gv = g * v
    return bool(max(np.max(np.abs(gv), initial=0.0), np.max(np.abs(np.sum(gv, axis=axes)), initial=0.0),
                    np.max(np.sum(v * v, axis=axes), initial=0.0)) > top)


def weight_norm_vmap_backward_overflows(case: Case) -> bool:
    """A vmap case of weight_norm some slice of which (``VmapMode.slice_case``) overflows in torch's
    differentiable backward (``_weight_norm_differentiable_backward_overflows``): torch.func runs
    the backward with grad mode on."""
    from conformance.modes import mode_of

    node = case.mode_node
    if node.get("kind") != "vmap":
        return _weight_norm_differentiable_backward_overflows(case)
    vmap = mode_of("vmap")
    return any(_weight_norm_differentiable_backward_overflows(vmap.slice_case(case, b))
               for b in range(int(node.get("batch", 1))))
