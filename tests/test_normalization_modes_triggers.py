"""The vmap raise predicates of conformance/known/normalization_modes.toml replay torch exactly: each is
checked against torch.func.vmap on random layouts (batch dim first and last)."""

from __future__ import annotations

import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from backends.base import Case, Layout  # noqa: E402
from backends.torch_call import materialise  # noqa: E402
from backends.torch_run import stacked_layout  # noqa: E402
from conformance.numerics import normalization_modes as M  # noqa: E402
from conformance.numerics.normalization import lrn_view_fails  # noqa: E402


def _layout(rng: random.Random, ndim: int) -> Layout:
    kind = rng.choice(["expanded", "strided", "strided", "permuted", "contiguous"])
    if kind == "expanded":
        dims = tuple(d for d in range(ndim) if rng.random() < 0.4)
        return Layout(kind="expanded", dims=dims) if dims else Layout()
    if kind == "strided":
        return Layout(kind="strided", step=tuple(rng.choice([1, 2]) for _ in range(ndim)))
    if kind == "permuted":
        perm = list(range(ndim))
        rng.shuffle(perm)
        return Layout(kind="permuted", perm=tuple(perm))
    return Layout()


@pytest.mark.parametrize("op, ranks, message", [
    ("GroupNorm", (2, 3, 4), "Expected X.is_contiguous"),
    ("LocalResponseNorm", (5, 6), "view size"),
])
def test_vmap_raise_predicates_are_torchs(op: str, ranks: tuple[int, ...], message: str) -> None:
    rng = random.Random(0)
    predicate = M.group_norm_vmap_merged_batch_not_contiguous if op == "GroupNorm" else M.lrn_vmap_view_fails
    call = (lambda a: F.group_norm(a, 1)) if op == "GroupNorm" else (lambda a: F.local_response_norm(a, 2))
    judged = raised = 0
    for _ in range(300):
        ndim = rng.choice(ranks)
        shape = tuple(rng.choice([1, 1, 2, 3]) for _ in range(ndim))
        layout = _layout(rng, ndim)
        at = ndim if rng.random() < 0.5 else 0
        case = Case(op=op, dtype="float32", params={"num_groups": 1, "size": 2, "eps": 1e-5},
                    inputs={"input": np.zeros(shape)}, layouts={"input": layout}, mode="vmap",
                    call={"mode": {"kind": "vmap", "batch": 3, "in_dim": {"input": at}}})
        stacked = materialise(np.random.default_rng(0).standard_normal(shape[:at] + (3,) + shape[at:]),
                              stacked_layout(layout.describe(), ndim, at), torch.float32, "cpu")
        try:
            torch.func.vmap(call, in_dims=at)(stacked)
            got = False
        except ValueError:  # (one value per channel in training: not a case)
            continue
        except RuntimeError as exc:
            if message not in str(exc):
                continue  # (vmap's own NYI for channels-last memory formats: unsupported)
            got = True
        if op == "LocalResponseNorm" and lrn_view_fails(case):
            continue  # the plain call's own failure (lrn-5d-view-raises)
        judged += 1
        raised += got
        assert predicate(case) == got, (shape, layout, at)
    assert judged > 150 and raised > 0
