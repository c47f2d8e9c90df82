"""Alerts on failed runs and on rejected candidates: sensors that post each once to the
team's webhook.

Why not Dagster's `run_failure_sensor`: it moves its cursor past a run whose handler raised,
so an alert the webhook refused (a chat outage) would be lost, visible only as one failed
tick. This sensor reads the same run-failure records (`fetch_run_status_changes`) and keeps
its own cursor in the instance, advanced only past alerts the webhook accepted: a refused
post ends the tick with the reason and is posted again on the next tick, and no failed run
is ever posted twice, across ticks and daemon restarts. Like Dagster's, it starts at the
newest failure when first turned on (it does not page for last month's failures).
Without `TRAINFLOW_ALERT_WEBHOOK_URL` it advances past failures and says alerts are off.

A candidate the promotion gate rejects leaves the old champion in place and the run green:
`alert_on_gate_rejection` pages for it the same way, once per rejected model version, with
the gate's reasons.
"""

from __future__ import annotations

import json
from functools import partial

import dagster as dg

from trainflow.alerts import (
    Alert,
    Delivery,
    deliver_in_order,
    gate_rejected_alert,
    run_failed_alert,
)
from trainflow.as_of import AS_OF_TAG
from trainflow.defs.observability import run_partitions
from trainflow.settings import ALERT_WEBHOOK_URL_VAR, Settings

RUN_FAILURES_PER_TICK = 50
REGISTRY_ENTRY = dg.AssetKey("registry_entry")


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


def _posting_result(
    delivery: Delivery, events: int, what: str, url: str | None, cursor: str
) -> dg.SensorResult:
    """The tick's result: what was posted, refused (posted again next tick) or passed over."""
    if delivery.refused:
        return dg.SensorResult(
            cursor=cursor,
            skip_reason=f"posted {len(delivery.posted)}; {delivery.refused}: posted again next tick",
        )
    if not events:
        return dg.SensorResult(cursor=cursor, skip_reason=f"no {what} since last tick")
    if not url:
        return dg.SensorResult(
            cursor=cursor,
            skip_reason=f"{events} {what}(s); alerts are off ({ALERT_WEBHOOK_URL_VAR} unset)",
        )
    return dg.SensorResult(
        cursor=cursor, skip_reason=f"posted {', '.join(delivery.posted) or 'nothing new'}"
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
    failures = instance.fetch_run_status_changes(
        dg.RunStatusChangeRecordsFilter(
            event_type=dg.DagsterEventType.RUN_FAILURE, after_storage_id=int(context.cursor)
        ),
        limit=RUN_FAILURES_PER_TICK,
        ascending=True,
    ).records
    settings = Settings.from_env()  # read at each tick: the daemon's environment
    delivery = deliver_in_order(
        settings.alert_webhook_url,
        (
            (
                record.storage_id,
                partial(
                    failed_run_alert,
                    instance,
                    record.event_log_entry.run_id,
                    record.event_log_entry.message,
                    settings.dagster_url,
                ),
            )
            for record in failures
        ),
        int(context.cursor),
    )
    return _posting_result(
        delivery, len(failures), "failed run", settings.alert_webhook_url, str(delivery.position)
    )


# Keys of the newest rejections posted, kept in the cursor: a re-executed registration
# that finds its version again reports the same rejection, which is not a second page.
POSTED_KEYS_KEPT = 200


def materializations_after(
    context: dg.SensorEvaluationContext, key: dg.AssetKey, limit: int
) -> tuple[dict, list[dg.EventLogRecord]] | dg.SensorResult:
    """The cursor (`after`: a storage id, `posted`: alert keys) and the materializations of
    `key` after it; on the first tick, the cursor at the newest one (no page for old ones)."""
    if context.cursor is None:
        newest = context.instance.fetch_materializations(key, limit=1).records
        start = newest[0].storage_id if newest else -1
        return dg.SensorResult(
            cursor=json.dumps({"after": start, "posted": []}),
            skip_reason=f"started after {key.to_user_string()} record {start}",
        )
    cursor = json.loads(context.cursor)
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, after_storage_id=cursor["after"]),
        limit=limit,
        ascending=True,
    ).records
    return cursor, list(records)


def rejection_alert(
    record: dg.EventLogRecord, instance: dg.DagsterInstance, base: str | None
) -> Alert | None:
    """The alert for a registry_entry materialization whose verdict is `rejected`, else
    None (a promotion, a challenger, or a cache hit, which decides nothing new)."""
    materialization = record.asset_materialization
    metadata = {
        k: v.value for k, v in (materialization.metadata if materialization else {}).items()
    }
    if metadata.get("verdict") != "rejected":
        return None
    run = instance.get_run_by_id(record.run_id)
    return gate_rejected_alert(
        model_name=str(metadata["registered_model"]),
        version=int(str(metadata["version"])),
        decision=str(metadata["decision"]),
        run_id=record.run_id,
        as_of=run.tags.get(AS_OF_TAG) if run else None,
        link=f"{base.rstrip('/')}/runs/{record.run_id}" if base else None,
    )


@dg.sensor(
    name="alert_on_gate_rejection",
    description="Posts each candidate the promotion gate rejected once to the webhook in "
    "TRAINFLOW_ALERT_WEBHOOK_URL, with the gate's reasons; a refused post is posted again on "
    "the next tick.",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def alert_on_gate_rejection(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Reads registry_entry's materializations after its cursor (the verdict is in their
    metadata); like the run-failure sensor it moves only past alerts the webhook accepted."""
    read = materializations_after(context, REGISTRY_ENTRY, RUN_FAILURES_PER_TICK)
    if isinstance(read, dg.SensorResult):
        return read
    cursor, records = read
    instance = context.instance
    settings = Settings.from_env()
    delivery = deliver_in_order(
        settings.alert_webhook_url,
        (
            (r.storage_id, partial(rejection_alert, r, instance, settings.dagster_url))
            for r in records
        ),
        cursor["after"],
        already_posted=set(cursor["posted"]).__contains__,
    )
    posted = [*cursor["posted"], *delivery.posted][-POSTED_KEYS_KEPT:]
    new_cursor = json.dumps({"after": delivery.position, "posted": posted})
    return _posting_result(
        delivery, len(records), "registration", settings.alert_webhook_url, new_cursor
    )
