"""One forward error analysis per case, for every cotangent asked of it.

The analysed tolerances (``conformance.tolerance.analysed_tolerance``) run a Bounded twin of the
reference (a running error analysis) forward, then pull the case's cotangents back through it.
The jvp and vjp2 modes ask for one case's bounds under many cotangents (their basis projections,
one first-order bound per output element), which differ only in the backward part. ``forward``
keeps the last few forward analyses, each a function of the cotangents (its pullback is pure), and
hands one back for the same case data. ``per_case`` does the same for any other value computed
from a case that several judges read (a known entry's predicates and its model, say).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from backends.base import Case

Analysis = Callable[[Any], dict[str, np.ndarray]]

_ANALYSES: list[tuple[tuple[Any, ...], Analysis]] = []
KEPT = 4


def case_key(case: Case, *extra: Any) -> tuple[Any, ...]:
    """What a forward analysis depends on, cotangents aside: the case's data objects (compared by
    identity, never a stale id, since the key holds them), its scalars, and ``extra`` (compared by
    value: a packed order as a tuple). The layouts are part of it: a value computed per case (the
    indices inductor's max pooling picks, say) may depend on the inputs' strides."""
    return (case.op, case.variant, case.dtype, case.train, case.inputs, case.params, case.forward_kwargs,
            case.choices, case.call, case.layouts, *extra)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (dict, list, np.ndarray)) or isinstance(b, (dict, list, np.ndarray)):
        return a is b
    return bool(a == b)


def _once(store: list[tuple[tuple[Any, ...], Any]], key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
    for k, value in store:
        if len(k) == len(key) and all(_same(a, b) for a, b in zip(k, key)):
            return value
    value = compute()
    store.insert(0, (key, value))
    del store[KEPT:]
    return value


def forward(key: tuple[Any, ...], run: Callable[[], Analysis]) -> Analysis:
    """``run()`` (a forward error analysis: a function of the cotangents, or None, giving bounds by
    qualified name) once per ``key`` (``case_key``) among the last ``KEPT``."""
    return _once(_ANALYSES, key, run)


_VALUES: list[tuple[tuple[Any, ...], Any]] = []


def per_case(key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
    """``compute()`` once per ``key`` (``case_key`` with a name for the value) among the last ``KEPT``;
    the value is shared, so callers must not modify it."""
    return _once(_VALUES, key, compute)
