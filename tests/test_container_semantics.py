"""The container semantics model (``reference.containers``) on its own terms, and the call
interpreter's ``steps`` node that runs the same operations on torch.

- List containers against Python lists and dict containers against Python dicts (independent
  models), for random sequences of documented operations;
- registration (named_children, named_parameters, state_dict), conversion of plain tensors and the
  encoding of observations on hand-computed examples;
- the ``steps`` node on torch: a hand-written sequence, its encoded reads.

torch's own departures from this semantics are known entries (``conformance/known/container.toml``)
found by the ``<container>[semantics]`` declarations; the containers' conformance runs through them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from backends.torch_run import run_call
from reference import containers as model

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True, database=None)


def _prelu(slope: float = 0.5) -> model.Module:
    return model.fresh({"kind": "prelu", "num_parameters": 1, "init": slope}, {})


# -- the model against Python's own containers ------------------------------------------------------------

LIST_OPS = st.lists(st.tuples(st.sampled_from(("append", "insert", "set", "del", "del slice", "pop", "extend")),
                              st.integers(-6, 6), st.integers(-6, 6)), max_size=8)


@pytest.mark.parametrize("kind", ["ModuleList", "Sequential", "ParameterList"])
@SETTINGS
@given(ops=LIST_OPS)
def test_list_containers_behave_like_python_lists(kind, ops):
    def new():
        return model.Param(np.zeros(1)) if kind == "ParameterList" else _prelu()

    c, ref = model.Container(kind), []
    for op, i, j in ops:
        n = len(ref)
        if op == "append":
            m = new()
            c.append(m), ref.append(m)
        elif op == "extend":
            ms = [new() for _ in range(abs(i) % 3)]
            c.extend(ms), ref.extend(ms)
        elif op == "insert" and (kind != "Sequential" or -n <= i <= n):
            m = new()
            c.insert(i, m), ref.insert(i, m)
        elif op == "del slice":
            del c[i:j], ref[i:j]
        elif n and op in ("set", "del", "pop"):
            k = i % (2 * n) - n  # in [-n, n)
            if op == "set":
                m = new()
                c[k] = m
                ref[k] = m
            elif op == "del":
                del c[k], ref[k]
            else:
                assert c.pop(k) is ref.pop(k)
        assert [v for v in c] == ref and len(c) == len(ref)
        assert c.keys() == [str(k) for k in range(len(ref))]
        for k in range(-len(ref), len(ref)):
            assert c[k] is ref[k]
        assert [v for v in c[i:j]] == ref[i:j]
    with pytest.raises(IndexError):
        c[len(ref)]


DICT_OPS = st.lists(st.tuples(st.sampled_from(("set", "del", "pop", "update", "clear", "popitem")),
                              st.sampled_from("abcde"), st.lists(st.sampled_from("abcde"), max_size=3, unique=True)),
                    max_size=8)


@pytest.mark.parametrize("kind", ["ModuleDict", "ParameterDict"])
@SETTINGS
@given(ops=DICT_OPS)
def test_dict_containers_behave_like_ordered_dicts(kind, ops):
    def new():
        return model.Param(np.zeros(1)) if kind == "ParameterDict" else _prelu()

    c, ref = model.Container(kind), {}
    for op, key, keys in ops:
        if op == "set":
            m = new()
            c[key] = m
            ref[key] = m
        elif op == "update":
            pairs = [(k, new()) for k in keys]
            c.update(pairs), ref.update(pairs)
        elif op == "clear":
            c.clear(), ref.clear()
        elif key in ref and op == "del":
            del c[key], ref[key]
        elif key in ref and op == "pop":
            assert c.pop(key) is ref.pop(key)
        elif ref and op == "popitem":
            assert c.popitem() == ref.popitem()
        assert c.keys() == list(ref) and c.values() == list(ref.values())
        assert all((k in c) == (k in ref) for k in "abcdef")
    if kind == "ParameterDict":
        default = model.Param(np.ones(1))
        assert c.setdefault("f", default) is default and c.get("g") is None


# -- registration, conversion, encoding -----------------------------------------------------------------------

def test_registration_names_each_module_and_parameter_once_and_saves_every_position():
    shared, nested = _prelu(0.5), model.fresh({"kind": "sequential", "num_parameters": 2, "init": -1.0}, {})
    c = model.Container("ModuleList", [shared, nested, shared, model.fresh({"kind": "relu"}, {})])
    assert [n for n, _ in c.named_children()] == ["0", "1", "3"]
    assert [n for n, _ in c.named_parameters()] == ["0.weight", "1.0.weight"]
    assert [n for n, _ in c.state_dict()] == ["0.weight", "1.0.weight", "2.weight"]
    np.testing.assert_array_equal(nested(np.array([[-1.0, 2.0]])), [[1.0, 2.0]])  # PReLU(-1) then ReLU


def test_parameter_containers_convert_plain_tensors_into_new_parameters():
    t = np.arange(3.0)
    c = model.Container("ParameterList", [t])
    c.append(t)
    assert isinstance(c[0], model.Param) and c[0] is not c[1]
    np.testing.assert_array_equal(c[1].value, t)
    c.append(c[0])  # a Parameter is stored as it is
    assert c[2] is c[0] and [n for n, _ in c.named_parameters()] == ["0", "1"]
    with pytest.raises(TypeError):
        model.Container("ModuleList").append(t)


def test_a_named_sequential_keeps_its_names_and_slices_keep_them_too():
    a, b, d = _prelu(), _prelu(), _prelu()
    s = model.Container("Sequential", [("conv", a), ("act", b)], named=True)
    del s[0]
    s.append(d)
    assert s.keys() == ["act", "1"]
    assert s[0:1].keys() == ["act"] and model.Container("ModuleList", [a, b])[1:].keys() == ["0"]


def test_encoder_indexes_names_numbers_modules_and_packs_values():
    enc = model.Encoder(["a", "b"])
    m1, m2 = _prelu(), _prelu()
    enc.note([m2])
    assert enc.encode([m1, m2, m1]).tolist() == [1, 0, 1]
    assert enc.encode(["b", "zz"]).tolist() == [1, -1] and enc.encode(None) == -2
    keys, values = enc.pairs({"a": model.Param(np.array([1.0, 2.0])), "b": model.Param(np.array(3.0))})
    assert keys.tolist() == [0, 1] and values.tolist() == [1.0, 2.0, 3.0]
    assert enc.encode([]).dtype == np.int64


# -- the steps node on torch ------------------------------------------------------------------------------------

def test_the_steps_node_edits_and_reads_a_container_as_documented():
    prelu = {"module": {"target": "torch.nn.PReLU", "init": {"num_parameters": 1, "init": 0.5}}}
    steps = [{"method": "append", "args": [prelu]},
             {"method": "append", "args": [{"module": {"target": "torch.nn.ReLU", "init": {}}}]},
             {"method": "insert", "args": [0, {"attribute": "1"}]},  # the ReLU again, first
             {"method": "__len__", "read": True},
             {"method": "__iter__", "read": True},
             {"method": "named_children", "read": True, "pairs": True},
             {"method": "state_dict", "read": True, "pairs": True},
             {"method": "__iter__", "chain": {"input": "x"}, "read": True}]
    call = {"kind": "module", "target": "torch.nn.ModuleList", "init": {}, "args": [],
            "forward": {"steps": {"on": {"attribute": ""}, "do": steps, "names": ["0", "1", "2", "1.weight"]}},
            "outputs": ["n", "entries", ["names", "children"], ["keys", "values"], "y"]}
    out = run_call(call, {"x": np.array([[-2.0, 4.0]])}, dtype="float64")
    assert int(out["n"][0]) == 3 and out["n"][1] == "int64"
    assert out["entries"][0].tolist() == [1, 0, 1]  # ReLU, PReLU, ReLU by first appearance as arguments
    assert out["names"][0].tolist() == [0, 1] and out["children"][0].tolist() == [1, 0]  # the ReLU once
    assert out["keys"][0].tolist() == [3] and out["values"][0].tolist() == [0.5]
    assert out["y"][0].tolist() == [[0.0, 4.0]] and out["y"][1] == "float64"


def test_dataparallel_on_cpu_runs_the_wrapped_module_with_prefixed_state():
    """Without CUDA, DataParallel calls the wrapped module directly; its state_dict keys are the
    wrapped module's with a ``module.`` prefix (the DataParallel declaration relies on it)."""
    if torch.cuda.is_available():
        pytest.skip("a CUDA machine scatters over its devices")
    inner = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    dp = torch.nn.DataParallel(inner)
    assert dp.device_ids == []
    x = torch.randn(4, 3)
    torch.testing.assert_close(dp(x), inner(x))
    assert list(dp.state_dict()) == [f"module.{k}" for k in inner.state_dict()]
