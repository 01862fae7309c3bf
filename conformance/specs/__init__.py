"""Layer declarations, one module per family. Importing this package registers them all."""

from conformance.specs import activation, conv, linear, loss, normalization, pooling  # noqa: F401
