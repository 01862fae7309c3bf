"""**vmap**. ``BATCH`` cases of the declaration with the same shapes and different values (slice 0
the case, the others seeded permutations of its float inputs and cotangents:
``torch_run.vmap_slice``) stacked along a new dim (at 0, or after the last dim, by case) through
``torch.func.vmap`` over ``torch.func.functional_call``; parameters stacked per case, or shared
(unbatched) by case; forward only, or with ``torch.func.vjp`` inside (the slices' own
cotangents). Each slice is compared with its own case's reference by the declaration's own
tolerances and comparators (``vmap[b].<tensor>``). Where an element's absolute terms (the
declaration's absref) exceed the dtype's range, a partial sum may overflow in a batched kernel's
summation order although the exact sum is in range: a ±inf (of either sign: that of the terms
summed before the overflow) is accepted there, and NaN where the absolute terms exceed twice the
range (two accumulators overflowing with opposite signs) (``VmapMode.partial_sum_overflow``), and
only there. A parameter listed as ``shared`` that the call mutates is stacked all the same (each
slice updates its own copy), and each slice's reference reads its own permutation of it
(``VmapMode.slice_case``, as ``torch_run.run_vmap``). A stochastic case runs with
``randomness="different"`` or ``"same"`` (by case): each slice is judged by its conditional
reference given its reported choices, and under ``"same"`` the slices' choices must coincide.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from backends.base import Case, Result
from backends.torch_run import vmap_slice
from conformance.compare import Comparison, compare_results
from conformance.dtypes import DTYPES
from conformance.modes.base import (
    BATCH,
    Judgement,
    Mode,
    _float_inputs,
    _float_model,
    _renamed,
    _seed,
    _split,
    _with_mode,
)
from conformance.spec import LayerSpec, Pullback
from conformance.tolerance import magnitudes

# The masks a causal hint (``is_causal=True``) asserts to be causal, per hint argument. A vmap slice
# repeats them unpermuted: a permutation of a causal mask's values is no longer the mask the hint
# names, and torch may then apply its own triangle instead (documented: "providing incorrect hints
# can result in incorrect execution").
CAUSAL_HINTS = {"is_causal": ("attn_mask", "src_mask", "mask"), "src_is_causal": ("src_mask",),
                "tgt_is_causal": ("tgt_mask",), "memory_is_causal": ("memory_mask",)}


def causal_hinted_masks(case: Case) -> list[str]:
    """The inputs every vmap slice repeats unpermuted: the masks under a causal hint."""
    hints = {**case.params, **case.forward_kwargs}
    return sorted({m for hint, masks in CAUSAL_HINTS.items() if hints.get(hint) is True
                   for m in masks if m in case.inputs})


class VmapMode(Mode):
    name = "vmap"

    def applicable(self, spec: LayerSpec) -> tuple[bool, str]:
        # Declarations whose call computes no tensor: what they return is Python data that vmap
        # neither batches nor can derive from a batched value (it refuses .item()).
        if spec.kind == "gain":
            return False, (f"{spec.id} computes on Python numbers (its float input only carries them): "
                           "there is no tensor computation to batch")
        if spec.kind == "operations":
            return False, (f"{spec.id} observes a container's Python bookkeeping (lengths, keys, entries), "
                           "which vmap does not batch; the containers' tensor computations are judged "
                           "under vmap by their composed declarations")
        return True, ""

    def accepts(self, spec: LayerSpec, case: Case) -> bool:
        return not case.invalid and any(np.size(v) for v in _float_inputs(case).values())

    def prepare(self, spec: LayerSpec, case: Case, ref: Result) -> Case:
        seed = _seed(case)
        rng = np.random.default_rng([seed, 31])
        last = bool(rng.integers(2))
        parameters = set((case.call or {}).get("parameters", ()))
        node: dict[str, Any] = {
            "kind": "vmap", "seed": seed, "batch": BATCH, "out_dim": 0,
            "in_dim": {n: (np.ndim(v) if last else 0) for n, v in case.inputs.items()},
            "shared": sorted(n for n in parameters if n in case.inputs) if rng.integers(2) else [],
            "inner": "vjp" if case.cotangents and rng.integers(4) else "forward",
            # (a stochastic declaration's deterministic points too: orthogonal_ draws its normals even
            # for gain 0, which vmap's "error" refuses though the result is exact zeros)
            "randomness": (("different", "same")[int(rng.integers(2))] if spec.randomness is not None else "error"),
        }
        fixed = causal_hinted_masks(case)
        if fixed:  # (absent otherwise: no existing case's call tree changes)
            node["fixed"] = fixed
        return _with_mode(case, node)

    def slice_case(self, case: Case, b: int, got: Result | None = None) -> Case:
        """Slice b of a vmap case, as a case of its own (its values, cotangents, no mode; with
        ``got``, the random choices the backend reported for it, as a known entry's predicate reads
        them)."""
        node = (case.call or {})["mode"]
        # A shared parameter the call updates in place is stacked all the same (torch_run.run_vmap):
        # each slice renormalises its own copy, so the slice's value is its permutation.
        shared = set(node.get("shared", ())) - set((case.call or {}).get("mutated", ()))
        shared |= set(node.get("fixed", ()))  # a mask under a causal hint: every slice repeats it
        inputs = {n: (vmap_slice(node["seed"], b, n, v, case.layout(n).describe())
                      if case.input_type(n) == "float" and n not in shared else v) for n, v in case.inputs.items()}
        cots = ({k: vmap_slice(node["seed"], b, "cotangent." + k, v) for k, v in case.cotangents.items()}
                if node.get("inner") == "vjp" else {})
        call = {k: v for k, v in (case.call or {}).items() if k != "mode"}
        choices = ({n: np.asarray(v) for n, v in _split(got, f"vmap[{b}].").choices.items()}
                   if got is not None else {})
        return replace(case, inputs=inputs, cotangents=cots, call=call, mode="vjp", choices=choices)

    @staticmethod
    def partial_sum_overflow(spec: LayerSpec, case: Case, expected: Result, got: Result) -> Result:
        """The slice's reference, where a float result may legitimately be ±inf: an element whose
        absolute terms (absref, the declaration's own magnitude) exceed the dtype's range can have a
        partial sum out of range in some summation order (a batched kernel sums in its own), and so
        be ±inf although the exact sum is in range. Its sign is that of the terms summed before it
        overflowed, not the exact sum's: terms of either sign may reach the range on their own
        (their sum is at most absref), so either infinity is accepted where absref > max; and NaN
        where absref > 2·max, where terms of both signs may each reach it and two accumulators of a
        split reduction overflow with opposite signs (inf - inf). There the backend's value is
        taken as the expected value; anywhere else overflow is judged as usual."""
        top = DTYPES[case.dtype].max_value
        try:
            with np.errstate(all="ignore"):
                absref = magnitudes(spec, _float_model(case), expected)
        except Exception:
            return expected
        groups = {"grad.": expected.grads, "state.": expected.state}
        for name, a in absref.items():
            if name.startswith("random."):
                continue
            group = next((g for g in groups if name.startswith(g)), None)
            key = name[len(group):] if group else name
            target = groups[group] if group else expected.outputs
            value, backend = target.get(key), got.tensors().get(name)
            if value is None or backend is None or np.shape(backend) != np.shape(value) or \
                    np.asarray(value).dtype.kind != "f" or np.shape(a) != np.shape(value):
                continue
            r, y = np.asarray(value, dtype=np.float64), np.asarray(backend, dtype=np.float64)
            legit = np.isfinite(r) & (((a > top) & np.isinf(y)) | ((a > 2 * top) & np.isnan(y)))
            if legit.any():
                target[key] = np.where(legit, y, r)
        return expected

    def slices(self, spec: LayerSpec, case: Case, got: Result) -> list[tuple[int, Case, Result | str, Result]]:
        """Each slice b of a vmap case as the judge sees it: (b, the slice's own case with the
        backend's random choices, its reference (or why it has none: a message), the backend's
        results for it). The repro artifacts of a vmap case use the same references."""
        out: list[tuple[int, Case, Result | str, Result]] = []
        for b in range(int((case.call or {})["mode"]["batch"])):
            part = _split(got, f"vmap[{b}].")
            slice_case = self.slice_case(case, b)
            try:
                with np.errstate(all="ignore"):
                    if spec.is_random(slice_case):
                        slice_case = spec.randomness.with_choices(  # type: ignore[union-attr]
                            slice_case, {n: part.choices[n] for n in spec.randomness.choices})  # type: ignore[union-attr]
                    expected: Result | str = spec.evaluate(slice_case, slice_case.cotangents)
            except KeyError as exc:
                expected = f"random.{exc.args[0]}"
            except Exception as exc:  # a permuted slice outside the reference's domain: not judged
                expected = f"slice {b}: {type(exc).__name__}: {exc}"
            if not isinstance(expected, str):
                expected = self.partial_sum_overflow(spec, slice_case, expected, part)
            out.append((b, slice_case, expected, part))
        return out

    def judge(self, spec: LayerSpec, case: Case, ref: Result, pullback: Pullback | None, got: Result) -> Judgement:
        node = case.call["mode"]  # type: ignore[index]
        comparisons: list[Comparison] = []
        info: dict[str, Any] = {"vmap": {k: node[k] for k in ("batch", "inner", "randomness")},
                                "batch_dim": "first" if not any(node["in_dim"].values()) else "last",
                                "shared_parameters": bool(node.get("shared"))}
        skipped = []
        slices = self.slices(spec, case, got)
        own: dict[int, set[str]] = {}  # each slice's tensors that pass with its own choices
        for b, slice_case, expected, part in slices:
            if isinstance(expected, str) and expected.startswith("random."):
                comparisons.append(Comparison(tensor=f"vmap[{b}].{expected}", ok=False, shape=[],
                                              message="the backend reported no random choice", symptoms=["shape"]))
                continue
            if isinstance(expected, str):
                skipped.append(expected)
                continue
            judged_b = compare_results(spec, slice_case, expected, part)
            own[b] = {c.tensor for c in judged_b if c.ok}
            comparisons += _renamed(judged_b, f"vmap[{b}].")
        if skipped:
            info["skipped"] = skipped
        if node.get("randomness") == "same":
            comparisons += self.same_draw(spec, slices, own)
        return Judgement(comparisons, info)

    @staticmethod
    def same_draw(spec: LayerSpec, slices: list[tuple[int, Case, Result | str, Result]],
                  own: Mapping[int, set[str]]) -> list[Comparison]:
        """randomness="same": every slice must make slice 0's random choices. Each other slice is
        judged by the conditional reference of its own inputs given slice 0's choices (its outputs,
        gradients and state, by the declaration's comparators and tolerances): its results must be
        what slice 0's draw gives there, wherever they are right for their own choices (a tensor
        failing already with them is reported as such, and says nothing about the draw). The
        reported choices are not compared bit for bit: some are read off values that depend on the
        slice's inputs (alpha dropout's mask is its output's values), or went through a computation
        that a batched kernel rounds slice by slice (orthogonal_'s draw is the QR factor of the
        normal draw); their structure is judged with each slice's own (``vmap[b].random.<name>``).
        One comparison ``vmap.same.<name>`` per choice."""
        judged_slices = [(b, c, p) for b, c, e, p in slices if not isinstance(e, str) and spec.is_random(c)]
        if len(judged_slices) < 2 or spec.randomness is None:
            return []
        first = judged_slices[0][1].choices
        failures: list[str] = []
        for b, slice_case, part in judged_slices[1:]:
            given = spec.randomness.with_choices(slice_case, first)
            try:
                with np.errstate(all="ignore"):
                    expected = spec.evaluate(given, given.cotangents)
                    expected = VmapMode.partial_sum_overflow(spec, given, expected, part)
                    expected.choices = {}
                    judged_b = compare_results(spec, given, expected, part)
            except Exception as exc:  # slice 0's choices do not fit this slice: they are not the same
                failures.append(f"slice {b}: slice 0's choices do not apply ({type(exc).__name__}: {exc})")
                continue
            failures += [f"vmap[{b}].{c.tensor}: {c.message}" for c in judged_b
                         if not c.ok and c.tensor in own.get(b, set()) and not c.tensor.startswith("random.")]
        message = ("randomness='same' drew different choices in different slices: a slice's results are not "
                   "those of slice 0's draw (" + "; ".join(failures[:3]) + ")") if failures else ""
        return [Comparison(tensor=f"vmap.same.{name}", ok=not failures, shape=[], exact_elements=1, message=message,
                           symptoms=["index"] if failures else []) for name in sorted(first)]
