"""A replay of 2013 in production (`trainflow replay`, docs/continuous-training.md).

From a warehouse landed up to the start day, week by week: land the next days, then run
exactly what the daemon would: the `warehouse_days` sensor's tick (its own function, its
cursor carried), the `champion_live_watch` sensor's tick, and the `weekly_retrain`
schedule's tick at the week's Monday, each request launched once per run key (as the daemon
dedupes them), in this process and in the order requested (the run queue runs one
automation run at a time, so this is the order they would run in). What each run did is
read from its events and the lake, and written as a timeline (`trainflow.replay_report`).

Why not the daemon itself: a daemon ticks on the wall clock; the replay drives the same
functions on the replay's own calendar, which makes two replays identical.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from trainflow.as_of import AS_OF_TAG
from trainflow.config import load_config
from trainflow.definitions import ALL_ASSETS, ALL_CHECKS, build_definitions, build_resources
from trainflow.defs.automation import (
    RETRAIN_ASSETS,
    range_tags,
    retrain_job,
    warehouse_days_sensor,
    weekly_retrain,
)
from trainflow.defs.monitoring import LIVE_BREACH_TAG, champion_live_watch
from trainflow.defs.warehouse import warehouse_models
from trainflow.lake.delta_lake import DayWindow, DeltaLake
from trainflow.replay_report import Candidate, LiveDay, Week
from trainflow.settings import Settings
from trainflow.warehouse import landing


class ReplayError(RuntimeError):
    """The replay cannot start from this warehouse (days after its start already landed)."""


def candidate_of(result: dg.ExecuteInProcessResult, run_tags: dict[str, str]) -> Candidate | None:
    """The candidate a retrain run registered (None for a cache hit, which registers nothing)."""
    entries = [
        m
        for m in result.asset_materializations_for_node("registry_entry")
        if "verdict" in m.metadata
    ]
    if not entries:
        return None
    entry = entries[0].metadata
    reports = result.asset_materializations_for_node("evaluation_report")
    report = reports[0].metadata if reports else {}
    drift = report.get("drift")
    records = drift.records if isinstance(drift, dg.TableMetadataValue) else []
    worst = max(records, key=lambda r: float(str(r.data["psi"])), default=None)
    test_auc = report.get("test_roc_auc")
    return Candidate(
        version=int(str(entry["version"].value)),
        as_of=run_tags.get(AS_OF_TAG),
        verdict=str(entry["verdict"].value),
        decision=str(entry["decision"].value),
        test_roc_auc=float(str(test_auc.value)) if test_auc is not None else None,
        max_psi=float(str(worst.data["psi"])) if worst else None,
        max_psi_feature=str(worst.data["feature"]) if worst else None,
    )


def first_error(result: dg.ExecuteInProcessResult) -> str:
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        return f"{event.step_key}: {error.message.strip()[:200] if error else 'failed'}"
    return "run failed"


@dataclass
class Replay:
    """The replay's state: the instance and what each sensor's cursor says, between weeks."""

    settings: Settings
    instance: dg.DagsterInstance
    launched: set[str] = field(default_factory=set)
    sensor_cursor: str | None = None
    live_cursor: str | None = None
    weeks: list[Week] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.resources = build_resources(self.settings)
        self.definitions = build_definitions(self.settings)
        self.lake = DeltaLake(self.settings.lake_uri, self.settings.storage_options)

    def launch(self, request: dg.RunRequest, kind: str, week: Week) -> None:
        """One requested run, once per run key, in this process."""
        if request.run_key is not None:
            if request.run_key in self.launched:
                return
            self.launched.add(request.run_key)
        if request.asset_selection is not None and len(request.asset_selection) > 0:
            selection: Any = dg.AssetSelection.assets(*request.asset_selection)
            tags = dict(request.tags)
        elif request.asset_check_keys:
            selection = dg.AssetSelection.checks(*request.asset_check_keys)
            tags = dict(request.tags)
        else:  # the schedule's request: its job
            selection = RETRAIN_ASSETS
            tags = {**(retrain_job.tags or {}), **request.tags}
        result = dg.materialize(
            [*ALL_ASSETS, *ALL_CHECKS],
            selection=selection,
            partition_key=request.partition_key,  # the experiment a retrain is for
            tags=tags,
            resources=self.resources,
            instance=self.instance,
            raise_on_error=False,
        )
        run = self.instance.get_run_by_id(result.run_id)
        run_tags = dict(run.tags) if run else tags
        week.runs.append(
            f"{kind} {request.run_key or 'scheduled'}: " + ("ok" if result.success else "FAILED")
        )
        if not result.success:
            week.alerts.append(f"run failed ({kind}): {first_error(result)}")
        candidate = candidate_of(result, run_tags)
        seen = {c.version for w in [*self.weeks, week] for c in w.candidates}
        # A retrain that finds its version registered already (the same model again) is
        # no new candidate.
        if candidate is not None and candidate.version not in seen:
            week.candidates.append(candidate)
            if candidate.verdict == "rejected":
                week.alerts.append(f"gate rejected v{candidate.version}")

    def tick_sensors(self, week: Week, scheduled: dt.datetime) -> None:
        # A retrain request names an experiment partition, which Dagster checks against
        # the instance's dynamic partitions (the daemon sets this context itself).
        with dg.partition_loading_context(dynamic_partitions_store=self.instance):
            self._tick(week, scheduled)

    def _tick(self, week: Week, scheduled: dt.datetime) -> None:
        # Each context in a `with`, as Dagster asks: a context may open an instance of its
        # own (the schedule's does, from the instance's ref), closed here rather than when
        # garbage collected, which, out of order, leaves a closed instance current.
        resources = {"warehouse": self.resources["warehouse"],
                     "experiment": self.resources["experiment"]}  # fmt: skip
        with dg.build_sensor_context(
            instance=self.instance, cursor=self.sensor_cursor, resources=resources,
            definitions=self.definitions,
        ) as context:  # fmt: skip
            days = warehouse_days_sensor.evaluate_tick(context)
        self.sensor_cursor = days.cursor
        for request in days.run_requests or []:
            self.launch(request, "warehouse_days", week)
        with dg.build_sensor_context(
            instance=self.instance, cursor=self.live_cursor, definitions=self.definitions,
            resources={"experiment": self.resources["experiment"]},
        ) as context:  # fmt: skip
            live = champion_live_watch.evaluate_tick(context)
        self.live_cursor = live.cursor
        for request in live.run_requests or []:
            if request.run_key not in self.launched:  # one page per version, as posted
                breach = request.tags[LIVE_BREACH_TAG]
                week.alerts.append(f"live: {str(request.run_key).split(':')[-1]} on {breach}")
            self.launch(request, "champion_live_watch", week)
        with dg.build_schedule_context(
            instance=self.instance, scheduled_execution_time=scheduled, resources=resources,
            repository_def=self.definitions.get_repository_def(),
        ) as context:  # fmt: skip
            schedule = weekly_retrain.evaluate_tick(context)
        for request in schedule.run_requests or []:
            self.launch(request, "weekly_retrain", week)

    def close_week(self, week: Week) -> None:
        from trainflow.registry.versions import current_champion

        client = self.resources["mlflow_tracking"].client()  # type: ignore[attr-defined]
        name = load_config(self.settings.config_path).registered_model_name
        champion = current_champion(client, name)
        week.champion = int(champion) if champion else None
        if self.lake.version("champion_live_performance") is None:
            return
        rows = self.lake.scan(
            "champion_live_performance", DayWindow(week.first, week.last)
        ).collect()
        for row in rows.sort("day").iter_rows(named=True):
            week.live.append(
                LiveDay(
                    day=row["day"],
                    model_version=row["model_version"],
                    day_roc_auc=row["day_roc_auc"],
                    trailing_roc_auc=row["trailing_roc_auc"],
                    evaluation_roc_auc=row["evaluation_roc_auc"],
                    breached=bool(row["breached"]),
                )
            )


def monday_of(first: dt.date, last: dt.date) -> dt.datetime:
    """When the weekly schedule fires inside a week of landed days (Monday 03:00 UTC; the
    week's last day if no Monday falls in it, as for a short final week)."""
    day = next((first + dt.timedelta(days=n) for n in range((last - first).days + 1)
                if (first + dt.timedelta(days=n)).weekday() == 0), last)  # fmt: skip
    return dt.datetime(day.year, day.month, day.day, 3, tzinfo=dt.UTC)


def replay(
    settings: Settings,
    start: dt.date,
    every: int,
    through: dt.date,
    instance: dg.DagsterInstance,
    on_week: Callable[[Week], None] = lambda week: None,
) -> list[Week]:
    """Land the days before `start` if needed, then `every` days at a time through `through`,
    running what the sensors and the schedule request after each landing."""
    warehouse = settings.warehouse_url
    landed = landing.landed_days(warehouse)
    late = [d for d in landed if d >= start]
    if late:
        raise ReplayError(
            f"the warehouse already holds {len(late)} day(s) from {late[0]} on: a replay starts "
            f"from a warehouse landed up to {start - dt.timedelta(days=1)} (use a fresh "
            "TRAINFLOW_HOME)"
        )
    state = Replay(settings, instance)
    before = landing.plan_days(landed, through=start - dt.timedelta(days=1))
    if before:
        landing.land(warehouse, before)
    landed = landing.landed_days(warehouse)
    # The warehouse's views, once (the daemon's deployment runs `dbt build` when it starts).
    dg.materialize(
        [*ALL_ASSETS, *ALL_CHECKS],
        selection=dg.AssetSelection.assets(warehouse_models),
        tags=range_tags(landed[0], landed[-1]),
        resources=state.resources,
        instance=instance,
    )
    first_week = Week(first=landed[0], last=landed[-1])
    state.tick_sensors(first_week, monday_of(landed[-1], landed[-1]))
    state.close_week(first_week)
    state.weeks.append(first_week)
    on_week(first_week)
    day = start
    while day <= through:
        last = min(day + dt.timedelta(days=every - 1), through)
        landing.land(warehouse, landing.plan_days(landing.landed_days(warehouse), through=last))
        week = Week(first=day, last=last)
        state.tick_sensors(week, monday_of(day, last))
        state.close_week(week)
        state.weeks.append(week)
        on_week(week)
        day = last + dt.timedelta(days=1)
    return state.weeks
