"""Findings: a run's failing cases grouped by probable root cause, each with where it fails.

A *finding* is one probable bug of one layer (declaration) on one backend. It is built from the
records of a run (``results.jsonl``), in four steps:

1. **Failures.** Each failing case record gives its failure keys: ``(tensor, symptom)`` for each
   out-of-bound compared tensor (``("output", "value")``, ``("grad.input", "nonfinite")``...), or
   ``("call", symptom)`` for the call itself (``raises`` with the exception type, ``accepts-invalid``,
   ``crash``, ``timeout``, ``compile``). Valid and invalid cases are separate *domains*.
2. **Grouping.** In each domain (layer × backend × valid/invalid), the keys are grouped by the cases
   they fail in: two keys are one finding when their failing cases mostly coincide (Jaccard index
   at least 1/2), or when the rule learned for one (step 3) covers every failing case of the other
   while at least half the cases it covers fail (a forward bug that also shows in the gradient, a
   NaN among wrong values). A group whose rule is poor (fewer than half the cases it covers fail)
   is *split* where its failing regions differ: when up to three exact rules cover its failing
   cases, each becomes a finding.
3. **Rule learning.** The rule says where a finding fails, as a conjunction of at most three
   conditions over what records say about a case: parameters (``alpha != 1.0``), forward keyword
   arguments, dtype, memory layouts, tier, train/eval, rank or emptiness of inputs, the declared
   regimes the case lies in and, when the records carry value summaries (``values``), signs,
   zeros, NaN and infinities of inputs (``min(input) < 0``). It is learned from every case the
   search evaluated for that layer and backend (in every dtype, shrinking steps included: shrinking
   probes right at the boundary): every condition holds on all failing cases of the finding, and
   conditions are added greedily, each the one leaving the fewest passing cases covered (simpler
   kinds first on ties), while they exclude any; then conditions that exclude nothing are dropped.
   Each condition is the most general one that holds on every failing case (``alpha != 1.0``
   rather than ``alpha == 0.5``; an interval's open end), so it also covers the cases a longer
   search would draw. The rule comes with its confusion counts on the cases seen: it is *exact*
   when it covers every failing case and no other.
4. **Counts.** Cases and dtypes are counted over the cases the searches drew (``replays``: never a
   shrinking step or a shrunk example's replay); the shrunk examples are counted apart, and the
   smallest one (fewest input elements) represents the finding.

Every rule is also a ``when`` expression of ``conformance.known`` (the same names and the same
evaluation, ``known.evaluate_when``), so ``nnconform triage`` turns a finding into a strict known
entry scoped by it (``draft_entries``).

Unexpected passes (a strict known entry none of whose cases failed), failed statistical checks of
random layers and harness errors are findings of their own, without a rule.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends.base import DISCREPANCY_VERDICTS
from conformance.known import _PREDICATE_BUILTINS, Values
from reports.baseline import error_kind
from reports.render import cell_key, dtype_rank, is_case_record, is_drawn_case, replays

FINDINGS_FILE = "findings.json"
MAX_CONDITIONS = 3
MAX_CLAUSES = 3
CO_OCCURRENCE = 0.8  # two failure keys are one finding when the rarer fails with the other this often
LEARNING = ("a conjunction of at most 3 conditions over parameters, forward arguments, dtype, layouts, tier, "
            "train/eval, input ranks, regimes and (when recorded) input value summaries; each condition holds "
            "on every failing case of the finding and is the most general such; conditions are added greedily "
            "while they exclude passing cases, learned from every case evaluated for the layer and backend "
            "(shrinking steps included)")
SYMPTOM_WORDS = {
    "value": "wrong values", "nonfinite": "wrong NaN/inf positions", "signed-zero": "wrong signs of zero",
    "index": "wrong indices", "shape": "wrong shapes or dtypes", "raises": "raises on valid input",
    "accepts-invalid": "accepts invalid arguments", "crash": "crashes", "timeout": "hangs",
    "compile": "does not compile", "xpass": "no longer fails (known entry out of date)",
    "stat": "random choices fail their statistical check", "harness": "harness error",
}
CALL_KIND = {"crash": "crash", "timeout": "timeout", "compile": "compile"}
_AMBIGUOUS = ("inf", "-inf", "nan")  # JSON strings that were floats (or strings: cannot tell)


# -- facts of a record ---------------------------------------------------------------------------

def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def record_scope(record: Mapping[str, Any]) -> dict[str, Any]:
    """The names a known entry's ``when`` sees (``conformance.known.case_scope``), rebuilt from a
    case record: what its description says, its regimes and, when recorded, its value summaries."""
    case = record.get("case") or {}
    inputs = case.get("inputs") or {}
    scope: dict[str, Any] = {
        "params": _tuples(case.get("params") or {}), "forward_kwargs": _tuples(case.get("forward_kwargs") or {}),
        "tier": case.get("tier"), "train": bool(case.get("train", True)), "dtype": record.get("dtype"),
        "invalid": bool(case.get("invalid", record.get("tier") == "invalid")),
        "variant": record.get("variant", case.get("variant", "")),
        "shapes": {name: tuple(info.get("shape") or ()) for name, info in inputs.items()},
        "layouts": {name: (info.get("layout") or {}).get("kind", "contiguous") for name, info in inputs.items()},
        "cpu": frozenset(), "regimes": frozenset(record.get("regimes") or ()),
    }
    if isinstance(record.get("values"), dict):
        scope["values"] = {name: Values.of(v) for name, v in record["values"].items() if isinstance(v, dict)}
    return scope


def failure_keys(record: Mapping[str, Any]) -> frozenset[tuple[str, str]]:
    """What failed in a record (see the module docstring); empty for a pass or a known case."""
    verdict = record.get("verdict")
    if verdict == "fail":
        keys = set()
        for c in record.get("comparisons") or []:
            if not c.get("ok", True):
                for symptom in c.get("symptoms") or ["shape"]:
                    keys.add((str(c.get("tensor", "?")), str(symptom)))
        return frozenset(keys or {("?", "value")})
    if verdict == "error":
        if record.get("error_side") != "backend":
            return frozenset({("harness", str(record.get("error_side") or "harness"))})
        if record.get("tier") == "invalid":
            return frozenset({("call", "accepts-invalid")})
        return frozenset({("call", f"raises:{error_kind(record.get('error'))}")})
    if verdict in CALL_KIND:
        return frozenset({("call", CALL_KIND[verdict])})
    return frozenset()


def _symptom(key: tuple[str, str]) -> str:
    return key[1].split(":", 1)[0]


# -- conditions ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Condition:
    """One condition of a rule: ``when`` (a ``conformance.known`` expression), ``text`` (for
    people) and ``rank`` (simpler first, on ties)."""

    when: str
    text: str
    rank: tuple[int, int, int]

    def holds(self, scope: Mapping[str, Any]) -> bool:
        try:
            return bool(eval(_compiled(self.when), {"__builtins__": _PREDICATE_BUILTINS, **scope}))
        except Exception:
            return False


_CODE: dict[str, Any] = {}


def _compiled(when: str) -> Any:
    if when not in _CODE:
        _CODE[when] = compile(when, "<rule>", "eval")
    return _CODE[when]


def _literal(value: Any) -> str:
    """A Python literal ``when`` can evaluate (infinities as 1e999: ``float`` is not in its scope)."""
    if isinstance(value, float) and math.isinf(value):
        return "1e999" if value > 0 else "-1e999"
    return repr(value)


def _shown(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, str):
        return value
    return repr(value)


def simplest_between(low: float, high: float, above: bool) -> float:
    """The number with the fewest significant digits t in [low, high) (``above``: for ``x > t``)
    or in (low, high] (for ``x < t``); ``low`` or ``high`` itself when none is simpler."""
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        return low if above else high
    top = math.floor(math.log10(max(abs(low), abs(high)) or 1.0))
    for digits in range(0, 17):
        scale = 10.0 ** (top - digits)
        if above:
            t = math.ceil(low / scale) * scale
            ok = low <= t < high
        else:
            t = math.floor(high / scale) * scale
            ok = low < t <= high
        t = float(f"{t:.{max(0, digits + 1)}g}")
        if ok and (low <= t < high if above else low < t <= high):
            return t
    return low if above else high


def _membership(when: str, text: str, values: Sequence[Any], include: bool, rank: tuple[int, int]) -> Condition:
    """``expr == v`` / ``expr != v`` / ``expr in (...)`` / ``expr not in (...)``."""
    values = sorted(values, key=lambda v: (str(type(v)), repr(v)))
    if len(values) == 1:
        op = "==" if include else "!="
        return Condition(f"{when} {op} {_literal(values[0])}", f"{text} {op} {_shown(values[0])}", (*rank, 1))
    op = "in" if include else "not in"
    literal = "(" + ", ".join(_literal(v) for v in values) + ")"
    shown = "(" + ", ".join(_shown(v) for v in values) + ")"
    return Condition(f"{when} {op} {literal}", f"{text} {op} {shown}", (*rank, len(values)))


# Fact kinds, simplest first: (kind, rank).
_PARAM, _FWD, _VALUES, _DTYPE, _LAYOUT, _TIER, _TRAIN, _SHAPE, _REGIME = range(9)


THRESHOLD = "threshold"  # a fact only compared with a threshold (a continuous value)


def _facts(scopes: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, int, Any, list[Any]]]:
    """(when expression, text, kind, open domain (True, False or ``THRESHOLD``), per-case values)
    for every fact the scopes share."""
    facts: list[tuple[str, str, int, Any, list[Any]]] = []
    n = len(scopes)
    for group, kind, label in (("params", _PARAM, ""), ("forward_kwargs", _FWD, "forward ")):
        names = sorted({k for s in scopes for k in s[group]})
        for name in names:
            values = [s[group].get(name) for s in scopes]
            facts.append((f"{group}.get({name!r})", f"{label}{name}", kind, True, values))
    facts.append(("dtype", "dtype", _DTYPE, False, [s["dtype"] for s in scopes]))
    facts.append(("tier", "tier", _TIER, False, [s["tier"] for s in scopes]))
    facts.append(("train", "train", _TRAIN, False, [s["train"] for s in scopes]))
    inputs = sorted(set.intersection(*(set(s["layouts"]) for s in scopes))) if n else []
    for name in inputs:
        facts.append((f"layouts.get({name!r})", f"layout of {name}", _LAYOUT, False,
                      [s["layouts"].get(name) for s in scopes]))
        facts.append((f"len(shapes.get({name!r}, ()))", f"rank of {name}", _SHAPE, False,
                      [len(s["shapes"].get(name, ())) for s in scopes]))
        facts.append((f"0 in shapes.get({name!r}, ())", f"{name} is empty", _SHAPE, False,
                      [0 in s["shapes"].get(name, ()) for s in scopes]))
    for regime in sorted({r for s in scopes for r in s["regimes"]}):
        facts.append((f"{regime!r} in regimes", f"in regime {regime!r}", _REGIME, False,
                      [regime in s["regimes"] for s in scopes]))
    if n and all("values" in s for s in scopes):
        names = sorted(set.intersection(*(set(s["values"]) for s in scopes)))
        for name in names:
            vs = [s["values"][name] for s in scopes]
            ref = f"values[{name!r}]"
            facts += [(f"{ref}.min < 0", f"min({name}) < 0", _VALUES, False, [v.min < 0 for v in vs]),
                      (f"{ref}.min <= 0", f"min({name}) <= 0", _VALUES, False, [v.min <= 0 for v in vs]),
                      (f"{ref}.max > 0", f"max({name}) > 0", _VALUES, False, [v.max > 0 for v in vs]),
                      (f"{ref}.max >= 0", f"max({name}) >= 0", _VALUES, False, [v.max >= 0 for v in vs]),
                      (f"{ref}.zero", f"{name} has ±0", _VALUES, False, [v.zero for v in vs]),
                      (f"{ref}.nan", f"{name} has NaN", _VALUES, False, [v.nan for v in vs]),
                      (f"{ref}.inf", f"{name} has ±inf", _VALUES, False, [v.inf for v in vs]),
                      (f"{ref}.min", f"min({name})", _VALUES, THRESHOLD, [v.min for v in vs]),
                      (f"{ref}.max", f"max({name})", _VALUES, THRESHOLD, [v.max for v in vs])]
    return facts


def _bool_condition(when: str, text: str, value: bool, kind: int) -> Condition:
    if value:
        shown = "train mode" if when == "train" else text
        return Condition(when, shown, (kind, 0, 0))
    if when == "train":
        return Condition("not train", "eval mode", (kind, 0, 0))
    for test, negated in ((".min < 0", ".min >= 0"), (".min <= 0", ".min > 0"), (".max > 0", ".max <= 0"),
                          (".max >= 0", ".max < 0")):
        if when.endswith(test):
            return Condition(when[: -len(test)] + negated, text[: -len(test) + 4] + negated[4:], (kind, 0, 0))
    if " in regimes" in when:
        return Condition(when.replace(" in regimes", " not in regimes"), "not " + text, (kind, 0, 1))
    if when.startswith("0 in shapes"):
        return Condition("not " + when, text.replace(" is empty", " is not empty"), (kind, 0, 1))
    if text.endswith(" has ±0") or text.endswith(" has NaN") or text.endswith(" has ±inf"):
        return Condition("not " + when, text.replace(" has ", " has no "), (kind, 0, 1))
    return Condition(f"not {when}", f"not {text}", (kind, 0, 1))


def candidate_conditions(scopes: Sequence[Mapping[str, Any]], positive: Sequence[int],
                         among: Iterable[int] | None = None, min_count: int = 1) -> list[Condition]:
    """The conditions that hold on every case of ``positive`` (indices into ``scopes``), each the
    most general one of its fact, among the cases ``among`` (default all). A value (of an
    open-ended fact: a parameter) is excluded only when at least ``min_count`` cases of ``among``
    have it, so that a value rarely drawn is not excluded by chance."""
    pos = set(positive)
    region = sorted(set(range(len(scopes))) if among is None else set(among))
    sub = [scopes[i] for i in region]
    index = {i: k for k, i in enumerate(region)}
    out: list[Condition] = []
    for when, text, kind, open_domain, values in _facts(sub):
        try:
            counts = Counter(_hashable(v) for v in values)
            failing = {_hashable(values[index[i]]) for i in pos if i in index}
        except TypeError:
            continue
        seen = set(counts)
        if failing == seen or not failing:
            continue
        never = seen - failing  # values of non-failing cases only
        if open_domain == THRESHOLD:
            numbers = [v for v in seen if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v]
            failing = {v for v in failing if v in numbers}
            if failing and len(numbers) == len(seen):
                below = [v for v in never if v < min(failing)]
                above = [v for v in never if v > max(failing)]
                if below and sum(counts[v] for v in below) >= min_count:
                    edge = simplest_between(max(below), min(failing), above=True)
                    out.append(Condition(f"{when} > {_literal(edge)}", f"{text} > {_shown(edge)}", (kind, 1, 0)))
                if above and sum(counts[v] for v in above) >= min_count:
                    edge = simplest_between(max(failing), min(above), above=False)
                    out.append(Condition(f"{when} < {_literal(edge)}", f"{text} < {_shown(edge)}", (kind, 1, 0)))
            continue
        if all(isinstance(v, bool) for v in seen):
            if len(failing) == 1:
                out.append(_bool_condition(when, text, next(iter(failing)), kind))
            continue
        plain = [v for v in never if not isinstance(v, (tuple, dict)) and v not in _AMBIGUOUS]
        if open_domain:
            excluded = [v for v in plain if counts[v] >= min_count]
            every_value_believed = len(excluded) == len(never)
            if excluded:
                # the values most often drawn without failing first: each set a candidate
                excluded.sort(key=lambda v: -counts[v])
                for k in range(1, min(3, len(excluded)) + 1):
                    out.append(_membership(when, text, excluded[:k], False, (kind, 0)))
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seen)
            if numeric and len(seen) >= 3:
                low, high = min(failing), max(failing)
                below = [v for v in never if v < low]
                above = [v for v in never if v > high]
                if below and sum(counts[v] for v in below) >= min_count:
                    edge = max(below)
                    out.append(Condition(f"{when} > {_literal(edge)}", f"{text} > {_shown(edge)}", (kind, 1, 0)))
                if above and sum(counts[v] for v in above) >= min_count:
                    edge = min(above)
                    out.append(Condition(f"{when} < {_literal(edge)}", f"{text} < {_shown(edge)}", (kind, 1, 0)))
            if every_value_believed and len(failing) <= 2 and \
                    all(not isinstance(v, (tuple, dict)) and v not in _AMBIGUOUS for v in failing):
                out.append(_membership(when, text, list(failing), True, (kind, 2)))
        elif all(not isinstance(v, (tuple, dict)) for v in failing):
            out.append(_membership(when, text, list(failing), True, (kind, 0)))
    return out


SIGNIFICANCE = 1e-2


def chance(covered: int, failing: int, excluded: int) -> float:
    """The probability that ``excluded`` cases drawn at random (without replacement) from
    ``covered`` cases, ``failing`` of which fail, all pass: how likely a condition that excludes
    them and no failing case would be if it had nothing to do with the failure."""
    p = 1.0
    for i in range(excluded):
        p *= max(covered - failing - i, 0) / (covered - i)
        if p == 0.0:
            break
    return p


def believed(covered: int, failing: int, excluded: int) -> bool:
    """A condition is believed when excluding so many passing cases by chance is unlikely
    (``chance`` below ``SIGNIFICANCE``)."""
    return excluded > 0 and chance(covered, failing, excluded) < SIGNIFICANCE


def min_excluded(covered: int, failing: int) -> int:
    """The fewest passing cases a believed condition excludes (at most ``covered - failing``,
    else one more)."""
    for n in range(1, covered - failing + 1):
        if believed(covered, failing, n):
            return n
    return covered - failing + 1


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


# -- rules ---------------------------------------------------------------------------------------

@dataclass
class Rule:
    """A conjunction of conditions and how it fares on the cases seen (distinct cases of the
    finding's domain: ``tp`` failing and covered, ``fn`` failing and not covered, ``fp`` not failing
    and covered, ``tn`` neither)."""

    conditions: list[Condition] = field(default_factory=list)
    tp: int = 0
    fn: int = 0
    fp: int = 0
    tn: int = 0

    @property
    def when(self) -> str:
        return " and ".join(c.when for c in self.conditions)

    @property
    def text(self) -> str:
        return " and ".join(c.text for c in self.conditions) or "everywhere"

    @property
    def exact(self) -> bool:
        return self.fp == 0 and self.fn == 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    def covers(self, scope: Mapping[str, Any]) -> bool:
        return all(c.holds(scope) for c in self.conditions)

    def describe(self) -> dict[str, Any]:
        seen = self.tp + self.fn + self.fp + self.tn
        if self.exact:
            quality = f"exact on the {seen} cases seen ({self.tp} failing, {self.tn} not)"
        else:
            quality = (f"covers {self.tp} of {self.tp + self.fn} failing cases and {self.fp} of {self.fp + self.tn} "
                       f"others ({100.0 * (self.tp + self.tn) / max(seen, 1):.0f}% of the {seen} cases seen agree)")
        return {"text": self.text, "when": self.when, "conditions": [c.text for c in self.conditions],
                "exact": self.exact, "tp": self.tp, "fn": self.fn, "fp": self.fp, "tn": self.tn,
                "accuracy": (self.tp + self.tn) / max(seen, 1), "quality": quality}


def _score(rule_conditions: Sequence[Condition], holds: Mapping[Condition, set[int]], universe: set[int],
           positive: set[int]) -> tuple[set[int], set[int]]:
    covered = set(universe)
    for c in rule_conditions:
        covered &= holds[c]
    return covered & positive, covered - positive


def learn_rule(scopes: Sequence[Mapping[str, Any]], positive: Iterable[int]) -> Rule:
    """The conjunction (see the module docstring) for the cases ``positive`` among ``scopes``: each
    step adds the condition, holding on every failing case, that leaves the fewest other cases
    covered, provided it excludes enough of them to be believed (``believed``)."""
    pos = set(positive)
    universe = set(range(len(scopes)))
    chosen: list[Condition] = []
    covered = set(universe)
    holds: dict[Condition, set[int]] = {}
    while covered - pos and len(chosen) < MAX_CONDITIONS:
        negatives = covered - pos
        minimum = min_excluded(len(covered), len(pos))
        options = []
        for c in candidate_conditions(scopes, sorted(pos), covered, minimum):
            if c not in holds:
                holds[c] = {i for i in universe if c.holds(scopes[i])}
            if pos <= holds[c] and len(negatives - holds[c]) >= minimum:
                options.append(c)
        if not options:
            break
        best = min(options, key=lambda c: (len(negatives & holds[c]), c.rank, len(c.text)))
        chosen.append(best)
        covered &= holds[best]
    for condition in list(chosen):  # drop what excludes nothing the others do not
        rest = [c for c in chosen if c is not condition]
        if len(_score(rest, holds, universe, pos)[1]) == len(covered - pos):
            chosen = rest
    return _measured(Rule(sorted(chosen, key=lambda c: c.rank)), scopes, pos)


def _measured(rule: Rule, scopes: Sequence[Mapping[str, Any]], pos: set[int]) -> Rule:
    covered = {i for i, s in enumerate(scopes) if rule.covers(s)}
    rule.tp, rule.fp = len(covered & pos), len(covered - pos)
    rule.fn, rule.tn = len(pos - covered), len(scopes) - len(covered | pos)
    return rule


def _tail(total: int, failing: int, drawn: int, hits: int) -> float:
    """P(X >= hits) for X hypergeometric: ``drawn`` cases out of ``total``, ``failing`` of which
    fail (how likely a subset that size holds that many failing cases by chance)."""
    denominator = math.comb(total, drawn)
    return sum(math.comb(failing, x) * math.comb(total - failing, drawn - x)
               for x in range(hits, min(drawn, failing) + 1)) / denominator


def _equalities(scopes: Sequence[Mapping[str, Any]]) -> list[Condition]:
    """``fact == value`` (and booleans, regimes) for every value the cases take: the conditions a
    part of a finding can be described by."""
    out: list[Condition] = []
    for when, text, kind, open_domain, values in _facts(scopes):
        if open_domain == THRESHOLD:
            continue
        try:
            seen = {_hashable(v) for v in values}
        except TypeError:
            continue
        if len(seen) < 2:
            continue
        for value in seen:
            if isinstance(value, bool) and all(isinstance(v, bool) for v in seen):
                out.append(_bool_condition(when, text, value, kind))
            elif not isinstance(value, (tuple, dict)) and value not in _AMBIGUOUS:
                out.append(_membership(when, text, [value], True, (kind, 0)))
    return out


def _precision(cases: set[int] | frozenset[int], failing: set[int]) -> float:
    return len(cases & failing) / len(cases) if cases else 0.0


def learn_clauses(scopes: Sequence[Mapping[str, Any]], positive: Iterable[int]) -> list[set[int]] | None:
    """Split the failing cases ``positive`` into up to three parts, each the failing cases of one
    conjunction of equalities grown greedily for precision, where failures are much more frequent
    than elsewhere (a hypergeometric tail below ``SIGNIFICANCE``); None when no such split covers
    them all."""
    universe = set(range(len(scopes)))
    pos = set(positive)
    conditions = _equalities(scopes)
    holds = {c: {i for i in universe if c.holds(scopes[i])} for c in conditions}
    remaining = set(pos)
    parts: list[set[int]] = []
    while remaining and len(parts) < MAX_CLAUSES:
        covered = set(universe)
        chosen: list[Condition] = []
        while len(chosen) < MAX_CONDITIONS:
            options = [c for c in conditions if c not in chosen and len(covered & holds[c] & remaining) >= 2]
            if not options:
                break
            best = max(options, key=lambda c, cov=frozenset(covered): (
                _precision(cov & holds[c], pos), len(cov & holds[c] & remaining), [-r for r in c.rank]))
            if _precision(covered & holds[best], pos) <= _precision(covered, pos) + 1e-9:
                break
            chosen.append(best)
            covered &= holds[best]
            if covered <= pos:
                break
        part = covered & remaining
        chance_of_part = _tail(len(universe), len(pos), len(covered), len(covered & pos))
        if not chosen or len(part) < 2 or chance_of_part >= SIGNIFICANCE:
            return None
        parts.append(part)
        remaining -= part
    return parts if not remaining else None


# -- findings ------------------------------------------------------------------------------------

@dataclass
class _Domain:
    op: str
    backend: str
    invalid: bool
    records: list[dict[str, Any]] = field(default_factory=list)  # distinct cases, first record of each
    keys: list[frozenset[tuple[str, str]]] = field(default_factory=list)
    scopes: list[dict[str, Any]] = field(default_factory=list)


def _case_records(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str, bool], _Domain]:
    domains: dict[tuple[str, str, bool], _Domain] = {}
    seen: dict[tuple[str, str, str, str], int] = {}
    for record in records:
        if not is_case_record(record) or not record.get("case") or record.get("tier") == "stat":
            continue
        if record.get("verdict") in ("known", "unsupported", "xpass"):
            continue  # explained, or no case: neither failing nor passing evidence
        op, backend, dtype = cell_key(record)
        identity = (op, backend, dtype, str(record.get("case_id") or id(record)))
        invalid = record.get("tier") == "invalid"
        domain = domains.setdefault((op, backend, invalid), _Domain(op, backend, invalid))
        if identity in seen:  # the same case again (a final replay): what failed in either counts
            index = seen[identity]
            domain.keys[index] = domain.keys[index] | failure_keys(record)
            continue
        seen[identity] = len(domain.records)
        domain.records.append(record)
        domain.keys.append(failure_keys(record))
        domain.scopes.append(record_scope(record))
    return domains


def _groups(domain: _Domain) -> list[set[int]]:
    """The failing cases of each probable root cause (indices into the domain's records)."""
    by_key: dict[tuple[str, str], set[int]] = defaultdict(set)
    for i, keys in enumerate(domain.keys):
        for key in keys:
            if key[0] != "harness":
                by_key[key].add(i)
    keys = sorted(by_key)
    parent = {k: k for k in keys}

    def root(k: tuple[str, str]) -> tuple[str, str]:
        while parent[k] != k:
            k = parent[k]
        return k

    rules = {k: learn_rule(domain.scopes, by_key[k]) for k in keys} if len(keys) > 1 else {}
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            pa, pb = by_key[a], by_key[b]
            together = len(pa & pb) >= CO_OCCURRENCE * min(len(pa), len(pb))
            within = any(sum(rules[x].covers(domain.scopes[j]) for j in by_key[y]) >= CO_OCCURRENCE * len(by_key[y])
                         for x, y in ((a, b), (b, a)))
            if together or within:
                parent[root(b)] = root(a)
    merged: dict[tuple[str, str], set[int]] = defaultdict(set)
    for k in keys:
        merged[root(k)] |= by_key[k]
    out = []
    for cases in merged.values():
        rule = learn_rule(domain.scopes, cases)
        parts = learn_clauses(domain.scopes, cases) if not rule.conditions and rule.fp else None
        out.extend(parts if parts and len(parts) > 1 else [cases])
    return out


def _input_size(record: Mapping[str, Any]) -> int:
    inputs = (record.get("case") or {}).get("inputs") or {}
    return sum(math.prod(info.get("shape") or []) for info in inputs.values())


def _smallest(records: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    if not records:
        return None
    # the random search shrinks toward the simplest values; a regime's search pins corners
    return min(records, key=lambda r: (_input_size(r), len((r.get("case") or {}).get("inputs") or {}),
                                       r.get("regime") is not None, dtype_rank(str(r.get("dtype"))),
                                       str(r.get("case_id"))))


def _worst(records: Sequence[Mapping[str, Any]], tensors: set[str]) -> dict[str, Any]:
    """The largest finite utilisation and error in ulps among the failing comparisons of these
    tensors (None when none is finite)."""
    utils, ulps = [], []
    for record in records:
        for c in record.get("comparisons") or []:
            if not c.get("ok", True) and c.get("tensor") in tensors and "value" in (c.get("symptoms") or []):
                for key, out in (("finite_utilisation", utils), ("max_ulp", ulps)):
                    try:
                        x = float(c.get(key))
                    except (TypeError, ValueError):
                        continue
                    out.append(x)
    finite_utils = [u for u in utils if math.isfinite(u)]
    finite_ulps = [u for u in ulps if math.isfinite(u)]
    return {"utilisation": max(finite_utils) if finite_utils and len(finite_utils) == len(utils) else None,
            "ulps": max(finite_ulps) if finite_ulps and len(finite_ulps) == len(ulps) else None}


def title_of(finding: Mapping[str, Any]) -> str:
    """``ELU on vendor: wrong values in output, grad.input where alpha != 1``."""
    kind = finding["kind"]
    what = ", ".join(SYMPTOM_WORDS.get(s, s) for s in finding["symptoms"]) or SYMPTOM_WORDS.get(kind, kind)
    if finding["tensors"]:
        what += " in " + ", ".join(finding["tensors"])
    if finding.get("errors"):
        what = f"raises {', '.join(finding['errors'])} on valid input"
    where = ""
    rule = finding.get("rule")
    if rule and rule["conditions"]:
        where = f" where {rule['text']}"
    invalid = " (invalid arguments)" if finding.get("invalid") and kind != "accepts-invalid" else ""
    return f"{finding['op']} on {finding['backend']}: {what}{where}{invalid}"


def analyse(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The findings of a run's records (JSON-able dicts, see ``write_findings``), most cases first
    within a layer, layers by name."""
    replayed = replays(list(records))
    finals_by_id = {id(r) for r in records if r.get("final")}
    # Every evaluated record of a case (draws, shrinking steps, finals) with its failure keys.
    by_case: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if is_case_record(record) and record.get("case"):
            op, backend, dtype = cell_key(record)
            by_case[(op, backend, dtype, str(record.get("case_id") or id(record)))].append(record)
    findings: list[dict[str, Any]] = []
    for (op, backend, _), domain in sorted(_case_records(records).items()):
        for cases in _seen_outside_shrinking(domain, _groups(domain), by_case, replayed):
            keys = set().union(*(domain.keys[i] for i in cases))
            group_keys = {k for k in keys if k[0] != "harness"}
            all_records = [r for i in cases for r in by_case[(op, backend, str(domain.records[i].get("dtype")),
                                                              str(domain.records[i].get("case_id") or
                                                                  id(domain.records[i])))]]
            all_records = [r for r in all_records if failure_keys(r) & group_keys]
            findings.append(_finding(domain, cases, group_keys, all_records, replayed, finals_by_id))
    findings += _standalone(records, replayed)
    findings.sort(key=lambda f: (f["op"], f["backend"], f["invalid"], -f["cases"]))
    for n, finding in enumerate(findings, 1):
        finding["id"] = f"F{n}"
    return findings


def _seen_outside_shrinking(domain: _Domain, groups: list[set[int]], by_case: Mapping[Any, list[dict[str, Any]]],
                            replayed: set[int]) -> list[set[int]]:
    """The groups, those whose failing cases were all met while shrinking another failure (never
    drawn, never a shrunk example) merged into the largest group of their domain: they belong to
    the failure that was being shrunk."""
    def drawn_or_final(i: int) -> bool:
        record = domain.records[i]
        key = (domain.op, domain.backend, str(record.get("dtype")), str(record.get("case_id") or id(record)))
        return any(not r.get("shrinking") or r.get("final") for r in by_case[key])

    kept = [g for g in groups if any(drawn_or_final(i) for i in g)]
    if not kept:
        return groups
    kept.sort(key=len, reverse=True)
    for g in groups:
        if not any(drawn_or_final(i) for i in g):
            kept[0] = kept[0] | g
    return kept


def _finding(domain: _Domain, cases: set[int], keys: set[tuple[str, str]], records: list[dict[str, Any]],
             replayed: set[int], finals: set[int]) -> dict[str, Any]:
    drawn = [r for r in records if is_drawn_case(r, replayed)]
    shrunk = [r for r in records if id(r) in finals and r.get("verdict") in DISCREPANCY_VERDICTS]
    tensors = sorted({k[0] for k in keys if k[0] != "call"}, key=_tensor_order)
    symptoms = sorted({_symptom(k) for k in keys}, key=_symptom_order)
    errors = sorted({k[1].split(":", 1)[1] for k in keys if k[1].startswith("raises:")})
    kind = "fail" if tensors else symptoms[0]
    rule = learn_rule(domain.scopes, cases)
    by_dtype = Counter(str(r.get("dtype")) for r in drawn)
    example = _smallest(shrunk) or _smallest(drawn) or _smallest(records)
    first = records[0] if records else domain.records[min(cases)]
    finding = {
        "id": "", "op": domain.op, "entry": first.get("entry", domain.op), "variant": first.get("variant", ""),
        "family": first.get("family", ""), "backend": domain.backend, "invalid": domain.invalid, "kind": kind,
        "tensors": tensors, "symptoms": symptoms, "errors": errors,
        "keys": sorted(f"{t}:{s}" for t, s in keys),
        "cases": len(drawn), "shrunk": len(shrunk),
        "dtypes": sorted(by_dtype, key=dtype_rank),
        "by_dtype": dict(sorted(by_dtype.items(), key=lambda x: dtype_rank(x[0]))),
        "dtypes_run": sorted({str(r.get("dtype")) for r in domain.records}, key=dtype_rank),
        "rule": rule.describe(),
        "worst": _worst(records, set(tensors)),
        "example": example,
        "examples": [_example_summary(r) for r in sorted(shrunk, key=lambda r: (dtype_rank(str(r.get("dtype"))),
                                                                               _input_size(r)))],
        "case_ids": [str(r.get("case_id")) for r in drawn],
    }
    finding["title"] = title_of(finding)
    return finding


def _example_summary(record: Mapping[str, Any]) -> dict[str, Any]:
    return {"case_id": record.get("case_id"), "dtype": record.get("dtype"), "regime": record.get("regime"),
            "verdict": record.get("verdict"), "artifacts": record.get("artifacts"), "size": _input_size(record)}


def _standalone(records: Sequence[dict[str, Any]], replayed: set[int]) -> list[dict[str, Any]]:
    """Findings without a rule: unexpected passes (one per known entry and layer × backend),
    failed statistical checks, harness errors."""
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if not is_case_record(record) or record.get("shrinking"):
            continue
        verdict = record.get("verdict")
        op, backend, _ = cell_key(record)
        if verdict == "xpass":
            groups[(op, backend, "xpass", str((record.get("known") or {}).get("id", "?")))].append(record)
        elif record.get("tier") == "stat" and verdict in DISCREPANCY_VERDICTS:
            groups[(op, backend, "stat", "")].append(record)
        elif verdict == "error" and record.get("error_side") in ("harness", "reference") and \
                id(record) not in replayed:
            groups[(op, backend, "harness", str(record.get("error_side")))].append(record)
    out = []
    for (op, backend, kind, detail), group in sorted(groups.items()):
        tensors = sorted({str(c.get("tensor")) for r in group for c in r.get("comparisons") or []
                          if not c.get("ok", True)}) if kind == "stat" else []
        by_dtype = Counter(str(r.get("dtype")) for r in group)
        finding = {
            "id": "", "op": op, "entry": group[0].get("entry", op), "variant": group[0].get("variant", ""),
            "family": group[0].get("family", ""), "backend": backend, "invalid": False, "kind": kind,
            "tensors": tensors, "symptoms": [kind], "errors": [], "keys": [f"{kind}:{detail}"],
            "cases": len(group), "shrunk": 0, "dtypes": sorted(by_dtype, key=dtype_rank),
            "by_dtype": dict(by_dtype), "dtypes_run": sorted(by_dtype, key=dtype_rank), "rule": None,
            "worst": {"utilisation": None, "ulps": None}, "example": group[0], "examples": [],
            "case_ids": [str(r.get("case_id")) for r in group], "known_id": detail if kind == "xpass" else None,
        }
        finding["title"] = (f"{op} on {backend}: known entry {detail!r} matched cases and none failed"
                            if kind == "xpass" else
                            f"{op} on {backend}: {SYMPTOM_WORDS[kind]}" + (f" ({detail})" if detail else ""))
        out.append(finding)
    return out


def _tensor_order(name: str) -> tuple[int, str]:
    prefix = 2 if name.startswith("grad.") else 1 if name.startswith(("state.", "random.")) else 0
    return (prefix, name)


def _symptom_order(symptom: str) -> int:
    order = ("value", "nonfinite", "signed-zero", "index", "shape", "raises", "accepts-invalid", "crash", "timeout",
             "compile")
    return order.index(symptom) if symptom in order else len(order)


# -- the findings file ---------------------------------------------------------------------------

def findings_document(findings: Sequence[dict[str, Any]], run_info: Mapping[str, Any]) -> dict[str, Any]:
    """``findings.json``: the findings (each with its cases' ids and its smallest example's record)
    and how rules are learned."""
    return {"version": 1, "run_id": run_info.get("run_id"), "learning": LEARNING,
            "counts": {"findings": len(findings), "cases": sum(f["cases"] for f in findings),
                       "shrunk": sum(f["shrunk"] for f in findings)},
            "findings": list(findings)}


def write_findings(directory: str | os.PathLike[str], findings: Sequence[dict[str, Any]],
                   run_info: Mapping[str, Any]) -> Path:
    from reports.records import _clean

    path = Path(directory) / FINDINGS_FILE
    tmp = path.with_name(f".{FINDINGS_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(_clean(findings_document(findings, run_info)), indent=1, sort_keys=True,
                              allow_nan=False), encoding="utf-8")
    os.replace(tmp, path)
    return path


def render_run(directory: str | os.PathLike[str], baseline: Any = None) -> tuple[dict[str, Path], list[dict[str, Any]]]:
    """Compute the findings of the run in ``directory``, write ``findings.json`` and render the
    HTML and JUnit reports with them. Returns (report paths, findings)."""
    from reports.publish import render_all
    from reports.render import load

    records, run_info = load(directory)
    findings = analyse(records)
    paths = {"findings": write_findings(directory, findings, run_info)}
    paths.update(render_all(directory, baseline, findings=findings))
    return paths, findings


# -- drafting known entries ----------------------------------------------------------------------

TRIAGED_KINDS = ("fail", "raises", "accepts-invalid", "crash", "timeout", "compile")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def _bound(value: float, margin: float) -> float:
    """``value`` × ``margin`` rounded up to two significant digits."""
    x = value * margin
    if x <= 0 or not math.isfinite(x):
        return x
    scale = 10.0 ** (math.floor(math.log10(x)) - 1)
    return math.ceil(x / scale - 1e-9) * scale


def draft_entries(findings: Sequence[dict[str, Any]], run_info: Mapping[str, Any], report_dir: str,
                  existing_ids: Iterable[str] = (), margin: float = 10.0) -> tuple[list[dict[str, Any]], list[str]]:
    """Strict known entries for the findings a known entry can explain, and a note for each other
    (an unexpected pass, a statistical check, a harness error). Each entry is scoped by its
    finding's layer, backend, the dtypes it failed in and its rule; it explains the finding's
    tensors and symptoms and, for wrong values, errors up to ``margin`` times the largest seen.
    Returns (entries, notes)."""
    taken = set(existing_ids)
    entries, notes = [], []
    specs = {info.get("name"): info.get("spec") or info.get("name") for info in run_info.get("backends") or []
             if isinstance(info, dict)}
    for finding in findings:
        if finding["kind"] not in TRIAGED_KINDS:
            notes.append(f"{finding['id']} ({finding['title']}): not drafted — "
                         + ("remove or relax that known entry" if finding["kind"] == "xpass" else
                            "write its entry by hand, with symptom = \"statistics\" and a reason that says why "
                            "the draws are not the declared distribution" if finding["kind"] == "stat" else
                            "a harness error is not a known discrepancy"))
            continue
        base = _slug(f"{finding['backend']}-{finding['op']}-{'-'.join(finding['tensors'] or [finding['kind']])}-"
                     f"{'-'.join(finding['symptoms'])}")[:80]
        entry_id, n = base, 2
        while entry_id in taken:
            entry_id, n = f"{base}-{n}", n + 1
        taken.add(entry_id)
        rule = finding.get("rule") or {}
        conditions = [rule["when"]] if rule.get("when") else []
        dtype = "*"
        if set(finding["dtypes"]) != set(finding["dtypes_run"]) and finding["dtypes"]:
            if len(finding["dtypes"]) == 1:
                dtype = finding["dtypes"][0]
            elif not any(c.startswith("dtype") for c in rule.get("conditions", [])):
                conditions.insert(0, f"dtype in {tuple(finding['dtypes'])!r}")
        if finding["invalid"]:
            conditions.insert(0, "invalid")
        entry: dict[str, Any] = {"id": entry_id, "op": finding["op"], "backend": finding["backend"], "dtype": dtype}
        if conditions:
            entry["when"] = " and ".join(f"({c})" if " or " in c else c for c in conditions)
        symptoms = list(finding["symptoms"])
        if finding["tensors"]:
            entry["tensors"] = list(finding["tensors"])
        entry["symptom"] = symptoms if len(symptoms) > 1 else symptoms[0]
        worst = finding.get("worst") or {}
        bound_note = ""
        if "value" in symptoms:
            if worst.get("utilisation") is not None:
                entry["max_utilisation"] = _bound(worst["utilisation"], margin)
                bound_note = (f" Bound: {margin:g}× the largest error seen (utilisation "
                              f"{worst['utilisation']:.3g}), so a grosser failure is still reported.")
            elif worst.get("ulps") is not None:
                entry["max_ulps"] = _bound(worst["ulps"], margin)
                bound_note = (f" Bound: {margin:g}× the largest error seen ({worst['ulps']:.3g} ulps), so a grosser "
                              "failure is still reported.")
        entry["strict"] = True
        entry["reason"] = _reason(finding, run_info, report_dir, specs.get(finding["backend"]), bound_note)
        entries.append(entry)
    return entries, notes


def _reason(finding: Mapping[str, Any], run_info: Mapping[str, Any], report_dir: str, backend_spec: str | None,
            bound_note: str) -> str:
    from reports.render import call_text, input_text

    rule = finding.get("rule") or {}
    dtypes = ", ".join(f"{d} ({n})" for d, n in finding["by_dtype"].items())
    text = (f"{finding['title']}. {finding['cases']} failing case{'s' if finding['cases'] != 1 else ''} in {dtypes}; "
            f"where: {rule.get('text', 'everywhere')} ({rule.get('quality', 'no rule')}).")
    example = finding.get("example") or {}
    case = example.get("case") or {}
    if case:
        inputs = ", ".join(input_text(n, i) for n, i in (case.get("inputs") or {}).items())
        text += f" Smallest example: {call_text(example)} on {inputs}"
        failing = [c for c in example.get("comparisons") or [] if not c.get("ok", True) and c.get("worst")]
        if failing:
            w = failing[0]["worst"][0]
            at = f"[{', '.join(map(str, w.get('index') or ()))}]" if w.get("index") else ""
            text += f"; {failing[0]['tensor']}{at}: reference {w.get('ref')!r}, got {w.get('got')!r}"
        text += "."
    elif example.get("error"):
        text += f" Error: {str(example['error']).strip().splitlines()[0][:200]}."
    repro = (example.get("artifacts") or {}).get("repro")
    if repro:
        command = f"python {os.path.join(report_dir, repro)}"
        if backend_spec and backend_spec not in ("torch-cpu", "torch-cuda"):
            command += f" --backend {backend_spec}"
        text += f" Repro: {command} (needs that run's report directory)."
    text += bound_note
    started = run_info.get("started") or ""
    text += f" Drafted by nnconform triage from run {run_info.get('run_id', '?')}" + (f" ({started[:10]})" if started
                                                                                       else "") + "."
    return text


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(float(value)) if isinstance(value, float) else str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def entries_toml(entries: Sequence[dict[str, Any]]) -> str:
    """The entries as ``[[discrepancy]]`` tables, each after a comment saying what it explains."""
    blocks = []
    for entry in entries:
        lines = [f"# {_comment(entry['reason'].split('. ')[0])}", "[[discrepancy]]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in entry.items()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def _comment(text: str) -> str:
    return " ".join(str(text).split())[:200]


HEADER = """# Known discrepancies of this project's backends (nnconform's schema: see conformance/known.py).
# Drafted by `nnconform triage`; review each entry: its scope (op, backend, dtype, when), what it
# explains (tensors, symptom, bound) and its reason, then link the bug you filed.
"""


def write_known_file(path: str | os.PathLike[str], entries: Sequence[dict[str, Any]]) -> Path:
    """Append ``entries`` to the known file ``path`` (created with a header when missing), checking
    that the result loads (``conformance.known.load_file``) before replacing it."""
    from conformance.known import load_file

    path = Path(path)
    old = path.read_text(encoding="utf-8") if path.exists() else HEADER
    text = old.rstrip("\n") + "\n\n" + entries_toml(entries) if entries else old
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    try:
        load_file(tmp)
    except ValueError:
        tmp.unlink()
        raise
    os.replace(tmp, path)
    return path



# -- what the declarations say, for bug reports --------------------------------------------------

def _policy_text(tol: Any) -> str:
    """A declaration's tolerance policy for one tensor, in words."""
    if callable(tol.magnitude):
        magnitude = "the layer's own first-order error analysis"
    elif tol.magnitude == "ref":
        magnitude = "absref = |ref| (an elementwise function)"
    else:
        magnitude = "absref = the computation on absolute values (|W|·|X| for a product)"
    exact = {"always": "bit-exact in every tier (a copy or selection)",
             "bitwise": "bit-exact in the exact tier wherever every partial sum is an integer the dtype holds",
             "rounded": "exact up to one final rounding in the exact tier",
             "none": "no exactness claim"}.get(tol.exact, tol.exact)
    return f"{magnitude}; c = {tol.c:g}, out_ulps = {tol.out_ulps:g}; {exact}"


def declaration_facts(findings: Sequence[Mapping[str, Any]]) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """({finding id: {tensor: tolerance policy}}, {op: torch target}) from the declarations (empty
    where a finding's layer is not declared in this nnconform)."""
    from conformance.spec import all_specs

    specs = all_specs()
    policies: dict[str, dict[str, str]] = {}
    targets: dict[str, str] = {}
    for finding in findings:
        spec = specs.get(str(finding.get("op")))
        if spec is None:
            continue
        targets[spec.id] = spec.torch.target
        tensors = set(finding.get("tensors") or ())
        example = finding.get("example") or {}
        tensors |= {str(c.get("tensor")) for c in example.get("comparisons") or [] if not c.get("ok", True)}
        policies[str(finding.get("id"))] = {t: _policy_text(spec.tolerance_for(t)) for t in sorted(tensors)
                                            if not t.startswith("stat.")}
    return policies, targets
