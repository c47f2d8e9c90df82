"""Point-in-time flight features, as pure polars functions.

The rule that keeps them honest: features for a flight on day D use
- the flight's own schedule (known in advance),
- the origin's latest weather observation completed strictly before the scheduled
  departure (joined as of observation time in the warehouse model `flights_enriched`),
- the plane's registry data (static), and
- outcomes (delays) of days strictly before D only.
No outcome of day D or later, and no row of a later day, can change a feature of day D;
`tests/features/test_point_in_time.py` proves this property on generated data, and that
changing weather observed at or after a flight's departure never changes that flight.

Determinism: polars runs group-bys and joins on several threads, so intermediate row
order varies; every aggregate here is an integer count (exact in any order) and the
output is sorted by flight_id, so the result is the same bytes on every run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import polars as pl

LABEL = "is_delayed"
DELAY_THRESHOLD_MINUTES = 15.0
ROLLING_WINDOWS_DAYS = (7, 28)
ROLLING_KEYS = {"carrier": ("carrier",), "origin": ("origin",), "route": ("origin", "dest")}
# Pseudo-count pulling a small group's rate toward the all-flights rate of the same window.
SMOOTHING_FLIGHTS = 20.0
LOOKBACK_DAYS = max(ROLLING_WINDOWS_DAYS)

IDENTITY_COLUMNS = ("flight_id", "day", "carrier", "origin", "dest")
CALENDAR_FEATURES = ("month", "day_of_week", "sched_dep_hour", "sched_dep_minute_of_day")
SCHEDULE_FEATURES = ("distance_miles", "origin_flights_same_hour", "origin_flights_same_day")
WEATHER_FEATURES = (
    "temp_f",
    "dewpoint_f",
    "humidity_pct",
    "wind_speed_mph",
    "wind_gust_mph",
    "precip_in",
    "pressure_mb",
    "visibility_mi",
)
PLANE_FEATURES = ("plane_age_years", "plane_seats")
ROLLING_FEATURES = tuple(
    f"{name}_{kind}_{window}d"
    for name in ROLLING_KEYS
    for window in ROLLING_WINDOWS_DAYS
    for kind in ("delay_rate", "flights")
)
ALL_FEATURES = (
    CALENDAR_FEATURES + SCHEDULE_FEATURES + WEATHER_FEATURES + PLANE_FEATURES + ROLLING_FEATURES
)


# Beside the features, each row says how much history its rates rest on: the days of its
# 28-day window that exist in the data (on or after its first day) and how many of those
# were there (validated). Not features: the training dataset never selects them.
HISTORY_COLUMNS = ("history_days_expected", "history_days_present")


class FeatureError(ValueError):
    """Inputs cannot produce point-in-time features for the requested days."""


@dataclass(frozen=True)
class HistoryCoverage:
    """What a feature day's window holds: of the LOOKBACK_DAYS days before it, those on or
    after the first day of the data are expected; `missing` are expected but absent (not
    landed, or failed validation); `before_data` days precede the data and are allowed."""

    day: dt.date
    expected: int
    missing: tuple[dt.date, ...]
    before_data: int
    day_present: bool

    @property
    def present(self) -> int:
        return self.expected - len(self.missing)

    def describe(self) -> str:
        text = f"{self.present}/{self.expected} history days"
        if self.before_data:
            text += f" ({self.before_data} before the data starts)"
        return text


def history_coverage(
    day: dt.date, present_days: Collection[dt.date], data_start: dt.date
) -> HistoryCoverage:
    """Which of day D's history days D-28 .. D-1 exist, are missing, or precede the data."""
    window = [day - dt.timedelta(days=n) for n in range(LOOKBACK_DAYS, 0, -1)]
    expected = [d for d in window if d >= data_start]
    return HistoryCoverage(
        day=day,
        expected=len(expected),
        missing=tuple(d for d in expected if d not in present_days),
        before_data=len(window) - len(expected),
        day_present=day in present_days,
    )


