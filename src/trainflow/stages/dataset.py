"""Stage 4, the training dataset: train / validation / test rows chosen by date from the
config (time-based splits only), with the lineage of every feature day in its span."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import polars as pl

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


def build_training_dataset(
    step: Step, flight_features: DeltaInput, config: ExperimentConfig, lake: DeltaLake
) -> LakeOutput:
    """The configured splits of the feature days, or the stored table reused (cache hit).

    Fails, naming the days, if any configured day has no feature partition. Its cache key
    covers the data version of every feature day in the configured span.
    """
    from trainflow.datasets import SPLITS, select_splits

    span = config.windows.span.days()
    refuse_mixed_code(step, flight_features, [d for d in span if d in flight_features.day_versions])
    inputs = {"flight_features": window_versions(flight_features.day_versions, span)}
    key = cache_key(step.code_version, config.hash_of("windows", "features"), inputs)
    lineage = {"flight_features": _feature_lineage(flight_features, inputs["flight_features"])}
    step.add_output_metadata(
        {
            "config_hash": config.config_hash,
            "flight_features_delta_version": flight_features.version,
        }
    )
    if table_hit(step, lake, TABLE, key):
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
            "windows": Json(config.windows.model_dump(mode="json")),
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
