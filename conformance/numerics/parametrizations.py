"""The parametrizations (``torch.nn.utils.parametrizations``: weight_norm, spectral_norm,
orthogonal) as the suite judges them: each one's weight from its originals and buffers, the VJP
of that weight, and its error analysis (``Parametrisation``); spectral_norm's gradient comparator;
in the derivative modes (jvp, vjp2, vmap; issue #24) spectral_norm's second-order error terms
(``LayerSpec.second_order_error``); and the predicates of the known entries of the family
(``conformance/known/parametrizations.toml``, ``init.toml``).

A parametrised case holds the originals and buffers under their attribute paths and the eager
layer's parameters in ``params["module_params"]``; its reference keeps the layer's own case (with
the parametrised weight) in ``meta["layer"]`` and, after a pullback, the layer's gradient of that
weight in ``meta["layer grads"]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from backends.base import Case, Result
from conformance.compare import Comparison, compare_tensor
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec, all_specs, spec_of
from reference import parametrizations as P

WEIGHT = "parametrizations.weight"
SN_ORIGINAL = f"{WEIGHT}.original"


# -- the weight from the originals, its VJP, and its error analysis ---------------------------------

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
    return P.weight_norm(case.inputs[f"{WEIGHT}.original1"], case.inputs[f"{WEIGHT}.original0"],
                         case.params["dim"]), {}


def _wn_vjp(case: Case, grad_w: np.ndarray) -> dict[str, np.ndarray]:
    from reference import functional as RF

    g = RF.vjp("weight_norm", case.inputs[f"{WEIGHT}.original1"], case.inputs[f"{WEIGHT}.original0"],
               case.params["dim"], cotangent=grad_w)
    return {f"{WEIGHT}.original0": g["g"], f"{WEIGHT}.original1": g["v"]}


def _wn_errors(case: Case, grad_w: np.ndarray | None, grad_w_error: np.ndarray | None) -> dict:
    e = P.weight_norm_errors(case.inputs[f"{WEIGHT}.original1"], case.inputs[f"{WEIGHT}.original0"],
                             case.params["dim"], grad_w, grad_w_error)
    out: dict = {"weight": (e["weight"], 0.0)}
    if grad_w is not None:
        out.update({f"grad.{WEIGHT}.original0": e["g"], f"grad.{WEIGHT}.original1": e["v"]})
    return out


def _wn_check(case: Case) -> None:
    P.norm_axes(case.inputs[f"{WEIGHT}.original1"].ndim, case.params["dim"])


def _sn_weight(case: Case) -> tuple[np.ndarray, dict]:
    u, v = _spectral_uv(case)
    w = P.spectral_normalize(case.inputs[f"{WEIGHT}.original"], u, v, _spectral_dim(case))
    return w, {f"{WEIGHT}.0._u": u, f"{WEIGHT}.0._v": v}


def _sn_vjp(case: Case, grad_w: np.ndarray) -> dict[str, np.ndarray]:
    from reference import functional as RF

    u, v = _spectral_uv(case)
    return {f"{WEIGHT}.original": RF.vjp("spectral_normalize", case.inputs[f"{WEIGHT}.original"], u, v,
                                         _spectral_dim(case), cotangent=grad_w)["weight"]}


def _sn_errors(case: Case, grad_w: np.ndarray | None, grad_w_error: np.ndarray | None) -> dict:
    p = case.params
    e = P.spectral_norm_errors(case.inputs[f"{WEIGHT}.original"], case.inputs[f"{WEIGHT}.0._u"],
                               case.inputs[f"{WEIGHT}.0._v"], p["n_power_iterations"], p["eps"], _spectral_dim(case),
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
    return P.orthogonal(*_orth_args(case)), {}


def _orth_vjp(case: Case, grad_w: np.ndarray) -> dict[str, np.ndarray]:
    from reference import functional as RF

    return {f"{WEIGHT}.original": RF.vjp("orthogonal", *_orth_args(case), cotangent=grad_w)["X"]}


def _orth_errors(case: Case, grad_w: np.ndarray | None, grad_w_error: np.ndarray | None) -> dict:
    e = P.orthogonal_errors(*_orth_args(case), grad_w, grad_w_error)
    out: dict = {"weight": (0.0, e["weight"])}
    if grad_w is not None:
        out[f"grad.{WEIGHT}.original"] = e["X"]
    return out


def orthogonal_smooth(case: Case) -> bool:
    """Differentiable everywhere but through householder's diagonal (a sign, read with int())."""
    return _orth_args(case)[1] != "householder"


