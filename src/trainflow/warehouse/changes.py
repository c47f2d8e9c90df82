"""Which warehouse days changed since someone last looked: newly landed and restated days.

A day's fingerprint is its row count and an order-independent checksum of its rows in
`raw.flights`, computed by the warehouse itself (nothing is copied out). Comparing two sets
of fingerprints gives the days to (re)process; a restated day also invalidates the feature
days whose look-back window holds it. The warehouse sensor (`defs/automation.py`) keeps the
last fingerprints in its cursor; nothing here knows about Dagster.

Why fingerprints and not only `raw.landings`: the landing log records what `trainflow land`
did, but a warehouse is also written by other loaders (a late fix-up, a restatement by the
source team); rows that changed are what matters. Why not dbt's source freshness: it
reports the newest load time, not which days changed.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from trainflow.lake.delta_lake import DayWindow
from trainflow.warehouse.base import Warehouse
from trainflow.warehouse.landing import landed_days

# The sum of a 60-bit hash of each row `r` (as text: it exceeds 64-bit integers). A sum,
# not a hash of the concatenation, so row order never matters. Each kind hashes its own
# way (a DuckDB upgrade may change `hash`: every day then looks restated once, and the
# snapshots, which compare content hashes, are all cache hits).
ROW_CHECKSUM_SQL = {
    "duckdb": "cast(sum(hash(r) >> 4) as varchar)",
    "postgres": "sum(('x' || substr(md5(r::text), 1, 15))::bit(60)::bigint)::text",
}


@dataclass(frozen=True)
class DayFingerprint:
    rows: int
    checksum: str


Fingerprints = Mapping[dt.date, DayFingerprint]


def day_fingerprints(warehouse: Warehouse) -> dict[dt.date, DayFingerprint]:
    """Every landed day of raw.flights with its fingerprint; empty before the first landing."""
    if not landed_days(warehouse):
        return {}
    frame = warehouse.read(
        f"select flight_date as day, count(*) as n_rows, "
        f"{ROW_CHECKSUM_SQL[warehouse.kind]} as checksum "
        "from raw.flights r group by flight_date order by flight_date"
    )
    return {
        day: DayFingerprint(int(rows), str(checksum)) for day, rows, checksum in frame.iter_rows()
    }


def table_checksums(warehouse: Warehouse, tables: Iterable[str]) -> dict[str, str]:
    """`rows:checksum` of each whole table (`schema.name`): equal exactly when the rows are."""
    found = {}
    for table in tables:
        row = warehouse.read(
            f"select count(*) as n_rows, {ROW_CHECKSUM_SQL[warehouse.kind]} as checksum "
            f"from {table} r"
        ).row(0)
        found[table] = f"{row[0]}:{row[1]}"
    return found


@dataclass(frozen=True)
class ChangeSet:
    """Days whose rows appeared (new), changed (restated) or vanished (removed)."""

    new: tuple[dt.date, ...] = ()
    restated: tuple[dt.date, ...] = ()
    removed: tuple[dt.date, ...] = ()

    @property
    def changed(self) -> tuple[dt.date, ...]:
        """The days whose rows must be snapshotted again (new or restated)."""
        return tuple(sorted({*self.new, *self.restated}))

    def describe(self) -> str:
        parts = [
            f"{len(days)} {name} ({_days_text(days)})"
            for name, days in (("new", self.new), ("restated", self.restated),
                               ("removed", self.removed))
            if days
        ]  # fmt: skip
        return ", ".join(parts) or "no change"


def compare(seen: Fingerprints, now: Fingerprints) -> ChangeSet:
    """What changed between two looks at the warehouse."""
    return ChangeSet(
        new=tuple(sorted(set(now) - set(seen))),
        restated=tuple(sorted(d for d in set(now) & set(seen) if now[d] != seen[d])),
        removed=tuple(sorted(set(seen) - set(now))),
    )


def affected_windows(
    changed: Iterable[dt.date], landed: Iterable[dt.date], lookback_days: int
) -> list[DayWindow]:
    """The landed days to process for a set of changed days, as contiguous ranges.

    A changed day D needs its own snapshot, validation and features, and the features of
    every later landed day whose look-back window (D+1 .. D+lookback_days) holds it. Ranges
    are split where a day is not landed, since a run over a range needs every day of it.
    """
    landed_set = set(landed)
    days = {
        day + dt.timedelta(offset)
        for day in changed
        for offset in range(lookback_days + 1)
    } & landed_set  # fmt: skip
    windows: list[DayWindow] = []
    for day in sorted(days):
        if windows and windows[-1].last + dt.timedelta(1) == day:
            windows[-1] = DayWindow(windows[-1].first, day)
        else:
            windows.append(DayWindow(day, day))
    return windows


def dump_fingerprints(fingerprints: Fingerprints) -> str:
    """A compact, stable text form (a sensor cursor)."""
    return json.dumps(
        {str(day): [fp.rows, fp.checksum] for day, fp in sorted(fingerprints.items())},
        separators=(",", ":"),
    )


def load_fingerprints(text: str | None) -> dict[dt.date, DayFingerprint]:
    """The fingerprints `dump_fingerprints` wrote; empty for no text."""
    if not text:
        return {}
    return {
        dt.date.fromisoformat(day): DayFingerprint(int(rows), str(checksum))
        for day, (rows, checksum) in json.loads(text).items()
    }


def _days_text(days: tuple[dt.date, ...]) -> str:
    if len(days) <= 3:
        return ", ".join(str(d) for d in days)
    return f"{days[0]} .. {days[-1]}"