def refuse_missing_history(
    coverage: Mapping[dt.date, HistoryCoverage], allowed: int, config_name: str
) -> None:
    """Fail, naming every waiting feature day and the validated days it waits on, if a
    day itself or more than `allowed` of its history days are missing."""
    waiting = {
        day: c for day, c in coverage.items() if not c.day_present or len(c.missing) > allowed
    }
    if not waiting:
        return
    missing: dict[dt.date, list[dt.date]] = {}
    for day, seen in waiting.items():
        for gap in [*seen.missing, *([] if seen.day_present else [day])]:
            missing.setdefault(gap, []).append(day)
    described = "; ".join(
        f"{gap} (needed by {needers[0]}" + (f"..{needers[-1]})" if len(needers) > 1 else ")")
        for gap, needers in sorted(missing.items())[:10]
    )
    raise FeatureError(
        f"flight_features: {len(waiting)} feature day(s) wait on validated_flights days that "
        f"are missing or failed validation: {described}"
        f"{' ...' if len(missing) > 10 else ''}. max_missing_history_days is {allowed} "
        f"(config {config_name}); nothing was written. Land and validate the missing day(s), "
        "or allow missing history days in the experiment config."
    )


# Feature days built at a time: a month keeps the intermediate frames of the rolling rates
# small (the whole year at once holds every day's windows together) at no cost in speed.
BATCH_DAYS = 31


def features_for_days(
    validated: pl.DataFrame,
    days: Sequence[dt.date],
    data_start: dt.date,
    on_batch: Callable[[int, int], None] | None = None,
) -> pl.DataFrame:
    """What `flight_features` stores for `days`: the features and each day's history
    columns, from validated rows of the days and their windows. `reproduce --from-raw`
    calls it too, so a rebuild runs exactly the asset's code path.

    Built BATCH_DAYS days at a time, each from its own days and their look-back only (the
    result is the same as all at once); `on_batch(days, rows)` is told after each batch.
    """
    present = set(validated["day"].unique().to_list())
    coverage = {day: history_coverage(day, present, data_start) for day in days}
    ordered = sorted(set(days))
    parts = []
    for start in range(0, len(ordered), BATCH_DAYS):
        batch = ordered[start : start + BATCH_DAYS]
        first_needed = batch[0] - dt.timedelta(days=LOOKBACK_DAYS)
        rows = validated.filter(pl.col("day").is_between(first_needed, batch[-1]))
        parts.append(build_flight_features(rows, batch))
        if on_batch is not None:
            on_batch(len(batch), parts[-1].height)
    return with_history_columns(pl.concat(parts).sort("flight_id"), coverage)


def with_history_columns(
    features: pl.DataFrame, coverage: Mapping[dt.date, HistoryCoverage]
) -> pl.DataFrame:
    """Add each row's history days expected and present (its day's coverage)."""
    counts = pl.DataFrame(
        {
            "day": list(coverage),
            "history_days_expected": [c.expected for c in coverage.values()],
            "history_days_present": [c.present for c in coverage.values()],
        },
        schema={
            "day": pl.Date,
            "history_days_expected": pl.Int16,
            "history_days_present": pl.Int16,
        },
    )
    return features.join(counts, on="day", how="left")


def label_expr() -> pl.Expr:
    """Arrival delay over 15 minutes; null when the flight never arrived (cancelled/diverted)."""
    return (pl.col("arr_delay_minutes") > DELAY_THRESHOLD_MINUTES).alias(LABEL)


