"""Case strategies of container operations (``reference.containers``): a ModuleList, Sequential,
ParameterList, ModuleDict or ParameterDict built from drawn entries, edited by a drawn sequence of
list or dict operations and observed; plus the regimes that name those operations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import strategies as st

from backends.base import Case
from conformance import strategies as S
from conformance.dtypes import DTYPES

KEYS = ("a", "b", "conv", "act", "head", "x1")  # dict keys, simplest first
SEQUENTIAL_NAMES = ("conv", "act", "2", "head")  # a Sequential built from an OrderedDict ("2": a numeric name)
SLOPES = (0.5, -1.0, 2.0, -0.5, 1.0, -2.0)  # PReLU slopes: powers of two keep the probe's path exact
MAX_CHAIN = 8  # at most 8 slopes on the probe's path: |x| stays within [2^-9, 2^9] in every dtype
NAMES = tuple(dict.fromkeys(
    (*KEYS, *SEQUENTIAL_NAMES, *(str(i) for i in range(24)))))
VOCABULARY = NAMES + tuple(f"{b}{s}" for s in (".weight", ".0.weight", ".inner.weight") for b in NAMES)

LIST_OPS = {
    "ModuleList": ("append", "extend", "+=", "insert", "setitem", "del", "del slice", "pop", "get", "slice", "plus",
                   "insert at a negative index", "insert past the end"),
    "Sequential": ("append", "extend", "+=", "insert", "setitem", "del", "del slice", "pop", "get", "slice", "plus"),
    "ParameterList": ("append", "extend", "+=", "setitem", "get", "slice", "del", "insert", "pop"),
}
DICT_OPS = {
    "ModuleDict": ("setitem", "update", "pop", "del", "get", "setdefault-like", "reassign", "clear"),
    "ParameterDict": ("setitem", "update", "pop", "del", "get", "setdefault", "reassign", "popitem", "get missing",
                      "clear"),
}
MAPPINGS = ("ordered", "dict", "pairs", "container")


class _Builder:
    """Draws a container case while keeping the model (``reference.containers``) in step."""

    def __init__(self, d: S.Drawer, kind: str, dtype: str):
        self.d, self.kind, self.dtype = d, kind, dtype
        self.modules = kind in ("ModuleList", "Sequential", "ModuleDict")
        self.is_dict = kind in DICT_OPS
        self.entries: dict[str, dict[str, Any]] = {}
        self.inputs: dict[str, np.ndarray] = {}
        self.layouts: dict[str, Any] = {}
        self.steps: list[dict[str, Any]] = []
        self.model: Any = None
        self.resolver: Any = None
        self.note = ""  # what an invalid case breaks
        self.op = "construct"  # the operation being drawn (recorded in each of its steps)
        self.channels = 1  # the probe's channels (module containers)

    # -- fresh entries ---------------------------------------------------------------------------
    def fresh(self, label: str, kinds: tuple[str, ...] | None = None) -> dict[str, Any]:
        k = str(len(self.entries))
        if self.modules:
            kinds = kinds or (("prelu", "relu", "sequential") + (("dict",) if self.kind == "ModuleDict" else ()))
            kind = self.d.choice(kinds, f"{label}.kind")
            spec: dict[str, Any] = {"kind": kind}
            if kind != "relu":
                spec["num_parameters"] = self.d.choice((1, self.channels), f"{label}.num_parameters")
                spec["init"] = self.d.choice(SLOPES, f"{label}.init")
        else:
            kind = self.d.choice(kinds or ("tensor", "parameter"), f"{label}.kind")
            name = f"t{k}"
            ndim = self.d.integer(0, 2, f"{label}.ndim")
            shape = tuple(S.sizes_within(self.d, ndim, 16, hi=4, label=f"{label}.shape"))
            layout = S.layouts(self.d, ndim, f"layout.{name}", expanded=kind == "tensor")
            self.inputs[name] = S.values(self.d, shape, self.dtype, "float", name, layout=layout)
            self.layouts[name] = layout
            spec = {"kind": kind, "name": name}
        self.entries[k] = spec
        return {"new": k}

    def value(self, label: str) -> dict[str, Any]:
        """A fresh entry, or (sometimes) one the container holds already (stored twice)."""
        names = self.model.keys()
        if names and self.d.choice(("fresh", "one it holds"), f"{label}.source") == "one it holds":
            return {"at": self.d.choice(names, f"{label}.entry")}
        return self.fresh(label)

    def key(self, label: str, existing: bool) -> str:
        keys = self.model.keys()
        options = keys if existing else [k for k in KEYS if k not in keys]
        return self.d.choice(options or keys, label)

    # -- applying a step to the model ---------------------------------------------------------------
    def step(self, step: dict[str, Any]) -> None:
        from reference.containers import Encoder, run

        step.setdefault("op", self.op)
        self.steps.append(step)
        run(self.model, [step], self.resolver, Encoder(VOCABULARY))

    def read(self, name: Any, method: str, *args: Any, pairs: bool = False, on: Any = None,
             chain: Any = None) -> None:
        step: dict[str, Any] = {"method": method, "args": list(args), "read": True, "as": name}
        if pairs:
            step["pairs"] = True
        if on is not None:
            step["on"] = on
        if chain is not None:
            step["chain"] = chain
        self.step(step)


def _prelu_path(model: Any) -> int:
    """How many slopes the probe meets going through every entry (None: some entry has no forward)."""
    count = 0
    for entry in model.values():
        if entry.kind == "dict":
            return MAX_CHAIN + 1
        count += entry.kind != "relu"
    return count


def _list_op(b: _Builder, j: int, invalid: bool) -> None:
    d, n = b.d, len(b.model)
    lab = f"op[{j}]"
    if invalid:
        return _invalid_list_op(b, lab)
    ops = [o for o in LIST_OPS[b.kind] if n or o in ("append", "extend", "+=", "insert", "slice", "plus",
                                                   "del slice", "insert past the end")]
    op = b.op = d.choice(ops, lab)
    if op == "append":
        b.step({"method": "append", "args": [b.value(f"{lab}.value")]})
    elif op in ("extend", "+="):
        values = [b.value(f"{lab}.value[{i}]") for i in range(d.integer(0, 3, f"{lab}.count"))]
        arg = {"sequential": values} if b.kind == "Sequential" and op == "+=" else {"list": values}
        b.step({"method": "extend" if op == "extend" else "__iadd__", "args": [arg]})
    elif op.startswith("insert"):
        lo, hi = {"insert": (-n if b.kind == "Sequential" else 0, n), "insert at a negative index": (-n - 1, -1),
                  "insert past the end": (n + 1, n + 3)}[op]
        index = d.integer(lo, hi, f"{lab}.index")
        b.step({"method": "insert", "args": [index, b.value(f"{lab}.value")]})
    elif op in ("setitem", "del", "pop", "get"):
        index = d.integer(-n, n - 1, f"{lab}.index")
        if op == "setitem":
            b.step({"method": "__setitem__", "args": [index, b.value(f"{lab}.value")]})
        elif op == "del":
            b.step({"method": "__delitem__", "args": [index]})
        else:
            b.read(f"op{j}.result", "pop" if op == "pop" else "__getitem__", index)
    else:  # slices, and c + other
        bounds = [d.integer(-4, 4, f"{lab}.start"), d.integer(-4, 4, f"{lab}.stop"),
                  d.choice((None, 1, 2, -1), f"{lab}.step")]
        if op == "del slice":
            b.step({"method": "__delitem__", "args": [{"slice": bounds}]})
            return None
        if op == "slice":
            on = {"getitem": {"slice": bounds}}
        else:
            values = [b.value(f"{lab}.value[{i}]") for i in range(d.integer(0, 2, f"{lab}.count"))]
            on = {"plus": {"sequential": values} if b.kind == "Sequential" else {"list": values}}
        b.read(f"op{j}.entries", "__iter__", on=on)
        if b.modules:
            b.read([f"op{j}.names", f"op{j}.children"], "named_children", pairs=True, on=on)
    return None


def _invalid_list_op(b: _Builder, lab: str) -> None:
    d, n = b.d, len(b.model)
    options = ("index out of range", "assign out of range") + (
        ("store a tensor",) if b.modules else ("extend with a tensor",)) + (
        ("insert out of range",) if b.kind == "Sequential" else ()) + (
        ("insert a tensor",) if b.kind == "ModuleList" else ())
    error = b.op = d.choice(options, f"{lab} (invalid)")
    index = n + d.integer(0, 2, f"{lab}.past")
    if error == "index out of range":
        key = index if d.flag(f"{lab}.positive") else -index - 1
        b.steps.append({"op": b.op, "method": "__getitem__", "args": [key]})
    elif error == "assign out of range":
        b.steps.append({"op": b.op, "method": "__setitem__", "args": [index, b.fresh(f"{lab}.value")]})
    elif error == "insert out of range":
        past = n + 1 + d.integer(0, 2, f"{lab}.past")
        b.steps.append({"op": b.op, "method": "insert", "args": [past, b.fresh(f"{lab}.value")]})
    else:
        tensor = _plain_tensor(b, f"{lab}.tensor")
        method = {"store a tensor": "append", "extend with a tensor": "extend", "insert a tensor": "insert"}[error]
        b.steps.append({"op": b.op, "method": method, "args": ([0] if method == "insert" else []) + [tensor]})
    b.note = error


def _plain_tensor(b: _Builder, label: str) -> dict[str, Any]:
    k = str(len(b.entries))
    b.inputs[f"t{k}"] = S.values(b.d, (2,), b.dtype, "float", f"t{k}")
    b.entries[k] = {"kind": "tensor", "name": f"t{k}"}
    return {"new": k}


def _pairs(b: _Builder, lab: str, mapping: str) -> list[list[Any]]:
    count = b.d.integer(0, 3, f"{lab}.count")
    keys: list[str] = []
    for i in range(count):
        options = [k for k in KEYS if k not in keys]
        keys.append(b.d.choice(options, f"{lab}.key[{i}]"))
    if mapping == "dict" and b.kind == "ParameterDict":
        keys.sort()  # torch sorts a plain dict's items: given sorted, either reading of the docs agrees
    return [[k, b.value(f"{lab}.value[{i}]")] for i, k in enumerate(keys)]


def _dict_op(b: _Builder, j: int, invalid: bool) -> None:
    d, keys = b.d, b.model.keys()
    lab = f"op[{j}]"
    if invalid:
        return _invalid_dict_op(b, lab)
    needs_key = ("pop", "del", "get", "reassign", "popitem", "setdefault")
    ops = [o for o in DICT_OPS[b.kind] if (keys or o not in needs_key) and (len(keys) < len(KEYS) or o in needs_key)]
    op = b.op = d.choice(ops, lab)
    if op in ("setitem", "reassign"):
        b.step({"method": "__setitem__", "args": [b.key(f"{lab}.key", op == "reassign"), b.value(f"{lab}.value")]})
    elif op == "update":
        mapping = d.choice(MAPPINGS, f"{lab}.mapping")
        b.step({"method": "update", "args": [{"mapping": mapping, "pairs": _pairs(b, lab, mapping)}]})
    elif op == "pop":
        b.read(f"op{j}.result", "pop", b.key(f"{lab}.key", True))
    elif op == "del":
        b.step({"method": "__delitem__", "args": [b.key(f"{lab}.key", True)]})
    elif op == "get":
        b.read(f"op{j}.result", "__getitem__", b.key(f"{lab}.key", True))
    elif op == "setdefault-like":  # ModuleDict: `if key not in d: d[key] = m`
        key = b.key(f"{lab}.key", bool(keys) and d.flag(f"{lab}.present"))
        b.read(f"op{j}.present", "__contains__", key)
        if key not in keys:
            b.step({"method": "__setitem__", "args": [key, b.value(f"{lab}.value")]})
    elif op == "setdefault":
        key = b.key(f"{lab}.key", d.flag(f"{lab}.present"))
        b.read(f"op{j}.result", "setdefault", key, b.fresh(f"{lab}.default"))
    elif op == "get missing":
        b.read(f"op{j}.result", "get", b.key(f"{lab}.key", False), b.fresh(f"{lab}.default", ("tensor",)))
    elif op == "popitem":
        b.read([f"op{j}.key", f"op{j}.value"], "popitem")
    else:
        b.step({"method": "clear", "args": []})
    return None


def _invalid_dict_op(b: _Builder, lab: str) -> None:
    d = b.d
    options = ("missing key", "pop a missing key", "a key with a dot", "an empty key") + (
        ("a key shadowing an attribute", "store a tensor") if b.kind == "ModuleDict" else ("a key that is no string",))
    error = b.op = d.choice(options, f"{lab} (invalid)")
    missing = next(k for k in KEYS if k not in b.model.keys()) if len(b.model) < len(KEYS) else "zz"
    if error in ("missing key", "pop a missing key"):
        b.steps.append({"op": b.op, "method": "__getitem__" if error == "missing key" else "pop", "args": [missing]})
    else:
        key = {"a key with a dot": "a.b", "an empty key": "", "a key shadowing an attribute": "update",
               "a key that is no string": 3, "store a tensor": missing}[error]
        value = _plain_tensor(b, f"{lab}.tensor") if error == "store a tensor" else b.fresh(f"{lab}.value")
        b.steps.append({"op": b.op, "method": "__setitem__", "args": [key, value]})
    b.note = error


def _observe(b: _Builder) -> None:
    """The final observations: length, entries, registration, every index or key, the forward."""
    b.op = "observe"
    b.read("length", "__len__")
    if b.is_dict:
        b.read("keys", "keys")
        b.read("values", "values")
    else:
        b.read("entries", "__iter__")
    if b.modules:
        b.read(["children.names", "children.entries"], "named_children", pairs=True)
    b.read(["parameters.names", "parameters.values"], "named_parameters", pairs=True)
    b.read(["state_dict.names", "state_dict.values"], "state_dict", pairs=True)
    if b.is_dict:
        for key in b.model.keys():
            b.read(f"item[{key}]", "__getitem__", key)
        missing = next((k for k in KEYS if k not in b.model.keys()), None)
        if missing is not None:
            b.read(f"contains[{missing}]", "__contains__", missing)
    else:
        for i in range(-len(b.model), len(b.model)):
            b.read(f"item[{i}]", "__getitem__", i)
    if b.modules and _prelu_path(b.model) <= MAX_CHAIN:
        if b.kind == "Sequential":
            b.read("forward", "__call__", {"input": "input"})
        else:
            b.read("forward", "values" if b.is_dict else "__iter__", chain={"input": "input"})


@st.composite
def _operations_case(draw: Any, kind: str, dtype: str, invalid: bool = False) -> Case:
    from reference.containers import Resolver, build

    d = S.Drawer(draw)
    b = _Builder(d, kind, dtype)
    if b.modules:
        b.channels = d.integer(1, 4, "C")
        rng = np.random.default_rng(d.integer(0, 2**32 - 1, "input.seed"))
        shape = (d.integer(1, 3, "N"), b.channels)
        probe = rng.uniform(0.5, 2.0, shape) * rng.choice((-1.0, 1.0), shape)
        b.inputs["input"] = DTYPES[dtype].round(probe)
    named = kind == "Sequential" and d.flag("from an OrderedDict")
    count = d.integer(0 if b.modules else 1, 3, "initial entries")
    if b.is_dict:
        init: Any = {"mapping": d.choice(MAPPINGS[:3], "constructed from"), "pairs": []}
        init["pairs"] = _pairs_init(b, count, init["mapping"])
    elif named:
        init = [[SEQUENTIAL_NAMES[i], b.fresh(f"init[{i}]")] for i in range(count)]
    else:
        init = [b.fresh(f"init[{i}]") for i in range(count)]
    b.resolver = Resolver(b.entries, b.inputs)
    b.model = build(kind, init, named, b.resolver)
    operations = d.integer(0 if invalid else 1, 6 if not invalid else 2, "operations")
    op = _dict_op if b.is_dict else _list_op
    for j in range(operations):
        op(b, j, False)
    if invalid:
        op(b, operations, True)
    else:
        _observe(b)
    params = {"container": kind, "named": named, "init": init, "entries": b.entries, "steps": b.steps}
    return Case(op=kind, dtype=dtype, params=params, inputs=b.inputs, layouts=b.layouts, invalid=invalid,
                note=b.note, variant="semantics")


def _pairs_init(b: _Builder, count: int, mapping: str) -> list[list[Any]]:
    keys: list[str] = []
    for i in range(count):
        keys.append(b.d.choice([k for k in KEYS if k not in keys], f"init[{i}].key"))
    if mapping == "dict" and b.kind == "ParameterDict":
        keys.sort()
    return [[k, b.fresh(f"init[{i}]")] for i, k in enumerate(keys)]


def operation_cases(kind: str) -> Callable[[str], st.SearchStrategy[Case]]:
    """Cases of container ``kind``: constructed with 0 to 3 entries, edited by 1 to 6 documented
    operations drawn among those its state allows (simplest first), then observed."""
    return lambda dtype: _operations_case(kind, dtype)


def invalid_operation_cases(kind: str) -> Callable[[str], st.SearchStrategy[Case]]:
    """Up to two valid operations, then one that breaks a rule torch enforces."""
    return lambda dtype: _operations_case(kind, dtype, invalid=True)


# -- regimes of container operations ------------------------------------------------------------------------

def _args(data: Any) -> list[Any]:
    """Every argument datum inside ``data`` (lists and mappings walked)."""
    if isinstance(data, list):
        return [x for item in data for x in _args(item)]
    if isinstance(data, dict):
        inner = data.get("list") or data.get("sequential") or [v for _, v in data.get("pairs", [])]
        return [data, *_args(inner)]
    return [data]


NEGATIVE_PINS = {"initial entries": 2, "op[0]": "setitem", "op[0].index": -1}


def did(*ops: str) -> Callable[[Case], bool]:
    """The case performs one of ``ops`` (as drawn: ``op[i]``)."""
    return lambda case: any(step.get("op") in ops for step in case.params["steps"])


def negative_index(case: Case) -> bool:
    return any(isinstance(a, int) and not isinstance(a, bool) and a < 0 and step.get("op") != "observe"
               for step in case.params["steps"] for a in step.get("args", ())[:1])


def stored_twice(case: Case) -> bool:
    return any(isinstance(a, dict) and "at" in a for step in case.params["steps"] for a in _args(step.get("args", [])))


def nested(case: Case) -> bool:
    used = {a["new"] for step in case.params["steps"] for a in _args(step.get("args", []))
            if isinstance(a, dict) and "new" in a} | {a["new"] for a in _args(case.params["init"])
                                                      if isinstance(a, dict) and "new" in a}
    return any(case.params["entries"][k]["kind"] in ("sequential", "dict") for k in used)


def plain_tensors(case: Case) -> bool:
    return any(e["kind"] == "tensor" for e in case.params["entries"].values())


def updated_from(mapping: str) -> Callable[[Case], bool]:
    return lambda case: any(step["method"] == "update" and step["args"][0]["mapping"] == mapping
                            for step in case.params["steps"])


def empty_at_the_end(case: Case) -> bool:
    return any(step.get("as") == "length" for step in case.params["steps"]) and observed(case)["length"] == 0


def non_contiguous(case: Case) -> bool:
    return any(layout.kind != "contiguous" for layout in case.layouts.values())


def observed(case: Case) -> dict[str, np.ndarray]:
    """What the documented semantics (``reference.containers``) observe for a container-operations
    case: the reference of ``families.containers.operations``."""
    from reference import containers as model

    p = case.params
    resolver = model.Resolver(p["entries"], case.inputs)
    container = model.build(p["container"], p["init"], p["named"], resolver)
    return model.run(container, p["steps"], resolver, model.Encoder(VOCABULARY))
