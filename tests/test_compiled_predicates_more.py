"""Known-entry predicates and models added without tests, checked on their entries' repros and near misses."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import backends.torch_compile as TC
from backends.base import Case, Layout, Result
from conformance.dtypes import DTYPES
from conformance.numerics import attention as NA
from conformance.numerics import attention_compiled as NAC
from conformance.numerics import conv_compiled as CC
from conformance.numerics import loss_compiled as LC
from conformance.numerics import pool_compiled as PC
from conformance.numerics import utils_compiled as UC
from conformance.numerics.known_models_misc import cosine_cos_cotangent

NOTHING = Result()  # the models below read only the case


def _pin_graph(monkeypatch: pytest.MonkeyPatch, module: object, dynamic: bool) -> None:
    """Make ``module``'s imported runs_dynamic_graph answer ``dynamic`` for every case."""
    monkeypatch.setattr(module, "runs_dynamic_graph", lambda case: dynamic)


# -- grid_sample[nearest]: a point outside reads pixel (0, 0) times 0 ------------------------------------------------


def _grid_case(x: np.ndarray, grid: np.ndarray, **params: object) -> Case:
    p = {"mode": "nearest", "padding_mode": "zeros", "align_corners": False, **params}
    return Case(op="grid_sample", variant="nearest", dtype="float32", params=p,
                inputs={"input": np.asarray(x, dtype=np.float64), "grid": np.asarray(grid, dtype=np.float64)})


def _outside_reads(x: np.ndarray, grid: np.ndarray, **params: object) -> bool:
    return CC.grid_sample_nearest_outside_reads_signed_or_nonfinite(_grid_case(x, grid, **params))


REPRO_X = -np.arange(1.0, 17.0).reshape(1, 1, 4, 4)
REPRO_GRID = np.array([[[[1.5, 0.5], [-3.0, 0.0]]]])  # both points outside the 4 x 4 input


def test_grid_sample_outside_point_with_negative_minus_zero_or_nonfinite_corner():
    assert _outside_reads(REPRO_X, REPRO_GRID)  # corner -1: inductor gives -0
    for corner in (np.inf, -np.inf, np.nan, -0.0):
        x = REPRO_X.copy()
        x[0, 0, 0, 0] = corner
        assert _outside_reads(x, REPRO_GRID), corner
    assert not _outside_reads(-REPRO_X, REPRO_GRID)  # corner +1: 1 * 0 is +0, as torch writes
    positive_zero = -REPRO_X
    positive_zero[0, 0, 0, 0] = 0.0
    assert not _outside_reads(positive_zero, REPRO_GRID)
    assert not _outside_reads(REPRO_X, REPRO_GRID * 0.1)  # every point inside: no clipped read


def test_grid_sample_nearest_rounds_ties_to_even_at_the_edge():
    def at(gx: float) -> bool:
        return _outside_reads(REPRO_X, np.array([[[[gx, 0.0]]]]))

    # align_corners=False on width 4: ix = ((gx + 1) * 4 - 1) / 2
    assert at(1.0)  # ix = 3.5 rounds to even 4: outside
    assert not at(0.75) and not at(0.876)  # ix = 3.0, 3.252: column 3
    assert not at(-1.0)  # ix = -0.5 rounds to even -0: column 0
    assert at(-1.25)  # ix = -1.0: outside


def test_grid_sample_outside_point_pairs_with_its_own_batch_corner():
    x = np.ones((2, 1, 2, 2))
    x[1, 0, 0, 0] = -1.0  # only sample 1 has a negative corner
    grid = np.zeros((2, 1, 1, 2))
    grid[0] = 3.0  # only sample 0 samples outside
    assert not _outside_reads(x, grid)
    grid[1] = 3.0
    assert _outside_reads(x, grid)
    channels = np.ones((1, 2, 2, 2))
    channels[0, 1, 0, 0] = -2.0  # the second channel's corner: its output element is -0
    assert _outside_reads(channels, np.full((1, 1, 1, 2), 3.0))


def test_grid_sample_predicate_is_scoped_to_valid_4d_nearest_zeros():
    assert not _outside_reads(REPRO_X, REPRO_GRID, mode="bilinear")
    assert not _outside_reads(REPRO_X, REPRO_GRID, padding_mode="border")
    assert not _outside_reads(REPRO_X[..., None], np.zeros((1, 1, 1, 2, 3)) + 3.0)  # 5-d: eager's kernel
    assert not _outside_reads(np.zeros((1, 1, 0, 0)), REPRO_GRID)
    invalid = dataclasses.replace(_grid_case(REPRO_X, REPRO_GRID), invalid=True)
    assert not CC.grid_sample_nearest_outside_reads_signed_or_nonfinite(invalid)


