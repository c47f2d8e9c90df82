"""Landing is idempotent and lands exactly the days asked for."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from trainflow.warehouse import landing


def count(path: Path, sql: str) -> int:
    with duckdb.connect(str(path), read_only=True) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def test_landing_a_day_twice_does_not_duplicate_rows(tmp_path: Path) -> None:
    path = tmp_path / "wh.duckdb"
    landing.land(path, [dt.date(2013, 1, 1), dt.date(2013, 1, 2)])
    first = count(path, "select count(*) from raw.flights")
    weather = count(path, "select count(*) from raw.weather")
    landing.land(path, [dt.date(2013, 1, 2)])
    assert count(path, "select count(*) from raw.flights") == first
    assert count(path, "select count(*) from raw.weather") == weather
    assert count(path, "select count(*) from raw.airlines") == 16
    assert landing.landed_days(path) == [dt.date(2013, 1, 1), dt.date(2013, 1, 2)]
    # 842 + 943 scheduled flights on Jan 1 and 2, 2013 in the shipped data.
    assert first == 842 + 943


def test_plan_through_days_and_explicit() -> None:
    landed = [dt.date(2013, 1, 1), dt.date(2013, 1, 2)]
    assert landing.plan_days(landed, through=dt.date(2013, 1, 4)) == [
        dt.date(2013, 1, 3),
        dt.date(2013, 1, 4),
    ]
    assert landing.plan_days(landed, days=2) == [dt.date(2013, 1, 3), dt.date(2013, 1, 4)]
    assert landing.plan_days(landed, explicit=[dt.date(2013, 1, 1)]) == [dt.date(2013, 1, 1)]
    assert landing.plan_days([dt.date(2013, 12, 30)], days=5) == [dt.date(2013, 12, 31)]


def test_days_outside_2013_are_refused() -> None:
    with pytest.raises(landing.LandingError, match="2014-01-01 is outside the demo data"):
        landing.plan_days([], through=dt.date(2014, 1, 1))
    with pytest.raises(landing.LandingError, match="either --through or --days"):
        landing.plan_days([], through=dt.date(2013, 1, 3), days=2)
