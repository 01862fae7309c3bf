"""Numerics of the structured losses: the tolerance glue over the error analyses beside the
references (``reference.loss_ctc``, ``reference.loss_adaptive``; bounds in units of u through
``conformance.tolerance.analysed_tolerance``), the comparators of the conventions torch leaves
open (CTC's gradient form, ties in ``predict``), how a case feeds the registered functionals, and
the predicates ``conformance/known/loss_structured.toml`` names."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from backends.base import Case, Result
from conformance.compare import Comparison, compare_tensor
from conformance.dtypes import DTYPES
from conformance.spec import LayerSpec
from conformance.strategies.loss_structured import lce_all_ignored
from conformance.tolerance import magnitudes
from reference.loss_adaptive import adaptive_errors, linear_cross_entropy_errors
from reference.loss_ctc import ctc_loss_errors, ctc_loss_logits_vjp


def _last_call(fn):
    """Memoise an ``ErrorFn`` on its latest (case, result) pair: the tolerance engine asks for the
    bound of every compared tensor separately, and a comparator asks again, for one analysis."""
    memo: dict[str, Any] = {}

    def wrapper(case: Case, result: Result) -> dict[str, np.ndarray]:
        key = (tuple(sorted(result.grads)), tuple(sorted(case.cotangents)))
        if memo.get("case") is not case or memo.get("result") is not result or memo.get("key") != key:
            memo.update(case=case, result=result, key=key, value=fn(case, result))
        return memo["value"]

    wrapper.__doc__, wrapper.__name__ = fn.__doc__, fn.__name__
    return wrapper


def _u(case: Case) -> float:
    return DTYPES[case.dtype].unit_roundoff


def _tiny(case: Case) -> float:
    return DTYPES[case.dtype].min_subnormal


# -- CTCLoss -----------------------------------------------------------------------------------------------

def _ctc_arguments(case: Case) -> tuple[tuple, dict[str, Any]]:
    i = case.inputs
    return (i["log_probs"], i["targets"], i["input_lengths"], i["target_lengths"]), dict(case.params)


@_last_call
def ctc_errors(case: Case, result: Result) -> dict[str, np.ndarray]:
    """``reference.loss_ctc.ctc_loss_errors`` for the output and the log_probs gradient."""
    args, kwargs = _ctc_arguments(case)
    backward = "log_probs" in result.grads
    out, grad = ctc_loss_errors(*args, **kwargs, cotangent=case.cotangents.get("output") if backward else None,
                                u=_u(case))
    errors = {"output": out}
    if grad is not None:
        errors["grad.log_probs"] = grad
    return errors


def ctc_length(case: Case, tensor: str) -> int:
    """K, sizing the underflow allowance: the log-probabilities summed along a path (T) times the
    states combined per step, for the output; the states of one class (2L + 1) for the gradient."""
    lp = case.inputs["log_probs"]
    states = 2 * int(np.max(np.asarray(case.inputs["target_lengths"]), initial=0)) + 1
    return max(1, lp.shape[0] * states if tensor == "output" else states + 2)


def _best(comparisons: list[Comparison]) -> Comparison:
    """The first comparison that holds, else the one with the fewest mismatches (then the lowest
    utilisation)."""
    for c in comparisons:
        if c.ok:
            return c
    return min(comparisons, key=lambda c: (c.mismatches, c.utilisation))


def ctc_gradient_comparator(spec: LayerSpec, case: Case, name: str, ref: Result, got: Result) -> Comparison:
    """grad.log_probs in either documented-by-practice form, the whole tensor in one of them: the
    derivative of the loss (the reference), or the gradient torch returns, that of
    ctc_loss(log_softmax(x)) at x = log_probs taking exp(log_probs) for softmax(x)
    (``reference.loss_ctc.ctc_loss_logits_vjp``). For normalised log_probs both give the same
    gradient behind a log_softmax."""
    value = got.tensors().get(name)
    absref = magnitudes(spec, case, ref)[name]
    expected = ref.tensors()[name]
    args, kwargs = _ctc_arguments(case)
    with np.errstate(all="ignore"):
        alternative = ctc_loss_logits_vjp(case.cotangents["output"], *args, **kwargs)["log_probs"]
    comparisons = [compare_tensor(spec, case, name, candidate, value, got.dtypes.get(name), absref)
                   for candidate in (alternative, expected)]
    chosen = _best(comparisons)
    if not chosen.ok:
        form = "log-softmax" if chosen is comparisons[0] else "derivative of the loss"
        chosen.message += f" (nearest form: {form})"
    return chosen


# -- AdaptiveLogSoftmaxWithLoss ------------------------------------------------------------------------------

def _clusters(case: Case) -> int:
    return len(case.params["cutoffs"])


def adaptive_call(case: Case) -> tuple[tuple, dict[str, Any]]:
    """The functional's arguments: (input[, target], head_weight, tail_weights, cutoffs) and
    head_bias, from the case's module parameters (``adaptive_log_softmax_with_loss`` when the case
    has a target, else ``adaptive_log_prob`` / ``adaptive_predict``)."""
    from reference.loss_adaptive import cluster_sizes

    p, i = case.params, case.inputs
    cluster_sizes(p["in_features"], p["n_classes"], p["cutoffs"], p["div_value"])  # the constructor's checks
    tail = [(i[f"tail.{k}.0.weight"], i[f"tail.{k}.1.weight"]) for k in range(_clusters(case))]
    lead = (i["input"], i["target"]) if "target" in i else (i["input"],)
    return (*lead, i["head.weight"], tail, list(p["cutoffs"])), {"head_bias": i.get("head.bias")}


def adaptive_grads(case: Case, grads: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The functional's gradients by the case's parameter names (``tail.<i>.<j>.weight``)."""
    out = {"input": grads["input"], "head.weight": grads["head_weight"]}
    if "head_bias" in grads:
        out["head.bias"] = grads["head_bias"]
    for k, (proj, o) in enumerate(grads["tail_weights"]):
        out[f"tail.{k}.0.weight"], out[f"tail.{k}.1.weight"] = proj, o
    return out


