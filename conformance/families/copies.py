"""The copies-and-permutations template: operators that only move values, declared as data.

An operator of this family is a gather described by its registered reference function
(``reference.functional``): every output element is one input element or, for constant padding,
the fill value. So:

- the output is compared bit for bit in every tier, NaN, ±inf and the sign of zero included
  (``numerics.copies.COPY``);
- the input gradient is the adjoint scatter-add, each element the sum of the cotangents of the
  positions copying it, bounded per element by its number of copies n, (n - 1)·u·Σ|g| (exact where
  n = 1, and bit-exact in the exact tier: ``numerics.copies.scatter_tolerance``);
- the reference evaluates the registered forward once and returns its VJP as the pullback.

``copy_layer`` is the template; ``padding`` (the 15 padding modules) and ``reshaping`` (Flatten,
Unflatten, ChannelShuffle) supply its data: the call of the reference function, the case
strategies and the corner regimes (``strategies.copies``), the torch mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from backends.base import Case, Result
from conformance.numerics import copies as N
from conformance.spec import Comparator, LayerSpec, Pullback, Regime, TorchMapping
from conformance.strategies import copies as C
from reference import functional as RF


def gather_reference(call: N.Call) -> Callable[[Case], tuple[Result, Pullback]]:
    """The reference of a copy: ``RF.<name>(*args, **kwargs)`` for ``call(case)``, its VJP the
    pullback of the output's cotangent (a case declared invalid raises in ``call`` or the
    function)."""

    def reference(case: Case) -> tuple[Result, Pullback]:
        name, args, kwargs = call(case)
        result = Result(outputs={"output": getattr(RF, name)(*args, **kwargs)})

        def pullback(cotangents: Mapping[str, Any]) -> dict[str, Any]:
            return RF.vjp(name, *args, cotangent=cotangents["output"], **kwargs)

        return result, pullback

    return reference


def copy_layer(name: str, family: str, *, call: N.Call, cases: Callable[[str], Any], invalid: Callable[[str], Any],
               regimes: tuple[Regime, ...], notes: str, kind: str, dims: int | None = None,
               ctor: Callable[[Case], dict[str, Any]] | None = None,
               comparators: Mapping[str, Comparator] | None = None,
               smooth_at: Callable[[Case], bool] | None = None,
               readings: Callable[[LayerSpec, Case], Any] | None = None) -> LayerSpec:
    """The declaration of ``torch.nn.<name>``, a copy computed by ``call``'s registered function
    (``smooth_at``: where finite differences of the reference apply; a copy is linear)."""
    return LayerSpec(
        name=name, family=family, kind=kind, dims=dims, cases=cases, invalid_cases=invalid,
        reference=gather_reference(call), torch=TorchMapping(f"torch.nn.{name}", ctor=ctor),
        tolerance={"output": N.COPY, "grad.input": N.scatter_tolerance(call)},
        comparators=dict(comparators or {}), regimes=regimes, notes=notes, smooth_at=smooth_at, readings=readings)


# -- padding -----------------------------------------------------------------------------------------

MODE_NOTES = {
    "zeros": "out = x where the padded extension reads the input, +0.0 elsewhere.",
    "constant": ("out = x where the padded extension reads the input, value elsewhere: value is the dtype's value of "
                 "the Python float, correctly rounded from float64 (-0.0, ±inf and NaN as given); a finite value "
                 "beyond the dtype's largest finite one is refused, as torch refuses it. Known: torch converts "
                 "through float32, so a value just above a float16/bfloat16 half-way point rounds down."),
    "reflect": ("Reflection about the edge element (the edge is not repeated): t -> -t, 2(L - 1) - t. Every amount "
                "must be below L, every padded dim keep at least one element, every dim but the batch be "
                "non-empty. Known: the 2-d and 3-d kernels accept a padded dim cropped to empty (even below, "
                "2-d with an empty batch) while another keeps an element."),
    "replicate": ("The edge element repeated: clip(t, 0, L - 1), amounts larger than the input included. Every "
                  "padded dim must keep at least one element and every dim but the batch be non-empty. Known: the "
                  "2-d and 3-d kernels accept a padded dim cropped to exactly empty while another keeps an element."),
    "circular": ("The input's periodic extension, t mod L, each pad at most L (one wrap around); a crop removes "
                 "positions of the extension. Where one side crops and the other pads, torch crops first and wraps "
                 "around what remains: accepted as an alternative reading (the documentation allows both), output "
                 "and gradient alike. Known: where a pad is longer than that remainder torch's kernel copies from "
                 "its own unwritten output (raises, or returns uninitialised memory)."),
}
COMMON_PADDING = ("Amounts per side (left, right[, top, bottom[, front, back]]) as torch's flat tuple, last dim "
                  "first, or one int for every side; a negative amount crops. Values are copies, compared bit for "
                  "bit with the sign of zero; the gradient sums the cotangents of the positions copying an element "
                  "(bit-exact in the exact tier).")


def padding(name: str, mode: str, dims: int, *, notes: str = "") -> LayerSpec:
    """A padding module: ``mode`` "zeros" (ZeroPad), "constant" (ConstantPad: the value drawn too),
    "reflect", "replicate" or "circular", over the last ``dims`` dims."""
    pad_mode = "constant" if mode == "zeros" else mode
    value = mode == "constant"
    return copy_layer(
        name, "padding", call=N.padding_call, kind=mode, dims=dims,
        cases=C.padding_cases(name, pad_mode, dims, value), invalid=C.padding_invalid(name, pad_mode, dims, value),
        regimes=C.padding_regimes(pad_mode, dims, value),
        comparators={t: N.circular_readings for t in ("output", "grad.input")} if mode == "circular" else None,
        smooth_at=N.finite_value if value else None,
        readings=N.circular_readings_of if mode == "circular" else None,
        notes=" ".join(filter(None, (MODE_NOTES[mode], COMMON_PADDING, notes))))


# -- reshaping ---------------------------------------------------------------------------------------

def _unflatten_ctor(case: Case) -> dict[str, Any]:
    """nn.Unflatten's arguments, unflattened_size spelled as the case says (tuple, list, torch.Size)."""
    sizes = case.params["unflattened_size"]
    spelled = {"list": lambda: {"list": list(sizes)},
               "torch.Size": lambda: {"call": {"target": "torch.Size", "args": [list(sizes)], "kwargs": {}}}}
    return {"dim": case.params["dim"], "unflattened_size": spelled.get(case.params["sizes_as"], lambda: sizes)()}


RESHAPES: Mapping[str, tuple[Callable[..., Any], ...]] = {
    "flatten": (C.flatten_cases, C.flatten_invalid, None),
    "unflatten": (C.unflatten_cases, C.unflatten_invalid, _unflatten_ctor),
    "channel_shuffle": (C.shuffle_cases, C.shuffle_invalid, None),
}


def reshaping(name: str, kind: str, *, notes: str) -> LayerSpec:
    """Flatten (``kind`` "flatten"), Unflatten ("unflatten") or ChannelShuffle ("channel_shuffle")."""
    cases, invalid, ctor = RESHAPES[kind]
    return copy_layer(name, "shape", call=N.SHAPE_CALLS[kind], kind=kind, cases=cases(name), invalid=invalid(name),
                      regimes=C.shape_regimes(kind),
                      ctor=ctor, notes=notes)
