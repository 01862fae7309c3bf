"""Containers: composed models of declared layers (Sequential, ModuleList, ModuleDict, ParameterList,
ParameterDict, DataParallel) and the containers' own list and dict semantics (template
``families.containers``; models ``strategies.containers``, bounds ``conformance.composition``)."""

from conformance.families.containers import composed, operations
from conformance.spec import Regime, declare
from conformance.strategies import container_ops as SO
from conformance.strategies import containers as SC
from conformance.strategies.containers import model_regimes as regimes

declare(composed(
    "Sequential", "index",
    regimes=regimes("exact tier", "five layers", "conv block", "tokens", "in-place ReLU", "Softmax inside",
                    "evaluation mode", "BatchNorm buffers updated", "BatchNorm running statistics in eval")
    + SC.layer_regimes(),
    notes="torch.nn.Sequential(*modules): children named 0, 1, ...; the input passes through them in order. A model "
          "of 1 to 5 declared layers (Linear, ReLU, Conv2d, MaxPool2d, BatchNorm1d/2d, AvgPool2d, Softmax, "
          "Embedding) whose reference composes the layers' references and whose bound propagates each layer's own "
          "bound to first order; compared: the output, the input gradient, every parameter gradient and every "
          "buffer after the call, by container path (bit for bit where the bound is 0; the sign of a zero is not "
          "compared, and an element whose bound reaches past the dtype's range may overflow). Regimes also draw "
          "single layers inside their own declarations' regimes, and wide channel counts.",
))

declare(composed(
    "Sequential", "ordered", variant="ordered",
    regimes=regimes("exact tier", "conv block", "BatchNorm buffers updated"),
    notes="torch.nn.Sequential(OrderedDict): children named after their kind and position (conv0, bn1, ...).",
))

declare(composed(
    "ModuleList", "index", regimes=regimes("conv block", "in-place ReLU", "BatchNorm buffers updated", "tokens"),
    notes="torch.nn.ModuleList(modules) driven by a loop (x = m(x) over the list, in iteration order): a ModuleList "
          "has no forward, and a loop written in the call tree needs no wrapper class in a repro script.",
))

declare(composed(
    "ParameterList", "flat",
    regimes=regimes("exact tier", "five layers", "conv block", "tokens", "in-place ReLU", "Softmax inside",
                    "loss at the end"),
    notes="torch.nn.ParameterList of plain tensors (turned into Parameters) holding the weights of a functional "
          "model: torch.nn.functional calls reading entries 0, 1, ... in order. BatchNorm uses batch statistics.",
))

declare(composed(
    "DataParallel", "module", regimes=regimes("conv block in eval", "BatchNorm running statistics in eval",
                                              "two replicas"),
    notes="torch.nn.DataParallel(Sequential(...)): on a CPU-only machine it runs the wrapped module directly; "
          "parameters and buffers carry the module. prefix. On CUDA the batch is scattered over the replicas "
          "(chunks of ceil(N/k)) and outputs gathered, parameter gradients summed: its models hold no layer whose "
          "result depends on the split (BatchNorm only in evaluation mode, with running statistics).",
))

declare(composed(
    "ModuleDict", "ordered", regimes=regimes("exact tier", "conv block", "BatchNorm buffers updated", "tokens"),
    notes="torch.nn.ModuleDict(OrderedDict) of the layers under keys named after their kind and position (conv0, "
          "bn1, ...), run by a loop over values() (x = m(x) in insertion order, the documented order).",
))

declare(composed(
    "ParameterDict", "keyed",
    regimes=regimes("exact tier", "five layers", "conv block", "in-place ReLU", "loss at the end"),
    notes="torch.nn.ParameterDict(OrderedDict) of plain tensors (turned into Parameters) under keys <layer>_<name> "
          "(fc0_weight, conv1_bias...; a key cannot hold a '.'), read by key by a functional model.",
))

# -- the containers' own list and dict semantics (reference.containers) -----------------------------------------

_LIST_NOTES = (" Observed: length, entries (modules by identity, parameters by value), named_children, "
               "named_parameters and state_dict (names and values), every index from -n to n - 1, and the probe "
               "input run through the entries (PReLU slopes ±1/2, ±1, ±2, ReLU, nested Sequentials: bit for bit, "
               "zeros of either sign). Invalid cases: an index out of range, a value of the wrong type.")

