"""``torch.nn.functional`` in float64 NumPy: the reference as a library.

Each function takes torch's argument names and order, NumPy arrays for tensors, and computes in
float64. Each has its VJP beside it::

    >>> import numpy as np
    >>> from reference import functional as RF
    >>> x, w = np.random.rand(2, 3, 8), np.random.rand(4, 3, 3)
    >>> y = RF.conv1d(x, w, None, stride=2)
    >>> grads = RF.vjp("conv1d", x, w, None, stride=2, cotangent=np.ones_like(y))
    >>> sorted(grads)
    ['input', 'weight']

``RF.names()`` lists every function; ``help(RF.<name>)`` documents its math and shape contract.
Only NumPy is needed: no torch, no hypothesis, nothing else of nnconform.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import numpy as np

import reference
from reference.registry import FUNCTIONS, Entry

_SKIP = {"functional", "registry"}
_loaded = False


def _load() -> None:
    """Import every module of the package once, so that each registers its functions."""
    global _loaded
    if not _loaded:
        for module in pkgutil.iter_modules(reference.__path__):
            if module.name not in _SKIP and not module.name.startswith("_"):
                importlib.import_module(f"reference.{module.name}")
        _loaded = True


def entries() -> dict[str, Entry]:
    """Every registered function, by name."""
    _load()
    return dict(FUNCTIONS)


def names() -> list[str]:
    """The names of every function, sorted."""
    return sorted(entries())


def vjp(name: str, *args: Any, cotangent: Any, **kwargs: Any) -> dict[str, np.ndarray]:
    """The gradient of ``name(*args, **kwargs)`` for the output cotangent ``cotangent`` (an
    array, or a tuple of arrays for a function returning a tuple), by argument name.

    Raises KeyError for an unknown name and TypeError for a function without a gradient."""
    entry = entries().get(name)
    if entry is None:
        raise KeyError(f"reference.functional has no function {name!r}")
    if entry.vjp is None:
        raise TypeError(f"reference.functional.{name} has no gradient")
    return entry.vjp(cotangent, *args, **kwargs)


def __getattr__(name: str) -> Any:
    entry = entries().get(name)
    if entry is None:
        raise AttributeError(f"reference.functional has no function {name!r}")
    return entry.forward


def __dir__() -> list[str]:
    return sorted({*globals(), *entries()})
