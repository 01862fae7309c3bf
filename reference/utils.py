"""torch.nn.utils.parameters_to_vector and vector_to_parameters: a model's parameters as one vector.

``parameters_to_vector`` concatenates the parameters' elements, each flattened in row-major
(logical) order, in the order given: a copy, so its gradient routes each slice of the cotangent
back to its parameter, reshaped. ``vector_to_parameters`` is its inverse: consecutive slices of the
vector, reshaped, become the parameters' new values (torch replaces each parameter's data; no
gradient flows). The vector must hold exactly as many elements as the parameters together.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from reference.registry import functional


def _flat(parameters: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [np.asarray(p, dtype=np.float64).reshape(-1) for p in parameters]


def _parameters_to_vector_vjp(cotangent: np.ndarray, parameters: Sequence[np.ndarray]) -> dict[str, list[np.ndarray]]:
    """{"parameters": [the slice of the cotangent at each parameter, in its shape]}."""
    out, start = [], 0
    for p in parameters:
        p = np.asarray(p)
        out.append(np.asarray(cotangent[start:start + p.size], dtype=np.float64).reshape(p.shape))
        start += p.size
    return {"parameters": out}


@functional(vjp=_parameters_to_vector_vjp,
            example=lambda rng: (([rng.standard_normal((2, 3)), rng.standard_normal(()), rng.standard_normal(4)],), {}))
def parameters_to_vector(parameters: Sequence[np.ndarray]) -> np.ndarray:
    """torch.nn.utils.parameters_to_vector: one 1-d array of every parameter's elements, each
    parameter flattened in row-major order, in the order given (Σ numel elements; a 0-d parameter
    gives one, an empty one none). At least one parameter (torch.cat of nothing raises)."""
    if len(parameters) == 0:
        raise ValueError("parameters_to_vector needs at least one parameter")
    return np.concatenate(_flat(parameters))


@functional(example=lambda rng: ((rng.standard_normal(7), [np.zeros((2, 3)), np.zeros(())]), {}))
def vector_to_parameters(vec: np.ndarray, parameters: Sequence[np.ndarray]) -> list[np.ndarray]:
    """torch.nn.utils.vector_to_parameters: the parameters' new values, consecutive slices of the
    1-d ``vec`` reshaped to each parameter's shape, in order. ``vec`` must be an array holding
    exactly Σ numel(parameters) elements (it represents the parameters): otherwise ValueError (a
    non-array ``vec``: TypeError)."""
    if not isinstance(vec, np.ndarray):
        raise TypeError(f"expected an array, got {type(vec).__name__}")
    vec = np.asarray(vec, dtype=np.float64).reshape(-1)
    sizes = [int(np.asarray(p).size) for p in parameters]
    if vec.size != sum(sizes):
        raise ValueError(f"a vector of {vec.size} elements for parameters of {sum(sizes)} elements")
    bounds = np.cumsum([0, *sizes])
    return [vec[a:b].reshape(np.shape(p)) for a, b, p in zip(bounds[:-1], bounds[1:], parameters)]
