"""The torch.compile adapter: ``torch-compile[:<compiler>[:<mode>]][:cache=<DIR>]`` (CPU), ``torch-compile-cuda[...]``.

A case runs exactly as on ``torch-cpu`` (the call interpreter builds the module, installs its
parameters and buffers, lays out the inputs, calls, runs the backward pass with the case's
cotangents), except that the call goes through ``torch.compile``: the module or function is passed
to a compiled trampoline, so dynamo captures its forward as one graph (``fullgraph=True``),
AOTAutograd derives the backward graph, and the compiler (``inductor`` by default; ``aot_eager``
captures and decomposes but runs eager kernels, which separates capture from code generation)
builds both. The result is judged against the reference like any other backend's, never against
eager torch.

Compilation costs seconds per graph, so a compiled trampoline is kept for every *call signature*
(entry, callee, dtype, call tree without its seed, input layouts, ranks and which sizes are 0 or 1,
differentiable inputs) and reused by every later case of that signature in the worker, not only the
next one: a target's random cases, regimes and Hypothesis' replays and shrinking steps come back to
the same few signatures. The trampolines live in an LRU of ``LIVE_SIGNATURES``; each has its own
code object, and dynamo keeps its graphs, guards and recompile count per code object, so a
compilation for one signature never sees another's graphs. After ``RESET_AFTER`` compilations
``torch._dynamo.reset()`` drops every graph and dynamo's process state, which bounds memory over a
whole-catalogue run. A graph a signature compiled serves the signature's later cases as long as
dynamo's guards accept them (a guard that fails compiles another graph for the same trampoline, up
to the recompile limit), so which cases share a graph is decided by dynamo's own guards, never by
nnconform.

Inductor's on-disk caches (the FX graph cache: generated code and compiled kernels; the AOTAutograd
cache: forward and backward graphs) make compiling a graph seen before, in this run or an earlier
one, cheap. They live in ``cache=<DIR>`` (or the directory named by ``NNCONFORM_COMPILE_CACHE``;
default: inductor's, ``TORCHINDUCTOR_CACHE_DIR`` or a directory under the system's temporary
directory): point it at a directory CI keeps between runs. The caches are keyed by the graph, the
compiler's configuration and torch's version, so a hit returns exactly what compiling would have.
Each case runs either a static-shape graph or a dynamic-shape one, decided by the case itself
(``graph_kind``: the parity of its id):

- *static*: ``dynamic=False``, the signature plus the exact sizes (inductor specialises loops,
  vectorisation and tails to the sizes: the code a fixed-shape model gets);
- *dynamic*: ``dynamic=True`` with every size its own symbol (no duck sizing, so an incidental
  equality of two sizes adds no guard): one graph serves every size of the signature, which is
  where compiled graphs get reused and where symbolic-size code is tested.

Each trampoline has its own code object, so dynamo's per-code cache and its recompile limit apply
per signature.

Dynamo is configured deliberately (``configure``): ``fullgraph=True`` (a graph break is an error,
not a silent split with eager code in between), ``recompile_limit`` = 8 per signature with
``fail_on_recompile_limit_hit`` (the limit raises instead of silently running eager code),
``suppress_errors`` off (a compiler error never falls back to eager), no duck sizing and no
profile-guided dynamic state carried between processes (runs stay reproducible), and one inductor
compile thread: no pool of compile-worker processes inside each isolated worker (a run's
parallelism is ``-j``, one worker per target in flight, which already occupies the cores). Dynamo's
latency measurement of each new guard set (a CPU-cache flush per compiled graph, for its metrics
only) is skipped (``skip_guard_latency_profile``): about a quarter of a warm-cache compilation. When a
case's random choices are replayed after a seed (rules ``rand`` and ``bernoulli``: a layer's uniform
samples, sdpa's dropout keep masks), inductor uses eager's random number generation
(``fallback_random``) so that the replay sees the same samples (the rules are part of the call, so
of the signature: such a graph is never shared with one compiled without it); dropout masks that
reach an output (rule ``nonzero``) come from inductor's own generator and are judged statistically.

A call the compiler cannot compile raises ``CompileFailure`` (verdict ``compile``, never a pass and
never a wrong value), whose message starts with the kind: ``graph break`` (dynamo cannot capture
the call as one graph), ``recompile limit`` (the signature needed more than 8 graphs) or
``compiler error`` (dynamo, AOTAutograd or the backend compiler failed, forward or backward, with
one of their errors, or with an AssertionError raised while compiling: an internal invariant, which
escapes unwrapped from the backward compiler that AOTAutograd calls at the first backward pass). An
exception the traced program itself raises — one dynamo observed while tracing, or an argument
check failing on fake tensors (a TorchRuntimeError, or a plain NotImplementedError that dynamo
reports as unsupported; not a missing fake or meta kernel) — is the call's own error and is raised as such, and so is an
AssertionError raised while a compiled graph runs (inductor's generated code checks the sizes and
strides kernels return: a wrong value of the compiled program, not a failure to compile).

Known discrepancies: a compiled backend is matched by its own name only (``known_as`` is empty,
unlike the renamed ``TorchBackend`` subclasses that inherit ``torch-<device>``'s entries). Compiled
torch does not necessarily share eager torch's bugs (decompositions and generated kernels replace
many eager kernels; others are called as they are), so an eager entry applies to it only where it
says so: entries for ``torch-*`` (bugs of torch itself) and ``torch-compile*`` (compilation) match
its names, ``torch-cpu`` entries do not. A subclass that should inherit another backend's entries
declares it as a class attribute (``known_as = ("torch-compile",)`` for a compiler plugged into
dynamo under a name of its own).
"""