# -- NLLLoss 'mean' with a total weight of 0 ------------------------------------------------------------------------

NLL_X = np.array([[0.1, -0.1, 0.6], [0.1, -0.5, 0.3], [1.3, 0.9, -0.7]])


def _nll_zero_total(target: object, weight: object = (0.0, 0.0, 0.5), reduction: str = "mean",
                    x: np.ndarray = NLL_X, op: str = "NLLLoss", invalid: bool = False) -> bool:
    inputs = {"input": x, "target": np.asarray(target, dtype=np.int64)}
    if weight is not None:
        inputs["weight"] = np.asarray(weight, dtype=np.float64)
    case = Case(op=op, dtype="float32", params={"ignore_index": 6, "reduction": reduction}, inputs=inputs,
                differentiable=("input",), invalid=invalid)
    return LC.inductor_nll_mean_zero_total_weight(case)


def test_nll_mean_zero_total_weight_over_counted_positions():
    assert _nll_zero_total([6, 6, 1])  # the repro: one counted position, weight w[1] = 0
    assert _nll_zero_total([0, 6, 1])  # two counted positions, both of weight 0
    assert not _nll_zero_total([6, 6, 2])  # w[2] = 0.5: a finite mean
    assert not _nll_zero_total([6, 6, 6])  # nothing counted
    assert not _nll_zero_total([6, 6, 1], weight=None)
    x4 = np.zeros((1, 3, 2, 2))
    assert _nll_zero_total([[[1, 6], [6, 0]]], x=x4, op="NLLLoss2d")
    assert not _nll_zero_total([[[1, 6], [6, 2]]], x=x4, op="NLLLoss2d")


def test_nll_zero_total_weight_needs_a_valid_mean():
    assert not _nll_zero_total([6, 6, 1], reduction="sum") and not _nll_zero_total([6, 6, 1], reduction="none")
    assert not _nll_zero_total([6, 6, 5])  # a class out of range: raises, no gradient
    assert not _nll_zero_total([6, 6, 1], invalid=True)


# -- CosineEmbeddingLoss float16: inductor's per-row scalars stored in the case's format -----------------------------


def _half(values: object) -> np.ndarray:
    return np.asarray(values, dtype=np.float16).astype(np.float64)


COS_X = _half([[30.0, 30.0], [0.640625, 0.104919]])


def _cosine_case(x1: np.ndarray = COS_X, y: object = (1.0, -1.0), g: float | None = -0.581543,
                 dtype: str = "float16") -> Case:
    cot = {} if g is None else {"output": _half(g)}
    return Case(op="CosineEmbeddingLoss", dtype=dtype, params={"margin": 0.0, "reduction": "mean"},
                inputs={"input1": x1, "input2": x1.copy(), "target": np.asarray(y, dtype=np.float64)},
                differentiable=("input1", "input2"), cotangents=cot)


def test_cosine_row_scale_underflow_gives_the_documented_gradient_of_equal_rows():
    case = _cosine_case()
    assert LC.inductor_cosine_row_scale_out_of_range(case)
    c, d, _ = LC._inductor_cosine_row_scales(case)
    # c = -a·cos/(2·m1·m2) = -0.29077/(2·1800²) ≈ -4.5e-8: below float16's normal range, stored as the subnormal 6e-8
    assert abs(c[0]) < DTYPES["float16"].min_normal and DTYPES["float16"].round(c[:1])[0] == -(2.0 ** -24)
    assert DTYPES["float16"].min_normal <= abs(d[0])  # d = a/1800 stays normal
    model = LC.inductor_cosine_row_scale_model(case, NOTHING, NOTHING)
    for name in ("grad.input1", "grad.input2"):  # equal rows: the exact gradient is 0
        row = model[name][0]
        np.testing.assert_allclose(row, [-0.00159, -0.00159], rtol=2e-3)
        assert np.array_equal(_half(row), row)  # a float16 value


