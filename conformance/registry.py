"""Finding backends by name: built-ins, ``module:Class`` specs and the ``nnconform.backends``
entry-point group."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from importlib import metadata

from backends.base import Backend

ENTRY_POINT_GROUP = "nnconform.backends"


def _builtin() -> dict[str, Callable[[], Backend]]:
    from backends.torch_backend import TorchBackend
    from conformance.reference_backend import ReferenceBackend

    return {
        "torch-cpu": lambda: TorchBackend("cpu"),
        "torch-cuda": lambda: TorchBackend("cuda"),
        "torch-compile": lambda: _torch_compile("torch-compile"),
        "torch-compile-cuda": lambda: _torch_compile("torch-compile-cuda"),
        "onnxruntime": lambda: _onnxruntime("onnxruntime"),
        "reference": ReferenceBackend,
    }


def _torch_compile(spec: str) -> Backend:
    """``torch-compile[-cuda][:<compiler>[:<mode>]]``: torch.nn through torch.compile."""
    from backends.torch_compile import TorchCompileBackend

    return TorchCompileBackend.from_spec(spec)


def _onnxruntime(spec: str) -> Backend:
    """``onnxruntime[:dynamo|torchscript][:opset=<N>]``: torch.onnx.export, then ONNX Runtime (CPU)."""
    from backends.onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend.from_spec(spec)


_WITH_OPTIONS = {"torch-compile": _torch_compile, "torch-compile-cuda": _torch_compile, "onnxruntime": _onnxruntime}


def _builtin_with_options(spec: str) -> Backend | None:
    """A built-in backend named with options (``torch-compile:aot_eager``, ``onnxruntime:torchscript``),
    or None."""
    base, sep, _ = spec.partition(":")
    if sep and base in _WITH_OPTIONS:
        try:
            return _WITH_OPTIONS[base](spec)
        except ValueError as exc:
            raise BackendNotFound(str(exc)) from None
    return None


def _entry_points() -> dict[str, metadata.EntryPoint]:
    try:
        return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    except Exception:  # pragma: no cover - broken metadata must not break the built-ins
        return {}


def known_backends() -> list[str]:
    """Names usable with ``--backend`` (module:Class specs aside)."""
    return list(_builtin()) + sorted(set(_entry_points()) - set(_builtin()))


class BackendNotFound(LookupError):
    """Raised with a one-line message for an unknown or unloadable backend."""


def load_backend(spec: str) -> Backend:
    """A backend from a built-in name (``torch-compile`` also as ``torch-compile:<compiler>[:<mode>]``,
    ``onnxruntime`` as ``onnxruntime[:<exporter>][:opset=<N>]``), an entry-point name or ``module:Class``."""
    builtin = _builtin()
    if spec in builtin:
        return builtin[spec]()
    with_options = _builtin_with_options(spec)
    if with_options is not None:
        return with_options
    eps = _entry_points()
    if spec in eps:
        return _instantiate(eps[spec].load(), spec)
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        _importable_from_cwd()
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise BackendNotFound(f"cannot import backend module {module_name!r}: {exc}") from None
        try:
            obj = getattr(module, attr)
        except AttributeError:
            raise BackendNotFound(f"module {module_name!r} has no attribute {attr!r}") from None
        return _instantiate(obj, spec)
    raise BackendNotFound(f"unknown backend {spec!r} (known: {', '.join(known_backends())}; or module:Class)")


def _instantiate(obj: object, spec: str) -> Backend:
    backend = obj() if isinstance(obj, type) or callable(obj) and not isinstance(obj, Backend) else obj
    if not isinstance(backend, Backend) and not hasattr(backend, "run"):
        raise BackendNotFound(f"{spec!r} is not a backend (it has no run method)")
    if not getattr(backend, "name", None):
        backend.name = spec
    return backend  # type: ignore[return-value]


def _importable_from_cwd() -> None:
    """Let ``module:Class`` find modules in the current directory, as ``python -m`` and pytest do."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
