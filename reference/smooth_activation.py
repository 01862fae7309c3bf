"""Smooth activations: tanh, sigmoid's analysis (``reference.libm.sigmoid`` is the function),
logsigmoid, softplus, tanhshrink, softsign, gelu (exact and tanh approximation), silu, mish and glu,
with their VJPs and first-order error analyses, registered under their ``torch.nn.functional``
names.

Every function but glu is elementwise on an array of any shape (0-d allowed); glu halves its input
along ``dim``. The references are computed in forms that neither overflow nor cancel in float64
(sigmoid by the sign of x, log-sigmoid as min(x, 0) - log1p(exp(-|x|)), GELU's Φ through erfc,
softplus as max(t, 0) + log1p(exp(-|t|))), so that they stay accurate where the textbook formulas a
backend may use do not. At ±inf every function and derivative takes its limit (GELU(-inf) = 0,
Softsign(±inf) = ±1, SiLU(-inf) = Mish(-inf) = 0); NaN propagates through both. glu is a product of
two inputs and follows IEEE arithmetic (inf·0 = NaN).

Error analyses (``*_error(input, output, cotangent, u, tiny, **parameters)``, the family's one
signature, see ``reference.activation``) return per-element bounds in units of u (the unit
roundoff of the format the backend computes in), EXCLUDING the final rounding of the result,
which the tolerance engine adds as u·|ref|. They model the formula a backend computes (PyTorch's
unless stated): each libm call within ``LIBM_ULPS`` units of u and exact ±1 once saturated
(``libm.saturating_error``), each arithmetic operation rounded once, and each constant or Python
float parameter rounded once to the format. Where a formula cancels, the bound is in the magnitude
of the cancelling terms, so the textbook formula conforms: the declaration says so.
"""

from __future__ import annotations

import math

import numpy as np

from reference.libm import LIBM_ULPS, erfc, normal_cdf, normal_pdf, saturating_error, sigmoid
from reference.registry import functional

_L = LIBM_ULPS
Array = np.ndarray


def _example(**params):
    """A registry example: a 3×4 input of normals times 3."""
    return lambda rng: ((rng.standard_normal((3, 4)) * 3,), dict(params))


def _limits(x: Array, value: Array, at_pos_inf: float, at_neg_inf: float) -> Array:
    """``value`` with the limits of the function at ±inf."""
    return np.where(x == np.inf, at_pos_inf, np.where(x == -np.inf, at_neg_inf, value))


def _tanh_distance(x: Array) -> Array:
    """1 - |tanh(x)| = 2σ(-2|x|), without cancellation."""
    return 2.0 * sigmoid(-2.0 * np.abs(x))


def _errors(e_y: Array, g: Array | None, e_g) -> tuple[Array, Array | None]:
    """(E_y, E_g) with E_g evaluated only when there is a cotangent."""
    return (e_y, None) if g is None else (e_y, e_g())


# -- sigmoid (the function is reference.libm.sigmoid) -------------------------------------------------

def sigmoid_error(input: Array, output: Array, cotangent: Array | None, u: float,
                  tiny: float) -> tuple[Array, Array | None]:
    """y = 1/(1 + exp(-x)): exp (L), the addition and the division: E_y = (L + 1)·|y|.

    Backward from the output, g·y·(1 - y) (PyTorch): the computed y (E_y + |y|) moves y·(1 - y)
    by |1 - 2y| times that, plus two products: E = |g|·|1 - 2y|·(E_y + |y|) + 2|grad|. Near y = 1,
    1 - y cancels: the bound is absolute there (≈ (L + 2)·u·|g|), so a backend computing the
    derivative from x (relative error (L + 3)) conforms as well.
    """
    x, y, g = input, output, cotangent
    e_y = (_L + 1) * np.abs(y)

    def e_g():
        grad = np.abs(g * sigmoid(x) * sigmoid(-x))
        return np.maximum(np.abs(g) * np.abs(1 - 2 * y) * (e_y + np.abs(y)) + 2 * grad, (_L + 3) * grad)

    return _errors(e_y, g, e_g)