from __future__ import annotations

import dataclasses
import glob
import itertools
import logging
import operator
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
import types
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from backends.base import COMPILED, DTYPE_NAMES, Capabilities, Case, CompileFailure, Result
from backends.torch_backend import TorchBackend

DEFAULT_COMPILER = "inductor"
RECOMPILE_LIMIT = 8
LIVE_SIGNATURES = 64  # compiled trampolines kept per worker (LRU)
RESET_AFTER = 256  # compilations after which dynamo is reset (memory stays bounded)
CACHE_ENV = "NNCONFORM_COMPILE_CACHE"
MESSAGE_LIMIT = 2000
STALE_BUILD_S = 600.0  # a kernel build directory this old belongs to no running build
BASE_NAMES = {"cpu": "torch-compile", "cuda": "torch-compile-cuda"}


def _torch() -> Any:
    import torch

    return torch


def parse_spec(spec: str) -> tuple[str, str, str | None]:
    """(device, compiler, mode) of ``torch-compile[-cuda][:<compiler>[:<mode>]][:<option>=<value>]``;
    ValueError otherwise (options: ``spec_options``)."""
    base, _, rest = spec.partition(":")
    device = next((d for d, name in BASE_NAMES.items() if name == base), None)
    if device is None:
        raise ValueError(f"not a torch-compile backend name: {spec!r}")
    positional = [part for part in rest.split(":") if "=" not in part] if rest else []
    if len(positional) > 2:
        raise ValueError(f"{spec!r}: expected {base}[:<compiler>[:<mode>]][:cache=<DIR>]")
    compiler = positional[0] if positional else ""
    mode = positional[1] if len(positional) > 1 else ""
    spec_options(spec)
    return device, compiler or DEFAULT_COMPILER, mode or None


def spec_options(spec: str) -> dict[str, str]:
    """The ``<option>=<value>`` parts of a torch-compile backend name (``cache``: the compile-cache
    directory); ValueError for an unknown option."""
    options = dict(part.split("=", 1) for part in spec.split(":")[1:] if "=" in part)
    unknown = sorted(set(options) - {"cache"})
    if unknown:
        raise ValueError(f"{spec!r}: unknown option {', '.join(unknown)} (known: cache=<DIR>)")
    return options


def _set(config: Any, name: str, value: Any, *older_names: str) -> bool:
    """Set a torch config option, under its older name on older torch; False when it has none."""
    for key in (name, *older_names):
        if hasattr(config, key):
            setattr(config, key, value)
            return True
    return False


