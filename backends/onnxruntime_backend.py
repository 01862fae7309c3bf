"""The ONNX Runtime adapter: ``onnxruntime[:<exporter>][:opset=<N>]`` (CPU execution provider).

Each case runs as on ``torch-cpu`` up to the call (the call interpreter builds the module, installs
its parameters and buffers, builds the inputs), but the call itself is exported with
``torch.onnx.export`` and run by ONNX Runtime: what a user does to take a torch.nn model elsewhere.

- Exporters: ``dynamo`` (the default: ``torch.onnx.export(dynamo=True)``, torch.export then the
  onnxscript translation) and ``torchscript`` (``dynamo=False``: the tracing exporter, with
  ``training=TrainingMode.PRESERVE``). ``opset=N`` picks the opset (default: the exporter's,
  ``torch.onnx``'s ``ONNX_DEFAULT_OPSET``: 20 in torch 2.13).
- What is exported: one ONNX graph per call of a module or function (a container driven by a loop
  exports each layer's call). A call with no tensor argument and no parameter (a kernel selector, a
  mask built from sizes) is a constant of the case: torch evaluates it, as an exporter folds it.
  Every tensor argument, parameter and buffer is a graph *input* (modules are called through
  ``torch.func.functional_call``), so a graph holds no case values and serves every case of its
  call signature. Non-tensor arguments (sizes, flags, modes) are
  constants of the graph. The graph returns the call's tensors, then every tensor input after the
  call: a tensor the call mutates (BatchNorm's running statistics, an in-place activation's input)
  is written back from that output, so mutations are compared like torch's.
- Training mode: the module is exported in the mode the case sets (``train``), as a user exporting
  that module would. The TorchScript exporter preserves it (``TrainingMode.PRESERVE``: ONNX
  ``BatchNormalization(training_mode=1)``, ``Dropout`` with ``training_mode``); the dynamo exporter
  takes the mode from the module (its ``training`` argument is deprecated), and whatever it makes of
  training-mode layers is judged like any other result (known entries in
  ``conformance/known/onnxruntime*.toml``).
- Forward only: ONNX Runtime's inference sessions have no backward pass, so the capabilities say
  ``backward=False`` and no gradient is ever reported (the runner compares outputs, state and random
  choices and records the gradients as unsupported). Random choices replayed from torch's generator
  (rules ``rand`` and ``bernoulli``) cannot be reported (ONNX Runtime draws its own): such cases are
  unsupported; dropout masks read from the output (rule ``nonzero``) are judged as usual. A
  container's own list and dict operations (ParameterList[semantics], ...) compute no tensor and are
  unsupported. A lazy module's dry run (the call's ``prepare``) is setup and runs in torch.
- Layouts: ONNX tensors are dense and row-major, so every input travels as its logical values; a
  case's memory layout changes nothing here (it is still run, and must give the same result).
- dtypes: float64, float32, float16 as NumPy arrays, bfloat16 as ONNX bfloat16 tensors. An operator
  ONNX Runtime's CPU provider has no kernel for in the case's dtype (many in bfloat16 and float16) is
  ``unsupported``, with ONNX Runtime's message.

Verdicts: an export that fails is ``CompileFailure`` (verdict ``compile``) with a message starting
``export:`` and the exporter's own summary; so is a model ONNX Runtime refuses to load for any
reason other than a missing kernel. To tell a failed export from the call's own error (an invalid
case: a shape check raising while the exporter traces), a failed export reruns the call eagerly on
copies: when eager torch raises too, that error is the call's (the case was rejected), otherwise the
export failed. An error ONNX Runtime raises while running (an index out of range) is the call's
own error.

Graph reuse: a graph is keyed by its *call signature* (entry, callee, dtype, mode, the call tree
without its seed, each argument's type and rank, the values of Python-list arguments, the position
of the call within the case). As on ``torch-compile``, each case runs a static- or a dynamic-shape
graph, decided by the parity of its id (``torch_compile.graph_kind``):

- *static*: exported at the case's exact sizes, reused only by cases of the same sizes;
- *dynamic*: every dimension of the call's arguments exported as ``Dim.AUTO`` (the exporter
  specialises what the program demands, e.g. sizes 0 and 1; parameters and buffers keep their
  sizes, as the weights of a model a user exports), reused by a later case only when its sizes satisfy the exported
  program's own input constraints (each specialised size equal, each symbol within its range, the
  same value wherever a symbol repeats) and the program carries no other runtime assertion;
  otherwise the call is exported again for that case. So a reused graph is always one the exporter
  declared valid for the case.

``ONNXRT_SESSION_CACHE`` graphs (LRU) are kept per worker. Subclasses may change the exported model
before it is loaded (``transform_model``: deliberately wrong adapters in the tests drop an attribute
the way a faulty exporter would).
"""

