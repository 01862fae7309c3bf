"""Deliberately wrong adapters for the harness' own tests (not tied to one family)."""

from __future__ import annotations

import torch

from backends.base import Backend
from backends.torch_backend import TorchBackend


class ReplacesModule(TorchBackend):
    """The torch adapter with the module of one entry (``op``) replaced by ``module``: a mistake
    in that one kernel. ``module`` is built from the entry's constructor arguments."""

    op = ""
    module: type = torch.nn.Identity

    def build_module(self, case, cls, kwargs):
        # Only the entry's own module: a nested module of its call (a transformer's activation) is
        # built as usual.
        base = getattr(cls, "func", cls)  # functools.partial for positional constructor arguments
        if case.op == self.op and isinstance(base, type) and issubclass(self.module, base):
            return self.module(**kwargs)
        return super().build_module(case, cls, kwargs)


class _ReluWithUnitSlopeAtZero(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x >= 0).to(g.dtype)  # wrong: ReLU'(0) must be 0


class _WrongKinkReLU(torch.nn.ReLU):
    def forward(self, x):
        return _ReluWithUnitSlopeAtZero.apply(x)


class ReluGradAtZero(TorchBackend):
    """ReLU whose derivative at 0 is 1: only visible where the input is exactly 0."""

    name = "wrong-relu-kink"

    def build_module(self, case, cls, kwargs):
        if case.op == "ReLU" and not kwargs.get("inplace"):  # (in place it is torch's own ReLU)
            return _WrongKinkReLU()
        return super().build_module(case, cls, kwargs)


class Raises(Backend):
    """A backend whose every call raises: must be recorded as 'error', and the run goes on."""

    name = "always-raises"

    def run(self, case):
        raise RuntimeError("kernel exploded")


class NeverCompiles(Backend):
    """A compiler that fails on every call: the 'compile' verdict, never a pass."""

    name = "never-compiles"

    def run(self, case):
        from backends.base import CompileFailure

        raise CompileFailure("compiler error: no lowering for anything")


class ClaimsNothing(TorchBackend):
    """Implements no layer at all: everything must be reported unsupported, never passed."""

    name = "claims-nothing"

    def capabilities(self):
        from backends.base import Capabilities

        return Capabilities(ops=frozenset())


class Segfaults(TorchBackend):
    """Kills its own process on every Linear call: the run must record a crash and go on."""

    name = "segfaults"

    def run(self, case):
        if case.op == "Linear":
            import os
            import signal

            os.kill(os.getpid(), signal.SIGSEGV)
        return super().run(case)


class AbortsWithMessage(TorchBackend):
    """Writes a native-style message to stderr and aborts on Linear, as heap corruption does."""

    name = "aborts"

    def run(self, case):
        if case.op == "Linear":
            import os

            os.write(2, b"free(): invalid next size (fast)\n")
            os.abort()
        return super().run(case)


class Hangs(TorchBackend):
    """Never answers on ReLU: the run must record a timeout and go on."""

    name = "hangs"

    def run(self, case):
        if case.op == "ReLU":
            import time

            time.sleep(3600)
        return super().run(case)


class ConstructorRaises(Backend):
    """A backend that cannot even be built: unavailable with the reason, never a traceback."""

    name = "constructor-raises"

    def __init__(self):
        raise RuntimeError("no device found")


class HostileName(TorchBackend):
    """torch-cpu under a name holding rich markup, a terminal escape and a triple quote with a
    newline: every report must show it as text, and a repro script must carry it as data."""

    name = '[/bold]torch\x1b[31m"""\nimport os; os.system("echo pwned")\n"""'
    known_as = ("torch-cpu",)


class ErrorWithEscapes(TorchBackend):
    """Raises on every ReLU call with a message full of ANSI colour codes and control
    characters, as compiler messages often have."""

    name = "error-with-escapes"

    def run(self, case):
        if case.op == "ReLU":
            raise RuntimeError("\x1b[1;31merror:\x1b[0m kernel \x00\x07\x08 failed\x1b]0;title\x07 <&>")
        return super().run(case)
