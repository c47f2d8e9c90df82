"""Alerts for the people on call: a Slack-compatible JSON post to a webhook.

One alert per failed run, rejected candidate or freshness breach, never a storm: the
Dagster sensors that send them keep a cursor in the instance, and every alert carries a
`key` (`run:<run id>`, `gate:<model>:v<version>`, `live:<model>:v<version>`, `freshness:<asset>:<check>:<newest landed
day>`) so a receiver can drop a repeat. Each alert names the asset, the partition, the error
and the runbook entry that says what to do (docs/runbook.md).

Plain `urllib`: one POST of JSON needs no client library, and Slack's incoming webhooks,
Mattermost and most chat tools accept this payload (`text`, plus `blocks` where shown).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

RUNBOOK = "docs/runbook.md"
# The runbook entry for each kind of alert, by the step that failed (other steps: the
# general entry). Anchors are the headings of docs/runbook.md.
RUNBOOK_ENTRIES = {
    "run_failed": "alert-a-run-failed",
    "raw_snapshot": "alert-a-run-failed-in-raw_snapshot",
    "validated_flights": "alert-a-run-failed-in-validated_flights",
    "flight_features": "alert-a-run-failed-in-flight_features",
    "registry_entry": "alert-a-run-failed-in-registry_entry",
    "gate_rejected": "alert-a-candidate-failed-the-gate",
    "live_performance": "alert-the-champion-underperforms-on-real-outcomes",
    "freshness": "alert-freshness-breach",
}
MAX_ERROR_CHARS = 1500


class AlertDeliveryError(RuntimeError):
    """The webhook did not accept the alert (its sensor tick fails and is retried)."""


@dataclass(frozen=True)
class Alert:
    key: str  # what it is about, once: "run:<run id>", "freshness:<asset>:..."
    title: str
    asset: str | None
    partition: str | None
    error: str
    runbook_entry: str
    link: str | None = None  # the run or asset page in the Dagster UI, when known

    @property
    def runbook(self) -> str:
        return f"{RUNBOOK}#{self.runbook_entry}"

    def payload(self) -> dict[str, Any]:
        """Slack-compatible JSON: a one-line `text` (notifications, plain receivers) and
        the same facts as `blocks`."""
        facts = [
            ("asset", self.asset or "-"),
            ("partition", self.partition or "-"),
            ("runbook", self.runbook),
        ]
        if self.link:
            facts.append(("in Dagster", self.link))
        error = self.error[:MAX_ERROR_CHARS]
        return {
            "text": f"{self.title}: {self.asset or '-'} {self.partition or ''}".rstrip()
            + f" ({self.runbook})",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": self.title}},
                {
                    "type": "section",
                    "fields": [
                        {"type": "mrkdwn", "text": f"*{name}*\n{value}"} for name, value in facts
                    ],
                },
                {"type": "section", "text": {"type": "mrkdwn", "text": f"```{error}```"}},
            ],
            "trainflow": {
                "key": self.key,
                "asset": self.asset,
                "partition": self.partition,
                "error": error,
                "runbook": self.runbook,
            },
        }


def run_failed_alert(
    run_id: str,
    job: str,
    failed_step: str | None,
    partition: str | None,
    error: str,
    link: str | None = None,
) -> Alert:
    """The alert for a failed run: the first failed step names the asset (a step key is
    the asset's name) and picks the runbook entry."""
    entry = RUNBOOK_ENTRIES.get(failed_step or "", RUNBOOK_ENTRIES["run_failed"])
    return Alert(
        key=f"run:{run_id}",
        title=f"trainflow run failed ({job}, run {run_id[:8]})",
        asset=failed_step,
        partition=partition,
        error=error,
        runbook_entry=entry,
        link=link,
    )


def gate_rejected_alert(
    model_name: str,
    version: int,
    decision: str,
    run_id: str,
    as_of: str | None,
    link: str | None = None,
) -> Alert:
    """The alert for a candidate the promotion gate rejected: one per registered version,
    with the gate's reasons (`decision`, as the registry's tags and the report give it)."""
    return Alert(
        key=f"gate:{model_name}:v{version}",
        title=f"trainflow candidate rejected by the gate ({model_name} v{version}, run {run_id[:8]})",
        asset="registry_entry",
        partition=as_of,
        error=decision,
        runbook_entry=RUNBOOK_ENTRIES["gate_rejected"],
        link=link,
    )


def live_performance_alert(model_name: str, version: int, day: str, reason: str) -> Alert:
    """The alert for a champion whose realised ROC AUC fell below its evaluation's by more
    than the configured limit: one per version (the first breached day names it)."""
    return Alert(
        key=f"live:{model_name}:v{version}",
        title=f"trainflow champion underperforms on real outcomes ({model_name} v{version})",
        asset="champion_live_performance",
        partition=day,
        error=reason,
        runbook_entry=RUNBOOK_ENTRIES["live_performance"],
    )


@dataclass(frozen=True)
class Delivery:
    """What one round of posting did: `position` is the last event every alert up to which
    the webhook accepted (the sensor's cursor moves to it and no further)."""

    position: int
    posted: list[str]
    refused: str | None  # why the webhook refused the next alert (posted again next tick)


def deliver_in_order(
    url: str | None,
    pending: Iterable[tuple[int, Callable[[], Alert | None]]],
    position: int,
    already_posted: Callable[[str], bool] = lambda key: False,
) -> Delivery:
    """Post the alerts of events in order (`(event position, build the event's alert or
    None)`), stopping at the first the webhook refuses. Without a URL, every event is
    passed over unposted (alerts are off). An alert whose key was already posted is
    passed over, so a repeat of the same fact is never a second page."""
    posted: list[str] = []
    for event_position, build in pending:
        alert = build() if url else None
        if url and alert is not None and alert.key not in posted and not already_posted(alert.key):
            try:
                post(url, alert)
            except AlertDeliveryError as exc:
                return Delivery(position, posted, str(exc))
            posted.append(alert.key)
        position = event_position
    return Delivery(position, posted, None)


def post(url: str, alert: Alert, timeout_seconds: float = 10.0) -> None:
    """POST the alert; raises AlertDeliveryError (naming the status, never the URL, which
    holds the webhook's token) unless the receiver answers 2xx."""
    request = urllib.request.Request(
        url,
        data=json.dumps(alert.payload()).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_seconds) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        raise AlertDeliveryError(f"alert {alert.key}: the webhook answered {exc.code}") from None
    except (urllib.error.URLError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AlertDeliveryError(
            f"alert {alert.key}: the webhook is unreachable ({reason})"
        ) from None
    if not 200 <= status < 300:
        raise AlertDeliveryError(f"alert {alert.key}: the webhook answered {status}")
