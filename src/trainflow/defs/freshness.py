"""Freshness, two ways, and an alert when it breaks.

- Against landed data (every profile; the only meaningful one for the 2013 demo, whose data
  no clock can age): two asset checks, `flight_features:fresh_against_landed_days` (the
  features cover the newest landed day, at most FEATURES_MAX_LAG landed days behind) and
  `registry_entry:champion_fresh_against_landed_days` (the champion was tested on data at
  most CHAMPION_MAX_LAG landed days older than the newest landed day). The
  `landed_data_freshness` sensor evaluates both every minute and records a result whenever
  one changes, so the UI always shows the current verdict; each can also be executed by hand.
- By wall clock (the `prod` profile, on live data): Dagster's freshness policies on the daily
  assets and the model, evaluated by the daemon, shown as asset health in the UI.

A breach of either posts one alert (docs/runbook.md, "Alert: freshness breach") when the
verdict turns to failing, not again while it stays failing; a refused post is retried on
the next tick.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import dagster as dg

from trainflow.alerts import RUNBOOK_ENTRIES, Alert, AlertDeliveryError, post
from trainflow.defs.evaluation import registry_entry
from trainflow.defs.features import flight_features
from trainflow.defs.ingest import raw_snapshot, validated_flights
from trainflow.defs.pods import step_tags
from trainflow.defs.resources import (
    ExperimentConfigResource,
    LakeResource,
    MlflowResource,
    WarehouseResource,
)
from trainflow.defs.training import model
from trainflow.freshness import Freshness
from trainflow.settings import Settings
from trainflow.warehouse import landing
from trainflow.warehouse.base import WarehouseUnavailableError

FEATURES_CHECK = "fresh_against_landed_days"
CHAMPION_CHECK = "champion_fresh_against_landed_days"
# A new day is featurized within a sensor tick of landing; one landed day of slack.
FEATURES_MAX_LAG = 1
# The weekly retrain, plus a week of slack.
CHAMPION_MAX_LAG = 14
# Wall-clock policies (prod): a daily asset at most a day and two hours old, the model at
# most a week and a day (the weekly retrain).
DAILY_POLICY = dg.FreshnessPolicy.time_window(
    fail_window=dt.timedelta(hours=26), warn_window=dt.timedelta(hours=25)
)
MODEL_POLICY = dg.FreshnessPolicy.time_window(
    fail_window=dt.timedelta(days=8), warn_window=dt.timedelta(days=7, hours=12)
)
WALL_CLOCK_POLICIES = {
    raw_snapshot.key: DAILY_POLICY,
    validated_flights.key: DAILY_POLICY,
    flight_features.key: DAILY_POLICY,
    model.key: MODEL_POLICY,
    registry_entry.key: MODEL_POLICY,
}


def features_freshness(warehouse: WarehouseResource, lake: LakeResource) -> Freshness:
    landed = landing.landed_days(warehouse.url)
    covered = lake.lake().day_keys("flight_features")
    return Freshness("flight_features", landed, max(covered, default=None), FEATURES_MAX_LAG)


def champion_freshness(
    warehouse: WarehouseResource,
    lake: LakeResource,
    experiment: ExperimentConfigResource,
    mlflow_tracking: MlflowResource,
) -> Freshness:
    """The champion's newest test day (from its manifest) against the landed days."""
    # Imported here: MLflow is left out of the code location's load (definitions.STEP_MODULES).
    from trainflow.registry.versions import current_champion
    from trainflow.reproduce import manifest_of_run

    name = experiment.load().registered_model_name
    client = mlflow_tracking.client()
    version = current_champion(client, name)
    newest = None
    if version is not None:
        run_id = str(client.get_model_version(name, version).run_id)
        manifest = manifest_of_run(client, lake.object_store("_manifests"), run_id)
        newest = dt.date.fromisoformat(manifest["config"]["windows"]["test"]["end"])
    what = f"the champion ({name} v{version})" if version else f"the champion of {name} (none)"
    return Freshness(what, landing.landed_days(warehouse.url), newest, CHAMPION_MAX_LAG)


def _result(freshness: Freshness) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=freshness.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=freshness.describe(),
        metadata=freshness.metadata(),
    )


@dg.asset_check(
    asset=flight_features,
    name=FEATURES_CHECK,
    op_tags=step_tags(f"flight_features_{FEATURES_CHECK}", stage="freshness"),
    description=f"The features cover the newest landed day (at most {FEATURES_MAX_LAG} landed "
    "day behind); evaluated every minute by the landed_data_freshness sensor.",
)
def features_fresh(warehouse: WarehouseResource, lake: LakeResource) -> dg.AssetCheckResult:
    return _result(features_freshness(warehouse, lake))


