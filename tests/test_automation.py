"""The warehouse sensor over several ticks on a real warehouse, and the weekly retrain.

Ticks are evaluated as the daemon evaluates them (the sensor function with a context that
carries the previous tick's cursor, against a Dagster instance); the daemon itself drives
the sensor in tests/test_backfills.py.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from tests.helpers.environment import REPO_ROOT, rolling_config
from trainflow.as_of import AS_OF_TAG
from trainflow.config import load_config
from trainflow.definitions import defs
from trainflow.defs.automation import (
    AUTOMATION_TAG,
    DAILY_ASSETS,
    DBT_DATA_TESTS,
    DBT_TESTS_TAG,
    IN_PROCESS,
    RETRAIN_ASSETS,
    changed_day_requests,
    warehouse_days_sensor,
)
from trainflow.defs.resources import ExperimentConfigResource, WarehouseResource
from trainflow.lake.delta_lake import DayWindow
from trainflow.warehouse import landing
from trainflow.warehouse.changes import (
    ChangeSet,
    DayFingerprint,
    affected_windows,
    compare,
    day_fingerprints,
    dump_fingerprints,
    load_fingerprints,
)
from trainflow.warehouse.factory import warehouse_at

D = dt.date


class Ticks:
    """Successive sensor ticks against one warehouse, the cursor carried between them."""

    def __init__(
        self,
        url: str,
        instance: dg.DagsterInstance,
        config: Path = REPO_ROOT / "configs" / "experiment.yaml",
    ) -> None:
        self.url = url
        self.instance = instance
        self.config = config
        self.cursor: str | None = None
        self.run_keys: list[str] = []

    def context(self) -> dg.SensorEvaluationContext:
        return dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            resources={
                "warehouse": WarehouseResource(url=self.url),
                "experiment": ExperimentConfigResource(path=str(self.config)),
            },
            definitions=defs,
        )

    def tick(self) -> list[dg.RunRequest]:
        with self.context() as context:
            result = warehouse_days_sensor(context)
        assert isinstance(result, dg.SensorResult)
        self.cursor = result.cursor
        requests = list(result.run_requests or [])
        self.run_keys += [str(r.run_key) for r in requests]
        return requests


def ranges(requests: list[dg.RunRequest], dbt_tests: bool = False) -> list[tuple[str, str]]:
    """The day ranges of the daily runs requested (or of the dbt data-test runs)."""
    return [
        (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
        for r in requests
        if (DBT_TESTS_TAG in r.tags) == dbt_tests
    ]


LOCK_HOLDER = """
import sys, time, duckdb
conn = duckdb.connect(sys.argv[1])
conn.execute("begin transaction")
print("locked", flush=True)
time.sleep(120)
"""


def restate_one_flight(url: str, day: dt.date) -> None:
    """What a source team's correction looks like: one flight's delay changed in place."""
    with warehouse_at(url).transaction() as tx:
        tx.execute(
            "update raw.flights set arr_delay = arr_delay + 7 "
            "where flight_date = ? and flight = (select min(flight) from raw.flights "
            "where flight_date = ? and arr_delay is not null)",
            [day, day],
        )


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "duckdb":
        yield str(tmp_path / "warehouse.duckdb")
    else:
        yield request.getfixturevalue("postgres_url")


def test_each_change_is_requested_once_over_many_ticks(warehouse_url, instance) -> None:
    ticks = Ticks(warehouse_url, instance)
    assert ticks.tick() == [] and ticks.cursor == "{}"  # nothing landed yet

    landing.land(warehouse_url, [D(2013, 1, d) for d in (1, 2, 3)])
    first = ticks.tick()
    assert ranges(first) == [("2013-01-01", "2013-01-03")]
    assert first[0].asset_selection == DAILY_ASSETS
    assert first[0].run_config == IN_PROCESS  # a few days: one process for the three steps
    assert first[0].tags[AUTOMATION_TAG] == "warehouse_days"
    # Then dbt's data tests alone (no model rebuilt), on the new days, in the same queue.
    assert ranges(first, dbt_tests=True) == [("2013-01-01", "2013-01-03")]
    assert first[1].asset_selection == [] and first[1].asset_check_keys == DBT_DATA_TESTS
    assert len(DBT_DATA_TESTS) == 6 and first[1].tags[AUTOMATION_TAG] == "warehouse_days"
    assert ticks.tick() == []  # the same state again: nothing

    landing.land(warehouse_url, [D(2013, 1, 4), D(2013, 1, 5)])
    assert ranges(ticks.tick()) == [("2013-01-04", "2013-01-05")]
    assert ticks.tick() == []

    landing.land(warehouse_url, [D(2013, 1, 2)])  # re-landed with the same rows
    assert ticks.tick() == []

    restate_one_flight(warehouse_url, D(2013, 1, 2))
    # Its own day, and every landed feature day whose 28-day look-back holds it; the dbt
    # tests read the restated day only.
    restated = ticks.tick()
    assert ranges(restated) == [("2013-01-02", "2013-01-05")]
    assert ranges(restated, dbt_tests=True) == [("2013-01-02", "2013-01-02")]
    assert ticks.tick() == []

    # A gap in the landed days splits a change set into ranges a run can cover.
    landing.land(warehouse_url, [D(2013, 1, 9)])
    restate_one_flight(warehouse_url, D(2013, 1, 3))
    assert ranges(ticks.tick()) == [("2013-01-03", "2013-01-05"), ("2013-01-09", "2013-01-09")]
    assert ticks.tick() == []

    assert len(ticks.run_keys) == len(set(ticks.run_keys)) == 10  # 5 daily + 5 dbt tests
    assert set(load_fingerprints(ticks.cursor)) == {D(2013, 1, d) for d in (1, 2, 3, 4, 5, 9)}


def retrains(requests: list[dg.RunRequest]) -> list[str]:
    """The as-of days of the retrain runs requested."""
    return [r.tags[AS_OF_TAG] for r in requests if r.asset_selection == RETRAIN_ASSETS]


def test_with_a_rolling_config_new_days_retrain_at_the_newest_once(tmp_path, instance) -> None:
    """Train 7 days, validate 3, test 3: 13 landed days are needed before any retrain."""
    config = rolling_config(tmp_path, train=7, validation=3, test=3)
    url = str(tmp_path / "warehouse.duckdb")
    ticks = Ticks(url, instance, config)
    landing.land(url, [D(2013, 1, d) for d in range(1, 13)])
    assert retrains(ticks.tick()) == []  # 12 days: the windows do not fit yet
    landing.land(url, [D(2013, 1, 13), D(2013, 1, 14)])
    new_days = ticks.tick()
    assert retrains(new_days) == ["2013-01-14"]
    # Queued after the daily run and the dbt tests that write and test its features, for
    # the config's experiment partition (added to the instance).
    assert new_days[-1].asset_selection == RETRAIN_ASSETS
    assert new_days[-1].partition_key == load_config(config).name
    assert instance.has_dynamic_partition("experiments", load_config(config).name)
    assert new_days[-1].tags[AUTOMATION_TAG] == "warehouse_days"
    assert ticks.tick() == []  # nothing new: no retrain
    restate_one_flight(url, D(2013, 1, 1))  # before the windows (they start Jan 2)
    assert retrains(ticks.tick()) == []
    restate_one_flight(url, D(2013, 1, 2))  # inside them: the same as-of day, new data
    assert retrains(ticks.tick()) == ["2013-01-14"]
    retrain_keys = [k for k in ticks.run_keys if k.startswith("retrain@")]
    assert len(retrain_keys) == len(set(retrain_keys)) == 2
    # A dated config never retrains on new days (the weekly schedule does).
    dated = Ticks(url, instance)
    assert retrains(dated.tick()) == [] and dated.run_keys


def test_a_locked_warehouse_skips_the_tick_and_keeps_the_cursor(tmp_path, instance) -> None:
    url = str(tmp_path / "warehouse.duckdb")
    landing.land(url, [D(2013, 1, 1)])
    ticks = Ticks(url, instance)
    ticks.tick()
    landing.land(url, [D(2013, 1, 2)])
    # A writer in another process (as `trainflow land` is) holds DuckDB's file lock.
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with ticks.context() as context:
            skipped = warehouse_days_sensor(context)
    finally:
        holder.kill()
        holder.wait()
    assert isinstance(skipped, dg.SkipReason)
    assert "is locked" in str(skipped.skip_message)
    assert ranges(ticks.tick()) == [("2013-01-02", "2013-01-02")]


def test_fingerprints_are_the_same_on_both_warehouses(tmp_path, postgres_url) -> None:
    """Row counts agree across kinds; each kind's checksum changes with any row's value."""
    days = [D(2013, 3, 10), D(2013, 3, 11)]
    duck = str(tmp_path / "warehouse.duckdb")
    for url in (duck, postgres_url):
        landing.land(url, days)
    on_duck, on_postgres = (day_fingerprints(warehouse_at(u)) for u in (duck, postgres_url))
    assert {d: f.rows for d, f in on_duck.items()} == {d: f.rows for d, f in on_postgres.items()}
    assert all(f.rows > 900 for f in on_duck.values())
    for url, before in ((duck, on_duck), (postgres_url, on_postgres)):
        restate_one_flight(url, days[1])
        after = day_fingerprints(warehouse_at(url))
        assert compare(before, after) == ChangeSet(restated=(days[1],))
        assert after[days[1]].rows == before[days[1]].rows


def test_a_long_catch_up_keeps_a_process_per_step_and_kubernetes_always_does() -> None:
    now = {D(2013, 1, 1) + dt.timedelta(i): DayFingerprint(900, str(i)) for i in range(8)}
    changes = compare({}, now)
    assert [r.run_config for r in changed_day_requests(changes, now, True)] == [{}, {}]
    few = {d: f for d, f in now.items() if d.day <= 7}
    in_process = [IN_PROCESS, IN_PROCESS]  # the daily run and the dbt tests' run
    assert [r.run_config for r in changed_day_requests(compare({}, few), few, True)] == in_process
    assert [r.run_config for r in changed_day_requests(compare({}, few), few, False)] == [{}, {}]


def test_affected_windows_cover_the_lookback_and_split_at_gaps() -> None:
    landed = [D(2013, 1, 1) + dt.timedelta(i) for i in range(60) if i != 40]
    windows = affected_windows([D(2013, 1, 20)], landed, lookback_days=28)
    assert windows == [
        DayWindow(D(2013, 1, 20), D(2013, 2, 9)),
        DayWindow(D(2013, 2, 11), D(2013, 2, 17)),
    ]
    assert affected_windows([], landed, 28) == []


def test_the_cursor_round_trips() -> None:
    prints = {D(2013, 1, 2): DayFingerprint(943, "54"), D(2013, 1, 1): DayFingerprint(842, "48")}
    assert load_fingerprints(dump_fingerprints(prints)) == prints
    assert compare({}, prints) == ChangeSet(new=(D(2013, 1, 1), D(2013, 1, 2)))
    assert compare(prints, {}) == ChangeSet(removed=(D(2013, 1, 1), D(2013, 1, 2)))


def test_the_weekly_retrain_and_the_sensor_share_one_run_queue_slot() -> None:
    schedule = defs.get_schedule_def("weekly_retrain")
    job = defs.resolve_job_def("retrain")
    assert schedule.job_name == "retrain"
    assert job.tags[AUTOMATION_TAG] == "weekly_retrain"
    assert set(job.asset_layer.selected_asset_keys) == set(RETRAIN_ASSETS)
    # The sensor's runs never write what the retrain writes, and registration stays in its pool.
    assert not set(DAILY_ASSETS) & set(RETRAIN_ASSETS)
    registry = defs.resolve_assets_def("registry_entry")
    assert registry.op.pool == "model_registry"
    import yaml

    from tests.conftest import REPO_ROOT

    for name in ("dagster.yaml", "dagster.prod.yaml"):
        limits = yaml.safe_load((REPO_ROOT / name).read_text())["concurrency"]["runs"]
        assert {"key": AUTOMATION_TAG, "limit": 1} in limits["tag_concurrency_limits"], name


def test_the_weekly_retrain_skips_while_rolling_windows_do_not_fit(tmp_path, instance) -> None:
    from trainflow.defs.automation import weekly_retrain

    config = rolling_config(tmp_path, train=7)  # 7 + 14 + 14 days
    url = str(tmp_path / "warehouse.duckdb")
    landing.land(url, [D(2013, 1, d) for d in range(1, 31)])

    def tick(path: Path) -> dg.ScheduleExecutionData:
        # In a `with`: the context opens an instance of its own, closed here, not when
        # garbage collected (out of order, it would leave a dead instance current).
        with dg.build_schedule_context(
            instance=instance,
            # The definitions, which a request for a partition of the job is checked against.
            repository_def=defs.get_repository_def(),
            resources={
                "warehouse": WarehouseResource(url=url),
                "experiment": ExperimentConfigResource(path=str(path)),
            },
        ) as context:
            return weekly_retrain.evaluate_tick(context)

    skipped = tick(config)
    assert not skipped.run_requests
    assert "no retrain at as-of 2013-01-30" in str(skipped.skip_message)
    landing.land(url, [D(2013, 1, 31), *[D(2013, 2, d) for d in range(1, 5)]])
    (request,) = tick(config).run_requests or []  # 35 days landed: the windows fit
    assert request.partition_key == load_config(config).name  # the config's experiment
    # A dated config always runs (a cache hit when nothing changed).
    (dated,) = tick(REPO_ROOT / "configs" / "experiment.yaml").run_requests or []
    assert dated.partition_key == "flight-delay-2013"
