"""``torch.nn.utils.parametrizations``: the maths of weight_norm, spectral_norm and orthogonal,
forward and VJP, and the first-order error analyses of the weights torch forms from them.

A parametrised module computes its weight W from its originals at every call; the layer then
uses W. Here each parametrisation is a function of the originals returning W (torch's
functional form where it has one), with its VJP: the layer's gradient of W pulled back onto the
originals. Shapes follow torch's:

- ``weight_norm(v, g, dim)``: W = g·v/‖v‖, the norm over every dim but ``dim`` (kept with size
  1, as g's shape is), or over the whole tensor when dim is None (g then 0-d). A negative dim
  counts from the end (Python's rule).
- ``spectral_normalize(weight, u, v, dim)``: W/σ with σ = uᵀ·W_mat·v, W_mat the weight with
  ``dim`` moved to the front and the rest flattened; u and v are constants (torch computes them
  under no_grad: the gradient does not follow the power iteration), given by
  ``power_iteration`` (n rounds of u ← normalize(W_mat·v), v ← normalize(W_matᵀ·u), normalize
  dividing by max(‖·‖, eps)), run in training mode only.
- ``orthogonal(X, orthogonal_map, base)``: Q orthogonal from an unconstrained X (..., n, k)
  (a batch of matrices; a wide one is handled transposed): ``matrix_exp`` and ``cayley`` map the
  skew-symmetric A = L - Lᵀ of L = [tril(X), 0] (n×n) to exp(A) or (I - A/2)⁻¹(I + A/2) and keep
  k columns; ``householder`` multiplies the reflectors I - τᵢvᵢvᵢᵀ, vᵢ = eᵢ + tril(X, -1)[:, i],
  τᵢ = 2/(1 + ‖tril(X, -1)[:, i]‖²), and scales column i by int(X[i, i]) (±1: the diagonal is a
  sign, not a parameter; it has no gradient). With ``base`` (use_trivialization) Q = base·Q.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from reference.registry import functional

ORTHOGONAL_MAPS = ("matrix_exp", "cayley", "householder")


# -- weight_norm ------------------------------------------------------------------------------------

def norm_axes(ndim: int, dim: int | None) -> tuple[int, ...]:
    """The axes ``weight_norm``'s norm runs over: all but ``dim`` (all when None)."""
    if dim is None:
        return tuple(range(ndim))
    if not -ndim <= dim < ndim:
        raise IndexError(f"weight_norm: dim {dim} out of range for {ndim} dims")
    return tuple(a for a in range(ndim) if a != dim % ndim)


def norm_except_dim(v: np.ndarray, dim: int | None) -> np.ndarray:
    """‖v‖₂ over every axis but ``dim``, kept with size 1 (a 0-d array when dim is None)."""
    axes = norm_axes(np.ndim(v), dim)
    return np.sqrt(np.sum(np.square(v), axis=axes, keepdims=dim is not None))


def _weight_norm_vjp(cotangent: np.ndarray, v: np.ndarray, g: np.ndarray, dim: int | None = 0) -> dict:
    """dL/dg = Σ_slice G·v/‖v‖; dL/dv = (g/‖v‖)·(G - (v/‖v‖)·dL/dg)."""
    n = norm_except_dim(v, dim)
    w = v / n
    axes = norm_axes(np.ndim(v), dim)
    grad_g = np.sum(cotangent * w, axis=axes, keepdims=dim is not None)
    return {"v": g / n * (cotangent - w * grad_g), "g": grad_g.reshape(np.shape(g))}


def _weight_norm_example(rng: np.random.Generator):
    v = rng.standard_normal((4, 3, 2))
    return (v, rng.standard_normal((1, 3, 1)) + 2.0), {"dim": 1}


