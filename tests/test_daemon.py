"""The sensor and the schedule, started with the commands docs/automation.md gives, tick in a
real `dagster-daemon` serving workspace.yaml (the daemon `make dev` starts): a landed day is
picked up by the sensor's run. The form the docs warned against (`-m trainflow.definitions`)
leaves a state no daemon ticks, and `trainflow status` reports it. About 2 minutes."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter

from tests.conftest import BIN, REPO_ROOT, run_dbt_build
from tests.doc_blocks import blocks
from tests.helpers.environment import user_environment
from trainflow.definitions import defs
from trainflow.defs.instigators import instigator_lines, served_locations

pytestmark = pytest.mark.timeout(900)
SENSOR_TAG = "dagster/sensor_name"


def run(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(args, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{args}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("daemon") / "trainflow"


@pytest.fixture(scope="module")
def env(home: Path) -> dict[str, str]:
    env = user_environment(home)
    run([str(BIN / "trainflow"), "land", "--through", "2013-01-03"], env)
    # The warehouse as `make pipeline` leaves it, its dbt views built: the sensor's runs read
    # them and do not rebuild them for new rows (defs/automation.py).
    run_dbt_build(home / "warehouse.duckdb")
    (block,) = [
        b
        for b in blocks(REPO_ROOT / "docs" / "automation.md")
        if b.cls == "local" and "sensor start" in b.body
    ]
    run(["bash", "-euo", "pipefail", "-c", block.body], env)  # exactly as the doc writes it
    return env


@pytest.fixture(scope="module")
def daemon(env: dict[str, str], home: Path) -> Iterator[subprocess.Popen]:
    with (home / "daemon.log").open("w") as log:
        proc = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def sensor_runs(home: Path) -> list[dg.DagsterRun]:
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        return list(instance.get_runs(filters=RunsFilter(tags={SENSOR_TAG: "warehouse_days"})))


def failure_of(run: dg.DagsterRun, home: Path) -> str:
    """The failed run's step errors, for the assertion message."""
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        errors = [
            f"{e.dagster_event.step_key}: {e.dagster_event.step_failure_data.error.to_string()[-3000:]}"
            for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
            if e.dagster_event
            and e.dagster_event.step_failure_data
            and e.dagster_event.step_failure_data.error
        ]
    return f"run {run.run_id} ({run.tags}) failed:\n" + "\n".join(errors)


def wait_for_run_covering(day: str, home: Path, daemon: subprocess.Popen) -> dg.DagsterRun:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert daemon.poll() is None, (home / "daemon.log").read_text()[-4000:]
        for found in sensor_runs(home):
            start = found.tags.get("dagster/asset_partition_range_start", "")
            end = found.tags.get("dagster/asset_partition_range_end", "")
            if start <= day <= end and found.status == DagsterRunStatus.SUCCESS:
                return found
            assert found.status != DagsterRunStatus.FAILURE, failure_of(found, home)
        time.sleep(3)
    raise AssertionError(
        f"no successful warehouse_days run covers {day}:\n"
        + (home / "daemon.log").read_text()[-4000:]
    )


def test_the_sensor_started_as_documented_processes_a_newly_landed_day(env, home, daemon) -> None:
    catch_up = wait_for_run_covering("2013-01-03", home, daemon)
    assert catch_up.tags["dagster/asset_partition_range_start"] == "2013-01-01"
    run([str(BIN / "trainflow"), "land", "--days", "1"], env)  # 2013-01-04 arrives
    new_day = wait_for_run_covering("2013-01-04", home, daemon)
    assert new_day.tags["dagster/asset_partition_range_start"] == "2013-01-04"
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        done = instance.get_materialized_partitions(dg.AssetKey("flight_features"))
    assert {"2013-01-01", "2013-01-04"} <= done


def test_the_schedule_is_running_in_the_location_the_daemon_serves(env, home, daemon) -> None:
    served = served_locations(REPO_ROOT / "workspace.yaml")
    assert served == {"trainflow"}
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        lines = instigator_lines(instance, defs, served)
    running = {(line.kind, line.name) for line in lines if line.served and line.running}
    assert {("schedule", "weekly_retrain"), ("sensor", "warehouse_days")} <= running


def test_status_reports_an_instigator_started_under_a_location_nothing_serves(env) -> None:
    run(
        [str(BIN / "dagster"), "sensor", "start", "warehouse_days", "-m", "trainflow.definitions"],
        env,
    )
    shown = run([str(BIN / "trainflow"), "status"], env)
    assert "sensor   warehouse_days" in shown and "RUNNING in location trainflow" in shown
    assert (
        "warning: sensor warehouse_days is RUNNING under location 'trainflow.definitions', "
        "which nothing serves"
    ) in shown
    run(
        [str(BIN / "dagster"), "sensor", "stop", "warehouse_days", "-m", "trainflow.definitions"],
        env,
    )
    assert "which nothing serves" not in run([str(BIN / "trainflow"), "status"], env)