# -- tanh ------------------------------------------------------------------------------------------

def sech2(x: Array) -> Array:
    """sech²(x) to about one ulp: 1 - tanh² where tanh² < 1/4 (no cancellation there), else
    4σ(2x)σ(-2x) (no cancellation either; 0 at ±inf)."""
    t = np.tanh(x)
    return np.where(np.abs(x) < 0.5, 1 - t * t, 4 * sigmoid(2 * x) * sigmoid(-2 * x))


def _tanh_vjp(cotangent: Array, input: Array) -> dict[str, Array]:
    """{"input": g·sech²(x)} (0 at ±inf)."""
    return {"input": cotangent * sech2(input)}


@functional(vjp=_tanh_vjp, example=_example())
def tanh(input: Array) -> Array:
    """y = tanh(x), elementwise on any shape; ±1 at ±inf, NaN propagates."""
    return np.tanh(input)


def tanh_error(input: Array, output: Array, cotangent: Array | None, u: float,
               tiny: float) -> tuple[Array, Array | None]:
    """y = tanh(x): one libm call, E_y = L·|y| (exactly ±1 once saturated).

    Backward from the output, g·(1 - y²): the computed y moves 1 - y² by 2|y|·(E_y + |y|), plus the
    roundings of y² and of the subtraction: E = |g|·(2|y|·(E_y + |y|) + y² + |1 - y²|).
    """
    y, ay = output, np.abs(output)
    e_y = saturating_error(y, _tanh_distance(input), u)
    return _errors(e_y, cotangent, lambda: np.abs(cotangent) * (2 * ay * (e_y + ay) + ay * ay + np.abs(1 - y * y)))


# -- logsigmoid ------------------------------------------------------------------------------------

def _logsigmoid_vjp(cotangent: Array, input: Array) -> dict[str, Array]:
    """{"input": g·σ(-x)} (g at -inf, 0 at +inf)."""
    return {"input": cotangent * sigmoid(-input)}


@functional(vjp=_logsigmoid_vjp, example=_example())
def logsigmoid(input: Array) -> Array:
    """y = log σ(x) = min(x, 0) - log1p(exp(-|x|)): no overflow at either end (-inf at -inf, 0 at
    +inf); any shape."""
    with np.errstate(invalid="ignore"):
        return np.minimum(input, 0.0) - np.log1p(np.exp(-np.abs(input)))


def logsigmoid_error(input: Array, output: Array, cotangent: Array | None, u: float,
                     tiny: float) -> tuple[Array, Array | None]:
    """y = min(x, 0) - log1p(e), e = exp(-|x|): exp (L, propagated by e/(1 + e) ≤ 1) and log1p
    (L·ℓ, ℓ = log1p(e)); both terms are ≤ 0, so the subtraction does not cancel:
    E_y = L·(ℓ + e/(1 + e)).

    Backward g·(m - s·e/(1 + e)) (PyTorch: m = 1, s = 1 for x < 0, else m = 0, s = -1): the
    quotient carries (L + 2) roundings and the subtraction one, in the magnitude of its terms:
    E = |g|·(m + (L + 2)·e/(1 + e)).
    """
    x = input
    with np.errstate(invalid="ignore"):
        e = np.exp(-np.abs(x))
        q = e / (1 + e)
        e_y = _L * (np.log1p(e) + q)
    return _errors(e_y, cotangent, lambda: np.abs(cotangent) * (np.where(x < 0, 1.0, 0.0) + (_L + 2) * q))


# -- softplus --------------------------------------------------------------------------------------

