"""The champion's live watch: a day whose live ROC AUC fell too far below the evaluation's
(`champion_live_performance`, breached) pages once per model version and requests a
retrain, the run the `warehouse_days` sensor requests for new days.

Like the alert sensors (defs/alerts.py) it reads materializations after its cursor and moves
only past alerts the webhook accepted; the retrain's run key is the version and the day, so
a tick seen twice never launches twice. Without a webhook it still requests the retrain.
"""

from __future__ import annotations

import json
from functools import partial

import dagster as dg

from trainflow.alerts import Alert, deliver_in_order, live_performance_alert
from trainflow.defs.alerts import materializations_after
from trainflow.defs.automation import AUTOMATION_TAG, RETRAIN_ASSETS, own_experiment
from trainflow.defs.predictions import champion_live_performance
from trainflow.defs.resources import ExperimentConfigResource
from trainflow.settings import Settings

EVENTS_PER_TICK = 200
POSTED_KEYS_KEPT = 200
LIVE = champion_live_performance.key
# On a retrain the watch requested: the breached day that called for it.
LIVE_BREACH_TAG = "trainflow/live_breach_day"


def breach_of(record: dg.EventLogRecord) -> dict[str, str] | None:
    """(model, version, day, reason) of a breached day's materialization, else None."""
    materialization = record.asset_materialization
    if materialization is None or materialization.partition is None:
        return None
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    if metadata.get("breached") is not True:
        return None
    model, _, version = str(metadata["model"]).rpartition(" v")
    return {"model": model, "version": version, "day": materialization.partition,
            "reason": str(metadata["reason"])}  # fmt: skip


def breach_alert(breach: dict[str, str] | None) -> Alert | None:
    if breach is None:
        return None
    return live_performance_alert(
        breach["model"], int(breach["version"]), breach["day"], breach["reason"]
    )


def retrain_for(breach: dict[str, str], experiment: str) -> dg.RunRequest:
    """The retrain a breach calls for, once per version as the alert: at the newest feature
    day (no as-of tag; an older day would train on staler data than the champion's next
    retrain). A cache hit when the new-day sensor has already trained there."""
    return dg.RunRequest(
        run_key=f"live-retrain:{breach['model']}:v{breach['version']}",
        asset_selection=RETRAIN_ASSETS,
        partition_key=experiment,
        tags={AUTOMATION_TAG: "champion_live_watch", LIVE_BREACH_TAG: breach["day"]},
    )


@dg.sensor(
    name="champion_live_watch",
    asset_selection=dg.AssetSelection.assets(*RETRAIN_ASSETS),
    description="Pages once per champion version whose trailing live ROC AUC fell more than "
    "monitoring.max_auc_drop below its evaluation, and requests a retrain at the breached day.",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def champion_live_watch(
    context: dg.SensorEvaluationContext, experiment: ExperimentConfigResource
) -> dg.SensorResult:
    read = materializations_after(context, LIVE, EVENTS_PER_TICK)  # no page for old days
    if isinstance(read, dg.SensorResult):
        return read
    cursor, records = read
    settings = Settings.from_env()
    delivery = deliver_in_order(
        settings.alert_webhook_url,
        ((r.storage_id, partial(breach_alert, breach_of(r))) for r in records),
        cursor["after"],
        already_posted=set(cursor["posted"]).__contains__,
    )
    judged = [r for r in records if r.storage_id <= delivery.position]
    breaches = [b for b in map(breach_of, judged) if b is not None]
    # One retrain per version (its run key): the first breached day of each.
    first = {(b["model"], b["version"]): b for b in reversed(breaches)}
    posted = [*cursor["posted"], *delivery.posted][-POSTED_KEYS_KEPT:]
    said = f"{len(records)} day(s) read, {len(breaches)} breached"
    if delivery.refused:
        said += f"; {delivery.refused}: posted again next tick"
    own = own_experiment(context.instance, experiment.load()) if first else ""
    return dg.SensorResult(
        run_requests=[retrain_for(b, own) for b in first.values()],
        cursor=json.dumps({"after": delivery.position, "posted": posted}),
        skip_reason=None if first else said,
    )
