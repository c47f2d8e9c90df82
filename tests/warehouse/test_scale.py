"""`trainflow land --scale N`: N times the real flights, deterministic, within the contracts.

A few January days, not the year; real DuckDB files (and one PostgreSQL database), the real
dbt project and the real contract validation.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from polars.testing import assert_frame_equal

from tests.conftest import run_dbt_build
from trainflow.cli import main
from trainflow.contracts import TableReport, validate_partitions
from trainflow.defs.resources import ContractsResource, WarehouseResource
from trainflow.lake.delta_lake import DayWindow
from trainflow.manifest import content_hash
from trainflow.sources import nycflights13
from trainflow.stages.reference_tables import check_reference_tables
from trainflow.warehouse import landing, scale
from trainflow.warehouse.factory import warehouse_at

DAYS = [dt.date(2013, 1, 2), dt.date(2013, 1, 3)]
REAL_ROWS = 943 + 914  # flights on Jan 2 and 3, 2013 in the shipped data
PLANES = 3322  # rows of the shipped planes table
PLANES_PATTERN = ContractsResource().load("planes").fields["tailnum"].pattern


def table(location: Path | str, name: str) -> pl.DataFrame:
    """A landed table in insertion order, as a reader without an order would get it."""
    return warehouse_at(location).read(f"select * from raw.{name}")


def test_scale_three_lands_three_times_the_real_rows_with_unique_keys(tmp_path: Path) -> None:
    path = tmp_path / "wh.duckdb"
    report = landing.land(path, DAYS, scale=3)
    flights = table(path, "flights")
    assert report.flights_rows == flights.height == 3 * REAL_ROWS
    assert report.real_flights_rows == REAL_ROWS and report.scale == 3
    assert flights["source_row"].is_unique().all()
    assert flights.select("flight_date", "carrier", "flight", "origin").is_unique().all()
    copy = pl.col("source_row") // scale.FLIGHT_ID_STRIDE
    assert flights.group_by(copy).len().sort("source_row")["len"].to_list() == [REAL_ROWS] * 3
    # Each copy keeps the real row's day, schedule, route and outcome; copy 0 is the real row.
    real = nycflights13.read_table("flights").filter(pl.col("flight_date").is_in(DAYS))
    assert_frame_equal(flights.filter(copy == 0), real)
    unchanged = [c for c in real.columns if c not in ("source_row", "flight", "tailnum")]
    for k in (1, 2):
        synthetic = flights.filter(copy == k)
        assert_frame_equal(synthetic.select(unchanged), real.select(unchanged))
        assert (synthetic["flight"] - real["flight"] == k * scale.FLIGHT_NUMBER_STRIDE).all()
        assert synthetic["tailnum"].is_null().sum() == real["tailnum"].is_null().sum()
    # Synthetic tails follow the planes contract's pattern and are never real ones.
    tails = flights.filter(copy > 0)["tailnum"].drop_nulls()
    assert tails.str.contains(PLANES_PATTERN).all()
    assert not tails.is_in(real["tailnum"].implode()).any()
    # raw.planes has every real plane under each copy's tail, keyed uniquely.
    planes = table(path, "planes")
    assert planes.height == 3 * PLANES and planes["tailnum"].is_unique().all()
    in_planes = flights["tailnum"].is_in(planes["tailnum"].implode())
    real_in_planes = real["tailnum"].is_in(planes["tailnum"].implode()).sum()
    assert in_planes.sum() == 3 * real_in_planes
    assert landing.landed_scales(path) == dict.fromkeys(DAYS, 3)


def test_landing_at_a_scale_is_deterministic_and_independent_of_batching(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two landings give the same tables, row order included; small batches give the same
    flights and planes."""
    first, second, batched = (tmp_path / f"{name}.duckdb" for name in ("a", "b", "c"))
    landing.land(first, DAYS, scale=3)
    landing.land(second, DAYS, scale=3)
    monkeypatch.setattr(landing, "MAX_BATCH_ROWS", 1000)  # each day a batch of its own
    landing.land(batched, DAYS, scale=3)
    for name in ("flights", "planes", "weather", "landings"):
        assert content_hash(table(first, name)) == content_hash(table(second, name)), name
    for name in ("flights", "planes"):  # weather keeps the shipped order within a batch
        assert content_hash(table(first, name)) == content_hash(table(batched, name)), name
    weather = [
        table(w, "weather").sort("origin", "time_hour", "weather_date") for w in (first, batched)
    ]
    assert_frame_equal(*weather)


