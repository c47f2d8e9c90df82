"""Backfills and the warehouse sensor through a running `dagster dev`, as the UI drives them.

One `dagster dev` (webserver, daemon, code server) over a fresh trainflow home:
1. a partition backfill launched with GraphQL `launchPartitionBackfill` (the mutation the
   UI's "Materialize" dialog sends), warehouse models and daily assets over three days:
   every partition materialized exactly once, each a cache miss;
2. the `warehouse_days` sensor started with GraphQL: its first tick catches up on the three
   days (all cache hits: nothing is recomputed), then a day landed with `trainflow land` is
   picked up by a later tick, computed alone, and never requested again; after each daily
   run, a run of dbt's data tests alone reads that run's new days.
The CLI door (`dagster asset materialize --partition-range`) is tests/test_pipeline_end_to_end.py.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest

from tests.conftest import BIN, REPO_ROOT, user_environment
from tests.dagster_dev import LOCATION, DagsterDev
from trainflow.defs.automation import DAILY_ASSETS, DBT_DATA_TESTS, DBT_TESTS_TAG
from trainflow.defs.predictions import flight_delay_predictions
from trainflow.defs.warehouse import warehouse_models
from trainflow.lake.delta_lake import DeltaLake
from trainflow.settings import Settings

DAYS = ["2013-01-01", "2013-01-02", "2013-01-03"]
NEW_DAY = "2013-01-04"
SENSOR = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__",
          "sensorName": "warehouse_days"}  # fmt: skip
TERMINAL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}"""
BACKFILL = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status }
    ... on Error { message }
  }
}"""
START_SENSOR = """
mutation Start($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status } }
    ... on Error { message }
  }
}"""
SENSOR_TICKS = """
query Ticks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    ... on Sensor {
      sensorState {
        typeSpecificData { ... on SensorData { lastCursor } }
        ticks(limit: 20) { timestamp status runIds skipReason error { message } }
      }
    }
  }
}"""


def trainflow(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(BIN / "trainflow"), *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return user_environment(tmp_path_factory.mktemp("backfills_home"))


@pytest.fixture(scope="module")
def dagster_dev(
    env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DagsterDev]:
    trainflow(["land", "--through", DAYS[-1]], env)
    dev = DagsterDev(env, tmp_path_factory.mktemp("dagster_dev") / "dagster-dev.log")
    try:
        yield dev
    finally:
        dev.stop()


@pytest.fixture(scope="module")
def instance(env: dict[str, str]) -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        yield instance


def events(instance: dg.DagsterInstance, asset: dg.AssetKey, day: str) -> list[dict[str, Any]]:
    """Every materialization of one partition, oldest first, with its metadata."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset, asset_partitions=[day]), limit=100, ascending=True
    ).records
    return [
        {k: v.value for k, v in r.asset_materialization.metadata.items()}  # type: ignore[union-attr]
        for r in records
    ]


@pytest.fixture(scope="module")
def backfill_id(dagster_dev: DagsterDev) -> str:
    """The backfill's id once the daemon reports it finished (whatever its outcome)."""
    # Each asset with its partitions, as a script names them. (`partitionNames` gives the
    # range to the selection's roots only, and Dagster adds every feature day whose
    # look-back holds a backfilled day: 28 days past the range; docs/automation.md.)
    day_range = {"range": {"start": DAYS[0], "end": DAYS[-1]}}
    launched = dagster_dev.graphql(
        LAUNCH,
        {"params": {
            "partitionsByAssets": [
                *({"assetKey": {"path": key.path}} for key in warehouse_models.keys),
                *({"assetKey": {"path": key.path}, "partitions": day_range}
                  for key in DAILY_ASSETS),
            ],
            "title": "tests/test_backfills.py",
        }},
    )["launchPartitionBackfill"]  # fmt: skip
    assert launched["__typename"] == "LaunchBackfillSuccess", launched

    def finished() -> str | None:
        found = dagster_dev.graphql(BACKFILL, {"id": launched["backfillId"]})[
            "partitionBackfillOrError"
        ]
        return found["status"] if found.get("status") in TERMINAL else None

    status = dagster_dev.wait_for(finished, 600, "the backfill")
    assert status in {"COMPLETED", "COMPLETED_SUCCESS"}, (status, dagster_dev.tail())
    return str(launched["backfillId"])


def test_a_graphql_backfill_materializes_every_partition_once(backfill_id, instance) -> None:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    # Single-run backfill policy: each partitioned run covers the three days at once (the
    # daemon runs the dbt models first, and the features after the days they look back on).
    ranged = [r for r in runs if "dagster/asset_partition_range_start" in r.tags]
    assert ranged and len(ranged) < len(DAYS) * len(DAILY_ASSETS)
    for run in ranged:
        assert run.tags["dagster/asset_partition_range_start"] == DAYS[0]
        assert run.tags["dagster/asset_partition_range_end"] == DAYS[-1]
    for asset in DAILY_ASSETS:
        for day in DAYS:
            seen = events(instance, asset, day)
            assert [e["cache"] for e in seen] == ["miss"], (asset, day, seen)


