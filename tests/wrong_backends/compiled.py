"""Deliberately wrong adapters built on the two translating backends: ONNX export (a faulty
exporter writes a wrong attribute into the model) and torch.compile (a faulty graph pass of a
compiler). Each models a mistake real exporters and compilers have made."""

from __future__ import annotations

import torch

from backends.onnxruntime_backend import OnnxRuntimeBackend
from backends.torch_compile import TorchCompileBackend


def _set_attribute(model, op_type: str, name: str, value: int):
    """Every ``op_type`` node of ``model`` with integer attribute ``name`` set to ``value``."""
    import onnx

    for graph in [model.graph, *(f for f in getattr(model, "functions", ()))]:
        for node in graph.node:
            if node.op_type == op_type:
                kept = [a for a in node.attribute if a.name != name]
                del node.attribute[:]
                node.attribute.extend([*kept, onnx.helper.make_attribute(name, value)])
    return model


class _Traced(OnnxRuntimeBackend):
    """The TorchScript exporter (a tenth of the dynamo exporter's cost per export: shrinking exports
    every step's case); the bugs below are in the model either exporter writes."""

    def __init__(self):
        super().__init__("torchscript")


class OnnxMaxPoolWithoutCeilMode(_Traced):
    """An exporter that drops ``ceil_mode`` from MaxPool (pytorch#71549's family of bugs): the last,
    partial window of a ceil_mode pooling disappears (wrong output shape)."""

    name = "wrong-onnx-maxpool-no-ceil"

    def transform_model(self, model, case):
        return _set_attribute(model, "MaxPool", "ceil_mode", 0)


class OnnxAvgPoolExcludingPadding(OnnxRuntimeBackend):
    """An exporter that always writes ``count_include_pad=0``: windows overlapping the padding are
    divided by their in-bounds taps only, whatever the module says. (On the dynamo exporter: the
    TorchScript exporter's unbatched AvgPool1d models are invalid, a finding of their own.)"""

    name = "wrong-onnx-avgpool-exclude-pad"

    def transform_model(self, model, case):
        return _set_attribute(model, "AveragePool", "count_include_pad", 0)


def _rewrite(gm: torch.fx.GraphModule, target, replace) -> torch.fx.GraphModule:
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target is target:
            replace(node)
    gm.recompile()
    return gm


def tanh_gelu(gm: torch.fx.GraphModule, example_inputs: list) -> torch.fx.GraphModule:
    """A compiler pass that lowers every GELU to its tanh approximation ("fast math")."""

    def replace(node):
        node.kwargs = {**node.kwargs, "approximate": "tanh"}

    return _rewrite(gm, torch._C._nn.gelu, replace)


class CompiledGeluTanh(TorchCompileBackend):
    """torch.compile with a compiler that approximates exact GELU by its tanh form (error ~1e-3)."""

    name = "wrong-compile-gelu-tanh"

    def __init__(self):
        super().__init__(tanh_gelu)


def naive_log_softmax(gm: torch.fx.GraphModule, example_inputs: list) -> torch.fx.GraphModule:
    """A compiler pass that computes log_softmax as log(softmax(x)): -inf (and a NaN gradient) once
    a probability underflows, where the fused form stays finite."""

    def replace(node):
        with gm.graph.inserting_before(node):
            dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
            # F.softmax takes dim=None as log_softmax does (the legacy implicit dim)
            soft = gm.graph.call_function(torch.nn.functional.softmax, (node.args[0], dim))
            node.target, node.args, node.kwargs = torch.log, (soft,), {}

    return _rewrite(gm, torch.nn.functional.log_softmax, replace)


class CompiledNaiveLogSoftmax(TorchCompileBackend):
    """torch.compile with a compiler that splits log_softmax into log(softmax(x))."""

    name = "wrong-compile-naive-log-softmax"

    def __init__(self):
        super().__init__(naive_log_softmax)
