"""The NumPy reference as a backend: validates the suite end to end (it must always conform)."""

from __future__ import annotations

import numpy as np

from backends.base import RESULT_GROUPS, Backend, Capabilities, Case, Result
from backends.torch_call import initial_grad
from conformance.dtypes import DTYPES


class ReferenceBackend(Backend):
    """Runs each declaration's float64 reference and rounds its results to the case dtype.

    For a stochastic entry it makes the random choices itself (``Randomness.sample``) and reports
    them, as any backend must. It models ``.grad``: a case that presets it (``call["grad_init"]``)
    gets each gradient rounded, added to the preset value and rounded again, as an accumulating
    framework does.
    """

    name = "reference"

    def capabilities(self) -> Capabilities:
        return Capabilities(devices=("numpy",), accumulates=True)

    def run(self, case: Case) -> Result:
        from conformance.spec import spec_of

        spec = spec_of(case)
        if spec.randomness is not None and case.call and case.call.get("random"):
            rng = np.random.default_rng((case.call.get("seed") or 0) + 1)
            case = spec.randomness.with_choices(case, spec.randomness.sample(case, rng))
        result = spec.evaluate(case, case.cotangents)
        fmt = DTYPES[case.dtype]
        reports_choices = bool(case.call and case.call.get("random"))
        rounded = Result(meta={"device": "numpy"})
        for group, prefix in RESULT_GROUPS:
            if group == "choices" and not reports_choices:
                continue
            source = case.choices if group == "choices" else getattr(result, group)
            for name, arr in source.items():
                arr = np.asarray(arr)
                kind = arr.dtype.kind
                getattr(rounded, group)[name] = fmt.round(arr) if kind == "f" else arr
                rounded.dtypes[prefix + name] = case.dtype if kind == "f" else "bool" if kind == "b" else "int64"
        grad_init = (case.call or {}).get("grad_init")
        if grad_init:
            for name, grad in rounded.grads.items():
                if name in grad_init["scale"] and np.asarray(grad).dtype.kind == "f":
                    rounded.grads[name] = fmt.round(grad + initial_grad(grad_init, name, np.shape(grad)))
        return rounded
