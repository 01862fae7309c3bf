"""The documented semantics of torch.nn's containers, as a plain Python model.

A case is a container (``ModuleList``, ``Sequential``, ``ParameterList``, ``ModuleDict``,
``ParameterDict``) built with some entries, edited by a sequence of operations and observed; this
module runs the same operations on a model of what the documentation promises:

- ModuleList, Sequential and ParameterList "can be indexed like a regular Python list" (Python's
  list semantics: negative indices, ``insert`` before an index and at the end past it, slices,
  ``del``, ``pop``, ``extend``, ``+=``, ``+``); their children are named by position (``0``,
  ``1``...), except a Sequential built from an OrderedDict, whose children keep their names (its
  slices too: a slice of a Sequential keeps its children's names; a ModuleList's slice is a new
  list, renumbered; a child appended to a Sequential is named ``str(len)``);
- ModuleDict and ParameterDict are ordered dictionaries: insertion order, an existing key keeps its
  place, ``update`` follows the order of the mapping or pairs it is given (the strategies give plain
  dicts to ParameterDict in sorted key order, the one order both readings of its documentation
  allow); ``pop``, ``popitem`` (the last inserted), ``setdefault``, ``get``, ``clear``, ``keys``,
  ``values``, ``items``, ``in``;
- ParameterList and ParameterDict convert a plain tensor into a new Parameter when it is stored
  (constructor, assignment, append, extend, update); a Parameter is stored as it is;
- registration: ``named_children`` and ``named_parameters`` list each module / parameter once, under
  the name of its first appearance (modules depth-first); ``state_dict`` has every (path, tensor),
  duplicates included.

Objects are tracked by identity as torch tracks them. Entries are ``Module`` (PReLU with given
slopes, ReLU, a nested Sequential or ModuleDict) and ``Param`` objects. ``encode`` turns an observed
value into data exactly as ``backends.torch_call``'s ``steps`` node does, so that observations are
compared as arrays: names by their index in a vocabulary, modules by order of first appearance.
Invalid operations raise IndexError, TypeError or ValueError.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

MODULE_KINDS = ("prelu", "relu", "sequential", "dict")
TENSOR_KINDS = ("tensor", "parameter")
# Attributes every module has: a ModuleDict key may not shadow them (add_module's rule).
RESERVED = ("training", "update", "keys", "values", "items", "pop", "forward", "parameters")


class Param:
    """A Parameter: an identity holding a value."""

    def __init__(self, value: np.ndarray):
        self.value = np.asarray(value, dtype=np.float64)


class Module:
    """A module: its kind, its own parameters and its children, in registration order."""

    def __init__(self, kind: str, params: Sequence[tuple[str, Param]] = (),
                 children: Sequence[tuple[str, Module]] = ()):
        self.kind = kind
        self.params = list(params)
        self.children = list(children)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        from reference import functional as RF

        if self.kind == "prelu":
            return RF.prelu(x, self.params[0][1].value)
        if self.kind == "relu":
            return RF.relu(x)
        if self.kind == "sequential":
            for _, child in self.children:
                x = child(x)
            return x
        raise TypeError(f"a {self.kind} module has no forward")


def fresh(spec: Mapping[str, Any], tensors: Mapping[str, np.ndarray]) -> Any:
    """A new object from its description: a module ({"kind": "prelu", "num_parameters", "init"},
    "relu", "sequential" (PReLU then ReLU), "dict" ({"inner": PReLU})) or a tensor ("tensor": the
    plain array ``tensors[name]``; "parameter": a new Param of it)."""
    kind = spec["kind"]
    if kind == "prelu":
        return Module("prelu", [("weight", Param(np.full(spec["num_parameters"], float(spec["init"]))))])
    if kind == "relu":
        return Module("relu")
    if kind in ("sequential", "dict"):
        inner = fresh({**spec, "kind": "prelu"}, tensors)
        if kind == "dict":
            return Module("dict", children=[("inner", inner)])
        return Module("sequential", children=[("0", inner), ("1", Module("relu"))])
    if kind == "tensor":
        return tensors[spec["name"]]
    if kind == "parameter":
        return Param(tensors[spec["name"]])
    raise ValueError(f"unknown entry kind {kind!r}")


def named_modules(root: Module, prefix: str = "", memo: set[int] | None = None) -> list[tuple[str, Module]]:
    """Every module under ``root`` once, depth first, under its first path."""
    memo = set() if memo is None else memo
    if id(root) in memo:
        return []
    memo.add(id(root))
    out = [(prefix, root)]
    for name, child in root.children:
        out += named_modules(child, f"{prefix}.{name}" if prefix else name, memo)
    return out


def named_parameters(root: Module) -> list[tuple[str, Param]]:
    memo: set[int] = set()
    out = []
    for path, module in named_modules(root):
        for name, p in module.params:
            if id(p) not in memo:
                memo.add(id(p))
                out.append((f"{path}.{name}" if path else name, p))
    return out


def named_children(root: Module) -> list[tuple[str, Module]]:
    memo: set[int] = set()
    out = []
    for name, child in root.children:
        if id(child) not in memo:
            memo.add(id(child))
            out.append((name, child))
    return out


def state_dict(root: Module, prefix: str = "") -> list[tuple[str, np.ndarray]]:
    """Every (path, value): the module's own parameters, then its children's, duplicates included."""
    out = [(prefix + name, p.value) for name, p in root.params]
    for name, child in root.children:
        out += state_dict(child, f"{prefix}{name}.")
    return out


class Container(Module):
    """One of the five containers, with its documented operations (``call`` by method name).

    ``kind`` is the torch class name; entries are ``self.children`` (modules) or ``self.params``
    (parameters) as (name, object) pairs in order. ``named``: a Sequential built from an
    OrderedDict (its children keep their names)."""

    def __init__(self, kind: str, entries: Iterable[Any] = (), named: bool = False):
        super().__init__(kind)
        self.named = named
        self.is_dict = kind in ("ModuleDict", "ParameterDict")
        self.holds_parameters = kind in ("ParameterList", "ParameterDict")
        if self.is_dict:
            self.update(entries)
        elif named:
            for name, value in entries:
                self._items.append((name, self._stored(value)))
        else:
            self.extend(entries)

    # -- storage -------------------------------------------------------------------------------
    @property
    def _items(self) -> list[tuple[str, Any]]:
        return self.params if self.holds_parameters else self.children

    def _stored(self, value: Any) -> Any:
        """What the container stores for ``value``: a plain tensor becomes a new Param; a
        module container takes modules only."""
        if self.holds_parameters:
            if isinstance(value, np.ndarray):
                return Param(value)
            if not isinstance(value, Param):
                raise TypeError(f"{self.kind} holds tensors, got {type(value).__name__}")
            return value
        if not isinstance(value, Module):
            raise TypeError(f"{self.kind} holds modules, got {type(value).__name__}")
        return value

    def _renumber(self) -> None:
        if not (self.is_dict or self.named):
            self._items[:] = [(str(i), v) for i, (_, v) in enumerate(self._items)]

    def _index(self, i: int, end: bool = False) -> int:
        n = len(self._items)
        if not isinstance(i, int) or isinstance(i, bool):
            raise TypeError("indices are integers")
        if not (-n <= i < n + int(end)):
            raise IndexError(f"index {i} is out of range")
        return i + n if i < 0 else i

    def _key(self, key: Any) -> str:
        if not isinstance(key, str):
            raise TypeError("keys are strings")
        if not key or "." in key or (key in RESERVED and self.kind == "ModuleDict"):
            raise ValueError(f"{key!r} cannot be a key")
        return key

    def _slice(self, s: slice) -> Container:
        part = self._items[s]
        if self.kind == "Sequential":
            return Container("Sequential", part, named=True)  # keeps the names
        return Container(self.kind, [v for _, v in part])

    # -- list operations ---------------------------------------------------------------------------
    def append(self, value: Any) -> Container:
        name = str(len(self._items))
        self._items.append((name, self._stored(value)))
        return self

    def extend(self, values: Iterable[Any]) -> Container:
        if isinstance(values, (np.ndarray, Param, Module)) and not isinstance(values, Container):
            raise TypeError("extend takes an iterable of entries")
        for value in list(values):
            self.append(value)
        return self

    def __iadd__(self, values: Iterable[Any]) -> Container:
        if self.kind == "Sequential" and not (isinstance(values, Container) and values.kind == "Sequential"):
            raise TypeError("a Sequential adds a Sequential")
        return self.extend(values)

    def __add__(self, other: Iterable[Any]) -> Container:
        if self.kind == "Sequential" and not (isinstance(other, Container) and other.kind == "Sequential"):
            raise TypeError("a Sequential adds a Sequential")
        return Container(self.kind, [v for _, v in self._items] + list(other))

    def insert(self, index: int, value: Any) -> None:
        stored = self._stored(value)
        n = len(self._items)
        if self.kind == "Sequential" and not (-n <= index <= n):  # torch's documented check
            raise IndexError(f"index {index} is out of range")
        position = min(max(index + n if index < 0 else index, 0), n)  # Python's list.insert
        self._items.insert(position, (str(position), stored))
        self._renumber()

    def __setitem__(self, index: Any, value: Any) -> None:
        if self.is_dict:
            key = self._key(index)
            stored = self._stored(value)
            for j, (name, _) in enumerate(self._items):
                if name == key:
                    self._items[j] = (key, stored)
                    return
            self._items.append((key, stored))
            return
        j = self._index(index)
        self._items[j] = (self._items[j][0], self._stored(value))

    def __delitem__(self, index: Any) -> None:
        if self.is_dict:
            key = self._present(index)
            self._items[:] = [(k, v) for k, v in self._items if k != key]
            return
        if isinstance(index, slice):
            del self._items[index]
        else:
            del self._items[self._index(index)]
        self._renumber()

    def pop(self, index: Any) -> Any:
        value = self[index]
        del self[index]
        return value

    def __getitem__(self, index: Any) -> Any:
        if self.is_dict:
            key = self._present(index)
            return next(v for k, v in self._items if k == key)
        if isinstance(index, slice):
            return self._slice(index)
        return self._items[self._index(index)][1]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Any:
        return iter([k for k, _ in self._items] if self.is_dict else [v for _, v in self._items])

    # -- dict operations ---------------------------------------------------------------------------
    def _present(self, key: Any) -> str:
        if not isinstance(key, str):
            raise TypeError("keys are strings")
        if key not in self:
            raise IndexError(f"no key {key!r}")  # KeyError in torch
        return key

    def __contains__(self, key: Any) -> bool:
        return any(k == key for k, _ in self._items)

    def keys(self) -> list[str]:
        return [k for k, _ in self._items]

    def values(self) -> list[Any]:
        return [v for _, v in self._items]

    def items(self) -> list[tuple[str, Any]]:
        return list(self._items)

    def update(self, pairs: Any) -> None:
        if isinstance(pairs, Container):
            pairs = pairs.items()
        elif isinstance(pairs, Mapping):
            pairs = list(pairs.items())
        for pair in list(pairs):
            if len(pair) != 2:
                raise ValueError("update takes (key, value) pairs")
            self[pair[0]] = pair[1]

    def clear(self) -> None:
        self._items.clear()

    def popitem(self) -> tuple[str, Any]:
        if not self._items:
            raise IndexError("popitem from an empty dictionary")
        key, value = self._items.pop()
        return key, value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default

    # -- registration ------------------------------------------------------------------------------
    def named_children(self) -> list[tuple[str, Module]]:
        return named_children(self)

    def named_parameters(self) -> list[tuple[str, Param]]:
        return named_parameters(self)

    def state_dict(self) -> list[tuple[str, np.ndarray]]:
        return state_dict(self)

    def call(self, method: str, args: Sequence[Any]) -> Any:
        """The documented operation ``method`` (torch's method name) with ``args``."""
        if method == "__call__":
            if self.kind != "Sequential":
                raise TypeError(f"a {self.kind} is not called")
            x = args[0]
            for m in self:
                x = m(x)
            return x
        if method == "__iadd__":
            return self.__iadd__(args[0])
        return getattr(self, method)(*args)


class Encoder:
    """Observed values as data, by the rules of ``backends.torch_call``'s ``steps`` node: a name is
    its index in ``names`` (-1 if absent), None -2, a module its order of first appearance among the
    arguments and observations (``note``), a parameter or tensor its values, a tuple a list of its
    parts, a mapping its keys, any other iterable its items packed into one array (values
    concatenated, else int64)."""

    def __init__(self, names: Sequence[str]):
        self.names = list(names)
        self.seen: list[Module] = []

    def note(self, value: Any) -> int:
        if isinstance(value, Module):
            for i, seen in enumerate(self.seen):
                if seen is value:
                    return i
            self.seen.append(value)
            return len(self.seen) - 1
        if isinstance(value, Mapping):
            for item in value.values():
                self.note(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                self.note(item)
        return -1

    def encode(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.names.index(value) if value in self.names else -1
        if value is None:
            return -2
        if isinstance(value, (bool, int, float, np.ndarray)):
            return value
        if isinstance(value, Param):
            return value.value
        if isinstance(value, Module):
            return self.note(value)
        if isinstance(value, tuple):
            return [self.encode(v) for v in value]
        if isinstance(value, Mapping):
            value = list(value)
        return self.pack([self.encode(v) for v in value])

    def pairs(self, value: Any) -> list[np.ndarray]:
        items = list(value.items() if hasattr(value, "items") else value)
        return [self.pack([self.encode(k) for k, _ in items]), self.pack([self.encode(v) for _, v in items])]

    @staticmethod
    def pack(items: list[Any]) -> np.ndarray:
        if items and all(isinstance(t, np.ndarray) for t in items):
            return np.concatenate([np.asarray(t, dtype=np.float64).reshape(-1) for t in items])
        if any(isinstance(t, (np.ndarray, list)) for t in items):
            raise ValueError("a read mixes tensors with other values")
        return np.asarray(items, dtype=np.int64).reshape(-1)


def run(container: Container, steps: Sequence[Mapping[str, Any]], resolve: Callable[[Any, Container], Any],
        encoder: Encoder) -> dict[str, np.ndarray]:
    """Apply ``steps`` (``{"method", "args", "read", "as", "pairs", "on", "chain"}``, the data of the
    torch call's steps) to ``container``; ``resolve(arg, container)`` turns an argument's data into
    an object (evaluated just before its step). Returns the observations by the names in ``as``."""
    out: dict[str, np.ndarray] = {}
    for step in steps:
        target = resolve(step["on"], container) if "on" in step else container
        args = [resolve(a, container) for a in step.get("args", ())]
        for a in args:
            encoder.note(a)
        result = target.call(step["method"], args) if isinstance(target, Container) else \
            getattr(target, step["method"])(*args)
        if "chain" in step:
            x = resolve(step["chain"], container)
            for m in result:
                x = m(x)
            result = x
        if not step.get("read"):
            continue
        if step.get("pairs"):
            keys, values = encoder.pairs(result)
            out[step["as"][0]], out[step["as"][1]] = keys, values
        else:
            value = encoder.encode(result)
            if isinstance(step["as"], list):
                for name, part in zip(step["as"], value):
                    out[name] = np.asarray(part)
            else:
                out[step["as"]] = np.asarray(value)
    return out


class Resolver:
    """Turns an argument's data into the object the call passes, as ``backends.torch_call`` builds
    it: ``{"new": k}`` a fresh object (``entries[k]``, ``fresh``), ``{"at": name}`` the container's
    entry of that name now, ``{"slice": [start, stop, step]}``, ``{"list": [...]}``, ``{"mapping":
    "dict" | "ordered" | "pairs" | "container", "pairs": [[key, value], ...]}`` (a dict, an
    OrderedDict, a list of pairs, a container of the same kind), ``{"sequential": [...]}`` (a new
    Sequential), ``{"input": name}`` (a tensor), ``{"getitem": data}`` / ``{"plus": data}`` (the
    container indexed by, or added to, another value); anything else is itself."""

    def __init__(self, entries: Mapping[str, Mapping[str, Any]], tensors: Mapping[str, np.ndarray]):
        self.entries = entries
        self.tensors = tensors

    def __call__(self, data: Any, container: Container) -> Any:
        if not isinstance(data, dict):
            return data
        if "new" in data:
            return fresh(self.entries[data["new"]], self.tensors)
        if "at" in data:
            return next(v for k, v in container.items() if k == data["at"])
        if "slice" in data:
            return slice(*data["slice"])
        if "list" in data:
            return [self(x, container) for x in data["list"]]
        if "mapping" in data:
            pairs = [(k, self(v, container)) for k, v in data["pairs"]]
            kind = data["mapping"]
            if kind == "container":
                return Container(container.kind, pairs)
            return list(pairs) if kind == "pairs" else dict(pairs)
        if "sequential" in data:
            return Container("Sequential", [self(x, container) for x in data["sequential"]])
        if "input" in data:
            return self.tensors[data["input"]]
        if "getitem" in data:
            return container[self(data["getitem"], container)]
        if "plus" in data:
            return container + self(data["plus"], container)
        raise ValueError(f"unknown argument {data!r}")


def build(kind: str, init: Any, named: bool, resolve: Resolver) -> Container:
    """The container as constructed: ``init`` is a list of entries (a named Sequential: pairs), or
    for a dict the data of a mapping."""
    empty = Container(kind, named=named)
    if kind in ("ModuleDict", "ParameterDict"):
        return Container(kind, resolve(init, empty))
    if named:
        return Container(kind, [(k, resolve(v, empty)) for k, v in init], named=True)
    return Container(kind, [resolve(v, empty) for v in init])