@_last_call
def adaptive_errors_of(case: Case, result: Result) -> dict[str, np.ndarray]:
    """``reference.loss_adaptive.adaptive_errors`` (forward, or log_prob), by tensor name."""
    args, kwargs = adaptive_call(case)
    forward = "target" in case.inputs
    backward = bool(result.grads)
    if forward:
        x, target, *rest = args
        cot = (case.cotangents.get("output"), case.cotangents.get("loss")) if backward else None
        raw = adaptive_errors(x, *rest, head_bias=kwargs["head_bias"], target=target, cotangent=cot, u=_u(case),
                              tiny=_tiny(case))
    else:
        raw = adaptive_errors(*args, head_bias=kwargs["head_bias"],
                              cotangent=case.cotangents.get("output") if backward else None, u=_u(case),
                              tiny=_tiny(case))
    errors = {k: raw[k] for k in ("output", "loss") if k in raw}
    if backward:
        errors.update({f"grad.{k}": v for k, v in adaptive_grads(case, raw).items()})
    return errors


def adaptive_length(case: Case, tensor: str) -> int:
    """K: the products of one score (in_features) times the classes of a softmax."""
    return max(1, case.params["in_features"] * case.params["n_classes"])


def predict_comparator(spec: LayerSpec, case: Case, name: str, ref: Result, got: Result) -> Comparison:
    """predict's classes: the reference's argmax, or any class whose log-probability lies within
    the two values' error bounds of the row's maximum (a near-tie torch may break either way;
    ``adaptive_errors`` of log_prob)."""
    from reference.loss_adaptive import adaptive_log_prob

    expected = np.asarray(ref.tensors()[name])
    value = got.tensors().get(name)
    if value is None or np.shape(value) != expected.shape or expected.size == 0:
        return compare_tensor(spec, case, name, expected, value, got.dtypes.get(name), np.zeros(expected.shape))
    args, kwargs = adaptive_call(case)
    lp = adaptive_log_prob(*args, **kwargs)
    err = _u(case) * (adaptive_errors(*args, **kwargs, u=_u(case), tiny=_tiny(case))["output"] + np.abs(lp))
    got_idx = np.clip(np.asarray(value, dtype=np.int64), 0, lp.shape[1] - 1)
    rows = np.arange(lp.shape[0])
    near = lp[rows, got_idx] + err[rows, got_idx] >= lp[rows, expected] - err[rows, expected]
    valid = (np.asarray(value) >= 0) & (np.asarray(value) < lp.shape[1])
    chosen = np.where(near & valid, np.asarray(value, dtype=np.int64), expected)
    return compare_tensor(spec, case, name, chosen, value, got.dtypes.get(name), np.zeros(expected.shape))


