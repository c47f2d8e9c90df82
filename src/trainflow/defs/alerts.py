"""Alerts on failed runs: a sensor that posts each failed run once to the team's webhook.

Why not Dagster's `run_failure_sensor`: it moves its cursor past a run whose handler raised,
so an alert the webhook refused (a chat outage) would be lost, visible only as one failed
tick. This sensor reads the same run-failure records (`fetch_run_status_changes`) and keeps
its own cursor in the instance, advanced only past alerts the webhook accepted: a refused
post ends the tick with the reason and is posted again on the next tick, and no failed run
is ever posted twice, across ticks and daemon restarts. Like Dagster's, it starts at the
newest failure when first turned on (it does not page for last month's failures).
Without `TRAINFLOW_ALERT_WEBHOOK_URL` it advances past failures and says alerts are off.
"""

from __future__ import annotations

import dagster as dg

from trainflow.alerts import Alert, AlertDeliveryError, post, run_failed_alert
from trainflow.defs.observability import run_partitions
from trainflow.settings import ALERT_WEBHOOK_URL_VAR, Settings

RUN_FAILURES_PER_TICK = 50


def _first_error(
    instance: dg.DagsterInstance, run_id: str, fallback: str
) -> tuple[str | None, str]:
    """(the first failed step, its error): the cause a step's wrapper re-raised, else the
    run's own failure message."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        if event is None:
            continue
        data = event.step_failure_data
        error = data.error if data else None
        if error is not None:
            cause = error.cause or error
            return event.step_key, f"{cause.cls_name}: {cause.message.strip()}"
        return event.step_key, "step failed"
    return None, fallback


def failed_run_alert(
    instance: dg.DagsterInstance, run_id: str, message: str, base: str | None
) -> Alert:
    """The alert for a failed run; `base` is the Dagster UI's address (for a link)."""
    run = instance.get_run_by_id(run_id)
    assert run is not None, run_id  # its failure event was just read
    step, error = _first_error(instance, run_id, message or "run failed")
    return run_failed_alert(
        run_id=run_id,
        job=run.job_name,
        failed_step=step,
        partition=run_partitions(run.tags),
        error=error,
        link=f"{base.rstrip('/')}/runs/{run_id}" if base else None,
    )


@dg.sensor(
    name="alert_on_run_failure",
    description="Posts each failed run once to the webhook in TRAINFLOW_ALERT_WEBHOOK_URL "
    "(Slack-compatible JSON naming asset, partition, error and runbook entry); a refused post "
    "is posted again on the next tick.",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def alert_on_run_failure(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    instance = context.instance
    if context.cursor is None:
        newest = instance.fetch_run_status_changes(dg.DagsterEventType.RUN_FAILURE, limit=1)
        start = newest.records[0].storage_id if newest.records else -1
        return dg.SensorResult(
            cursor=str(start), skip_reason=f"started after run-failure record {start}"
        )
    cursor = int(context.cursor)
    failures = instance.fetch_run_status_changes(
        dg.RunStatusChangeRecordsFilter(
            event_type=dg.DagsterEventType.RUN_FAILURE, after_storage_id=cursor
        ),
        limit=RUN_FAILURES_PER_TICK,
        ascending=True,
    ).records
    settings = Settings.from_env()  # read at each tick: the daemon's environment
    url = settings.alert_webhook_url
    posted: list[str] = []
    for record in failures:
        entry = record.event_log_entry
        if url:
            alert = failed_run_alert(instance, entry.run_id, entry.message, settings.dagster_url)
            try:
                post(url, alert)
            except AlertDeliveryError as exc:
                context.log.error(str(exc))
                return dg.SensorResult(
                    cursor=str(cursor),
                    skip_reason=f"posted {len(posted)}; {exc}: posted again next tick",
                )
            posted.append(alert.key)
        cursor = record.storage_id
    if not failures:
        return dg.SensorResult(cursor=str(cursor), skip_reason="no failed run since last tick")
    if not url:
        return dg.SensorResult(
            cursor=str(cursor),
            skip_reason=f"{len(failures)} failed run(s); alerts are off ({ALERT_WEBHOOK_URL_VAR} unset)",
        )
    return dg.SensorResult(cursor=str(cursor), skip_reason=f"posted {', '.join(posted)}")
