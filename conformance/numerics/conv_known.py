"""What the known discrepancy ``onednn-amx-bf16-conv-wrong-sums`` (conformance/known/convolution.toml)
lets a bfloat16 convolution compute on a CPU with AMX.

The rule, from scans of random small geometries (Conv1d/2d/3d and ConvTranspose1d/2d/3d, every
padding mode, strides, dilation, groups; integer and float inputs; forward and backward): oneDNN's
AMX forward convolution is wrong only when the output it computes is 1 wide (last spatial size 1)
with a last-dimension stride >= 2. That forward convolution is the ``output`` of a Conv* and the
``grad.input`` of a ConvTranspose* (the adjoint of a transposed convolution is a direct one, whose
output is the input's shape). In such a tensor the first element of every (batch, channel) plane
(every spatial index 0) is always exact; the others may be anything (misplaced sums of other
windows, partial sums, 0, NaN). (An earlier scan also saw a Conv3d wrong everywhere with an input 1
deep padded by 2, and this model once left a tensor free wherever an input 1 long in another
dimension was zero-padded under a last stride >= 2. Scans of that scope on 2026-12-05 (AMX Xeon, 1
and 2 threads, fork per case, integer values, contiguous, channels-last and permuted inputs) found
3 wrong of 756 Conv2d/3d geometries, all in the scope of onednn-bf16-conv3d-one-channel-padded-depth,
which is not AMX's, and 0 of 141 ConvTranspose2d/3d input gradients beyond the 1-wide rule; so the
model no longer frees it.) Separately, in any geometry,
the weight gradient's kernel fills an element whose sum has no term touching the data (a tap that
sees only padding) with garbage (uninitialized memory: seen 6e-8 up to 7e34, varying from call to
call); every other gradient element is exact.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from backends.base import Case, Result
from conformance import strategies as S
from conformance.numerics.window import is_transposed, per_dim_param, spatial_dims
from conformance.spec import LayerSpec, spec_of
from reference import conv as conv_ref
from reference.pooling import sliding_taps


def _one_wide_strided(width: int, stride: Any, nd: int) -> bool:
    """Whether a forward convolution whose output is ``width`` wide, with ``stride``, triggers the bug."""
    strides = per_dim_param(stride if stride is not None else 1, nd) or (1,)
    return width == 1 and strides[-1] >= 2


def _free_but_first(reference: np.ndarray, got: np.ndarray, unbatched: bool) -> np.ndarray:
    """``got`` (any value) except the first element of every (batch, channel) plane: the reference's."""
    pred = np.array(got, dtype=np.float64, copy=True)
    ref = np.asarray(reference, dtype=np.float64)
    lead = 1 if unbatched else 2  # an unbatched (C, *spatial) tensor's planes are its channels
    first = (slice(None),) * lead + (0,) * (ref.ndim - lead)
    pred[first] = ref[first]
    return pred


def amx_bf16_conv_one_wide_strided(case: Case) -> bool:
    """Whether a case runs the forward convolution the bug hits (1-wide output, last stride >= 2):
    a Conv* whose output is 1 wide, or a ConvTranspose* whose input is (its adjoint's output)."""
    nd = spatial_dims(case)
    p = case.params
    width = int(case.inputs["input"].shape[-1])
    if not is_transposed(case):
        padding = p.get("padding", 0)
        pad = 0 if isinstance(padding, str) and padding == "valid" else None if isinstance(padding, str) else (
            (per_dim_param(padding, nd) or (0,))[-1])
        if pad is None:  # 'same': the output is as wide as the input
            return _one_wide_strided(width, p.get("stride", 1), nd)
        dilation = (per_dim_param(p.get("dilation", 1), nd) or (1,))[-1]
        kernel = int(case.inputs["weight"].shape[-1]) if "weight" in case.inputs else (
            (per_dim_param(p["kernel_size"], nd) or (1,))[-1])
        strides = per_dim_param(p.get("stride", 1), nd) or (1,)
        width = (width + 2 * pad - dilation * (kernel - 1) - 1) // strides[-1] + 1
    return _one_wide_strided(width, p.get("stride", 1), nd)


