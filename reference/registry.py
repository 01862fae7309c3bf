"""The registry behind ``reference.functional``: which reference function mirrors which
``torch.nn.functional`` (or ``torch.nn.utils``...) name, and its VJP.

A family module registers its public functions where it defines them::

    @functional(vjp=conv2d_vjp)
    def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1): ...

The forward takes torch's argument names and order (arrays are float64 NumPy arrays). The VJP
takes the cotangent of the forward's result first (an array, or a tuple of arrays for a function
returning a tuple), then the forward's own arguments, and returns the gradient of every float
array argument it differentiates, keyed by that argument's name (``{"input": ..., "weight": ...}``).
``example`` (optional) gives arguments on which the generic tests check the VJP against finite
differences: ``example(rng) -> (args, kwargs)``.

This module, like the whole package, imports nothing but NumPy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Example = Callable[[np.random.Generator], "tuple[tuple[Any, ...], dict[str, Any]]"]


@dataclass(frozen=True)
class Entry:
    """One registered function: its forward, its VJP (None: no gradient) and an example call."""

    name: str
    forward: Callable[..., Any]
    vjp: Callable[..., dict[str, np.ndarray]] | None
    example: Example | None


FUNCTIONS: dict[str, Entry] = {}


def functional(name: str | None = None, *, vjp: Callable[..., dict[str, np.ndarray]] | None = None,
               example: Example | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register the function as ``reference.functional.<name>`` (default: its own
    name) with its VJP. A name is registered once."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        key = name or fn.__name__
        if key in FUNCTIONS and FUNCTIONS[key].forward is not fn:
            raise ValueError(f"reference.functional.{key} registered twice")
        FUNCTIONS[key] = Entry(key, fn, vjp, example)
        return fn

    return register
