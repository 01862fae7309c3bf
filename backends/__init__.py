"""Adapters for the systems under test, and the contract they implement (``backends.base``).

Built in: ``torch-cpu`` and ``torch-cuda`` (one adapter, two devices), both running calls through
the call interpreter ``backends.torch_call``. Third-party adapters are loaded as ``module:Class``
on the command line or registered under the entry-point group ``nnconform.backends``; see
``base.Backend``. This package imports nothing of nnconform beyond ``backends.base``.
"""

from backends.base import Backend, Capabilities, Case, Result

__all__ = ["Backend", "Capabilities", "Case", "Result"]