def amx_bf16_conv_hit(case: Case) -> bool:
    """The predicate of the derivative modes' entry: a case in the geometry the forward kernel
    gets wrong (``amx_bf16_conv_one_wide_strided``)."""
    return amx_bf16_conv_one_wide_strided(case)


def onednn_bf16_conv3d_one_channel_padded_depth(case: Case) -> bool:
    """The scope of ``onednn-bf16-conv3d-one-channel-padded-depth``: a Conv3d (not transposed) with
    one input channel per group, an input 1 deep whose depth the convolution itself zero-pads
    (padding_mode zeros, depth padding >= 1) under a kernel >= 2 deep, and a kernel >= 2 wide at
    width dilation 1. ``padding='same'`` gives the convolution half the total depth padding
    d·(k - 1) and, where that total is odd, pads the extra row explicitly first (ATen's
    ``_convolution_same``), so the convolution then sees an input 2 deep: out of scope. (Scans
    found every wrong value inside it; about a third of its geometries go wrong, each one every
    time, by no rule over these parameters.)"""
    p = case.params
    if is_transposed(case) or spatial_dims(case) != 3 or p.get("padding_mode", "zeros") != "zeros":
        return False
    x = case.inputs["input"]
    groups = int(p.get("groups", 1))
    per_group = int(case.inputs["weight"].shape[1]) if "weight" in case.inputs else int(x.shape[-4]) // groups
    kernel = per_dim_param(p["kernel_size"], 3) or (1, 1, 1)
    dilation = per_dim_param(p.get("dilation", 1), 3) or (1, 1, 1)
    padding = p.get("padding", 0)
    depth = int(x.shape[-3])
    if padding == "same":
        total = dilation[0] * (kernel[0] - 1)
        depth, depth_pad = depth + total % 2, total // 2
    elif isinstance(padding, str):
        depth_pad = 0
    else:
        depth_pad = (per_dim_param(padding, 3) or (0, 0, 0))[0]
    return (per_group == 1 and depth == 1 and kernel[0] >= 2 and depth_pad >= 1
            and kernel[2] >= 2 and dilation[2] == 1)


def onednn_bf16_conv_transpose3d_one_channel_padded_depth(case: Case) -> bool:
    """The scope of ``onednn-bf16-conv-transpose3d-one-channel-padded-depth``: the same bug in the
    direct convolution a ConvTranspose3d runs for its input gradient, conv3d(grad_output, weight)
    with the transposed call's stride, padding, dilation and groups. Its input is the transposed
    output, so the scope is: one output channel per group (the adjoint's input channels), an output
    1 deep, depth padding >= 1, a kernel >= 2 deep and >= 2 wide at width dilation 1."""
    p = case.params
    if not is_transposed(case) or spatial_dims(case) != 3 or "weight" not in case.inputs:
        return False
    x, w = case.inputs["input"], case.inputs["weight"]
    try:
        plan = conv_ref.conv_transpose_plan((x if x.ndim == 5 else x[None]).shape, w.shape, p["stride"], p["padding"],
                                            p["output_padding"], p["groups"], p["dilation"],
                                            case.forward_kwargs.get("output_size"), x.ndim == 5)
    except (ValueError, KeyError, TypeError):  # an invalid case: nothing runs
        return False
    kernel = w.shape[2:]
    width_dilation = (per_dim_param(p.get("dilation", 1), 3) or (1, 1, 1))[2]
    return (int(w.shape[1]) == 1 and plan.out[0] == 1 and plan.geo.pads[0][0] >= 1 and kernel[0] >= 2
            and kernel[2] >= 2 and width_dilation == 1)


def _padding_only(case: Case) -> dict[str, np.ndarray]:
    """For each gradient of ``case``: where no term of its sum touches the input or the cotangent
    (a weight tap that sees only padding), from the reference on all-ones inputs and cotangents
    (structural: a zero value of the data does not count)."""
    ones = replace(case, inputs={k: (np.ones_like(v) if v.dtype.kind == "f" else v) for k, v in case.inputs.items()},
                   cotangents={k: np.ones_like(v) for k, v in case.cotangents.items()})
    with np.errstate(all="ignore"):
        counts = spec_of(case).evaluate(ones, ones.cotangents).tensors()
    return {name: np.asarray(value) == 0 for name, value in counts.items() if name.startswith("grad.")}