# -- LinearCrossEntropyLoss ----------------------------------------------------------------------------------

def lce_call(case: Case) -> tuple[tuple, dict[str, Any]]:
    """``linear_cross_entropy``'s arguments: the module's flat linear weight (C·Π out_features,
    in_features) reshaped to (C, *out_features, in_features), its bias to (C, *out_features), the
    class weights and the module's options."""
    p, i = case.params, case.inputs
    lead = (p["num_classes"], *p["out_features"])
    bias = i.get("linear.bias")
    kwargs = {"linear_bias": None if bias is None else bias.reshape(lead), "weight": i.get("weight"),
              "reduction": p["reduction"], "ignore_index": p["ignore_index"],
              "label_smoothing": p["label_smoothing"], "options": p["options"]}
    return (i["input"], i["linear.weight"].reshape(*lead, i["linear.weight"].shape[-1]), i["target"]), kwargs


def lce_grads(case: Case, grads: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The functional's gradients by the module's parameter names (flat storage)."""
    out = {"input": grads["input"], "linear.weight": grads["linear_weight"].reshape(case.inputs["linear.weight"].shape)}
    if "linear_bias" in grads:
        out["linear.bias"] = grads["linear_bias"].reshape(-1)
    if "target" in grads:
        out["target"] = grads["target"]
    return out


@_last_call
def lce_errors(case: Case, result: Result) -> dict[str, np.ndarray]:
    """``reference.loss_adaptive.linear_cross_entropy_errors``, by tensor name."""
    args, kwargs = lce_call(case)
    kwargs.pop("options")
    backward = bool(result.grads)
    raw = linear_cross_entropy_errors(*args, **kwargs, cotangent=case.cotangents.get("output") if backward else None,
                                      u=_u(case), tiny=_tiny(case))
    errors = {"output": raw["output"]}
    if backward:
        errors.update({f"grad.{k}": v for k, v in lce_grads(case, raw).items()})
    return errors


def lce_length(case: Case, tensor: str) -> int:
    """K: the products of one logit (in_features) times the logits of a position."""
    return max(1, case.params["in_features"] * case.params["num_classes"] * math.prod(case.params["out_features"]))


def lce_chunked_all_ignored(case: Case) -> bool:
    """The chunked path (options set), 'mean', class-index targets all ignored."""
    return (case.params.get("options") is not None and case.params.get("reduction") == "mean"
            and case.params.get("label_smoothing") == 0.0 and not case.params.get("out_features")
            and lce_all_ignored(case))


def _ctc_problem_of(case: Case):
    from reference.loss_ctc import ctc_problem

    args, kwargs = _ctc_arguments(case)
    return ctc_problem(*args, blank=kwargs.get("blank", 0))


def ctc_invalid_target(kind: str):
    """Predicate: an invalid case whose one broken rule (the strategy's note) is ``kind``, "target
    is blank" or "target out of range", and which does hold such a label within a target length."""

    def predicate(case: Case) -> bool:
        if not (case.invalid and case.note == kind):
            return False
        i = case.inputs
        tg, tl = np.asarray(i["targets"]), np.asarray(i["target_lengths"]).reshape(-1)
        labels = tg[:int(tl.sum())] if tg.ndim == 1 else np.concatenate(
            [tg[n, :int(tl[n])] for n in range(tg.shape[0])] + [np.zeros(0, np.int64)])
        c, blank = np.asarray(i["log_probs"]).shape[-1], case.params.get("blank", 0)
        return bool(np.any(labels == blank) if kind == "target is blank" else np.any((labels < 0) | (labels >= c)))

    return predicate


def ctc_empty_log_probs(case: Case) -> bool:
    """A valid case whose log_probs hold no element (N = 0 or T = 0)."""
    return not case.invalid and np.asarray(case.inputs["log_probs"]).size == 0


def ctc_neg_inf_inside(case: Case) -> bool:
    """A -inf log-probability at t < input_lengths[n] of a sample whose loss is finite: torch's
    backward evaluates exp(lcab + nll - log_probs) there as exp(-inf + inf)."""
    if case.invalid:
        return False
    from reference.loss_ctc import lattice

    p = _ctc_problem_of(case)
    nll = lattice(p, backward=False).nll
    inside = np.arange(p.log_probs.shape[0])[:, None] < p.input_lengths[None, :]
    hit = np.any(p.log_probs == -np.inf, axis=2) & inside & np.isfinite(nll)[None, :]
    return bool(hit.any())


ctc_target_is_blank = ctc_invalid_target("target is blank")
ctc_target_out_of_range = ctc_invalid_target("target out of range")


def ctc_lists_under_grad_transform(case: Case) -> bool:
    """A vmap case of CTCLoss with reduction 'mean' whose lengths are Python lists and whose slices
    run ``torch.func.vjp`` (``inner = "vjp"``): torch.func's gradient transforms raise on ctc_loss's
    IntList overload ("Cannot access data pointer of Tensor that doesn't have storage"), with or
    without vmap, where 'mean' divides by the target lengths made a tensor (at::tensor of the list);
    'sum' and 'none' work."""
    node = case.mode_node
    return (node.get("kind") == "vmap" and node.get("inner") == "vjp" and case.params.get("reduction") == "mean"
            and case.types.get("input_lengths") == "int_list")


# -- CTCLoss under vmap: concatenated targets read through a stride ------------------------------------------

def _ctc_read_starts(case: Case, b: int) -> np.ndarray | None:
    """Where torch's CPU kernel starts reading sample n's labels in slice ``b`` of a vmap case whose
    1-d (concatenated) targets are stacked along a new last dim; None for any other case.

    The stacked targets are an (S, B) array, so slice b is a view at offset b with stride B. The
    kernel offsets sample n by pos_n = Σ_{m<n} target_lengths[m] elements, not pos_n·stride, and
    steps through its labels by the stride: it reads flat b + pos_n + s·B, i.e. row
    (b + pos_n) // B + s of the stack, whose columns all hold the case's targets."""
    node = case.mode_node
    tg = np.asarray(case.inputs.get("targets"))
    if (node.get("kind") != "vmap" or tg.ndim != 1 or np.ndim(case.inputs.get("log_probs")) != 3
            or case.types.get("targets") == "int_list" or int(node.get("in_dim", {}).get("targets", 0)) != 1):
        return None
    tl = np.asarray(case.inputs["target_lengths"]).reshape(-1).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(tl)[:-1]]).astype(np.int64)
    return (b + starts) // int(node["batch"])