def softplus_product(x: Array, beta: float) -> Array:
    """t = β·x, the quantity compared with the threshold (exact in float64 for inputs of up to 45
    significant bits and a β of up to 8)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return beta * x


def softplus_log_branch(x: Array, beta: float) -> Array:
    """log1p(exp(β·x))/β, computed as (max(t, 0) + log1p(exp(-|t|)))/β (no overflow)."""
    t = softplus_product(x, beta)
    with np.errstate(invalid="ignore", over="ignore"):
        return (np.maximum(t, 0.0) + np.log1p(np.exp(-np.abs(t)))) / beta


def _softplus_vjp(cotangent: Array, input: Array, beta: float = 1.0, threshold: float = 20.0) -> dict[str, Array]:
    """{"input": g where β·x > threshold, else g·σ(β·x)}."""
    t = softplus_product(input, beta)
    return {"input": np.where(t > threshold, cotangent, cotangent * sigmoid(t))}


@functional(vjp=_softplus_vjp, example=_example(beta=2.0, threshold=5.0))
def softplus(input: Array, beta: float = 1.0, threshold: float = 20.0) -> Array:
    """y = x where β·x > threshold (the linear branch, as documented), else log1p(exp(β·x))/β
    (never overflowing); any shape. The one softplus of the reference (losses import it)."""
    t = softplus_product(input, beta)
    return np.where(t > threshold, input, softplus_log_branch(input, beta))


def softplus_error(input: Array, output: Array, cotangent: Array | None, u: float, tiny: float,
                   beta: float = 1.0, threshold: float = 20.0) -> tuple[Array, Array | None]:
    """Linear branch: y = x exactly, E = 0 (gradient g exactly). Log branch, y = log1p(exp(t))/β:
    the rounding of t = β·x moves y by σ(t)·|x|, a rounded β by σ(t)·|x| + |y|, exp by L·σ(t)/β and
    log1p by L·|y|: E_y = 2σ(t)·|x| + (L + 1)·|y| + L·σ(t)/β (relative 2|t| where y ≈ e^t/β).

    Backward g·z/(z + 1), z = exp(t): the roundings of t and β move it by 2|t|·(1 - σ(t)) relatively,
    exp by L·(1 - σ(t)), the addition, division and product by 3: E = |grad|·((2|t| + L)·(1 - σ(t)) + 3).

    Near the switch point the branch itself depends on how β·x was rounded: the declaration
    accepts either branch there, so within 4u·|threshold| of it the log branch's bound applies.
    """
    x, y, g = input, output, cotangent
    t = softplus_product(x, beta)
    s = sigmoid(t)
    with np.errstate(invalid="ignore"):
        linear = (t > threshold) & ~(np.abs(t - threshold) <= 4 * u * abs(threshold))
    with np.errstate(invalid="ignore", over="ignore"):
        e_y = np.where(linear, 0.0, 2 * s * np.abs(x) + (_L + 1) * np.abs(y) + _L * s / beta)

        def e_g():
            grad = np.abs(_softplus_vjp(g, x, beta, threshold)["input"])
            return np.where(linear, 0.0, grad * ((2 * np.abs(t) + _L) * sigmoid(-t) + 3))

        return _errors(e_y, g, e_g)


# -- tanhshrink ------------------------------------------------------------------------------------

def _tanhshrink_vjp(cotangent: Array, input: Array) -> dict[str, Array]:
    """{"input": g·tanh²(x)}."""
    return {"input": cotangent * np.tanh(input) ** 2}


@functional(vjp=_tanhshrink_vjp, example=_example())
def tanhshrink(input: Array) -> Array:
    """y = x - tanh(x) (exact subtraction by Sterbenz where it cancels; ±inf at ±inf); any shape."""
    return input - np.tanh(input)


def tanhshrink_error(input: Array, output: Array, cotangent: Array | None, u: float,
                     tiny: float) -> tuple[Array, Array | None]:
    """y = x - tanh(x) computed directly (PyTorch): the error of tanh, E = L·|tanh(x)|, in the
    magnitude of the term: near 0, where y ≈ x³/3, the relative error is ≈ 3L/x² and conforms.

    Backward as autograd forms it, g - g·(1 - t²), t = tanh(x): the computed t moves 1 - t² by
    2|t|·(E_t + |t|), plus the roundings of t², of the subtraction and of the product; the final
    subtraction cancels near 0 (its terms are ≈ |g|): E = |g|·(2|t|·(E_t + |t|) + t² + 2|1 - t²|).
    """
    t = np.tanh(input)
    e_t = saturating_error(t, _tanh_distance(input), u)
    at = np.abs(t)
    return _errors(e_t, cotangent,
                   lambda: np.abs(cotangent) * (2 * at * (e_t + at) + at * at + 2 * np.abs(1 - t * t)))


# -- softsign --------------------------------------------------------------------------------------

def _softsign_vjp(cotangent: Array, input: Array) -> dict[str, Array]:
    """{"input": g/(1 + |x|)²} (0 at ±inf)."""
    with np.errstate(over="ignore"):
        return {"input": cotangent / (1 + np.abs(input)) ** 2}


@functional(vjp=_softsign_vjp, example=_example())
def softsign(input: Array) -> Array:
    """y = x/(1 + |x|); ±1 at ±inf (the limits); any shape."""
    with np.errstate(invalid="ignore"):
        return _limits(input, input / (1 + np.abs(input)), 1.0, -1.0)


def softsign_error(input: Array, output: Array, cotangent: Array | None, u: float,
                   tiny: float) -> tuple[Array, Array | None]:
    """y = x/b, b = 1 + |x|: E_y = |y| (the rounding of b).

    Backward as autograd forms it (PyTorch's softsign is x/(|x| + 1)): g/b - sign(x)·g·(x/b)/b, two
    terms T1 = |g|/b (2 roundings) and T2 = |g|·|y|/b (4 roundings) that cancel for large |x|:
    E = 2·T1 + 4·T2; the direct g/b² (3 roundings) is within it.
    """
    e_y = np.abs(output)

    def e_g():
        with np.errstate(over="ignore"):
            b = 1 + np.abs(input)
            ag = np.abs(cotangent)
            return 2 * ag / b + 4 * ag * np.abs(output) / b

    return _errors(e_y, cotangent, e_g)


# -- silu, mish ------------------------------------------------------------------------------------

def _silu_vjp(cotangent: Array, input: Array, inplace: bool = False) -> dict[str, Array]:
    """{"input": g·(σ(x) + x·σ(x)·σ(-x))}: 0 at -inf, g at +inf."""
    x = input
    with np.errstate(invalid="ignore"):
        deriv = sigmoid(x) + np.where(np.isfinite(x), x * sigmoid(x) * sigmoid(-x), 0.0)
    return {"input": cotangent * _limits(x, deriv, 1.0, 0.0)}


@functional(vjp=_silu_vjp, example=_example())
def silu(input: Array, inplace: bool = False) -> Array:
    """y = x·σ(x) (the swish); limits +inf at +inf and 0 at -inf (x·σ(x) read literally is
    -inf·0 = NaN there); any shape."""
    with np.errstate(invalid="ignore"):
        return _limits(input, input * sigmoid(input), np.inf, -0.0)


def silu_error(input: Array, output: Array, cotangent: Array | None, u: float, tiny: float,
               inplace: bool = False) -> tuple[Array, Array | None]:
    """y = x/(1 + exp(-x)) (PyTorch) or x·σ(x): exp (L, propagated by e/(1 + e) ≤ 1), the addition,
    and the product or division: E_y = (L + 1)·|y|.

    Backward (PyTorch) g·s·(1 + x·(1 - s)), s = σ(x) with error (L + 1)·s: 1 - s adds |1 - s|, the
    product x·(1 - s) |x·(1 - s)|, the sum |A| (A = 1 + x·(1 - s), which cancels near x ≈ -1.28: in
    the magnitude of its terms), the product g·s one more rounding of |grad|:
    E = |g|·s·((L + 3)·|A| + |x|·((L + 1)·s + 2·(1 - s))).

    σ(x) below the normal range is a subnormal of absolute error up to tiny (gradual underflow):
    |x|·tiny/u more in E_y, |g·A|·tiny/u in E (an exp(-x) that overflows, giving σ = 0 and y = 0
    where x·σ(x) is a normal number, does not conform).
    """
    x = input
    s, sn = sigmoid(x), sigmoid(-x)
    with np.errstate(invalid="ignore", over="ignore"):
        e_y = (_L + 1) * np.abs(output) + np.abs(x) * tiny / u

    def e_g():
        with np.errstate(invalid="ignore", over="ignore"):
            a = np.abs(1 + x * sn)
            return np.abs(cotangent) * (s * ((_L + 3) * a + np.abs(x) * ((_L + 1) * s + 2 * sn)) + a * tiny / u)

    return _errors(e_y, cotangent, e_g)


def _softplus_terms(x: Array) -> tuple[Array, Array, Array]:
    """(sp, t, W) = (softplus(x), tanh(sp), sech²(sp)), all without overflow or cancellation."""
    sp = softplus(x)
    return sp, np.tanh(sp), sech2(sp)


def _mish_vjp(cotangent: Array, input: Array, inplace: bool = False) -> dict[str, Array]:
    """{"input": g·(t + x·σ(x)·sech²(sp))}, sp = softplus(x), t = tanh(sp): 0 at -inf, g at +inf."""
    x = input
    _, t, w = _softplus_terms(x)
    with np.errstate(invalid="ignore"):
        deriv = t + np.where(np.isfinite(x), x * sigmoid(x) * w, 0.0)
    return {"input": cotangent * _limits(x, deriv, 1.0, 0.0)}


@functional(vjp=_mish_vjp, example=_example())
def mish(input: Array, inplace: bool = False) -> Array:
    """y = x·tanh(softplus(x)); limits +inf at +inf and 0 at -inf (x·tanh(log1p(exp(x))) read
    literally is -inf·0 = NaN there); any shape."""
    _, t, _ = _softplus_terms(input)
    with np.errstate(invalid="ignore"):
        return _limits(input, input * t, np.inf, -0.0)


def mish_error(input: Array, output: Array, cotangent: Array | None, u: float, tiny: float,
               inplace: bool = False) -> tuple[Array, Array | None]:
    """y = x·tanh(sp), sp = log1p(exp(x)) (PyTorch): exp's error L·e is propagated to sp by
    1/(1 + e) (L·σ(x)), log1p adds L·sp: δsp = L·(σ(x) + sp); tanh propagates it by sech²(sp) = W
    and adds its own (exact ±1 once saturated): δt = W·δsp + E_tanh; the product: E_y = |x|·δt.
    (exp overflowing for large x gives sp = inf, t = 1, y = x: within the bound.)

    Backward (PyTorch) g·(t + R), R = x·s·(1 - t²), s = σ(x) with error (L + 1)·s: 1 - t² formed
    from the computed t carries 2|t|·δt + t² + W (exactly W once t is saturated, where it is
    computed as 0), the two products 2|R|, the sum |t + R| (which cancels near x ≈ -1.19: in the
    magnitude of its terms): E = |g|·(δt + |x|·((L + 1)·s·W + s·δW) + 2|R| + |t + R|).

    exp(x), sp and t below the normal range are subnormals of absolute error up to tiny (gradual
    underflow): tiny/u more in δt (an exp(-x) in σ that overflows, giving R = 0 where it matters,
    does not conform).
    """
    x = input
    sp, t, w = _softplus_terms(x)
    s = sigmoid(x)
    distance = _tanh_distance(sp)
    with np.errstate(invalid="ignore", over="ignore"):
        d_sp = _L * (s + sp)
        d_t = np.where(np.isfinite(sp), w * d_sp, 0.0) + saturating_error(t, distance, u) + tiny / u
        e_y = np.where(np.isfinite(x), np.abs(x) * d_t, 0.0)

    def e_g():
        with np.errstate(invalid="ignore", over="ignore"):
            d_w = np.where(distance < u / 2, w / u, 2 * np.abs(t) * d_t + t * t + w)
            r = np.where(np.isfinite(x), x * s * w, 0.0)
            ax = np.where(np.isfinite(x), np.abs(x), 0.0)
            return np.abs(cotangent) * (d_t + ax * ((_L + 1) * s * w + s * d_w) + 2 * np.abs(r) + np.abs(t + r))

    return _errors(e_y, cotangent, e_g)


# -- glu -------------------------------------------------------------------------------------------

def glu_halves(x: Array, dim: int) -> tuple[Array, Array, int]:
    """(a, b, axis): the first and second halves of ``x`` along ``dim`` (negative allowed). A 0-d
    input, a dim out of range and an odd size along it raise (as PyTorch)."""
    if x.ndim == 0:
        raise ValueError("glu does not support scalars because halving size must be even")
    if not -x.ndim <= dim < x.ndim:
        raise IndexError(f"glu: dim {dim} out of range for a {x.ndim}-d input")
    axis = dim % x.ndim
    if x.shape[axis] % 2:
        raise ValueError(f"glu: halving dimension must be even, but dimension {axis} is size {x.shape[axis]}")
    a, b = np.split(x, 2, axis=axis)
    return a, b, axis


def scaled_product(*factors: Array) -> Array:
    """The product of the factors without a spurious overflow or underflow of a partial product: the
    significands (in [1/2, 1)) are multiplied and the exponents added, then scaled once, so the
    result overflows (or underflows) only where the product itself does. IEEE at ±inf, 0 and NaN
    (inf·0 = NaN)."""
    significand, exponent = np.float64(1.0), np.int64(0)
    with np.errstate(invalid="ignore", over="ignore"):
        for f in factors:
            m, e = np.frexp(np.asarray(f, dtype=np.float64))
            significand = significand * m
            exponent = exponent + e.astype(np.int64)
        return np.ldexp(significand, np.clip(exponent, -4000, 4000).astype(np.int32))


def _glu_vjp(cotangent: Array, input: Array, dim: int = -1) -> dict[str, Array]:
    """{"input": [g·σ(b), g·a·σ(b)·σ(-b)]} along ``dim`` (IEEE products: inf·0 = NaN; the second
    half without a spurious overflow of g·a)."""
    a, b, axis = glu_halves(input, dim)
    with np.errstate(invalid="ignore", over="ignore"):
        second = scaled_product(cotangent, a, sigmoid(b), sigmoid(-b))
        return {"input": np.concatenate([cotangent * sigmoid(b), second], axis=axis)}


@functional(vjp=_glu_vjp, example=lambda rng: ((rng.standard_normal((4, 3)) * 3,), {"dim": 0}))
def glu(input: Array, dim: int = -1) -> Array:
    """GLU(a, b) = a·σ(b), a and b the first and second halves of ``input`` along ``dim`` (its size
    there must be even; 0-d inputs raise); the output has half that size. A product of two inputs:
    IEEE arithmetic at ±inf (a = ±inf with σ(b) = 0 is NaN)."""
    a, b, _ = glu_halves(input, dim)
    with np.errstate(invalid="ignore"):
        return a * sigmoid(b)


def glu_error(input: Array, output: Array, cotangent: Array | None, u: float, tiny: float,
              dim: int = -1) -> tuple[Array, Array | None]:
    """y = a·σ(b): σ with (L + 1) roundings, the product: E_y = (L + 1)·|y| (output's shape).

    Backward (input's shape): the first half g·σ(b), E = (L + 1)·|grad|; the second half
    g·a·σ(b)·(1 - σ(b)) (PyTorch), σ with error (L + 1)·s, 1 - s formed from it (cancelling as s
    nears 1: in the magnitude of the terms) and two products besides the last:
    E = |g·a|·s·((L + 1)·|1 - s| + (L + 1)·s + |1 - s|) + 2|grad|.

    σ(b) below the normal range is a subnormal of absolute error up to tiny (gradual underflow):
    |a|·tiny/u more in E_y, |g|·tiny/u and |g·a|·tiny/u in the two halves of E.
    """
    a, b, axis = glu_halves(input, dim)
    with np.errstate(invalid="ignore", over="ignore"):
        e_y = (_L + 1) * np.abs(output) + np.abs(a) * tiny / u

    def e_g():
        s, sn = sigmoid(b), sigmoid(-b)
        with np.errstate(invalid="ignore", over="ignore"):
            ag = np.abs(cotangent)
            first = (_L + 1) * ag * s + ag * tiny / u
            second = scaled_product(ag, np.abs(a), s * ((_L + 2) * sn + (_L + 1) * s) + 2 * s * sn + tiny / u)
        return np.concatenate([first, second], axis=axis)

    return _errors(e_y, cotangent, e_g)


# -- gelu ------------------------------------------------------------------------------------------

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_KAPPA = 0.044715


def _gelu_inner(x: Array) -> Array:
    with np.errstate(over="ignore", invalid="ignore"):
        return _SQRT_2_OVER_PI * (x + _KAPPA * x ** 3)


def _gelu_check(approximate: str) -> None:
    if approximate not in ("none", "tanh"):
        raise ValueError(f"GELU approximate must be 'none' or 'tanh', got {approximate!r}")


def _gelu_vjp(cotangent: Array, input: Array, approximate: str = "none") -> dict[str, Array]:
    """{"input": g·(Φ(x) + x·φ(x))} ("none") or g·(σ(2w) + 2x·σ(2w)σ(-2w)·w'(x)), w the tanh
    argument ("tanh"). Limits: g at +inf, 0 at -inf."""
    _gelu_check(approximate)
    x = input
    with np.errstate(invalid="ignore", over="ignore"):
        if approximate == "tanh":
            w = _gelu_inner(x)
            s, sn = sigmoid(2 * w), sigmoid(-2 * w)
            dw = _SQRT_2_OVER_PI * (1 + 3 * _KAPPA * x * x)
            flat = s * sn
            deriv = s + np.where(flat > 0, 2 * x * flat * dw, 0.0)
        else:
            deriv = normal_cdf(x) + np.where(np.isfinite(x), x * normal_pdf(x), 0.0)
    return {"input": cotangent * _limits(x, deriv, 1.0, 0.0)}


@functional(vjp=_gelu_vjp, example=_example(approximate="tanh"))
def gelu(input: Array, approximate: str = "none") -> Array:
    """GELU: x·Φ(x) ("none") or 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) ("tanh"), the latter as
    x·σ(2·inner) (no cancellation for negative x). Limits: +inf at +inf, 0 at -inf. Any other
    ``approximate`` raises."""
    _gelu_check(approximate)
    x = input
    with np.errstate(invalid="ignore", over="ignore"):
        value = x * sigmoid(2 * _gelu_inner(x)) if approximate == "tanh" else x * normal_cdf(x)
    return _limits(x, value, np.inf, -0.0)


def gelu_error(input: Array, output: Array, cotangent: Array | None, u: float, tiny: float,
               approximate: str = "none") -> tuple[Array, Array | None]:
    """Bounds for the textbook forms PyTorch computes: ``_gelu_erf_error`` or ``_gelu_tanh_error``."""
    with np.errstate(invalid="ignore", over="ignore"):
        if approximate == "tanh":
            return _gelu_tanh_error(input, output, cotangent, u)
        return _gelu_erf_error(input, output, cotangent, u)


def _gelu_erf_error(x, y, g, u):
    """y = 0.5·x·(1 + erf(z)), z = x·(1/√2): z carries 2 roundings, moving erf by (4/√π)·|z|·e^(-z²);
    erf adds its own error E_erf; 1 + erf one rounding. All in the magnitude of the terms, so the
    cancellation of 1 + erf for negative x (absolute error ≈ L·u·|x|/2) conforms:

        E_y = |x|/2·(E_erf + (4/√π)·|z|·e^(-z²) + (1 + erf z)) + |y|   (the product).

    Backward g·(cdf + x·pdf), cdf = 0.5·(1 + erf z) (error as above, halved), pdf = exp(-x²/2)·k:
    the rounding of x² moves exp by x²/2 relatively, exp adds L, the constant and the product by x
    2 more; then the sum and the product by g:
    E = |g|·(E_cdf + |x|·φ(x)·(x²/2 + L + 2) + |cdf + x·pdf|).
    """
    z = x / math.sqrt(2.0)
    tail = erfc(np.abs(z))
    erf_z = np.sign(z) * (1 - tail)
    e_erf = saturating_error(erf_z, tail, u) + 4 / math.sqrt(math.pi) * np.abs(z) * np.exp(-z * z)
    e_cdf = 0.5 * (e_erf + (1 + erf_z))
    e_y = np.abs(x) * e_cdf + np.abs(y)
    if g is None:
        return e_y, None
    xpdf = np.abs(x) * normal_pdf(x)
    e_pdf = np.where(xpdf > 0, xpdf * (x * x / 2 + _L + 2), 0.0)
    return e_y, np.abs(g) * (e_cdf + e_pdf + np.abs(normal_cdf(x) + np.where(xpdf > 0, x * normal_pdf(x), 0.0)))


def _gelu_tanh_error(x, y, g, u):
    """y = 0.5·x·(1 + t), t = tanh(w), w = k·(x + κ·x³): x³, κ·x³ and the constant carry 4 roundings
    (relative to |κx³|), the sum and k·(...) 3 more relative to |w|: δw = 4k|κx³| + 3|w|; tanh adds
    its own error E_t (exact ±1 once saturated) and 1 + t one rounding:

        E_y = |x|/2·(E_t + (1 - t²)·δw + (1 + t)) + |y|.

    Backward (PyTorch): g·(0.5·(1 + t) + 0.5x·(1 - t²)·w'), w' = k·(1 + 3κx²), with 1 - t² formed
    from the computed t (2|t|·δt + t² + |1 - t²|), w' carrying 5 roundings and two products:
    E = |g|·(0.5·(δt + (1 + t)) + |x|/2·(δ(1-t²)·|w'| + (1 - t²)·5|w'|) + 2|R| + |LD + R|),
    with R = 0.5x·(1 - t²)·w' and LD = 0.5·(1 + t). Once t saturates, 1 - t² is computed as 0 and
    its error is the exact (tiny) 1 - t², so the x³ growth of w' does not blow the bound up.
    """
    w = _gelu_inner(x)
    s, sn = sigmoid(2 * w), sigmoid(-2 * w)
    t = s - sn
    one_minus_t2 = 4 * s * sn
    dw = 4 * _SQRT_2_OVER_PI * np.abs(_KAPPA * x ** 3) + 3 * np.abs(w)
    distance = 2 * np.minimum(s, sn)
    saturated = distance < u / 2
    e_t = saturating_error(t, distance, u) + np.where(one_minus_t2 > 0, one_minus_t2 * dw, 0.0)
    one_plus_t = 2 * s
    e_ld = 0.5 * (e_t + one_plus_t)
    e_y = np.abs(x) * e_ld + np.abs(y)
    if g is None:
        return e_y, None
    at = np.abs(t)
    wp = _SQRT_2_OVER_PI * (1 + 3 * _KAPPA * x * x)
    e_td = np.where(saturated, one_minus_t2 / u, 2 * at * e_t + at * at + one_minus_t2)
    r = np.where(one_minus_t2 > 0, 0.5 * x * one_minus_t2 * wp, 0.0)
    e_r = 0.5 * np.abs(x) * np.where(e_td > 0, e_td * wp, 0.0) + np.where(
        one_minus_t2 > 0, 0.5 * np.abs(x) * one_minus_t2 * 5 * wp, 0.0) + 2 * np.abs(r)
    return e_y, np.abs(g) * (e_ld + e_r + np.abs(0.5 * one_plus_t + r))
