"""Runs nobody launches by hand: a sensor on the warehouse's days, and a weekly retrain.

With a rolling config (docs/continuous-training.md) the sensor also retrains when new days
land, pinned at the newest of them; the weekly schedule then finds nothing new (a cache hit)
unless the sensor was off. With a dated config only the schedule retrains.

Why a sensor and not declarative automation (observable source assets plus automation
conditions): "which days changed" is one warehouse query whose answer is a set of days,
and what to run for it is a range per contiguous stretch (a restated day also recomputes
the feature days whose look-back holds it). A sensor says that in one function, shows each
tick's decision and cursor on its own page in the UI, and launches single runs over ranges
(the assets' single-run backfill policy). Automation conditions would need an observation
per partition (365 events per look) and decide per partition, not per range.

Both kinds of run carry the tag `trainflow/automation`; the run queue (dagster.yaml) runs
one such run at a time, so a retrain never reads features that a sensor run is rewriting,
and two sensor runs never write the same partitions at once. Registration is serialized
for every run by the `model_registry` pool. docs/automation.md explains it for operators.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import dagster as dg

from trainflow.as_of import AS_OF_TAG
from trainflow.config import ExperimentConfig
from trainflow.defs.evaluation import evaluation_report, registry_entry
from trainflow.defs.features import flight_features
from trainflow.defs.ingest import raw_snapshot, validated_flights
from trainflow.defs.partitions import add_experiment, experiments
from trainflow.defs.predictions import champion_live_performance, flight_delay_predictions
from trainflow.defs.resources import ExperimentConfigResource, WarehouseResource
from trainflow.defs.training import model, training_dataset
from trainflow.defs.warehouse import warehouse_models
from trainflow.features.flights import LOOKBACK_DAYS
from trainflow.settings import Settings
from trainflow.warehouse import landing
from trainflow.warehouse.base import WarehouseUnavailableError
from trainflow.warehouse.changes import (
    ChangeSet,
    Fingerprints,
    affected_windows,
    compare,
    day_fingerprints,
    dump_fingerprints,
    load_fingerprints,
)

AUTOMATION_TAG = "trainflow/automation"
# What a changed day needs: its snapshot, its validation (checks and quarantine included)
# the features of it and of the days whose windows hold it, their predictions, and the
# champion's live performance on them.
DAILY_ASSETS = [
    raw_snapshot.key,
    validated_flights.key,
    flight_features.key,
    flight_delay_predictions.key,
    champion_live_performance.key,
]
RETRAIN_ASSETS = [training_dataset.key, model.key, evaluation_report.key, registry_entry.key]
# dbt's data tests (asset checks of the dbt models) on the changed days: a run of the
# checks alone, queued behind the daily run (one automation run at a time), so a new day's
# features never wait for a dbt process. The views need no rebuild for new rows.
DBT_DATA_TESTS = sorted(warehouse_models.check_keys, key=lambda k: k.to_user_string())
DBT_TESTS_TAG = "trainflow/dbt_data_tests"


# A run over at most this many days runs its steps in one process where the executor
# allows it (not on Kubernetes): a new day's three steps take about a second, less than
# starting a forkserver and its processes; a longer catch-up keeps a process per step.
IN_PROCESS_MAX_DAYS = 7
IN_PROCESS: dict[str, Any] = {"execution": {"config": {"in_process": {}}}}


def changed_day_requests(
    changes: ChangeSet, now: Fingerprints, small_runs_in_process: bool = False
) -> list[dg.RunRequest]:
    """Per contiguous range of affected landed days, two runs keyed by the fingerprints of
    the changed days in it (the same change never yields them twice, a later restatement
    of the same days does): the daily assets over the range, then dbt's data tests on the
    changed days of the range only."""
    requests = []
    for window in affected_windows(changes.changed, now, LOOKBACK_DAYS):
        changed = {
            str(d): [now[d].rows, now[d].checksum] for d in window.days() if d in changes.changed
        }
        digest = hashlib.sha256(repr(sorted(changed.items())).encode()).hexdigest()[:16]
        run_config = (
            IN_PROCESS if small_runs_in_process and window.n_days <= IN_PROCESS_MAX_DAYS else {}
        )
        tags = {
            AUTOMATION_TAG: "warehouse_days",
            "trainflow/changed_days": ",".join(changed)[:1000],
        }
        requests.append(
            dg.RunRequest(
                run_key=f"{window.first}...{window.last}@{digest}",
                asset_selection=DAILY_ASSETS,
                run_config=run_config,
                tags={**range_tags(window.first, window.last), **tags},
            )
        )
        # The tests read the changed days' rows (a restatement pulls in later feature days,
        # whose warehouse rows did not change and were tested when they landed).
        first, last = min(changed), max(changed)
        requests.append(
            dg.RunRequest(
                run_key=f"dbt-tests:{first}...{last}@{digest}",
                asset_selection=[],
                asset_check_keys=DBT_DATA_TESTS,
                run_config=run_config,
                tags={**range_tags(first, last), **tags, DBT_TESTS_TAG: f"{first}...{last}"},
            )
        )
    return requests


def windows_span(config: ExperimentConfig, as_of: dt.date) -> list[dt.date]:
    """Every day a rolling config's windows at `as_of` span, train start to as-of."""
    start = config.at(as_of).dated_windows.train.start
    return [start + dt.timedelta(days=i) for i in range((as_of - start).days + 1)]