def amx_bf16_conv_model(case: Case, reference: Result, got: Result) -> dict[str, np.ndarray]:
    """What ``onednn-amx-bf16-conv-wrong-sums`` predicts the backend computes (see the module
    docstring). In a case running a forward convolution with a 1-wide output and a last stride
    >= 2, that convolution's tensor (``output`` of a Conv*, ``grad.input`` of a ConvTranspose*)
    is the backend's own values except the first element of each (batch, channel) plane, the
    reference's. In every case, every
    other gradient is the reference's, except the weight gradient where no term of its sum
    touches the data (a tap that sees only padding: ``_padding_only``), where it is the
    backend's own. So a wrong output outside these geometries, in a plane's first element (of a
    1-wide one), or in a gradient element with a term touching the data stays unexplained."""
    return _onednn_bf16_model(case, reference, got, one_wide=True)


def onednn_bf16_padding_only_weight_grad_model(case: Case, reference: Result, got: Result) -> dict[str, np.ndarray]:
    """What ``onednn-avx512-bf16-conv-weight-grad-padding-only-taps-uninitialised`` predicts (AVX512-BF16 without
    AMX): the weight gradient is the backend's own where a tap sees only padding (``_padding_only``), every other
    tensor and element the reference's (``amx_bf16_conv_model`` without its 1-wide forward part)."""
    return _onednn_bf16_model(case, reference, got, one_wide=False)


def _onednn_bf16_model(case: Case, reference: Result, got: Result, one_wide: bool) -> dict[str, np.ndarray]:
    nd = spatial_dims(case)
    free = "grad.input" if is_transposed(case) else "output"
    if not (one_wide and amx_bf16_conv_one_wide_strided(case)):
        free = ""
    ours, theirs = reference.tensors(), got.tensors()
    predicted: dict[str, np.ndarray] = {}
    empty: dict[str, np.ndarray] | None = None
    for name, value in ours.items():
        value = np.asarray(value, dtype=np.float64)
        mine = theirs.get(name)
        if mine is None or np.shape(mine) != value.shape:
            continue
        if name == free and value.ndim >= 2:
            predicted[name] = _free_but_first(value, mine, case.inputs["input"].ndim == nd + 1)
        elif name == "grad.weight":
            if empty is None:
                empty = _padding_only(case)
            where = np.broadcast_to(empty.get(name, np.zeros((), dtype=bool)), value.shape)
            predicted[name] = np.where(where, np.asarray(mine, dtype=np.float64), value)
        elif name.startswith("grad."):
            predicted[name] = value
    return predicted


# -- onednn-bf16-conv-channels-last-padding-only-width-segfault: oneDNN bf16 brgemm output-work kernels ----------


def _brgemm_conv_geometry(case: Case, spec: LayerSpec) -> tuple[int, dict] | None:
    """The spatial rank and parameters of the direct 1-d/2-d/3-d convolution a case runs: its own (Conv1d-3d and
    their Lazy forms) or its parametrised layer's (``module_params`` of a Conv1d-3d); None for any other."""
    if "module_params" in case.params:
        nd = {"Conv1d": 1, "Conv2d": 2, "Conv3d": 3}.get(case.params.get("module"))
        return (nd, case.params["module_params"]) if nd else None
    return (int(spec.dims), case.params) if spec.kind == "direct" and spec.dims in (1, 2, 3) else None


