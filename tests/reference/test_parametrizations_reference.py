"""torch.nn.utils.parametrizations references on their own terms: closed forms, the defining
properties (unit-norm slices, orthogonality, the top singular value), finite differences of every
VJP (reference.finite_differences.vjp_check) and the error analyses' basic behaviour (no torch)."""

from __future__ import annotations

import numpy as np
import pytest

from reference import functional as RF
from reference import parametrizations as P
from reference.finite_differences import vjp_check


@pytest.mark.parametrize("dim", [0, 1, 2, -1, None])
def test_weight_norm_slices_have_norm_g(dim):
    rng = np.random.default_rng(0)
    v = rng.standard_normal((3, 4, 2))
    g = np.abs(rng.standard_normal(np.shape(P.norm_except_dim(v, dim)))) + 0.5
    w = P.weight_norm(v, g, dim)
    np.testing.assert_allclose(P.norm_except_dim(w, dim), g)
    assert RF.vjp("weight_norm", v, g, dim, cotangent=np.ones_like(w))["g"].shape == np.shape(g)


@pytest.mark.parametrize("dim", [0, 1, -1, None])
def test_weight_norm_vjp_against_finite_differences(dim):
    rng = np.random.default_rng(1)
    v = rng.standard_normal((3, 4))
    g = rng.standard_normal(np.shape(P.norm_except_dim(v, dim)))
    cot = rng.standard_normal(v.shape)
    grads = RF.vjp("weight_norm", v, g, dim, cotangent=cot)
    assert vjp_check(lambda a: {"w": P.weight_norm(a["v"], a["g"], dim)}, {"v": v, "g": g}, {"w": cot}, grads).ok()


def test_weight_norm_dim_minus_one_is_the_last_dim():
    v = np.array([[3.0, 4.0], [6.0, 8.0]])
    # per column (the last dim kept): norms √45 and √80
    np.testing.assert_allclose(P.norm_except_dim(v, -1), [[np.sqrt(45.0), np.sqrt(80.0)]])
    np.testing.assert_allclose(P.norm_except_dim(v, None), np.sqrt(125.0))


def test_power_iteration_finds_the_top_singular_pair():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((5, 3, 2))
    mat = P.weight_matrix(w, 1)
    assert mat.shape == (3, 10)
    u, v = P.power_iteration(w, rng.standard_normal(3), rng.standard_normal(10), 200, 1e-12, 1)
    sigma = np.linalg.svd(mat, compute_uv=False)[0]
    assert u @ mat @ v == pytest.approx(sigma, rel=1e-10)
    np.testing.assert_allclose(np.linalg.svd(P.spectral_normalize(w, u, v, 1).transpose(1, 0, 2).reshape(3, -1),
                                             compute_uv=False)[0], 1.0, rtol=1e-10)
    # eps larger than the norms: normalize divides by eps
    u2, _ = P.power_iteration(w, rng.standard_normal(3), rng.standard_normal(10), 1, 1e6, 1)
    assert np.linalg.norm(u2) < 1e-3


def test_spectral_normalize_vjp_holds_u_and_v_constant():
    rng = np.random.default_rng(3)
    w, u, v = rng.standard_normal((4, 3)), rng.standard_normal(4), rng.standard_normal(3)
    cot = rng.standard_normal(w.shape)
    grads = RF.vjp("spectral_normalize", w, u, v, 0, cotangent=cot)
    assert vjp_check(lambda a: {"w": P.spectral_normalize(a["weight"], u, v, 0)}, {"weight": w}, {"w": cot},
                     grads).ok()


@pytest.mark.parametrize("orthogonal_map", P.ORTHOGONAL_MAPS)
@pytest.mark.parametrize("shape", [(4, 3), (3, 5), (2, 4, 4)])
@pytest.mark.parametrize("with_base", [False, True])
def test_orthogonal_maps_are_orthogonal_and_their_vjps_match_finite_differences(orthogonal_map, shape, with_base):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape) * 0.7
    tall = x if shape[-2] >= shape[-1] else np.swapaxes(x, -1, -2)
    k = min(shape[-2:])
    mask = np.ones(shape)
    if orthogonal_map == "householder":  # the diagonal is a sign (±1), not a parameter: held fixed
        tall[..., np.arange(k), np.arange(k)] = np.where(rng.random(tall.shape[:-2] + (k,)) < 0.5, -1.0, 1.0)
        mask_tall = mask if shape[-2] >= shape[-1] else np.swapaxes(mask, -1, -2)
        mask_tall[..., np.arange(k), np.arange(k)] = 0
    n = max(shape[-2:])
    base = P.haar_orthogonal(rng, (*shape[:-2], n, n)) if with_base else None
    q = P.orthogonal(x, orthogonal_map, base)
    qt = q if shape[-2] >= shape[-1] else np.swapaxes(q, -1, -2)
    np.testing.assert_allclose(np.swapaxes(qt, -1, -2) @ qt, np.broadcast_to(np.eye(k), qt.shape[:-2] + (k, k)),
                               atol=1e-13)
    cot = rng.standard_normal(q.shape)
    grads = RF.vjp("orthogonal", x, orthogonal_map, base, cotangent=cot)
    directions = {"X": rng.standard_normal(shape) * mask}
    check = vjp_check(lambda a: {"q": P.orthogonal(a["X"], orthogonal_map, base)}, {"X": x}, {"q": cot}, grads,
                      directions)
    assert check.ok(), check


def test_closed_forms_of_the_maps_on_a_rotation():
    t = 0.3
    a = np.array([[0.0, -t], [t, 0.0]])
    rotation = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    np.testing.assert_allclose(P.skew_matrix_exp(a), rotation, atol=2e-16)
    # Cayley: (I - A/2)⁻¹(I + A/2) is the rotation by 2·atan(t/2)
    angle = 2 * np.arctan(t / 2)
    np.testing.assert_allclose(P.cayley(a), [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]],
                               atol=2e-16)
    # one Householder reflector with a = 0: I - 2e₁e₁ᵀ, column 0 of it is -e₁; the diagonal sign -1 flips it
    x = np.array([[-1.0], [0.0]])
    np.testing.assert_allclose(P.orthogonal(x, "householder"), [[1.0], [0.0]])


def test_error_analyses_are_positive_and_grow_with_the_problem():
    rng = np.random.default_rng(5)
    v, g = rng.standard_normal((4, 9)), rng.standard_normal((4, 1))
    grad = rng.standard_normal((4, 9))
    small = P.weight_norm_errors(v[:, :2], g, 0)["weight"].max()
    large = P.weight_norm_errors(v, g, 0, grad, np.ones_like(grad))
    assert 0 < small < large["weight"].max() and (large["v"] > 0).all() and (large["g"] > 0).all()
    w = rng.standard_normal((4, 3))
    e = P.spectral_norm_errors(w, rng.standard_normal(4), rng.standard_normal(3), 3, 1e-12, 0, True, grad[:, :3],
                               np.ones((4, 3)))
    assert e["u"] > 0 and e["v"] > 0 and (e["weight.grad"] > 0).all()
    x = rng.standard_normal((5, 3))
    for m in P.ORTHOGONAL_MAPS:
        bound = P.orthogonal_errors(x, m, None, rng.standard_normal((5, 3)), np.ones((5, 3)))
        assert bound["weight"] > 0 and bound["X"] > 0
