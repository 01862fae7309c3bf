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
