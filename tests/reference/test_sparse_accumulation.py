"""The absref term of a sparse gradient accumulated into a preset ``.grad``: torch adds the
uncoalesced entries into G one at a time, so a row read m times rounds m partial sums of magnitude
up to |G| + absref; the tolerance's c·√K·u·absref must cover m·u·(|G| + absref). Checked against
the sequential accumulation itself, in bfloat16-like worst case (a small value added to a large G)."""

from __future__ import annotations

import math

import numpy as np

from backends.base import Case
from backends.torch_call import initial_grad
from conformance.dtypes import DTYPES
from conformance.numerics.sparse import sparse_accumulation


def _case(sparse: bool) -> Case:
    call = {"grad_init": {"seed": 446021829, "scale": {"weight": 2.0}}}
    return Case(op="EmbeddingBag", dtype="bfloat16", params={"sparse": sparse}, inputs={}, call=call)


def test_sparse_rows_get_the_entry_by_entry_rounding_and_dense_ones_do_not():
    magnitude = np.full((2, 4), 0.5)
    rows = np.array([0] * 8)  # row 0 read 8 times, row 1 never
    k, c = 8, 2.0
    grown = sparse_accumulation(_case(True), magnitude, rows, k, c)
    offset = initial_grad(_case(True).call["grad_init"], "weight", (2, 4))
    np.testing.assert_allclose(c * math.sqrt(k) * grown[0] - c * math.sqrt(k) * magnitude[0],
                               8 * (np.abs(offset[0]) + magnitude[0]))
    np.testing.assert_array_equal(grown[1], magnitude[1])
    np.testing.assert_array_equal(sparse_accumulation(_case(False), magnitude, rows, k, c), magnitude)


def test_the_term_covers_sequential_accumulation_into_g():
    """G = 6, eight entries of 0.0845 added one by one in bfloat16: the error of the accumulated value
    against G + Σv exactly is within u·(the grown term)."""
    dt = DTYPES["bfloat16"]
    g, v, m = 6.0, float(dt.round(np.array([0.0845]))[0]), 8
    acc = g
    for _ in range(m):
        acc = float(dt.round(np.array([acc + v]))[0])
    error = abs(acc - (g + m * v))
    absref = m * v
    assert error > dt.unit_roundoff * (abs(g + m * v) + absref)  # one rounding is not enough
    assert error <= m * dt.unit_roundoff * (g + absref)