def _ctc_read_targets(case: Case, b: int) -> np.ndarray | None:
    """The concatenated targets slice ``b`` of a vmap case is computed with (``_ctc_read_starts``);
    None where they are the case's own (or the case is not such a vmap case)."""
    read = _ctc_read_starts(case, b)
    if read is None:
        return None
    tg = np.asarray(case.inputs["targets"])
    tl = np.asarray(case.inputs["target_lengths"]).reshape(-1).astype(np.int64)
    seen = np.concatenate([tg[k:k + n] for k, n in zip(read, tl)] + [np.zeros(0, tg.dtype)])
    return None if np.array_equal(seen, tg) else seen


def ctc_strided_concatenated_targets_vmap(case: Case) -> bool:
    """A vmap case of CTCLoss with batched log_probs and concatenated (1-d) targets stacked along
    the last dim, where some slice's kernel reads other labels than the case's (see
    ``_ctc_read_starts``) and they change the slice's loss or its gradient (by more than 1e-3 of
    their magnitude: log_probs constant along the classes, for one, make every label alike)."""
    if case.invalid or _ctc_read_starts(case, 0) is None:
        return False
    from dataclasses import replace

    from conformance.modes import mode_of
    from reference.loss_ctc import ctc_loss

    vmap = mode_of("vmap")
    for b in range(int(case.mode_node["batch"])):
        seen = _ctc_read_targets(case, b)
        if seen is None:
            continue
        own = vmap.slice_case(case, b)  # type: ignore[attr-defined]
        misread = replace(own, inputs={**own.inputs, "targets": seen})
        with np.errstate(all="ignore"):
            pairs = []
            for c in (own, misread):
                args, kwargs = _ctc_arguments(c)
                values = [np.asarray(ctc_loss(*args, **kwargs), dtype=np.float64).reshape(-1)]
                if "output" in c.cotangents:
                    values.append(np.asarray(ctc_loss_logits_vjp(c.cotangents["output"], *args, **kwargs)["log_probs"],
                                             dtype=np.float64).reshape(-1))
                pairs.append(np.concatenate(values))
            a, m = pairs
            scale = np.max(np.abs(np.where(np.isfinite(a), a, 0.0)), initial=0.0)
            if not np.allclose(a, m, rtol=1e-3, atol=1e-3 * scale, equal_nan=True):
                return True
    return False


