"""The trailing reference window: what a day is compared with, point in time.

A day's profile is what the contract's reference expectations measure on it (its rows in,
and statistics of its validated rows). The reference of day D is the profiles of the
validated days among the `reference_window.days` days before D, never D or a later day, so
a later day's change cannot change D's verdict; once at least `min_days` of them exist, an
expectation compares D with the median of their values.

The profiles' hash is part of validated_flights' cache key for D (a restated day revalidates
the days whose window holds it). The planning is `ReferencedKeys`: which days are reused,
which are validated, and each day's key, the same whether the days come in one chunk or
many (every key depends only on profiles of earlier days).
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field

from trainflow.cache import CachePlan, cache_key, stable_hash

# A day's profile: statistic -> value ("rows": rows in; "<column>.<measure>": see contract).
Profile = dict[str, float | None]
ROWS = "rows"


@dataclass
class Reference:
    """Profiles of validated days, and each day's reference window among them."""

    days: int
    min_days: int
    profiles: dict[dt.date, Profile] = field(default_factory=dict)

    def add(self, profiles: Mapping[dt.date, Profile]) -> None:
        self.profiles.update(profiles)

    def window(self, day: dt.date) -> list[dt.date]:
        """The validated days among the `days` days before `day`, oldest first."""
        before = (day - dt.timedelta(days=n) for n in range(self.days, 0, -1))
        return [d for d in before if d in self.profiles]

    def digest(self, day: dt.date) -> str:
        """What the reference of `day` holds, as a hash: part of `day`'s cache key."""
        return stable_hash({d.isoformat(): self.profiles[d] for d in self.window(day)})

    def baseline(self, day: dt.date, statistic: str) -> tuple[float | None, list[dt.date]]:
        """(median of `statistic` over the window's days that have it, those days); the
        median is None when fewer than `min_days` days have it."""
        found = [
            (d, value)
            for d in self.window(day)
            if (value := self.profiles[d].get(statistic)) is not None
        ]
        if len(found) < self.min_days:
            return None, [d for d, _ in found]
        return float(statistics.median(v for _, v in found)), [d for d, _ in found]


def encode_profile(own_key: str, profile: Profile) -> str:
    """What validated_flights stores for a day: its profile and the key of the day's own
    inputs (code, contract, snapshot) it was computed under."""
    return json.dumps({"own": own_key, "profile": profile}, sort_keys=True)


def decode_profile(stored: str) -> tuple[str, Profile]:
    data = json.loads(stored)
    return str(data["own"]), dict(data["profile"])


@dataclass
class ReferencedKeys:
    """Cache keys of a validated day = its own inputs (code, contract, snapshot version)
    plus the digest of its reference window.

    A stored day whose own inputs are unchanged keeps its stored profile (its validated
    rows, so its statistics, would be the same); the others are `changed` and their profile
    is only known once they are validated again. A day is decided (`decide`) once every
    day of its window has a known profile: a hit when its key is the stored one.
    """

    code_version: str
    contract_fingerprint: str
    snapshot_versions: Mapping[dt.date, str]  # the window's days
    stored_keys: Mapping[dt.date, str]
    stored_profiles: Mapping[dt.date, str]  # the window's days and those before it
    reference: Reference
    force: bool = False
    keys: dict[dt.date, str] = field(default_factory=dict)
    hits: list[dt.date] = field(default_factory=list)
    misses: list[dt.date] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.own = {
            day: cache_key(self.code_version, self.contract_fingerprint, {"raw_snapshot": v})
            for day, v in self.snapshot_versions.items()
        }
        known: dict[dt.date, Profile] = {}
        for day, stored in self.stored_profiles.items():
            own, profile = decode_profile(stored)
            if day not in self.own or (own == self.own[day] and not self.force):
                known[day] = profile
        self.reference.add(known)
        self.changed = sorted(set(self.own) - set(known))

    def key(self, day: dt.date) -> str:
        return cache_key(
            self.code_version,
            self.contract_fingerprint,
            {"raw_snapshot": self.snapshot_versions[day], "reference": self.reference.digest(day)},
        )

    def decidable(self, day: dt.date) -> bool:
        """Whether every day of `day`'s window has a known profile (or is not validated)."""
        first = day - dt.timedelta(days=self.reference.days)
        return not any(first <= d < day for d in self.changed if d not in self.reference.profiles)

    def decide(self, day: dt.date) -> bool:
        """Decide a day whose window is known: True for a hit (its stored output stands)."""
        self.keys[day] = self.key(day)
        hit = (
            not self.force
            and day not in self.changed
            and self.stored_keys.get(day) == self.keys[day]
        )
        (self.hits if hit else self.misses).append(day)
        return hit

    def decide_known(self) -> list[dt.date]:
        """Decide every day that can be decided now; returns the days left to validate
        (undecided, or decided as misses), in order."""
        left = []
        for day in sorted(self.own):
            if self.decidable(day) and self.decide(day):
                continue
            left.append(day)
        return left

    def plan(self) -> CachePlan:
        return CachePlan(
            keys=dict(self.keys),
            hits=sorted(self.hits),
            misses=sorted(self.misses),
            stored=dict(self.stored_keys),
        )
