"""The AMX bfloat16 convolution entry's model (conformance.numerics.conv_known): it explains what
oneDNN's AMX kernel computes in its hit geometry (a 1-wide output with a width stride >= 2: every
(batch, channel) plane's first element exact, the rest free) and nothing else, so a different
wrong value in the same case stays a failure (the masking audit's ×1.25 + 0.5)."""

from __future__ import annotations

import dataclasses

import numpy as np

from backends.base import Case, Layout, Result
from conformance.known import load_known, modelled_tensors
from conformance.numerics.conv_known import (
    amx_bf16_conv_hit,
    onednn_bf16_conv3d_one_channel_padded_depth,
    onednn_bf16_padding_only_width,
)
from conformance.spec import all_specs


def _repro() -> tuple[object, Case, Result]:
    """The entry's repro: conv2d of a 2 x 2 input with a 4 x 4 kernel, padding (3, 1), stride (1, 2):
    a 5 x 1 output."""
    spec = all_specs()["Conv2d"]
    x = np.array([3.0, 1.0, 0.0, -2.0]).reshape(1, 1, 2, 2)
    w = np.array([3, 1, 0, -2, -2, -4, -4, -4, -3, 3, 1, 4, 0, 1, 4, 2.0]).reshape(1, 1, 4, 4)
    case = Case(op="Conv2d", dtype="bfloat16", tier="exact", differentiable=("input", "weight"),
                params={"in_channels": 1, "out_channels": 1, "kernel_size": [4, 4], "stride": [1, 2],
                        "padding": [3, 1], "dilation": 1, "groups": 1, "bias": False, "padding_mode": "zeros"},
                inputs={"input": x, "weight": w})
    reference, _ = spec.run_reference(case)
    return spec, case, reference


def test_amx_model_explains_the_kernels_output_and_not_a_perturbation():
    spec, case, reference = _repro()
    assert amx_bf16_conv_hit(case)
    entry = next(e for e in load_known() if e.id == "onednn-amx-bf16-conv-wrong-sums")
    ref = np.asarray(reference.outputs["output"])
    assert ref.ravel().tolist() == [7.0, 2.0, -18.0, 11.0, 0.0]
    torch_amx = np.array([7.0, -18.0, 0.0, 11.0, 0.0]).reshape(ref.shape)  # what the AMX kernel returned
    for got, explained in ((torch_amx, True), (ref * 1.25 + 0.5, False)):
        modelled = modelled_tensors([entry], spec, case, reference, Result(outputs={"output": got}))
        assert ("output" in modelled[entry.id]) is explained


def test_one_channel_padded_depth_scope():
    """onednn-bf16-conv3d-one-channel-padded-depth's scope: the repro's geometry (one input channel,
    an input 1 deep zero-padded under a 3-deep kernel) and not its neighbours: two channels per
    group, depth 2, depth padding 0, a padding mode that pads beforehand, a 1-wide kernel, width
    dilation 2, a transposed convolution."""
    base = {"in_channels": 1, "out_channels": 1, "kernel_size": 3, "stride": 1, "padding": 1, "dilation": 1,
            "groups": 1, "bias": False, "padding_mode": "zeros"}

    def case(op: str = "Conv3d", shape: tuple[int, ...] = (1, 1, 1, 1, 1), **params: object) -> Case:
        p = {**base, **params}
        channels = int(p["in_channels"]) // int(p["groups"])  # type: ignore[call-overload]
        kernel = p["kernel_size"] if isinstance(p["kernel_size"], list) else [p["kernel_size"]] * 3
        w = np.ones((1, channels, *kernel)) if op == "Conv3d" else np.ones((shape[1], 1, *kernel))
        return Case(op=op, dtype="bfloat16", params=p, inputs={"input": np.ones(shape), "weight": w})

    assert onednn_bf16_conv3d_one_channel_padded_depth(case())
    assert onednn_bf16_conv3d_one_channel_padded_depth(case(padding="same"))
    assert onednn_bf16_conv3d_one_channel_padded_depth(case(shape=(1, 2, 1, 3, 3), in_channels=2, groups=2))
    for other in (case(shape=(1, 2, 1, 1, 1), in_channels=2), case(shape=(1, 1, 2, 1, 1)),
                  case(padding=[0, 1, 1]), case(padding_mode="replicate"), case(kernel_size=[3, 3, 1]),
                  case(dilation=[1, 1, 2]), case(padding="valid"), case(op="ConvTranspose3d"),
                  # 'same' with an odd total depth padding (kernel 2): ATen pads the extra row
                  # explicitly, so the convolution sees an input 2 deep
                  case(padding="same", kernel_size=2), case(padding="same", kernel_size=[2, 3, 3])):
        assert not onednn_bf16_conv3d_one_channel_padded_depth(other)