def ctc_strided_concatenated_targets_vmap_model(case: Case, reference: Result, got: Result) -> dict[str, object]:
    """What each slice of such a vmap case computes: its loss for the labels the kernel reads
    (``_ctc_read_targets``), and torch's form of its gradient (``ctc_loss_logits_vjp``) with NaN at
    the -inf log-probabilities inside the input length of a finite-loss sample
    (ctc-backward-nan-at-neg-inf-log-prob); magnitudes those of that slice's reference."""
    from dataclasses import replace

    from conformance.modes import VmapMode
    from conformance.spec import spec_of
    from reference.loss_ctc import ctc_loss, lattice

    spec = spec_of(case)
    predicted: dict[str, object] = {}
    for b, part_case, expected, _part in VmapMode().slices(spec, case, got):
        if isinstance(expected, str):
            continue
        seen = _ctc_read_targets(case, b)
        if seen is None:
            continue
        misread = replace(part_case, inputs={**part_case.inputs, "targets": seen})
        args, kwargs = _ctc_arguments(misread)
        with np.errstate(all="ignore"):
            ref = spec.evaluate(misread, misread.cotangents)
            absref = magnitudes(spec, misread, ref)
            predicted[f"vmap[{b}].output"] = (np.asarray(ctc_loss(*args, **kwargs)), absref["output"])
            if "output" in misread.cotangents and "grad.log_probs" in absref:
                grad = np.array(ctc_loss_logits_vjp(misread.cotangents["output"], *args, **kwargs)["log_probs"])
                p = _ctc_problem_of(misread)
                nll = lattice(p, backward=False).nll
                inside = np.arange(p.log_probs.shape[0])[:, None] < p.input_lengths[None, :]
                nan = (p.log_probs == -np.inf) & (inside & np.isfinite(nll)[None, :])[:, :, None]
                predicted[f"vmap[{b}].grad.log_probs"] = (np.where(nan.reshape(grad.shape), np.nan, grad),
                                                          absref["grad.log_probs"])
    return predicted


# -- CTCLoss: a NaN on a state no alignment visits (ctc-nan-off-the-alignments-leaks) ------------------------

