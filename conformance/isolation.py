"""Process isolation: a backend that crashes or hangs is a result, not the end of the run.

``IsolatedBackend`` runs another backend in a worker process and talks to it over a pipe. A
worker that dies (segfault, abort, out of memory) raises ``BackendCrash``; one that does not
answer within the timeout is killed and raises ``BackendTimeout``; either way the next case gets
a fresh worker. Workers are forked from a forkserver that has torch and the layer declarations
preloaded, so a restart costs milliseconds rather than an interpreter start. A worker's stderr
goes to a file of its own (glibc's fatal messages too), whose last lines a crash record quotes
("double free or corruption", a failed assertion) instead of them scrolling past in the terminal.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import tempfile
import warnings
from typing import Any

from backends.base import Backend, BackendCrash, BackendRaised, BackendTimeout, Capabilities, Case, Result

PRELOAD = ["conformance.forkserver_watch", "numpy", "torch", "conformance.specs", "conformance.registry"]
STARTUP_TIMEOUT = 120.0  # seconds a fresh worker may take to come up (imports, a loaded machine)
STDERR_TAIL = 400  # characters of a dead worker's stderr quoted in the crash message


def die_with(owner: int) -> None:
    """Make this child process die when process ``owner`` dies, whatever killed it (SIGKILL
    too), and ignore Ctrl-C (the owner stops its children itself). SIGTERM keeps its default (a
    forkserver ignores it, and its children inherit that): multiprocessing stops workers with it.

    The direct parent of a forkserver's child is the forkserver, which lives as long as any of its
    children does, so PR_SET_PDEATHSIG alone would keep both alive: a daemon thread waits on the
    owner instead (a pidfd where the kernel has them, else polling every 0.2 s) and exits the
    process when the owner is gone."""
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def alive() -> bool:
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # pragma: no cover - someone else's process took the pid
            return False
        return True

    def watch() -> None:
        try:
            import select

            fd = os.pidfd_open(owner)
            select.select([fd], [], [])
        except (AttributeError, OSError):  # no pidfd: poll
            import time

            while alive():
                time.sleep(0.2)
        os._exit(1)

    if not alive():
        os._exit(1)
    threading.Thread(target=watch, name="nnconform-owner-watch", daemon=True).start()


def _serve(conn: Any, backend_spec: str, threads: int | None = None, stderr_path: str | None = None,
           owner: int | None = None) -> None:
    """Worker loop: load the backend by name, then answer case requests until told to stop.
    ``threads`` caps torch's intra-op threads (parallel jobs share the cores); ``stderr_path``
    receives the process's stderr (file descriptor 2, so native code's messages too); the worker
    dies with process ``owner`` (the one that started it)."""
    import numpy as np

    if owner is not None:
        die_with(owner)

    if stderr_path:
        os.environ["LIBC_FATAL_STDERR_"] = "1"  # glibc's fatal messages to stderr, not the terminal
        with open(stderr_path, "ab", buffering=0) as sink:
            os.dup2(sink.fileno(), 2)
        os.unlink(stderr_path)  # the parent holds it open: nothing is left in the temp dir

    from conformance.registry import load_backend

    if threads:
        import torch

        torch.set_num_threads(threads)

    backend = load_backend(backend_spec)
    conn.send("ready")  # the per-case time limit starts after the worker is up
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                answer = ("ok", backend.run(message))
        except BaseException as exc:  # report everything the backend raises, as text
            text = f"{type(exc).__name__}: {exc}"
            if corrupts_device(text):  # the device is unusable from here on: this worker is done
                conn.send(("crash", text.splitlines()[0]))
                return
            answer = ("raise", text)
        conn.send(answer)


def corrupts_device(error: str) -> bool:
    """An error after which the process's device context is unusable (a CUDA device-side assert,
    an illegal memory access): recorded as a crash, and the worker is replaced."""
    return any(marker in error for marker in ("device-side assert", "illegal memory access", "CUDA error: an illegal",
                                               "unspecified launch failure"))


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "no exit status"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class IsolatedBackend(Backend):
    """Wraps a backend (loaded by ``backend_spec`` in the worker) with crash and hang isolation."""

    def __init__(self, backend_spec: str, inner: Backend, timeout: float = 120.0, threads: int | None = None):
        self.inner = inner
        self.name = inner.name
        self.known_as = inner.known_as
        self.backend_spec = backend_spec
        self.timeout = timeout
        self.threads = threads
        self._process: Any = None
        self._conn: Any = None
        self._stderr: Any = None  # the worker's stderr file, opened for reading (unlinked by the worker)
        self._stderr_path = ""
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(PRELOAD)
        self._busy = False  # a case is in flight (closing then kills the worker at once)

    # capabilities are the wrapped backend's
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities()

    def availability(self) -> tuple[bool, str]:
        return self.inner.availability()

    def supports(self, op: str, target: str, dtype: str) -> tuple[bool, str]:
        return self.inner.supports(op, target, dtype)

    def device(self) -> str:
        return self.inner.device()

    def versions(self) -> dict[str, str]:
        return self.inner.versions()

    def _start(self) -> None:
        parent, child = self._context.Pipe()
        handle, self._stderr_path = tempfile.mkstemp(prefix="nnconform-worker-", suffix=".stderr")
        self._stderr = os.fdopen(handle, "rb")
        process = self._context.Process(target=_serve, daemon=True, name=f"nnconform-{self.name}",
                                        args=(child, self.backend_spec, self.threads, self._stderr_path, os.getpid()))
        process.start()
        child.close()
        self._process, self._conn = process, parent
        # Starting a worker (fork, imports, loading the backend) is not part of any case's time.
        if not parent.poll(max(STARTUP_TIMEOUT, self.timeout)):
            self._discard()
            raise BackendTimeout(f"{self.name} worker did not start within {max(STARTUP_TIMEOUT, self.timeout):g} s")
        try:
            parent.recv()
        except (EOFError, OSError) as exc:
            reason = _describe_exit(process.exitcode) + self._stderr_tail()
            self._discard()
            raise BackendCrash(f"{self.name} worker died while starting: {reason}") from exc

    def _discard(self) -> None:
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join(5)
        if self._conn is not None:
            self._conn.close()
        if self._stderr is not None:
            self._stderr.close()
            try:
                os.unlink(self._stderr_path)  # a worker that died before unlinking it
            except OSError:
                pass
        self._process = self._conn = self._stderr = None

    def _stderr_tail(self) -> str:
        """The last lines the worker wrote to stderr, as a suffix for a crash message ('' if none)."""
        if self._stderr is None:
            return ""
        try:
            size = os.fstat(self._stderr.fileno()).st_size
            self._stderr.seek(max(0, size - STDERR_TAIL))
            text = self._stderr.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""
        return f"; stderr: {' | '.join(line.strip() for line in text.splitlines() if line.strip())}" if text else ""

    def run(self, case: Case) -> Result:
        if self._process is None or not self._process.is_alive():
            self._discard()
            self._start()
        self._busy = True
        try:
            self._conn.send(case)
            if not self._conn.poll(self.timeout):
                self._discard()
                raise BackendTimeout(f"{self.name} gave no answer within {self.timeout:g} s (worker killed)")
            status, payload = self._conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError, OSError) as exc:
            process = self._process
            if process is not None:
                process.join(5)
            reason = _describe_exit(process.exitcode if process is not None else None) + self._stderr_tail()
            self._discard()
            raise BackendCrash(f"{self.name} worker died: {reason}") from exc
        finally:
            self._busy = False
        if status == "raise":
            raise BackendRaised(payload)
        if status == "crash":
            self._discard()
            raise BackendCrash(f"{self.name}: {payload} (the device context is lost; worker replaced)")
        return payload

    def reset(self) -> None:
        """Drop the worker (the next case starts a fresh one)."""
        self._discard()

    def close(self) -> None:
        """Stop the worker: politely when idle, at once when a case was interrupted mid-flight."""
        if self._busy:
            self._discard()
            return
        if self._conn is not None and self._process is not None and self._process.is_alive():
            try:
                self._conn.send(None)
                self._process.join(5)
            except OSError:
                pass
        self._discard()