def build_flight_features(flights: pl.DataFrame, days: Sequence[dt.date]) -> pl.DataFrame:
    """One row per flight scheduled on `days`: identity columns, features and the label.

    `flights` must hold the validated rows of `days` plus the LOOKBACK_DAYS before the
    first of them (fewer only at the start of the data: the rates are then null or built
    from what exists; `history_coverage` is how callers refuse a window with a gap). Rows
    after the last day are ignored.
    """
    if not days:
        raise FeatureError("no days requested")
    targets = sorted(set(days))
    today = flights.filter(pl.col("day").is_in(targets))
    history = flights.filter(pl.col("day") < targets[-1])
    base = today.select(
        *IDENTITY_COLUMNS,
        pl.col("day").dt.month().cast(pl.Int32).alias("month"),
        pl.col("day").dt.weekday().cast(pl.Int32).alias("day_of_week"),
        pl.col("sched_dep_hour").cast(pl.Int32),
        (pl.col("sched_dep_local").dt.hour().cast(pl.Int32) * 60
         + pl.col("sched_dep_local").dt.minute().cast(pl.Int32)).alias("sched_dep_minute_of_day"),
        pl.col("distance_miles"),
        pl.len().over("day", "origin", "sched_dep_hour").cast(pl.Int32)
        .alias("origin_flights_same_hour"),
        pl.len().over("day", "origin").cast(pl.Int32).alias("origin_flights_same_day"),
        *WEATHER_FEATURES,
        (pl.col("day").dt.year().cast(pl.Int32) - pl.col("plane_manufacture_year"))
        .cast(pl.Float64)
        .alias("plane_age_years"),
        pl.col("plane_seats").cast(pl.Float64),
        label_expr().cast(pl.Int8),
    )  # fmt: skip
    for window in ROLLING_WINDOWS_DAYS:
        # A group with no history in the window takes the all-flights rate of that window.
        prior = rolling_delay_rates(history, targets, (), window, prefix="all")
        base = base.join(prior, on="day", how="left")
        for name, keys in ROLLING_KEYS.items():
            rates = rolling_delay_rates(history, targets, keys, window, prefix=name)
            rate, count = f"{name}_delay_rate_{window}d", f"{name}_flights_{window}d"
            base = base.join(rates, on=["day", *keys], how="left").with_columns(
                pl.col(count).fill_null(0),
                pl.col(rate).fill_null(pl.col(f"all_delay_rate_{window}d")),
            )
        base = base.drop(f"all_delay_rate_{window}d", f"all_flights_{window}d")
    return base.select(*IDENTITY_COLUMNS, *ALL_FEATURES, LABEL).sort("flight_id")


def rolling_delay_rates(
    history: pl.DataFrame,
    targets: Sequence[dt.date],
    keys: Sequence[str],
    window: int,
    prefix: str,
) -> pl.DataFrame:
    """Per target day and key: flights and smoothed delay rate over days [D - window, D - 1].

    Only flights with a known arrival delay count. The join keeps history days strictly
    before the target day, which is the whole point-in-time guarantee for these features.
    """
    daily = (
        history.filter(pl.col("arr_delay_minutes").is_not_null())
        .group_by("day", *keys)
        .agg(
            pl.len().alias("n"),
            (pl.col("arr_delay_minutes") > DELAY_THRESHOLD_MINUTES).sum().alias("n_delayed"),
        )
        .rename({"day": "history_day"})
    )
    target_frame = pl.DataFrame({"day": list(targets)}, schema={"day": pl.Date}).with_columns(
        (pl.col("day") - pl.duration(days=window)).alias("window_start")
    )
    pairs = target_frame.join_where(
        daily,
        pl.col("history_day") < pl.col("day"),
        pl.col("history_day") >= pl.col("window_start"),
    )
    totals = pairs.group_by("day", *keys).agg(pl.col("n").sum(), pl.col("n_delayed").sum())
    if keys:
        overall = pairs.group_by("day").agg(
            (pl.col("n_delayed").sum() / pl.col("n").sum()).alias("prior")
        )
        totals = totals.join(overall, on="day", how="left")
        rate = (pl.col("n_delayed") + SMOOTHING_FLIGHTS * pl.col("prior")) / (
            pl.col("n") + SMOOTHING_FLIGHTS
        )
    else:
        rate = pl.col("n_delayed") / pl.col("n")
    return totals.select(
        "day",
        *keys,
        rate.cast(pl.Float64).alias(f"{prefix}_delay_rate_{window}d"),
        pl.col("n").cast(pl.Int32).alias(f"{prefix}_flights_{window}d"),
    )