declare(operations(
    "ModuleList",
    regimes=(Regime("negative indices", SO.negative_index, SO.NEGATIVE_PINS),
             Regime("a module stored twice", SO.stored_twice,
                    {"initial entries": 1, "op[0]": "append", "op[0].value.source": "one it holds"}),
             Regime("slices", SO.did("slice", "del slice"), {"initial entries": 3, "op[0]": "slice"}),
             Regime("c + other", SO.did("plus"), {"op[0]": "plus", "op[0].count": 2}),
             Regime("emptied", SO.empty_at_the_end, {"initial entries": 2, "operations": 1, "op[0]": "del slice",
                                                     "op[0].start": 0, "op[0].stop": 4, "op[0].step": None}),
             Regime("nested containers", SO.nested, {"initial entries": 2, "init[*].kind": "sequential"}),
             Regime("insert at a negative index", SO.did("insert at a negative index"),
                    {"initial entries": 2, "op[0]": "insert at a negative index"},
                    "documented as list.insert: torch 2.13 raises KeyError (a known discrepancy)"),
             Regime("insert past the end", SO.did("insert past the end"),
                    {"initial entries": 1, "operations": 1, "op[0]": "insert past the end"},
                    "list.insert appends: torch 2.13 names the module str(index) (a known discrepancy)")),
    notes="torch.nn.ModuleList 'can be indexed like a regular Python list': append, extend, +=, insert (before an "
          "index; at the end past it), c[i] = m and del c[i] with negative indices, del of slices, pop, slices (a new "
          "list, renumbered) and c + other; children named 0 .. n-1 after every operation; a module stored twice is "
          "registered once (named_children, named_parameters: its first name) and saved twice (state_dict)."
          + _LIST_NOTES,
))

declare(operations(
    "Sequential",
    regimes=(Regime("negative indices", SO.negative_index, SO.NEGATIVE_PINS),
             Regime("insert at a negative index", SO.negative_index,
                    {"initial entries": 2, "operations": 1, "op[0]": "insert", "op[0].index": -1}),
             Regime("built from an OrderedDict", lambda c: c.params["named"],
                    {"from an OrderedDict": True, "initial entries": 3, "op[0]": "slice"}),
             Regime("a named Sequential edited", lambda c: c.params["named"] and SO.did("del", "pop", "append")(c),
                    {"from an OrderedDict": True, "initial entries": 3, "op[*]": "del"},
                    "torch 2.13 renames every child after del (a known discrepancy)"),
             Regime("slices keep the names", SO.did("slice"), {"initial entries": 3, "op[0]": "slice",
                                                              "op[0].start": 1}),
             Regime("+= another Sequential", SO.did("+="), {"op[0]": "+=", "op[0].count": 2}),
             Regime("a module stored twice", SO.stored_twice,
                    {"initial entries": 1, "op[0]": "append", "op[0].value.source": "one it holds"}),
             Regime("nested containers", SO.nested, {"initial entries": 2, "init[*].kind": "sequential"})),
    notes="torch.nn.Sequential as a list (append, extend, += a Sequential, insert with -n <= index <= n, c[i] = m, "
          "del, pop, slices, c + another Sequential) and as a model: called on the probe it runs its children in "
          "order. Children are named by position; built from an OrderedDict they keep their names (slices too); "
          "an appended child is named str(len)." + _LIST_NOTES,
))

declare(operations(
    "ParameterList",
    regimes=(Regime("plain tensors converted", SO.plain_tensors, {"init[*].kind": "tensor"}),
             Regime("negative indices", SO.negative_index, SO.NEGATIVE_PINS),
             Regime("a parameter stored twice", SO.stored_twice,
                    {"initial entries": 1, "op[0]": "append", "op[0].value.source": "one it holds"}),
             Regime("slices", SO.did("slice"), {"initial entries": 3, "op[0]": "slice"}),
             Regime("non-contiguous tensors", SO.non_contiguous, {"init[*].kind": "tensor", "init[*].ndim": 2,
                                                                  "layout.t0": "strided"}),
             Regime("del, insert and pop", SO.did("del", "insert", "pop"), {"initial entries": 2, "op[0]": "del"},
                    "documented 'like a regular Python list': torch 2.13 has no del, insert or pop (known)")),
    notes="torch.nn.ParameterList 'can be used like a regular Python list': append, extend, +=, c[i] = v with "
          "negative indices, slices (a new list); the constructor, assignment, append and extend turn a plain tensor "
          "into a new Parameter (a Parameter is stored as it is). Observed: length, entries by value, "
          "named_parameters (a Parameter stored twice once), state_dict (every position), every index. Invalid "
          "cases: an index out of range, extend with a tensor.",
))