@functional(vjp=_weight_norm_vjp, example=_weight_norm_example)
def weight_norm(v: np.ndarray, g: np.ndarray, dim: int | None = 0) -> np.ndarray:
    """W = g·v/‖v‖ (torch._weight_norm): the norm over every dim of v but ``dim`` (None: over the
    whole tensor), g broadcast against it (size 1 on the normed dims, or 0-d). ‖v‖ = 0 gives NaN."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(g, dtype=np.float64) * v / norm_except_dim(v, dim)


def weight_norm_errors(v: np.ndarray, g: np.ndarray, dim: int | None, grad_w: np.ndarray | None = None,
                       grad_w_error: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """First-order error bounds, in units of the format's u, of what torch forms:

    - "weight" (relative to |W|, one factor for all elements): ‖v‖² sums m squares (2√m + 1
      relative; the root halves it) and the root, the quotient g/‖v‖ and the product round once
      each: √m + 4, m the slice size;
    - with the layer's gradient G of W and the bound of its error (``grad_w_error``, absolute,
      units of u): "g" for dL/dg = Σ G·w (w = v/‖v‖, relative error √m + 2): Σ|δG||w| +
      (2√m + 1 + √m + 2)·Σ|G||w|; "v" for (g/‖v‖)·(G - w·dL/dg): |g|/‖v‖·(|δG| + |w|·δ(dL/dg) +
      (√m + 3)·(|G| + |w·dL/dg|)) + (√m + 4)·|dL/dv|.
    """
    axes = norm_axes(np.ndim(v), dim)
    m = math.prod(np.shape(v)[a] for a in axes) if axes else 1
    rel_w = math.sqrt(m) + 4
    out = {"weight": np.full(np.shape(v), rel_w)}
    if grad_w is None:
        return out
    n = norm_except_dim(v, dim)
    w = np.abs(v / n)
    keep = dim is not None
    grads = _weight_norm_vjp(grad_w, v, g, dim)
    err_gg = (np.sum(grad_w_error * w, axis=axes, keepdims=keep)
              + (3 * math.sqrt(m) + 3) * np.sum(np.abs(grad_w) * w, axis=axes, keepdims=keep))
    gg = np.abs(grads["g"]).reshape(np.shape(err_gg))
    out["g"] = err_gg.reshape(np.shape(g))
    out["v"] = (np.abs(g) / n * (grad_w_error + w * err_gg + (math.sqrt(m) + 3) * (np.abs(grad_w) + w * gg))
                + (math.sqrt(m) + 4) * np.abs(grads["v"]))
    return out


# -- spectral_norm ----------------------------------------------------------------------------------

def weight_matrix(weight: np.ndarray, dim: int) -> np.ndarray:
    """The weight with ``dim`` moved to the front, flattened to (size of dim, rest)."""
    w = np.moveaxis(np.asarray(weight, dtype=np.float64), dim, 0)
    return w.reshape(w.shape[0], -1)


def normalize(x: np.ndarray, eps: float) -> np.ndarray:
    """x / max(‖x‖₂, eps) (torch.nn.functional.normalize of a vector)."""
    return x / max(float(np.sqrt(np.sum(np.square(x)))), eps)


def power_iteration(weight: np.ndarray, u: np.ndarray, v: np.ndarray, n_power_iterations: int, eps: float,
                    dim: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) after ``n_power_iterations`` rounds of u ← normalize(W_mat·v), v ← normalize(W_matᵀ·u)."""
    mat = weight_matrix(weight, dim)
    for _ in range(n_power_iterations):
        u = normalize(mat @ v, eps)
        v = normalize(mat.T @ u, eps)
    return u, v


def _spectral_normalize_vjp(cotangent: np.ndarray, weight: np.ndarray, u: np.ndarray, v: np.ndarray,
                            dim: int = 0) -> dict:
    """With σ = uᵀ·W_mat·v and u, v constant: dL/dW = G/σ - (⟨G, W⟩/σ²)·(u·vᵀ in W's layout)."""
    mat = weight_matrix(weight, dim)
    sigma = float(u @ mat @ v)
    outer = np.moveaxis(np.outer(u, v).reshape(np.moveaxis(weight, dim, 0).shape), 0, dim)
    return {"weight": cotangent / sigma - float(np.sum(cotangent * weight)) / sigma**2 * outer}


def _spectral_normalize_example(rng: np.random.Generator):
    w = rng.standard_normal((3, 2, 2))
    return (w, rng.standard_normal(2), rng.standard_normal(6)), {"dim": 1}


@functional(vjp=_spectral_normalize_vjp, example=_spectral_normalize_example)
def spectral_normalize(weight: np.ndarray, u: np.ndarray, v: np.ndarray, dim: int = 0) -> np.ndarray:
    """W/σ, σ = uᵀ·W_mat·v (the estimate of W's largest singular value that
    ``torch.nn.utils.parametrizations.spectral_norm`` divides by; u, v from ``power_iteration``).
    Shapes: W any ≥ 2-d, u (size of dim,), v (∏ other dims,)."""
    return np.asarray(weight, dtype=np.float64) / float(u @ weight_matrix(weight, dim) @ v)


