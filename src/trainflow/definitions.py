"""The code location: `dagster dev -m trainflow.definitions` or `dagster asset materialize -m ...`.

Everything environment-specific is decided by `Settings.from_env()` (docs/profiles.md).
"""

from __future__ import annotations

import multiprocessing
import sys
from multiprocessing import forkserver
from typing import Any

import dagster as dg

from trainflow.config import load_config
from trainflow.defs import (
    alerts,
    automation,
    evaluation,
    features,
    freshness,
    graph_runs,
    ingest,
    monitoring,
    observability,
    predictions,
    training,
    warehouse,
)
from trainflow.defs.caching import CachePolicyResource
from trainflow.defs.io_manager import DeltaLakeIOManager
from trainflow.defs.pods import k8s_executor_config
from trainflow.defs.resources import (
    ContractsResource,
    ExperimentConfigResource,
    WarehouseResource,
    lake_resource,
    mlflow_resource,
)
from trainflow.settings import Settings
from trainflow.warehouse.base import is_postgres_url


def build_resources(settings: Settings) -> dict[str, object]:
    """All resources for one profile; tests call this with settings for a temp folder."""
    lake = lake_resource(settings)
    experiment = ExperimentConfigResource(path=str(settings.config_path), lake=lake)
    return {
        "io_manager": DeltaLakeIOManager(lake=lake),
        "lake": lake,
        "cache_policy": CachePolicyResource(),
        "warehouse": WarehouseResource(
            url=settings.warehouse_url,
            dbt_profiles_dir=str(settings.dbt_profiles_dir),
            dbt_target_dir=str(settings.dbt_target_dir),
        ),
        "experiment": experiment,
        "contracts": ContractsResource(directory=str(settings.contracts_dir)),
        "mlflow_tracking": mlflow_resource(settings),
    }


ALL_ASSETS: list[dg.AssetsDefinition | dg.AssetSpec] = [
    *warehouse.landed_tables,
    warehouse.warehouse_models,
    ingest.raw_snapshot,
    ingest.validated_flights,
    ingest.quarantine_flights,
    features.flight_features,
    training.training_dataset,
    training.model,
    evaluation.evaluation_report,
    evaluation.registry_entry,
    predictions.flight_delay_predictions,
    predictions.champion_live_performance,
]
ALL_CHECKS = [warehouse.reference_table_contracts]


def materialize_range(
    settings: Settings, first: str, last: str, **kwargs: Any
) -> graph_runs.GraphRuns:
    """Every asset Dagster materializes (not the landed tables, which `trainflow land`
    writes, nor the quarantine, which validated_flights writes) and every check, over days
    `first`..`last`, in process: the daily run, then the configured experiment's run."""
    return graph_runs.materialize_graph(
        ALL_ASSETS,
        build_resources(settings),
        days=(first, last),
        experiment=load_config(settings.config_path).name,
        checks=ALL_CHECKS,
        **kwargs,
    )


# What the assets import inside their bodies (MLflow, LightGBM, scikit-learn, matplotlib and
# the modules that use them): loading the code location skips them (3.7 s instead of 5.4 s
# for the terminal, the webserver, the daemon and each run worker), and a step only needs
# them when it computes. tests/test_definitions.py keeps this list complete.
STEP_MODULES = [
    "mlflow",
    "trainflow.datasets",
    "trainflow.evaluation.calibration",
    "trainflow.evaluation.metrics",
    "trainflow.evaluation.model_card",
    "trainflow.evaluation.plots",
    "trainflow.evaluation.report",
    "trainflow.evaluation.scorecard",
    "trainflow.models.baseline",
    "trainflow.models.families",
    "trainflow.models.lightgbm_model",
    "trainflow.models.mlp_model",
    "trainflow.registry.champion",
    "trainflow.registry.operations",
    "trainflow.registry.runs",
    "trainflow.registry.versions",
    "trainflow.reproduce",
]
# Imported once by the forkserver of a multiprocess run; every step process is forked from
# it with dagster, polars, dbt, the definitions and the step modules already loaded.
PRELOADED_MODULES = ["trainflow.definitions", *STEP_MODULES]


# Commands whose own process executes the run: the terminal's (`dagster asset materialize`,
# `dg launch`, which runs the same code in its own process), and the run worker a run
# launcher starts for the UI, sensors and schedules.
RUN_EXECUTING_COMMANDS: set[tuple[str, ...]] = {
    ("asset", "materialize"),
    ("job", "execute"),
    ("api", "execute_run"),
    ("launch",),  # with its options in any order
}


