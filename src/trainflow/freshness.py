"""Freshness measured against landed data: how many landed days an asset lags behind.

For the 2013 demo no wall clock can say whether the pipeline keeps up (the data is twelve
years old), so freshness is counted in landed days, never read from a clock inside a
computation: the features must cover the newest landed day (at most `max_lag` landed days
behind), and the champion must have been evaluated on data at most `max_lag` landed days
older than the newest landed day. Where a team deploys trainflow on live data, Dagster's
own freshness policies measure the same assets by wall clock (defs/freshness.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Freshness:
    """One asset's lag behind the landed data, against its limit."""

    what: str  # "flight_features", "the champion"
    landed: Sequence[dt.date]  # every landed day, in order
    newest_done: dt.date | None  # the newest day the asset covers
    max_lag: int  # landed days

    @property
    def lag(self) -> int | None:
        """Landed days newer than the newest day done (None: nothing landed)."""
        if not self.landed:
            return None
        if self.newest_done is None:
            return len(self.landed)
        return sum(day > self.newest_done for day in self.landed)

    @property
    def passed(self) -> bool:
        return self.lag is None or self.lag <= self.max_lag

    def describe(self) -> str:
        if self.lag is None:
            return f"{self.what}: nothing landed yet"
        done = "nothing" if self.newest_done is None else f"up to {self.newest_done}"
        verdict = "within" if self.passed else "over"
        return (
            f"{self.what} covers {done}, {self.lag} landed day(s) behind the newest landed day "
            f"{self.landed[-1]}: {verdict} the limit of {self.max_lag}"
        )

    def metadata(self) -> dict[str, str | int | None]:
        return {
            "lag_landed_days": self.lag,
            "limit_landed_days": self.max_lag,
            "newest_landed_day": str(self.landed[-1]) if self.landed else None,
            "newest_day_covered": str(self.newest_done) if self.newest_done else None,
        }