def _ctc_verbatim_nan(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """Where torch's CPU kernel (LossCTC.cpp) gives NaN: (nll (N,), gradient (T, N, C)). It evaluates
    the α and β recursions verbatim over every state s <= 2·length at every t < T_n (α_0 only on the
    two starting states, β at T_n - 1 only on the two final ones), each a log-sum of the allowed
    neighbours plus the emission, so a NaN emission on a state no alignment visits gives -inf + NaN
    there and spreads to its neighbours; the gradient exp(lp) - exp(lcab + nll - lp) is NaN where
    lp, nll or lcab (the log-sum of α + β over the states of class c) is."""
    from reference.loss_ctc import lattice

    p = _ctc_problem_of(case)
    lat = lattice(p, backward=False)
    lp, (t_max, n, c) = p.log_probs, p.log_probs.shape
    tl, il = p.target_lengths, p.input_lengths
    width = lat.ext.shape[1]
    valid = np.arange(width)[None, :] <= 2 * tl[:, None]
    nan_e = np.isnan(np.take_along_axis(lp, np.broadcast_to(lat.ext[None], (t_max, n, width)), axis=2)) & valid[None]
    skip = lat.skip
    alpha = np.zeros((t_max, n, width), dtype=bool)  # NaN-ness of α
    if t_max:
        alpha[0] = nan_e[0] & (np.arange(width)[None, :] <= 1)
    for t in range(1, t_max):
        a = alpha[t - 1].copy()
        a[:, 1:] |= alpha[t - 1][:, :-1]
        a[:, 2:] |= alpha[t - 1][:, :-2] & skip[:, 2:]
        alpha[t] = (a | nan_e[t]) & valid & (t < il)[:, None]
    rows = np.arange(n)
    last = alpha[np.maximum(il - 1, 0), rows] if t_max else np.zeros((n, width), dtype=bool)
    ends = np.take_along_axis(last, (2 * tl)[:, None], axis=1)[:, 0] | np.where(
        tl > 0, np.take_along_axis(last, np.maximum(2 * tl - 1, 0)[:, None], axis=1)[:, 0], False)
    nll_nan = ends & (il > 0)
    beta = np.zeros((t_max, n, width), dtype=bool)
    final = (np.arange(width)[None, :] >= 2 * tl[:, None] - 1) & valid
    for t in range(t_max - 1, -1, -1):
        b = np.zeros((n, width), dtype=bool)
        if t + 1 < t_max:
            b = beta[t + 1].copy()
            b[:, :-1] |= beta[t + 1][:, 1:]
            b[:, :-2] |= beta[t + 1][:, 2:] & skip[:, 2:]
        b = (b | nan_e[t]) & valid
        beta[t] = np.where((t == il - 1)[:, None], nan_e[t] & final, np.where((t < il - 1)[:, None], b, False))
    onehot = lat.ext[:, :, None] == np.arange(c)[None, None, :]  # (N, S', C)
    lcab = np.einsum("tns,nsc->tnc", (alpha | beta).astype(np.int64), onehot.astype(np.int64)) > 0
    inside = (np.arange(t_max)[:, None] < il[None, :])[:, :, None]
    grad_nan = inside & (lcab | np.isnan(lp) | nll_nan[None, :, None])
    return nll_nan, grad_nan


def ctc_nan_off_the_alignments(case: Case) -> bool:
    """A valid case with a NaN log-probability on which torch's verbatim recursions
    (``_ctc_verbatim_nan``) make the loss NaN where the reference's is not, or (with a cotangent)
    the gradient NaN where the reference's is not."""
    if case.invalid or not np.isnan(np.asarray(case.inputs["log_probs"], dtype=np.float64)).any():
        return False
    from reference.loss_ctc import lattice

    p = _ctc_problem_of(case)
    nll_nan, grad_nan = _ctc_verbatim_nan(case)
    with np.errstate(all="ignore"):
        ref_nll = lattice(p, backward=False).nll
        if np.any(nll_nan & ~np.isnan(ref_nll)):
            return True
        if "output" not in case.cotangents:
            return False
        args, kwargs = _ctc_arguments(case)
        ref_grad = np.asarray(ctc_loss_logits_vjp(case.cotangents["output"], *args, **kwargs)["log_probs"])
    ref_nan = np.isnan(ref_grad).reshape(grad_nan.shape)
    scale = np.asarray(case.cotangents["output"], dtype=np.float64)
    return bool(np.any(grad_nan & ~ref_nan)) and bool(np.any(scale != 0))
