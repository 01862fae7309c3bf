"""``reference.functional``, the reference as a library: every registered function is documented,
and every VJP with an example call agrees with finite differences of its forward there."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from reference import functional as RF
from reference.finite_differences import vjp_check

ENTRIES = RF.entries()
WITH_EXAMPLE = [e for e in ENTRIES.values() if e.vjp is not None and e.example is not None]


def _leaves(prefix, value):
    """The float arrays inside nested tuples and lists (a flat parameter list, an hx pair, a
    PackedSequence), by path: ``params[3]``, ``hx[1]``."""
    if isinstance(value, np.ndarray):
        return {prefix: value} if value.dtype.kind == "f" else {}
    if isinstance(value, (list, tuple)):
        return {k: v for i, item in enumerate(value) for k, v in _leaves(f"{prefix}[{i}]", item).items()}
    return {}


def _replaced(prefix, value, flat, missing=None):
    """``value`` with the float arrays at the paths of ``flat`` replaced (the others by ``missing``
    when given: None for the cotangent of an integer result)."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return flat.get(prefix, value if missing is None else missing)
    if isinstance(value, (list, tuple)):
        return type(value)(_replaced(f"{prefix}[{i}]", v, flat, missing) for i, v in enumerate(value))
    return value if missing is None else None


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_every_function_is_documented(name):
    doc = inspect.getdoc(ENTRIES[name].forward) or ""
    assert len(doc.split()) >= 5, f"reference.functional.{name} needs a docstring (math and shape contract)"


@pytest.mark.parametrize("entry", WITH_EXAMPLE, ids=lambda e: e.name)
def test_vjp_matches_finite_differences_at_its_example(entry):
    rng = np.random.default_rng(0)
    args, kwargs = entry.example(rng)
    bound = inspect.signature(entry.forward).bind(*args, **kwargs)
    arrays = {k: v for name, value in bound.arguments.items() for k, v in _leaves(name, value).items()}

    def forward(inputs):
        out = entry.forward(**{k: _replaced(k, v, inputs) for k, v in bound.arguments.items()})
        return _leaves("out", out if isinstance(out, (tuple, list)) else (out,))

    outputs = forward(arrays)
    cotangents = {k: rng.standard_normal(v.shape) for k, v in outputs.items()}
    out = entry.forward(*args, **kwargs)
    cot = _replaced("out", out if isinstance(out, (tuple, list)) else (out,), cotangents, missing=np.nan)
    grads = RF.vjp(entry.name, *args, cotangent=cot if isinstance(out, (tuple, list)) else cot[0], **kwargs)
    grads = {k: v for name, g in grads.items() for k, v in _leaves(name, g).items()}
    assert set(grads) <= set(arrays), (sorted(grads), sorted(arrays))
    check = vjp_check(forward, arrays, cotangents, grads)
    assert check.ok(), check


def test_unknown_names_are_reported():
    with pytest.raises(AttributeError):
        RF.no_such_function  # noqa: B018
    with pytest.raises(KeyError):
        RF.vjp("no_such_function", cotangent=None)