from __future__ import annotations

import copy
import ctypes
import io
import logging
import operator
import re
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backends.base import COMPILED, DTYPE_NAMES, Capabilities, Case, CompileFailure, Result
from backends.torch_backend import TorchBackend
from backends.torch_compile import graph_kind
from backends.torch_run import run_call

BASE_NAME = "onnxruntime"
EXPORTERS = ("dynamo", "torchscript")
DEFAULT_EXPORTER = "dynamo"
ONNXRT_SESSION_CACHE = 64
GRAPHS_PER_SIGNATURE = 8
MESSAGE_LIMIT = 2000
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _torch() -> Any:
    import torch

    return torch


def parse_spec(spec: str) -> tuple[str, int | None]:
    """(exporter, opset) of ``onnxruntime[:dynamo|torchscript][:opset=N]``; ValueError otherwise."""
    base, _, rest = spec.partition(":")
    if base != BASE_NAME:
        raise ValueError(f"not an onnxruntime backend name: {spec!r}")
    exporter, opset = DEFAULT_EXPORTER, None
    for part in filter(None, rest.split(":")):
        key, eq, value = part.partition("=")
        if not eq and key in EXPORTERS:
            exporter = key
        elif eq and key == "opset" and value.isdigit():
            opset = int(value)
        else:
            raise ValueError(f"{spec!r}: expected onnxruntime[:dynamo|torchscript][:opset=<N>]")
    return exporter, opset


def _has_steps(node: Any) -> bool:
    """Whether a call tree holds a ``steps`` node (a container's own operations, ``torch_call``)."""
    if isinstance(node, dict):
        return "steps" in node or any(_has_steps(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_steps(v) for v in node)
    return False


def _text(exc: BaseException) -> str:
    """One readable line of an exporter's error: its exception summary when it has one."""
    text = _ANSI.sub("", f"{type(exc).__name__}: {exc}")
    summary = re.search(r"## Exception summary\s*(.+?)(?:\n\n|$)", text, re.S)
    if summary:
        text = f"{type(exc).__name__}: {summary.group(1).strip()}"
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT] + " [...]"


# -- flattening a call's arguments and results into tensors -------------------------------------------

@dataclass
class _Tree:
    """The structure of a nested value: tensors become numbered slots, the rest stays as it is."""

    kind: str  # "tensor" | "tuple" | "list" | "dict" | "packed" | "const"
    value: Any = None
    children: list[Any] = field(default_factory=list)


def _flatten(value: Any, leaves: list[Any]) -> _Tree:
    torch = _torch()
    if isinstance(value, torch.Tensor):
        if isinstance(value, torch.nn.Parameter) and value.grad is not None:
            raise NotImplementedError("a parameter carrying a .grad (an optimiser-side utility) is not exportable")
        leaves.append(value)
        return _Tree("tensor", len(leaves) - 1)
    from torch.nn.utils.rnn import PackedSequence

    if isinstance(value, PackedSequence):
        return _Tree("packed", None, [_flatten(v, leaves) for v in value])
    if isinstance(value, (tuple, list)):
        return _Tree("tuple" if isinstance(value, tuple) else "list", None, [_flatten(v, leaves) for v in value])
    if isinstance(value, dict):
        return _Tree("dict", list(value), [_flatten(v, leaves) for v in value.values()])
    return _Tree("const", value)


def _rebuild(tree: _Tree, leaves: list[Any]) -> Any:
    if tree.kind == "tensor":
        return leaves[tree.value]
    if tree.kind == "const":
        return tree.value
    parts = [_rebuild(c, leaves) for c in tree.children]
    if tree.kind == "packed":
        from torch.nn.utils.rnn import PackedSequence

        return PackedSequence(*parts)
    if tree.kind == "dict":
        return dict(zip(tree.value, parts))
    return tuple(parts) if tree.kind == "tuple" else parts