@dg.asset_check(
    asset=registry_entry,
    name=CHAMPION_CHECK,
    op_tags=step_tags(f"registry_entry_{CHAMPION_CHECK}", stage="freshness"),
    description=f"The champion was tested on data at most {CHAMPION_MAX_LAG} landed days older "
    "than the newest landed day; evaluated every minute by the landed_data_freshness sensor.",
)
def champion_fresh(
    warehouse: WarehouseResource,
    lake: LakeResource,
    experiment: ExperimentConfigResource,
    mlflow_tracking: MlflowResource,
) -> dg.AssetCheckResult:
    return _result(champion_freshness(warehouse, lake, experiment, mlflow_tracking))


def breach_alert(asset: str, check: str, freshness: Freshness) -> Alert:
    return Alert(
        key=f"freshness:{asset}:{check}:{freshness.landed[-1] if freshness.landed else '-'}",
        title=f"trainflow freshness breach ({asset})",
        asset=asset,
        partition=str(freshness.landed[-1]) if freshness.landed else None,
        error=freshness.describe(),
        runbook_entry=RUNBOOK_ENTRIES["freshness"],
    )


@dg.sensor(
    name="landed_data_freshness",
    description="Every minute: the features and the champion against the newest landed day "
    "(asset checks), and Dagster's wall-clock freshness (prod); posts one alert per breach.",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def landed_data_freshness(
    context: dg.SensorEvaluationContext,
    warehouse: WarehouseResource,
    lake: LakeResource,
    experiment: ExperimentConfigResource,
    mlflow_tracking: MlflowResource,
) -> dg.SensorResult:
    # cursor: check -> the verdict last recorded ({"passed", metadata}) and whether its
    # breach was alerted
    cursor: dict[str, Any] = json.loads(context.cursor) if context.cursor else {}
    url = Settings.from_env().alert_webhook_url
    try:
        verdicts = [
            (flight_features.key, FEATURES_CHECK, features_freshness(warehouse, lake)),
            (
                registry_entry.key,
                CHAMPION_CHECK,
                champion_freshness(warehouse, lake, experiment, mlflow_tracking),
            ),
        ]
    except WarehouseUnavailableError as exc:  # a writer holds it (landing, dbt): next tick
        return dg.SensorResult(cursor=context.cursor, skip_reason=f"{exc}; next tick")
    events, said = _checked_and_alerted(context, cursor, verdicts, url)
    said += _wall_clock_breaches(context, cursor, url)
    return dg.SensorResult(
        cursor=json.dumps(cursor, sort_keys=True, default=str),
        asset_events=events,
        skip_reason="; ".join(said),
    )


def _checked_and_alerted(
    context: dg.SensorEvaluationContext,
    cursor: dict[str, Any],
    verdicts: list[tuple[dg.AssetKey, str, Freshness]],
    url: str | None,
) -> tuple[list[dg.AssetCheckEvaluation], list[str]]:
    """A check evaluation for each verdict that changed since the cursor, and one alert per
    breach (posted again next tick if delivery failed); the cursor is updated in place."""
    events: list[dg.AssetCheckEvaluation] = []
    said: list[str] = []
    for key, check, freshness in verdicts:
        name = f"{key.to_user_string()}:{check}"
        seen = {"passed": freshness.passed, **freshness.metadata()}
        before = cursor.get(name, {})
        if before.get("seen") != seen:
            events.append(
                dg.AssetCheckEvaluation(
                    asset_key=key,
                    check_name=check,
                    passed=freshness.passed,
                    severity=dg.AssetCheckSeverity.ERROR,
                    description=freshness.describe(),
                    metadata=freshness.metadata(),
                )
            )
        alerted = bool(before.get("alerted")) and not freshness.passed
        if not freshness.passed and not alerted and url:
            alert = breach_alert(key.to_user_string(), check, freshness)
            try:
                post(url, alert)
                alerted = True
                said.append(f"alerted {alert.key}")
            except AlertDeliveryError as exc:
                context.log.error(str(exc))
                said.append(f"{exc}: posted again next tick")
        cursor[name] = {"seen": seen, "alerted": alerted}
        said.append(freshness.describe())
    return events, said


def _wall_clock_breaches(
    context: dg.SensorEvaluationContext, cursor: dict[str, Any], url: str | None
) -> list[str]:
    """One alert per asset whose Dagster freshness state turned to FAIL (prod's policies)."""
    records = context.instance.get_freshness_state_records(list(WALL_CLOCK_POLICIES))
    said = []
    for key, record in records.items():
        name = f"{key.to_user_string()}:wall_clock"
        failing = record.freshness_state.value == "FAIL"
        alerted = bool(cursor.get(name)) and failing
        if failing and not alerted and url:
            alert = Alert(
                key=f"freshness:{key.to_user_string()}:wall_clock:{record.updated_at.isoformat()}",
                title=f"trainflow freshness breach ({key.to_user_string()})",
                asset=key.to_user_string(),
                partition=None,
                error=f"Dagster's freshness policy failed at {record.updated_at.isoformat()}",
                runbook_entry=RUNBOOK_ENTRIES["freshness"],
            )
            try:
                post(url, alert)
                alerted = True
                said.append(f"alerted {alert.key}")
            except AlertDeliveryError as exc:
                said.append(f"{exc}: posted again next tick")
        cursor[name] = alerted
    return said
