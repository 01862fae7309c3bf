"""Rule learning: where a finding fails, as a conjunction of at most three conditions over what the
records say about a case (``conformance.findings`` step 3).

The facts are the parameters, forward arguments, dtype, memory layouts, tier, train/eval, rank or
emptiness of inputs, the declared regimes and, when recorded, value summaries of the inputs. Every
condition holds on all failing cases of the finding and is the most general such (an inequality
rather than an equality, an interval's open end); conditions are added greedily, each the one
leaving the fewest passing cases covered, while they exclude any. ``learn_clauses`` splits a group
whose single rule is poor into up to three exact rules. Every rule is a ``when`` expression of
``conformance.known``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from conformance.known import _PREDICATE_BUILTINS

MAX_CONDITIONS = 3
MAX_CLAUSES = 3
_AMBIGUOUS = ("inf", "-inf", "nan")  # JSON strings that were floats (or strings: cannot tell)


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