def configure(cache_dir: str | None = None) -> dict[str, bool]:
    """The dynamo and inductor settings every compiled case runs under (see the module docstring), and
    the compile caches in ``cache_dir`` when given. Returns which of them this torch has (an older
    torch may lack the hard recompile limit)."""
    if cache_dir:  # read by inductor whenever it opens its caches (before the first compilation)
        os.makedirs(cache_dir, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.abspath(cache_dir)
    import torch._dynamo.config as dynamo_config

    applied = {
        "recompile_limit": _set(dynamo_config, "recompile_limit", RECOMPILE_LIMIT, "cache_size_limit"),
        "fail_on_recompile_limit_hit": _set(dynamo_config, "fail_on_recompile_limit_hit", True),
        "suppress_errors": _set(dynamo_config, "suppress_errors", False),
        "no_local_pgo": _set(dynamo_config, "automatic_dynamic_local_pgo", False),
        "no_remote_pgo": _set(dynamo_config, "automatic_dynamic_remote_pgo", False),
    }
    try:
        import torch.fx.experimental._config as fx_config

        applied["no_duck_shape"] = _set(fx_config, "use_duck_shape", False)
    except Exception:  # pragma: no cover - older torch
        applied["no_duck_shape"] = False
    # Fake-tensor propagation logs a traceback for every argument check that fails (each invalid
    # case); the exception itself is what gets recorded.
    logging.getLogger("torch._subclasses.fake_tensor").setLevel(logging.CRITICAL)
    try:
        import torch._inductor.config as inductor_config
    except Exception:  # pragma: no cover - a torch without inductor: the availability check says so
        return applied
    applied["compile_threads"] = _set(inductor_config, "compile_threads", 1)
    applied["fx_graph_cache"] = _set(inductor_config, "fx_graph_cache", True)
    try:
        import torch._functorch.config as functorch_config

        applied["autograd_cache"] = _set(functorch_config, "enable_autograd_cache", True)
    except Exception:  # pragma: no cover - older torch
        applied["autograd_cache"] = False
    applied["no_guard_latency_profile"] = skip_guard_latency_profile()
    drop_interrupted_builds(cache_directory())
    return applied


def _no_guard_latency(*args: Any, **kwargs: Any) -> float:
    """What ``skip_guard_latency_profile`` puts in place of dynamo's guard latency profile: 0 µs."""
    return 0.0


def skip_guard_latency_profile() -> bool:
    """Dynamo times every guard set it builds once, after flushing the CPU caches
    (``torch._dynamo.guards.profile_guard_manager``), for its compile metrics only: nothing reads the
    latency back. The flush costs about 75 ms per compiled graph on a 2-core CI machine, a quarter of a
    compilation served by warm caches, so the adapter replaces the measurement with 0. Guards are built
    and checked as before. False where this torch has no such function."""
    try:
        import torch._dynamo.guards as guards
    except Exception:  # pragma: no cover - a torch without dynamo: the availability check says so
        return False
    if not callable(getattr(guards, "profile_guard_manager", None)):
        return False
    guards.profile_guard_manager = _no_guard_latency
    return True


def drop_interrupted_builds(directory: str, stale_after: float = STALE_BUILD_S) -> list[str]:
    """Remove what a kernel build killed half-way left in inductor's cache ``directory``; return the
    shared objects removed.

    Inductor links a CPU kernel straight to its cache path (``<key>.so``), working in a
    ``<key>_CxxBuild`` directory it deletes once the build succeeds, and builds only a path that does
    not exist yet. A build killed in between (a CI job's time limit, an interrupted run, a worker
    killed on a hung case) leaves a truncated ``.so`` that every later process loads as finished
    (``ImportError: ... file too short``, a compile failure of the cache, not of the compiler). A
    build directory older than ``stale_after`` seconds belongs to no running build: it goes, and its
    shared object with it, so the kernel is built again."""
    removed = []
    now = time.time()
    for build in glob.glob(os.path.join(glob.escape(directory), "*", "*_CxxBuild")):
        try:
            if now - os.stat(build).st_mtime < stale_after:
                continue
            target = build[:-len("_CxxBuild")] + ".so"
            if os.path.exists(target):
                os.remove(target)
                removed.append(target)
        except OSError:
            continue
        shutil.rmtree(build, ignore_errors=True)
    return removed


def cache_directory() -> str:
    """Where inductor keeps its caches in this process."""
    try:
        from torch._inductor.runtime.cache_dir_utils import cache_dir

        return cache_dir()
    except Exception:  # pragma: no cover - older torch
        return os.environ.get("TORCHINDUCTOR_CACHE_DIR", "")


def _cxx_search() -> tuple[str | None, ...]:
    """Inductor's ``cpp.cxx`` search list (None: install g++ through conda)."""
    import torch._inductor.config as inductor_config

    try:
        search = inductor_config.cpp.cxx
    except AttributeError:  # torch's config modules hide an entry a patcher deleted: inductor's default
        search = (None, "g++")
    return tuple(search) if isinstance(search, (list, tuple)) else (search,)


def cxx_compiler() -> str | None:
    """The C++ compiler inductor will call on CPU (its ``cpp.cxx`` search list, ``CXX`` included), or
    None when none of them is on the PATH."""
    if sys.platform == "win32":  # pragma: no cover - inductor calls CXX or cl there
        return shutil.which(os.environ.get("CXX", "cl"))
    for candidate in _cxx_search():
        if candidate is None:  # inductor may install g++ through conda when asked to
            if os.environ.get("TORCH_INDUCTOR_INSTALL_GXX"):
                return "g++ (installed by inductor through conda)"
            continue
        found = shutil.which(candidate)
        if found:
            return found
    return None


def _invoke(fn: Any, args: Any, kwargs: Any) -> Any:
    return fn(*args, **kwargs)


_serial = itertools.count()


def _trampoline() -> Callable[..., Any]:
    """A fresh copy of ``_invoke`` with its own code object: dynamo keeps its compiled graphs, guards,
    recompile count and automatic-dynamic state per code object (the name keys the latter)."""
    name = f"nnconform_call_{next(_serial)}"
    changes: dict[str, Any] = {"co_name": name}
    if sys.version_info >= (3, 11):
        changes["co_qualname"] = name
    code = _invoke.__code__.replace(**changes)
    return types.FunctionType(code, _invoke.__globals__, name)


def _callee(fn: Any) -> str:
    owner = fn if isinstance(fn, type) or callable(fn) and hasattr(fn, "__qualname__") else type(fn)
    return f"{getattr(owner, '__module__', '')}.{getattr(owner, '__qualname__', repr(owner))}"


def _size_class(n: int) -> str:
    return "0" if n == 0 else "1" if n == 1 else "n"  # dynamo always specialises sizes 0 and 1


def graph_kind(case: Case) -> str:
    """``static`` or ``dynamic``: the kind of graph that runs ``case``, from the parity of its id (the
    same case always gets the same kind; about half the cases get each). The id is taken without the
    case's random choices: a backend runs a random case before it has any, and the runner attaches
    the backend's own before judging it (so a known entry's predicate sees the kind that ran)."""
    if case.choices:
        case = dataclasses.replace(case, choices={})
    return "static" if int(case.case_id(), 16) % 2 == 0 else "dynamic"


def runs_dynamic_graph(case: Case) -> bool:
    """Whether ``case`` runs a dynamic-shape graph (a predicate of known entries)."""
    return graph_kind(case) == "dynamic"


def signature(case: Case, fn: Any, kind: str = "dynamic") -> str:
    """What a compiled trampoline is shared by: everything dynamo would guard on except the sizes
    (and, for a static graph, the sizes too)."""
    call = {k: v for k, v in (case.call or {}).items() if k != "seed"}
    inputs = {name: [case.input_type(name), case.layout(name).describe(),
                     "".join(_size_class(int(s)) for s in getattr(arr, "shape", ()))]
              for name, arr in sorted(case.inputs.items())}
    sizes = {name: tuple(getattr(arr, "shape", ())) for name, arr in sorted(case.inputs.items())} \
        if kind == "static" else None
    return repr((kind, _callee(fn), case.target, case.dtype, case.train, case.invalid, sorted(case.differentiable),
                 repr(call), repr(inputs), repr(sizes)))


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 8:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


# A C/C++ compiler's diagnostic line (``file:line:col: error: ...``): what a CppCompileError is about,
# often after a command line too long for MESSAGE_LIMIT.
_DIAGNOSTIC = re.compile(r":\d+:\d+: (?:fatal )?error: ")


def _text(exc: BaseException) -> str:
    """``Type: message``, cut to MESSAGE_LIMIT characters; a cut message keeps its first compiler
    diagnostics (up to 3, each cut to 300 characters) at its end."""
    text = f"{type(exc).__name__}: {exc}".strip()
    if len(text) <= MESSAGE_LIMIT:
        return text
    diagnostics = [line.strip()[:300] for line in text.splitlines() if _DIAGNOSTIC.search(line)][:3]
    tail = " [...] " + " | ".join(diagnostics) if diagnostics else " [...]"
    return text[:MESSAGE_LIMIT - len(tail)] + tail


# A traceback frame of compilation: dynamo converting a frame (tracing, then calling the compiler), or a
# compiler proper (AOTAutograd's compilers, among them the backward compiler it calls lazily at the
# first backward pass; inductor's compile_fx and code generation). Frames of running a compiled graph
# are runtime wrappers (forward, runtime_wrapper, _compiled_backward, compile_wrapper, run, __call__)
# and match neither; inductor's generated code lives outside torch/.
_COMPILING_FILES = ("torch/_dynamo/convert_frame.py", "torch/_dynamo/output_graph.py")
_COMPILER_PACKAGES = ("torch/_dynamo/", "torch/_functorch/", "torch/_inductor/")
_COMPILING_FUNCTION = re.compile(r"compiler|compile_fx|codegen_and_compile|compile_to_module")


def _raised_while_compiling(exc: BaseException) -> bool:
    """Whether a frame of compilation was on the stack where ``exc`` was raised."""
    for frame in traceback.extract_tb(exc.__traceback__):
        path = frame.filename.replace(os.sep, "/")
        if path.endswith(_COMPILING_FILES) or (any(p in path for p in _COMPILER_PACKAGES)
                                               and _COMPILING_FUNCTION.search(frame.name)):
            return True
    return False


# A NotImplementedError that says an operator has no fake or meta implementation is the compiler's
# limit, not an argument check of the call.
_MISSING_KERNEL = re.compile(r"fake impl|meta kernel|meta impl|abstract impl|for 'Meta'|fake tensor", re.I)


# The messages of torch's argument parser when it refuses a call's arguments.
_PARSER_REFUSAL = re.compile(r"received an invalid combination of arguments|argument '\w+' \(position \d+\) must be ")


# ATen's dispatch error for a CPU/CUDA kernel that has no implementation for a dtype ('"tensor_cpu" not
# implemented for 'Half''): eager raises it too, so the case is unsupported, compiled or not.
_DTYPE_KERNEL_MISSING = re.compile(r"not implemented for '(Half|BFloat16|Float|Double|ComplexFloat|ComplexDouble)'")


def _missing_dtype_kernel(exc: BaseException) -> BaseException | None:
    """The NotImplementedError in ``exc``'s chain (a compiler's failure) saying that an eager kernel the compiler ran
    while tracing (AOTAutograd runs the backward's C++ code on fake tensors) has no implementation for the dtype."""
    return next((e for e in _chain(exc) if type(e) is NotImplementedError and _DTYPE_KERNEL_MISSING.search(str(e))
                 and not _MISSING_KERNEL.search(str(e))), None)


def _argument_check(exc: BaseException | None) -> bool:
    """Whether ``exc``, the cause of a dynamo ``Unsupported`` raised while running an FX node on fake
    tensors, is the call's own refusal of its arguments, as eager raises it: a plain
    NotImplementedError (a pad size the input's rank does not support), not a missing kernel; or the
    argument parser's TypeError ("received an invalid combination of arguments": a float size;
    "argument 'dim' (position 1) must be int, not str": a dimension name where no overload takes one)."""
    if type(exc) is TypeError:
        return bool(_PARSER_REFUSAL.search(str(exc)))
    # (a bare NotImplementedError() is dynamo's own: e.g. the cause of a "Reconstruction failure")
    return type(exc) is NotImplementedError and bool(str(exc)) and not _MISSING_KERNEL.search(str(exc))


def classify(exc: BaseException) -> BaseException:
    """The exception to report for what the compiled call raised (see the module docstring)."""
    try:
        from torch._dynamo import exc as dynamo_exc
    except Exception:  # pragma: no cover
        return exc
    try:
        from torch._inductor import exc as inductor_exc

        inductor_errors: tuple[type, ...] = (inductor_exc.InductorError, inductor_exc.LoweringException,
                                             inductor_exc.CppCompileError, inductor_exc.InvalidCxxCompiler)
    except Exception:  # pragma: no cover
        inductor_errors = ()
    for e in _chain(exc):
        if isinstance(e, getattr(dynamo_exc, "FailOnRecompileLimitHit", ())):
            return CompileFailure(f"recompile limit: more than {RECOMPILE_LIMIT} graphs for one call signature "
                                  f"({_text(e)})")
        if isinstance(e, dynamo_exc.Unsupported):
            observed = next((c for c in _chain(e) if isinstance(c, getattr(dynamo_exc, "ObservedException", ()))), None)
            if observed is not None:  # the traced program raised: the call's own error
                kind = NotImplementedError if "NotImplementedError" in str(observed) else RuntimeError
                return kind(f"the compiled call raised ({observed}; dynamo observed it while tracing)")
            if _argument_check(e.__cause__):  # torch's own check refused the arguments, on fake tensors
                return type(e.__cause__)(f"the compiled call raised ({_text(e.__cause__)}; dynamo met it "
                                         f"running the call on fake tensors)")
            return CompileFailure(f"graph break: {_text(e)}")
        if isinstance(e, dynamo_exc.TorchRuntimeError):
            return exc  # an argument check failed on fake tensors: the call's own error
        if isinstance(e, (dynamo_exc.BackendCompilerFailed, dynamo_exc.TorchDynamoException, *inductor_errors)):
            missing = _missing_dtype_kernel(e)
            if missing is not None:  # eager has no kernel for this dtype either: unsupported, not a compile failure
                return NotImplementedError(f"the compiled call raised ({_text(missing)}; the compiler ran the eager "
                                           f"kernel while tracing)")
            return CompileFailure(f"compiler error: {_text(e)}")
    if isinstance(exc, AssertionError) and _raised_while_compiling(exc):  # an internal invariant of the compiler
        return CompileFailure(f"compiler error: {_text(exc)}")
    return exc


class TorchCompileBackend(TorchBackend):
    """torch.nn through ``torch.compile(backend=compiler, mode=mode, fullgraph=True)`` on one device.

    ``compiler`` is a registered torch.compile backend name or a backend callable (a compiler under
    development: subclass, pass it, and run the subclass as ``--backend module:Class``). A subclass
    may name itself with a ``name`` class attribute (default ``torch-compile[:<compiler>[:<mode>]]``).
    """

    def __init__(self, compiler: str | Callable[..., Any] = DEFAULT_COMPILER, mode: str | None = None,
                 device: str = "cpu", cache_dir: str | None = None):
        super().__init__(device)
        self.cache_dir = cache_dir or os.environ.get(CACHE_ENV) or None
        self.compiler = compiler  # a registered torch.compile backend name, or a backend callable
        self.compiler_name = compiler if isinstance(compiler, str) else getattr(compiler, "__name__", repr(compiler))
        self.mode = mode
        if not type(self).name:
            default = self.compiler_name == DEFAULT_COMPILER and not mode
            suffix = "" if default else f":{self.compiler_name}" + (f":{mode}" if mode else "")
            self.name = BASE_NAMES[device] + suffix
        self.known_as = type(self).known_as  # not torch-<device>'s entries (see the module docstring)
        self._live: OrderedDict[str, Callable[..., Any]] = OrderedDict()  # signature -> compiled trampoline
        self._since_reset = 0
        self._last = ""
        self._configured = False
        self.stats = {"compiled": 0, "reused": 0, "consecutive": 0}

    @classmethod
    def from_spec(cls, spec: str) -> TorchCompileBackend:
        device, compiler, mode = parse_spec(spec)
        return cls(compiler, mode, device, cache_dir=spec_options(spec).get("cache"))

    def capabilities(self) -> Capabilities:
        notes = {"compiler": self.compiler_name, "mode": self.mode or "default", "fullgraph": "true",
                 "shapes": "static or dynamic per case (graph_kind)", "recompile_limit": str(RECOMPILE_LIMIT)}
        return Capabilities(devices=(self._device,), dtypes=DTYPE_NAMES, notes=notes)

    def availability(self) -> tuple[bool, str]:
        ok, reason = super().availability()
        if not ok:
            return ok, reason
        try:
            import torch._dynamo
            from torch._dynamo.eval_frame import is_dynamo_supported
        except Exception as exc:
            return False, f"torch.compile cannot be imported: {exc}"
        try:
            is_dynamo_supported()
        except Exception as exc:
            return False, f"torch.compile is not supported here: {exc}"
        known = torch._dynamo.list_backends(exclude_tags=())
        if isinstance(self.compiler, str) and self.compiler not in known:
            return False, f"unknown torch.compile backend {self.compiler!r} (known: {', '.join(known)})"
        if self.mode is not None:
            if self.compiler != "inductor":
                return False, f"a mode ({self.mode}) applies to the inductor compiler only"
            from torch._inductor import list_mode_options

            if self.mode not in list_mode_options():
                return False, f"unknown inductor mode {self.mode!r} (known: {', '.join(list_mode_options())})"
        if self.compiler == "inductor" and self._device == "cpu" and cxx_compiler() is None:
            return False, (f"inductor on CPU needs a C++ compiler and none was found (looked for "
                           f"{', '.join(c for c in _cxx_search() if c)} on the PATH): install g++ "
                           f"(or clang++ and set CXX), or use torch-compile:aot_eager")
        if self.compiler == "inductor" and self._device == "cuda":
            from torch.utils._triton import has_triton

            if not has_triton():
                return False, "inductor on CUDA needs triton, which is not installed"
        return True, ""

    def versions(self) -> dict[str, str]:
        info = super().versions()
        info.update(compiler=self.compiler_name, mode=self.mode or "default")
        if self.cache_dir:
            info["compile_cache"] = os.path.abspath(self.cache_dir)
        if self.compiler == "inductor" and self._device == "cpu":
            cxx = cxx_compiler()
            info["cxx"] = str(cxx)
            if cxx and os.path.exists(cxx):
                try:
                    first = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30)
                    info["cxx_version"] = first.stdout.splitlines()[0] if first.stdout else ""
                except (OSError, subprocess.SubprocessError):
                    pass
        return info

    def prepare(self) -> None:
        super().prepare()
        if not self._configured:
            configure(self.cache_dir)
            self._configured = True

    # -- compiled callables ------------------------------------------------------------------------
    def _compiled(self, key: str, kind: str) -> Callable[..., Any]:
        """The live trampoline of this signature; else a fresh one (dynamo reset every RESET_AFTER)."""
        consecutive, self._last = key == self._last, key
        self.stats["consecutive"] += consecutive  # what reusing only the previous case's graph would reuse
        if key in self._live:
            self._live.move_to_end(key)
            self.stats["reused"] += 1
            return self._live[key]
        torch = _torch()
        if self._since_reset >= RESET_AFTER:
            self._live.clear()
            torch._dynamo.reset()
            self._since_reset = 0
        compiled = torch.compile(_trampoline(), backend=self.compiler, mode=self.mode, fullgraph=True,
                                 dynamic=kind == "dynamic")
        self._live[key] = compiled
        while len(self._live) > LIVE_SIGNATURES:
            self._live.popitem(last=False)
        self._since_reset += 1
        self.stats["compiled"] += 1
        return compiled

    def call_target(self, case: Case, fn: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
        if fn is operator.call and args:  # operator.call(f, *args) is f(*args): compile f (dynamo cannot trace it)
            fn, args = args[0], list(args[1:])
        kind = graph_kind(case)
        key = signature(case, fn, kind)
        try:
            return self._compiled(key, kind)(fn, args, kwargs)
        except BaseException as exc:
            if isinstance(classify(exc), CompileFailure):  # a signature that failed to compile starts afresh
                self._live.pop(key, None)
            raise

    @contextmanager
    def _case_config(self, case: Case) -> Iterator[None]:
        rules = (case.call or {}).get("random") or {}
        replayed = any(r.get("rule") in ("rand", "bernoulli") for r in rules.values())
        if replayed and self.compiler == "inductor":
            import torch._inductor.config as inductor_config

            with inductor_config.patch(fallback_random=True):
                yield
        else:
            with nullcontext():
                yield

    def run(self, case: Case) -> Result:
        self.prepare()
        counters = _torch()._dynamo.utils.counters["stats"]
        graphs, calls = counters["unique_graphs"], self.stats["compiled"] + self.stats["reused"]
        try:
            with self._case_config(case):
                result = super().run(case)
        except Exception as exc:
            reported = classify(exc)
            if reported is exc:
                raise
            raise reported from exc
        # graphs_compiled: dynamo graphs this case compiled (0: every call ran on graphs an earlier case compiled)
        compiled = counters["unique_graphs"] - graphs
        result.meta.update(compiler=self.compiler_name, mode=self.mode or "default", graph=graph_kind(case),
                           graphs_compiled=compiled, calls=self.stats["compiled"] + self.stats["reused"] - calls)
        result.meta[COMPILED] = compiled > 0 or not result.meta["calls"]
        return result