def test_the_sensor_catches_up_then_runs_each_new_day_once(
    backfill_id, dagster_dev, instance, env
) -> None:
    lake = DeltaLake(Settings.from_env(env).lake_uri)
    versions = {a.path[-1]: lake.version(a.path[-1]) for a in DAILY_ASSETS}
    started = dagster_dev.graphql(START_SENSOR, {"selector": SENSOR})["startSensor"]
    assert started["__typename"] == "Sensor", started

    def sensor_runs(count: int, dbt_tests: bool = False) -> list[dg.DagsterRun] | None:
        """The sensor's daily runs (or its dbt data-test runs), once `count` have finished."""
        every = instance.get_runs(
            filters=dg.RunsFilter(tags={"dagster/sensor_name": "warehouse_days"})
        )
        runs = [r for r in every if (DBT_TESTS_TAG in r.tags) == dbt_tests]
        done = [r for r in runs if r.is_finished]
        return (
            sorted(runs, key=lambda r: r.tags["dagster/asset_partition_range_start"])
            if (len(runs) >= count and len(done) == len(runs))
            else None
        )

    def dbt_tests_run(count: int, days: str) -> None:
        """The sensor's `count`th dbt data-test run: every dbt test passed, reading `days`
        (what the build that served the run tested), and no model rebuilt."""
        run = dagster_dev.wait_for(lambda: sensor_runs(count, True), 300, "dbt tests")[-1]
        assert run.status == dg.DagsterRunStatus.SUCCESS, dagster_dev.tail()
        assert run.asset_selection == frozenset()
        assert run.asset_check_selection == frozenset(DBT_DATA_TESTS)
        records = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ).records
        evaluations = [r.event_log_entry.dagster_event.event_specific_data for r in records]  # type: ignore[union-attr]
        assert {e.asset_check_key for e in evaluations} == set(DBT_DATA_TESTS)  # type: ignore[union-attr]
        assert all(e.passed for e in evaluations)  # type: ignore[union-attr]
        assert {e.metadata["dbt_tested_days"].value for e in evaluations} == {days}  # type: ignore[union-attr]
        materialized = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ).records
        assert materialized == []

    first = dagster_dev.wait_for(lambda: sensor_runs(1), 300, "the sensor's first run")
    assert [(r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
            for r in first] == [(DAYS[0], DAYS[-1])]  # fmt: skip
    assert first[0].status == dg.DagsterRunStatus.SUCCESS
    for asset in DAILY_ASSETS:  # caught up without recomputing anything
        seen = events(instance, asset, DAYS[1])
        if asset == flight_delay_predictions.key:  # no champion yet: the day stays unscored
            assert [e["scored_with"] for e in seen] == ["none (no champion)"] * 2, seen
        else:
            assert [e["cache"] for e in seen] == ["miss", "hit"], (asset, seen)
    assert {a: lake.version(a) for a in versions} == versions
    # Nothing changed since the backfill's dbt build tested every row: that build serves.
    dbt_tests_run(1, "all")

    trainflow(["land", "--day", NEW_DAY], env)
    runs = dagster_dev.wait_for(lambda: sensor_runs(2), 300, "a run for the landed day")
    assert runs[1].status == dg.DagsterRunStatus.SUCCESS
    assert runs[1].tags["dagster/asset_partition_range_start"] == NEW_DAY
    assert runs[1].tags["dagster/asset_partition_range_end"] == NEW_DAY
    for asset in DAILY_ASSETS:
        assert [e["cache"] for e in events(instance, asset, NEW_DAY)] == ["miss"]
    dbt_tests_run(2, f"{NEW_DAY}...{NEW_DAY}")

    def ticks() -> list[dict[str, Any]]:
        state = dagster_dev.graphql(SENSOR_TICKS, {"selector": SENSOR})["sensorOrError"]
        return list(state["sensorState"]["ticks"])

    def finished_tick_after(timestamp: float) -> dict[str, Any] | None:
        """The newest tick started after `timestamp`, once it has finished (newest first)."""
        newer = [t for t in ticks() if t["timestamp"] > timestamp and t["status"] != "STARTED"]
        return newer[0] if newer else None

    newest = max(t["timestamp"] for t in ticks())
    later = dagster_dev.wait_for(lambda: finished_tick_after(newest), 120, "a later tick")
    assert later["status"] == "SKIPPED" and later["runIds"] == [], later
    assert "no new or restated day (4 landed)" in later["skipReason"]
    assert sensor_runs(2) is not None and len(sensor_runs(2) or []) == 2
    assert len(sensor_runs(2, dbt_tests=True) or []) == 2
    cursor = dagster_dev.graphql(SENSOR_TICKS, {"selector": SENSOR})["sensorOrError"]
    assert NEW_DAY in cursor["sensorState"]["typeSpecificData"]["lastCursor"]
