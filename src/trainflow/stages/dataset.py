"""Stage 4, the training dataset: train / validation / test rows chosen by date from the
config (time-based splits only), with the lineage of every feature day in its span."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import polars as pl

from trainflow.as_of import AS_OF_TAG, resolve_as_of
from trainflow.cache import cache_key, window_versions, with_bookkeeping
from trainflow.config import ExperimentConfig
from trainflow.features import catalog
from trainflow.features.flights import HISTORY_COLUMNS, LABEL
from trainflow.lake.delta_lake import DeltaLake
from trainflow.lake.tables import DeltaInput, LakeOutput
from trainflow.stages.step import Json, Step, refuse_mixed_code, table_hit

TABLE = "training_dataset"
# The Delta commit property that carries the dataset's lineage (what the model reads back).
LINEAGE_KEY = "trainflow.lineage"
# In that lineage, for a rolling config: the as-of day the windows end at.
AS_OF_KEY = "as_of"


def build_training_dataset(
    step: Step, flight_features: DeltaInput, config: ExperimentConfig, lake: DeltaLake
) -> LakeOutput:
    """The configured splits of the feature days, or the stored table reused (cache hit).

    A rolling config's windows end at the run's as-of day (`trainflow.as_of`), resolved here
    once per run and recorded as a run tag, in the output's metadata and in the lineage the
    model and the report read back. Fails, naming the days, if any configured day has no
    feature partition. Its cache key covers the dated windows and the data version of every
    feature day in them.
    """
    from trainflow.datasets import SPLITS, select_splits

    pinned: dict[str, Any] = {}
    if config.is_rolling:
        named = step.run_tags.get(AS_OF_TAG)
        as_of = resolve_as_of(named, flight_features.day_versions)
        config = config.at(as_of)
        pinned = {AS_OF_KEY: as_of.isoformat()}
        w = config.dated_windows
        source = "named by the run" if named else "the newest feature day"
        step.info(
            f"training_dataset: as-of day {as_of} ({source}): train {w.train.start}.."
            f"{w.train.end}, validation {w.validation.start}..{w.validation.end}, "
            f"test {w.test.start}..{w.test.end}"
        )
        step.tag_run({AS_OF_TAG: as_of.isoformat()})
        step.add_output_metadata({"as_of": as_of.isoformat()})
    span = config.dated_windows.span.days()
    refuse_mixed_code(step, flight_features, [d for d in span if d in flight_features.day_versions])
    inputs = {"flight_features": window_versions(flight_features.day_versions, span)}
    key = cache_key(step.code_version, config.hash_of("windows", "features"), inputs)
    lineage = {
        **pinned,
        "flight_features": _feature_lineage(flight_features, inputs["flight_features"]),
    }
    step.add_output_metadata(
        {
            "config_hash": config.config_hash,
            "flight_features_delta_version": flight_features.version,
        }
    )
    if table_hit(step, lake, TABLE, key, config.name):
        return LakeOutput(frame=None)
    dataset = select_splits(flight_features.lazy, config)
    counts = dict(dataset.group_by("split").len().iter_rows())
    rates = dict(dataset.group_by("split").agg(pl.col(LABEL).mean()).iter_rows())
    step.add_output_metadata(
        {
            "config_name": config.name,
            "dagster/row_count": dataset.height,
            **{f"rows_{s}": int(counts.get(s, 0)) for s in SPLITS},
            **{f"positive_rate_{s}": round(float(rates.get(s, 0.0)), 4) for s in SPLITS},
            "windows": Json(config.dated_windows.model_dump(mode="json")),
        }
    )
    return LakeOutput(
        frame=with_bookkeeping(dataset, key),
        commit_metadata={LINEAGE_KEY: json.dumps(lineage, sort_keys=True)},
        column_descriptions=catalog.descriptions(),
    )


def _feature_lineage(flight_features: DeltaInput, versions: dict[str, str]) -> dict[str, Any]:
    """Each feature day read: its data version, content hash, the validated_flights version
    it was computed from, and the history its rates rest on."""
    hashes = flight_features.day_content_hashes
    history = history_per_day(flight_features.lazy)
    upstream = flight_features.day_upstream_versions
    return {
        "delta_version": flight_features.version,
        "partitions": {
            day: {
                "data_version": version,
                "content_hash": hashes[dt.date.fromisoformat(day)],
                # The validated_flights version this feature day was computed from.
                "validated_flights_version": upstream.get(dt.date.fromisoformat(day)),
                **history.get(day, {}),
            }
            for day, version in versions.items()
        },
    }


def dataset_lineage(lake: DeltaLake, training_dataset_version: int) -> dict[str, Any]:
    """What the training dataset was built from: stored with its Delta commit."""
    lineage = lake.commit_metadata(TABLE, training_dataset_version)
    if LINEAGE_KEY not in lineage:
        raise ValueError(
            f"training_dataset version {training_dataset_version} has no lineage in its "
            "commit; re-materialize it"
        )
    found: dict[str, Any] = json.loads(lineage[LINEAGE_KEY])
    return found


def history_per_day(features: pl.LazyFrame) -> dict[str, dict[str, int]]:
    """ISO day -> the history days expected and present behind that feature day's rates
    (read from those columns only)."""
    if not set(HISTORY_COLUMNS) <= set(features.collect_schema().names()):
        return {}
    per_day = features.group_by("day").agg(pl.col(c).first() for c in HISTORY_COLUMNS).collect()
    return {
        row["day"].isoformat(): {c: int(row[c]) for c in HISTORY_COLUMNS}
        for row in per_day.iter_rows(named=True)
    }


def config_of_dataset(
    config: ExperimentConfig, lake: DeltaLake, training_dataset_version: int
) -> ExperimentConfig:
    """The config as the stored dataset was built with it: a rolling config at the as-of
    day recorded in the dataset's lineage, a dated config as it is."""
    if not config.is_rolling:
        return config
    as_of = dataset_lineage(lake, training_dataset_version).get(AS_OF_KEY)
    if as_of is None:
        raise ValueError(
            f"training_dataset version {training_dataset_version} records no as-of day, and "
            f"experiment {config.name} has rolling windows: re-materialize training_dataset"
        )
    return config.at(dt.date.fromisoformat(as_of))
