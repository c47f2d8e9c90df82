"""Property: a day's features never change when outcomes of that day or any later day, or
rows of later days, are added or altered. This is what "no leakage" means for trainflow."""

from __future__ import annotations

import datetime as dt

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainflow.features.flights import ALL_FEATURES, IDENTITY_COLUMNS, build_flight_features

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