def _orth_check(case: Case) -> None:
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
    u, v = _spectral_uv(case)
    sigma = float(u @ P.weight_matrix(w, _spectral_dim(case)) @ v)
    grad_w = result.meta.get("layer grads", {}).get("weight", np.zeros_like(w))
    top = DTYPES[case.dtype].max_value
    with np.errstate(all="ignore"):
        overflow = max(float(np.max(np.abs(w), initial=0.0)), abs(float(np.sum(grad_w * w)))) / sigma**2 > top
    if overflow and value is not None and np.shape(value) == expected.shape:
        expected = np.where(np.isfinite(value), expected, value)
    absref = magnitudes(spec, case, result)[name]
    return compare_tensor(spec, case, name, expected, value, got.dtypes.get(name), absref)


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


# -- the derivative modes --------------------------------------------------------------------------


def _spectral_dim(case: Case) -> int:
    from conformance.strategies.init import spectral_dim

    return spectral_dim(case.params["dim"], case.inputs[SN_ORIGINAL].ndim,
                        case.params["module"].startswith("ConvTranspose"))


def _spectral_uv(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """The u, v that σ = uᵀ·W_mat·v is formed with: the buffers (evaluation), or after the power
    iteration (training)."""
    u = np.asarray(case.inputs[f"{WEIGHT}.0._u"], dtype=np.float64)
    v = np.asarray(case.inputs[f"{WEIGHT}.0._v"], dtype=np.float64)
    if not case.train:
        return u, v
    p = case.params
    return P.power_iteration(case.inputs[SN_ORIGINAL], u, v, p["n_power_iterations"], p["eps"], _spectral_dim(case))


def _from_matrix(mat: np.ndarray, like: np.ndarray, dim: int) -> np.ndarray:
    """The inverse of ``reference.parametrizations.weight_matrix``: (size of dim, rest) back to the
    layout of ``like``."""
    moved = np.moveaxis(np.asarray(like), dim, 0).shape
    return np.moveaxis(np.asarray(mat).reshape(moved), 0, dim)


def _layer_pull(layer: Case, inputs: Mapping[str, np.ndarray], cotangent: np.ndarray) -> dict[str, np.ndarray]:
    """The eager layer's reference gradients at ``inputs`` (replacing the layer case's) for the
    output cotangent ``cotangent``."""
    eager = all_specs()[layer.target]
    moved = replace(layer, inputs={**layer.inputs, **inputs})
    _, pull = eager.reference(moved)
    return pull({"output": np.asarray(cotangent, dtype=np.float64)})


@dataclass(frozen=True)
class _SpectralTerms:
    """spectral_norm's second-order terms at a case, along directions v, for a cotangent g, in the
    weight-matrix view (size of dim, rest): σ and its relative error r_σ (units of u); s = |u|ᵀ|Ẇ||v|
    (σ̇'s terms); the layer's weight gradients on the absolute problem, G (|x|, |g|) and Ġ (|ẋ|, |g|);
    |W|, |Ẇ|, |u| |v|ᵀ; K_w, K_x the layer's weight- and input-gradient reduction lengths."""

    sigma: float
    r_sigma: float
    s: float
    ga: np.ndarray
    gd: np.ndarray
    aw: np.ndarray
    wd: np.ndarray
    outer: np.ndarray
    k_w: float
    k_x: float
    dim: int
    layer: Case
    no_bias: dict[str, np.ndarray]


def _spectral_terms(case: Case, v: Mapping[str, np.ndarray], cot: np.ndarray) -> _SpectralTerms | None:
    w = np.asarray(case.inputs[SN_ORIGINAL], dtype=np.float64)
    dim = _spectral_dim(case)
    u, vv = _spectral_uv(case)
    sigma = float(u @ P.weight_matrix(w, dim) @ vv)
    if not math.isfinite(sigma) or sigma == 0:
        return None
    p = case.params
    err = P.spectral_norm_errors(w, case.inputs[f"{WEIGHT}.0._u"], case.inputs[f"{WEIGHT}.0._v"],
                                 p["n_power_iterations"], p["eps"], dim, case.train)
    with np.errstate(all="ignore"):
        layer = spec_of(case).evaluate(case, {"output": np.asarray(cot, dtype=np.float64)}).meta["layer"]
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    x_dot = np.abs(np.broadcast_to(np.asarray(v.get("input", 0.0), dtype=np.float64), x.shape))
    w_dot = np.abs(np.broadcast_to(np.asarray(v.get(SN_ORIGINAL, 0.0), dtype=np.float64), w.shape))
    abs_w = np.abs(np.asarray(layer.inputs["weight"], dtype=np.float64))
    gg = np.abs(np.asarray(cot, dtype=np.float64))
    no_bias = {"bias": np.zeros_like(layer.inputs["bias"])} if "bias" in layer.inputs else {}
    ga = _layer_pull(layer, {"input": np.abs(x), "weight": abs_w, **no_bias}, gg)["weight"]
    gd = _layer_pull(layer, {"input": x_dot, "weight": abs_w, **no_bias}, gg)["weight"]
    counts = _layer_pull(layer, {"input": np.ones_like(x), "weight": np.ones_like(abs_w), **no_bias}, np.ones_like(gg))
    wd_m = P.weight_matrix(w_dot, dim)
    au, av = np.abs(u), np.abs(vv)
    return _SpectralTerms(
        sigma=sigma, r_sigma=float(err["sigma"]) / abs(sigma), s=float(au @ wd_m @ av),
        ga=P.weight_matrix(ga, dim), gd=P.weight_matrix(gd, dim), aw=np.abs(P.weight_matrix(w, dim)), wd=wd_m,
        outer=np.outer(au, av), k_w=max(1.0, float(np.max(counts["weight"], initial=1.0))),
        k_x=max(1.0, float(np.max(counts["input"], initial=1.0))), dim=dim, layer=layer, no_bias=no_bias)


def spectral_norm_second_order_error(case: Case, v: Mapping[str, np.ndarray],
                                     g: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Bound on the rounding of spectral_norm's second-order terms (``LayerSpec.second_order_error``),
    which cancel in exact arithmetic along every direction where W/σ is constant: a weight of one
    element (Linear 1→1, a 1×1×1 convolution), where W/σ = 1/(u·v) and dL/dW = G/σ - ⟨G, W⟩/σ²·u·v
    is 0 whatever W, the input and the bias. No difference sees their scale there (the absolute
    problem is invariant alike), but torch forms and rounds them.

    torch differentiates W/σ with σ = uᵀ·W_mat·v (u, v constant), through dL/dW = G/σ - c·u vᵀ,
    c = ⟨G, W⟩/σ², with G the layer's gradient of its weight (linear in the input x). Along the
    directions Ẇ (of the original) and ẋ (of the input: Ġ is the layer's weight gradient of ẋ),
    with σ̇ = uᵀ·Ẇ_mat·v, its derivative has the terms

        Ġ/σ,  G·σ̇/σ²,  (⟨Ġ, W⟩ + ⟨G, Ẇ⟩)/σ²·u vᵀ,  2⟨G, W⟩·σ̇/σ³·u vᵀ,

    taken in absolute value (G, Ġ replaced by the layer's gradients on |x|, |ẋ| and |g|, which bound
    their sums' terms; inner products by sums of absolute products; σ̇ by s = |u|ᵀ|Ẇ_mat||v|). Each
    is formed in a few roundings (at most 4 along its product/quotient chain, and up to 5 more
    adding the terms: 9), from G or Ġ (sums of K terms per element, K the layer's weight-gradient
    reduction length: 2√K + 1), and from σ (relative error r_σ, ``spectral_norm_errors``) once per
    power of σ it divides by; the terms with σ̇ or an inner product carry a sum of h·w terms more
    (2√(hw) + 1 each): error u·Σ ρ_t·|term t|.

    The input's second derivative Σ g·(the layer's input gradient through Ẇ/σ - W·σ̇/σ²) cancels
    alike: its terms are the layer's input gradient of |g| through the weight |Ẇ|/|σ| + |W|·s/σ²,
    with the largest ρ of those two terms plus that gradient's reduction (2√K_x + 1).

    Only for a weight of one element: a larger weight varies along some direction (v with random
    signs, the mode's scattered differences), so the mode sees these terms' scale itself."""
    cot = g.get("output")
    if cot is None or np.size(case.inputs[SN_ORIGINAL]) != 1:
        return {}
    t = _spectral_terms(case, v, cot)
    if t is None:
        return {}
    u_round = DTYPES[case.dtype].unit_roundoff
    w = case.inputs[SN_ORIGINAL]
    sigma, r_sigma, s = abs(t.sigma), t.r_sigma, t.s
    base = 9 + 2 * math.sqrt(t.k_w) + 1
    r_sum = 2 * math.sqrt(t.aw.size) + 1
    with np.errstate(all="ignore"):
        inner = np.sum(t.gd * t.aw) + np.sum(t.ga * t.wd)
        terms = (t.gd / sigma * (base + r_sigma) + t.ga * s / sigma**2 * (base + 2 * r_sigma + r_sum)
                 + inner / sigma**2 * t.outer * (base + 2 * r_sigma + r_sum)
                 + 2 * np.sum(t.ga * t.aw) * s / sigma**3 * t.outer * (base + 3 * r_sigma + 2 * r_sum))
        out = {f"d2.{SN_ORIGINAL}": _from_matrix(u_round * terms, w, t.dim)}
        if "input" in v:
            w_terms = _from_matrix(t.wd / sigma + t.aw * s / sigma**2, w, t.dim)
            x = np.abs(np.asarray(case.inputs["input"], dtype=np.float64))
            grad_x = _layer_pull(t.layer, {"input": x, "weight": w_terms, **t.no_bias}, np.abs(cot))["input"]
            rho_x = base + 2 * r_sigma + r_sum + 2 * math.sqrt(t.k_x) + 1
            out["d2.input"] = u_round * rho_x * np.asarray(grad_x, dtype=np.float64)
    return {k: np.where(np.isfinite(b), b, 0.0) for k, b in out.items()}


# -- predicates of the known entries ------------------------------------------------------------------

def spectral_norm_second_order_out_of_range(case: Case) -> bool:
    """A vjp2 case of spectral_norm some intermediate of whose second-order computation leaves the
    format's range (``_SpectralTerms``, in float64): torch's autograd divides by σ one power at a
    time (div's backward forms -G·((W/σ)/σ); differentiated again, or in forward mode, ((W/σ)/σ)/σ,
    G/σ/σ and (W/σ²)·σ̇/σ), so products of |G| or |Ġ|, |W| or |Ẇ|, and σ̇ (s), at most one of them
    along the direction (the computation is linear in it), over |σ|, σ² or |σ|³, and the inner
    products Σ|G·W|, Σ|Ġ·W| + Σ|G·Ẇ| and Σ|G·W|·s over them, are formed in the weight's format (in
    absolute value, which bounds the partial sums); one beyond the largest finite value is ±inf
    there, and inf - inf or 0·inf is NaN, where the result itself may be in range."""
    if case.mode_node.get("kind") != "vjp2" or case.invalid or not case.cotangents:
        return False
    from conformance.modes import mode_of

    try:
        return spectral_intermediate_out_of_range(case, mode_of("vjp2").directions(case),  # type: ignore[attr-defined]
                                                  case.cotangents["output"])
    except Exception:
        return False


def spectral_intermediate_out_of_range(case: Case, v: Mapping[str, np.ndarray], cot: np.ndarray) -> bool:
    """``spectral_norm_second_order_out_of_range`` for directions v and the output cotangent."""
    top = DTYPES[case.dtype].max_value
    t = _spectral_terms(case, v, cot)
    if t is None:
        return False
    sigma, s = abs(t.sigma), t.s
    with np.errstate(all="ignore"):
        gw = float(np.sum(t.ga * t.aw))
        inner = float(np.sum(t.gd * t.aw) + np.sum(t.ga * t.wd))
        top_of = {n: float(np.max(x, initial=0.0)) for n, x in (("G", t.ga), ("Ġ", t.gd), ("W", t.aw), ("Ẇ", t.wd))}
        # Products of at most one factor along the direction (Ġ, Ẇ or σ̇ ~ s): the computation is linear in it.
        factors = [(gf, wf, sf, (gn == "Ġ") + (wn == "Ẇ") + (sn == "s"))
                   for gn, gf in (("1", 1.0), ("G", top_of["G"]), ("Ġ", top_of["Ġ"]))
                   for wn, wf in (("1", 1.0), ("W", top_of["W"]), ("Ẇ", top_of["Ẇ"]))
                   for sn, sf in (("1", 1.0), ("s", s)) if gn != "1" or wn != "1"]
        scales = [gf * wf * sf / sigma**k for gf, wf, sf, along in factors if along <= 1 for k in (1, 2, 3)]
        scales += [x / sigma**k for x in (gw, inner, gw * s) for k in (1, 2, 3)]
    return any(not math.isfinite(x) or x > top for x in scales)


def _plain(case: Case) -> Case:
    """A vmap case's first slice (``VmapMode.slice_case``: a case of its own, the batch dim taken
    out); any other case as it is."""
    if case.mode_node.get("kind") != "vmap":
        return case
    from conformance.modes import mode_of

    return mode_of("vmap").slice_case(case, 0)  # type: ignore[attr-defined]


def onednn_bf16_width_one_output(case: Case) -> bool:
    """The parametrised layer is a 2-d or 3-d convolution (not transposed) whose output is 1 wide,
    with a width stride >= 2, and >= 5 high: the pattern of oneDNN's wrong bfloat16 sums on CPUs
    with AMX that a scan of integer inputs found (convolution.toml, onednn-amx-bf16-conv-wrong-sums).
    A vmap case is judged by its first slice (the geometry is the same in every slice)."""
    from reference import conv as RC

    if case.invalid:
        return False
    case = _plain(case)
    w = case.inputs.get(f"{WEIGHT}.original1", case.inputs.get(SN_ORIGINAL))
    module = str(case.params.get("module", ""))
    if w is None or "input" not in case.inputs or not module.startswith("Conv") or np.ndim(w) < 4:
        return False
    p = case.params["module_params"]
    nd = np.ndim(w) - 2
    x = np.shape(case.inputs["input"])
    xb = x if len(x) == nd + 2 else (1, *x)
    try:
        plan = RC.conv_plan(xb, np.shape(w), p["stride"], p["padding"], p["dilation"], p["groups"], p["padding_mode"])
    except Exception:
        return False
    stride = p["stride"] if isinstance(p["stride"], (list, tuple)) else (p["stride"],) * nd
    return plan.out[-1] == 1 and int(stride[-1]) >= 2 and plan.out[-2] >= 5
