"""reference.conv on its own terms: hand-computed values, closed forms, adjointness, padding folds
and finite differences of the VJPs (float64). No torch here."""

from __future__ import annotations

import numpy as np
import pytest

from reference import conv as C
from reference import functional as RF
from reference.finite_differences import vjp_check

RNG = np.random.default_rng(20240611)


def module_conv(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """torch.nn.Conv*d's forward: F.pad with the module's amounts for a non-zeros padding_mode, then
    the convolution without padding (as the window template's reference composes it)."""
    if padding_mode == "zeros":
        return C.conv(x, w, b, stride, padding, dilation, groups)
    amounts = C.module_padding(padding, w.shape[2:], stride, dilation)
    return C.conv(RF.pad(x, amounts, padding_mode), w, b, stride, 0, dilation, groups)


def _box_sums(x: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """Sums over every kh×kw window of a 2-d array via a summed-area table (closed form)."""
    s = np.zeros((x.shape[0] + 1, x.shape[1] + 1))
    s[1:, 1:] = x.cumsum(0).cumsum(1)
    return s[kh:, kw:] - s[:-kh, kw:] - s[kh:, :-kw] + s[:-kh, :-kw]


# -- hand-computed and closed-form values -------------------------------------------------------------

def test_1d_stride_padding_by_hand():
    x = np.array([[[1.0, 2, 3, 4, 5]]])
    w = np.array([[[1.0, 0, -1]]])
    # padded [0 1 2 3 4 5 0], windows at 0, 2, 4: 0-2, 2-4, 4-0
    np.testing.assert_array_equal(C.conv(x, w, stride=2, padding=1), [[[-2.0, -2, 4]]])


def test_1d_dilation_and_bias_by_hand():
    x = np.array([[[1.0, 2, 3, 4, 5, 6]]])
    w = np.array([[[1.0, 10]]])
    # y[i] = x[i] + 10·x[i+3] + 0.5
    np.testing.assert_array_equal(C.conv(x, w, np.array([0.5]), dilation=3), [[[41.5, 52.5, 63.5]]])


def test_identity_kernel_returns_the_input_in_every_padding_mode():
    x = RNG.standard_normal((2, 3, 5, 4))
    w = np.zeros((3, 3, 3, 3))
    for c in range(3):
        w[c, c, 1, 1] = 1.0
    for mode in C.PADDING_MODES:
        np.testing.assert_array_equal(module_conv(x, w, padding=1, padding_mode=mode), x)


def test_all_ones_kernel_gives_box_sums():
    x = RNG.integers(-5, 6, (7, 9)).astype(float)
    y = C.conv(x[None, None], np.ones((1, 1, 3, 4)))
    np.testing.assert_array_equal(y[0, 0], _box_sums(x, 3, 4))
    # zero padding: box sums of the zero-padded array; stride picks every other window
    y = C.conv(x[None, None], np.ones((1, 1, 3, 3)), padding=(1, 2), stride=2)
    np.testing.assert_array_equal(y[0, 0], _box_sums(np.pad(x, ((1, 1), (2, 2))), 3, 3)[::2, ::2])


def test_1x1_conv_is_a_matmul():
    x = RNG.standard_normal((2, 6, 4, 3, 2))
    w = RNG.standard_normal((5, 6, 1, 1, 1))
    b = RNG.standard_normal(5)
    expected = np.einsum("oc,ncdhw->nodhw", w[:, :, 0, 0, 0], x) + b[:, None, None, None]
    np.testing.assert_allclose(C.conv(x, w, b), expected, rtol=1e-13, atol=1e-13)


def test_grouped_conv_equals_block_diagonal_dense_conv():
    groups, cin_g, cout_g = 3, 2, 2
    x = RNG.standard_normal((2, groups * cin_g, 6, 5))
    w = RNG.standard_normal((groups * cout_g, cin_g, 2, 3))
    dense = np.zeros((groups * cout_g, groups * cin_g, 2, 3))
    for g in range(groups):
        dense[g * cout_g:(g + 1) * cout_g, g * cin_g:(g + 1) * cin_g] = w[g * cout_g:(g + 1) * cout_g]
    kwargs = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2))
    np.testing.assert_allclose(C.conv(x, w, groups=groups, **kwargs), C.conv(x, dense, **kwargs),
                               rtol=1e-13, atol=1e-13)


