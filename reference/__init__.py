"""Pure-NumPy float64 reference implementations: forward and analytic VJP of every layer.

This package never imports torch (tests/test_reference_isolation.py enforces it). Modules are
organised by family; each public function documents its math and its shape contract.
"""
