"""Predicates of the known torch.compile discrepancies of the activations, utilities, containers, paddings and
transformer layers (conformance/known/torch_compile_utils.toml): which calls dynamo cannot capture as one graph,
which inductor cannot compile, and where inductor's code departs from eager's."""

from __future__ import annotations

import numpy as np

from backends.base import Case
from backends.torch_compile import runs_dynamic_graph
from conformance import strategies as S
from conformance.composition import layers_of
from conformance.numerics.containers import BATCH_NORMS, grads, inf_norm_of_an_empty_tensor, modulelist_inserts_a_tensor


def total_norm_checks_nonfinite(case: Case) -> bool:
    """get_total_norm or clip_grad_norm_ with error_if_nonfinite over at least one tensor, reaching the check on
    the total's value (not the infinity norm with an empty tensor, which raises while tracing the norm, before it)."""
    return bool(case.params.get("error_if_nonfinite")) and bool(grads(case)) and not inf_norm_of_an_empty_tensor(case)


def norm_sums_a_parameter_grad_without_sources(case: Case) -> bool:
    """clip_grad_norm_ on a dynamic graph summing |g|^p in a reduced format (foreach=False, a finite norm_type,
    not float64, no error_if_nonfinite check) over a gradient with two or more dims of size >= 2."""
    if not runs_dynamic_graph(case) or case.dtype == "float64" or case.params.get("foreach") is not False:
        return False
    if case.params.get("error_if_nonfinite") or not np.isfinite(float(case.params.get("norm_type", 2.0))):
        return False
    return any(sum(1 for n in np.shape(g) if n >= 2) >= 2 for g in grads(case))


def _steps(case: Case) -> list[dict]:
    return list(case.params.get("steps", ()))


def _first_break(case: Case) -> str:
    """Where compiling a container case's steps, one call at a time, first stops: ``"__iter__"`` (the iterator
    returned), ``"insert"`` (a ModuleList.insert at index >= 0 on a dynamic graph: str of a symbolic int),
    ``"append"`` (ModuleList.append of a plain tensor: its TypeError's message calls torch.typename), ``"raises"``
    (a negative ModuleList.insert raises KeyError first, as in eager) or ``""`` (none)."""
    dynamic = runs_dynamic_graph(case)
    for step in _steps(case):
        method, args = step.get("method"), step.get("args") or ()
        if method == "__iter__":
            return "__iter__"
        if method == "append" and step.get("op") == "store a tensor" and case.params.get("container") == "ModuleList":
            return "append"
        if method == "insert" and case.params.get("container") == "ModuleList" and isinstance(args[0], int):
            if args[0] < 0:
                return "raises"
            if dynamic:
                return "insert"
    return ""


def returns_a_container_iterator(case: Case) -> bool:
    """A container case whose compiled steps first stop at a call of ``__iter__`` (every list-like observation,
    a ``chain`` forward)."""
    return _first_break(case) == "__iter__"


def inserts_at_a_symbolic_index(case: Case) -> bool:
    """A ModuleList case on a dynamic graph whose compiled steps first stop at an insert at index >= 0."""
    return _first_break(case) == "insert"


def appends_a_tensor(case: Case) -> bool:
    """An invalid ModuleList case whose compiled steps first stop at appending a plain tensor (append checks the
    type and raises a TypeError whose message calls torch.typename)."""
    return case.invalid and _first_break(case) == "append"


# (attention mask, key padding mask) input pairs that _canonical_mask compares
MASK_PAIRS = (("attn_mask", "key_padding_mask"), ("src_mask", "src_key_padding_mask"),
              ("tgt_mask", "tgt_key_padding_mask"), ("memory_mask", "memory_key_padding_mask"))


def mask_types_differ(case: Case) -> bool:
    """An attention mask and its key padding mask both given, one bool and the other float (torch warns)."""
    return any(a in case.inputs and k in case.inputs and case.input_type(a) != case.input_type(k)
               for a, k in MASK_PAIRS)


