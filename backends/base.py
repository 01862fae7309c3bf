"""The adapter contract every backend implements."""

from __future__ import annotations

from dataclasses import dataclass, field

from conformance.case import Case, Result
from conformance.dtypes import DTYPE_NAMES
from conformance.spec import LayerSpec


@dataclass(frozen=True)
class Capabilities:
    """What a backend claims to implement, as data.

    ``ops`` lists the layer names it implements (None: every declared layer). A layer or dtype
    outside its capabilities is reported as *unsupported*, never as passed.
    """

    devices: tuple[str, ...] = ("cpu",)
    dtypes: tuple[str, ...] = DTYPE_NAMES
    ops: frozenset[str] | None = None
    notes: dict[str, str] = field(default_factory=dict)


class Backend:
    """Base class of adapters. Subclasses set ``name`` and implement ``run``.

    ``run(spec, case)`` executes ``case`` (a layer call described in torch.nn terms: ``spec.name``
    is the torch.nn class, ``case.params`` its constructor arguments, ``case.inputs`` the named
    arrays with their ``case.layouts``) and returns a ``Result``: every output named as in
    ``spec.torch.outputs``, the gradient of every name in ``case.differentiable`` for the output
    cotangents ``case.cotangents``, and the state buffers named in ``spec.torch.state``. Arrays
    are returned as NumPy (float64 for floating results), with the dtype each tensor had on the
    backend in ``Result.dtypes``. For a case with ``case.invalid`` set, the backend must raise.
    """

    name: str = "backend"

    def capabilities(self) -> Capabilities:
        return Capabilities()

    def availability(self) -> tuple[bool, str]:
        """(available, reason); the reason is shown when unavailable."""
        return True, ""

    def supports(self, spec: LayerSpec, dtype: str) -> tuple[bool, str]:
        caps = self.capabilities()
        if caps.ops is not None and spec.name not in caps.ops:
            return False, f"{self.name} does not implement {spec.name}"
        if dtype not in caps.dtypes:
            return False, f"{self.name} does not support {dtype}"
        if dtype not in spec.dtypes:
            return False, f"{spec.name} is not declared for {dtype}"
        return True, ""

    def device(self) -> str:
        return self.capabilities().devices[0]

    def versions(self) -> dict[str, str]:
        return {}

    def run(self, spec: LayerSpec, case: Case) -> Result:  # pragma: no cover - interface
        raise NotImplementedError
