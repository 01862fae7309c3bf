"""The normalisation family's templates: data in, ``LayerSpec`` out.

``normalisation(name, statistics, ...)`` declares a layer that standardises its input over named
statistic axes — ``"batch"`` (per channel over N and the spatial axes), ``"instance"`` (per sample
and channel over the spatial axes), ``"group"`` (per sample and group of channels), ``"layer"`` (per
sample over the trailing normalized_shape dims) or ``"rms"`` (the root mean square over the same) —
with its case strategy, its reference (the registered ``reference.functional`` forward and VJP),
its analysed tolerance (the one analysis over statistic axes), its torch mapping, its invalid cases
and its regimes. ``local_response(name, ...)`` declares the cross-channel LocalResponseNorm and
CrossMapLRN2d.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from backends.base import Case, Result
from conformance.numerics import normalization as NN
from conformance.numerics import normalization_modes as NNM
from conformance.spec import LayerSpec, Pullback, Regime, TorchMapping
from conformance.strategies import normalization as SN
from conformance.tolerance import analysed_tolerance
from reference import normalization as RN
from reference import normalization_lrn as RL
from reference.registry import FUNCTIONS

Reference = Callable[[Case], "tuple[Result, Pullback]"]


def _pull(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], like: Callable[[np.ndarray], np.ndarray]
          = lambda g: g, back: Callable[[np.ndarray], np.ndarray] = lambda g: g) -> Pullback:
    """The pullback of ``reference.functional.<name>(*args, **kwargs)``: its registered VJP for the
    cotangent of "output" (``like`` reshapes it to the function's output, ``back`` the input's
    gradient to the case's input). The registry entry is read directly: ``reference.functional``
    would import every reference module, and a module imported in the middle of a run adds its
    literals to the constants Hypothesis mixes into its draws (changing the cases that follow)."""
    vjp = FUNCTIONS[name].vjp

    def pullback(cotangents):
        grads = vjp(like(cotangents["output"]), *args, **kwargs)
        return {**grads, "input": back(grads["input"])}

    return pullback


# -- references ---------------------------------------------------------------------------------

def _check_channels(case: Case, channels: int, names: tuple[str, ...] = ("weight", "running_mean")) -> None:
    if any(case.inputs[k].shape != (channels,) for k in names if k in case.inputs):
        raise ValueError(f"input has {channels} channels, num_features is {case.params.get('num_features')}")


def _buffers(track: bool, mean: np.ndarray | None, var: np.ndarray | None, tracked: int) -> dict[str, np.ndarray]:
    if not track:
        return {}
    return {"running_mean": mean, "running_var": var, "num_batches_tracked": np.array(tracked, dtype=np.int64)}


def batch_reference(dims: int) -> Reference:
    """BatchNorm{dims}d as the module calls ``batch_norm``: batch statistics in training or without
    running statistics; momentum None is the cumulative factor 1/num_batches_tracked (counted after
    this batch); the buffers after the call are state."""
    ranks = SN.batch_ranks(dims)

    def reference(case: Case) -> tuple[Result, Pullback]:
        x, inp, p = case.inputs["input"], case.inputs, case.params
        if x.ndim not in ranks:
            raise ValueError(f"BatchNorm{dims}d expects a {' or '.join(f'{r}-d' for r in ranks)} input, got {x.ndim}-d")
        _check_channels(case, x.shape[1])
        track = p["track_running_stats"]
        tracked = int(inp["num_batches_tracked"]) + int(case.train) if track else 0
        momentum = RN.momentum_factor(p["momentum"], tracked) if track and case.train else 0.0
        args = (x, inp.get("running_mean"), inp.get("running_var"), inp.get("weight"), inp.get("bias"))
        kwargs = {"training": SN.uses_batch_stats(case.train, track), "momentum": momentum, "eps": p["eps"]}
        out, mean, var = RN.batch_norm_with_running_stats(*args, **kwargs)
        return Result(outputs={"output": out}, state=_buffers(track, mean, var, tracked)), _pull("batch_norm", args,
                                                                                               kwargs)

    return reference


def instance_reference(dims: int) -> Reference:
    """InstanceNorm{dims}d as the module calls ``instance_norm``: an unbatched input gets a batch
    axis; input statistics in training or without running statistics; momentum None is 0 (the
    module passes 0.0: the running statistics stay as they are); num_batches_tracked is never
    counted."""

    def reference(case: Case) -> tuple[Result, Pullback]:
        inp, p = case.inputs, case.params
        if inp["input"].ndim not in (dims + 1, dims + 2):
            raise ValueError(f"InstanceNorm{dims}d expects a {dims + 1}-d or {dims + 2}-d input")
        x = NN.batched(case, dims)
        if p["affine"] and x.shape[1] != p["num_features"]:
            raise ValueError(f"input has {x.shape[1]} channels, num_features is {p['num_features']}")
        track = p["track_running_stats"]
        args = (x, inp.get("running_mean"), inp.get("running_var"), inp.get("weight"), inp.get("bias"))
        kwargs = {"use_input_stats": SN.uses_batch_stats(case.train, track),
                  "momentum": 0.0 if p["momentum"] is None else p["momentum"], "eps": p["eps"]}
        out, mean, var = RN.instance_norm_with_running_stats(*args, **kwargs)
        shape = inp["input"].shape
        state = _buffers(track, mean, var, int(inp["num_batches_tracked"]) if track else 0)
        return Result(outputs={"output": out.reshape(shape)}, state=state), _pull(
            "instance_norm", args, kwargs, like=lambda g: g.reshape(x.shape), back=lambda g: g.reshape(shape))

    return reference


def group_reference(case: Case) -> tuple[Result, Pullback]:
    """GroupNorm: ``group_norm`` with num_groups (num_channels only sizes the affine parameters)."""
    p, inp = case.params, case.inputs
    if p["num_channels"] % p["num_groups"]:
        raise ValueError(f"num_channels ({p['num_channels']}) must be divisible by num_groups ({p['num_groups']})")
    args = (inp["input"], p["num_groups"], inp.get("weight"), inp.get("bias"))
    return Result(outputs={"output": RN.group_norm(*args, eps=p["eps"])}), _pull("group_norm", args, {"eps": p["eps"]})


def layer_reference(case: Case) -> tuple[Result, Pullback]:
    """LayerNorm: ``layer_norm`` over normalized_shape (weight and bias when present)."""
    inp, p = case.inputs, case.params
    args = (inp["input"], p["normalized_shape"], inp.get("weight"), inp.get("bias"))
    return Result(outputs={"output": RN.layer_norm(*args, eps=p["eps"])}), _pull("layer_norm", args, {"eps": p["eps"]})


def rms_reference(case: Case) -> tuple[Result, Pullback]:
    """RMSNorm: ``rms_norm``, eps None given as the case dtype's eps (torch.finfo(dtype).eps)."""
    inp = case.inputs
    args = (inp["input"], case.params["normalized_shape"], inp.get("weight"))
    kwargs = {"eps": NN.trailing_eps(case)}
    return Result(outputs={"output": RN.rms_norm(*args, **kwargs)}), _pull("rms_norm", args, kwargs)


def lrn_reference(function: str) -> Reference:
    """LocalResponseNorm / CrossMapLRN2d: ``function`` (local_response_norm, cross_map_lrn2d)."""

    def reference(case: Case) -> tuple[Result, Pullback]:
        p = case.params
        args = (case.inputs["input"], p["size"], p["alpha"], p["beta"], p["k"])
        return Result(outputs={"output": FUNCTIONS[function].forward(*args)}), _pull(function, args, {})

    return reference


# -- regimes --------------------------------------------------------------------------------------

Slices = Callable[[Case], "tuple[tuple[int, ...], tuple[int, ...]]"]


def batch_slices(case: Case) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """BatchNorm's statistic slices: per channel, over N and the spatial axes."""
    return case.inputs["input"].shape, RN.channel_axes(case.inputs["input"].ndim)


def instance_slices(dims: int) -> Slices:
    """InstanceNorm's: per sample and channel, over the spatial axes (an unbatched input as N = 1)."""
    return lambda case: (NN.batched(case, dims).shape, tuple(range(2, dims + 2)))


def group_slices(case: Case) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """GroupNorm's: per sample and group, over the (C/G, S) axes of the group view."""
    return RN.group_view(case.inputs["input"].shape, case.params["num_groups"]), (2, 3)


def row_slices(case: Case) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """LayerNorm's and RMSNorm's: per row of the normalised trailing dims."""
    return ((-1, NN.values_per_slice(case)) if case.inputs["input"].size else (0, 1)), (1,)


def resolvable(slices: Slices, centred: bool = True) -> Callable[[Case], bool]:
    """``smooth_at``: the layer is smooth wherever eps > 0, but it bends on the scale σ = √(v + eps)
    of each statistic slice, and the generic finite-difference check steps each input by about
    1e-6·(|x| + 1e-3): the check applies where every slice has max|x| + 1e-3 <= 1000·σ (a constant
    slice of huge values, or tiny values under a tiny eps, is smooth, but not on the step's scale)."""

    def smooth(case: Case) -> bool:
        x, axes = _view(case, slices)
        if not x.size:
            return True
        eps = NN.trailing_eps(case) if not centred else case.params["eps"]
        with np.errstate(all="ignore"):
            var = RN.moments(x, axes)[1] if centred else (x * x).mean(axis=axes, keepdims=True)
            step = np.max(np.abs(x), axis=axes, keepdims=True) + 1e-3  # the directions' floor is 1e-3
            return bool(np.all(step <= 1000 * np.sqrt(var + eps)))

    return smooth


def _view(case: Case, slices: Slices) -> tuple[np.ndarray, tuple[int, ...]]:
    view, axes = slices(case)
    return case.inputs["input"].reshape(view), axes


def _some_slice(slices: Slices, test: Callable[[np.ndarray, tuple[int, ...]], np.ndarray]) -> Callable[[Case], bool]:
    def holds(case: Case) -> bool:
        x, axes = _view(case, slices)
        return bool(x.size) and bool(np.any(test(x, axes)))

    return holds


def _variance_zero(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    return np.max(x, axis=axes) == np.min(x, axis=axes)


def _all_zero(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    return np.all(x == 0, axis=axes)


def _offset_dominates(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """The mean is at least 8 standard deviations from 0: E[x²] - E[x]² cancels."""
    mean, var = RN.moments(x, axes)
    return np.abs(mean) >= 8 * np.sqrt(var)


def _magnitude(table: dict[str, float], huge: bool) -> Callable[[Case], bool]:
    def holds(case: Case) -> bool:
        x = np.abs(case.inputs["input"])
        x = x[np.isfinite(x) & (x > 0)]
        limit = table[case.dtype]
        return bool(x.size) and bool(np.max(x) >= limit / 64 if huge else np.max(x) <= limit * 64)

    return holds


UNIT = {"input.scale": "unit", "input.kind": "normal", "empty batch": False, "input.special": "none"}
PLAIN = {"input.offset": 0.0, "constant": "none", "empty batch": False, "input.special": "none"}


def value_regimes(slices: Slices, what: str, centred: bool = True) -> tuple[Regime, ...]:
    """The value corners every standardising layer shares, over its statistic slices ``what``:
    a constant slice (centred) or an all-zero one (RMS), a large offset, huge and tiny magnitudes."""
    if centred:
        corners = (
            Regime(f"constant {what} (variance 0)", _some_slice(slices, _variance_zero),
                   pins={"constant": "one slice", **UNIT},
                   description="v = 0: x̂ = 0, y = bias, the gradient (ĝ - mean ĝ)/√eps"),
            Regime("large offset (ill-conditioned variance)", _some_slice(slices, _offset_dominates),
                   pins={"input.offset": 1024.0, "constant": "none", **UNIT},
                   description=f"|mean| >= 8·std in some {what}: a one-pass E[x²] - E[x]² cancels"),
        )
    else:
        corners = (Regime(f"all-zero {what}", _some_slice(slices, _all_zero),
                          pins={"constant": "one zero slice", **UNIT},
                          description="mean(x²) = 0: y = 0, the gradient g·w/√eps"),)
    return corners + nonfinite_regimes(PLAIN) + (
        Regime("huge magnitudes", _magnitude(SN.HUGE, True), pins={"input.scale": "huge", **PLAIN},
               description="squares overflow the dtype (not the float32 or float64 torch computes statistics in)"),
        Regime("tiny magnitudes", _magnitude(SN.TINY, False), pins={"input.scale": "tiny", **PLAIN},
               description="squares underflow the dtype: the variance vanishes under eps"),
    )


def nonfinite_regimes(pins: dict[str, Any]) -> tuple[Regime, ...]:
    """A NaN, and an infinity, in the input: it propagates through every statistic it enters."""
    return (Regime("NaN input", lambda c: bool(np.isnan(c.inputs["input"]).any()),
                   pins={**pins, "input.special": "nan"}, description="NaN in one element: its slice's outputs NaN"),
            Regime("infinite input", lambda c: bool(np.isinf(c.inputs["input"]).any()),
                   pins={**pins, "input.special": "inf"},
                   description="+inf in one element: its slice's mean is inf, x - mean NaN"))


def _layout(kind: str, **pins: Any) -> Regime:
    name = "channels_last" if kind == "channels_last" else f"{kind} input"
    return Regime(name, lambda c: c.layout("input").kind == kind, pins={"layout.input": kind, **pins},
                  description=f"the input stored {kind.replace('_', '-')}")


def batch_regimes(dims: int) -> tuple[Regime, ...]:
    """BatchNorm's corners (names and pins fixed: they seed the ci searches)."""
    p = lambda case: case.params  # noqa: E731
    regimes = [
        Regime("eval with running stats", lambda c: not c.train and p(c)["track_running_stats"],
               pins={"train": False, "track_running_stats": True},
               description="evaluation mode normalises with the running buffers, which stay unchanged"),
        Regime("momentum None", lambda c: p(c)["momentum"] is None and c.train and p(c)["track_running_stats"],
               pins={"momentum": None, "train": True, "track_running_stats": True},
               description="cumulative moving average: factor 1/num_batches_tracked (after the increment)"),
        Regime("no running stats", lambda c: not p(c)["track_running_stats"],
               pins={"track_running_stats": False},
               description="batch statistics in both modes, no buffers"),
        Regime("eval without running stats", lambda c: not c.train and not p(c)["track_running_stats"],
               pins={"track_running_stats": False, "train": False},
               description="evaluation mode still normalises with batch statistics"),
        Regime("one value per channel pair (N·L = 2)",
               lambda c: RN.values_per_channel(c.inputs["input"]) == 2
               and SN.uses_batch_stats(c.train, p(c)["track_running_stats"]),
               pins={**{f"spatial[{i}]": 1 for i in range(3)}, "N": 2, "train": True},
               description="K = 2: x̂ = ±1 (or 0), the unbiased running variance doubles the biased one"),
        Regime("large offset (ill-conditioned variance)",
               _some_slice(batch_slices, _offset_dominates),
               pins={"input.offset": 64.0, "input.kind": "normal"},
               description="|mean| >= 8·std in some channel: E[x²] - E[x]² cancels catastrophically"),
    ]
    if dims == 1:
        regimes.append(Regime("(N, C) input", lambda c: c.inputs["input"].ndim == 2, pins={"spatial rank": 0},
                              description="no spatial axis: statistics over the batch only"))
    else:
        regimes.append(Regime(f"channels_last{'_3d' if dims == 3 else ''}",
                              lambda c: c.layout("input").kind == "channels_last",
                              pins={"layout.input": "channels_last"},
                              description="the input stored channels-last (NHWC / NDHWC)"))
    return tuple(regimes)


def instance_regimes(dims: int) -> tuple[Regime, ...]:
    p = lambda case: case.params  # noqa: E731
    slices = instance_slices(dims)
    regimes = (
        Regime("eval with running stats", lambda c: not c.train and p(c)["track_running_stats"],
               pins={"train": False, "track_running_stats": True},
               description="evaluation mode normalises with the running buffers, which stay unchanged"),
        Regime("running stats updated", lambda c: c.train and p(c)["track_running_stats"]
               and p(c)["momentum"] not in (None, 0.0), pins={"train": True, "track_running_stats": True,
                                                              "momentum": 0.1},
               description="running' = (1 - m)·running + m·mean over N of each instance's statistic (unbiased var)"),
        Regime("momentum None", lambda c: p(c)["momentum"] is None and c.train and p(c)["track_running_stats"],
               pins={"momentum": None, "train": True, "track_running_stats": True},
               description="the module passes momentum 0.0: the running statistics stay unchanged"),
        Regime("unbatched", lambda c: c.inputs["input"].ndim == dims + 1, pins={"batched": False},
               description="(C, *spatial): normalised as one sample"),
        Regime("unbatched with running stats", lambda c: c.inputs["input"].ndim == dims + 1 and c.train
               and p(c)["track_running_stats"], pins={"batched": False, "train": True, "track_running_stats": True,
                                                      "momentum": 0.5},
               description="the running statistics of one sample"),
        Regime("two spatial values (K = 2)", lambda c: int(np.prod(NN.batched(c, dims).shape[2:])) == 2
               and SN.uses_batch_stats(c.train, p(c)["track_running_stats"]),
               pins={"spatial[*]": 1, "train": True}, description="K = 2: x̂ = ±1 (or 0), unbiased variance 2v"),
        Regime("eval, one spatial element", lambda c: int(np.prod(NN.batched(c, dims).shape[2:])) == 1,
               pins={"spatial[*]": 1, "train": False, "track_running_stats": True},
               description="the running statistics normalise a single value per instance (input statistics could not)"),
        Regime("num_features not used", lambda c: NN.batched(c, dims).shape[1] != p(c)["num_features"],
               pins={"affine": False, "track_running_stats": False, "channels beyond num_features": 1},
               description="without affine parameters and running statistics the channel count is free (torch warns)"),
    ) + value_regimes(slices, "instance")
    return regimes + ((_layout("channels_last", batched=True),) if dims > 1 else ())


def group_regimes() -> tuple[Regime, ...]:
    p = lambda case: case.params  # noqa: E731
    slices = group_slices
    per_group = lambda c: c.inputs["input"].shape[1] // p(c)["num_groups"]  # noqa: E731
    volume = lambda c: int(np.prod(c.inputs["input"].shape[2:]))  # noqa: E731
    large = {"input.offset": 1024.0, "constant": "none", **UNIT}
    return (
        Regime("num_groups 1", lambda c: p(c)["num_groups"] == 1, pins={"num_groups": 1},
               description="one group: LayerNorm over (C, *spatial) with per-channel parameters"),
        Regime("num_groups = C", lambda c: per_group(c) == 1 and p(c)["num_groups"] > 1,
               pins={"channels per group": 1, "num_groups": 3, "channels per group beyond num_channels": 0},
               description="one channel per group: InstanceNorm with per-channel parameters"),
        Regime("a group of one element", lambda c: per_group(c) * volume(c) == 1,
               pins={"channels per group": 1, "spatial[*]": 1, "N": 2, "channels per group beyond num_channels": 0},
               description="C/G·prod(spatial) = 1 with N >= 2 (torch's rule): v = 0, y = bias"),
        Regime("(N, C) input", lambda c: c.inputs["input"].ndim == 2, pins={"rank": 2},
               description="no spatial axis: statistics over each group's channels"),
        Regime("5-d input", lambda c: c.inputs["input"].ndim == 5, pins={"rank": 5},
               description="(N, C, D, H, W)"),
        Regime("num_channels not used", lambda c: c.inputs["input"].shape[1] != p(c)["num_channels"],
               pins={"affine": False, "channels per group beyond num_channels": 1},
               description="without affine parameters the input's channel count only has to be a multiple of G"),
        _layout("channels_last", rank=4),
        Regime("channels_last with a large offset",
               lambda c: c.layout("input").kind == "channels_last" and _some_slice(slices, _offset_dominates)(c),
               pins={"rank": 4, "layout.input": "channels_last", **large},
               description="a one-pass variance in the channels-last kernel cancels"),
    ) + value_regimes(slices, "group")


def trailing_regimes(rms: bool) -> tuple[Regime, ...]:
    p = lambda case: case.params  # noqa: E731
    slices = row_slices
    regimes = [
        Regime("normalized over all dims", lambda c: c.inputs["input"].ndim == len(
            RN.trailing_axes(c.inputs["input"], p(c)["normalized_shape"])), pins={"normalized dims": 4},
            description="the whole (unbatched) input is one slice"),
        Regime("one normalized element (K = 1)", lambda c: NN.values_per_slice(c) == 1, pins={"shape[*]": 1},
               description="K = 1: LayerNorm gives x̂ = 0; RMSNorm x/√(x² + eps)"),
        Regime("empty batch", lambda c: c.inputs["input"].size == 0, pins={"rank": 2, "normalized dims": 1,
                                                                            "empty batch": True},
               description="a leading size 0: an empty output, zero parameter gradients"),
        Regime("no elementwise affine", lambda c: not p(c)["elementwise_affine"], pins={"elementwise_affine": False},
               description="no weight (nor bias)"),
        _layout("channels_last", rank=4, **{"empty batch": False}),
    ]
    if rms:
        regimes.insert(0, Regime("eps None", lambda c: p(c)["eps"] is None, pins={"eps": None},
                                 description="eps = torch.finfo(dtype).eps (documented)"))
        regimes.insert(1, Regime("eps None, mean square near eps",
                                 lambda c: p(c)["eps"] is None and _magnitude(SN.TINY, False)(c),
                                 pins={"eps": None, "input.scale": "tiny", "input.offset": 0.0, "empty batch": False,
                                       "constant": "none"},
                                 description="where the dtype's eps decides the result"))
    else:
        regimes.append(Regime("weight without bias", lambda c: p(c)["elementwise_affine"] and not p(c)["bias"],
                              pins={"elementwise_affine": True, "bias": False},
                              description="LayerNorm(bias=False): a weight only"))
    return tuple(regimes) + value_regimes(slices, "row", centred=not rms)


def lrn_regimes(ranks: tuple[int, ...]) -> tuple[Regime, ...]:
    p = lambda case: case.params  # noqa: E731
    channels = lambda c: c.inputs["input"].shape[1]  # noqa: E731

    def zero_window(case: Case) -> bool:
        x = case.inputs["input"]
        n = p(case)["size"]
        return p(case)["k"] == 0 and bool(np.any(RL.window_sum(x * x, n, n // 2, (n - 1) // 2) == 0))

    regimes = [
        Regime("size 1", lambda c: p(c)["size"] == 1, pins={"size": 1}, description="each channel alone"),
        Regime("even size", lambda c: p(c)["size"] % 2 == 0, pins={"size": 2, "channels": 4},
               description="the window reaches ⌊n/2⌋ channels back and ⌊(n - 1)/2⌋ forward"),
        Regime("size larger than C", lambda c: p(c)["size"] > channels(c), pins={"channels": 2, "size": 5},
               description="the window covers every channel; zeros beyond count in the average"),
        Regime("k = 0 over an all-zero window (0/0)", zero_window,
               pins={"k": 0.0, "zero channels": "every channel", "input.special": "none"},
               description="d = 0: y = 0/0 = NaN"),
        Regime("beta 0", lambda c: p(c)["beta"] == 0, pins={"beta": 0.0}, description="y = x"),
        *nonfinite_regimes({"zero channels": "none", "input.offset": 0.0}),
        Regime("huge magnitudes", _magnitude(SN.HUGE, True),
               pins={"input.scale": "huge", "input.offset": 0.0, "zero channels": "none", "input.special": "none"},
               description="squares overflow the dtype"),
    ]
    if len(ranks) > 1:
        regimes += [Regime("3-d input", lambda c: c.inputs["input"].ndim == 3, pins={"rank": 3},
                           description="(N, C, L)"),
                    Regime("5-d input", lambda c: c.inputs["input"].ndim == 5,
                           pins={"rank": 5, "layout.input": "permuted"},
                           description="permuted: torch views x² of a 5-d input as (N, 1, C, D, H·W)")]
    else:
        regimes.append(Regime("window covers every channel", lambda c: channels(c) <= (p(c)["size"] - 1) // 2 + 1,
                              pins={"channels": 2, "size": 3},
                              description="C <= (size - 1)/2 + 1: no channel leaves the window"))
    return tuple(regimes)


# -- templates ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Statistics:
    """What a kind of statistic axes brings to a declaration: each field is built per declaration
    from its name and dims (``cases``, ``invalid``: (name, dims); ``torch``: name; the rest: dims)."""

    cases: Callable[..., Any]
    invalid: Callable[..., Any]
    reference: Callable[..., Reference] | Reference
    errors: Callable[..., Any]
    length: Callable[..., Any]
    regimes: Callable[..., tuple[Regime, ...]]
    torch: Callable[[str], TorchMapping]
    notes: str
    slices: Callable[[int | None], Slices]


def _ctor_normalized_shape(case: Case) -> dict[str, Any]:
    """normalized_shape travels as spelled: an int, a tuple, or a Python list (a list node)."""
    shape = case.params["normalized_shape"]
    return {**case.params, "normalized_shape": {"list": list(shape)} if isinstance(shape, list) else shape}


def _instance_buffers(case: Case) -> tuple[str, ...]:
    return SN.BUFFERS if case.params["track_running_stats"] else ()


_KINDS: dict[str, _Statistics] = {
    "batch": _Statistics(
        cases=SN.batch_norm_cases, invalid=SN.invalid_batch_norm_cases, reference=batch_reference,
        errors=lambda dims: NN.batch_norm_errors, length=lambda dims: NN.batch_length, regimes=batch_regimes,
        torch=lambda name: TorchMapping(f"torch.nn.{name}", parameters=("weight", "bias"), buffers=SN.BUFFERS,
                                        mutated=SN.BUFFERS),
        slices=lambda dims: batch_slices,
        notes="Normalises with the biased batch variance; running_var takes the unbiased one. momentum=None is the "
        "cumulative average (factor 1/num_batches_tracked). Eval mode with running stats uses them; without running "
        "stats both modes use batch statistics. num_batches_tracked is compared exactly. torch discrepancies (CPU "
        "backward): a 4-d/5-d input that is channels_last-contiguous only through size-1 dims gets wrong gradients "
        "(batchnorm-cpu-backward-degenerate-channels-last-*); a strided weight with one value per sample and channel "
        "is read as contiguous (batchnorm-cpu-backward-strided-weight-one-value-per-sample-*)."),
    "instance": _Statistics(
        cases=SN.instance_norm_cases, invalid=SN.invalid_instance_norm_cases, reference=instance_reference,
        errors=NN.instance_norm_errors, length=NN.instance_length, regimes=instance_regimes,
        torch=lambda name: TorchMapping(f"torch.nn.{name}", parameters=("weight", "bias"), buffers=SN.BUFFERS,
                                        mutated=_instance_buffers),
        slices=instance_slices,
        notes="Statistics of each sample's channel over its spatial axes (biased variance); affine parameters per "
        "channel (bias=False keeps only the weight). With track_running_stats the running statistics are updated in "
        "training with the mean over N of the per-instance mean and unbiased variance and used in eval; "
        "num_batches_tracked is never counted. momentum None (undocumented for InstanceNorm) reaches "
        "F.instance_norm as 0.0: the running statistics stay unchanged. An unbatched input is one sample. Without "
        "affine parameters or running statistics num_features is not used (torch only warns on a mismatch)."),
    "group": _Statistics(
        cases=lambda name, dims: SN.group_norm_cases(name),
        invalid=lambda name, dims: SN.invalid_group_norm_cases(name), reference=lambda dims: group_reference,
        errors=lambda dims: NN.group_norm_errors, length=lambda dims: NN.group_length,
        regimes=lambda dims: group_regimes(),
        torch=lambda name: TorchMapping("torch.nn.GroupNorm", parameters=("weight", "bias")),
        slices=lambda dims: group_slices,
        notes="Input (N, C, *) of rank 2 to 5; the C channels fall into num_groups consecutive groups and each "
        "sample's group is standardised over its channels and spatial axes (biased variance); weight and bias per "
        "channel (bias=False: weight only). torch rejects N·(C/G)·prod(spatial) = 1, so a single-element group "
        "(v = 0, y = bias) needs N >= 2. Without affine, num_channels is not checked against the input. torch "
        "discrepancy: the CPU channels-last kernel computes the variance in one pass "
        "(groupnorm-cpu-channels-last-one-pass-variance-*)."),
    "layer": _Statistics(
        cases=lambda name, dims: SN.trailing_norm_cases(name, rms=False),
        invalid=lambda name, dims: SN.invalid_trailing_norm_cases(name, rms=False),
        reference=lambda dims: layer_reference, errors=lambda dims: NN.trailing_norm_errors(rms=False),
        length=lambda dims: NN.trailing_length, regimes=lambda dims: trailing_regimes(rms=False),
        torch=lambda name: TorchMapping("torch.nn.LayerNorm", ctor=_ctor_normalized_shape,
                                        parameters=("weight", "bias")),
        slices=lambda dims: row_slices,
        notes="Statistics over the trailing normalized_shape dims of each sample (biased variance, eps inside the "
        "square root); normalized_shape an int, a tuple or a list, from one to all dims (an unbatched input "
        "normalised whole); weight and bias of normalized_shape (elementwise_affine; bias=False keeps the weight). "
        "An empty batch gives an empty output and zero parameter gradients."),
    "rms": _Statistics(
        cases=lambda name, dims: SN.trailing_norm_cases(name, rms=True),
        invalid=lambda name, dims: SN.invalid_trailing_norm_cases(name, rms=True),
        reference=lambda dims: rms_reference, errors=lambda dims: NN.trailing_norm_errors(rms=True),
        length=lambda dims: NN.trailing_length, regimes=lambda dims: trailing_regimes(rms=True),
        torch=lambda name: TorchMapping("torch.nn.RMSNorm", ctor=_ctor_normalized_shape, parameters=("weight",)),
        slices=lambda dims: row_slices,
        notes="y = x/√(mean(x²) + eps)·weight over the trailing normalized_shape dims; eps None is "
        "torch.finfo(x.dtype).eps (documented; the reference gets it from the case dtype: 2^-52, 2^-23, 2^-10, "
        "2^-7). An all-zero row gives 0. torch discrepancies: float16/bfloat16 take float32's eps for None "
        "(rmsnorm-cpu-eps-none-float32-eps); the backward loses a term for rows of huge magnitude "
        "(rmsnorm-cpu-backward-rstd-cubed-underflow-*)."),
}


def normalisation(name: str, statistics: str, *, dims: int | None = None, notes: str = "",
                  regimes: tuple[Regime, ...] = ()) -> LayerSpec:
    """A layer that standardises over ``statistics`` axes ("batch", "instance", "group", "layer",
    "rms"); ``dims``: the spatial dims of BatchNorm / InstanceNorm; ``notes`` before the kind's own;
    ``regimes`` beyond the kind's."""
    kind = _KINDS[statistics]
    return LayerSpec(
        name=name, family="normalization", dims=dims, kind=statistics,
        cases=kind.cases(name, dims), invalid_cases=kind.invalid(name, dims), reference=kind.reference(dims),
        torch=kind.torch(name), tolerance=analysed_tolerance(kind.errors(dims), kind.length(dims)),
        regimes=kind.regimes(dims) + regimes, notes=f"{notes} {kind.notes}".strip(),
        smooth_at=resolvable(kind.slices(dims), centred=statistics != "rms"),
        second_order_error=NNM.affine_second_order_error(kind.errors(dims), statistics),
    )


def local_response(name: str, target: str, function: str, ranks: tuple[int, ...], notes: str = "") -> LayerSpec:
    """A cross-channel local response normalisation (LocalResponseNorm, CrossMapLRN2d): ``target``
    the torch module, ``function`` its ``reference.functional`` form, ``ranks`` the input ranks."""
    return LayerSpec(
        name=name, family="normalization", kind="local response", cases=SN.local_response_cases(name, ranks),
        invalid_cases=SN.invalid_local_response_cases(name, ranks), reference=lrn_reference(function),
        torch=TorchMapping(target), tolerance=analysed_tolerance(NN.local_response_errors, NN.lrn_length),
        comparators={"grad.input": NN.lrn_nonfinite_gradient_comparator}, smooth_at=NN.lrn_smooth_at,
        regimes=lrn_regimes(ranks), notes=notes,
    )