def spectral_norm_errors(weight: np.ndarray, u0: np.ndarray, v0: np.ndarray, n_power_iterations: int,
                         eps: float, dim: int, training: bool, grad_w: np.ndarray | None = None,
                         grad_w_error: np.ndarray | None = None) -> dict[str, np.ndarray | float]:
    """First-order error bounds (units of u) of torch's spectral normalisation: norm-wise bounds
    of u and v carried through the power iteration (each matrix-vector product of length L costs
    (2√L + 1)·(|W|·|x|) plus |W|·|δx|; normalize(p) divides by N = max(‖p‖, eps) and adds
    2‖δp‖/N + (√h + 2), the norm and the quotient), then σ = uᵀ(W v) (its products and the
    propagated δu, δv), W/σ relative δσ/|σ| + 1 ("weight", a factor for every element), and with
    the layer's gradient G and its error bound: dL/dW = G/σ - c·u vᵀ, c = ⟨G, W⟩/σ²."""
    mat = weight_matrix(weight, dim)
    h, w = mat.shape
    amat = np.abs(mat)
    u, v = np.asarray(u0, dtype=np.float64), np.asarray(v0, dtype=np.float64)
    err_u = err_v = 0.0
    fro = float(np.linalg.norm(mat))
    for _ in range(n_power_iterations if training else 0):
        p = mat @ v
        err_p = (2 * math.sqrt(w) + 1) * np.linalg.norm(amat @ np.abs(v)) + fro * err_v
        big_n = max(float(np.linalg.norm(p)), eps)
        u = p / big_n
        err_u = 2 * err_p / big_n + (math.sqrt(h) + 2) * float(np.linalg.norm(u))
        q = mat.T @ u
        err_q = (2 * math.sqrt(h) + 1) * np.linalg.norm(amat.T @ np.abs(u)) + fro * err_u
        big_n = max(float(np.linalg.norm(q)), eps)
        v = q / big_n
        err_v = 2 * err_q / big_n + (math.sqrt(w) + 2) * float(np.linalg.norm(v))
    wv = mat @ v
    sigma = float(u @ wv)
    err_sigma = ((2 * math.sqrt(w) + 1) * float(np.abs(u) @ amat @ np.abs(v)) + (2 * math.sqrt(h) + 1)
                 * float(np.abs(u) @ np.abs(wv)) + float(np.linalg.norm(wv)) * err_u
                 + float(np.linalg.norm(mat.T @ u)) * err_v)
    rel = err_sigma / abs(sigma) + 1 if sigma != 0 else np.inf
    out: dict[str, np.ndarray | float] = {"weight": np.full(np.shape(weight), rel), "u": err_u, "v": err_v,
                                          "sigma": err_sigma}
    if grad_w is None:
        return out
    outer = np.moveaxis(np.outer(u, v).reshape(np.moveaxis(weight, dim, 0).shape), 0, dim)
    dot = float(np.sum(grad_w * weight))
    err_dot = float(np.sum(grad_w_error * np.abs(weight))) + (2 * math.sqrt(h * w) + 1) * float(
        np.sum(np.abs(grad_w * weight)))
    c = dot / sigma**2
    err_c = err_dot / sigma**2 + abs(c) * (2 * err_sigma / abs(sigma) + 2)
    grad = grad_w / sigma - c * outer
    err_outer = np.abs(np.moveaxis(np.outer(np.abs(u), np.ones(w)).reshape(np.moveaxis(weight, dim, 0).shape),
                                   0, dim)) * err_v + np.abs(np.moveaxis(np.outer(np.ones(h), np.abs(v)).reshape(
                                       np.moveaxis(weight, dim, 0).shape), 0, dim)) * err_u
    out["weight.grad"] = (grad_w_error / abs(sigma) + np.abs(grad_w / sigma) * (rel + 1) + err_c * np.abs(outer)
                          + abs(c) * (err_outer + 2 * np.abs(outer)) + np.abs(grad))
    return out


# -- orthogonal -------------------------------------------------------------------------------------

