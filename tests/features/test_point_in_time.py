"""Properties: a day's features never change when outcomes of that day or any later day, or
rows of later days, are added or altered; and a flight's weather never changes when weather
observed at or after its scheduled departure changes. This is what "no leakage" means for
trainflow."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trainflow.features.flights as flights_module
from trainflow.features.flights import (
    ALL_FEATURES,
    IDENTITY_COLUMNS,
    WEATHER_FEATURES,
    build_flight_features,
    features_for_days,
)

FIRST = dt.date(2013, 3, 1)
N_DAYS = 12
TARGET = FIRST + dt.timedelta(days=8)

outcome = st.one_of(st.none(), st.floats(min_value=-60, max_value=600, allow_nan=False))


@st.composite
def flight_rows(
    draw: st.DrawFn, min_day: int, max_day: int, n_max: int, n_min: int = 0
) -> list[dict]:
    n = draw(st.integers(min_value=n_min, max_value=n_max))
    rows = []
    for _ in range(n):
        day = FIRST + dt.timedelta(days=draw(st.integers(min_day, max_day)))
        hour = draw(st.integers(5, 23))
        arr_delay = draw(outcome)
        rows.append(
            {
                "day": day,
                "carrier": draw(st.sampled_from(["AA", "B6", "UA"])),
                "origin": draw(st.sampled_from(["EWR", "JFK", "LGA"])),
                "dest": draw(st.sampled_from(["BOS", "ORD"])),
                "sched_dep_hour": hour,
                "sched_dep_local": dt.datetime.combine(day, dt.time(hour, 0)),
                "distance_miles": draw(st.sampled_from([187.0, 719.0])),
                "temp_f": draw(st.floats(0, 90)),
                "dewpoint_f": 20.0,
                "humidity_pct": 50.0,
                "wind_speed_mph": draw(st.floats(0, 30)),
                "wind_gust_mph": None,
                "precip_in": 0.0,
                "pressure_mb": 1010.0,
                "visibility_mi": 10.0,
                "plane_manufacture_year": draw(st.sampled_from([None, 2001, 2010])),
                "plane_seats": 150,
                "dep_delay_minutes": arr_delay,
                "arr_delay_minutes": arr_delay,
                "cancelled": arr_delay is None,
                "diverted": False,
            }
        )
    return rows


def frame(rows: list[dict]) -> pl.DataFrame:
    out = pl.DataFrame(rows, infer_schema_length=None)
    return out.with_columns(
        pl.int_range(1, out.height + 1, dtype=pl.Int64).alias("flight_id"),
        pl.col("sched_dep_hour").cast(pl.Int32),
        pl.col("plane_manufacture_year").cast(pl.Int32),
        pl.col("plane_seats").cast(pl.Int32),
        pl.col("wind_gust_mph").cast(pl.Float64),
    )


def features_of_target(flights: pl.DataFrame) -> pl.DataFrame:
    return build_flight_features(flights, [TARGET]).select(*IDENTITY_COLUMNS, *ALL_FEATURES)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    past=flight_rows(0, 7, 40),
    today=flight_rows(8, 8, 15, n_min=1),
    future=flight_rows(9, N_DAYS - 1, 15),
    extra_future=flight_rows(9, N_DAYS - 1, 15),
    new_outcomes=st.lists(outcome, min_size=30, max_size=30),
)
def test_features_ignore_same_day_and_future_outcomes(
    past: list[dict],
    today: list[dict],
    future: list[dict],
    extra_future: list[dict],
    new_outcomes: list[float | None],
) -> None:
    rows = past + today + future
    original = frame(rows)
    before = features_of_target(original)
    assert before.height == len(today)

    # Alter every outcome of the target day and later, and append rows of later days.
    n_past = len(past)
    altered_rows = [dict(r) for r in rows]
    for i, row in enumerate(altered_rows[n_past:]):
        value = new_outcomes[i % len(new_outcomes)]
        row.update(arr_delay_minutes=value, dep_delay_minutes=value, cancelled=value is None)
    altered = frame(altered_rows + extra_future)
    after = features_of_target(altered)

    assert after.equals(before), "a feature of the target day depends on same-day/future data"


def test_features_do_change_when_past_outcomes_change() -> None:
    """The property test above would pass vacuously if history were ignored; it is not."""
    rows = [
        {
            "day": FIRST + dt.timedelta(days=d),
            "carrier": "AA",
            "origin": "JFK",
            "dest": "BOS",
            "sched_dep_hour": 9,
            "sched_dep_local": dt.datetime.combine(FIRST + dt.timedelta(days=d), dt.time(9)),
            "distance_miles": 187.0,
            "temp_f": 40.0,
            "dewpoint_f": 20.0,
            "humidity_pct": 50.0,
            "wind_speed_mph": 5.0,
            "wind_gust_mph": None,
            "precip_in": 0.0,
            "pressure_mb": 1010.0,
            "visibility_mi": 10.0,
            "plane_manufacture_year": 2005,
            "plane_seats": 150,
            "dep_delay_minutes": 0.0,
            "arr_delay_minutes": 0.0,
            "cancelled": False,
            "diverted": False,
        }
        for d in range(9)
    ]
    before = features_of_target(frame(rows))
    rows[7] = {**rows[7], "arr_delay_minutes": 120.0}
    after = features_of_target(frame(rows))
    assert after["carrier_delay_rate_7d"][0] > before["carrier_delay_rate_7d"][0]
    assert before["carrier_flights_7d"][0] == 7


# --- weather: known at departure time, strictly ------------------------------------------

WEATHER_OUT = ("weather_observed_at_utc", *WEATHER_FEATURES)
# A flight's scheduled departure in UTC (New York's offset is whole hours: local minute).
SCHED_DEP_UTC = "sched_dep_hour_utc + to_minutes(cast(minute(sched_dep_local) as bigint))"
START = dt.datetime(2013, 1, 2)


@pytest.fixture(scope="module")
def weather_warehouse(built_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """January and February landed and modelled; every example rolls its change back."""
    path = tmp_path_factory.mktemp("weather") / "warehouse.duckdb"
    shutil.copy(built_warehouse, path)
    return path


def flights_near(conn: duckdb.DuckDBPyConnection, origin: str, cutoff: dt.datetime) -> pl.DataFrame:
    """flights_enriched rows of `origin` scheduled in the 4 hours up to `cutoff` (UTC)."""
    frame = pl.from_arrow(
        conn.sql(
            f"select * from main.flights_enriched where origin = $origin and "
            f"{SCHED_DEP_UTC} between $cutoff - interval 4 hour and $cutoff order by flight_id",
            params={"origin": origin, "cutoff": cutoff},
        ).to_arrow_table()
    )
    assert isinstance(frame, pl.DataFrame)
    return frame


def features_of(rows: pl.DataFrame) -> pl.DataFrame:
    days = sorted(set(rows["day"].to_list()))
    return build_flight_features(rows, days).select("flight_id", *WEATHER_FEATURES)


def change_weather(conn: duckdb.DuckDBPyConnection, origin: str, where: str, delta: int) -> int:
    """Shift every measured value of the matching raw weather rows; returns rows changed."""
    observed_at = "(cast(time_hour as timestamptz) at time zone 'UTC') + interval 51 minute"
    columns = ("temp", "dewp", "humid", "wind_speed", "wind_gust", "precip", "pressure", "visib")
    changed = conn.execute(
        f"update raw.weather set {', '.join(f'{c} = {c} + {delta}' for c in columns)} "
        f"where origin = ? and {where.format(observed_at=observed_at)} returning 1",
        [origin],
    ).fetchall()
    return len(changed)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    origin=st.sampled_from(["EWR", "JFK", "LGA"]),
    minutes=st.integers(0, 55 * 24 * 60),
    delta=st.integers(1, 40),
)
def test_weather_observed_after_departure_never_changes_a_flight(
    weather_warehouse: Path, origin: str, minutes: int, delta: int
) -> None:
    """Change every weather row of an origin observed at or after `cutoff`: no flight
    scheduled at or before `cutoff` changes, in the warehouse model or in its features."""
    cutoff = START + dt.timedelta(minutes=minutes)
    with duckdb.connect(str(weather_warehouse)) as conn:
        before = flights_near(conn, origin, cutoff)
        conn.execute("begin transaction")
        try:
            later = f"{{observed_at}} >= '{cutoff}'::timestamp"
            assert change_weather(conn, origin, later, delta) > 0
            after = flights_near(conn, origin, cutoff)
        finally:
            conn.execute("rollback")
    assert after.select("flight_id", *WEATHER_OUT).equals(before.select("flight_id", *WEATHER_OUT))
    if before.height:
        assert features_of(after).equals(features_of(before))


def test_weather_observed_before_departure_does_change_a_flight(weather_warehouse: Path) -> None:
    """The property above would hold vacuously without weather; the latest observation
    completed before departure is the one a flight gets: at 11:10 UTC (06:10 in New York),
    the row of 10:00 (observed 10:51), not the row of 11:00 (observed 11:51, after it)."""
    cutoff = dt.datetime(2013, 1, 15, 11, 10)
    with duckdb.connect(str(weather_warehouse)) as conn:
        flights = flights_near(conn, "JFK", cutoff)
        at_cutoff = flights.filter(pl.col("sched_dep_local") == dt.datetime(2013, 1, 15, 6, 10))
        assert at_cutoff.height and at_cutoff["weather_observed_at_utc"].unique().to_list() == [
            dt.datetime(2013, 1, 15, 10, 51)
        ]
        conn.execute("begin transaction")
        try:
            change_weather(conn, "JFK", "{observed_at} = '2013-01-15 10:51:00'::timestamp", 10)
            changed = flights_near(conn, "JFK", cutoff)
        finally:
            conn.execute("rollback")
    ids = at_cutoff["flight_id"]
    before = at_cutoff["temp_f"].to_list()
    after = changed.filter(pl.col("flight_id").is_in(ids))["temp_f"].to_list()
    assert after == [t + 10 for t in before]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=flight_rows(0, 75, 300, n_min=1), batch_days=st.integers(1, 40))
def test_features_built_in_batches_equal_features_built_at_once(
    rows: list[dict], batch_days: int
) -> None:
    """A year is built a month at a time (for memory and progress); any batch size gives
    exactly the frame one batch would."""
    flights = frame(rows)
    days = sorted(set(flights["day"].to_list()))
    at_once = build_flight_features(flights, days).sort("flight_id")
    seen: list[tuple[int, int]] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(flights_module, "BATCH_DAYS", batch_days)
        batched = features_for_days(flights, days, FIRST, on_batch=lambda d, r: seen.append((d, r)))
    assert batched.drop("history_days_expected", "history_days_present").equals(at_once)
    assert sum(d for d, _ in seen) == len(days) and sum(r for _, r in seen) == flights.height
    assert len(seen) == -(-len(days) // batch_days)