def test_cosine_row_scale_in_range_rows_and_zero_factors_are_not_claimed():
    ordinary = np.repeat(COS_X[1:], 2, axis=0)  # norm 0.65: both scalars normal
    assert not LC.inductor_cosine_row_scale_out_of_range(_cosine_case(ordinary))
    assert not LC.inductor_cosine_row_scale_out_of_range(_cosine_case(_half([[3.0, 3.0]]), y=[1.0]))
    assert not LC.inductor_cosine_row_scale_out_of_range(_cosine_case(dtype="float32"))  # 4.5e-8 is normal there
    assert not LC.inductor_cosine_row_scale_out_of_range(_cosine_case(g=0.0))  # both scalars 0
    opposite = _cosine_case(COS_X[:1], y=[-1.0])
    opposite = opposite.with_inputs(input2=-COS_X[:1])  # y = -1, cos = -1 < margin: no gradient
    assert not LC.inductor_cosine_row_scale_out_of_range(opposite)
    assert LC.inductor_cosine_row_scale_out_of_range(opposite.with_inputs(target=np.array([1.0])))


def test_cosine_row_scale_needs_a_cotangent():
    case = _cosine_case(g=None)
    assert not LC.inductor_cosine_row_scale_out_of_range(case)
    assert LC.inductor_cosine_row_scale_model(case, NOTHING, NOTHING) == {}


def test_cosine_cos_cotangent_per_target():
    y = np.array([1.0, -1.0, -1.0, 0.0])
    shifted = np.array([0.5, 0.0, -0.1, 1.0])  # cos - margin
    got = cosine_cos_cotangent(y, shifted, np.array([2.0, 3.0, 4.0, 5.0]))
    np.testing.assert_array_equal(got, [-2.0, 3.0, 0.0, 0.0])  # -g; g at the hinge (>= 0); 0 below it and for y=0


# -- AdaptiveMaxPool3d on a channels_last_3d input: indices read as contiguous ---------------------------------------

CL3D = Layout("channels_last", perm=(0, 2, 3, 4, 1))
AMP_X = [[[[[-2.0, 0.0]]], [[[2.0, -2.0]]]]]
AMP_G = [[[[[-2.0, 2.0]]], [[[-1.0, -2.0]]]]]


def _amp3d_case(x: object = AMP_X, g: object | None = AMP_G, output_size: tuple[int, ...] = (1, 1, 2),
                layout: Layout = CL3D, differentiable: tuple[str, ...] = ("input",)) -> Case:
    cot = {} if g is None else {"output": np.asarray(g, dtype=np.float64)}
    return Case(op="AdaptiveMaxPool3d", dtype="bfloat16", params={"output_size": output_size, "return_indices": False},
                inputs={"input": np.asarray(x, dtype=np.float64)}, differentiable=differentiable, cotangents=cot,
                layouts={"input": layout})


def test_adaptive_max3d_channels_last_model_gives_the_documented_gradient():
    case = _amp3d_case()
    assert PC.inductor_adaptive_max3d_channels_last_backward(case)
    total, magnitude = PC.inductor_adaptive_max3d_channels_last_model(case, NOTHING, NOTHING)["grad.input"]
    np.testing.assert_array_equal(total, [[[[[0.0, 0.0]]], [[[0.0, -3.0]]]]])  # eager: the cotangent itself
    np.testing.assert_array_equal(magnitude, [[[[[4.0, 0.0]]], [[[0.0, 3.0]]]]])  # -2 + 2 met at channel 0's 0


def test_adaptive_max3d_channels_last_strides_decide_and_other_paths_are_right():
    assert not PC.inductor_adaptive_max3d_channels_last_backward(_amp3d_case(layout=Layout()))
    assert PC.inductor_adaptive_max3d_channels_last_backward(  # a permutation with channels_last_3d's strides
        _amp3d_case(layout=Layout("permuted", perm=(0, 2, 3, 4, 1))))
    unbatched = _amp3d_case(AMP_X[0], AMP_G[0], layout=Layout("permuted", perm=(1, 2, 3, 0)))
    assert not PC.inductor_adaptive_max3d_channels_last_backward(unbatched)
    uneven = [[[[[-2.0, 0.0, 1.0]]], [[[2.0, -2.0, 3.0]]]]]  # 3 into 2: eager's own forward
    assert not PC.inductor_adaptive_max3d_channels_last_backward(_amp3d_case(uneven))
    assert not PC.inductor_adaptive_max3d_channels_last_backward(
        _amp3d_case(g=[[[[[-2.0]]], [[[-1.0]]]]], output_size=(1, 1, 1)))  # global pooling: amax/argmax


