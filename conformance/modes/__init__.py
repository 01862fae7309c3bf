"""Derivative modes: every derivative torch offers, judged against the reference.

A run's targets are declaration × backend × dtype × mode (``--mode vjp,jvp,vjp2,vmap``; ``all``).
``vjp`` is the call and its reverse-mode gradient (``conformance.runner``); the other three are
here. Each draws its cases from the declaration's own strategy (random cases and every regime, in
every dtype), keeps those in its domain (``Mode.accepts``: a case outside it is rejected and
Hypothesis draws another), attaches what the backend must compute to the call tree
(``call["mode"]``, interpreted by ``backends.torch_call``), and judges the backend's result with
a bound derived from the error models of both sides (``Mode.judge``). No mode needs a formula of
its own: the reference's forward and analytic VJP (its pullback) are all there is.

The modes: ``conformance.modes.jvp`` (forward mode), ``conformance.modes.vjp2`` (second order) and
``conformance.modes.vmap`` (batching), each documenting its judgement and bound;
``conformance.modes.base`` holds what they share.
"""

from __future__ import annotations

import numpy as np

from backends.base import MODES, Case
from conformance.modes.base import BATCH, Judge, Judgement, Mode
from conformance.modes.jvp import JvpMode
from conformance.modes.vjp2 import Vjp2Mode
from conformance.modes.vmap import CAUSAL_HINTS, VmapMode, causal_hinted_masks
from conformance.spec import LayerSpec

__all__ = [
    "BATCH",
    "CAUSAL_HINTS",
    "MODES",
    "MODE_BY_NAME",
    "Judge",
    "Judgement",
    "JvpMode",
    "Mode",
    "Vjp2Mode",
    "VmapMode",
    "applicable",
    "causal_hinted_masks",
    "mode_of",
    "mode_option",
    "parse_modes",
]


def parse_modes(text: str) -> tuple[str, ...]:
    """``--mode``: a comma-separated list of ``MODES`` or ``all``, in canonical order."""
    names = [m.strip() for m in str(text).split(",") if m.strip()]
    if not names:
        raise ValueError("--mode was given an empty list")
    if "all" in names:
        return MODES
    unknown = [m for m in names if m not in MODES]
    if unknown:
        raise ValueError(f"unknown mode {unknown[0]!r} (known: {', '.join(MODES)}, all)")
    return tuple(m for m in MODES if m in names)


def mode_option(text: str) -> tuple[str, ...]:
    """``parse_modes`` as an argparse type (a bad value is a one-line usage error)."""
    import argparse

    try:
        return parse_modes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None



MODE_BY_NAME: dict[str, Mode] = {"jvp": JvpMode(), "vjp2": Vjp2Mode(), "vmap": VmapMode()}


def mode_of(name: str) -> Mode:
    """The mode object of a non-vjp mode."""
    return MODE_BY_NAME[name]


def applicable(spec: LayerSpec, mode: str) -> tuple[bool, str]:
    """Whether ``mode`` applies to ``spec`` (vjp always does). A lazy module is its eager module
    once its first call has materialised it, and torch.func requires that call to happen outside
    any transform (materialising inside torch.func.grad, jvp or vjp crashes torch 2.13): what a
    derivative mode would see of it is the eager declaration's, judged there."""
    if mode == "vjp":
        return True, ""
    if spec.family == "lazy":
        return False, (f"{spec.id} is its eager module once materialised (its dry run runs outside the "
                       f"transform, as torch.func requires): {mode} is judged on the eager declaration")
    return MODE_BY_NAME[mode].applicable(spec)


# -- known-entry predicates (``predicate = "conformance.modes:<name>"``) ------------------------------

def reverse_over_forward(case: Case) -> bool:
    """The vjp2 case differentiates the backend's forward-mode rule in reverse (``torch.func.grad``
    of ``torch.func.jvp``), the composition that sees a JVP rule which is wrong to second order."""
    return ((case.call or {}).get("mode") or {}).get("composition") == "reverse-over-forward"


def input_has_zero(case: Case) -> bool:
    """Some element of the float ``input`` is ±0 (a kink of PReLU and its kin)."""
    x = case.inputs.get("input")
    return x is not None and np.asarray(x).dtype.kind == "f" and bool(np.any(np.asarray(x) == 0))


def reverse_over_forward_with_batch_statistics(case: Case) -> bool:
    """``reverse_over_forward`` for a batch norm that normalises with the batch's statistics
    (training, or no running statistics tracked): the part of its JVP rule that is wrong to second
    order (the statistics' own derivative); with running statistics the map is affine."""
    return reverse_over_forward(case) and (case.train or not case.params.get("track_running_stats", True))
