"""Predicates and models of the known torch.compile discrepancies of the activations, utilities, containers,
paddings, transformer layers, ChannelShuffle and the sparse family (conformance/known/torch_compile*.toml): which
calls dynamo cannot capture as one graph, which inductor cannot compile, and where compiled code departs
from eager's."""

from __future__ import annotations

import numpy as np

from backends.base import Case, Result
from backends.onnxruntime_known_utils import pad_sequence_negative_zero_padding
from backends.torch_compile import RECOMPILE_LIMIT, runs_dynamic_graph
from conformance import strategies as S
from conformance.composition import layers_of
from conformance.dtypes import DTYPES
from conformance.numerics import attention as NA
from conformance.numerics import sparse as SP
from conformance.numerics.attention_compiled import compiled_nested_path_does_not_compile
from conformance.numerics.containers import BATCH_NORMS, grads, inf_norm_of_an_empty_tensor, modulelist_inserts_a_tensor
from conformance.strategies import copies as C
from conformance.tolerance import accumulated_offset
from reference import embedding_bag as bag_ref


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
    returned), ``"insert"`` (a ModuleList.insert at index >= 0, or a Sequential.insert in range, on a dynamic graph:
    str of a symbolic int), ``"append"`` (ModuleList or Sequential append of a plain tensor: its TypeError's message
    calls torch.typename), ``"raises"`` (a negative ModuleList.insert raises KeyError first, as in eager, and a
    Sequential.insert out of range IndexError) or ``""`` (none)."""
    dynamic, container = runs_dynamic_graph(case), case.params.get("container")
    for step in _steps(case):
        method, args = step.get("method"), step.get("args") or ()
        if method == "__iter__":
            return "__iter__"
        if method == "append" and step.get("op") == "store a tensor" and container in ("ModuleList", "Sequential"):
            return "append"
        if method == "insert" and container == "ModuleList" and isinstance(args[0], int):
            if args[0] < 0:
                return "raises"
            if dynamic:
                return "insert"
        if method == "insert" and container == "Sequential" and isinstance(args[0], int):
            if step.get("op") == "insert out of range":  # IndexError before the index is used
                return "raises"
            if dynamic:
                return "insert"
    return ""


def returns_a_container_iterator(case: Case) -> bool:
    """A container case whose compiled steps first stop at a call of ``__iter__`` (every list-like observation,
    a ``chain`` forward)."""
    return _first_break(case) == "__iter__"


def inserts_at_a_symbolic_index(case: Case) -> bool:
    """A ModuleList or Sequential case on a dynamic graph whose compiled steps first stop at an insert."""
    return _first_break(case) == "insert"


def appends_a_tensor(case: Case) -> bool:
    """An invalid ModuleList or Sequential case whose compiled steps first stop at appending a plain tensor (append
    checks the type and raises a TypeError whose message calls torch.typename)."""
    return case.invalid and _first_break(case) == "append"


# (attention mask, key padding mask) input pairs that _canonical_mask compares
# (TransformerEncoder's forward names its attention mask ``mask``)
MASK_PAIRS = (("attn_mask", "key_padding_mask"), ("src_mask", "src_key_padding_mask"), ("mask", "src_key_padding_mask"),
              ("tgt_mask", "tgt_key_padding_mask"), ("memory_mask", "memory_key_padding_mask"))


def mask_types_differ(case: Case) -> bool:
    """An attention mask and its key padding mask both given, one bool and the other float (torch warns)."""
    return any(a in case.inputs and k in case.inputs and case.input_type(a) != case.input_type(k)
               for a, k in MASK_PAIRS)


def fast_path_src_dense_not_contiguous(case: Case) -> bool:
    """An encoder layer on the eval fast path under compile (``encoder_layer_fast_path``: TransformerEncoderLayer,
    or a TransformerEncoder's first layer, which compiled torch reaches on the dense path unless its nested path
    does not compile) whose non-empty src is dense but not contiguous (a permuted layout that size-1 dims do not
    make contiguous)."""
    if not NA.encoder_layer_fast_path(case) or compiled_nested_path_does_not_compile(case):
        return False
    shape = tuple(np.shape(case.inputs["src"]))
    if 0 in shape:
        return False
    strides = S.torch_strides(shape, case.layout("src"))
    return S.is_non_overlapping_and_dense(shape, strides) and not S.is_contiguous_in_order(shape, strides, (2, 1, 0))


def inserts_a_tensor_on_a_static_graph(case: Case) -> bool:
    """An invalid ModuleList case inserting a plain tensor, on a static graph, with no call before it that does not
    compile (on a dynamic graph the insert itself does not compile: inserts_at_a_symbolic_index)."""
    return modulelist_inserts_a_tensor(case) and not runs_dynamic_graph(case) and not _first_break(case)


def _padding_pairs(case: Case) -> list[tuple[int, int, int]]:
    """(size, left, right) per padded dim, last dim first, of a padding case (an int padding expanded, as torch
    does); empty for an odd number of amounts or more padded dims than the input has (torch raises first)."""
    padding = C.flat_padding(case)
    shape = np.shape(case.inputs["input"])
    if len(padding) % 2 or len(padding) // 2 > len(shape):
        return []
    return [(shape[len(shape) - 1 - i], padding[2 * i], padding[2 * i + 1]) for i in range(len(padding) // 2)]


def constant_pad_crops_past_the_input(case: Case) -> bool:
    """A constant padding (an int, or a tuple (left, right, ...) from the last dim back) whose negative pads crop
    more than a dim's elements (eager's narrow raises: size + left < 0, or size + min(left, 0) + right < 0 with
    right < 0) while the padded size size + left + right stays >= 0 (inductor computes only that size)."""
    pairs = _padding_pairs(case)
    if any(size + left + right < 0 for size, left, right in pairs):
        return False
    return any(size + min(left, 0) < 0 or (right < 0 and size + min(left, 0) + right < 0)
               for size, left, right in pairs)


def reflection_pad_crops_past_the_input(case: Case) -> bool:
    """A reflection padding (an int, or a tuple (left, right, ...) from the last dim back) with a negative pad
    larger than its dim (left < -size or right < -size), which eager accepts."""
    return any(left < -size or right < -size for size, left, right in _padding_pairs(case))


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


REPLICATE_PADDED_CONVS = frozenset({"Conv1d", "Conv2d", "Conv3d", "LazyConv1d", "LazyConv2d", "LazyConv3d"})


def model_replicate_padded_conv(case: Case) -> bool:
    """A composed model with a convolution that pads in mode 'replicate' (its backward runs eager's
    replication_pad backward kernel, whose strides inductor asserts)."""
    if "layers" not in case.params:
        return False
    return any(layer["op"] in REPLICATE_PADDED_CONVS and layer["params"].get("padding_mode") == "replicate"
               for layer in layers_of(case))


def sets_a_dotted_key(case: Case) -> bool:
    """A container case with a ``__setitem__`` step whose key is a string containing '.' (invalid: a module name)."""
    return any(step.get("method") == "__setitem__" and isinstance((step.get("args") or [None])[0], str)
               and "." in step["args"][0] for step in _steps(case))


def sets_a_tensor_in_a_moduledict(case: Case) -> bool:
    """A ModuleDict case with a ``__setitem__`` step storing a plain tensor (invalid: not a Module)."""
    return case.params.get("container") == "ModuleDict" and any(
        step.get("method") == "__setitem__" and step.get("op") == "store a tensor" for step in _steps(case))


def _vector_parameters(case: Case) -> list[str]:
    """The parameter inputs of a vector_to_parameters case given a tensor vector, in order (none for a list)."""
    if case.params.get("vec_as") != "tensor" or "vec" not in case.inputs:
        return []
    return [f"param{i}" for i in range(int(case.params.get("count", 0))) if f"param{i}" in case.inputs]


def vector_sets_data_of_a_symbolic_size(case: Case) -> bool:
    """vector_to_parameters on a dynamic graph assigning ``.data`` of a non-empty parameter with a dim of size >= 2
    (a size symbol of the input, which the slice of the vector and view_as guard on)."""
    return runs_dynamic_graph(case) and any(
        0 not in np.shape(case.inputs[n]) and any(s >= 2 for s in np.shape(case.inputs[n]))
        for n in _vector_parameters(case))


def vector_slice_strides_differ(case: Case) -> bool:
    """vector_to_parameters with a non-empty parameter whose strides (dims of size >= 2) differ from those of its
    slice of the vector viewed as the parameter (its contiguous strides times the vector's stride)."""
    names = _vector_parameters(case)
    vec = np.shape(case.inputs["vec"]) if names else ()
    if not names or not vec or not vec[0]:
        return False
    step = S.torch_strides(vec, case.layout("vec"))[0]
    for name in names:
        shape = np.shape(case.inputs[name])
        if not shape or 0 in shape:
            continue
        have = S.torch_strides(shape, case.layout(name))
        want = [int(np.prod(shape[d + 1:], dtype=np.int64)) * step for d in range(len(shape))]
        if any(n >= 2 and h != w for n, h, w in zip(shape, have, want)):
            return True
    return False


def parameterlist_indexes_past_the_recompile_limit(case: Case) -> bool:
    """A ParameterList case whose ``__getitem__`` steps with an int index, up to the first step that raises (torch's
    ParameterList has no del, insert or pop), index it at more than RECOMPILE_LIMIT distinct (index, length) pairs:
    dynamo specialises the index and guards on the length, so each pair compiles one more graph of one signature."""
    if case.params.get("container") != "ParameterList":
        return False
    from reference import containers as model

    p = case.params
    resolver = model.Resolver(p["entries"], case.inputs)
    container = model.build("ParameterList", p["init"], p.get("named", False), resolver)
    seen: set[tuple[int, int]] = set()
    for step in _steps(case):
        args = step.get("args") or ()
        if step.get("method") in ("__delitem__", "insert", "pop") and "on" not in step:
            return False  # AttributeError: ParameterList has none of them (parameterlist-without-del-insert-pop)
        if step.get("method") == "__getitem__" and "on" not in step and args and type(args[0]) is int:
            seen.add((args[0], len(container)))
            if len(seen) > RECOMPILE_LIMIT:
                return True
        try:
            model.run(container, [step], resolver, model.Encoder(()))
        except Exception:  # the step raises (as it does compiled): no later step runs
            return False
    return False


def pad_sequence_negative_zero_default_dropped(case: Case) -> bool:
    """pad_sequence with padding_value -0.0, some padding and padding_side 'right' (the default) on a static graph:
    the trailing -0.0 equals its schema default 0.0 and is dropped before the Python decomposition."""
    return (pad_sequence_negative_zero_padding(case) and case.params.get("padding_side", "right") == "right"
            and not runs_dynamic_graph(case))


def pad_sequence_negative_zero_specialised(case: Case) -> bool:
    """pad_sequence with padding_value -0.0 and some padding on a dynamic graph: the unspecialised float argument is
    specialised again through sympy, which has no -0.0 (either padding side)."""
    return pad_sequence_negative_zero_padding(case) and runs_dynamic_graph(case)


def weight_norm_runs_the_interface(case: Case) -> bool:
    """A valid parametrizations.weight_norm case whose dim is 0 or the weight's last dim, counted from 0 (torch's
    _weight_norm then calls _weight_norm_interface, whose backward the graph runs for a differentiable g or v)."""
    from conformance.numerics.parametrizations import WEIGHT

    dim, names = case.params.get("dim"), (f"{WEIGHT}.original0", f"{WEIGHT}.original1")
    if case.invalid or type(dim) is not int or not any(n in case.differentiable for n in names):
        return False
    rank = np.ndim(case.inputs.get(names[1], ()))
    return rank >= 1 and dim in (0, rank - 1)


def constant_pad_negative_zero_specialised(case: Case) -> bool:
    """A valid ConstantPad case padding with value -0.0 into a non-empty output with some padded element, on a
    dynamic graph: the unspecialised float attribute is specialised again through sympy, which has no -0.0."""
    value = case.params.get("value")
    if case.invalid or not isinstance(value, float) or value != 0.0 or not np.signbit(value):
        return False
    sizes = C.padded_sizes(case)
    lead = np.shape(case.inputs["input"])[:-len(sizes)] if sizes else ()
    return (runs_dynamic_graph(case) and all(out > 0 for *_, out in sizes) and all(n > 0 for n in lead)
            and any(left > 0 or right > 0 for _, left, right, _ in sizes))


def _affine_grid_backward(case: Case) -> tuple[int, ...] | None:
    """The size of a valid affine_grid case whose theta is differentiable (the compiled graph has a backward)."""
    size = case.params.get("size")
    if case.invalid or "theta" not in case.differentiable or not isinstance(size, (list, tuple)):
        return None
    return tuple(int(n) for n in size)


def affine_grid_backward_symbolic_size(case: Case) -> bool:
    """A differentiable affine_grid on a dynamic graph with a size entry >= 2 (a symbolic int in its size)."""
    size = _affine_grid_backward(case)
    return size is not None and runs_dynamic_graph(case) and any(n >= 2 for n in size)


def affine_grid_backward_single_step(case: Case) -> bool:
    """A differentiable affine_grid with a spatial size 1 (its base grid is a constant tensor), on a graph with no
    symbolic size (static, or dynamic with every size 0 or 1)."""
    size = _affine_grid_backward(case)
    return size is not None and 1 in size[2:] and not affine_grid_backward_symbolic_size(case)


def parameterdict_updates_from_a_dict(case: Case) -> bool:
    """A ParameterDict case updating from a non-empty plain dict (update sorts its items, (key, tensor) pairs)."""
    return case.params.get("container") == "ParameterDict" and any(
        step.get("method") == "update" and "on" not in step and isinstance((step.get("args") or [None])[0], dict)
        and step["args"][0].get("mapping") == "dict" and bool(step["args"][0].get("pairs")) for step in _steps(case))


def replication_pad_channels_last_input(case: Case) -> bool:
    """A valid ReplicationPad2d case on a non-empty 4-d input laid out channels_last and not contiguous (size-1 dims
    ignored): eager's backward returns a channels_last gradient, its meta kernel a contiguous one."""
    shape = tuple(np.shape(case.inputs["input"]))
    if case.invalid or len(shape) != 4 or 0 in shape:
        return False
    strides = S.torch_strides(shape, case.layout("input"))
    return S.is_contiguous_in_order(shape, strides, (1, 3, 2, 0)) and not S.is_contiguous_in_order(
        shape, strides, (3, 2, 1, 0))


def _unflatten_overlap(case: Case) -> tuple[tuple[int, ...], list[int]] | None:
    """(the input's shape, its expanded dims) of a valid Unflatten case with an int dim whose non-empty, differentiable
    input is expanded along a dim of size >= 2 (elements sharing memory); None otherwise."""
    dim, sizes = case.params.get("dim"), case.params.get("unflattened_size")
    if case.invalid or type(dim) is not int or "input" not in case.differentiable:
        return None
    if not isinstance(sizes, (list, tuple)) or not all(type(n) is int for n in sizes):
        return None
    layout = case.layout("input")
    shape = tuple(int(n) for n in np.shape(case.inputs["input"]))
    if layout.kind != "expanded" or not shape or 0 in shape:
        return None
    dims = [d % len(shape) for d in layout.dims]
    return (shape, dims) if any(shape[d] >= 2 for d in dims) else None


def unflatten_expanded_view_replayed_as_strided(case: Case) -> bool:
    """A valid Unflatten of an input expanded along a dim of size >= 2, on a dynamic graph, whose view has a symbolic
    size: another dim of size >= 2 (a size symbol), or the unflattened dim of size >= 2 split with a -1 (s // k);
    sizes 0 and 1 are specialised, and explicit sizes guard the unflattened dim to a constant. The cotangent differs
    between elements sharing memory (else their mean is each one's)."""
    found = _unflatten_overlap(case)
    if found is None or not runs_dynamic_graph(case):
        return False
    shape, dims = found
    dim = case.params["dim"] % len(shape)
    sizes = list(case.params["unflattened_size"])
    inferred = -1 in sizes and shape[dim] >= 2 and not (
        # measured: a -1 that comes out 1 after a size equal to the whole dim is specialised (e.g. (2, -1) of a size
        # 2: not (-1, 2), (1, -1, 2) or (2, 3, -1) of a size 6)
        int(np.prod([n for n in sizes if n != -1])) == shape[dim] and shape[dim] in sizes[:sizes.index(-1)])
    if not (inferred or any(n >= 2 for d, n in enumerate(shape) if d != dim)):
        return False
    cot = case.cotangents.get("output")
    if cot is None:
        return True
    cot = np.asarray(cot, dtype=np.float64).reshape(shape)  # (equal cotangents over a group: their mean is each)
    return bool(np.any(cot != np.broadcast_to(cot.max(axis=tuple(dims), keepdims=True), shape)))


def unflatten_expanded_gradient_model(case: Case, reference: Result, got: Result) -> dict[str, object]:
    """What as_strided's backward returns for an expanded input (AOTAutograd regenerates the output as
    input.as_strided(...)): the cotangent, in the input's shape, summed in order (index_add_, one rounding per
    addition in the dtype) over the elements sharing memory (the expanded dims) and divided by their count."""
    found = _unflatten_overlap(case)
    cot = case.cotangents.get("output")
    if found is None or cot is None:
        return {}
    shape, dims = found
    dt = DTYPES[case.dtype]
    cot = np.asarray(cot, dtype=np.float64).reshape(shape)
    group = tuple(slice(0, 1) if d in dims else slice(None) for d in range(len(shape)))
    total = np.zeros(cot[group].shape)
    magnitude = np.zeros(cot[group].shape)
    for at in np.ndindex(*[shape[d] for d in dims]):
        pos = dict(zip(dims, at))
        part = cot[tuple(slice(pos[d], pos[d] + 1) if d in pos else slice(None) for d in range(len(shape)))]
        total = dt.round(total + part)
        magnitude = magnitude + np.abs(part)
    count = int(np.prod([shape[d] for d in dims]))
    mean = dt.round(total / count)
    return {"grad.input": (np.broadcast_to(mean, shape).copy(), np.broadcast_to(magnitude / count, shape).copy())}


def clip_value_zero_sign_differs(case: Case) -> bool:
    """clip_grad_value_ with clip_value ±0 over a gradient holding a negative element (eager clamps it to -clip_value,
    the zero of the other sign) or a zero of the other sign than clip_value (eager keeps it); inductor's clamp returns
    the bound wherever an element equals it, so every element becomes clip_value itself."""
    value = case.params.get("clip_value")
    if not isinstance(value, (int, float)) or value != 0:
        return False
    negative = bool(np.signbit(value))
    for g in grads(case):
        g = np.asarray(g, dtype=np.float64)
        if np.any(g < 0) or np.any((g == 0) & (np.signbit(g) != negative)):
            return True
    return False


def rrelu_training_input_not_dense(case: Case) -> bool:
    """RReLU in training on a non-empty input that is not non-overlapping-and-dense (strided, or expanded along a dim
    of size >= 2): its noise tensor, empty_like(input), is filled by aten.uniform, inductor's eager fallback."""
    shape = tuple(int(n) for n in np.shape(case.inputs["input"]))
    if not case.train or 0 in shape:
        return False
    return not S.is_non_overlapping_and_dense(shape, S.torch_strides(shape, case.layout("input")))


def _bag_index_count(case: Case) -> int:
    """How many indices an EmbeddingBag case looks up (the input's size, padding entries included)."""
    return int(np.prod(np.shape(case.inputs["input"])))


def sparse_bag_max_norm_backward_fails(case: Case) -> bool:
    """A sparse EmbeddingBag with max_norm (no padding_idx, per_sample_weights or scale_grad_by_freq) whose sparse
    weight gradient is rescaled (mode mean) or restrided (a permuted weight), looking up one index, or two or more on
    a dynamic graph: AOTAutograd fails to compile its backward."""
    p = case.params
    if not p.get("sparse") or p.get("max_norm") is None or p.get("padding_idx") is not None:
        return False
    if p.get("scale_grad_by_freq") or "per_sample_weights" in case.inputs:
        return False
    if p.get("mode") != "mean" and case.layout("weight").kind != "permuted":
        return False
    n = _bag_index_count(case)
    return n == 1 or (n >= 2 and runs_dynamic_graph(case))


def sparse_bag_max_norm_permuted_weight_static(case: Case) -> bool:
    """A sparse EmbeddingBag with max_norm on a permuted weight (no per_sample_weights or scale_grad_by_freq), looking
    up two or more indices on a static graph: inductor's stride assert on the gradient's add raises."""
    p = case.params
    if not p.get("sparse") or p.get("max_norm") is None or p.get("scale_grad_by_freq"):
        return False
    if "per_sample_weights" in case.inputs or case.layout("weight").kind != "permuted":
        return False
    return _bag_index_count(case) >= 2 and not runs_dynamic_graph(case)


def bag_frequency_divisor_model(case: Case, reference: Result, got: Result) -> dict[str, object]:
    """grad.weight as torch's CPU EmbeddingBag backward computes it with scale_grad_by_freq (the kernel compiled torch
    calls): each row's gradient divided by the count of the k-th entry of the sorted indices instead of its own count
    (sparse.bag_frequency_divisor_wrong), i.e. the reference's row scaled by own count / that count, its magnitude
    (absref) likewise."""
    value = reference.grads.get("weight")
    p = case.params
    if value is None or not p.get("scale_grad_by_freq") or p.get("mode") == "max" or p.get("sparse"):
        return {}
    layout = bag_ref.bag_layout(case.inputs["input"], case.inputs.get("offsets"), p["include_last_offset"],
                                p["padding_idx"], p["num_embeddings"])
    flat = np.asarray(layout[0], dtype=np.int64).reshape(-1)
    rows = int(p["num_embeddings"])
    ordered = np.sort(flat)
    distinct = np.unique(ordered)
    counts = np.bincount(flat, minlength=rows).astype(np.float64)
    factor = np.ones(rows)
    factor[distinct] = counts[distinct] / counts[ordered[:distinct.size]]
    value = np.asarray(value, dtype=np.float64)
    scale = factor.reshape((rows,) + (1,) * (value.ndim - 1))
    offset = accumulated_offset(case, "grad.weight", value.shape)
    base = np.zeros_like(value) if offset is None else np.asarray(offset, dtype=np.float64)
    predicted = base + (value - base) * scale
    magnitude = SP.bag_magnitude(case, reference).get("grad.weight")
    if magnitude is None or np.shape(magnitude) != value.shape:
        return {"grad.weight": predicted}
    return {"grad.weight": (predicted, np.abs(base) + np.asarray(magnitude, dtype=np.float64) * scale)}


def valid_or_index_out_of_range(case: Case) -> bool:
    """A valid case, or an invalid one whose only fault is an index out of range (Embedding, EmbeddingBag): the index
    values reach no fake tensor, so AOTAutograd compiles (and fails to compile) such a call as it would a valid one."""
    return not case.invalid or case.note == "index out of range"


def _embedding_index_count(case: Case) -> int:
    """How many indices an Embedding case looks up (1 for a 0-d input)."""
    return int(np.size(case.inputs["input"]))


def sparse_embedding_max_norm_backward_fails(case: Case) -> bool:
    """A sparse Embedding with max_norm (valid, or with an index out of range) looking up one index on any graph, or
    two or more on a dynamic graph: AOTAutograd fails to compile its backward."""
    p = case.params
    if not p.get("sparse") or p.get("max_norm") is None or not valid_or_index_out_of_range(case):
        return False
    n = _embedding_index_count(case)
    return n == 1 or (n >= 2 and runs_dynamic_graph(case))


def sparse_embedding_max_norm_permuted_weight_grad_stride(case: Case) -> bool:
    """A valid sparse Embedding with max_norm (no scale_grad_by_freq) on a column-major weight (both dims >= 2) that
    compiles: no index (any graph), or two or more without padding_idx on a static graph; inductor's stride check
    of the gradient's add raises at the backward pass."""
    p = case.params
    if case.invalid or not p.get("sparse") or p.get("max_norm") is None or p.get("scale_grad_by_freq"):
        return False
    if case.layout("weight").kind != "permuted" or min(np.shape(case.inputs["weight"])) < 2:
        return False
    n = _embedding_index_count(case)
    return n == 0 or (n >= 2 and p.get("padding_idx") is None and not runs_dynamic_graph(case))


def dynamic_training_graph(case: Case) -> bool:
    """A valid case on a dynamic-shape graph that takes a gradient (AOTAutograd traces a joint forward and backward
    graph, whose compiled form its persistent cache keeps)."""
    return not case.invalid and bool(case.differentiable) and runs_dynamic_graph(case)


def dynamic_sequential_insert_out_of_range(case: Case) -> bool:
    """A container case on a dynamic graph one of whose steps inserts at an index out of range (Sequential.insert
    raises IndexError with the index formatted into its message)."""
    steps = case.params.get("steps") or ()
    return runs_dynamic_graph(case) and any(step.get("op") == "insert out of range" for step in steps)
