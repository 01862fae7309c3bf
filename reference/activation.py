"""Piecewise activations (relu, relu6, hardtanh, threshold, leaky_relu, prelu, rrelu, softshrink,
hardshrink, hardsigmoid, hardswish) and the exponential-linear units (elu, selu, celu): forward,
VJP and first-order error analysis of each, registered under its ``torch.nn.functional`` name.

Shapes: every function is elementwise on an array of any shape (0-d allowed); prelu's weight
broadcasts along dim 1 (the channel dim) of inputs of rank >= 2 and is a single value below.
``inplace`` is accepted for torch's signature; the reference always returns a new array.

Conventions (PyTorch's, stated once here and in each declaration):
- Gradients at kinks: relu'(0) = 0; relu6 and hardtanh have derivative 0 at both boundaries;
  threshold's is 0 at x == threshold; leaky_relu, prelu and rrelu use the negative slope at 0;
  softshrink's and hardshrink's are 0 at ±lambd; hardsigmoid's 0 at ±3; hardswish's 0 at -3 and 1
  at 3 (the outer branches); elu's is alpha at 0, selu's scale·alpha, celu's 1 (smooth there).
- NaN propagates through the forward and, in the reference, through the gradient (a backend may
  instead return the cotangent times the slope of one of the branches: see the declarations).
- At ±inf every function and derivative takes its limit (0·x with a zero slope is 0 at -inf,
  hardswish(-inf) = 0).

Error analyses (``*_error(input, output, cotangent, u, tiny, **parameters)``, the one signature of
the family) return per-element bounds in units of the unit roundoff u of the format the backend
computes in, EXCLUDING the final rounding of the result (the tolerance engine adds u·|ref| for it),
as the pair (bound on the output, bound on the input's gradient or None without a cotangent).
``tiny`` is the format's smallest subnormal (unused by most). Every libm evaluation (exp, expm1,
log1p, tanh, erf) is taken to be accurate to ``LIBM_ULPS`` units of u; a parameter given as a
Python float may be rounded once to the format (relative error u).
"""

from __future__ import annotations

import numpy as np

from reference.libm import LIBM_ULPS
from reference.registry import functional
from reference.softmax import softmax, softmax_axis, softmax_implicit_dim, softmax_vjp  # noqa: F401 (re-exported)

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
RRELU_LOWER, RRELU_UPPER = 1.0 / 8, 1.0 / 3

Array = np.ndarray


def _nan_to(x: Array, value: Array) -> Array:
    """``value`` with NaN wherever ``x`` is NaN (NaN propagation)."""
    return np.where(np.isnan(x), np.nan, value)


def _example(**params):
    """A registry example: a 3×4 input of normals times 3 (kinks are hit with probability 0)."""
    return lambda rng: ((rng.standard_normal((3, 4)) * 3,), dict(params))


def _gated(x: Array, g: Array, passes: Array) -> dict[str, Array]:
    """{"input": g where ``passes`` else 0, NaN at NaN}: the VJP of a selection."""
    return {"input": _nan_to(x, np.where(passes, g, 0.0))}


# -- relu, relu6, hardtanh, threshold ---------------------------------------------------------------

def _relu_vjp(cotangent: Array, input: Array, inplace: bool = False) -> dict[str, Array]:
    """{"input": g·[x > 0]}: 0 at the kink x = 0; NaN at NaN."""
    return _gated(input, cotangent, input > 0)


@functional(vjp=_relu_vjp, example=_example())
def relu(input: Array, inplace: bool = False) -> Array:
    """y = max(x, 0), elementwise on any shape. NaN propagates."""
    return np.where(input > 0, input, np.where(np.isnan(input), input, 0.0))


def _hardtanh_vjp(cotangent: Array, input: Array, min_val: float = -1.0, max_val: float = 1.0,
                  inplace: bool = False) -> dict[str, Array]:
    """{"input": g·[min_val < x < max_val]}: 0 at both boundaries; NaN at NaN."""
    return _gated(input, cotangent, (input > min_val) & (input < max_val))