def windows_gap(config: ExperimentConfig, landed: set[dt.date], as_of: dt.date) -> str | None:
    """Why a rolling config cannot train at `as_of` yet (its windows reach days not landed),
    or None when every day they span is landed."""
    span = windows_span(config, as_of)
    start = span[0]
    missing = [day for day in span if day not in landed]
    if not missing:
        return None
    return (
        f"no retrain at as-of {as_of}: its windows start {start} and {len(missing)} of "
        f"their days are not landed (first {missing[0]})"
    )


def own_experiment(instance: dg.DagsterInstance, config: ExperimentConfig) -> str:
    """The code location's own experiment (TRAINFLOW_CONFIG) as an `experiments` partition
    key, added to the instance if it is new: what the automation retrains. Added here, not
    by a sensor's partition request, because a schedule cannot make one."""
    return add_experiment(instance, config.name)


def retrain_request(
    config: ExperimentConfig, changes: ChangeSet, now: Fingerprints
) -> tuple[dg.RunRequest | None, str]:
    """With a rolling config, the retrain run that new or restated days call for: the
    retrain job's assets pinned at the newest landed day (the `trainflow/as_of` tag), queued
    behind the daily runs that write its features. Keyed by the fingerprints of every day its
    windows span, so the same data never retrains twice and a restated day inside them does.
    None, with the reason, for a dated config (its windows never see a new day), no change
    inside the windows, or windows reaching before the first landed day."""
    if not config.is_rolling:
        return None, "dated windows: no retrain on new days"
    if not changes.changed:
        return None, "no new or restated day"
    as_of = max(now)
    gap = windows_gap(config, set(now), as_of)
    if gap:
        return None, gap
    span = windows_span(config, as_of)
    if not set(changes.changed) & set(span):
        return None, f"no changed day inside the windows ending {as_of}"
    spanned = [(str(day), now[day].rows, now[day].checksum) for day in span]
    digest = hashlib.sha256(repr(spanned).encode()).hexdigest()[:16]
    request = dg.RunRequest(
        run_key=f"retrain@{as_of}:{digest}",
        asset_selection=RETRAIN_ASSETS,
        partition_key=config.name,
        tags={AUTOMATION_TAG: "warehouse_days", AS_OF_TAG: str(as_of)},
    )
    return request, f"retrain at as-of {as_of}"


def range_tags(first: dt.date | str, last: dt.date | str) -> dict[str, str]:
    """Dagster's tags of a run over a range of days; the dbt step reads its days from them."""
    return {
        "dagster/asset_partition_range_start": str(first),
        "dagster/asset_partition_range_end": str(last),
    }


@dg.sensor(
    name="warehouse_days",
    asset_selection=dg.AssetSelection.assets(*DAILY_ASSETS, *RETRAIN_ASSETS)
    | dg.AssetSelection.checks(*DBT_DATA_TESTS),
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def warehouse_days_sensor(
    context: dg.SensorEvaluationContext,
    warehouse: WarehouseResource,
    experiment: ExperimentConfigResource,
) -> dg.SensorResult | dg.SkipReason:
    """Snapshots, validates and featurizes every newly landed or restated day of raw.flights,
    then runs dbt's data tests on those days; with a rolling config, then retrains at the
    newest landed day (`retrain_request`).

    Each tick fingerprints every landed day (rows and a checksum, computed in the
    warehouse) and compares them with the cursor, the fingerprints of the previous tick.
    """
    seen = load_fingerprints(context.cursor)
    try:
        now = day_fingerprints(warehouse.connect())
    except WarehouseUnavailableError as exc:
        # The cursor stays: the next tick sees the same change (a DuckDB file is locked
        # while `trainflow land` writes it; a database may be restarting).
        return dg.SkipReason(f"warehouse not readable now, will look again: {exc}")
    changes = compare(seen, now)
    local = Settings.from_env().executor != "k8s"  # the executor definitions.py chose
    requests = changed_day_requests(changes, now, small_runs_in_process=local)
    retrain, retrain_says = retrain_request(experiment.load(), changes, now)
    if retrain:
        own_experiment(context.instance, experiment.load())
        requests.append(retrain)
    context.log.info(
        f"warehouse_days: {changes.describe()}; {retrain_says}; {len(requests)} run(s): "
        + ", ".join(str(r.run_key) for r in requests)
    )
    return dg.SensorResult(
        run_requests=requests,
        cursor=dump_fingerprints(now),
        skip_reason=None if requests else f"no new or restated day ({len(now)} landed)",
    )


retrain_job = dg.define_asset_job(
    "retrain",
    selection=RETRAIN_ASSETS,
    partitions_def=experiments,
    description="Dataset, model, evaluation and registration from the features in the lake.",
    tags={AUTOMATION_TAG: "weekly_retrain"},
)


@dg.schedule(
    name="weekly_retrain",
    job=retrain_job,
    # Mondays 03:00 UTC. The configured windows decide what is trained on, not the date
    # the schedule fires; an unchanged dataset is a cache hit end to end.
    cron_schedule="0 3 * * 1",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
def weekly_retrain(
    context: dg.ScheduleEvaluationContext,
    experiment: ExperimentConfigResource,
    warehouse: WarehouseResource,
) -> dg.RunRequest | dg.SkipReason:
    """The retrain job for the code location's own experiment, unless a rolling config's
    windows still reach before the first landed day (a run that could only fail, and
    page, every week until they fit)."""
    config = experiment.load()
    if config.is_rolling:
        landed = landing.landed_days(warehouse.connect())
        gap = windows_gap(config, set(landed), max(landed)) if landed else "nothing landed"
        if gap:
            return dg.SkipReason(gap)
    return dg.RunRequest(partition_key=own_experiment(context.instance, config))