def _holds_tensor(tree: _Tree) -> bool:
    return tree.kind == "tensor" or any(_holds_tensor(c) for c in tree.children)


def _describe(tree: _Tree) -> Any:
    """The structure as a hashable description (constants by repr)."""
    if tree.kind == "tensor":
        return "T"
    if tree.kind == "const":
        return ("C", _const_key(tree.value))
    return (tree.kind, repr(tree.value) if tree.kind == "dict" else None, tuple(_describe(c) for c in tree.children))


def _owner_module(fn: Any) -> Any:
    """The ``nn.Module`` whose parameters and buffers a call reads: ``fn`` itself, or the module a
    bound method belongs to (``AdaptiveLogSoftmaxWithLoss.log_prob``); None for anything else."""
    torch = _torch()
    owner = fn if isinstance(fn, torch.nn.Module) else getattr(fn, "__self__", None)
    return owner if isinstance(owner, torch.nn.Module) else None


def _captures_tensors(program: Any, model: Any, n_inputs: int) -> bool:
    """Whether an exported graph holds tensors other than its inputs (parameters, buffers or tensor
    constants the exporter lifted from the callee: a graph made for one case's values). Code
    constants count too: reusing such a graph would be safe, but it cannot be told apart."""
    exported = getattr(program, "exported_program", None)
    if exported is not None:
        return any(spec.kind.name != "USER_INPUT" for spec in exported.graph_signature.input_specs)
    return bool(getattr(getattr(model, "graph", None), "initializer", ()))  # TorchScript: initializers


def _const_key(value: Any) -> str:
    torch = _torch()
    if isinstance(value, torch.nn.Module):
        return f"{type(value).__module__}.{type(value).__qualname__}({value!r})"
    return repr(value)