@functional(vjp=_hardtanh_vjp, example=_example(min_val=-2.0, max_val=3.0))
def hardtanh(input: Array, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Array:
    """y = min(max(x, min_val), max_val), elementwise; NaN propagates. min_val > max_val raises
    (torch.nn.functional's rule: min_val == max_val is the constant function; the module
    torch.nn.Hardtanh asserts min_val < max_val)."""
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val {min_val} cannot be greater than max_val {max_val}")
    return np.clip(input, min_val, max_val)


def _relu6_vjp(cotangent: Array, input: Array, inplace: bool = False) -> dict[str, Array]:
    """{"input": g·[0 < x < 6]}: 0 at both kinks; NaN at NaN."""
    return _hardtanh_vjp(cotangent, input, 0.0, 6.0)


@functional(vjp=_relu6_vjp, example=_example())
def relu6(input: Array, inplace: bool = False) -> Array:
    """y = min(max(x, 0), 6) = hardtanh(x, 0, 6), elementwise; NaN propagates."""
    return hardtanh(input, 0.0, 6.0)


def _threshold_vjp(cotangent: Array, input: Array, threshold: float, value: float,
                   inplace: bool = False) -> dict[str, Array]:
    """{"input": g·[x > threshold]}: 0 at x == threshold; NaN at NaN."""
    return _gated(input, cotangent, input > threshold)


@functional(vjp=_threshold_vjp, example=_example(threshold=0.5, value=-2.0))
def threshold(input: Array, threshold: float, value: float, inplace: bool = False) -> Array:
    """y = x if x > threshold else value, elementwise; NaN propagates (the documented formula read
    literally would give ``value`` at NaN; PyTorch propagates)."""
    return np.where(input > threshold, input, np.where(np.isnan(input), input, value))


# -- leaky_relu, prelu, rrelu ------------------------------------------------------------------------

def _leaky(x: Array, slope: Array | float) -> Array:
    """x if x > 0 else slope·x (slope broadcast against x); a zero slope gives 0 at -inf (the limit),
    not 0·(-inf) = NaN."""
    with np.errstate(invalid="ignore", over="ignore"):
        neg = np.where(np.asarray(slope) == 0, 0.0, slope * x)
    return np.where(x > 0, x, np.where(np.isnan(x), x, neg))


def _leaky_grad(x: Array, g: Array, slope: Array | float) -> Array:
    """g if x > 0 else slope·g (the slope at the kink x = 0); NaN at NaN."""
    return _nan_to(x, np.where(x > 0, g, slope * g))


def _leaky_relu_vjp(cotangent: Array, input: Array, negative_slope: float = 0.01,
                    inplace: bool = False) -> dict[str, Array]:
    """{"input": g if x > 0 else negative_slope·g}: the slope at the kink x = 0; NaN at NaN."""
    return {"input": _leaky_grad(input, cotangent, negative_slope)}


@functional(vjp=_leaky_relu_vjp, example=_example(negative_slope=-0.3))
def leaky_relu(input: Array, negative_slope: float = 0.01, inplace: bool = False) -> Array:
    """y = x if x > 0 else negative_slope·x, elementwise. A zero slope gives 0 at -inf (the limit)."""
    return _leaky(input, negative_slope)


def prelu_weight_view(weight: Array, ndim: int) -> Array:
    """PReLU's weight (num_parameters,) shaped to broadcast along dim 1 of a rank-``ndim`` input
    (a single value for num_parameters = 1 or ranks below 2)."""
    if weight.size == 1:
        return weight.reshape(())
    if ndim < 2:
        raise ValueError(f"PReLU with {weight.size} parameters needs an input of rank >= 2 (channel dim 1)")
    return weight.reshape((weight.size,) + (1,) * (ndim - 2))


def prelu_check(x: Array, weight: Array) -> None:
    """num_parameters is 1 or the channel count: x.shape[1] for rank >= 2, else 1 (PyTorch: an
    input of rank < 2 has no channel dim; a 0-d input needs num_parameters = 1)."""
    channels = x.shape[1] if x.ndim >= 2 else 1
    if weight.ndim != 1 or weight.size not in (1, channels):
        raise ValueError(f"PReLU: {weight.size} parameters for {channels} channels")


def _prelu_vjp(cotangent: Array, input: Array, weight: Array) -> dict[str, Array]:
    """{"input": g if x > 0 else w[c]·g, "weight": Σ over the channel of g·x where x <= 0} (all
    elements when num_parameters = 1). NaN inputs make both NaN."""
    x, g = input, cotangent
    gx = _leaky_grad(x, g, prelu_weight_view(weight, x.ndim))
    with np.errstate(invalid="ignore", over="ignore"):  # a sum past the range rounds to ±inf
        terms = np.where(x > 0, 0.0, g * x)
        if weight.size == 1:
            gw = np.atleast_1d(np.sum(terms))
        else:
            gw = np.sum(terms, axis=tuple(i for i in range(x.ndim) if i != 1))
    return {"input": gx, "weight": gw.reshape(weight.shape)}


@functional(vjp=_prelu_vjp, example=lambda rng: ((rng.standard_normal((2, 3, 4)), np.array([0.25, -0.5, 2.0])), {}))
def prelu(input: Array, weight: Array) -> Array:
    """y = x if x > 0 else w[c]·x, c the channel (dim 1; one weight below rank 2). weight has
    shape (1,) or (C,)."""
    prelu_check(input, weight)
    return _leaky(input, prelu_weight_view(weight, input.ndim))


def prelu_weight_grad_magnitude(x: Array, weight: Array, g: Array) -> Array:
    """Σ|g·x| over x <= 0 per weight: the magnitude of the sum dL/dw (its absref)."""
    return np.abs(_prelu_vjp(np.abs(g), np.where(x > 0, x, -np.abs(x)), weight)["weight"])


def _rrelu_check(lower: float, upper: float) -> None:
    if not lower <= upper:
        raise ValueError(f"rrelu: lower bound {lower} should be less than or equal to the upper bound {upper}")


def _rrelu_vjp(cotangent: Array, input: Array, lower: float = RRELU_LOWER, upper: float = RRELU_UPPER,
               training: bool = False, inplace: bool = False) -> dict[str, Array]:
    """{"input": g if x > 0 else (lower + upper)/2·g} (the slope at 0); NaN at NaN."""
    return {"input": _leaky_grad(input, cotangent, (lower + upper) / 2)}


@functional(vjp=_rrelu_vjp, example=_example(lower=0.1, upper=0.3))
def rrelu(input: Array, lower: float = RRELU_LOWER, upper: float = RRELU_UPPER, training: bool = False,
          inplace: bool = False) -> Array:
    """Randomized leaky ReLU, deterministic forms: y = x if x > 0 else a·x with a = (lower + upper)/2
    (evaluation; also training with lower == upper, where the uniform slope is lower itself).
    Training with lower < upper draws a slope per element: the reference draws nothing, so that
    raises; ``rrelu_with_noise`` computes it given the slopes. lower > upper raises."""
    _rrelu_check(lower, upper)
    if training and lower != upper:
        raise ValueError("rrelu in training draws random slopes: use rrelu_with_noise with the slopes drawn")
    return _leaky(input, (lower + upper) / 2)


def _rrelu_with_noise_vjp(cotangent: Array, input: Array, noise: Array, lower: float = RRELU_LOWER,
                          upper: float = RRELU_UPPER, training: bool = False) -> dict[str, Array]:
    """{"input": g·noise where x <= 0, else g} in training (evaluation: as rrelu's); the slopes are
    not differentiated. NaN at NaN."""
    if not training:
        return _rrelu_vjp(cotangent, input, lower, upper)
    return {"input": _leaky_grad(input, cotangent, noise)}


@functional(vjp=_rrelu_with_noise_vjp,
            example=lambda rng: ((rng.standard_normal((3, 4)), rng.uniform(0.1, 0.3, (3, 4))),
                                 {"lower": 0.1, "upper": 0.3, "training": True}))
def rrelu_with_noise(input: Array, noise: Array, lower: float = RRELU_LOWER, upper: float = RRELU_UPPER,
                     training: bool = False) -> Array:
    """Randomized leaky ReLU given its slopes (torch.rrelu_with_noise, the conditional form): in
    training y = x if x > 0 else noise·x, ``noise`` the slopes (of x's shape, drawn from
    U(lower, upper) where x <= 0); in evaluation ``rrelu``."""
    _rrelu_check(lower, upper)
    if not training:
        return rrelu(input, lower, upper)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.where(input > 0, input, noise * input)


# -- softshrink, hardshrink ----------------------------------------------------------------------

def _softshrink_vjp(cotangent: Array, input: Array, lambd: float = 0.5) -> dict[str, Array]:
    """{"input": g·[|x| > lambd]}: 0 at ±lambd; NaN at NaN."""
    return _gated(input, cotangent, np.abs(input) > lambd)


@functional(vjp=_softshrink_vjp, example=_example(lambd=0.5))
def softshrink(input: Array, lambd: float = 0.5) -> Array:
    """y = x - lambd if x > lambd, x + lambd if x < -lambd, else 0 (lambd >= 0: a negative lambd
    raises, as in PyTorch); NaN propagates."""
    if not lambd >= 0:
        raise ValueError(f"softshrink needs lambd >= 0, got {lambd}")
    x = input
    return _nan_to(x, np.where(x > lambd, x - lambd, np.where(x < -lambd, x + lambd, 0.0)))


def _hardshrink_band(x: Array, lambd: float) -> Array:
    """-lambd <= x <= lambd: the elements set to 0 (none for a negative lambd)."""
    return (x >= -lambd) & (x <= lambd)


def _hardshrink_vjp(cotangent: Array, input: Array, lambd: float = 0.5) -> dict[str, Array]:
    """{"input": g outside [-lambd, lambd], else 0}: 0 at ±lambd; NaN at NaN."""
    return _gated(input, cotangent, ~_hardshrink_band(input, lambd))


@functional(vjp=_hardshrink_vjp, example=_example(lambd=0.5))
def hardshrink(input: Array, lambd: float = 0.5) -> Array:
    """y = 0 where -lambd <= x <= lambd, else x; NaN propagates. A negative lambd is accepted (as
    in PyTorch) and gives the identity: no x lies in the band."""
    return np.where(_hardshrink_band(input, lambd), 0.0, input)


# -- hardsigmoid, hardswish --------------------------------------------------------------------------

def _hardsigmoid_vjp(cotangent: Array, input: Array, inplace: bool = False) -> dict[str, Array]:
    """{"input": g/6 on -3 < x < 3, else 0}: 0 at both kinks ±3; NaN at NaN."""
    return {"input": _nan_to(input, np.where((input > -3) & (input < 3), cotangent / 6, 0.0))}


@functional(vjp=_hardsigmoid_vjp, example=_example())
def hardsigmoid(input: Array, inplace: bool = False) -> Array:
    """y = 0 for x <= -3, 1 for x >= 3, x/6 + 1/2 between (computed as (x + 3)/6); NaN propagates."""
    return np.clip((input + 3.0) / 6.0, 0.0, 1.0)


def _hardswish_vjp(cotangent: Array, input: Array, inplace: bool = False) -> dict[str, Array]:
    """{"input": 0 for x <= -3, g·(x/3 + 1/2) for -3 < x < 3, g for x >= 3}: the outer branches'
    derivatives at the kinks (0 at -3, 1 at 3, as PyTorch); NaN at NaN."""
    x, g = input, cotangent
    return {"input": _nan_to(x, np.where(x <= -3, 0.0, np.where(x < 3, g * (x / 3 + 0.5), g)))}


@functional(vjp=_hardswish_vjp, example=_example())
def hardswish(input: Array, inplace: bool = False) -> Array:
    """y = x·relu6(x + 3)/6: 0 for x <= -3, x for x >= 3, x·(x + 3)/6 between; limits 0 at -inf
    and +inf at +inf (never x·6 overflowing); NaN propagates."""
    x = input
    with np.errstate(invalid="ignore", over="ignore"):
        middle = x * (x + 3.0) / 6.0
    return np.where(x <= -3, 0.0 * np.sign(x), np.where(x >= 3, x, middle))


def hardsigmoid_error(input: Array, output: Array, cotangent: Array | None, u: float, tiny: float,
                      inplace: bool = False) -> tuple[Array, Array | None]:
    """Between the kinks y = (x + 3)/6 (PyTorch's scalar kernel: the sum and the division, E = |y|;
    times a rounded 1/6: 2|y|) or x·(1/6) + 1/2 (the constant and the product: 2|x|/6); a backend
    may use either: E_y = max(2|y|, |x|/3). Outside, y is exactly 0 or 1. Backward g·(1/6): the
    constant's rounding, E = |grad|."""
    x, y = input, output
    inside = (x > -3) & (x < 3)
    e_y = np.where(inside, np.maximum(2 * np.abs(y), np.abs(x) / 3), 0.0)
    if cotangent is None:
        return e_y, None
    return e_y, np.where(inside, np.abs(cotangent) / 6, 0.0)


def hardswish_error(input: Array, output: Array, cotangent: Array | None, u: float, tiny: float,
                    inplace: bool = False) -> tuple[Array, Array | None]:
    """Between the kinks y = x·(x + 3)/6: the sum x + 3 (relative u, moving y by u·|y|), the
    product and the division (or a product by the rounded 1/6): E_y = 3|y|. For x >= 3 PyTorch
    computes the same formula, x·6/6, whose product rounds once: E_y = |y|; for x <= -3, x·0 = 0
    exactly. Backward g·(x/3 + 1/2) (PyTorch): x/3 rounded (|x|/3), the constant 1/3 possibly
    rounded first (|x|/3), the sum (|x/3 + 1/2|), cancelling near x = -3/2: in the magnitude of
    the terms, E = |g|·(2|x|/3 + |x/3 + 1/2|); g itself outside."""
    x, y = input, output
    inside = (x > -3) & (x < 3)
    e_y = np.where(inside, 3 * np.abs(y), np.where(x >= 3, np.abs(y), 0.0))
    if cotangent is None:
        return e_y, None
    return e_y, np.where(inside, np.abs(cotangent) * (2 * np.abs(x) / 3 + np.abs(x / 3 + 0.5)), 0.0)


# -- elu, selu, celu ---------------------------------------------------------------------------------

_EXP_SAFE = 700.0  # exp(z) is finite in float64 below this; beyond, a product k·exp(z) is formed in logs


def _times_exp(k: Array | float, z: Array) -> Array:
    """k·exp(z) without the overflow of exp(z) alone (a negative alpha makes z = x/alpha large):
    (k·exp(z/2))·exp(z/2) where z > 700 (z/2 is exact; two more roundings), the product elsewhere."""
    with np.errstate(over="ignore", invalid="ignore"):
        half = np.exp(z / 2)
        return np.where(z > _EXP_SAFE, (k * half) * half, k * np.exp(z))


def _exp_linear(x: Array, alpha: float, scale: float = 1.0, input_scale: float = 1.0) -> Array:
    """scale·x if x > 0 else scale·alpha·(exp(input_scale·x) - 1): limit -scale·alpha at -inf (and,
    for input_scale·x > 0, the growth of a negative alpha's branch without a spurious overflow)."""
    z = input_scale * np.minimum(x, 0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        neg = np.where(z > _EXP_SAFE, _times_exp(scale * alpha, z), scale * alpha * np.expm1(z))
        return np.where(x > 0, scale * x, neg)


def _exp_linear_grad(x: Array, g: Array, alpha: float, scale: float = 1.0, input_scale: float = 1.0) -> Array:
    """scale·g if x > 0 else scale·alpha·input_scale·exp(input_scale·x)·g (the exponential branch
    at the kink x = 0), 0 at -inf, NaN at NaN."""
    with np.errstate(over="ignore", invalid="ignore"):
        neg = _times_exp(scale * alpha * input_scale * g, input_scale * np.minimum(x, 0.0))
        return _nan_to(x, np.where(x > 0, scale * g, neg))


def _elu_vjp(cotangent: Array, input: Array, alpha: float = 1.0, inplace: bool = False) -> dict[str, Array]:
    """{"input": g if x > 0 else alpha·exp(x)·g}: alpha at the kink x = 0, 0 at -inf."""
    return {"input": _exp_linear_grad(input, cotangent, alpha)}


@functional(vjp=_elu_vjp, example=_example(alpha=0.5))
def elu(input: Array, alpha: float = 1.0, inplace: bool = False) -> Array:
    """y = x if x > 0 else alpha·(exp(x) - 1) (computed with expm1); -alpha at -inf."""
    return _exp_linear(input, alpha)


def _selu_vjp(cotangent: Array, input: Array, inplace: bool = False) -> dict[str, Array]:
    """{"input": scale·g if x > 0 else scale·alpha·exp(x)·g}: scale·alpha at the kink x = 0."""
    return {"input": _exp_linear_grad(input, cotangent, SELU_ALPHA, SELU_SCALE)}


@functional(vjp=_selu_vjp, example=_example())
def selu(input: Array, inplace: bool = False) -> Array:
    """y = scale·elu(x, alpha) with PyTorch's constants SELU_ALPHA ≈ 1.6733, SELU_SCALE ≈ 1.0507;
    -scale·alpha at -inf."""
    return _exp_linear(input, SELU_ALPHA, SELU_SCALE)


def _celu_check(alpha: float) -> None:
    if alpha == 0:
        raise ValueError("celu: alpha cannot be 0")


def _celu_vjp(cotangent: Array, input: Array, alpha: float = 1.0, inplace: bool = False) -> dict[str, Array]:
    """{"input": g if x > 0 else exp(x/alpha)·g}: 1 at x = 0 (CELU is smooth there), 0 at -inf."""
    _celu_check(alpha)
    return {"input": _exp_linear_grad(input, cotangent, alpha, 1.0, 1.0 / alpha)}


@functional(vjp=_celu_vjp, example=_example(alpha=0.7))
def celu(input: Array, alpha: float = 1.0, inplace: bool = False) -> Array:
    """CELU(x) = max(0, x) + min(0, alpha·(exp(x/alpha) - 1)), i.e. x if x > 0 else
    alpha·expm1(x/alpha) (the same for a negative alpha, as PyTorch computes it); -alpha at -inf.
    alpha = 0 raises (division by zero)."""
    _celu_check(alpha)
    return _exp_linear(input, alpha, 1.0, 1.0 / alpha)


def _exp_linear_error(x: Array, y: Array, g: Array | None, alpha: float, scale: float = 1.0,
                      input_scale: float = 1.0, scale_rounds: bool = False) -> tuple[Array, Array | None]:
    """First-order error bounds (units of u, final rounding excluded) of c·(exp(s·x) - 1), c =
    scale·alpha, and its VJP, for elu (s = 1), selu and celu (s = 1/alpha).

    Negative branch: exp contributes L·|c|·e, e = exp(s·x); the subtraction u·|e - 1| times |c|; the
    constant c (rounded once, possibly formed from two rounded factors) 2|y|; for s != 1 the rounded
    s and the product s·x move e by 2|s·x|·e. The textbook exp - 1 cancels for small |x| (torch uses
    expm1); the bound is in the magnitude of the terms, |c|·(L·e + |e - 1| + 2|s·x|·e) + 2|y|, so
    a backend using either form conforms. Positive branch: scale·x, |y| for a rounded scale.

    Gradient, negative branch: directly g·s·c·e (exp L, the rounded s, the products and, for
    s != 1, the argument: (L + 3 + 2|s·x|)·|grad|; L + 2 for s = 1) or, as torch does in place,
    from the output, g·s·(y + c): the computed y (E_y + |y|), the constant |c| and the addition
    |y + c|, times s·|g|, plus s's rounding and the product g·s for s != 1. A backend may use
    either: the larger bound applies (only the direct form where y overflows: a negative alpha).
    """
    lib = LIBM_ULPS
    c = abs(scale * alpha)
    s = abs(input_scale)
    with np.errstate(over="ignore", invalid="ignore"):
        z = input_scale * np.minimum(x, 0.0)
        e = np.exp(z)
        argument = 2 * np.abs(z) if input_scale != 1.0 else np.zeros_like(e)
        pos_out = np.abs(y) if scale_rounds else np.zeros_like(y)
        # |s·x|·e -> 0 as x -> -inf: the limit, not inf·0, at an infinite input.
        argument_e = np.where(e > 0, argument * e, 0.0)
        neg_out = c * (lib * e + np.abs(np.expm1(z)) + argument_e) + 2 * np.abs(y)
        e_out = np.where(x > 0, pos_out, neg_out)
        if g is None:
            return e_out, None
        grad = np.abs(_exp_linear_grad(x, g, alpha, scale, input_scale))
        from_output = s * np.abs(g) * (neg_out + np.abs(y) + c + np.abs(y + scale * alpha))
        if input_scale == 1.0:
            direct = (lib + 2) * grad
        else:
            direct = np.where(grad == 0, 0.0, (lib + 3 + argument) * grad)  # 0 at x = -inf
            from_output = from_output + 2 * grad
        pos_grad = grad if scale_rounds else np.zeros_like(grad)
        from_output = np.where(np.isfinite(from_output), from_output, 0.0)  # y overflowed: only the direct form
        e_grad = np.where(x > 0, pos_grad, np.maximum(direct, from_output))
    if input_scale == 1.0:
        return e_out, e_grad
    return _capped(e_out, y), _capped(e_grad, grad)


def _capped(bound: Array, value: Array) -> Array:
    """A bound in units of u that overflows float64 for a finite value near the largest one (a
    negative alpha's exp(x/alpha) up to 1e308) capped at an eighth of the largest float64 (room for
    the tolerance glue's doubling): an absolute bound of u·max/8, smaller than the analysis (never
    a loosening) and still far above the errors at play."""
    return np.where(np.isinf(bound) & np.isfinite(value), np.finfo(np.float64).max / 8, bound)


def elu_error(input: Array, output: Array, cotangent: Array | None, u: float, tiny: float, alpha: float = 1.0,
              inplace: bool = False) -> tuple[Array, Array | None]:
    """ELU's bounds: see ``_exp_linear_error`` (c = alpha, s = 1)."""
    return _exp_linear_error(input, output, cotangent, alpha)


def selu_error(input: Array, output: Array, cotangent: Array | None, u: float, tiny: float,
               inplace: bool = False) -> tuple[Array, Array | None]:
    """SELU's bounds: see ``_exp_linear_error`` (c = scale·alpha, s = 1, a rounded scale on the
    positive branch)."""
    return _exp_linear_error(input, output, cotangent, SELU_ALPHA, SELU_SCALE, scale_rounds=True)


def celu_error(input: Array, output: Array, cotangent: Array | None, u: float, tiny: float, alpha: float = 1.0,
               inplace: bool = False) -> tuple[Array, Array | None]:
    """CELU's bounds: see ``_exp_linear_error`` (c = alpha, s = 1/alpha)."""
    return _exp_linear_error(input, output, cotangent, alpha, 1.0, 1.0 / alpha)
