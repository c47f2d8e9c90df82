"""Quarantine and validated rows, committed as a consistent pair without a two-table
transaction.

Delta commits one table atomically, never two. `validated_flights` therefore writes in a
fixed order, and readers follow one rule:
- write order: the quarantine first, each rejected row tagged with the validated_flights
  cache key of the attempt that rejected it (`validated_key`) and whether that attempt
  committed the partition or refused it (`attempt`); then the validated rows;
- read rule (`visible`): a quarantined row counts if its attempt validated the partition
  and its key is the key of the partition stored now, or if its attempt refused the
  partition (those rejects stay inspectable until an attempt validates the day).
A run killed between the two commits leaves rows that no reader shows, while the rejects
of the validation still stored keep their key and stay visible: for every day, rows in =
validated + quarantined, whatever was interrupted. The next write for a day drops what the
read rule hides (`kept`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import polars as pl

VALIDATED_KEY = "validated_key"
ATTEMPT = "attempt"
VALIDATED, REFUSED = "validated", "refused"


def tagged(quarantine: pl.DataFrame, keys: Mapping[dt.date, str], attempt: str) -> pl.DataFrame:
    """Tag an attempt's rejected rows with its per-day validated_flights key and outcome."""
    key_of = pl.DataFrame(
        {"day": list(keys), VALIDATED_KEY: list(keys.values())},
        schema={"day": pl.Date, VALIDATED_KEY: pl.String},
    )
    return quarantine.join(key_of, on="day", how="left").with_columns(
        pl.lit(attempt).alias(ATTEMPT)
    )


def visible(quarantine: pl.DataFrame, stored_keys: Mapping[dt.date, str]) -> pl.DataFrame:
    """The quarantined rows a reader may count, given validated_flights' stored keys."""
    if VALIDATED_KEY not in quarantine.columns:  # written before the pair had keys
        return quarantine
    stored = pl.DataFrame(
        {"day": list(stored_keys), "_stored": list(stored_keys.values())},
        schema={"day": pl.Date, "_stored": pl.String},
    )
    joined = quarantine.join(stored, on="day", how="left")
    committed = (pl.col(ATTEMPT) == VALIDATED) & (pl.col(VALIDATED_KEY) == pl.col("_stored"))
    return joined.filter(committed | (pl.col(ATTEMPT) == REFUSED)).drop("_stored")


def kept(quarantine_of_days: pl.DataFrame, stored_keys: Mapping[dt.date, str]) -> pl.DataFrame:
    """The stored quarantine rows a new attempt keeps for the days it rewrites: the rejects
    of the validation still stored (until the new one commits, they are the visible ones)."""
    if VALIDATED_KEY not in quarantine_of_days.columns:
        return quarantine_of_days.head(0)
    current = visible(quarantine_of_days, stored_keys)
    return current.filter(pl.col(ATTEMPT) == VALIDATED)