def fast_path_src_dense_not_contiguous(case: Case) -> bool:
    """An eval TransformerEncoderLayer fast-path call (batch_first, batched) whose non-empty src is dense but not
    contiguous (a permuted layout that size-1 dims do not make contiguous)."""
    shape = tuple(np.shape(case.inputs["src"]))
    if case.train or not case.params.get("batch_first") or len(shape) != 3 or 0 in shape:
        return False
    strides = S.torch_strides(shape, case.layout("src"))
    return S.is_non_overlapping_and_dense(shape, strides) and not S.is_contiguous_in_order(shape, strides, (2, 1, 0))


def inserts_a_tensor_on_a_static_graph(case: Case) -> bool:
    """An invalid ModuleList case inserting a plain tensor, on a static graph, with no call before it that does not
    compile (on a dynamic graph the insert itself does not compile: inserts_at_a_symbolic_index)."""
    return modulelist_inserts_a_tensor(case) and not runs_dynamic_graph(case) and not _first_break(case)


def constant_pad_crops_past_the_input(case: Case) -> bool:
    """A constant padding (a tuple (left, right, ...) from the last dim back) whose negative pads crop more than a
    dim's elements (eager's narrow raises: size + left < 0, or size + min(left, 0) + right < 0 with right < 0) while
    the padded size size + left + right stays >= 0 (inductor computes only that size)."""
    padding = case.params.get("padding")
    if not isinstance(padding, (list, tuple)) or len(padding) % 2:
        return False
    shape = np.shape(case.inputs["input"])
    if len(padding) // 2 > len(shape):
        return False
    crops = False
    for i in range(len(padding) // 2):
        size, left, right = shape[len(shape) - 1 - i], padding[2 * i], padding[2 * i + 1]
        if size + left + right < 0:
            return False
        kept = size + min(left, 0)
        crops = crops or kept < 0 or (right < 0 and kept + right < 0)
    return crops


def reflection_pad_crops_past_the_input(case: Case) -> bool:
    """A reflection padding (a tuple (left, right, ...) from the last dim back) with a negative pad larger than its
    dim (left < -size or right < -size), which eager accepts."""
    padding = case.params.get("padding")
    if not isinstance(padding, (list, tuple)) or len(padding) % 2:
        return False
    shape = np.shape(case.inputs["input"])
    pairs = [(shape[len(shape) - 1 - i], padding[2 * i], padding[2 * i + 1])
             for i in range(min(len(padding) // 2, len(shape)))]
    return any(left < -size or right < -size for size, left, right in pairs)


def model_batchnorm_cumulative_average(case: Case) -> bool:
    """A composed model (Sequential, ModuleList, ModuleDict...) in training with a BatchNorm layer that tracks running
    statistics with momentum=None (the cumulative average 1/num_batches_tracked, read from a buffer's value)."""
    if not case.train or "layers" not in case.params:
        return False
    return any(layer["op"] in BATCH_NORMS and layer["params"].get("momentum", 0.1) is None
               and layer["params"].get("track_running_stats", True) for layer in layers_of(case))


def model_single_element_embedding_backward(case: Case) -> bool:
    """A composed model whose differentiable Embedding weight has a single element (num_embeddings = embedding_dim = 1,
    dense gradient) and which looks up two or more indices: the backward scatter-adds several rows into one element."""
    if "layers" not in case.params or np.size(case.inputs.get("input", ())) < 2:
        return False
    return any(layer["op"] == "Embedding" and layer["params"].get("num_embeddings") == 1
               and layer["params"].get("embedding_dim") == 1 and not layer["params"].get("sparse")
               and layer["paths"].get("weight") in case.differentiable for layer in layers_of(case))


def sets_a_dotted_key(case: Case) -> bool:
    """A container case with a ``__setitem__`` step whose key is a string containing '.' (invalid: a module name)."""
    return any(step.get("method") == "__setitem__" and isinstance((step.get("args") or [None])[0], str)
               and "." in step["args"][0] for step in _steps(case))


def sets_a_tensor_in_a_moduledict(case: Case) -> bool:
    """A ModuleDict case with a ``__setitem__`` step storing a plain tensor (invalid: not a Module)."""
    return case.params.get("container") == "ModuleDict" and any(
        step.get("method") == "__setitem__" and step.get("op") == "store a tensor" for step in _steps(case))