def test_amx_model_leaves_no_whole_tensor_free():
    """A Conv3d with an input 1 deep, zero-padded in depth, under a width stride of 2 but a 2-wide
    output: not the 1-wide geometry, so the AMX model frees no element of its output (scans found
    no wrong value there outside onednn-bf16-conv3d-one-channel-padded-depth) and a perturbed output
    stays unexplained."""
    spec = all_specs()["Conv3d"]
    rng = np.random.default_rng(0)
    params = {"in_channels": 2, "out_channels": 2, "kernel_size": [2, 2, 2], "stride": [3, 3, 2],
              "padding": [2, 1, 1], "dilation": 1, "groups": 1, "bias": False, "padding_mode": "zeros"}
    case = Case(op="Conv3d", dtype="bfloat16", tier="exact", differentiable=("input", "weight"), params=params,
                inputs={"input": rng.integers(-3, 4, (1, 2, 1, 2, 3)).astype(np.float64),
                        "weight": rng.integers(-3, 4, (2, 2, 2, 2, 2)).astype(np.float64)})
    assert not amx_bf16_conv_hit(case)
    reference, _ = spec.run_reference(case)
    entry = next(e for e in load_known() if e.id == "onednn-amx-bf16-conv-wrong-sums")
    got = np.asarray(reference.outputs["output"]) * 1.25 + 0.5
    modelled = modelled_tensors([entry], spec, case, reference, Result(outputs={"output": got}))
    assert "output" not in modelled[entry.id]


# -- oneDNN bfloat16 conv1d/conv2d/conv3d segfault: the geometry only (never run) ------------------------------------


CONV2D = {"in_channels": 2, "out_channels": 1, "kernel_size": [1, 2], "stride": [1, 2], "padding": [0, 3],
          "dilation": [1, 2], "groups": 1, "bias": False, "padding_mode": "zeros"}
CHANNELS_LAST = Layout("channels_last", perm=(0, 2, 3, 1))  # torch.randn(1, 1, 1, 2).permute(0, 3, 1, 2)


def _conv2d_hits(shape: tuple[int, ...] = (1, 2, 1, 1), layout: Layout = CHANNELS_LAST, op: str = "Conv2d",
                 invalid: bool = False, **params: object) -> bool:
    p = {**CONV2D, **params}
    case = Case(op=op, dtype="bfloat16", params=p, inputs={"input": np.ones(shape)}, layouts={"input": layout},
                invalid=invalid)
    return onednn_bf16_padding_only_width(case, all_specs()[op])


def test_onednn_conv2d_repro_geometry_misses_the_input_along_the_width():
    """The entry's repros: width windows {0, 2}, {2, 4}, {4, 6} around the input at 3 (oneDNN creates its output-work
    kernel for 2 leading outputs, from the tap one dilation left, and calls it for 1 leading and 2 trailing)."""
    assert _conv2d_hits()
    assert _conv2d_hits(shape=(2, 2, 1, 1))  # a batch of 2
    assert _conv2d_hits(op="LazyConv2d")
    assert _conv2d_hits(shape=(2, 1, 1), layout=Layout("permuted", perm=(1, 2, 0)))  # unbatched: unsqueezed
    assert _conv2d_hits(shape=(1, 2, 3, 1), kernel_size=[2, 2], padding=[1, 3])  # height windows touch it
    assert _conv2d_hits(shape=(1, 4, 1, 1), in_channels=4, out_channels=4, groups=2)  # grouped, 2 per group
    assert _conv2d_hits(shape=(1, 2, 1, 1), out_channels=4, groups=2)  # 1 in, 2 out per group: not depthwise
    # one input channel (channels-last and contiguous alike in memory, read as channels-last), a 2-wide input
    assert _conv2d_hits(shape=(1, 1, 1, 2), in_channels=1, kernel_size=1, stride=[4, 3], padding=[4, 1], dilation=3)
    conv3d = {**CONV2D, "kernel_size": [1, 1, 2], "stride": [1, 1, 2], "padding": [0, 0, 3], "dilation": [1, 1, 2]}
    assert _conv2d_hits(shape=(1, 2, 1, 1, 1), layout=Layout("channels_last", perm=(0, 2, 3, 4, 1)), op="Conv3d",
                        **conv3d)