def test_adaptive_max3d_channels_last_misread_must_move_a_cotangent():
    one_channel = _amp3d_case([[[[[-2.0, 0.0]]]]], [[[[[-2.0, 2.0]]]]])  # channels_last is contiguous here
    assert not PC.inductor_adaptive_max3d_channels_last_backward(one_channel)
    assert not PC.inductor_adaptive_max3d_channels_last_backward(_amp3d_case(g=np.zeros((1, 2, 1, 1, 2))))
    assert not PC.inductor_adaptive_max3d_channels_last_backward(_amp3d_case(differentiable=()))
    assert not PC.inductor_adaptive_max3d_channels_last_backward(_amp3d_case(g=None))
    assert PC.inductor_adaptive_max3d_channels_last_model(_amp3d_case(g=None), NOTHING, NOTHING) == {}


# -- Upsample[area]: the symbolic window check; empty results -------------------------------------------------------


def _area_case(shape: tuple[int, ...], scale: object = 2.0, size: object = None, invalid: bool = False,
               differentiable: tuple[str, ...] = ("input",), mode: str = "area", fill: float = 1.0) -> Case:
    params = {"size": size, "scale_factor": scale, "mode": mode, "align_corners": None,
              "recompute_scale_factor": None}
    return Case(op="Upsample", variant="area", dtype="float32", params=params,
                inputs={"input": np.full(shape, fill)}, differentiable=differentiable, invalid=invalid)


@pytest.mark.parametrize("dynamic", [True, False])
def test_area_symbolic_window_check_only_on_dynamic_graphs(monkeypatch: pytest.MonkeyPatch, dynamic: bool):
    _pin_graph(monkeypatch, PC, dynamic)
    check = PC.inductor_area_symbolic_window_check
    assert check(_area_case((1, 1, 3, 1))) is dynamic  # the repro: 3 -> 6
    assert check(_area_case((1, 1, 4, 4), 0.5)) is dynamic  # 4 -> 2
    assert not check(_area_case((1, 1, 2, 2)))  # input length 2: compiles
    assert not check(_area_case((1, 1, 3, 3), 0.5))  # output length 1
    assert not check(_area_case((1, 1, 3, 1), None, (6, 2)))  # a size, not a factor
    assert not check(_area_case((1, 1, 3))) and not check(_area_case((1, 1, 3, 1, 1)))  # 3-d, 5-d
    assert not check(_area_case((1, 1, 3, 1), invalid=True))
    assert not check(_area_case((1, 1, 3, 1), mode="nearest"))


def test_area_symbolic_window_check_follows_the_case_graph_kind():
    kinds = set()
    for fill in range(8):  # differing values give differing ids, hence both kinds
        case = _area_case((1, 1, 3, 1), fill=float(fill))
        kinds.add(TC.graph_kind(case))
        assert PC.inductor_area_symbolic_window_check(case) is (TC.graph_kind(case) == "dynamic")
    assert kinds == {"static", "dynamic"}


def test_area_empty_result_split_by_whether_input_needs_a_gradient():
    def split(case: Case) -> tuple[bool, bool]:
        return PC.area_accepts_empty_backward_checked(case), PC.area_accepts_empty_forward_only(case)

    for shape, scale, size in (((1, 0, 2, 2), 2.0, None), ((1, 1, 2, 2), 0.1, None), ((1, 1, 2, 2), None, (0, 2)),
                               ((1, 0, 2), 2.0, None)):
        assert split(_area_case(shape, scale, size, invalid=True)) == (True, False), (shape, scale, size)
        assert split(_area_case(shape, scale, size, invalid=True, differentiable=())) == (False, True)
    assert split(_area_case((1, 1, 0, 2), invalid=True)) == (False, False)  # an empty spatial input: raises
    assert split(_area_case((1, 0, 2, 2, 2), invalid=True, differentiable=())) == (False, False)  # 3-d pooling
    assert split(_area_case((1, 0, 2, 2), invalid=True, mode="nearest")) == (False, False)
    assert split(_area_case((1, 1, 2, 2))) == (False, False)  # nothing empty


# -- sparse Embedding with max_norm ----------------------------------------------------------------------------------

COLUMN_MAJOR = Layout("permuted", perm=(1, 0))


def _embedding_case(indices: object, weight: tuple[int, int] = (6, 3), layout: Layout = COLUMN_MAJOR,
                    invalid: bool = False, note: str = "", **params: object) -> Case:
    p = {"num_embeddings": weight[0], "embedding_dim": weight[1], "max_norm": 0.5, "norm_type": 2.0, "sparse": True,
         "scale_grad_by_freq": False, "padding_idx": None, **params}
    return Case(op="Embedding", dtype="float32", params=p,
                inputs={"input": np.asarray(indices, dtype=np.int64), "weight": np.ones(weight)},
                layouts={"weight": layout}, differentiable=("weight",), invalid=invalid, note=note)