def _forkserver_unless_chosen(config: dict[str, Any]) -> dict[str, Any]:
    """The executor config a run gets: one process per step started by a forkserver with
    trainflow preloaded, unless the run chose a start method or `in_process` itself."""
    if "multiprocess" not in config:
        return config
    multiprocess = dict(config["multiprocess"] or {})
    multiprocess.setdefault("start_method", {"forkserver": {"preload_modules": PRELOADED_MODULES}})
    if multiprocess["start_method"] == {"forkserver": {"preload_modules": PRELOADED_MODULES}}:
        start_forkserver_early()
    return {"multiprocess": multiprocess}


def start_forkserver_early() -> None:
    """Start the step processes' forkserver now, in a process about to execute a run.

    Dagster resolves this config before it writes the run's planned events (one per
    partition: about 1,100 SQLite writes over the year, 6-8 s) and starts the forkserver only
    when the first step launches, after them; the server's import of trainflow then kept
    the first step waiting about 5 s (`make bench`). Started here, the import overlaps the
    writes, and Dagster's `ensure_running` finds the server up with the same preload.

    Nothing happens elsewhere: not in a code server or webserver that only validates the
    config, and not in a step process (forked from the server, it has a parent process).
    """
    if multiprocessing.parent_process() is not None:
        return
    if not {tuple(sys.argv[1:2]), tuple(sys.argv[1:3])} & RUN_EXECUTING_COMMANDS:
        return
    context = multiprocessing.get_context("forkserver")
    # The list Dagster's multiprocess executor sets: its own module first, then ours.
    context.set_forkserver_preload(["dagster._core.executor.multiprocess", *PRELOADED_MODULES])
    forkserver.ensure_running()


local_executor = dg.multi_or_in_process_executor.configured(
    _forkserver_unless_chosen,
    name="multiprocess_forkserver",
    config_schema=dg.multi_or_in_process_executor.config_schema.as_field(),
)


def build_executor(settings: Settings) -> dg.ExecutorDefinition:
    """One Kubernetes Job per step (`TRAINFLOW_EXECUTOR=k8s`, prod's default), or one
    process per step on this machine, as many at a time as it has cores.

    Locally each step process is forked from a server that imported trainflow once, about
    0.2 s per step instead of 6-8 s of imports in a freshly spawned interpreter (`make
    bench` measures it), while a step's crash or memory stays its own. A run may still
    choose `in_process` (run config `execution: {config: {in_process: {}}}`) or `spawn`.
    """
    if settings.executor == "k8s":
        # Imported only here: the Kubernetes client costs every local step process its
        # import time for nothing.
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor.configured(k8s_executor_config(), name="k8s")
    return local_executor


def _assets_for(settings: Settings) -> list[dg.AssetsDefinition | dg.AssetSpec]:
    """The assets as this profile shows them. A PostgreSQL warehouse labels the landed
    tables `postgres` (not `duckdb`). prod: Dagster's freshness policies (wall clock) on
    the daily assets and the model; elsewhere freshness is measured against landed data
    only (defs/freshness.py)."""
    postgres = is_postgres_url(settings.warehouse_url)
    if settings.profile != "prod" and not postgres:
        return ALL_ASSETS
    landed = {spec.key for spec in warehouse.landed_tables}

    def for_profile(spec: dg.AssetSpec) -> dg.AssetSpec:
        if postgres and spec.key in landed:
            spec = spec.replace_attributes(kinds={"postgres", "table"})
        if settings.profile == "prod" and spec.key in freshness.WALL_CLOCK_POLICIES:
            spec = dg.apply_freshness_policy(spec, freshness.WALL_CLOCK_POLICIES[spec.key])
        return spec

    return list(dg.map_asset_specs(for_profile, ALL_ASSETS))


def build_definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=_assets_for(settings),
        asset_checks=[*ALL_CHECKS, freshness.features_fresh, freshness.champion_fresh],
        resources=build_resources(settings),
        executor=build_executor(settings),
        sensors=[
            automation.warehouse_days_sensor,
            alerts.alert_on_run_failure,
            alerts.alert_on_gate_rejection,
            monitoring.champion_live_watch,
            observability.run_metrics,
            freshness.landed_data_freshness,
        ],
        schedules=[automation.weekly_retrain],
        jobs=[automation.retrain_job],
    )


defs = build_definitions(Settings.from_env())
