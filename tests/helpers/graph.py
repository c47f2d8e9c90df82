"""The lake graph materialized in process, and what its runs recorded (cache outcomes, data
versions, failures): the real assets and resources, without the code location around them.

`run_graph` runs it in the test's own process, on an ephemeral instance. A separate process
(`graph_command`) is for tests that import trainflow from another source tree (PYTHONPATH;
code versions are derived when the definitions are imported) or that kill it at a precise
point; it runs into DAGSTER_HOME's instance, with the settings from its environment:

    python -m tests.helpers.graph FIRST LAST [ASSET ...] [--kill-before-commit ASSET]

All lake assets when none is named. `--kill-before-commit ASSET` SIGKILLs the process when
the IO manager is about to commit ASSET: after every side effect of its step (MLflow runs,
model versions, aliases, report files, the quarantine), before its Delta commit. It prints
the trainflow package it ran and the Dagster run id.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import dagster as dg

import trainflow
from tests.helpers.environment import QUICK_CONFIG, REPO_ROOT
from trainflow.config import load_config
from trainflow.definitions import build_resources
from trainflow.defs.caching import CachePolicyResource
from trainflow.defs.evaluation import evaluation_report, registry_entry
from trainflow.defs.features import flight_features
from trainflow.defs.graph_runs import GraphRuns, materialize_graph
from trainflow.defs.ingest import raw_snapshot, validated_flights
from trainflow.defs.io_manager import DeltaLakeIOManager
from trainflow.defs.resources import (
    ContractsResource,
    ExperimentConfigResource,
    LakeResource,
    WarehouseResource,
)
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
LAKE_ASSET_NAMES = [a.key.to_user_string() for a in LAKE_ASSETS]
DAILY_ASSET_NAMES = LAKE_ASSET_NAMES[:3]  # one partition per day
WHOLE_TABLE_ASSET_NAMES = LAKE_ASSET_NAMES[3:]  # per experiment: one partition per config
JAN_FEB = ("2013-01-01", "2013-02-28")


def settings_for(home: Path, warehouse: Path | str, config: Path = QUICK_CONFIG) -> Settings:
    """The settings of a fresh home over `warehouse`, read from no environment but these."""
    return Settings.from_env(
        {
            "TRAINFLOW_HOME": str(home),
            "TRAINFLOW_WAREHOUSE_URL": str(warehouse),
            "TRAINFLOW_CONFIG": str(config),
        }
    )


def partition_range_tags(first: dt.date | str, last: dt.date | str) -> dict[str, str]:
    """The tags of one run over a range of daily partitions (what `--partition-range` sets)."""
    return {
        "dagster/asset_partition_range_start": str(first),
        "dagster/asset_partition_range_end": str(last),
    }


def run_graph(
    settings: Settings,
    days: tuple[str, str] = JAN_FEB,
    assets: list = LAKE_ASSETS,
    tags: dict[str, str] | None = None,
    raise_on_error: bool = True,
    instance: dg.DagsterInstance | None = None,
    selection: list | None = None,
) -> GraphRuns:
    """`assets` over `days` in this process, on `instance` (default: an ephemeral one, gone
    with the runs); only the `selection` of them when given. The daily run, then the
    settings' experiment's run (defs/graph_runs.py)."""
    return materialize_graph(
        assets,
        build_resources(settings),
        days=days,
        experiment=load_config(settings.config_path).name,
        selection=selection,
        instance=instance,
        tags=tags,
        raise_on_error=raise_on_error,
    )


def ingest_resources(
    warehouse: Path | str,
    lake: Path,
    experiment: Path | None = None,
    chunk_rows: int | None = None,
) -> dict[str, Any]:
    """The resources of the daily steps (raw_snapshot, validated_flights, flight_features)
    over a warehouse and a local lake folder, set one by one: no Settings, so no home and
    no MLflow. `experiment` is the config flight_features reads (it has no default)."""
    lake_resource = LakeResource(
        lake_uri=str(lake), **({"chunk_rows": chunk_rows} if chunk_rows else {})
    )
    resources: dict[str, Any] = {
        "warehouse": WarehouseResource(url=str(warehouse)),
        "contracts": ContractsResource(),
        "io_manager": DeltaLakeIOManager(lake=lake_resource),
        "lake": lake_resource,
        "cache_policy": CachePolicyResource(),
    }
    if experiment is not None:
        resources["experiment"] = ExperimentConfigResource(path=str(experiment))
    return resources


def cache_outcomes(materializations: Iterable[dg.AssetMaterialization]) -> dict[str, Counter]:
    """asset -> Counter of 'hit' / 'miss' over its materializations (each says which)."""
    counts: dict[str, Counter] = {name: Counter() for name in LAKE_ASSET_NAMES}
    for mat in materializations:
        if mat.asset_key.to_user_string() in counts:  # not quarantine_flights (no cache key)
            counts[mat.asset_key.to_user_string()][str(mat.metadata["cache"].value)] += 1
    return counts


def outcomes(result: dg.ExecuteInProcessResult) -> dict[str, Counter]:
    """asset -> Counter of 'hit' / 'miss' over its materialization events in the run."""
    return cache_outcomes(e.materialization for e in result.get_asset_materialization_events())


def recomputed(result: dg.ExecuteInProcessResult) -> dict[str, int]:
    """asset -> partitions the run computed again (cache misses); assets with none left out."""
    return {name: c["miss"] for name, c in outcomes(result).items() if c["miss"]}


def data_versions(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str | None], str]:
    """(asset, partition) -> the data version its materialization in the run recorded."""
    found = {}
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        if "data_version" in mat.metadata:  # not quarantine_flights (no cache key)
            found[(mat.asset_key.to_user_string(), mat.partition)] = str(
                mat.metadata["data_version"].value
            )
    return found


def materializations_in_run(
    instance: dg.DagsterInstance, run_id: str
) -> list[dg.AssetMaterialization]:
    """The asset materializations a run recorded in `instance` (a run of another process)."""
    found = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        mat = entry.asset_materialization
        assert mat is not None
        found.append(mat)
    return found


def step_failure_messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The error message of each step failure a run recorded in `instance`."""
    return [
        entry.dagster_event.step_failure_data.error.message
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        if entry.dagster_event and entry.dagster_event.step_failure_data.error
    ]