NO_INDEX = np.zeros(0, dtype=np.int64)


def test_valid_or_index_out_of_range():
    assert UC.valid_or_index_out_of_range(_embedding_case([1]))
    assert UC.valid_or_index_out_of_range(_embedding_case([9], invalid=True, note="index out of range"))
    assert not UC.valid_or_index_out_of_range(_embedding_case([1], invalid=True, note="negative max_norm"))


@pytest.mark.parametrize("dynamic", [False, True])
def test_sparse_max_norm_backward_fails_for_one_index_or_several_on_a_dynamic_graph(
        monkeypatch: pytest.MonkeyPatch, dynamic: bool):
    _pin_graph(monkeypatch, UC, dynamic)
    fails = UC.sparse_embedding_max_norm_backward_fails
    for one in (1, [1], [[1]]):  # "data is not allocated yet" on any graph
        assert fails(_embedding_case(one, layout=Layout()))
    assert fails(_embedding_case([0, 1], layout=Layout())) is dynamic  # dispatch_on_subclass assert
    assert fails(_embedding_case([1, 9], invalid=True, note="index out of range")) is dynamic
    assert fails(_embedding_case(9, invalid=True, note="index out of range"))
    assert not fails(_embedding_case(NO_INDEX))
    assert not fails(_embedding_case(1, max_norm=None)) and not fails(_embedding_case(1, sparse=False))
    assert not fails(_embedding_case(1, invalid=True, note="negative max_norm"))


@pytest.mark.parametrize("dynamic", [False, True])
def test_sparse_max_norm_permuted_weight_stride_assert_where_the_call_compiles(
        monkeypatch: pytest.MonkeyPatch, dynamic: bool):
    _pin_graph(monkeypatch, UC, dynamic)
    stride = UC.sparse_embedding_max_norm_permuted_weight_grad_stride
    assert stride(_embedding_case(NO_INDEX))  # no index: any graph
    assert stride(_embedding_case([1, 2])) is not dynamic  # the repro: two indices compile statically only
    assert not stride(_embedding_case([1]))  # one index: does not compile (the backward entry)
    assert not stride(_embedding_case([1, 2], padding_idx=0))
    assert not stride(_embedding_case([1, 2], scale_grad_by_freq=True))
    assert not stride(_embedding_case([1, 2], layout=Layout()))  # row-major weight
    assert not stride(_embedding_case([1, 2], weight=(6, 1))) and not stride(_embedding_case([0, 0], weight=(1, 3)))
    assert not stride(_embedding_case([1, 2], max_norm=None)) and not stride(_embedding_case([1, 2], sparse=False))
    assert not stride(_embedding_case([1, 9], invalid=True, note="index out of range"))


# -- fast paths meeting a fully masked query -------------------------------------------------------------------------

LAYER = {"d_model": 4, "nhead": 2, "dim_feedforward": 6, "dropout": 0.0, "activation": "relu", "batch_first": True,
         "norm_first": False, "bias": True, "enable_nested_tensor": True, "mask_check": True, "num_layers": 1}
DEAD_KPM = np.array([[False, False, False], [True, True, True]])  # the repro: sequence 1 all padding
DEAD_MASK = np.array([[True, True, True], [False, False, False], [False, True, False]])  # query 0 sees no key
LIVE_MASK = DEAD_MASK[[1, 1, 2]]


def _module_case(op: str, inputs: dict[str, np.ndarray], params: dict | None = None, train: bool = False,
                 differentiable: tuple[str, ...] = (), **forward_kwargs: object) -> Case:
    return Case(op=op, variant="fast path", dtype="float32", params=params or LAYER, inputs=inputs, train=train,
                differentiable=differentiable, forward_kwargs=forward_kwargs)


def _encoder(op: str = "TransformerEncoderLayer", params: dict | None = None, train: bool = False,
             differentiable: tuple[str, ...] = (), **masks: np.ndarray) -> Case:
    return _module_case(op, {"src": np.zeros((2, 3, 4)), **masks}, params, train, differentiable)