def test_depthwise_conv_is_per_channel():
    x = RNG.standard_normal((1, 4, 9))
    w = RNG.standard_normal((8, 1, 3))  # multiplier 2
    y = C.conv(x, w, groups=4, padding=1)
    for o in range(8):
        np.testing.assert_allclose(y[0, o], np.correlate(np.pad(x[0, o // 2], 1), w[o, 0], "valid"), rtol=1e-13)


def test_unbatched_equals_batched():
    x = RNG.standard_normal((3, 5, 6))
    w = RNG.standard_normal((4, 3, 2, 2))
    np.testing.assert_array_equal(module_conv(x, w, padding=1, padding_mode="circular"),
                                  module_conv(x[None], w, padding=1, padding_mode="circular")[0])
    wt = RNG.standard_normal((3, 2, 2, 2))
    np.testing.assert_array_equal(C.conv_transpose(x, wt, stride=2), C.conv_transpose(x[None], wt, stride=2)[0])


def test_transposed_conv_by_hand():
    x = np.array([[[1.0, 2]]])
    w = np.array([[[1.0, 1, 1]]])
    # x[0]·w at 0..2, x[1]·w at 2..4
    np.testing.assert_array_equal(C.conv_transpose(x, w, stride=2), [[[1.0, 1, 3, 2, 2]]])
    # output_padding 1 adds one element that no tap reaches (bias only); padding 1 crops one per side
    b = np.array([10.0])
    np.testing.assert_array_equal(C.conv_transpose(x, w, b, stride=2, output_padding=1), [[[11.0, 11, 13, 12, 12, 10]]])
    np.testing.assert_array_equal(C.conv_transpose(x, w, b, stride=2, padding=1), [[[11.0, 13, 12]]])
    np.testing.assert_array_equal(C.conv_transpose(x, w, b, stride=2, padding=1, output_padding=1),
                                  [[[11.0, 13, 12, 12]]])


def test_transposed_dilation_output_padding_reaches_beyond_every_tap():
    x = np.array([[[1.0]]])
    w = np.array([[[2.0, 3]]])
    # span d·(k-1)+1 = 4 (taps at 0 and 3); output_padding 2 < dilation adds two untouched elements
    np.testing.assert_array_equal(C.conv_transpose(x, w, dilation=3, output_padding=2), [[[2.0, 0, 0, 3, 0, 0]]])


# -- 'same' padding ------------------------------------------------------------------------------------

@pytest.mark.parametrize("k, d, left, right", [(4, 1, 1, 2), (2, 1, 0, 1), (2, 2, 1, 1), (2, 3, 1, 2), (3, 2, 2, 2)])
def test_same_padding_puts_the_extra_element_on_the_right(k, d, left, right):
    assert C.resolve_padding("same", (k,), (1,), (d,)) == ((left, right),)
    x = RNG.standard_normal((1, 1, 7))
    for tap in range(k):
        w = np.zeros((1, 1, k))
        w[0, 0, tap] = 1.0
        y = C.conv(x, w, padding="same", dilation=d)
        assert y.shape == x.shape
        # y[j] = x̃[j + tap·d] = x[j + tap·d - left]
        shift = tap * d - left
        expected = np.array([x[0, 0, j + shift] if 0 <= j + shift < 7 else 0.0 for j in range(7)])
        np.testing.assert_array_equal(y[0, 0], expected)


def test_same_padding_in_3d_keeps_the_shape_with_mixed_parity():
    x = RNG.standard_normal((2, 1, 5, 6, 4))
    w = RNG.standard_normal((3, 1, 2, 3, 4))
    for mode in C.PADDING_MODES:
        assert module_conv(x, w, padding="same", dilation=(1, 2, 1), padding_mode=mode).shape == (2, 3, 5, 6, 4)


# -- padding modes and their folds -------------------------------------------------------------------

def test_padding_modes_by_hand():
    x = np.array([1.0, 2, 3])
    assert C.pad_input(x, [(2, 2)], "reflect").tolist() == [3, 2, 1, 2, 3, 2, 1]
    assert C.pad_input(x, [(2, 2)], "replicate").tolist() == [1, 1, 1, 2, 3, 3, 3]
    assert C.pad_input(x, [(2, 3)], "circular").tolist() == [2, 3, 1, 2, 3, 1, 2, 3]
    assert C.pad_input(x, [(1, 0)], "zeros").tolist() == [0, 1, 2, 3]


def test_padding_folds_count_the_copies():
    ones = np.ones(7)
    assert C.pad_input_vjp(ones, (3,), [(2, 2)], "reflect").tolist() == [2, 3, 2]
    assert C.pad_input_vjp(ones, (3,), [(2, 2)], "replicate").tolist() == [3, 1, 3]
    assert C.pad_input_vjp(np.ones(8), (3,), [(2, 3)], "circular").tolist() == [2, 3, 3]
    assert C.pad_input_vjp(np.arange(7.0), (3,), [(2, 2)], "zeros").tolist() == [2, 3, 4]


@pytest.mark.parametrize("mode, numpy_mode", [("reflect", "reflect"), ("replicate", "edge"), ("circular", "wrap")])
def test_padding_modes_match_numpy_pad_and_fold_is_the_adjoint(mode, numpy_mode):
    x = RNG.standard_normal((2, 3, 4, 5))
    pads = [(3, 1), (0, 4)]
    padded = C.pad_input(x, pads, mode)
    np.testing.assert_array_equal(padded, np.pad(x, [(0, 0), (0, 0)] + pads, mode=numpy_mode))
    g = RNG.standard_normal(padded.shape)
    np.testing.assert_allclose(np.vdot(padded, g), np.vdot(x, C.pad_input_vjp(g, x.shape, pads, mode)), rtol=1e-12)


def test_conv_with_padding_mode_is_valid_conv_of_the_padded_input():
    x = RNG.standard_normal((1, 2, 5, 4))
    w = RNG.standard_normal((3, 2, 3, 2))
    for mode, numpy_mode in (("reflect", "reflect"), ("replicate", "edge"), ("circular", "wrap")):
        y = module_conv(x, w, padding=(2, 3), padding_mode=mode)
        expected = C.conv(np.pad(x, [(0, 0), (0, 0), (2, 2), (3, 3)], mode=numpy_mode), w)
        np.testing.assert_array_equal(y, expected)


# -- adjointness ------------------------------------------------------------------------------------

@pytest.mark.parametrize("nd, stride, padding, dilation, groups", [
    (1, (3,), (2,), (2,), 2), (2, (2, 1), (1, 0), (1, 3), 3), (3, (1, 2, 3), (0, 1, 2), (2, 1, 1), 1),
])
def test_transposed_conv_is_the_adjoint_of_conv(nd, stride, padding, dilation, groups):
    """<conv(x, w), y> == <x, conv_transpose(y, w)> with the output padding that restores x's size."""
    kernel = (3, 2, 2)[:nd]
    x = RNG.standard_normal((2, 2 * groups) + (7, 6, 5)[:nd])
    w = RNG.standard_normal((3 * groups, 2) + kernel)
    y_shape = C.conv(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups).shape
    y = RNG.standard_normal(y_shape)
    low = C.transposed_min_size(y_shape[2:], kernel, stride, padding, dilation)
    op = tuple(n - lo for n, lo in zip(x.shape[2:], low))
    xt = C.conv_transpose(y, w, stride=stride, padding=padding, output_padding=op, groups=groups, dilation=dilation)
    assert xt.shape == x.shape
    lhs = np.vdot(C.conv(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups), y)
    np.testing.assert_allclose(lhs, np.vdot(x, xt), rtol=1e-12)
    # and the transposed conv's input gradient is the conv itself
    gx, _, _ = C.conv_transpose_vjp(y, w, x, stride=stride, padding=padding, output_padding=op, groups=groups,
                                    dilation=dilation)
    np.testing.assert_allclose(gx, C.conv(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups),
                               rtol=1e-12, atol=1e-12)


def test_output_size_selects_the_output_padding():
    # L=5, k=3, s=3, p=1, d=2: min = 4·3 - 2 + 4 + 1 = 15; valid sizes 15..17
    assert C.output_padding_for_size([16], (5,), True, (3,), (3,), (1,), (2,)) == (1,)
    assert C.output_padding_for_size([2, 4, 17], (5,), True, (3,), (3,), (1,), (2,)) == (2,)
    assert C.output_padding_for_size([4, 15], (5,), False, (3,), (3,), (1,), (2,)) == (0,)
    for bad in ([14], [18]):
        with pytest.raises(ValueError):
            C.output_padding_for_size(bad, (5,), True, (3,), (3,), (1,), (2,))
    x = RNG.standard_normal((1, 2, 5))
    w = RNG.standard_normal((2, 1, 3))
    np.testing.assert_array_equal(
        C.conv_transpose(x, w, stride=3, padding=1, dilation=2, output_size=[17]),
        C.conv_transpose(x, w, stride=3, padding=1, dilation=2, output_padding=2))


# -- finite differences -----------------------------------------------------------------------------

FD_CONFIGS = [
    dict(nd=1, kernel=(3,), stride=2, padding=2, dilation=2, groups=2, mode="reflect", batched=True),
    dict(nd=1, kernel=(4,), stride=1, padding="same", dilation=1, groups=1, mode="circular", batched=False),
    dict(nd=2, kernel=(2, 3), stride=(1, 2), padding=(3, 1), dilation=(2, 1), groups=3, mode="replicate",
         batched=True),
    dict(nd=2, kernel=(3, 3), stride=1, padding="same", dilation=(1, 2), groups=2, mode="reflect", batched=True),
    dict(nd=2, kernel=(5, 2), stride=(3, 1), padding=(2, 2), dilation=1, groups=1, mode="circular", batched=True),
    dict(nd=3, kernel=(2, 1, 3), stride=(2, 1, 1), padding=(1, 0, 2), dilation=1, groups=2, mode="zeros",
         batched=True),
]


def _directional_fd(f, args, directions, cotangent, h=1e-5):
    plus = f(*[a + h * d for a, d in zip(args, directions)])
    minus = f(*[a - h * d for a, d in zip(args, directions)])
    return float(np.vdot(cotangent, (plus - minus) / (2 * h)))


def _check_vjp(forward, vjp, x, w, b):
    y = forward(x, w, b)
    g = RNG.standard_normal(y.shape)
    gx, gw, gb = vjp(x, w, g)
    for which in range(4):  # one input at a time, then all together
        dirs = [RNG.standard_normal(a.shape) if which in (i, 3) else np.zeros(a.shape) for i, a in enumerate((x, w, b))]
        fd = _directional_fd(forward, (x, w, b), dirs, g)
        analytic = float(np.vdot(gx, dirs[0]) + np.vdot(gw, dirs[1]) + np.vdot(gb, dirs[2]))
        assert abs(fd - analytic) <= 1e-7 * (1 + abs(analytic)), (which, fd, analytic)


@pytest.mark.parametrize("cfg", FD_CONFIGS, ids=lambda c: f"{c['nd']}d-{c['mode']}-g{c['groups']}")
def test_conv_vjp_matches_finite_differences(cfg):
    """The registered conv{nd}d VJP, composed with pad's VJP for a padding_mode as the module does."""
    nd, groups = cfg["nd"], cfg["groups"]
    lead = (2,) if cfg["batched"] else ()
    x = RNG.standard_normal(lead + (2 * groups,) + (7, 6, 5)[:nd])
    w = RNG.standard_normal((2 * groups, 2) + cfg["kernel"])
    b = RNG.standard_normal(2 * groups)
    kw = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"], groups=groups)
    mode, name = cfg["mode"], f"conv{nd}d"
    amounts = C.module_padding(cfg["padding"], cfg["kernel"], cfg["stride"], cfg["dilation"])

    def forward(inputs):
        xin = inputs["input"] if mode == "zeros" else RF.pad(inputs["input"], amounts, mode)
        return {"output": getattr(RF, name)(xin, inputs["weight"], inputs["bias"],
                                            **{**kw, "padding": kw["padding"] if mode == "zeros" else 0})}

    inputs = {"input": x, "weight": w, "bias": b}
    g = RNG.standard_normal(forward(inputs)["output"].shape)
    if mode == "zeros":
        grads = RF.vjp(name, x, w, b, cotangent=g, **kw)
    else:
        grads = RF.vjp(name, RF.pad(x, amounts, mode), w, b, cotangent=g, **{**kw, "padding": 0})
        grads["input"] = RF.vjp("pad", x, amounts, mode, cotangent=grads["input"])["input"]
    check = vjp_check(forward, inputs, {"output": g}, grads)
    assert check.ok(), check


TRANSPOSED_FD_CONFIGS = [
    dict(nd=1, kernel=(3,), stride=2, padding=1, output_padding=1, dilation=1, groups=2, output_size=None),
    dict(nd=1, kernel=(2,), stride=1, padding=0, output_padding=2, dilation=3, groups=1, output_size=None),
    dict(nd=2, kernel=(3, 2), stride=(2, 3), padding=(2, 0), output_padding=0, dilation=(1, 2), groups=3,
         output_size=[6, 16]),
    dict(nd=3, kernel=(2, 2, 1), stride=(1, 2, 2), padding=(0, 1, 0), output_padding=(1, 0, 1), dilation=(2, 1, 1),
         groups=1, output_size=None),
]


@pytest.mark.parametrize("cfg", TRANSPOSED_FD_CONFIGS, ids=lambda c: f"{c['nd']}d-g{c['groups']}")
def test_conv_transpose_vjp_matches_finite_differences(cfg):
    nd, groups = cfg["nd"], cfg["groups"]
    x = RNG.standard_normal((2, 2 * groups) + (4, 5, 3)[:nd])
    w = RNG.standard_normal((2 * groups, 3) + cfg["kernel"])
    b = RNG.standard_normal(3 * groups)
    kw = dict(stride=cfg["stride"], padding=cfg["padding"], output_padding=cfg["output_padding"], groups=groups,
              dilation=cfg["dilation"], output_size=cfg["output_size"])
    _check_vjp(lambda x, w, b: C.conv_transpose(x, w, b, **kw), lambda x, w, g: C.conv_transpose_vjp(x, w, g, **kw),
               x, w, b)


# -- invalid parameters --------------------------------------------------------------------------------

X1 = np.zeros((1, 4, 5))
W1 = np.zeros((2, 2, 3))


@pytest.mark.parametrize("kwargs", [
    dict(padding=-1), dict(stride=0), dict(dilation=0), dict(groups=3), dict(groups=0),
    dict(padding="same", stride=2), dict(padding="full"), dict(padding=5, padding_mode="reflect"),
    dict(padding=6, padding_mode="circular"), dict(padding_mode="mirror"), dict(dilation=3),
    dict(padding=(1, 1)),
])
def test_conv_rejects_invalid_parameters(kwargs):
    kwargs = {"groups": 2, **kwargs}
    with pytest.raises(ValueError):
        module_conv(X1, W1, **kwargs)


def test_conv_rejects_inconsistent_shapes():
    with pytest.raises(ValueError):
        C.conv(np.zeros((1, 3, 5)), W1)  # 3 channels, weight wants 2
    with pytest.raises(ValueError):
        C.conv(np.zeros((1, 1, 2, 5)), W1)  # wrong rank
    with pytest.raises(ValueError):
        C.conv(np.zeros((1, 2, 5)), W1, np.zeros(3))  # bias size


@pytest.mark.parametrize("kwargs", [
    dict(output_padding=2, stride=2), dict(output_padding=-1), dict(padding=-1), dict(stride=0),
    dict(groups=3), dict(padding=4), dict(output_size=[9]), dict(output_size=[6]), dict(padding="same"),
])
def test_conv_transpose_rejects_invalid_parameters(kwargs):
    # L=3, k=3, s=2 (default below): min output 7, valid output sizes 7..8
    kwargs = {"stride": 2, **kwargs}
    with pytest.raises(ValueError):
        C.conv_transpose(np.zeros((1, 2, 3)), np.zeros((2, 1, 3)), **kwargs)


# -- the torch.nn.functional API -------------------------------------------------------------------------

def test_functional_conv_takes_torch_signatures_and_checks_the_rank():
    x, w, b = RNG.standard_normal((2, 4, 6, 5)), RNG.standard_normal((6, 2, 3, 2)), RNG.standard_normal(6)
    np.testing.assert_array_equal(RF.conv2d(x, w, b, 1, "same", 1, 2), C.conv(x, w, b, padding="same", groups=2))
    with pytest.raises(ValueError):
        RF.conv1d(x, w)  # a 4-d weight is conv2d's
    grads = RF.vjp("conv2d", x, w, None, cotangent=np.ones((2, 6, 4, 4)), groups=2)
    assert sorted(grads) == ["input", "weight"]  # no bias, no bias gradient


def test_asymmetric_padding_through_pad_then_conv_equals_same_padding():
    """'same' with an even kernel pads (0, 1): the same as F.pad(x, (0, 1)) then a valid convolution."""
    x, w = RNG.standard_normal((1, 2, 7)), RNG.standard_normal((3, 2, 2))
    np.testing.assert_array_equal(RF.conv1d(x, w, padding="same"), RF.conv1d(RF.pad(x, (0, 1)), w))


def test_transposed_functional_is_the_module_form_without_output_size():
    x, w = RNG.standard_normal((2, 4, 5)), RNG.standard_normal((4, 3, 3))
    np.testing.assert_array_equal(RF.conv_transpose1d(x, w, None, 3, 1, 2, 2, 2),
                                  C.conv_transpose(x, w, None, 3, 1, 2, 2, 2))
    np.testing.assert_array_equal(C.conv_transpose(x, w, stride=3, padding=1, groups=2, dilation=2, output_size=[17]),
                                  RF.conv_transpose1d(x, w, stride=3, padding=1, output_padding=2, groups=2,
                                                      dilation=2))
