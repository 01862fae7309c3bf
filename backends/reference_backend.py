"""The NumPy reference as a backend: validates the suite end to end (it must always conform)."""

from __future__ import annotations

import numpy as np

from backends.base import Backend, Capabilities
from conformance.case import Case, Result
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec


class ReferenceBackend(Backend):
    """Runs each layer's float64 reference and rounds its results to the case dtype."""

    name = "reference"

    def capabilities(self) -> Capabilities:
        return Capabilities(devices=("numpy",))

    def run(self, spec: LayerSpec, case: Case) -> Result:
        result = spec.reference(case, bool(case.cotangents))
        if spec.torch.mutates_input(case):
            result.outputs["mutated_input"] = result.outputs["output"]
        fmt = DTYPES[case.dtype]
        rounded = Result(meta={"device": "numpy"})
        for group in ("outputs", "grads", "state"):
            for name, arr in getattr(result, group).items():
                arr = np.asarray(arr)
                is_int = arr.dtype.kind in "iub"
                getattr(rounded, group)[name] = arr if is_int else fmt.round(arr)
                qualified = name if group == "outputs" else f"{group[:-1] if group == 'grads' else group}.{name}"
                rounded.dtypes[qualified] = "int64" if is_int else case.dtype
        return rounded