def graph_command(*args: str) -> list[str]:
    """The command line of the graph in a process of its own (run it with cwd=REPO_ROOT)."""
    return [sys.executable, "-m", "tests.helpers.graph", *args]


def run_graph_process(
    env: dict[str, str], *args: str, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """The graph in a process of its own, waited for; its output captured."""
    return subprocess.run(
        graph_command(*args), env=env, cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def printed_run_ids(stdout: str) -> list[str]:
    """The Dagster run ids the graph process printed (the daily run's, the experiment's)."""
    return [
        line.removeprefix("run ").strip() for line in stdout.splitlines() if line.startswith("run ")
    ]


def printed_run_id(stdout: str) -> str:
    """The last Dagster run id the graph process printed."""
    return printed_run_ids(stdout)[-1]


def copy_of_the_code(target: Path) -> Path:
    """What the code location imports and reads at load time: the package, the dbt
    project, the configs and the lock (a manifest hashes it)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "target", "logs")
    for folder in ("src", "dbt_project", "configs"):
        shutil.copytree(REPO_ROOT / folder, target / folder, ignore=ignore)
    shutil.copy(REPO_ROOT / "requirements.lock", target / "requirements.lock")
    return target


def run_graph_from_code(
    code: Path, env: dict[str, str], days: tuple[str, str] = JAN_FEB
) -> tuple[subprocess.CompletedProcess[str], dict[str, Counter], list[str]]:
    """The graph process importing trainflow from `code` (a `copy_of_the_code`), and what
    its run recorded: cache outcomes per asset and step failure messages, both read from
    the run's event log (none when the process printed no run). The caller checks the
    process: its exit status, and that it ran the package of `code`."""
    done = run_graph_process({**env, "PYTHONPATH": str(code / "src")}, *days)
    if "\nrun " not in done.stdout:
        return done, cache_outcomes([]), []
    run_ids = printed_run_ids(done.stdout)
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        counts = cache_outcomes(m for r in run_ids for m in materializations_in_run(instance, r))
        failures = [f for r in run_ids for f in step_failure_messages(instance, r)]
    return done, counts, failures


class KilledBeforeCommit(DeltaLakeIOManager):
    """The real IO manager, except that the process dies before it commits `victim`."""

    victim: str

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if context.asset_key.to_user_string() == self.victim:
            os.kill(os.getpid(), signal.SIGKILL)
        super().handle_output(context, obj)


def main(argv: list[str]) -> int:
    """The graph process: see the module's docstring."""
    parser = argparse.ArgumentParser(prog="python -m tests.helpers.graph")
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
        manager = resources["io_manager"]
        resources["io_manager"] = KilledBeforeCommit(
            lake=manager.lake,  # type: ignore[attr-defined]
            victim=args.kill_before_commit,
        )
    with dg.DagsterInstance.get() as instance:
        result = materialize_graph(
            LAKE_ASSETS,
            resources,
            days=(args.first, args.last),
            experiment=load_config(Settings.from_env().config_path).name,
            selection=selected,
            instance=instance,
            raise_on_error=False,
        )
    print(f"package {trainflow.__file__}")
    for run_id in result.run_ids:
        print(f"run {run_id}")
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