def test_onednn_conv2d_near_misses_leave_the_rule():
    assert not _conv2d_hits(padding=[0, 2])  # window {2, 4} touches the input at 2
    assert not _conv2d_hits(dilation=[1, 1])  # windows {0, 1}, {2, 3}, {4, 5}: touch it at 3
    # misses it along the width, but the counts called (2 leading, 1 trailing) are those created
    assert not _conv2d_hits(stride=[1, 4], padding=[0, 5])
    assert not _conv2d_hits(kernel_size=1, stride=[1, 4], padding=[0, 2], dilation=[1, 2])  # {1} called, {1} created
    # every height window wholly in the padding as well: no row runs the width kernels
    assert not _conv2d_hits(kernel_size=2, stride=2, padding=3, dilation=2)
    assert not _conv2d_hits(layout=Layout())  # contiguous strides (1, 1, 1, 1): torch reads it as contiguous
    assert not _conv2d_hits(shape=(1, 2, 1, 2), layout=Layout())
    assert not _conv2d_hits(shape=(2, 2, 1), in_channels=2, out_channels=2, groups=2,
                            layout=Layout("permuted", perm=(1, 2, 0)))  # depthwise: another kernel
    assert not _conv2d_hits(padding_mode="reflect") and not _conv2d_hits(padding="same")
    assert not _conv2d_hits(invalid=True)
    assert not _conv2d_hits(op="ConvTranspose2d")  # the transposed convolution never crashed


def test_onednn_conv2d_rule_reads_a_parametrised_conv2d():
    def wrapped(op: str, module: str) -> bool:
        case = Case(op=op, dtype="bfloat16", params={"module": module, "module_params": CONV2D},
                    inputs={"input": np.ones((1, 2, 1, 1))}, layouts={"input": CHANNELS_LAST})
        return onednn_bf16_padding_only_width(case, all_specs()[op])

    assert wrapped("spectral_norm", "Conv2d") and wrapped("weight_norm", "Conv2d")
    assert not wrapped("spectral_norm", "Conv1d") and not wrapped("spectral_norm", "ConvTranspose2d")
    entries = {e.id: e for e in load_known()}
    one = entries["onednn-bf16-conv-channels-last-padding-only-width-segfault"]
    two = entries["onednn-bf16-conv-channels-last-padding-only-width-segfault-two-threads"]
    assert one.strict and not two.strict and one.predicate == two.predicate
    assert "threads == 1" in one.when and "threads == 2" in two.when


CONV1D = {"in_channels": 2, "out_channels": 1, "kernel_size": 2, "stride": 2, "padding": 3, "dilation": 2,
          "groups": 1, "bias": False, "padding_mode": "zeros"}
PERMUTED_1D = Layout("permuted", perm=(0, 2, 1))  # x = torch.randn(1, 1, 2).permute(0, 2, 1): strides (2, 1, 2)


def _conv1d_hits(shape: tuple[int, ...] = (1, 2, 1), layout: Layout = PERMUTED_1D, op: str = "Conv1d",
                 invalid: bool = False, **params: object) -> bool:
    p = {**CONV1D, **params}
    case = Case(op=op, dtype="bfloat16", params=p, inputs={"input": np.ones(shape), "weight": np.ones((1, 2, 2))},
                layouts={"input": layout}, invalid=invalid)
    return onednn_bf16_padding_only_width(case, all_specs()[op])


