"""Materialize the lake assets over a day range, in process, into DAGSTER_HOME's instance.

Run as a script by tests that need a separate process: to import trainflow from another
source tree (PYTHONPATH; code versions are derived when the definitions are imported), or
to be killed at a precise point:

    python tests/graph_runner.py FIRST LAST [ASSET ...] [--kill-before-commit ASSET]

All lake assets when none is named. `--kill-before-commit ASSET` SIGKILLs the process when
the IO manager is about to commit ASSET: after every side effect of its step (MLflow runs,
model versions, aliases, report files, the quarantine), before its Delta commit. Prints the
trainflow package it ran and the Dagster run id.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

import dagster as dg

import trainflow
from trainflow.definitions import build_resources
from trainflow.defs.evaluation import evaluation_report, registry_entry
from trainflow.defs.features import flight_features
from trainflow.defs.ingest import raw_snapshot, validated_flights
from trainflow.defs.io_manager import DeltaLakeIOManager
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


class KilledBeforeCommit(DeltaLakeIOManager):
    """The real IO manager, except that the process dies before it commits `victim`."""

    victim: str

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if context.asset_key.to_user_string() == self.victim:
            os.kill(os.getpid(), signal.SIGKILL)
        super().handle_output(context, obj)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("first")
    parser.add_argument("last")
    parser.add_argument("assets", nargs="*")
    parser.add_argument("--kill-before-commit")
    args = parser.parse_args(argv)
    selected = [
        a.key for a in LAKE_ASSETS if not args.assets or a.key.to_user_string() in args.assets
    ]
    resources = build_resources(Settings.from_env())
    if args.kill_before_commit:
        lake = resources["io_manager"].lake  # type: ignore[attr-defined]
        resources["io_manager"] = KilledBeforeCommit(lake=lake, victim=args.kill_before_commit)
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize(
            LAKE_ASSETS,
            selection=selected,
            resources=resources,
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": args.first,
                "dagster/asset_partition_range_end": args.last,
            },
            raise_on_error=False,
        )
    print(f"package {trainflow.__file__}")
    print(f"run {result.run_id}")
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
