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


def _flat(value):
    return list(value) if isinstance(value, tuple) else [value]


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_every_function_is_documented(name):
    doc = inspect.getdoc(ENTRIES[name].forward) or ""
    assert len(doc.split()) >= 5, f"reference.functional.{name} needs a docstring (math and shape contract)"


@pytest.mark.parametrize("entry", WITH_EXAMPLE, ids=lambda e: e.name)
def test_vjp_matches_finite_differences_at_its_example(entry):
    rng = np.random.default_rng(0)
    args, kwargs = entry.example(rng)
    bound = inspect.signature(entry.forward).bind(*args, **kwargs)
    arrays = {k: v for k, v in bound.arguments.items()
              if isinstance(v, np.ndarray) and v.dtype.kind == "f"}

    def forward(inputs):
        call = inspect.signature(entry.forward).bind(*args, **kwargs)
        call.arguments.update(inputs)
        return {str(i): np.asarray(o) for i, o in enumerate(_flat(entry.forward(*call.args, **call.kwargs)))}

    outputs = forward(arrays)
    cotangents = {k: rng.standard_normal(v.shape) for k, v in outputs.items() if v.dtype.kind == "f"}
    cot = tuple(cotangents.get(str(i)) for i in range(len(outputs)))  # None for integer outputs
    grads = RF.vjp(entry.name, *args, cotangent=cot if len(cot) > 1 else cot[0], **kwargs)
    assert set(grads) <= set(arrays), (sorted(grads), sorted(arrays))
    check = vjp_check(forward, arrays, cotangents, grads)
    assert check.ok(), check


def test_unknown_names_are_reported():
    with pytest.raises(AttributeError):
        RF.no_such_function  # noqa: B018
    with pytest.raises(KeyError):
        RF.vjp("no_such_function", cotangent=None)
