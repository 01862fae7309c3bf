"""nnconform: conformance test-suite and differential fuzzer for torch.nn layers and losses."""

__version__ = "0.1.0"