def test_onednn_conv1d_repro_geometry_misses_the_input_on_both_sides():
    # Conv1d(2, 1, 2, stride=2, padding=3, dilation=2): windows {0, 2}, {2, 4}, {4, 6}; the input sits at 3
    assert _conv1d_hits()
    assert _conv1d_hits(kernel_size=[2], stride=[2], padding=[3], dilation=[2])
    assert _conv1d_hits(stride=3, padding=4)  # {0, 2}, {3, 5}, {6, 8} around 4
    assert _conv1d_hits(shape=(2, 1), layout=Layout("permuted", perm=(1, 0)))  # unbatched: unsqueezed


def test_onednn_conv1d_one_changed_parameter_leaves_the_rule():
    assert not _conv1d_hits(padding=2)  # window {2, 4} touches the input at 2
    assert not _conv1d_hits(padding=4)  # window {4, 6} touches it at 4
    assert not _conv1d_hits(padding=1)  # one window straddling it
    assert not _conv1d_hits(stride=3, dilation=3, padding=4)  # {0, 3}, {3, 6} around 4: none wholly right
    assert not _conv1d_hits(stride=4, padding=5)  # misses it, but the kernels made for tap -1 cover tap 0's counts
    assert not _conv1d_hits(stride=1) and not _conv1d_hits(dilation=1)
    assert not _conv1d_hits(layout=Layout())  # contiguous: torch does not read it as channels-last
    assert not _conv1d_hits(shape=(2, 1), layout=Layout())
    assert not _conv1d_hits(shape=(1, 2, 2))  # two long
    assert _conv1d_hits(groups=2, out_channels=4)  # one input channel per group crashes too (probed)
    assert not _conv1d_hits(groups=2, out_channels=2)  # depthwise: another oneDNN kernel
    assert not _conv1d_hits(padding_mode="reflect") and not _conv1d_hits(padding="same")
    assert not _conv1d_hits(invalid=True)


def test_onednn_conv1d_rule_reads_a_parametrised_conv1d_only():
    def wrapped(module: str) -> bool:
        case = Case(op="spectral_norm", dtype="bfloat16", params={"module": module, "module_params": CONV1D},
                    inputs={"input": np.ones((1, 2, 1))}, layouts={"input": PERMUTED_1D})
        return onednn_bf16_padding_only_width(case, all_specs()["spectral_norm"])

    assert wrapped("Conv1d") and not wrapped("Conv2d")
    assert not _conv1d_hits(op="Conv2d")  # a 2-d declaration without module_params


def test_onednn_rule_takes_a_channels_last_weight_as_torch_does():
    """torch runs oneDNN channels-last when the input or the weight suggests it (probed, one thread: F.conv2d of a
    contiguous (1, 2, 1, 2) input with a channels-last (2, 2, 1, 2) weight, stride (1, 3), padding (0, 4), dilation
    (1, 3) segfaults; conv1d makes only its input contiguous, so a permuted weight counts there too)."""
    weight_cl = Layout("channels_last", perm=(0, 2, 3, 1))

    def conv2d(weight_layout: Layout) -> bool:
        p = {**CONV2D, "out_channels": 2, "stride": [1, 3], "padding": [0, 4], "dilation": [1, 3]}
        case = Case(op="Conv2d", dtype="bfloat16", params=p, inputs={"input": np.ones((1, 2, 1, 2)),
                    "weight": np.ones((2, 2, 1, 2))}, layouts={"weight": weight_layout})
        return onednn_bf16_padding_only_width(case, all_specs()["Conv2d"])

    assert conv2d(weight_cl) and not conv2d(Layout())
    p1 = {**CONV1D, "out_channels": 2, "stride": 3, "padding": 4, "dilation": 3}
    conv1d = Case(op="Conv1d", dtype="bfloat16", params=p1, inputs={"input": np.ones((1, 2, 2)),
                  "weight": np.ones((2, 2, 2))}, layouts={"weight": Layout("permuted", perm=(0, 2, 1))})
    assert onednn_bf16_padding_only_width(conv1d, all_specs()["Conv1d"])
    assert not onednn_bf16_padding_only_width(dataclasses.replace(conv1d, layouts={}), all_specs()["Conv1d"])
