"""Family templates: a declaration of a common shape as a few lines of data (docs/ARCHITECTURE.md).

One module per family; each exposes functions that take the entry's data (its reference, parameter
space, kinks, error analysis, torch mapping) and return a ``LayerSpec`` for ``declare``.
"""