def test_encoder_fast_path_dead_query_from_either_mask_or_both():
    dead = NA.encoder_fast_path_dead_query
    assert dead(_encoder(src_key_padding_mask=DEAD_KPM))
    assert dead(_encoder(src_mask=DEAD_MASK)) and dead(_encoder(src_mask=np.where(DEAD_MASK, -np.inf, 0.0)))
    half_mask = np.array([[True, True, False], [False] * 3, [False] * 3])
    half_kpm = np.array([[False, False, True], [False] * 3])
    assert dead(_encoder(src_mask=half_mask, src_key_padding_mask=half_kpm))  # together they mask all of query 0
    assert not dead(_encoder(src_mask=half_mask)) and not dead(_encoder(src_key_padding_mask=half_kpm))
    assert not dead(_encoder(src_mask=LIVE_MASK)) and not dead(_encoder())


def test_encoder_fast_path_dead_query_needs_eval_without_gradients_off_the_nested_path():
    dead = NA.encoder_fast_path_dead_query
    assert not dead(_encoder(train=True, src_key_padding_mask=DEAD_KPM))
    assert not dead(_encoder(differentiable=("src",), src_key_padding_mask=DEAD_KPM))
    nested = _encoder("TransformerEncoder", src_key_padding_mask=DEAD_KPM)
    assert NA.takes_nested_path(nested) and not dead(nested)  # nested tensors drop the padded sequence
    dense = _encoder("TransformerEncoder", {**LAYER, "enable_nested_tensor": False}, src_key_padding_mask=DEAD_KPM)
    assert dead(dense)
    assert not NA.attention_fast_path_dead_query(_encoder(src_key_padding_mask=DEAD_KPM))


def test_the_nested_path_drops_a_padded_sequence_in_eager_torch_only():
    # eager nn.Transformer(4, 2, 1, 1, 6, 0.0, batch_first=True).eval() under no_grad with sequence 1 all padding
    # gives no NaN (the nested path drops it); torch.compile (aot_eager, inductor) takes the dense path: NaN
    transformer = _module_case("Transformer", {"src": np.zeros((2, 3, 4)), "tgt": np.zeros((2, 2, 4)),
                                               "src_key_padding_mask": DEAD_KPM})
    encoder = _encoder("TransformerEncoder", src_key_padding_mask=DEAD_KPM)
    for case in (transformer, encoder):
        assert NA.takes_nested_path(case), case.op
        assert not NA.encoder_fast_path_dead_query(case) and NAC.compiled_encoder_fast_path_dead_query(case), case.op


def _mha(need_weights: bool, train: bool = False, differentiable: tuple[str, ...] = (), **masks: np.ndarray) -> Case:
    params = {"embed_dim": 4, "num_heads": 2, "batch_first": True, "add_bias_kv": False, "add_zero_attn": False}
    return _module_case("MultiheadAttention", {"query": np.zeros((1, 3, 4)), **masks}, params, train, differentiable,
                        need_weights=need_weights)


def test_attention_fast_path_dead_query_in_multihead_attention_without_weights():
    dead = NA.attention_fast_path_dead_query
    assert dead(_mha(False, attn_mask=DEAD_MASK))  # the repro (compiled: a zero row, eager: NaN)
    assert dead(_mha(False, key_padding_mask=np.array([[True, True, True]])))
    assert not dead(_mha(True, attn_mask=DEAD_MASK))  # need_weights: the slow path
    assert not dead(_mha(False, attn_mask=LIVE_MASK))
    assert not dead(_mha(False, train=True, attn_mask=DEAD_MASK))
    assert not dead(_mha(False, differentiable=("query",), attn_mask=DEAD_MASK))
    assert not NA.encoder_fast_path_dead_query(_mha(False, attn_mask=DEAD_MASK))


def test_attention_fast_path_dead_query_in_decoder_self_attention_with_bool_masks():
    def decoder(op: str = "TransformerDecoderLayer", **masks: np.ndarray) -> Case:
        return _module_case(op, {"tgt": np.zeros((1, 3, 4)), "memory": np.zeros((1, 3, 4)), **masks})

    dead = NA.attention_fast_path_dead_query
    assert dead(decoder(tgt_mask=DEAD_MASK)) and dead(decoder("TransformerDecoder", tgt_mask=DEAD_MASK))
    assert dead(decoder(tgt_key_padding_mask=np.array([[True, True, True]])))
    assert not dead(decoder(tgt_mask=np.where(DEAD_MASK, -np.inf, 0.0)))  # a float mask: not the native kernel
    assert not dead(decoder(tgt_mask=LIVE_MASK))
    assert not dead(decoder(memory_mask=DEAD_MASK))  # cross-attention is not the self-attention fast path
    assert not NA.encoder_fast_path_dead_query(decoder(tgt_mask=DEAD_MASK))
