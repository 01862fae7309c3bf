"""The torch adapter: ``torch-cpu`` and ``torch-cuda`` (the same code on two devices).

Each case is executed the way a user would call it, by the call interpreter
(``backends.torch_call``) that the repro scripts also carry: build the module or resolve the
function from the case's call tree, install the case's parameters and buffers, give every input
its memory layout, call, then ``torch.autograd.backward`` with the case's cotangents, and read
back outputs, gradients, mutated tensors and random choices. On CUDA, TF32 and reduced-precision
reductions are switched off for the whole run and every call is synchronised so that errors
surface in the case that caused them.
"""

from __future__ import annotations

from typing import Any

from backends.base import DTYPE_NAMES, MODES, Backend, Capabilities, Case, Result
from backends.torch_run import run_call


def _torch() -> Any:
    import torch

    return torch


def _release() -> tuple[str, ...]:
    """torch's release without its local build tag (``2.11.0`` for ``2.11.0+cu130``), or none when
    torch cannot be imported."""
    try:
        return (str(_torch().__version__).split("+")[0],)
    except Exception:
        return ()


def _absent(exc: BaseException) -> bool:
    """Whether ``exc`` says that this torch release or device offers no such API or kernel: a
    constructor argument or an attribute of ``torch`` that a newer release added (the catalogue
    follows the newest documentation), or no kernel for a forced attention backend (flash
    attention on CUDA in float32). Such a case is unsupported, never a discrepancy."""
    message = str(exc)
    if isinstance(exc, TypeError):
        return "__init__() got an unexpected keyword argument" in message
    if isinstance(exc, AttributeError):
        return message.startswith("module 'torch")
    return message.startswith("No available kernel")


class TorchBackend(Backend):
    """torch.nn on one device (``cpu`` or ``cuda``).

    A subclass (an adapter for a torch-like framework, or a deliberately wrong one in the tests)
    names itself with a ``name`` class attribute (default ``torch-<device>``) and may replace how
    modules are built (``build_module``) or targets called (``call_target``).
    """

    name = ""

    def __init__(self, device: str = "cpu"):
        self._device = device
        self.name = type(self).name or f"torch-{device}"
        # A renamed subclass still runs torch: torch's recorded discrepancies apply to it too. It is
        # also known by its name at torch's release (``torch-cuda@2.11.0``), so that an entry can
        # cover one release (``backend = "torch-cuda@2.11*"``).
        plain = () if self.name == f"torch-{device}" else (f"torch-{device}",)
        self.known_as = plain + tuple(f"{name}@{release}" for name in (self.name, *plain) for release in _release())

    def capabilities(self) -> Capabilities:
        return Capabilities(devices=(self._device,), dtypes=DTYPE_NAMES, modes=MODES, accumulates=True)

    def availability(self) -> tuple[bool, str]:
        try:
            torch = _torch()
        except Exception as exc:  # torch missing or broken
            return False, f"torch cannot be imported: {exc}"
        if self._device == "cuda":
            if torch.version.cuda is None:
                return False, f"torch {torch.__version__} is a CPU-only build (no CUDA support compiled in)"
            if not torch.cuda.is_available():
                return False, f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device"
        return True, ""

    def versions(self) -> dict[str, str]:
        torch = _torch()
        info = {"torch": torch.__version__}
        if self._device == "cuda" and torch.cuda.is_available():
            info["cuda"] = str(torch.version.cuda)
            info["gpu"] = torch.cuda.get_device_name(0)
            info["cudnn"] = str(torch.backends.cudnn.version())
        return info

    def prepare(self) -> None:
        """Switch off reduced-precision shortcuts that would make results non-conforming by design."""
        torch = _torch()
        if self._device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
            torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False

    # -- hooks for subclasses (deliberately wrong adapters in the tests override these) ---------
    def build_module(self, case: Case, cls: Any, kwargs: dict[str, Any]) -> Any:
        """The module under test, before its parameters and buffers are installed."""
        return cls(**kwargs)

    def call_target(self, case: Case, fn: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Call the built module (or the target function)."""
        return fn(*args, **kwargs)

    # -- execution -------------------------------------------------------------------------------
    def run(self, case: Case) -> Result:
        if case.call is None:
            raise ValueError(f"case of {case.target} carries no call description")
        self.prepare()
        try:
            tensors = run_call(
                case.call, case.inputs, dtype=case.dtype, device=self._device,
                types={n: case.input_type(n) for n in case.inputs},
                layouts={n: case.layout(n).describe() for n in case.inputs},
                requires_grad=case.differentiable, cotangents=case.cotangents,
                build=lambda cls, kwargs: self.build_module(case, cls, kwargs),
                invoke=lambda fn, args, kwargs: self.call_target(case, fn, args, kwargs),
                synchronise=self._synchronise)
        except (TypeError, AttributeError, RuntimeError) as exc:
            if _absent(exc):
                raise NotImplementedError(f"torch {_torch().__version__} on {self._device}: "
                                          f"{type(exc).__name__}: {exc}") from exc
            raise
        return Result.from_tensors(tensors, meta={"device": self._device})

    def _synchronise(self) -> None:
        if self._device == "cuda":
            _torch().cuda.synchronize()
