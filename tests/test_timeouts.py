"""Stuck work is failed and alerted, never waited on forever.

A step hung on purpose: the MLflow tracking server is a real loopback socket that accepts
connections and never answers (as a server wedged in a deadlock does), so
flight_delay_predictions waits on its first registry call. With a 5-second step limit the
step is stopped, the run fails naming the step and its limit, nothing is retried, and the
run-failure alert reaches a real webhook. The run-level bounds (run monitoring, the Helm
values, every step's limit and Job deadline) are checked against the stated numbers.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml

from tests.helpers.environment import QUICK_CONFIG, REPO_ROOT
from tests.helpers.graph import LAKE_ASSETS, run_graph, step_failure_messages
from tests.helpers.http_receiver import WebhookReceiver
from tests.test_alerts import Ticks
from trainflow.definitions import defs
from trainflow.defs.pods import POD_START_GRACE_SECONDS, STEP_POD_SIZE, STEP_TIME_LIMIT_SECONDS
from trainflow.defs.predictions import flight_delay_predictions
from trainflow.settings import STEP_TIME_LIMIT_VAR, Settings

LIMIT_SECONDS = 5


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port whose listening socket is never accepted from: the kernel completes each
    connection, the request is sent, and no byte ever comes back."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield server.getsockname()[1]


def test_a_hung_step_is_stopped_at_its_limit_failed_and_alerted(
    built_warehouse: Path,
    tmp_path: Path,
    silent_server: int,
    webhook_receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(STEP_TIME_LIMIT_VAR, str(LIMIT_SECONDS))
    settings = Settings.from_env(
        {
            "TRAINFLOW_HOME": str(tmp_path / "home"),
            "TRAINFLOW_WAREHOUSE_URL": str(built_warehouse),
            "TRAINFLOW_CONFIG": str(QUICK_CONFIG),
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{silent_server}",
        }
    )
    with dg.instance_for_test() as instance:
        ticks = Ticks(instance)
        ticks.tick()
        started = time.monotonic()
        result = run_graph(
            settings,
            days=("2013-01-01", "2013-01-03"),
            assets=[*LAKE_ASSETS[:3], flight_delay_predictions],
            instance=instance,
            raise_on_error=False,
        )
        took = time.monotonic() - started
        assert not result.success
        # The daily steps before it finished; the hung one was stopped at its limit, once.
        (failed,) = [
            e.step_key
            for e in result.all_events
            if e.event_type == dg.DagsterEventType.STEP_FAILURE
        ]
        assert failed == "flight_delay_predictions"
        (message,) = step_failure_messages(instance, result.run_id)
        assert f"ran past its time limit of {LIMIT_SECONDS} s" in message
        assert not [
            e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY
        ]
        assert took < 60, took  # not MLflow's 120 s read timeout times its retries
        assert ticks.tick().startswith("posted run:")
    (alert,) = [p["trainflow"] for p in webhook_receiver.posts]
    assert alert["asset"] == "flight_delay_predictions"
    assert f"time limit of {LIMIT_SECONDS} s" in alert["error"]


def test_every_step_has_a_limit_and_its_pod_a_deadline() -> None:
    assert set(STEP_TIME_LIMIT_SECONDS) == set(STEP_POD_SIZE)
    for node in defs.resolve_asset_graph().asset_nodes:
        if not node.is_executable or node.key.to_user_string() not in STEP_TIME_LIMIT_SECONDS:
            continue
        name = node.key.to_user_string()
        tags = defs.resolve_assets_def(node.key).op.tags
        k8s = tags["dagster-k8s/config"]  # Dagster keeps a non-string tag as JSON
        k8s = json.loads(k8s) if isinstance(k8s, str) else k8s
        deadline = k8s["job_spec_config"]["active_deadline_seconds"]
        assert deadline == STEP_TIME_LIMIT_SECONDS[name] + POD_START_GRACE_SECONDS, name
        assert STEP_TIME_LIMIT_SECONDS[name] >= 300, name


def test_runs_that_never_start_or_never_end_are_failed_within_the_stated_bounds() -> None:
    for name in ("dagster.yaml", "dagster.prod.yaml"):
        monitoring = yaml.safe_load((REPO_ROOT / name).read_text())["run_monitoring"]
        assert monitoring == {
            "enabled": True,
            "start_timeout_seconds": 180,
            "max_runtime_seconds": 7200,
            "poll_interval_seconds": 30,
            "max_resume_run_attempts": 0,
        }, name
    values = yaml.safe_load((REPO_ROOT / "helm" / "dagster-values.yaml").read_text())
    assert values["dagsterDaemon"]["runMonitoring"] == {
        "enabled": True,
        "startTimeoutSeconds": 180,
        "pollIntervalSeconds": 30,
        "maxResumeRunAttempts": 0,
    }
    run_job = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["jobSpecConfig"]
    assert run_job == {"activeDeadlineSeconds": 7200}
    # The runbook names the entry the failure alert points at.
    runbook = (REPO_ROOT / "docs" / "runbook.md").read_text()
    assert "## Alert: a step or a run timed out" in runbook