def skew_from(x: np.ndarray) -> np.ndarray:
    """A = L - Lᵀ with L = [tril(X), 0]: (..., n, n) from a tall (..., n, k) X."""
    n, k = x.shape[-2:]
    low = np.tril(x)
    if n != k:
        low = np.concatenate([low, np.zeros((*x.shape[:-2], n, n - k))], axis=-1)
    return low - np.swapaxes(low, -1, -2)


def skew_from_vjp(grad_a: np.ndarray, k: int) -> np.ndarray:
    """Adjoint of ``skew_from``: tril of (Ā - Āᵀ), first k columns (the diagonal cancels: 0)."""
    return np.tril(grad_a - np.swapaxes(grad_a, -1, -2), -1)[..., :k]


def _eig_skew(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(λ, V): A = V·diag(iλ)·Vᴴ for a real skew-symmetric A (iA is Hermitian: eigh)."""
    mu, vecs = np.linalg.eigh(1j * a)
    return -mu, vecs  # A = -i·(iA) = V·diag(-iμ)·Vᴴ


def skew_matrix_exp(a: np.ndarray) -> np.ndarray:
    """exp(A) of a (batch of) real skew-symmetric A, through its unitary eigendecomposition."""
    lam, vecs = _eig_skew(a)
    return np.real(vecs @ (np.exp(1j * lam)[..., :, None] * np.swapaxes(vecs.conj(), -1, -2)))


def skew_matrix_exp_vjp(a: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """Aᵀ-adjoint of the Fréchet derivative of exp at a skew A: V·(F ∘ (Vᴴ·Ḡ·V))·Vᴴ with
    Fᵢⱼ = (e^{μᵢ} - e^{μⱼ})/(μᵢ - μⱼ) for the eigenvalues μ of Aᵀ = -A, formed as
    e^{(μᵢ+μⱼ)/2}·sinc((λᵢ-λⱼ)/2) (no cancellation for close eigenvalues)."""
    lam, vecs = _eig_skew(-a)
    mu = 1j * lam
    half = (lam[..., :, None] - lam[..., None, :]) / 2
    f = np.exp((mu[..., :, None] + mu[..., None, :]) / 2) * np.sinc(half / np.pi)
    inner = np.swapaxes(vecs.conj(), -1, -2) @ grad @ vecs
    return np.real(vecs @ (f * inner) @ np.swapaxes(vecs.conj(), -1, -2))


def cayley(a: np.ndarray) -> np.ndarray:
    """(I - A/2)⁻¹(I + A/2)."""
    eye = np.eye(a.shape[-1])
    return np.linalg.solve(eye - a / 2, eye + a / 2)


def cayley_vjp(a: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """With M = I - A/2 and Q = M⁻¹(I + A/2): dQ = M⁻¹·dA·(I + Q)/2, so Ā = M⁻ᵀ·Ḡ·(I + Q)ᵀ/2."""
    eye = np.eye(a.shape[-1])
    q = cayley(a)
    return np.linalg.solve(np.swapaxes(eye - a / 2, -1, -2), grad) @ np.swapaxes(eye + q, -1, -2) / 2


def _reflectors(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(V, τ): vᵢ = eᵢ + tril(X, -1)[:, i], τᵢ = 2/(1 + ‖tril(X, -1)[:, i]‖²), for a tall (..., n, k) X."""
    n, k = x.shape[-2:]
    low = np.tril(x, -1)
    tau = 2.0 / (1.0 + np.sum(low * low, axis=-2))
    return low + np.eye(n, k), tau


def householder_product(x: np.ndarray) -> np.ndarray:
    """(H₁·H₂·…·H_k)[:, :k], Hᵢ = I - τᵢvᵢvᵢᵀ (see ``_reflectors``), applied right to left."""
    n, k = x.shape[-2:]
    vecs, tau = _reflectors(x)
    z = np.broadcast_to(np.eye(n, k), x.shape).copy()
    for i in reversed(range(k)):
        vi = vecs[..., :, i:i + 1]
        z = z - tau[..., None, i:i + 1] * vi * (np.swapaxes(vi, -1, -2) @ z)
    return z


def householder_product_vjp(x: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """Reverse accumulation over the reflectors: for Zᵢ = Hᵢ·Zᵢ₊₁ with w = vᵀZᵢ₊₁, the cotangent
    Ḡ of Zᵢ gives Hᵢ·Ḡ for Zᵢ₊₁, -τ(Ḡ·wᵀ + Zᵢ₊₁·Ḡᵀ·v) for v and -vᵀ·Ḡ·wᵀ for τ; v's entries below
    the diagonal and τ = 2/(1 + ‖a‖²) (dτ/da = -τ²·a) feed back into tril(X, -1)."""
    n, k = x.shape[-2:]
    vecs, tau = _reflectors(x)
    zs = [np.broadcast_to(np.eye(n, k), x.shape).copy()]
    for i in reversed(range(k)):  # zs[j] = Z_{k-j+1}... kept in application order
        vi = vecs[..., :, i:i + 1]
        zs.append(zs[-1] - tau[..., None, i:i + 1] * vi * (np.swapaxes(vi, -1, -2) @ zs[-1]))
    low = np.tril(x, -1)
    out = np.zeros(x.shape)
    g = grad
    for i in range(k):
        z_next = zs[k - 1 - i]  # the operand H_i acts on
        vi = vecs[..., :, i:i + 1]
        t = tau[..., None, i:i + 1]
        w = np.swapaxes(vi, -1, -2) @ z_next
        grad_v = -t * (g @ np.swapaxes(w, -1, -2) + z_next @ (np.swapaxes(g, -1, -2) @ vi))
        grad_tau = -(np.swapaxes(vi, -1, -2) @ g @ np.swapaxes(w, -1, -2))
        col = grad_v[..., :, 0] + (grad_tau[..., 0, :] * -(t[..., 0, :] ** 2)) * low[..., :, i]
        out[..., :, i] = col
        g = g - vi * (t * (np.swapaxes(vi, -1, -2) @ g))
    return np.tril(out, -1)


def tall_view(x: np.ndarray) -> tuple[np.ndarray, bool]:
    """(the matrices with rows >= columns: x or its transpose, whether transposed)."""
    return (np.swapaxes(x, -1, -2), True) if x.shape[-2] < x.shape[-1] else (x, False)


def _orthogonal_vjp(cotangent: np.ndarray, x: np.ndarray, orthogonal_map: str = "matrix_exp",
                    base: np.ndarray | None = None) -> dict:
    """dL/dX through the map (see ``orthogonal``); ``base`` is a buffer (no gradient)."""
    xt, transposed = tall_view(np.asarray(x, dtype=np.float64))
    g = np.swapaxes(cotangent, -1, -2) if transposed else cotangent
    if base is not None:
        g = np.swapaxes(base, -1, -2) @ g
    k = xt.shape[-1]
    if orthogonal_map == "householder":
        sign = np.trunc(np.diagonal(xt, axis1=-2, axis2=-1))[..., None, :]
        grad = householder_product_vjp(xt, g * sign)
    else:
        a = skew_from(xt)
        full = np.zeros(a.shape)
        full[..., :k] = g
        grad_a = skew_matrix_exp_vjp(a, full) if orthogonal_map == "matrix_exp" else cayley_vjp(a, full)
        grad = skew_from_vjp(grad_a, k)
    return {"X": np.swapaxes(grad, -1, -2) if transposed else grad}


def _orthogonal_example(rng: np.random.Generator):
    x = rng.standard_normal((2, 4, 3)) * 0.5
    return (x,), {"orthogonal_map": "cayley", "base": np.linalg.qr(rng.standard_normal((4, 4)))[0]}


@functional(vjp=_orthogonal_vjp, example=_orthogonal_example)
def orthogonal(X: np.ndarray, orthogonal_map: str = "matrix_exp", base: np.ndarray | None = None) -> np.ndarray:  # noqa: N803
    """Q of ``torch.nn.utils.parametrizations.orthogonal`` from its original X (..., n, k) (see the
    module docstring): orthonormal columns (n >= k) or rows; ``base`` (n×n of the tall view, or
    None) multiplies from the left when use_trivialization is on."""
    if orthogonal_map not in ORTHOGONAL_MAPS:
        raise ValueError(f"orthogonal_map has to be one of {ORTHOGONAL_MAPS}, got {orthogonal_map!r}")
    xt, transposed = tall_view(np.asarray(X, dtype=np.float64))
    n, k = xt.shape[-2:]
    if orthogonal_map == "householder":
        q = householder_product(xt) * np.trunc(np.diagonal(xt, axis1=-2, axis2=-1))[..., None, :]
    else:
        a = skew_from(xt)
        q = (skew_matrix_exp(a) if orthogonal_map == "matrix_exp" else cayley(a))[..., :k]
    if base is not None:
        q = np.asarray(base, dtype=np.float64) @ q
    return np.swapaxes(q, -1, -2) if transposed else q


def orthogonal_errors(x: np.ndarray, orthogonal_map: str, base: np.ndarray | None,
                      grad_q: np.ndarray | None = None, grad_q_error: np.ndarray | None = None) -> dict:
    """Norm-wise first-order error bounds (units of u; each also bounds every element) of torch's
    orthogonal map in the tall view (n×k, A the n×n skew matrix):

    - matrix_exp: scaling and squaring backward error 4n·(‖A‖₁ + 1) (the squarings double the
      error each, 2^s ≈ ‖A‖₁); exp's Fréchet derivative at a skew A has norm 1;
    - cayley: a solve with M = I - A/2, κ(M) <= 1 + ‖A‖₂/2: 4n·κ(M);
    - householder: k reflectors of n-vectors, each with τ‖v‖² = 2: 4·k·n;
    - with base: one more product of n terms: (2√n + 1)·‖|base|·|Q|‖ + ‖base‖·E.
    "weight" is that bound (absolute, every element). With the layer's gradient of Q (``grad_q``,
    the weight's layout) and its error bound, "X" bounds dL/dX: the cotangent Ḡ of the map
    (baseᵀ times the tall gradient: (2√n + 1)·‖|base|ᵀ|G|‖ more) enters the adjoint, whose norm is
    at most the map's condition (1 for exp, κ(M)² for cayley, 2k for the reflectors), and the
    adjoint's own evaluation errs by: matrix_exp, torch exponentiates the 2n×2n block
    [[Aᵀ, Ḡ], [0, Aᵀ]]: 8n·(‖A‖₁ + ‖Ḡ‖₁ + 1)·(1 + ‖Ḡ‖₁); cayley, two solves: 2·4n·κ(M)²·‖Ḡ‖;
    householder, the reflectors again: 2·4kn·‖Ḡ‖.
    """
    xt, transposed = tall_view(np.asarray(x, dtype=np.float64))
    n, k = xt.shape[-2:]
    a = skew_from(xt)
    a_norm = float(np.max(np.sum(np.abs(a), axis=-2)))
    if orthogonal_map == "householder":
        err, cond = 4.0 * k * n, 2.0 * k
    elif orthogonal_map == "matrix_exp":
        err, cond = 4.0 * n * (a_norm + 1), 1.0
    else:
        kappa = 1 + float(np.max(np.linalg.norm(a, ord=2, axis=(-2, -1)))) / 2
        err, cond = 4.0 * n * kappa, kappa**2
    if base is not None:
        q = orthogonal(xt, orthogonal_map)
        err = (2 * math.sqrt(n) + 1) * float(np.max(np.linalg.norm(np.abs(base) @ np.abs(q), axis=(-2, -1)))) \
            + float(np.max(np.linalg.norm(base, ord=2, axis=(-2, -1)))) * err
    out = {"weight": err}
    if grad_q is None:
        return out
    g = np.swapaxes(grad_q, -1, -2) if transposed else np.asarray(grad_q)
    g_err = float(np.linalg.norm(grad_q_error))
    if base is not None:
        g_err += (2 * math.sqrt(n) + 1) * float(np.linalg.norm(np.abs(np.swapaxes(base, -1, -2)) @ np.abs(g)))
        g = np.swapaxes(base, -1, -2) @ g
    g_one = float(np.max(np.sum(np.abs(g), axis=-2)))
    g_fro = float(np.linalg.norm(g))
    if orthogonal_map == "matrix_exp":
        back = 8.0 * n * (a_norm + g_one + 1) * (1 + g_one)
    elif orthogonal_map == "cayley":
        back = 2 * 4.0 * n * cond * g_fro
    else:
        back = 2 * 4.0 * k * n * g_fro
    out["X"] = cond * g_err + back + err * g_fro * cond
    return out


def haar_orthogonal(rng: np.random.Generator, shape: Sequence[int]) -> np.ndarray:
    """A Haar-distributed orthogonal (..., n, n) matrix (QR of a Gaussian, R's diagonal made positive)."""
    q, r = np.linalg.qr(rng.standard_normal(tuple(shape)))
    return q * np.where(np.diagonal(r, axis1=-2, axis2=-1) < 0, -1.0, 1.0)[..., None, :]
