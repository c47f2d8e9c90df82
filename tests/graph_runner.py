"""Materialize the lake assets over a day range, in process, into DAGSTER_HOME's instance.

Run as a script (`python tests/graph_runner.py FIRST LAST [ASSET ...]`, all lake assets
when none is named) by tests that must import
trainflow from another source tree (PYTHONPATH): code versions are derived when the
definitions are imported. Prints the trainflow package it ran and the Dagster run id.
"""

from __future__ import annotations

import sys

import dagster as dg

import trainflow
from trainflow.definitions import build_resources
from trainflow.defs.evaluation import evaluation_report, registry_entry
from trainflow.defs.features import flight_features
from trainflow.defs.ingest import raw_snapshot, validated_flights
from trainflow.defs.training import model, training_dataset
from trainflow.settings import Settings

LAKE_ASSETS = [
    raw_snapshot,
    validated_flights,
    flight_features,
    training_dataset,
    model,
    evaluation_report,
    registry_entry,
]


def main(first: str, last: str, *names: str) -> int:
    selected = [a.key for a in LAKE_ASSETS if not names or a.key.to_user_string() in names]
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize(
            LAKE_ASSETS,
            selection=selected,
            resources=build_resources(Settings.from_env()),
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": first,
                "dagster/asset_partition_range_end": last,
            },
            raise_on_error=False,
        )
    print(f"package {trainflow.__file__}")
    print(f"run {result.run_id}")
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
