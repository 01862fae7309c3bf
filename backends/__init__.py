"""Adapters for the systems under test.

Built in: ``torch-cpu``, ``torch-cuda`` (one adapter, two devices) and ``reference`` (the NumPy
oracle itself, to validate the suite). Third-party adapters are loaded as ``module:Class`` on the
command line or registered under the entry-point group ``nnconform.backends``; see ``base.Backend``.
"""

from backends.base import Backend, Capabilities

__all__ = ["Backend", "Capabilities"]
