"""``torch.nn.init`` in float64 NumPy: the gains and fans, the deterministic fills, the random
initialisers as samplers of their documented distributions, and what a conformance test needs
to judge a drawn tensor (the distribution of each element and the error of a sample).

Conventions (torch's documentation and ``torch.nn.init``'s code):

- Fans of a weight of shape (out, in, *k): fan_in = in·∏k, fan_out = out·∏k (fewer than 2 dims:
  ValueError). ``mode`` is ``'fan_in'`` or ``'fan_out'`` (case-insensitive, as torch lowercases it).
- ``calculate_gain``: 1 for the linear and convolution names and sigmoid, 5/3 for tanh, √2 for relu,
  √(2/(1 + s²)) for leaky_relu (s = param, default 0.01; a bool or a non-number param is a
  ValueError), 3/4 for selu; anything else is a ValueError.
- Every function returns a new array (the tensor's shape; its values are ignored) instead of
  filling its argument in place; a random initialiser draws with ``generator`` (a NumPy
  ``Generator``) from the documented distribution: U(a, b); N(mean, std²); N(mean, std²)
  truncated to [a, b]; Xavier U(±gain·√(6/(fan_in + fan_out))) and N(0, gain²·2/(fan_in + fan_out));
  Kaiming U(±gain·√(3/fan)) and N(0, gain²/fan) with gain = calculate_gain(nonlinearity, a); a Haar
  (semi-)orthogonal matrix times gain (rows vs the flattened trailing dims); sparse: N(0, std²)
  with exactly ceil(sparsity·rows) zeros in every column at uniformly random rows.
- Zero-element tensors: the Kaiming initialisers and ``orthogonal_`` leave them as they are (torch
  warns "a no-op"); the others return an empty array.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reference.libm import normal_cdf
from reference.registry import functional

LINEAR_NAMES = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
NONLINEARITIES = (*LINEAR_NAMES, "sigmoid", "tanh", "relu", "leaky_relu", "selu")
FAN_MODES = ("fan_in", "fan_out")


# -- gains and fans ---------------------------------------------------------------------------------

@functional()
def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain of a nonlinearity: 1 (linear, conv*, conv_transpose*, sigmoid), 5/3
    (tanh), √2 (relu), √(2/(1 + s²)) (leaky_relu, s = param or 0.01), 3/4 (selu). ``param`` is read
    by leaky_relu only; there it must be an int or a float, not a bool (ValueError). An unknown
    nonlinearity is a ValueError."""
    if nonlinearity in LINEAR_NAMES or nonlinearity == "sigmoid":
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = param
        else:
            raise ValueError(f"negative_slope {param!r} not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def calculate_fan_in_and_fan_out(shape: Sequence[int]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of ``shape`` (out, in, *k): (in·∏k, out·∏k)."""
    if len(shape) < 2:
        raise ValueError("fan in and fan out can not be computed for a tensor with fewer than 2 dimensions")
    receptive = math.prod(shape[2:])
    return int(shape[1]) * receptive, int(shape[0]) * receptive


def correct_fan(shape: Sequence[int], mode: str) -> int:
    """fan_in or fan_out of ``shape`` as ``mode`` says (case-insensitive; anything else: ValueError)."""
    mode = mode.lower()
    if mode not in FAN_MODES:
        raise ValueError(f"mode {mode!r} not supported, please use one of {list(FAN_MODES)}")
    fan_in, fan_out = calculate_fan_in_and_fan_out(shape)
    return fan_in if mode == "fan_in" else fan_out


def xavier_std(shape: Sequence[int], gain: float = 1.0) -> float:
    """gain·√(2/(fan_in + fan_out)) (ValueError when both fans are 0)."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(shape)
    if fan_in + fan_out == 0:
        raise ValueError("xavier: fan_in + fan_out is 0")
    return gain * math.sqrt(2.0 / float(fan_in + fan_out))


def kaiming_std(shape: Sequence[int], a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> float:
    """calculate_gain(nonlinearity, a)/√fan."""
    fan = correct_fan(shape, mode)
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


# -- deterministic fills ----------------------------------------------------------------------------

@functional()
def constant_(tensor: np.ndarray, val: float) -> np.ndarray:
    """An array of ``tensor``'s shape filled with ``val`` (±0, ±inf and NaN included; rounding to a
    narrower format is the caller's: see ``correctly_rounded``)."""
    return np.full(np.shape(tensor), float(val))


@functional()
def ones_(tensor: np.ndarray) -> np.ndarray:
    """An array of ``tensor``'s shape filled with 1."""
    return np.ones(np.shape(tensor))


@functional()
def zeros_(tensor: np.ndarray) -> np.ndarray:
    """An array of ``tensor``'s shape filled with +0."""
    return np.zeros(np.shape(tensor))


@functional()
def eye_(tensor: np.ndarray) -> np.ndarray:
    """The (rows, cols) identity: 1 where i == j, else +0, for a 2-d ``tensor`` of any shape
    (anything else: ValueError)."""
    if np.ndim(tensor) != 2:
        raise ValueError("eye_: only tensors with 2 dimensions are supported")
    return np.eye(*np.shape(tensor))


@functional()
def dirac_(tensor: np.ndarray, groups: int = 1) -> np.ndarray:
    """The Dirac delta of a convolution weight (out, in, *k), 3 to 5 dims: zeros, and for each
    group g and d < min(out/groups, in) a 1 at [g·out/groups + d, d, k₁//2, ...]. ``groups`` must be
    a positive divisor of out (ValueError otherwise). An empty tensor stays empty."""
    shape = np.shape(tensor)
    if len(shape) not in (3, 4, 5):
        raise ValueError("dirac_: only tensors with 3, 4, or 5 dimensions are supported")
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"dirac_: groups must be a positive integer, got {groups!r}")
    if shape[0] % groups:
        raise ValueError("dirac_: dim 0 must be divisible by groups")
    out = np.zeros(shape)
    if out.size == 0:  # nothing to set (an empty kernel has no centre to hold the 1)
        return out
    per_group = shape[0] // groups
    g, d = np.meshgrid(np.arange(groups), np.arange(min(per_group, shape[1])), indexing="ij")
    centre = tuple(np.full(g.size, s // 2) for s in shape[2:])
    out[((g * per_group + d).ravel(), d.ravel()) + centre] = 1.0
    return out


def correctly_rounded(x: np.ndarray, precision: int, min_exponent: int) -> np.ndarray:
    """``x`` rounded to nearest (ties to even) in a binary format of ``precision`` significand bits
    whose smallest normal is 2^min_exponent (subnormals below it), in one rounding; the range's top
    is the caller's (a finite value beyond it is an error for a fill). float64 is the identity."""
    x = np.asarray(x, dtype=np.float64)
    finite = np.isfinite(x) & (x != 0)
    _, exponent = np.frexp(np.where(finite, x, 1.0))  # x = m·2^e, 1/2 <= |m| < 1
    quantum = np.exp2(np.maximum(exponent, min_exponent + 1) - precision)
    return np.where(finite, np.round(np.where(finite, x, 0.0) / quantum) * quantum, x)


# -- random initialisers: samplers of the documented distributions -------------------------------------

def _rng(generator: np.random.Generator | None) -> np.random.Generator:
    return generator if generator is not None else np.random.default_rng()


@functional()
def uniform_(tensor: np.ndarray, a: float = 0.0, b: float = 1.0,
             generator: np.random.Generator | None = None) -> np.ndarray:
    """Values drawn from U(a, b) (a == b: all a; a > b: ValueError)."""
    if a > b:
        raise ValueError(f"uniform_: a = {a} > b = {b}")
    return a + (b - a) * _rng(generator).random(np.shape(tensor))


@functional()
def normal_(tensor: np.ndarray, mean: float = 0.0, std: float = 1.0,
            generator: np.random.Generator | None = None) -> np.ndarray:
    """Values drawn from N(mean, std²) (std = 0: all mean; std < 0: ValueError)."""
    if std < 0:
        raise ValueError(f"normal_: std = {std} < 0")
    return mean + std * _rng(generator).standard_normal(np.shape(tensor))


@functional()
def trunc_normal_(tensor: np.ndarray, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0,
                  generator: np.random.Generator | None = None) -> np.ndarray:
    """Values drawn from N(mean, std²) conditioned on [a, b] ("values outside [a, b] redrawn until
    they are within the bounds"). a > b or std < 0: ValueError; std = 0: all mean, which must
    lie in [a, b]; a == b: all a. Rejection sampling, vectorised over the elements still pending:
    normal proposals when [a, b] holds more than 30 % of the mass, else uniform proposals on
    [a, b] accepted with probability exp(-(z² - z_mode²)/2)."""
    check_trunc_normal(mean, std, a, b)
    rng, shape = _rng(generator), np.shape(tensor)
    if std == 0 or a == b:
        return np.full(shape, float(mean if std == 0 else a))
    out = np.zeros(shape).reshape(-1)
    pending = np.arange(out.size)
    wide = TruncatedNormal(mean, std, a, b).mass > 0.3
    mode = min(max(mean, a), b)
    while pending.size:  # each round draws one candidate per element still pending
        if wide:
            draw = mean + std * rng.standard_normal(pending.size)
            accept = (draw >= a) & (draw <= b)
        else:
            draw = rng.uniform(a, b, pending.size)
            log_ratio = -0.5 * (((draw - mean) / std) ** 2 - ((mode - mean) / std) ** 2)
            accept = np.log(rng.random(pending.size)) <= log_ratio
        out[pending[accept]] = draw[accept]
        pending = pending[~accept]
    return out.reshape(shape)


def check_trunc_normal(mean: float, std: float, a: float, b: float) -> None:
    """The parameters torch's documentation allows: a <= b, std >= 0 (std = 0 with mean in [a, b])."""
    if a > b:
        raise ValueError(f"trunc_normal_: a = {a} > b = {b}")
    if std < 0:
        raise ValueError(f"trunc_normal_: std = {std} < 0")
    if std == 0 and not a <= mean <= b:
        raise ValueError("trunc_normal_: std = 0 with mean outside [a, b] never lands in [a, b]")


@functional()
def xavier_uniform_(tensor: np.ndarray, gain: float = 1.0, generator: np.random.Generator | None = None) -> np.ndarray:
    """U(-a, a) with a = gain·√(6/(fan_in + fan_out)) (= √3 times Xavier's std)."""
    bound = math.sqrt(3.0) * xavier_std(np.shape(tensor), gain)
    return uniform_(tensor, -bound, bound, generator)


@functional()
def xavier_normal_(tensor: np.ndarray, gain: float = 1.0, generator: np.random.Generator | None = None) -> np.ndarray:
    """N(0, std²) with std = gain·√(2/(fan_in + fan_out))."""
    return normal_(tensor, 0.0, xavier_std(np.shape(tensor), gain), generator)


@functional()
def kaiming_uniform_(tensor: np.ndarray, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                     generator: np.random.Generator | None = None) -> np.ndarray:
    """U(-bound, bound), bound = √3·gain/√fan (gain of ``nonlinearity`` with param ``a``; fan as
    ``mode`` says). A zero-element tensor is returned unchanged."""
    if 0 in np.shape(tensor):
        return np.array(tensor, dtype=np.float64, copy=True)
    bound = math.sqrt(3.0) * kaiming_std(np.shape(tensor), a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound, generator)


@functional()
def kaiming_normal_(tensor: np.ndarray, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    generator: np.random.Generator | None = None) -> np.ndarray:
    """N(0, std²), std = gain/√fan. A zero-element tensor is returned unchanged."""
    if 0 in np.shape(tensor):
        return np.array(tensor, dtype=np.float64, copy=True)
    return normal_(tensor, 0.0, kaiming_std(np.shape(tensor), a, mode, nonlinearity), generator)


def flat_shape(shape: Sequence[int]) -> tuple[int, int]:
    """(rows, cols) that ``orthogonal_`` works in: dim 0 against the flattened trailing dims."""
    if len(shape) < 2:
        raise ValueError("orthogonal_: only tensors with 2 or more dimensions are supported")
    return int(shape[0]), math.prod(shape[1:])


@functional()
def orthogonal_(tensor: np.ndarray, gain: float = 1.0, generator: np.random.Generator | None = None) -> np.ndarray:
    """gain·Q, Q Haar-distributed with orthonormal columns (rows >= cols) or rows (rows < cols), in
    the (rows, ∏trailing) view of ``tensor``: the QR factor of a Gaussian matrix with the signs of
    R's diagonal moved into Q (Mezzadri 2007). Fewer than 2 dims: ValueError; zero elements:
    returned unchanged."""
    shape = np.shape(tensor)
    rows, cols = flat_shape(shape)
    if rows * cols == 0:
        return np.array(tensor, dtype=np.float64, copy=True)
    g = _rng(generator).standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(g)
    q = q * np.where(np.diag(r) < 0, -1.0, 1.0)
    return gain * (q if rows >= cols else q.T).reshape(shape)


@functional()
def sparse_(tensor: np.ndarray, sparsity: float, std: float = 0.01,
            generator: np.random.Generator | None = None) -> np.ndarray:
    """A 2-d (rows, cols) array of N(0, std²) values with exactly ceil(sparsity·rows) zeros in every
    column, at rows chosen uniformly at random. ``sparsity`` is a fraction in [0, 1] and std >= 0
    (ValueError otherwise, as for a tensor that is not 2-d)."""
    if np.ndim(tensor) != 2:
        raise ValueError("sparse_: only tensors with 2 dimensions are supported")
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparse_: sparsity {sparsity} is not a fraction in [0, 1]")
    rng = _rng(generator)
    rows, cols = np.shape(tensor)
    values = normal_(tensor, 0.0, std, rng)
    ranks = np.argsort(np.argsort(rng.random((rows, cols)), axis=0), axis=0)
    return np.where(ranks < zeros_per_column(rows, sparsity), 0.0, values)


def zeros_per_column(rows: int, sparsity: float) -> int:
    """ceil(sparsity·rows): how many zeros ``sparse_`` puts in every column."""
    return math.ceil(sparsity * rows)


# -- the drawn values' distributions ---------------------------------------------------------------

@dataclass(frozen=True)
class Uniform:
    """U(lo, hi) (lo == hi: a point mass)."""

    lo: float
    hi: float

    def cdf(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.hi == self.lo:
            return (x >= self.lo).astype(np.float64)
        return np.clip((x - self.lo) / (self.hi - self.lo), 0.0, 1.0)


@dataclass(frozen=True)
class Normal:
    """N(mean, std²), std > 0."""

    mean: float
    std: float

    def cdf(self, x: np.ndarray) -> np.ndarray:
        return normal_cdf((np.asarray(x, dtype=np.float64) - self.mean) / self.std)


@dataclass(frozen=True)
class TruncatedNormal:
    """N(mean, std²) conditioned on [a, b], std > 0, a < b. The CDF is formed from upper-tail
    probabilities when [a, b] lies above the mean (no cancellation of Φ near 1)."""

    mean: float
    std: float
    a: float
    b: float

    @property
    def mass(self) -> float:
        """P(a <= X <= b) for X ~ N(mean, std²)."""
        return float(self._between(self.a, self.b))

    def _between(self, lo: float, hi: np.ndarray | float) -> np.ndarray:
        za, zb = (lo - self.mean) / self.std, (np.asarray(hi, dtype=np.float64) - self.mean) / self.std
        if za > 0:  # both above the mean: Φ(-za) - Φ(-zb)
            return normal_cdf(-za) - normal_cdf(-zb)
        return normal_cdf(zb) - normal_cdf(za)

    def cdf(self, x: np.ndarray) -> np.ndarray:
        x = np.clip(np.asarray(x, dtype=np.float64), self.a, self.b)
        with np.errstate(invalid="ignore", divide="ignore"):
            below = self._between(self.a, np.append(x.reshape(-1), self.b))  # the mass is the last one
            return np.clip(below[:-1] / below[-1], 0.0, 1.0).reshape(x.shape)

    def shifted(self, da: float, db: float) -> TruncatedNormal:
        return TruncatedNormal(self.mean, self.std, self.a + da, self.b + db)


# -- error model of a drawn value -------------------------------------------------------------------

def uniform_sample_error(lo: float, hi: float, y: np.ndarray, u: float, u_acc: float) -> np.ndarray:
    """|y - X| for a value y drawn from U(lo, hi) as lo + (hi - lo)·r, with r a uniform on the
    accumulation format's grid (spacing u_acc: |r - U| <= u_acc), evaluated there (three roundings)
    and rounded to the tensor's format (u): u·|y| + u_acc·(3·|lo| + 4·|hi - lo|), X the ideal draw."""
    return u * np.abs(y) + u_acc * (3 * abs(lo) + 4 * abs(hi - lo))


def normal_sample_error(mean: float, std: float, y: np.ndarray, u: float, u_acc: float) -> np.ndarray:
    """|y - X| for a value y of N(mean, std²) drawn by Box–Muller in the accumulation format,
    mean + std·√(-2 ln r₁)·cos(2π r₂): the uniforms are on the grid u_acc (so the radius is at most
    ρ = √(2 ln(1/u_acc))), ln, √, cos and the products cost 8 roundings relative to |y - mean|, the
    angle's roundings 2π·ρ + 4 absolute (times std), the sum one of |mean|; then the rounding to the
    tensor's format: u·|y| + u_acc·(8·|y - mean| + (2πρ + 4)·std + |mean|)."""
    rho = math.sqrt(2 * math.log(1 / u_acc))
    return u * np.abs(y) + u_acc * (8 * np.abs(y - mean) + (2 * math.pi * rho + 4) * std + abs(mean))


def grid_mass(u_acc: float, uniforms: int) -> float:
    """Probability a sampler built on ``uniforms`` uniforms of grid spacing u_acc cannot resolve
    (its draws are rounded to that grid, so each one's law is off by at most its spacing)."""
    return uniforms * u_acc


# -- structure of a drawn orthogonal matrix --------------------------------------------------------

def nearest_semi_orthogonal(values: np.ndarray, gain: float) -> np.ndarray:
    """gain·(the nearest matrix with orthonormal columns or rows) to values/gain in the (rows,
    ∏trailing) view, by the SVD's polar factor U·Vᵀ; ``values`` shaped as given."""
    shape = np.shape(values)
    rows, cols = flat_shape(shape)
    if rows * cols == 0 or gain == 0:
        return np.zeros(shape)
    u, _, vt = np.linalg.svd(np.asarray(values, dtype=np.float64).reshape(rows, cols) / gain, full_matrices=False)
    return gain * (u @ vt).reshape(shape)


def orthogonal_error(shape: Sequence[int], gain: float, values: np.ndarray) -> np.ndarray:
    """Error bound (units of u, elementwise) of a drawn gain·Q against the polar factor of itself:
    Householder QR of the (max, min) Gaussian matrix leaves ‖QᵀQ - I‖₂ <= m·n·u to first order
    (Higham, Accuracy and Stability, §19.3), which bounds ‖Q - polar(Q)‖₂ and so each element; the
    sign flip is exact and the product by gain one more rounding: m·n·|gain| + |value|."""
    rows, cols = flat_shape(shape)
    return rows * cols * abs(gain) + np.abs(values)