def _wrapper(fn: Any, args_tree: _Tree, n_args: int, state_names: list[str], out_trees: list[Any]) -> Any:
    """An ``nn.Module`` whose forward takes every tensor (arguments, then the module's parameters and
    buffers) and returns the call's tensors, then every input tensor after the call."""
    torch = _torch()

    class Exported(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.is_module = isinstance(fn, torch.nn.Module)
            self.owner = [_owner_module(fn)]  # a bound method's module (a list: not a submodule), state swapped in
            self.fn = [fn]  # not a submodule: its parameters must not become constants of the graph

        def forward(self, *flat: Any) -> Any:
            arguments, state = list(flat[:n_args]), list(flat[n_args:])
            args, kwargs = _rebuild(args_tree, arguments)
            # the TorchScript exporter has no stateless API, and functional_call refuses DataParallel
            if self.is_module and (torch.jit.is_tracing() or isinstance(self.fn[0], torch.nn.DataParallel)):
                with _swapped(self.fn[0], dict(zip(state_names, state))):
                    result = self.fn[0](*args, **kwargs)
            elif self.is_module:
                result = torch.func.functional_call(self.fn[0], dict(zip(state_names, state)), tuple(args), kwargs,
                                                    tie_weights=False, strict=False)
            elif self.owner[0] is not None:
                with _swapped(self.owner[0], dict(zip(state_names, state))):
                    result = self.fn[0](*args, **kwargs)
            else:
                result = self.fn[0](*args, **kwargs)
            leaves: list[Any] = []
            tree = _flatten(result, leaves)
            out_trees[:] = [tree]
            return (*leaves, *arguments, *state)

    return Exported()


@contextmanager
def _swapped(module: Any, state: dict[str, Any]) -> Any:
    """``module`` with its parameters and buffers replaced by ``state`` (name -> tensor) for a while."""
    saved = []
    for name, tensor in state.items():
        prefix, _, attr = name.rpartition(".")
        owner = module.get_submodule(prefix) if prefix else module
        table = owner._parameters if attr in owner._parameters else owner._buffers
        saved.append((table, attr, table[attr]))
        table[attr] = tensor
    try:
        yield
    finally:
        for table, attr, value in reversed(saved):
            table[attr] = value


# -- input constraints of an exported program ----------------------------------------------------------

@dataclass
class _Shapes:
    """What sizes an exported graph accepts: per input, each dim an int or a symbol (or an expression)."""

    dims: list[list[Any]]
    ranges: dict[Any, tuple[float, float]]
    general: bool  # False: the program asserts more than its ranges (reuse only at the same sizes)
    exact: list[tuple[int, ...]]

    def accepts(self, shapes: list[tuple[int, ...]]) -> bool:
        if shapes == self.exact:
            return True
        if not self.general or len(shapes) != len(self.dims):
            return False
        bound: dict[Any, int] = {}
        pending = []
        for want, got in zip(self.dims, shapes):
            if len(want) != len(got):
                return False
            for w, g in zip(want, got):
                if isinstance(w, int):
                    if w != g:
                        return False
                elif getattr(w, "is_Symbol", False):
                    if bound.setdefault(w, g) != g:
                        return False
                else:
                    pending.append((w, g))
        for expr, g in pending:
            try:
                if int(expr.subs(bound)) != g:
                    return False
            except (TypeError, ValueError):
                return False
        for sym, value in bound.items():
            low, high = self.ranges.get(sym, (0, float("inf")))
            if not low <= value <= high:
                return False
        return True


def _shapes_of_program(program: Any, n_inputs: int, exact: list[tuple[int, ...]]) -> _Shapes:
    """The input constraints torch.export recorded (``ExportedProgram``): the placeholders' symbolic
    sizes and ``range_constraints``; a program with runtime assertions is reused only at its sizes."""
    ep = getattr(program, "exported_program", None)
    if ep is None:
        return _Shapes([], {}, False, exact)
    users = list(ep.graph_signature.user_inputs)
    nodes = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    dims = []
    for name in users[:n_inputs]:
        val = nodes[name].meta.get("val")
        shape = getattr(val, "shape", ())
        dims.append([int(d) if isinstance(d, int) else d.node.expr for d in shape])
    ranges = {}
    for sym, vr in ep.range_constraints.items():
        low, high = vr.lower, vr.upper
        ranges[sym] = (float(low) if low.is_number else 0.0, float(high) if high.is_finite else float("inf"))
    return _Shapes(dims, ranges, not _guards_sizes(ep.graph) and len(dims) == n_inputs, exact)


_COMPARISONS = (operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge)


def _guards_sizes(graph: Any) -> bool:
    """Whether an exported graph checks its inputs' sizes beyond its range constraints: a runtime
    assertion, or a comparison whose result nothing uses (torch 2.13 leaves a guard such as
    ``eq(s0 + s1, 7)`` as a dead node where the graph baked a value that holds only then, e.g.
    xavier_normal_'s std from the fans). Such a graph is reused only at its example's sizes."""
    return any(n.op == "call_function" and (any(k in str(n.target) for k in ("assert", "constrain_range"))
                                            or (n.target in _COMPARISONS and not n.users))
               for n in graph.nodes)


# -- ONNX Runtime ------------------------------------------------------------------------------------------

_BFLOAT16 = 16  # onnx.TensorProto.BFLOAT16


def _feed(t: Any) -> Any:
    """A torch tensor as ONNX Runtime takes it (a NumPy array; bfloat16 as an OrtValue)."""
    torch = _torch()
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        import onnxruntime as ort

        raw = t.view(torch.int16).numpy().view(np.uint16)
        return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(raw, _BFLOAT16)
    return t.numpy()


def _tensor(value: Any, dtype: Any) -> Any:
    """An ONNX Runtime result as a torch tensor of the dtype the graph promised."""
    torch = _torch()
    if hasattr(value, "data_type") and value.data_type() == "tensor(bfloat16)":  # OrtValue.numpy() refuses it
        shape = tuple(value.shape())
        n = int(np.prod(shape))
        raw = np.ctypeslib.as_array((ctypes.c_uint16 * n).from_address(value.data_ptr())) if n else np.zeros(0)
        return torch.from_numpy(raw.astype(np.uint16).view(np.int16).reshape(shape).copy()).view(torch.bfloat16)
    arr = value.numpy() if hasattr(value, "numpy") and not isinstance(value, np.ndarray) else value
    arr = np.asarray(arr)
    if dtype == torch.bfloat16:
        return torch.from_numpy(np.ascontiguousarray(arr).view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(np.array(arr, copy=True))


@dataclass
class _Graph:
    session: Any
    input_names: list[str]
    n_outputs: int  # the call's own tensors (the rest are the inputs after the call)
    out_tree: _Tree
    out_dtypes: list[Any]
    shapes: _Shapes
    captured: bool = False  # the graph holds tensors that are not its inputs (never reused)


class OnnxRuntimeBackend(TorchBackend):
    """torch.nn exported with ``torch.onnx.export`` and run on ONNX Runtime's CPU provider."""

    name = ""

    def __init__(self, exporter: str = DEFAULT_EXPORTER, opset: int | None = None):
        super().__init__("cpu")
        if exporter not in EXPORTERS:
            raise ValueError(f"unknown exporter {exporter!r} (known: {', '.join(EXPORTERS)})")
        self.exporter = exporter
        self.opset = opset
        if not type(self).name:
            self.name = BASE_NAME + ("" if exporter == DEFAULT_EXPORTER else f":{exporter}") + \
                (f":opset={opset}" if opset else "")
        self.known_as = type(self).known_as  # its own entries only (onnxruntime*)
        self._graphs: OrderedDict[str, list[_Graph]] = OrderedDict()
        self._case: Case | None = None
        self._position = 0
        self._registry: Any = None
        self.stats = {"exported": 0, "reused": 0, "export_failed": 0}

    @classmethod
    def from_spec(cls, spec: str) -> OnnxRuntimeBackend:
        return cls(*parse_spec(spec))

    def capabilities(self) -> Capabilities:
        notes = {"exporter": self.exporter, "opset": str(self.opset or "default"), "backward": "unsupported",
                 "layouts": "dense (ONNX tensors have no strides)", "training": "exported as the case's mode",
                 "shapes": "static or dynamic per case (graph_kind)"}
        return Capabilities(devices=("cpu",), dtypes=DTYPE_NAMES, backward=False, notes=notes)

    def availability(self) -> tuple[bool, str]:
        ok, reason = super().availability()
        if not ok:
            return ok, reason
        missing = []
        for module in ("onnx", "onnxruntime") + (("onnxscript",) if self.exporter == "dynamo" else ()):
            try:
                __import__(module)
            except Exception as exc:  # not installed, or broken
                missing.append(f"{module} ({type(exc).__name__}: {exc})")
        if missing:
            return False, f"cannot import {', '.join(missing)}: pip install nnconform[onnx]"
        return True, ""

    def versions(self) -> dict[str, str]:
        info = super().versions()
        import onnx
        import onnxruntime

        info.update(onnxruntime=onnxruntime.__version__, onnx=onnx.__version__, exporter=self.exporter,
                    opset=str(self.opset or "default"))
        if self.exporter == "dynamo":
            import onnxscript

            info["onnxscript"] = onnxscript.__version__
        return info

    # -- hooks ------------------------------------------------------------------------------------------
    def transform_model(self, model: Any, case: Case) -> Any:
        """The exported ``onnx.ModelProto`` before ONNX Runtime loads it (deliberately wrong adapters
        in the tests change it here)."""
        return model

    # -- execution --------------------------------------------------------------------------------------
    def run(self, case: Case) -> Result:
        if case.call is None:
            raise ValueError(f"case of {case.target} carries no call description")
        if _has_steps(case.call):
            raise NotImplementedError("a container's own list and dict operations (the steps node) compute no "
                                      "tensor: there is no ONNX graph to export")
        rules = sorted({r.get("rule") for r in (case.call.get("random") or {}).values()} & {"rand", "bernoulli"})
        if rules:
            raise NotImplementedError(f"random choices replayed from torch's generator (rule {', '.join(rules)}) "
                                      f"cannot be reported by ONNX Runtime, which draws its own")
        self._case, self._position = case, 0
        before = dict(self.stats)
        with _quiet():
            tensors = run_call(
                case.call, case.inputs, dtype=case.dtype, device="cpu",
                types={n: case.input_type(n) for n in case.inputs},
                layouts={n: case.layout(n).describe() for n in case.inputs},
                requires_grad=(), cotangents=None,  # forward only: no gradient is ever reported
                build=lambda cls, kwargs: self.build_module(case, cls, kwargs),
                invoke=lambda fn, args, kwargs: self.call_target(case, fn, args, kwargs))
        exported, reused = (self.stats[k] - before[k] for k in ("exported", "reused"))
        meta = {"device": "cpu", "exporter": self.exporter, "graph": graph_kind(case),
                "graphs_exported": exported, "graphs_reused": reused, COMPILED: exported > 0 or not reused}
        return Result.from_tensors(tensors, meta, groups=("outputs", "state", "choices"))  # forward only: no grads

    def call_target(self, case: Case, fn: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Export the call (or reuse a graph of its signature), run it on ONNX Runtime, write the
        mutated inputs back and return the call's results as torch tensors."""
        torch = _torch()
        position, self._position = self._position, self._position + 1
        leaves: list[Any] = []
        args_tree = _flatten((list(args), dict(kwargs)), leaves)
        n_args = len(leaves)
        state_names: list[str] = []
        owner = _owner_module(fn)
        if owner is not None:  # the module, or the module of a bound method (log_prob): its tensors are inputs
            named = (list(owner.named_parameters(remove_duplicate=False))
                     + list(owner.named_buffers(remove_duplicate=False)))
            for name, t in named:
                state_names.append(name)
                leaves.append(t)
        if not leaves:  # no tensor in or inside: a constant of the case (an exporter folds it), built by torch
            return fn(*args, **kwargs)
        if any(torch._debug_has_internal_overlap(t) == 1 for t in leaves):
            # exports start from dense clones, so an in-place write into overlapping memory (an expanded
            # tensor), which eager torch rejects, would run: the call's own error comes first
            own = _eager_error(fn, args, kwargs)
            if own is not None:
                raise own
        kind = "static" if self.exporter == "torchscript" else graph_kind(case)
        key = self._signature(case, fn, position, args_tree, leaves, state_names, kind)
        shapes = [tuple(t.shape) for t in leaves]
        graph = self._find(key, shapes)
        if graph is None:
            graph = self._export(case, fn, args, kwargs, args_tree, n_args, state_names, leaves, kind)
            if not graph.captured:  # a graph holding tensors of this case as constants serves this case only
                self._graphs.setdefault(key, []).append(graph)
                self._graphs.move_to_end(key)
                del self._graphs[key][:-GRAPHS_PER_SIGNATURE]
                while len(self._graphs) > ONNXRT_SESSION_CACHE:
                    self._graphs.popitem(last=False)
        else:
            self.stats["reused"] += 1
        if not _holds_tensor(graph.out_tree):
            # float(t), a gain from a slope: a Python value, which a graph cannot return (its trace
            # holds the example's value as a constant); the conversion is torch's, the tensors ONNX Runtime's
            return fn(*args, **kwargs)
        feeds = {name: _feed(t) for name, t in zip(graph.input_names, leaves)}
        by_value = any(not isinstance(v, np.ndarray) for v in feeds.values())  # a bfloat16 input: OrtValues only
        if by_value:
            import onnxruntime as ort

            feeds = {k: ort.OrtValue.ortvalue_from_numpy(v) if isinstance(v, np.ndarray) else v
                     for k, v in feeds.items()}
        try:
            values = graph.session.run_with_ort_values(None, feeds) if by_value else graph.session.run(None, feeds)
        except Exception as exc:  # ONNX Runtime rejected the inputs while running: the call's own error
            text = _text(exc)
            if _RUN_TIME_NO_KERNEL.search(text):  # a kernel that loads, then refuses the dtype: none, as at load
                raise NotImplementedError(f"onnxruntime has no kernel for this dtype (found running): {text}") from None
            raise RuntimeError(f"onnxruntime: {text}") from None
        outputs = [_tensor(v, d) for v, d in zip(values[:graph.n_outputs], graph.out_dtypes)]
        after = values[graph.n_outputs:]
        with torch.no_grad():
            for t, value in zip(leaves, after):  # what the call mutated (only those differ)
                new = _tensor(value, t.dtype)
                if new.shape == t.shape and not torch.equal(_bits(new), _bits(t)):
                    _write_back(t, new)
        return _rebuild(graph.out_tree, outputs)

    def _signature(self, case: Case, fn: Any, position: int, args_tree: _Tree, leaves: list[Any],
                   state_names: list[str], kind: str) -> str:
        call = {k: v for k, v in (case.call or {}).items() if k != "seed"}
        tensors = [(str(t.dtype), t.dim()) for t in leaves]
        sizes = [tuple(t.shape) for t in leaves] if kind == "static" else None
        return repr((self.exporter, self.opset, kind, case.target, case.dtype, case.train, position,
                     _const_key(fn) if not callable(fn) or isinstance(fn, _torch().nn.Module) else
                     f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}",
                     repr(call), _describe(args_tree), tensors, state_names, sizes))

    def _find(self, key: str, shapes: list[tuple[int, ...]]) -> _Graph | None:
        for graph in reversed(self._graphs.get(key, [])):
            if graph.shapes.accepts(shapes):
                self._graphs.move_to_end(key)
                return graph
        return None

    def _export(self, case: Case, fn: Any, args: list[Any], kwargs: dict[str, Any], args_tree: _Tree, n_args: int,
                state_names: list[str], leaves: list[Any], kind: str) -> _Graph:
        torch = _torch()
        out_trees: list[Any] = []
        wrapper = _wrapper(fn, args_tree, n_args, state_names, out_trees)
        if isinstance(fn, torch.nn.Module):
            wrapper.train(fn.training)
        names = [f"input_{i}" for i in range(len(leaves))]
        examples = tuple(t.detach().clone() for t in leaves)
        try:
            model, program = self._export_model(wrapper, examples, names, kind, n_args)
        except NotImplementedError:
            raise
        except Exception as exc:
            self.stats["export_failed"] += 1
            own = _eager_error(fn, args, kwargs)
            if own is not None:
                raise own from None
            raise CompileFailure(f"export: {_text(exc)}") from None
        self.stats["exported"] += 1
        model = self.transform_model(model, case)
        try:
            session = _session(model)
        except CompileFailure:  # ONNX Runtime refuses the model: the case's own error when eager torch raises too
            own = _eager_error(fn, args, kwargs)
            if own is not None:
                raise own from None
            raise
        n_outputs = len(session.get_outputs()) - len(leaves)
        out_tree = out_trees[0] if out_trees else _Tree("tuple")
        promised = _output_dtypes(out_tree, n_outputs, session)
        return _Graph(session, [i.name for i in session.get_inputs()], n_outputs, out_tree, promised,
                      _shapes_of_program(program, len(leaves), [tuple(t.shape) for t in leaves]),
                      _captures_tensors(program, model, len(leaves)))

    def _export_model(self, wrapper: Any, examples: tuple[Any, ...], names: list[str], kind: str,
                      n_args: int) -> tuple[Any, Any]:
        """(onnx.ModelProto, the ONNX program or None) of ``wrapper`` called on ``examples``."""
        torch = _torch()
        import onnx

        if self.exporter == "torchscript":
            buffer = io.BytesIO()
            kwargs = {"opset_version": self.opset} if self.opset else {}
            torch.onnx.export(wrapper, examples, buffer, dynamo=False, input_names=names,
                              training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False, **kwargs)
            return onnx.load_from_string(buffer.getvalue()), None
        dynamic = None
        if kind == "dynamic":  # the call's arguments; parameters and buffers keep their sizes, as a user's weights
            from torch.export import Dim

            dynamic = (tuple({d: Dim.AUTO for d in range(t.dim())} if i < n_args else None
                             for i, t in enumerate(examples)),)
        program = self._dynamo_export(wrapper, examples, names, dynamic)
        return program.model_proto, program

    def _dynamo_export(self, wrapper: Any, examples: tuple[Any, ...], names: list[str], dynamic: Any) -> Any:
        """``torch.onnx.export(dynamo=True)``, with the operator registry built once per process (building
        it costs seconds per export; it is not changed by an export)."""
        torch = _torch()
        try:
            from torch.onnx._internal.exporter import _constants, _core, _registration
        except ImportError:  # another torch: the public entry point
            kwargs = {"opset_version": self.opset} if self.opset else {}
            return torch.onnx.export(wrapper, examples, dynamo=True, input_names=names, dynamic_shapes=dynamic,
                                     verbose=False, **kwargs)
        from torch.onnx import _constants as onnx_constants

        opset = self.opset or onnx_constants.ONNX_DEFAULT_OPSET  # torch.onnx.export's own default
        if self._registry is None:
            registry_opset = max(opset, _constants.TORCHLIB_OPSET)
            self._registry = _registration.ONNXRegistry.from_torchlib(opset_version=registry_opset)
        with _cia_ops_memoised():
            return _core.export(wrapper, examples, {}, registry=self._registry, dynamic_shapes=dynamic,
                                input_names=names, verbose=False, optimize=True, opset_version=opset)


_CIA_MEMO: dict[Any, frozenset[Any]] = {}


@contextmanager
def _cia_ops_memoised() -> Any:
    """torch.export's decomposition step lists every CompositeImplicitAutograd operator of every
    namespace at each export (about 40 % of an export's time here): torch cannot cache the list,
    since registering a custom operator adds to it. Within this context the list is computed once
    per state of the registrations (the namespaces and the number of such registrations), so a new
    registration still recomputes it; an exported model is byte-identical either way (tested)."""
    try:
        import torch._export.utils as export_utils
        import torch.export.decomp_utils as decomp_utils
        import torch.export.exported_program as exported_program
    except ImportError:  # another torch: export as it does
        yield
        return
    modules = [m for m in (exported_program, decomp_utils) if hasattr(m, "_collect_all_valid_cia_ops")]
    original = export_utils._collect_all_valid_cia_ops
    torch = _torch()

    def memoised() -> set[Any]:
        key = (tuple(torch.ops._dir),
               len(torch._C._dispatch_get_registrations_for_dispatch_key("CompositeImplicitAutograd")))
        if key not in _CIA_MEMO:
            _CIA_MEMO.clear()
            _CIA_MEMO[key] = frozenset(original())
        return set(_CIA_MEMO[key])

    saved = [m._collect_all_valid_cia_ops for m in modules]
    for m in modules:
        m._collect_all_valid_cia_ops = memoised
    try:
        yield
    finally:
        for m, fn in zip(modules, saved):
            m._collect_all_valid_cia_ops = fn


def _write_back(t: Any, new: Any) -> None:
    """Store ``new`` into ``t`` in place; into an expanded tensor (stride 0 along some dims, as an
    in-place fill leaves it) through the view that holds each element once."""
    index = tuple(slice(0, 1) if st == 0 and n > 1 else slice(None) for st, n in zip(t.stride(), t.shape))
    if any(isinstance(i, slice) and i.stop == 1 for i in index):
        t[index].copy_(new[index])
    else:
        t.copy_(new)


def _bits(t: Any) -> Any:
    """A tensor's values as integers of its width (NaN payloads and signed zeros compare exactly)."""
    torch = _torch()
    t = t.detach().contiguous()
    if not t.dtype.is_floating_point:
        return t
    return t.view({8: torch.int64, 4: torch.int32, 2: torch.int16}[t.element_size()])


def _output_dtypes(tree: _Tree, n: int, session: Any) -> list[Any]:
    torch = _torch()
    table = {"tensor(double)": torch.float64, "tensor(float)": torch.float32, "tensor(float16)": torch.float16,
             "tensor(bfloat16)": torch.bfloat16, "tensor(int64)": torch.int64, "tensor(int32)": torch.int32,
             "tensor(bool)": torch.bool, "tensor(int8)": torch.int8, "tensor(uint8)": torch.uint8}
    return [table.get(o.type, None) for o in session.get_outputs()[:n]]


# ONNX Runtime's CPU GRU and LSTM kernels are registered for float64 but refuse it when they run
# ("GRU operator does not support double yet"): a missing kernel, like one missing at load time.
_RUN_TIME_NO_KERNEL = re.compile(r"operator does not support \w+ yet")


def _session(model: Any) -> Any:
    """An ONNX Runtime CPU session of ``model``: a missing kernel is NotImplementedError (unsupported),
    any other refusal a failed export."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # a run's parallelism is -j (one worker per target in flight)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        text = _text(exc)
        if "NOT_IMPLEMENTED" in text or type(exc).__name__ == "NotImplemented":
            raise NotImplementedError(f"onnxruntime has no kernel: {text}") from None
        if re.search(r"Type Error: Type 'tensor\((bfloat16|float16)\)' of input parameter", text):
            raise NotImplementedError(f"onnxruntime's operator does not take this dtype: {text}") from None
        raise CompileFailure(f"export: onnxruntime cannot load the exported model: {text}") from None


def _eager_error(fn: Any, args: list[Any], kwargs: dict[str, Any]) -> BaseException | None:
    """The error eager torch raises for the call (run on copies), or None when it runs."""
    torch = _torch()
    try:
        fn, args, kwargs = copy.deepcopy((fn, args, kwargs))
        with torch.no_grad():
            fn(*args, **kwargs)
    except Exception as exc:  # the call's own error
        return exc
    return None


@contextmanager
def _quiet() -> Any:
    """The exporters warn and log at every export; the records hold what matters."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        previous = logging.root.manager.disable
        logging.disable(logging.CRITICAL)
        try:
            yield
        finally:
            logging.disable(previous)