_DICT_NOTES = (" Observed: length, keys, values, named_parameters and state_dict (names and values), every key, "
               "a missing key's `in`. Invalid cases: a missing key (read or pop), keys with a '.' or empty")

declare(operations(
    "ModuleDict",
    regimes=(Regime("update from an OrderedDict", SO.updated_from("ordered"), {"op[0]": "update", "op[0].mapping":
                                                                                 "ordered", "op[0].count": 3}),
             Regime("update from a dict", SO.updated_from("dict"), {"op[0]": "update", "op[0].mapping": "dict",
                                                                     "op[0].count": 3},
                    "documented: a dict's order is kept (Python >= 3.6)"),
             Regime("update from pairs", SO.updated_from("pairs"), {"op[0]": "update", "op[0].mapping": "pairs",
                                                                     "op[0].count": 3}),
             Regime("update from a ModuleDict", SO.updated_from("container"),
                    {"op[0]": "update", "op[0].mapping": "container", "op[0].count": 3}),
             Regime("an existing key reassigned", SO.did("reassign"), {"initial entries": 2, "op[0]": "reassign"},
                    "the key keeps its place"),
             Regime("setdefault-like use", SO.did("setdefault-like"), {"op[0]": "setdefault-like"}),
             Regime("pop and del", SO.did("pop", "del"), {"initial entries": 3, "op[0]": "pop", "op[1]": "del"}),
             Regime("nested containers", SO.nested, {"initial entries": 2, "init[*].kind": "dict"}),
             Regime("a module stored twice", SO.stored_twice,
                    {"initial entries": 1, "op[0]": "setitem", "op[0].value.source": "one it holds"})),
    notes="torch.nn.ModuleDict as an ordered dict: d[k] = m (an existing key keeps its place), update from an "
          "OrderedDict, a dict, a ModuleDict or (key, module) pairs in their order (documented), pop, del, clear, "
          "`in`, keys/values in insertion order; nested ModuleDicts and Sequentials; the probe runs through "
          "values() when every entry has a forward." + _DICT_NOTES + ", a key shadowing an attribute, a value "
          "that is no module.",
))

declare(operations(
    "ParameterDict",
    regimes=(Regime("plain tensors converted", SO.plain_tensors, {"init[*].kind": "tensor"}),
             Regime("update from an OrderedDict", SO.updated_from("ordered"), {"op[0]": "update", "op[0].mapping":
                                                                                 "ordered", "op[0].count": 3}),
             Regime("update from a dict", SO.updated_from("dict"), {"op[0]": "update", "op[0].mapping": "dict",
                                                                     "op[0].count": 3}),
             Regime("update from a ParameterDict", SO.updated_from("container"),
                    {"op[0]": "update", "op[0].mapping": "container", "op[0].count": 3}),
             Regime("popitem", SO.did("popitem"), {"initial entries": 3, "op[0]": "popitem"}),
             Regime("setdefault", SO.did("setdefault"), {"initial entries": 2, "op[0]": "setdefault"}),
             Regime("get with a default", SO.did("get missing"), {"op[0]": "get missing"}),
             Regime("an existing key reassigned", SO.did("reassign"), {"initial entries": 2, "op[0]": "reassign"}),
             Regime("a parameter stored twice", SO.stored_twice,
                    {"initial entries": 1, "op[0]": "setitem", "op[0].value.source": "one it holds"}),
             Regime("non-contiguous tensors", SO.non_contiguous, {"init[*].kind": "tensor", "init[*].ndim": 2,
                                                                  "layout.t0": "strided"})),
    notes="torch.nn.ParameterDict as an ordered dict: d[k] = v, update from an OrderedDict, a ParameterDict or "
          "pairs in their order, from a plain dict (whose order the documentation leaves open: its keys are given "
          "sorted, torch's order), pop, popitem (the last inserted), setdefault, get with a default, del, clear; "
          "a plain tensor stored becomes a new Parameter." + _DICT_NOTES + ", a key that is no string.",
))
