"""What each finished run recorded, as SLIs and Prometheus text (trainflow.slis).

`run_facts` reads one run's record, step stats and materialization metadata from the
instance (cache decisions, rows, validation counts, evaluation AUCs). The `run_metrics`
sensor writes each finished run's metrics to `$TRAINFLOW_HOME/metrics/runs/<run id>.prom`
and the newest of each job to `$TRAINFLOW_HOME/metrics/<job>.prom` (the file a Prometheus
textfile collector reads: one series per job, not one per run); `trainflow status` shows
the SLIs over the last runs.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import dagster as dg

from trainflow.settings import Settings
from trainflow.slis import RunFacts, prometheus_text

Finished = Literal[dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE]
FINISHED: tuple[Finished, ...] = (dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE)
RUNS_PER_TICK = 50


def run_partitions(tags: Mapping[str, str]) -> str | None:
    """The partition or range a run covered, from its tags ("2013-02-04",
    "2013-02-01...2013-02-05"); None for an unpartitioned run. (Here, not in
    defs/partitions.py: every asset imports that module, so its code version would cover
    what only the sensors use.)"""
    if "dagster/partition" in tags:
        return tags["dagster/partition"]
    first = tags.get("dagster/asset_partition_range_start")
    last = tags.get("dagster/asset_partition_range_end")
    if first and last:
        return first if first == last else f"{first}...{last}"
    return None


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def run_facts(instance: dg.DagsterInstance, run_id: str) -> RunFacts:
    """The facts of one finished run, from the instance's records of it."""
    record = instance.get_run_record_by_id(run_id)
    if record is None:
        raise ValueError(f"no run {run_id} in this Dagster instance")
    run = record.dagster_run
    steps = {
        s.step_key: s.end_time - s.start_time
        for s in instance.get_run_step_stats(run_id)
        if s.start_time is not None and s.end_time is not None
    }
    rows: dict[str, int] = defaultdict(int)
    cache: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    rows_in = rows_validated = 0
    aucs: dict[str, float | None] = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        materialization = entry.asset_materialization
        if materialization is None:
            continue
        asset = materialization.asset_key.to_user_string()
        metadata = {k: v.value for k, v in materialization.metadata.items()}
        count = metadata.get("dagster/row_count")
        if isinstance(count, int):
            rows[asset] += count
        if metadata.get("cache") in ("hit", "miss"):
            cache[asset][0 if metadata["cache"] == "hit" else 1] += 1
        if isinstance(metadata.get("rows_in"), int):
            rows_in += int(metadata["rows_in"])  # type: ignore[arg-type]
            rows_validated += int(metadata.get("rows_validated") or 0)  # type: ignore[arg-type]
        if "test_roc_auc" in metadata:
            aucs = {
                k: _number(metadata.get(k))
                for k in (
                    "test_roc_auc",
                    "baseline_test_roc_auc",
                    "champion_test_roc_auc",
                    "model_on_champion_rows_test_roc_auc",
                )
            }
    started = record.start_time or record.create_timestamp.timestamp()
    return RunFacts(
        run_id=run_id,
        job=run.job_name,
        succeeded=run.status == dg.DagsterRunStatus.SUCCESS,
        started=started,
        ended=record.end_time or started,
        partitions=run_partitions(run.tags),
        step_seconds=steps,
        rows=dict(rows),
        cache={asset: (hit, miss) for asset, (hit, miss) in cache.items()},
        rows_in=rows_in,
        rows_validated=rows_validated,
        test_roc_auc=aucs.get("test_roc_auc"),
        baseline_test_roc_auc=aucs.get("baseline_test_roc_auc"),
        champion_test_roc_auc=aucs.get("champion_test_roc_auc"),
        model_on_champion_rows_test_roc_auc=aucs.get("model_on_champion_rows_test_roc_auc"),
    )


def recent_runs(instance: dg.DagsterInstance, limit: int) -> list[RunFacts]:
    """The facts of the newest `limit` finished runs."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]),
        limit=limit,
    )
    return [run_facts(instance, r.dagster_run.run_id) for r in records]


def _write(path: Path, text: str) -> None:
    """Whole or not at all: a scraper never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".prom.partial")
    partial.write_text(text)
    os.replace(partial, path)


def write_run_metrics(folder: Path, facts: RunFacts) -> Path:
    text = prometheus_text(facts)
    path = folder / "runs" / f"{facts.run_id}.prom"
    _write(path, text)
    _write(folder / f"{facts.job}.prom", text)
    return path


@dg.sensor(
    name="run_metrics",
    description="Writes each finished run's metrics (step times, rows, cache hits and misses, "
    "validation counts, model quality gap) as Prometheus text under $TRAINFLOW_HOME/metrics.",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def run_metrics(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    instance = context.instance
    cursor: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
    folder = Settings.from_env().home / "metrics"
    ended = []
    for event_type in FINISHED:
        after = cursor.get(event_type.value, -1)
        records = instance.fetch_run_status_changes(
            dg.RunStatusChangeRecordsFilter(event_type=event_type, after_storage_id=after),
            limit=RUNS_PER_TICK,
            ascending=True,
        ).records
        ended += [(record.storage_id, event_type.value, record) for record in records]
    written: list[str] = []
    # In the order the runs ended, so each job's file ends with its newest run.
    for storage_id, event_type_name, record in sorted(ended, key=lambda item: item[0]):
        write_run_metrics(folder, run_facts(instance, record.event_log_entry.run_id))
        written.append(record.event_log_entry.run_id[:8])
        cursor[event_type_name] = storage_id
    return dg.SensorResult(
        cursor=json.dumps(cursor, sort_keys=True),
        skip_reason=f"wrote metrics of run(s) {', '.join(written)}" if written else "no run ended",
    )
