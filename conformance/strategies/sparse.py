"""Case strategies of the sparse family: Embedding and EmbeddingBag.

Both draw a weight (num_embeddings, embedding_dim) in any layout and int64 indices drawn from a
few rows (``rows used``) so that rows repeat; padding_idx none, a row or a negative row; max_norm
and norm_type. EmbeddingBag adds the mode (mean, its default, first), the input form (a 2-d batch
of equal bags, or a 1-d input with offsets, whose bags may be empty, with include_last_offset),
per_sample_weights (mode sum) and, in max mode, weights distinct within each column (ties between
distinct rows only where asked for: torch does not say which of them wins).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case
from conformance import strategies as S

MAX_NORMS = (None, 1.0, 2.0, 0.5, 4.0)
NORM_TYPES = (2.0, 1.0, 3.0, float("inf"), 1.5)
MODES = ("mean", "sum", "max")
# A corner drawn one time in eight (its regime pins it): False first, so it shrinks away.
RARELY = (False,) * 7 + (True,)


def _padding_idx(d: S.Drawer, rows: int) -> int | None:
    choice = d.choice(("none", "a row", "a negative row"), "padding_idx")
    if choice == "none":
        return None
    row = d.integer(0, rows - 1, "padding row")
    return row if choice == "a row" else row - rows


@st.composite
def _embedding_case(draw: Any, dtype: str, invalid: str = "") -> Case:
    """Weight (num_embeddings, embedding_dim) in any layout; int64 indices of 0 to 3 dims with
    duplicates (drawn from a few rows so that rows repeat)."""
    d = S.Drawer(draw)
    rows = d.integer(1, 16, "num_embeddings")
    dim = d.integer(1, 8, "embedding_dim")
    params: dict[str, Any] = {"num_embeddings": rows, "embedding_dim": dim,
                              "padding_idx": _padding_idx(d, rows),
                              "max_norm": d.choice(MAX_NORMS, "max_norm"),
                              "norm_type": d.choice(NORM_TYPES, "norm_type"),
                              "scale_grad_by_freq": d.flag("scale_grad_by_freq"),
                              "sparse": d.flag("sparse")}
    # Frequency scaling divides by counts: the exact tier keeps to plain sums.
    tier = S.tier(d, ("float",) if params["scale_grad_by_freq"] else S.TIERS)
    index_shape = tuple(S.sizes_within(d, d.integer(0, 3, "indices ndim"), 256, hi=8, label="indices shape"))
    rng = np.random.default_rng(d.integer(0, 2**32 - 1, "indices.seed"))
    used = d.integer(1, rows, "rows used")  # few rows used -> many duplicates
    indices = rng.choice(rng.permutation(rows)[:used], size=index_shape).astype(np.int64)
    if invalid == "index out of range":
        indices = indices.reshape(-1)
        indices = np.concatenate([indices, [d.choice((rows, rows + 3, -1), "bad index")]]).astype(np.int64)
    elif invalid == "padding_idx out of range":
        params["padding_idx"] = d.choice((rows, -rows - 1), "bad padding_idx")
    layout = S.layouts(d, 2, "layout.weight")
    weight = S.values(d, (rows, dim), dtype, tier, "weight", int_limit=4, layout=layout,
                      scale=d.choice((1.0, 0.25, 4.0), "weight.scale"))
    return Case(op="Embedding", dtype=dtype, params=params, inputs={"input": indices, "weight": weight},
                differentiable=("weight",), layouts={"weight": layout}, tier=tier, cotangent_seed=S.seed(d),
                invalid=bool(invalid), note=invalid)


def embedding_cases(dtype: str) -> st.SearchStrategy[Case]:
    return _embedding_case(dtype)


def embedding_invalid_cases(dtype: str) -> st.SearchStrategy[Case]:
    return st.sampled_from(("index out of range", "padding_idx out of range")).flatmap(
        lambda kind: _embedding_case(dtype, kind))


# -- EmbeddingBag ---------------------------------------------------------------------------------

BAG_INVALID = ("index out of range", "padding_idx out of range", "offsets with a 2-d input",
               "1-d input without offsets", "offsets[0] not 0", "last offset beyond the input",
               "per_sample_weights with mode mean or max", "per_sample_weights of another shape",
               "max mode with scale_grad_by_freq", "max mode with sparse", "unknown mode")


def _bags(d: S.Drawer, form: str) -> tuple[tuple[int, ...], list[int] | None]:
    """The input's shape and, for a 1-d input, each bag's length (0: an empty bag)."""
    bags = d.integer(1, 6, "bags")
    if form == "2-d":
        length = 0 if d.choice(RARELY, "zero-length bags") else d.integer(1, 6, "bag size")
        return (bags, length), None
    lengths = [d.integer(0, 6, f"bag length[{i}]") for i in range(bags)]
    return (sum(lengths),), lengths


def _weight(d: S.Drawer, rng: np.random.Generator, rows: int, dim: int, dtype: str, tier: str, mode: str,
            layout: Any) -> np.ndarray:
    """Max mode: values distinct within each column (no two rows tie) unless ties are asked for
    (small integers); the other modes: any values."""
    scale = d.choice((1.0, 0.25, 4.0), "weight.scale")
    if mode == "max" and not d.choice(RARELY, "tied rows"):
        distinct = S.distinct_values(rng, dim, rows, dtype, tier).T * (scale if tier == "float" else 1.0)
        return np.ascontiguousarray(distinct)
    limit = 1 if mode == "max" else 4
    return S.values(d, (rows, dim), dtype, "exact" if mode == "max" else tier, "weight", int_limit=limit,
                    layout=layout, scale=scale)


def embedding_bag_case(d: S.Drawer, dtype: str, invalid: str = "") -> Case:
    """An EmbeddingBag call (see the module docstring); ``invalid`` names the rule it breaks."""
    rows = d.integer(1, 16, "num_embeddings")
    dim = d.integer(1, 8, "embedding_dim")
    mode = d.choice(MODES, "mode")
    params: dict[str, Any] = {"num_embeddings": rows, "embedding_dim": dim, "mode": mode,
                              "padding_idx": _padding_idx(d, rows),
                              "max_norm": d.choice(MAX_NORMS, "max_norm"),
                              "norm_type": d.choice(NORM_TYPES, "norm_type"),
                              "scale_grad_by_freq": mode != "max" and d.flag("scale_grad_by_freq"),
                              "sparse": mode != "max" and d.flag("sparse"),
                              "include_last_offset": d.flag("include_last_offset")}
    # Exact where the arithmetic is: sums and maxima of integers (no division, no renormalisation).
    exact_ok = mode != "mean" and params["max_norm"] is None and not params["scale_grad_by_freq"]
    tier = S.tier(d, S.TIERS if exact_ok else ("float",))
    form = d.choice(("2-d", "1-d with offsets"), "input form")
    shape, lengths = _bags(d, form)
    rng = np.random.default_rng(d.integer(0, 2**32 - 1, "indices.seed"))
    used = d.integer(1, rows, "rows used")  # few rows used -> many duplicates
    indices = rng.choice(rng.permutation(rows)[:used], size=shape).astype(np.int64)
    inputs: dict[str, np.ndarray] = {"input": indices}
    if lengths is not None:
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        inputs["offsets"] = np.append(starts, indices.size) if params["include_last_offset"] else starts
    layout = S.layouts(d, 2, "layout.weight")
    inputs["weight"] = _weight(d, rng, rows, dim, dtype, tier, mode, layout)
    if mode == "sum" and d.flag("per_sample_weights"):
        inputs["per_sample_weights"] = S.values(d, shape, dtype, tier, "per_sample_weights", int_limit=3)
    if invalid:
        inputs, params = _break(d, invalid, inputs, params, rows, dtype)
    differentiable = tuple(n for n in ("weight", "per_sample_weights") if n in inputs)
    return Case(op="EmbeddingBag", dtype=dtype, params=params, inputs=inputs, differentiable=differentiable,
                layouts={"weight": layout}, tier=tier, cotangent_seed=S.seed(d), invalid=bool(invalid), note=invalid)


def _break(d: S.Drawer, rule: str, inputs: dict[str, np.ndarray], params: dict[str, Any], rows: int,
           dtype: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The valid call changed to break ``rule``."""
    inputs, params = dict(inputs), dict(params)
    x = inputs["input"]
    if rule == "index out of range":
        bad = d.choice((rows, rows + 3, -1), "bad index")
        if x.size:  # the first entry: the drawn bags cover the whole input
            flat = x.reshape(-1).copy()
            flat[0] = bad
            inputs["input"] = flat.reshape(x.shape)
        else:
            inputs["input"] = np.array([bad], dtype=np.int64)
            inputs["offsets"] = np.zeros(1, dtype=np.int64)
            params["include_last_offset"] = False
            inputs.pop("per_sample_weights", None)
    elif rule == "padding_idx out of range":
        params["padding_idx"] = d.choice((rows, -rows - 1), "bad padding_idx")
    elif rule == "offsets with a 2-d input":
        inputs["input"] = x.reshape(1, -1) if x.ndim == 1 else x
        inputs["offsets"] = np.zeros(1, dtype=np.int64)
        inputs.pop("per_sample_weights", None)
    elif rule == "1-d input without offsets":
        inputs["input"] = x.reshape(-1)
        inputs.pop("offsets", None)
        inputs.pop("per_sample_weights", None)
    elif rule in ("offsets[0] not 0", "last offset beyond the input"):
        flat = x.reshape(-1)
        inputs["input"] = flat
        inputs.pop("per_sample_weights", None)
        params["include_last_offset"] = False
        inputs["offsets"] = (np.array([1], dtype=np.int64) if rule == "offsets[0] not 0"
                             else np.array([0, flat.size + d.integer(1, 3, "beyond")], dtype=np.int64))
    elif rule == "per_sample_weights with mode mean or max":
        params["mode"] = d.choice(("mean", "max"), "bad mode")
        params["scale_grad_by_freq"] = params["sparse"] = False
        inputs["per_sample_weights"] = np.ones(x.shape)
    elif rule == "per_sample_weights of another shape":
        params["mode"], params["scale_grad_by_freq"], params["sparse"] = "sum", False, False
        inputs["per_sample_weights"] = np.ones(x.size + 1)
    elif rule in ("max mode with scale_grad_by_freq", "max mode with sparse"):
        params["mode"] = "max"
        params["scale_grad_by_freq"], params["sparse"] = rule.endswith("freq"), rule.endswith("sparse")
        inputs.pop("per_sample_weights", None)
    elif rule == "unknown mode":
        params["mode"] = d.choice(("median", "min", "Sum"), "bad mode")
        inputs.pop("per_sample_weights", None)
    return inputs, params


def embedding_bag_cases(dtype: str) -> st.SearchStrategy[Case]:
    return S.case_strategy(embedding_bag_case)(dtype)


def embedding_bag_invalid_cases(dtype: str) -> st.SearchStrategy[Case]:
    return S.case_strategy(lambda d, dt: embedding_bag_case(d, dt, d.choice(BAG_INVALID, "rule")))(dtype)