def _outputs_outside(n: int, s: int, p: int, d: int, out: int, kw: int) -> set[int]:
    """oneDNN's brgemm get_ow_range for a block of ``out`` outputs along the width and kernel column ``kw`` (which
    may be -1): how many leading and how many trailing outputs have that tap outside the input (n long, padded by
    p each side), each side counted from the first or last output's tap, as the set of the two counts."""
    first = kw * d - p  # input column of tap kw in the first output's window
    last = first + (out - 1) * s - n + 1
    left = -(first // s) if first < 0 else 0  # ceil(-first / s)
    right = -(-last // s) if last > 0 else 0
    return {min(left, out), out - min(max(left, out - right), out)}


def _touches(n: int, k: int, s: int, p: int, d: int, out: int) -> bool:
    """Some tap of some output window lands on the input (n long, padded by p each side)."""
    return bool(sliding_taps(n, out, k, s, p, d).valid.any())


def _unsqueezed_height(shape: tuple[int, ...], strides: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Shape and strides of a 3-d tensor after ``unsqueeze(2)``, as conv1d runs it as conv2d."""
    return (*shape[:2], 1, shape[2]), (*strides[:2], shape[2] * strides[2], strides[2])


def _channels_last_weight(case: Case, nd: int) -> bool:
    """The layer's own weight (a direct convolution's ``weight`` input; a parametrised layer's is computed
    contiguous) has strides torch reads as channels-last; conv1d's is unsqueezed, not made contiguous."""
    weight = case.inputs.get("weight")
    if weight is None or np.ndim(weight) != nd + 2:
        return False
    shape = tuple(int(n) for n in np.shape(weight))
    strides = S.torch_strides(shape, case.layout("weight"))
    if nd == 1:
        shape, strides = _unsqueezed_height(shape, strides)
    return S.channels_last_like(shape, strides)


def onednn_bf16_padding_only_width(case: Case, spec: LayerSpec) -> bool:
    """A valid direct 1-d/2-d/3-d convolution (zeros padding, not depthwise) with an input or a weight torch reads as
    channels-last (unbatched inputs as torch batches them; a 1-d input is made contiguous, which keeps a permuted
    layout only through size-1 dims, and runs as 2-d on ``input.unsqueeze(2)``) where some window touches the input
    along every dimension but the last (width) and no tap of any window touches it along the width, so that oneDNN's
    exec_base brgemm kernel writes each such output row with its output-work kernels alone; it creates those for the
    leading/trailing counts of tap ``kw_f - 1`` = -1 and calls them with the counts of tap 0 (``_outputs_outside``,
    the width taken as one block, as with one thread): a count it never created is a call through a null kernel."""
    geometry = _brgemm_conv_geometry(case, spec)
    if case.invalid or geometry is None or "input" not in case.inputs:
        return False
    nd, conv = geometry
    if conv.get("padding_mode", "zeros") != "zeros" or isinstance(conv.get("padding", 0), str):
        return False  # other modes pad beforehand; 'same' needs stride 1, 'valid' has no padding
    shape = tuple(int(n) for n in np.shape(case.inputs["input"]))
    if len(shape) not in (nd + 1, nd + 2):
        return False
    groups = int(conv.get("groups", 1))
    if groups > 1 and int(conv.get("in_channels", 0)) == groups == int(conv.get("out_channels", 0)):
        return False  # depthwise: oneDNN runs another kernel
    strides = S.torch_strides(shape, case.layout("input"))
    if len(shape) == nd + 1:  # torch batches an unbatched input with unsqueeze(0)
        shape, strides = (1, *shape), (shape[0] * strides[0], *strides)
    ks, ss, ps, ds = (per_dim_param(conv.get(name, default), nd) or () for name, default in
                      (("kernel_size", 1), ("stride", 1), ("padding", 0), ("dilation", 1)))
    if nd == 1:  # conv1d makes its input contiguous, then runs as conv2d on input.unsqueeze(2) (height 1)
        if not S.is_torch_contiguous(shape, strides):
            strides = (shape[1] * shape[2], shape[2], 1)
        shape, strides = _unsqueezed_height(shape, strides)
        ks, ss, ps, ds = (1, *ks), (1, *ss), (0, *ps), (1, *ds)
    if not (S.channels_last_like(shape, strides) or _channels_last_weight(case, nd)):
        return False  # torch runs oneDNN channels-last when the input or the weight suggests it
    dims = list(zip(shape[2:], ks, ss, ps, ds))
    if len(dims) != max(nd, 2) or any(min(s, d) < 1 or p < 0 for _, _, s, p, d in dims):
        return False
    outs = [(n + 2 * p - d * (k - 1) - 1) // s + 1 for n, k, s, p, d in dims]
    if min(outs) < 1 or not all(_touches(*dim, out) for dim, out in zip(dims[:-1], outs[:-1])):
        return False
    n, k, s, p, d = dims[-1]
    if _touches(n, k, s, p, d, outs[-1]):
        return False
    return not _outputs_outside(n, s, p, d, outs[-1], 0) - {0} <= _outputs_outside(n, s, p, d, outs[-1], -1)