def test_relanding_at_scale_one_restores_the_real_rows(tmp_path: Path) -> None:
    path = tmp_path / "wh.duckdb"
    landing.land(path, DAYS, scale=3)
    landing.land(path, [DAYS[0]], scale=1)
    # A day at another scale than its neighbour: the planes keep the widest scale's tails.
    assert landing.landed_scales(path) == {DAYS[0]: 1, DAYS[1]: 3}
    assert table(path, "planes").height == 3 * PLANES
    assert table(path, "flights").height == 943 + 3 * 914
    landing.land(path, [DAYS[1]], scale=1)
    assert table(path, "flights").height == REAL_ROWS
    assert table(path, "planes").height == PLANES
    assert landing.describe_scales(landing.landed_scales(path)) == "scale 1"


def test_batches_commit_whole_days_and_a_failed_call_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over MAX_BATCH_ROWS, each batch of days is a transaction of its own: a failure keeps
    the days before it, whole, and the same call again lands the rest."""
    path = tmp_path / "wh.duckdb"
    monkeypatch.setattr(landing, "MAX_BATCH_ROWS", 1000)  # each day a batch of its own
    real_scale_flights = landing.scale_flights

    def failing_on_the_second_day(
        real: pl.DataFrame, n: int, ranks: dict[str, int]
    ) -> pl.DataFrame:
        if DAYS[1] in real["flight_date"].to_list():
            raise OSError("disk full")
        return real_scale_flights(real, n, ranks)

    monkeypatch.setattr(landing, "scale_flights", failing_on_the_second_day)
    with pytest.raises(OSError, match="disk full"):
        landing.land(path, DAYS, scale=3)
    assert landing.landed_scales(path) == {DAYS[0]: 3}
    assert table(path, "flights").height == 3 * 943
    assert table(path, "planes").height == 3 * PLANES
    monkeypatch.setattr(landing, "scale_flights", real_scale_flights)
    landing.land(path, landing.plan_days(landing.landed_days(path), days=1), scale=3)
    assert table(path, "flights").height == 3 * REAL_ROWS
    # Back to scale 1 day by day: the planes narrow once the last wide day is re-landed.
    landing.land(path, DAYS, scale=1)
    assert table(path, "planes").height == PLANES
    assert table(path, "flights").height == REAL_ROWS
    # A batch per day and call (1 + 1 + 2): the failed transaction recorded nothing.
    assert table(path, "landings")["batch"].to_list() == [1, 2, 3, 4]


def test_a_warehouse_landed_before_scales_reads_as_scale_one(tmp_path: Path) -> None:
    import duckdb

    path = tmp_path / "wh.duckdb"
    landing.land(path, [DAYS[0]])
    with duckdb.connect(str(path)) as conn:  # raw.landings as it was before the column
        conn.execute("alter table raw.landings drop column scale")
    assert landing.landed_scales(path) == {DAYS[0]: 1}
    landing.land(path, [DAYS[1]], scale=2)
    assert landing.landed_scales(path) == {DAYS[0]: 1, DAYS[1]: 2}
    scales = table(path, "landings").sort("batch")["scale"].to_list()
    assert scales == [None, 2]


def test_synthetic_rows_pass_the_data_contracts_with_nothing_quarantined(tmp_path: Path) -> None:
    """What raw_snapshot reads (flights_enriched, built by the real dbt project) and the
    reference tables it checks, validated against the real contracts."""
    path = tmp_path / "warehouse.duckdb"
    landing.land(path, DAYS, scale=3)
    run_dbt_build(path)
    warehouse = WarehouseResource(url=str(path))
    frame = warehouse.read_flights(DayWindow(DAYS[0], DAYS[-1]))
    assert frame.height == 3 * REAL_ROWS
    contract = ContractsResource().load("flights")
    outcome = validate_partitions(frame, contract, DAYS, run_id="test-scale")
    assert outcome.quarantine.height == 0
    assert outcome.valid.height == 3 * REAL_ROWS
    for table_name, report in check_reference_tables(
        warehouse.models(), ContractsResource().reference_contracts()
    ).items():
        assert isinstance(report, TableReport), f"{table_name}: {report}"
        assert report.rejected_rows == 0
    # The plane joins find a synthetic flight's plane exactly where they find the real one's.
    copy = (pl.col("flight_id") // scale.FLIGHT_ID_STRIDE).alias("copy")
    known = frame.group_by(copy).agg(pl.col("plane_seats").is_not_null().sum()).sort("copy")
    assert known["plane_seats"].n_unique() == 1 and known["plane_seats"][0] > 0


def test_scale_lands_into_postgres(postgres_url: str) -> None:
    landing.land(postgres_url, DAYS, scale=2)
    wh = warehouse_at(postgres_url)
    counts = wh.read(
        "select (select count(*) from raw.flights) as flights, "
        "(select count(distinct source_row) from raw.flights) as ids, "
        "(select count(*) from raw.planes) as planes"
    ).row(0, named=True)
    assert counts == {"flights": 2 * REAL_ROWS, "ids": 2 * REAL_ROWS, "planes": 2 * PLANES}
    assert landing.landed_scales(postgres_url) == dict.fromkeys(DAYS, 2)
    landing.land(postgres_url, DAYS, scale=1)
    assert wh.read("select count(*) as n from raw.flights")["n"][0] == REAL_ROWS
    assert landing.landed_scales(postgres_url) == dict.fromkeys(DAYS, 1)


def test_the_cli_prints_the_scale_it_landed_at(tmp_path: Path) -> None:
    env = {"TRAINFLOW_HOME": str(tmp_path), "TRAINFLOW_WAREHOUSE_URL": ""}
    runner = CliRunner()
    done = runner.invoke(main, ["land", "--day", "2013-01-02", "--scale", "2"], env=env)
    assert done.exit_code == 0, done.output
    assert "at scale 2: 1886 flights (943 real x 2)" in done.output
    done = runner.invoke(main, ["land", "--day", "2013-01-03"], env=env)
    assert "at scale 1" in done.output
    assert "note: the landed days are at scales 1 (1 day), 2 (1 day)" in done.output
    refused = runner.invoke(main, ["land", "--days", "1", "--scale", "0"], env=env)
    assert refused.exit_code != 0 and "--scale" in refused.output


def test_day_batches_bound_the_rows_held_at_once() -> None:
    rows = {dt.date(2013, 1, d): 1000 for d in range(1, 6)}
    assert scale.day_batches(rows, rows, 1, 10_000) == [sorted(rows)]
    assert scale.day_batches(rows, rows, 10, 20_000) == [
        [dt.date(2013, 1, 1), dt.date(2013, 1, 2)],
        [dt.date(2013, 1, 3), dt.date(2013, 1, 4)],
        [dt.date(2013, 1, 5)],
    ]
    # A day over the limit alone still lands, as a batch of its own.
    assert scale.day_batches(rows, [dt.date(2013, 1, 1)], 100, 1) == [[dt.date(2013, 1, 1)]]


def test_every_scale_up_to_the_maximum_has_distinct_tails() -> None:
    flights, planes = nycflights13.read_table("flights"), nycflights13.read_table("planes")
    ranks = scale.tail_ranks(flights["tailnum"], planes["tailnum"])
    assert (scale.MAX_SCALE - 1) * len(ranks) <= 36**scale.TAIL_DIGITS
    last = pl.DataFrame({"tailnum": [max(ranks)]})
    top = scale.scale_planes(last, scale.MAX_SCALE, ranks)["tailnum"]
    assert top.is_unique().all() and top.str.contains(PLANES_PATTERN).all()
    with pytest.raises(scale.ScaleError, match="between 1 and"):
        scale.check_scale(scale.MAX_SCALE + 1)
