"""An independent check of the loss references: PyTorch's own textbook implementations in
``torch.testing._internal.common_nn`` (``loss_reference_fns``: plain formulas written with loops,
not the ATen kernels under test; HuberLoss and TripletMarginLoss included) against nnconform's NumPy
references, in float64 on random inputs,
wherever both define the result (moderate values: the textbook soft margin formula overflows where
the reference stays finite). The reference package itself never imports torch.

Also checks that every combination of the deprecated size_average/reduce flags maps to the same
reduction in torch as in ``reference.loss.legacy_reduction``."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("expecttest")  # common_nn imports torch's test utilities, which need it
common_nn = pytest.importorskip("torch.testing._internal.common_nn")

from reference import loss  # noqa: E402
from reference import loss_binary as binary  # noqa: E402
from reference import loss_classification as cls  # noqa: E402
from reference import loss_margin as margin  # noqa: E402
from reference import loss_triplet as triplet  # noqa: E402

FNS = common_nn.loss_reference_fns
REDUCTIONS = ("none", "sum", "mean")
SEEDS = range(4)


def _t(a: np.ndarray) -> object:
    return torch.from_numpy(np.asarray(a, dtype=np.float64) if np.asarray(a).dtype.kind == "f" else np.asarray(a))


def _check(got_torch: object, ours: np.ndarray, rtol: float = 1e-11) -> None:
    np.testing.assert_allclose(np.asarray(got_torch.detach().numpy() if hasattr(got_torch, "numpy") else got_torch,
                                          dtype=np.float64), ours, rtol=rtol, atol=1e-13)


@pytest.mark.parametrize("reduction", REDUCTIONS + ("batchmean",))
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(reduction, log_target):
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        x, t = rng.standard_normal((4, 5)), rng.random((4, 5))
        if log_target:
            t = np.log(t)
        fn = FNS["KLDivLoss_log_target" if log_target else "KLDivLoss"]
        _check(fn(_t(x), _t(t), reduction), loss.kl_div(x, t, reduction=reduction, log_target=log_target))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 2.0])
def test_smooth_l1(reduction, beta):
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        x, t = rng.standard_normal((3, 7)), rng.standard_normal((3, 7))
        _check(FNS["SmoothL1Loss"](_t(x), _t(t), reduction, beta=beta),
               loss.smooth_l1_loss(x, t, reduction=reduction, beta=beta))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("delta", [0.25, 1.0, 2.0])
def test_huber(reduction, delta):
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        x, t = rng.standard_normal((3, 7)) * 2, rng.standard_normal((3, 7))
        _check(FNS["HuberLoss"](_t(x), _t(t), reduction, delta=delta), loss.huber_loss(x, t, reduction, delta))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("swap", [False, True])
def test_triplet_margin(reduction, swap):
    for seed, p, m in itertools.product(SEEDS, (2.0, 1.0, 3.0), (1.0, 0.3)):
        rng = np.random.default_rng(seed)
        a, pos, neg = rng.standard_normal((3, 5, 4))
        _check(FNS["TripletMarginLoss"](_t(a), _t(pos), _t(neg), margin=m, p=p, swap=swap, reduction=reduction),
               triplet.triplet_margin_loss(a, pos, neg, margin=m, p=p, swap=swap, reduction=reduction), rtol=1e-10)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("spatial", [False, True])
def test_nll(reduction, spatial):
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        shape = (3, 4, 2, 3) if spatial else (6, 4)
        x = rng.standard_normal(shape)
        t = rng.integers(0, 4, shape[:1] + shape[2:])
        w = rng.uniform(0.25, 2.0, 4)
        ignore = int(t.flat[0])  # a class that occurs
        fn = FNS["NLLLossNd" if spatial else "NLLLoss"]
        _check(fn(_t(x), _t(t), weight=_t(w), ignore_index=ignore, reduction=reduction),
               cls.nll_loss(x, t, w, reduction=reduction, ignore_index=ignore))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
def test_cross_entropy(reduction, label_smoothing):
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        x, w = rng.standard_normal((5, 4)), rng.uniform(0.25, 2.0, 4)
        t = rng.integers(0, 4, 5)
        p = rng.random((5, 4))
        for target in (t, p):
            ours = cls.cross_entropy(x, target, w, reduction=reduction, label_smoothing=label_smoothing)
            _check(FNS["CrossEntropyLoss"](_t(x), _t(target), weight=_t(w), reduction=reduction,
                                           label_smoothing=label_smoothing), ours)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_soft_margin_and_hinge_and_ranking(reduction):
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        x, x2 = rng.standard_normal((4, 6)) * 3, rng.standard_normal((4, 6))
        y = np.where(rng.random((4, 6)) < 0.5, -1.0, 1.0)
        _check(FNS["SoftMarginLoss"](_t(x), _t(y), reduction), binary.soft_margin_loss(x, y, reduction=reduction))
        for m in (1.0, -0.5, 2.0):
            _check(FNS["HingeEmbeddingLoss"](_t(x), _t(y), margin=m, reduction=reduction),
                   margin.hinge_embedding_loss(x, y, m, reduction=reduction))
            _check(FNS["MarginRankingLoss"](_t(x), _t(x2), _t(y), margin=m, reduction=reduction),
                   margin.margin_ranking_loss(x, x2, y, m, reduction=reduction))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("unbatched", [False, True])
def test_multi_margin(reduction, unbatched):
    for seed, p, m in itertools.product(SEEDS, (1, 2), (1.0, -0.5)):
        rng = np.random.default_rng(seed)
        x, t, w = rng.standard_normal((5, 4)), rng.integers(0, 4, 5), rng.uniform(-1.0, 2.0, 4)
        if unbatched:
            x, t = x[0], t[0]
        _check(FNS["MultiMarginLoss"](_t(x), _t(np.asarray(t)), p=p, margin=m, weight=_t(w), reduction=reduction),
               margin.multi_margin_loss(x, np.asarray(t), p, m, w, reduction=reduction))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_multilabel_margin(reduction):
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((5, 4))
        counts = rng.integers(0, 5, 5)
        labels = rng.integers(0, 4, (5, 4))  # repeats allowed
        slot = np.arange(4)[None, :]
        t = np.where(slot < counts[:, None], labels, np.where(slot == counts[:, None], -1, 0))
        _check(FNS["MultiLabelMarginLoss"](_t(x), _t(t), reduction),
               margin.multilabel_margin_loss(x, t, reduction=reduction))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cosine_embedding(reduction):
    for seed, m in itertools.product(SEEDS, (0.0, 0.5, -0.5)):
        rng = np.random.default_rng(seed)
        x1, x2 = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
        y = np.where(rng.random(5) < 0.5, -1.0, 1.0)
        # The textbook formula adds 1e-12 in float64, torch's kernel float32(1e-12): equal to ~1e-20 here.
        _check(FNS["CosineEmbeddingLoss"](_t(x1), _t(x2), _t(y), margin=m, reduction=reduction),
               margin.cosine_embedding_loss(x1, x2, y, m, reduction=reduction), rtol=1e-10)


_LOSSES = ("L1Loss", "MSELoss", "SmoothL1Loss", "KLDivLoss", "NLLLoss", "CrossEntropyLoss", "BCELoss",
           "BCEWithLogitsLoss", "SoftMarginLoss", "MultiLabelSoftMarginLoss", "MarginRankingLoss",
           "HingeEmbeddingLoss", "MultiLabelMarginLoss", "MultiMarginLoss", "CosineEmbeddingLoss", "PoissonNLLLoss",
           "TripletMarginLoss")


@pytest.mark.parametrize("name", _LOSSES)
def test_deprecated_flags_map_like_torch(name):
    """Every (size_average, reduce) pair, with and without a ``reduction`` beside it, gives the
    module the reduction ``legacy_reduction`` computes."""
    cls_ = getattr(torch.nn, name)
    for size_average, reduce, reduction in itertools.product((None, True, False), (None, True, False), REDUCTIONS):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = cls_(size_average=size_average, reduce=reduce, reduction=reduction)
        assert module.reduction == loss.legacy_reduction(size_average, reduce, reduction), (size_average, reduce)
