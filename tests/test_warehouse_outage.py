"""The PostgreSQL warehouse stops answering in the middle of a run.

A real server behind a TCP forwarder of this test's own (tests/tcp_proxy.py, a separate
process), so the outage touches nobody else: dbt builds the models through it, then a
success hook stops the forwarder (SIGSTOP: connections are accepted, nothing is answered,
like a hung database host). raw_snapshot cannot reach the warehouse, IO_RETRY retries it 3
times, and the run fails with an error naming the warehouse. Once the forwarder resumes,
Dagster's re-execution from failure runs raw_snapshot only, and every flight lands once.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import pytest

from tests.conftest import QUICK_CONFIG, REPO_ROOT, free_port
from tests.helpers.graph import partition_range_tags
from tests.helpers.reexecution import (
    error_text,
    reexecute_from_failure,
    run_with_outage,
    started_steps,
    step_retries,
    stop_server_after,
)
from tests.test_faults import assert_each_flight_once
from trainflow.definitions import build_resources
from trainflow.defs.ingest import raw_snapshot
from trainflow.defs.warehouse import warehouse_models
from trainflow.lake.delta_lake import DayWindow, DeltaLake
from trainflow.settings import Settings
from trainflow.warehouse import landing
from trainflow.warehouse.factory import warehouse_at

JAN_2_4 = DayWindow(dt.date(2013, 1, 2), dt.date(2013, 1, 4))
CONNECT_TIMEOUT_S = 2


def warehouse_then_snapshot() -> dg.JobDefinition:
    """dbt's models -> raw_snapshot on the warehouse from the environment, in one process;
    reconstructable, so Dagster can re-execute it from failure."""
    assets = [warehouse_models, raw_snapshot]
    return dg.Definitions(
        assets=assets,
        resources=build_resources(Settings.from_env()),
        jobs=[
            dg.define_asset_job(
                "warehouse_then_snapshot",
                selection=dg.AssetSelection.assets(*assets),
                executor_def=dg.in_process_executor,
                hooks={stop_server_after(warehouse_models.op.name)},  # the forwarder
            )
        ],
    ).resolve_job_def("warehouse_then_snapshot")


@pytest.fixture
def forwarded_postgres(
    postgres_url: str, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """The test database, reached through a forwarder on a port of its own."""
    server = urlsplit(postgres_url)
    port = free_port()
    proxy = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "tests" / "tcp_proxy.py"), str(port),
         server.hostname or "127.0.0.1", str(server.port or 5432)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proxy.stdout is not None and proxy.stdout.readline().strip() == "ready"
        user = f"{server.username}@" if server.username else ""
        yield (
            proxy,
            (
                f"postgresql://{user}127.0.0.1:{port}{server.path}?connect_timeout={CONNECT_TIMEOUT_S}"
            ),
        )
    finally:
        proxy.kill()  # SIGKILL ends it even if it is still stopped
        proxy.wait(timeout=30)


def test_warehouse_down_mid_run_retries_names_it_and_reexecution_completes(
    forwarded_postgres: tuple[subprocess.Popen[str], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy, url = forwarded_postgres
    landing.land(url, landing.plan_days([], through=JAN_2_4.last))
    for key, value in {
        "TRAINFLOW_HOME": str(tmp_path / "home"),
        "TRAINFLOW_WAREHOUSE_URL": url,
        "TRAINFLOW_CONFIG": str(QUICK_CONFIG),
    }.items():
        monkeypatch.setenv(key, value)
    settings = Settings.from_env()
    job = dg.reconstructable(warehouse_then_snapshot)
    tags = partition_range_tags(JAN_2_4.first, JAN_2_4.last)

    with dg.instance_for_test() as instance:
        failed = run_with_outage(job, instance, tags, proxy, monkeypatch)  # then it is back

        assert not failed.success
        retries = step_retries(failed)
        failures = failed.get_step_failure_events()
        assert [e.step_key for e in failed.get_step_success_events()] == ["warehouse_models"]
        assert [e.step_key for e in retries] == ["raw_snapshot"] * 3  # IO_RETRY's 3
        assert [e.step_key for e in failures] == ["raw_snapshot"]
        for event in [*retries, *failures]:  # every attempt names the warehouse and why
            text = error_text(event)
            assert f"WarehouseUnavailableError: warehouse {url} is unreachable" in text, text
            assert "timeout expired" in text, text
        assert DeltaLake(settings.lake_uri).version("raw_snapshot") is None

        again = reexecute_from_failure(job, instance, failed, tags)
        assert again.success, [error_text(e) for e in again.get_step_failure_events()]
        assert started_steps(again) == {"raw_snapshot"}  # dbt's models are not built again

    stored = DeltaLake(settings.lake_uri).read("raw_snapshot")
    expected = dict(
        warehouse_at(url)
        .read(
            "select flight_date, count(*) as n from raw.flights where flight_date between ? and ? group by 1",
            [JAN_2_4.first, JAN_2_4.last],
        )
        .iter_rows()
    )
    assert_each_flight_once(stored, expected, "raw_snapshot")
