"""Run profiles: how many examples, how random, and whether the search is targeted.

Every profile is stratified: besides its random examples, each declared regime of a target gets
``regime_examples`` cases drawn inside it, in every dtype.

- ``dev``: fast and random (a different sample every run), example database on.
- ``ci``: derandomized (the same cases every run), no example database; the default of
  ``nox -s conformance`` and of CI.
- ``thorough``: many more examples, with ``hypothesis.target`` on the tolerance utilisation so
  the search climbs toward the worst case.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, settings


def _cases_depend_on_strategies_only() -> None:
    """Hypothesis (6.131+) mixes the literals of every loaded first-party module into about one
    draw in twenty, so editing any constant anywhere in the project, or importing a module in the
    middle of a run, would move the derandomized ci cases. The pool is kept empty: a case is a
    function of its strategy, its seed and nothing else. (A private Hypothesis hook; without it
    nothing changes.)"""
    try:
        from hypothesis.internal.conjecture import providers
        from hypothesis.internal.constants_ast import Constants
    except ImportError:  # pragma: no cover - a Hypothesis without the pool
        return
    providers._get_local_constants = lambda: Constants()


_cases_depend_on_strategies_only()


@dataclass(frozen=True)
class Profile:
    name: str
    max_examples: int
    invalid_examples: int
    regime_examples: int
    derandomize: bool
    database: bool
    target: bool


PROFILES: dict[str, Profile] = {
    "dev": Profile("dev", max_examples=15, invalid_examples=5, regime_examples=2, derandomize=False, database=True,
                   target=False),
    "ci": Profile("ci", max_examples=20, invalid_examples=6, regime_examples=4, derandomize=True, database=False,
                  target=False),
    "thorough": Profile("thorough", max_examples=400, invalid_examples=60, regime_examples=40, derandomize=False,
                        database=True, target=True),
}


def example_database(location: str) -> Any:
    """A Hypothesis example database several machines can share: a directory (on shared storage)
    or a Redis server (``redis://host:port/db``, needs the ``redis`` package)."""
    if location.startswith(("redis://", "rediss://")):
        from hypothesis.extra.redis import RedisExampleDatabase
        from redis import Redis

        return RedisExampleDatabase(Redis.from_url(location))
    from hypothesis.database import DirectoryBasedExampleDatabase

    return DirectoryBasedExampleDatabase(location)


def hypothesis_settings(profile: Profile, examples: int | None, seed: int | None, invalid: bool = False,
                        regime: bool = False, database: str | None = None) -> settings:
    """Hypothesis settings for one search of a target: its random valid cases, one regime's
    cases, or its invalid cases. ``examples`` overrides the random count (invalid searches get a
    quarter of it; regime searches keep the profile's count)."""
    if regime:
        count = profile.regime_examples
    elif examples is not None:
        count = max(1, examples // 4) if invalid else examples
    else:
        count = profile.invalid_examples if invalid else profile.max_examples
    phases = [Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink]
    if profile.target and not invalid:
        phases.append(Phase.target)
    kwargs = dict(
        max_examples=max(1, count),
        deadline=None,
        derandomize=profile.derandomize and seed is None,
        phases=phases,
        print_blob=False,
        report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors],
    )
    if database:
        kwargs["database"] = example_database(database)
    elif not profile.database:
        kwargs["database"] = None
    return settings(**kwargs)
