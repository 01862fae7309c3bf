"""The predicates that scope conformance/known/torch_compile*.toml entries, on the entries' repros."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from backends.base import Case
from conformance.numerics import loss_compiled as LC
from conformance.numerics import pool_compiled as PC
from conformance.numerics import vision
from conformance.numerics import window_known as WK


def _case(op: str, params: dict, **inputs: np.ndarray) -> Case:
    return Case(op=op, dtype="float32", params=params, inputs={k: np.asarray(v) for k, v in inputs.items()})


def test_multilabel_margin_padding_slots():
    x = [[0.5, 2.0, 1.0, 0.0]]
    mlm = lambda t, x=x: LC.compiled_mlm_counts_padding_slots(  # noqa: E731
        _case("MultiLabelMarginLoss", {"reduction": "mean"}, input=np.array(x), target=np.array(t)))
    assert mlm([[2, -1, 0, 1]]) and mlm([[-1, 0, 1, 2]])
    assert not mlm([[2, 0, 1, 3]])  # no -1: every slot is a label
    assert not mlm([[0, -1, 1, 1]], x=[[5.0, 0.0, 0.0, 0.0]])  # the counted terms 1 - 5 + 0 are < 0
    assert mlm([[0, -1, 1, 1]], x=[[1.0, 0.0, 0.0, 0.0]])  # ... and == 0 (i != 0): the gradient differs


def test_multi_margin_kink_counted_only_for_p_1():
    def mm(p: int, x: list) -> bool:
        return LC.compiled_mm_kink_counted(_case("MultiMarginLoss", {"p": p, "margin": 1.0, "reduction": "mean"},
                                                   input=np.array(x), target=np.array([1])))

    assert mm(1, [[-1.0, 0.0, 0.5]]) and not mm(2, [[-1.0, 0.0, 0.5]]) and not mm(1, [[-1.5, 0.0, 0.5]])


def test_ceil_mode_window_divisor_short():
    def avg(size: int, **extra) -> bool:
        params = {"kernel_size": 2, "ceil_mode": True, "count_include_pad": True, **extra}
        return WK.ceil_window_divisor_short(_case("AvgPool2d", params, input=np.zeros((1, 1, size, size))))

    assert avg(3) and not avg(4) and not avg(3, count_include_pad=False) and not avg(3, ceil_mode=False)
    assert not avg(3, divisor_override=2)
    lp = _case("LPPool2d", {"norm_type": 2.0, "kernel_size": 2, "ceil_mode": True}, input=np.zeros((1, 3, 3)))
    assert WK.ceil_window_divisor_short(lp)


def test_unpool_index_outside_plane_inside_buffer():
    def unpool(indices: list) -> bool:
        return WK.unpool_index_outside_plane_inside_buffer(_case(
            "MaxUnpool1d", {"kernel_size": 2, "stride": 1}, input=np.array([[[-0.13], [0.64]]]),
            indices=np.array(indices)))

    assert unpool([[[2], [1]]]) and unpool([[[-1], [1]]]) and unpool([[[1], [-1]]])  # inductor accepts these
    assert not unpool([[[1], [2]]]) and not unpool([[[0], [1]]])  # past the buffer (raises); in range


def test_adaptive_max_uneven_window_with_nan_after_a_number():
    # 3 columns into 2: uneven windows [0, 2) and [1, 3), on inductor's own lowering (at most 25 taps)
    x = np.array([[[[0.0, 1.0, -2.0], [2.0, -1.0, math.inf], [3.0, math.nan, -3.0]]]])
    params = {"output_size": (1, 2), "return_indices": True}
    assert PC.inductor_adaptive_max_nan_index(_case("AdaptiveMaxPool2d", params, input=x))
    assert not PC.inductor_adaptive_max_nan_index(_case("AdaptiveMaxPool2d", params, input=np.nan_to_num(x)))
    first = x.copy()
    first[..., 0, :] = math.nan  # each window's first tap is NaN: the lowering returns a NaN's index
    assert not PC.inductor_adaptive_max_nan_index(_case("AdaptiveMaxPool2d", params, input=first))
    alone = {"output_size": (3, 3), "return_indices": True}  # even one-element windows: a max pooling
    assert not PC.inductor_adaptive_max_nan_index(_case("AdaptiveMaxPool2d", alone, input=x))


def test_empty_resize_by_nonzero_factor():
    def up(scale: float, shape: tuple) -> Case:
        return _case("UpsamplingNearest2d", {"scale_factor": scale}, input=np.ones(shape))

    assert vision.resize_to_empty_by_nonzero_factor(up(0.1, (1, 2, 2, 2)))
    assert not vision.resize_to_empty_by_nonzero_factor(up(0.0, (1, 2, 2, 2)))


def test_multilabel_margin_bad_labels_after_terminator():
    def bad(t: list) -> bool:
        return LC.compiled_mlm_bad_labels_after_terminator(
            _case("MultiLabelMarginLoss", {}, input=np.zeros((1, 4)), target=np.array(t)))

    assert bad([[1, 3, -1, 4]]) and bad([[1, -1, -2, 0]]) and bad([[1, -1, 7, 2]])
    assert not bad([[1, 4, -1, 0]]) and not bad([[-2, 1, -1, 0]]) and not bad([[1, 4, 0, 2]])
    assert not bad([[1, 2, -1, 0]])  # no bad label


def test_mlm_kink_and_upsampling_width_one():
    kink = _case("MultiLabelMarginLoss", {}, input=np.array([[-0.25, -1.25, 0.25]]), target=np.array([[0, 2, 2]]))
    assert LC.compiled_mlm_kink_counted(kink)
    assert not LC.compiled_mlm_kink_counted(kink.with_inputs(input=np.array([[-0.25, -1.0, 0.25]])))

    def up(params: dict, shape: tuple) -> bool:
        return vision.resizes_width_one_input(_case("UpsamplingNearest2d", params, input=np.ones(shape)))

    assert up({"size": 4}, (1, 1, 1, 1)) and up({"scale_factor": 2.0}, (1, 1, 2, 1))
    assert up({"scale_factor": (2.0, 1.0)}, (1, 1, 1, 1)) and not up({"size": (4, 1)}, (1, 1, 2, 1))
    assert not up({"size": 1}, (1, 1, 1, 1)) and not up({"scale_factor": 1.0}, (1, 1, 2, 1))
    assert not up({"scale_factor": (2.05, 1.75)}, (2, 1, 3, 1)) and not up({"size": (1, 1)}, (1, 3, 7, 1))
    assert not up({"size": 4}, (1, 1, 1, 3))


def test_nearest_width_one_input_codegen_threshold_per_dtype():
    def up(params: dict, dtype: str = "float32") -> bool:
        case = _case("UpsamplingNearest2d", params, input=np.ones((1, 1, 1, 1)))
        return vision.widens_width_one_input_nearest_codegen(dataclasses.replace(case, dtype=dtype))

    assert up({"size": 4}) and up({"scale_factor": 4.0}) and up({"size": (2, 8)}, "float16")
    assert not up({"size": 3}) and not up({"scale_factor": 2.0}) and not up({"scale_factor": 3.0})
    assert not up({"size": (2, 7)}, "bfloat16") and not up({"size": 4}, "float16")


def test_bce_clamped_input_gradient():
    def bce(x: list, t: list) -> bool:
        return LC.bce_clamped_input_gradient(_case("BCELoss", {}, input=np.array(x), target=np.array(t)))

    assert bce([0.0, 0.5], [1.0, 0.5]) and bce([1.0], [0.0]) and bce([1e-13], [1.0])
    assert not bce([0.0, 1.0], [0.0, 1.0]) and not bce([1e-8, 0.5], [1.0, 0.0])


def test_linear_cross_entropy_warning_paths():
    """Where F.linear_cross_entropy warns (a graph break under fullgraph=True), as its code reads."""
    def lce(options, reduction="mean", smoothing=0.0, out=(), target_rank=1, ignore=None, x_rank=2):
        params = {"options": options, "reduction": reduction, "label_smoothing": smoothing, "out_features": list(out),
                  "ignore_index": ignore}
        x = np.zeros((1, 2, 3)[-x_rank:])
        case = _case("LinearCrossEntropyLoss", params, input=x, target=np.zeros((2, 4, 1)[:target_rank]))
        return LC.lce_options_ignored_warning(case), LC.lce_retain_graph_warning(case)

    assert lce(None) == (False, False)  # no options: the plain path
    assert lce({}) == (False, True)  # chunked and reduced: allow_retain_graph forced on
    assert lce({}, reduction="none") == (False, False)  # chunked, unreduced: compiles
    assert lce({"allow_retain_graph": True}) == (False, False)
    assert lce({}, smoothing=0.1) == (True, False)  # label smoothing: options ignored
    assert lce({}, reduction="batchmean") == (True, False)  # an invalid reduction is refused after the warning
    assert lce({}, target_rank=2) == (True, False)  # (N, C) probability targets
    assert lce({}, target_rank=2, ignore=-1) == (False, False)  # ignore_index with probabilities: raised first
    assert lce({}, out=(3,), target_rank=2) == (True, False)  # K-dimensional, class targets (N, 3)
    assert lce({}, x_rank=3, target_rank=2) == (False, False)  # input rank 3: raised first
    assert lce({"batch_chunk_size": 0}) == (False, False)  # refused when the module is built, in eager


def _lrn_half_case(x: list, size: int = 1, k: float = 0.0) -> Case:
    x = np.asarray(x, dtype=np.float64)
    return Case(op="LocalResponseNorm", dtype="float16", params={"size": size, "alpha": 1e-4, "beta": 0.75, "k": k},
                inputs={"input": x}, differentiable=("input",), cotangents={"output": np.full(x.shape, -0.361572)})


def test_inductor_lrn_half_layouts_give_torchs_values_and_the_predicate_holds_where_they_show():
    from conformance.numerics import norm_compiled as NC

    tiny = _lrn_half_case([[[0.125732]]])  # d = 1e-4·x² = 1.58e-6: subnormal in float16
    # torch.compile(LocalResponseNorm(1, k=0.)) gives x.grad = 4056 on a static graph (the average saved in float16,
    # d recomputed in float32) and 3788 on a dynamic one (d saved in float16); exact: 4055.03
    assert NC._inductor_lrn_half(tiny, False, False, "avg", False)["grad.input"].item() == 4056
    assert NC._inductor_lrn_half(tiny, False, False, "d", False)["grad.input"].item() == 3788
    assert NC.inductor_lrn_half_shows(tiny)
    huge = _lrn_half_case([[[280.5]]], k=1.0)  # x² = 78680 is inf in float16: torch's static graph gives x.grad = 0
    assert NC._inductor_lrn_half(huge, False, False, "avg", False)["grad.input"].item() == 0
    assert NC.inductor_lrn_half_shows(huge)
    assert not NC.inductor_lrn_half_shows(_lrn_half_case([[[3.0, 1.0], [2.0, -4.0]]], size=2, k=1.0))
    # 656² overflows float16, but an inference graph computes x² inline: torch gets this output right
    x = [[[128.75], [-135.25], [656.0], [128.0]]]
    assert NC.inductor_lrn_half_shows(_lrn_half_case(x, size=2, k=1.0))  # a training graph stores x² in float16
    assert not NC.inductor_lrn_half_shows(dataclasses.replace(_lrn_half_case(x, size=2, k=1.0), differentiable=()))


def test_transformer_fast_path_permuted_src_is_in_the_inductor_stride_entry_scope():
    """nn.Transformer's encoder takes the layer fast path whose compiled output strides inductor asserts on: a
    Transformer[fast path] case with a dense permuted src is in the entry's scope (the ci sweep drew none; a
    targeted search found them raising unexplained)."""
    from hypothesis import HealthCheck, find, settings

    import conformance.specs  # noqa: F401  (declares the catalogue)
    from conformance.known import load_known, matching
    from conformance.numerics.utils_compiled import fast_path_src_dense_not_contiguous
    from conformance.spec import all_specs

    spec = all_specs()["Transformer[fast path]"]
    case = find(spec.cases("float32"), fast_path_src_dense_not_contiguous,
                settings=settings(derandomize=True, database=None, max_examples=2000,
                                  suppress_health_check=list(HealthCheck)))
    ids = {e.id for e in matching(load_known(), spec, ("torch-compile",), case)}
    assert "inductor-transformer-encoder-layer-fast-path-permuted-src-stride-assert" in ids
