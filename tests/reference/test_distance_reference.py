"""The PairwiseDistance reference on its own terms (no torch): hand values of every p, the eps
convention (asymmetry, d(x, x) = eps·D^(1/p)), broadcasting and keepdim, the gradient convention
at the kinks, and range-safe evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reference import distance as Dist

RNG = np.random.default_rng(20240612)
INF = math.inf


@pytest.mark.parametrize("p, expected", [
    (2.0, 5.0), (1.0, 7.0), (INF, 4.0), (-INF, 3.0), (0.0, 2.0),
    (3.0, (27 + 64) ** (1 / 3)), (0.5, (math.sqrt(3) + 2) ** 2), (-1.0, 1 / (1 / 3 + 1 / 4)),
])
def test_norm_hand_values(p, expected):
    assert Dist.vector_norm(np.array([3.0, -4.0]), p) == pytest.approx(expected, rel=1e-15)


def test_p0_counts_non_zero_entries_and_negative_p_vanishes_at_a_zero_entry():
    d = np.array([0.0, 2.0, -1.0, 0.0])
    assert Dist.vector_norm(d, 0.0) == 2.0
    assert Dist.vector_norm(d, -1.0) == 0.0 and Dist.vector_norm(d, -INF) == 0.0


@pytest.mark.parametrize("p", [2.0, 1.0, 3.0, 0.5, INF, -1.0])
def test_eps_is_added_to_the_difference(p):
    """d(x, x) = eps·D^(1/p) (not 0), and d(x1, x2) != d(x2, x1) when eps != 0."""
    x = RNG.standard_normal((3, 5))
    expected = 1e-3 * (5 ** (1 / p) if math.isfinite(p) else 1.0)
    np.testing.assert_allclose(Dist.pairwise_distance(x, x, p, 1e-3, False), expected, rtol=1e-14)
    x1, x2 = np.array([[1.0, 0.0]]), np.array([[0.0, 0.0]])
    assert Dist.pairwise_distance(x1, x2, p, 0.5, False)[0] != Dist.pairwise_distance(x2, x1, p, 0.5, False)[0]


def test_broadcasting_and_keepdim_shapes():
    x1, x2 = RNG.standard_normal((2, 1, 4)), RNG.standard_normal((3, 4))
    assert Dist.pairwise_distance(x1, x2, 2.0, 1e-6, False).shape == (2, 3)
    assert Dist.pairwise_distance(x1, x2, 2.0, 1e-6, True).shape == (2, 3, 1)
    assert Dist.pairwise_distance(np.ones(4), np.zeros(4), 2.0, 0.0, False).shape == ()
    assert Dist.pairwise_distance(np.ones((3, 1)), np.zeros((3, 4)), 1.0, 0.0, False).tolist() == [4.0] * 3
    g1, g2 = Dist.pairwise_distance_vjp(x1, x2, 2.0, 1e-6, False, np.ones((2, 3)))
    assert g1.shape == x1.shape and g2.shape == x2.shape


@pytest.mark.parametrize("p, expected", [
    (1.0, [0.0, 1.0, -1.0]),          # sign(d); 0 at the kink d = 0
    (2.0, [0.0, 0.6, -0.8]),          # d/N
    (0.5, [0.0, None, None]),         # (|d|/N)^(p-1) is infinite at 0: 0 by convention
    (INF, [0.0, 0.0, -1.0]),          # the argmax only
    (0.0, [0.0, 0.0, 0.0]),           # a count: zero gradient
    (-1.0, [0.0, 0.0, 0.0]),          # a zero entry makes N = 0: zero gradient
])
def test_gradient_convention_at_the_kink(p, expected):
    d = np.array([[0.0, 3.0, -4.0]])
    g1, g2 = Dist.pairwise_distance_vjp(d, np.zeros_like(d), p, 0.0, False, np.ones(1))
    for got, want in zip(g1[0], expected):
        if want is not None:
            assert got == pytest.approx(want, abs=1e-15)
    np.testing.assert_array_equal(g2, -g1)


def test_inf_norm_ties_share_the_gradient():
    d = np.array([[2.0, -2.0, 1.0, 2.0]])
    g1, _ = Dist.pairwise_distance_vjp(d, np.zeros_like(d), INF, 0.0, False, np.array([3.0]))
    np.testing.assert_allclose(g1, [[1.0, -1.0, 0.0, 1.0]])
    g1, _ = Dist.pairwise_distance_vjp(d, np.zeros_like(d), -INF, 0.0, False, np.array([3.0]))
    np.testing.assert_allclose(g1, [[0.0, 0.0, 3.0, 0.0]])


def test_broadcast_gradient_is_summed():
    x1, x2 = np.array([[1.0, 0.0], [0.0, 1.0]]), np.zeros(2)
    g1, g2 = Dist.pairwise_distance_vjp(x1, x2, 1.0, 0.0, False, np.array([1.0, 2.0]))
    np.testing.assert_array_equal(g1, [[1.0, 0.0], [0.0, 2.0]])
    np.testing.assert_array_equal(g2, [-1.0, -2.0])


@pytest.mark.parametrize("p", [2.0, 3.0, 0.5, 1.5, 25.0, -1.0, -2.5])
def test_vjp_matches_central_differences(p):
    x1, x2 = RNG.standard_normal((3, 5)), RNG.standard_normal((5,))
    g = RNG.standard_normal(3)
    g1, g2 = Dist.pairwise_distance_vjp(x1, x2, p, 1e-6, False, g)
    h = 1e-6
    for x, grad, which in ((x1, g1, 0), (x2, g2, 1)):
        v = RNG.standard_normal(x.shape)

        def f(t, x=x, v=v, which=which):
            args = [x1, x2]
            args[which] = x + t * v
            return float(np.sum(g * Dist.pairwise_distance(args[0], args[1], p, 1e-6, False)))

        fd = (f(h) - f(-h)) / (2 * h)
        assert fd == pytest.approx(float(np.sum(grad * v)), rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("p", [100.0, 25.0, -3.0, 0.5])
def test_norm_is_evaluated_without_overflow(p):
    """Scaling keeps the norm exact far outside the range of Σ|d|^p: ‖c·d‖ = |c|·‖d‖."""
    d = np.array([3.0, 4.0, 1.0])
    base = Dist.vector_norm(d, p)
    for c in (1e-250, 1e250):
        assert Dist.vector_norm(c * d, p) == pytest.approx(c * base, rel=1e-13)


def test_sum_to_shape():
    g = np.ones((2, 3, 4))
    assert Dist.sum_to_shape(g, (3, 4)).tolist() == (2 * np.ones((3, 4))).tolist()
    assert Dist.sum_to_shape(g, (2, 1, 4)).tolist() == (3 * np.ones((2, 1, 4))).tolist()
    assert Dist.sum_to_shape(g, (1,)).tolist() == [24.0]


# -- CosineSimilarity ----------------------------------------------------------------------------------


def test_cosine_hand_values_and_separate_clamps():
    x1, x2 = np.array([[3.0, 4.0]]), np.array([[4.0, 3.0]])
    assert Dist.cosine_similarity(x1, x2)[0] == pytest.approx(24 / 25, rel=1e-15)
    assert Dist.cosine_similarity(x1, -2 * x1)[0] == pytest.approx(-1.0, rel=1e-15)
    tiny = np.array([[3e-5, 4e-5]])
    # each norm clamped separately: 24e-10 / (max(5e-5, 1e-8)²) = 0.96; one clamp of the product would give 0.24
    assert Dist.cosine_similarity(tiny, tiny[:, ::-1], eps=1e-8)[0] == pytest.approx(0.96, rel=1e-14)
    assert Dist.cosine_similarity(tiny, x2, eps=1e-4)[0] == pytest.approx(24e-5 / (1e-4 * 5), rel=1e-14)


def test_cosine_zero_vectors_broadcasting_and_dim():
    assert Dist.cosine_similarity(np.zeros((1, 3)), np.ones((1, 3)))[0] == 0.0
    assert np.isnan(Dist.cosine_similarity(np.zeros((1, 3)), np.ones((1, 3)), eps=0.0)[0])
    a, b = RNG.standard_normal((2, 1, 4)), RNG.standard_normal((3, 4))
    assert Dist.cosine_similarity(a, b, dim=-1).shape == (2, 3)
    assert Dist.cosine_similarity(np.ones(3), np.ones(3), dim=0).shape == ()
    with pytest.raises(IndexError):
        Dist.cosine_similarity(a, b, dim=3)


def test_cosine_gradient_is_the_derivative_of_the_clamped_forward():
    x1, x2 = np.array([[3e-10, 4e-10]]), np.array([[4.0, 3.0]])
    g1 = Dist._cosine_similarity_vjp(np.ones(1), x1, x2, eps=1e-8)["x1"]
    np.testing.assert_allclose(g1, [[8e7, 6e7]], rtol=1e-14)  # x2/(eps·‖x2‖): the clamp is a constant


@pytest.mark.parametrize("shapes, dim", [(((2, 4, 3), (4, 1)), 1), (((5,), (5,)), 0), (((2, 1, 4), (3, 4)), -1)])
def test_cosine_vjp_matches_finite_differences(shapes, dim):
    from reference.finite_differences import vjp_check

    x1, x2 = RNG.standard_normal(shapes[0]), RNG.standard_normal(shapes[1])
    y = Dist.cosine_similarity(x1, x2, dim)
    g = RNG.standard_normal(y.shape)
    grads = Dist._cosine_similarity_vjp(g, x1, x2, dim)
    check = vjp_check(lambda a: {"y": Dist.cosine_similarity(a["x1"], a["x2"], dim)}, {"x1": x1, "x2": x2},
                      {"y": g}, grads)
    assert check.ok(), check
