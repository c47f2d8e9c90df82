"""Alerts: each failed run is posted once to a real HTTP receiver on loopback, naming the
asset, partition, error and runbook entry, over many sensor ticks evaluated as the daemon
evaluates them (the cursor carried in between); a refused post is posted again, once."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from tests.helpers.graph import ingest_resources
from tests.helpers.http_receiver import WebhookReceiver
from trainflow.alerts import RUNBOOK_ENTRIES
from trainflow.defs.alerts import alert_on_run_failure
from trainflow.defs.ingest import raw_snapshot
from trainflow.settings import ALERT_WEBHOOK_URL_VAR as WEBHOOK_URL_VAR
from trainflow.settings import Settings

RUNBOOK = Path(__file__).resolve().parents[1] / "docs" / "runbook.md"


class Ticks:
    """Successive ticks of the alert sensor against one instance, the cursor carried."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance
        self.cursor: str | None = None

    def tick(self) -> str:
        """One tick; returns what it says it did."""
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor)
        data = alert_on_run_failure.evaluate_tick(context)
        self.cursor = data.cursor
        return str(data.skip_message)


def failed_snapshot(
    instance: dg.DagsterInstance, warehouse: Path, lake: Path, day: str
) -> dg.ExecuteInProcessResult:
    """A real failure: a snapshot of a day the warehouse never landed."""
    result = dg.materialize(
        [raw_snapshot],
        instance=instance,
        partition_key=day,
        resources=ingest_resources(warehouse, lake),
        raise_on_error=False,
    )
    assert not result.success
    return result


def test_each_failed_run_is_posted_once_over_many_ticks(
    built_warehouse: Path, tmp_path: Path, webhook_receiver: WebhookReceiver
) -> None:
    with dg.instance_for_test() as instance:
        ticks = Ticks(instance)
        ticks.tick()  # the first tick starts the cursor at the newest run event
        first = failed_snapshot(instance, built_warehouse, tmp_path / "lake", "2013-03-05")
        for _ in range(3):
            ticks.tick()
        assert len(webhook_receiver.posts) == 1
        alert = webhook_receiver.posts[0]["trainflow"]
        assert alert["key"] == f"run:{first.run_id}"
        assert alert["asset"] == "raw_snapshot"
        assert alert["partition"] == "2013-03-05"
        assert "no rows in the warehouse for partition(s) 2013-03-05" in alert["error"]
        assert alert["runbook"] == "docs/runbook.md#alert-a-run-failed-in-raw_snapshot"
        payload = webhook_receiver.posts[0]
        assert payload["text"].startswith("trainflow run failed (")
        assert "raw_snapshot 2013-03-05" in payload["text"]
        assert payload["blocks"][0]["type"] == "header"

        # Two more failures; the webhook accepts the first post and refuses the second:
        # the tick says so, and the next tick posts only the second, once.
        second = failed_snapshot(instance, built_warehouse, tmp_path / "lake", "2013-03-06")
        third = failed_snapshot(instance, built_warehouse, tmp_path / "lake", "2013-03-07")
        webhook_receiver.answers = [200, 503]
        said = ticks.tick()
        assert said.endswith(
            f"alert run:{third.run_id}: the webhook answered 503: posted again next tick"
        )
        for _ in range(2):
            ticks.tick()
        assert [p["trainflow"]["key"] for p in webhook_receiver.posts] == [
            f"run:{first.run_id}",
            f"run:{second.run_id}",
            f"run:{third.run_id}",
        ]
        assert webhook_receiver.posts[2]["trainflow"]["partition"] == "2013-03-07"
        # The webhook's token is never echoed, nor shown with the settings.
        assert webhook_receiver.url not in json.dumps(webhook_receiver.posts)
        assert Settings.from_env().alert_webhook_url == webhook_receiver.url
        assert webhook_receiver.url not in repr(Settings.from_env())


def test_no_webhook_means_no_post_and_no_failure(
    built_warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(WEBHOOK_URL_VAR, raising=False)
    with dg.instance_for_test() as instance:
        ticks = Ticks(instance)
        ticks.tick()
        failed_snapshot(instance, built_warehouse, tmp_path / "lake", "2013-03-05")
        assert ticks.tick() == (f"1 failed run(s); alerts are off ({WEBHOOK_URL_VAR} unset)")
        assert ticks.tick() == "no failed run since last tick"


def test_every_runbook_entry_an_alert_names_exists() -> None:
    """Anchors as GitHub renders them: the heading lowercased, spaces as hyphens."""
    headings = [
        line.lstrip("#").strip()
        for line in RUNBOOK.read_text().splitlines()
        if line.startswith("#")
    ]
    anchors = {
        "".join(c for c in h.lower().replace(" ", "-") if c.isalnum() or c in "-_")
        for h in headings
    }
    assert set(RUNBOOK_ENTRIES.values()) <= anchors
