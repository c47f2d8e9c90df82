"""Baseline: trainflow's asset graph with every step doing nothing: Dagster's own floor.

`make bench` sets trainflow's wall time against what Dagster costs for a graph of the
same shape when the steps do no work: the same asset keys, dependencies, daily
partitions with single-run backfills (the 28-day window mapping included), unpartitioned
dbt steps, training steps partitioned by experiment, blocking checks, the registry's pool, the two freshness checks, and
so the same 11 steps.
Bodies return `MaterializeResult` (and passing check results), so no IO manager writes.
The module imports nothing from trainflow: each step process pays Dagster's imports only.
`main` checks the shape against `trainflow.definitions` first, so the two cannot drift.

The floor has two parts. (wall - in-process wall) / steps is what a process per step
costs. The in-process wall itself grows with the window, not the steps: each partition
of each daily asset is a planned and a materialization event, one SQLite write each
(about 2,200 over 2013).

Run: `python benchmarks/noop_graph.py [--through DAY] [--repeat N]` for the executor table
(each measurement is the daily run over the window, then the training run for one
experiment, as trainflow's whole graph).
"""

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg

BIN = Path(sys.executable).parent
REPO_ROOT = Path(__file__).resolve().parents[1]
MODULE = "benchmarks.noop_graph"
FIRST_DAY, LAST_DAY = dt.date(2013, 1, 1), dt.date(2013, 12, 31)

daily_2013 = dg.DailyPartitionsDefinition(start_date="2013-01-01", end_date="2014-01-01")
SINGLE_RUN = dg.BackfillPolicy.single_run()
# The training side, per experiment (one here, as a run of trainflow's configured one).
experiments = dg.DynamicPartitionsDefinition(name="experiments")
ONE_PER_RUN = dg.BackfillPolicy.multi_run(max_partitions_per_run=1)
EXPERIMENT = "noop"
FEATURES_SIDE = (
    "not (key:training_dataset or key:model or key:evaluation_report or key:registry_entry "
    "or key:flight_delay_predictions or key:champion_live_performance)"
)
TRAINING_SIDE = "key:training_dataset or key:model or key:evaluation_report or key:registry_entry"
SCORING_SIDE = "key:flight_delay_predictions or key:champion_live_performance"
REFERENCE_TABLES = ("weather", "planes", "airports", "airlines")
# dbt's models (one step: `dbt build`) with their parents, and the dbt tests on them.
DBT_MODELS = {
    **{f"stg_{t}": [dg.AssetKey(["raw", t])] for t in ("flights", "landings", *REFERENCE_TABLES)},
    "flights_enriched": [
        dg.AssetKey(f"stg_{t}") for t in ("flights", "weather", "planes", "airlines", "landings")
    ],
}
DBT_TESTS = {
    "stg_flights": ("not_null_stg_flights_day", "not_null_stg_flights_flight_id",
                    "unique_stg_flights_flight_id"),
    "stg_landings": ("not_null_stg_landings_day", "unique_stg_landings_day"),
    "flights_enriched": ("not_null_flights_enriched_flight_id",),
}  # fmt: skip
CONTRACT_RULES = (
    "schema", "min_rows_per_day", "max_null_fraction", "allowed_late_arrival",
    "max_reject_fraction", "rows_landed", "volume_vs_reference", "distribution_vs_reference",
)  # fmt: skip
TABLE_RULES = ("schema", "min_rows", "max_reject_fraction")

# Landed by `trainflow land`, outside Dagster: external assets, as in trainflow.
landed_tables = [dg.AssetSpec(["raw", t]) for t in ("flights", *REFERENCE_TABLES, "landings")]


def passed(checks: Iterable[dg.AssetCheckKey]) -> Iterator[dg.AssetCheckResult]:
    for key in checks:
        yield dg.AssetCheckResult(asset_key=key.asset_key, check_name=key.name, passed=True)


@dg.multi_asset(
    specs=[dg.AssetSpec(name, deps=deps) for name, deps in DBT_MODELS.items()],
    check_specs=[
        dg.AssetCheckSpec(test, asset=model, blocking=True)
        for model, tests in DBT_TESTS.items()
        for test in tests
    ],
    can_subset=True,
    backfill_policy=SINGLE_RUN,
)
def warehouse_models(context: dg.AssetExecutionContext) -> Iterator[Any]:
    for key in map(dg.AssetKey, DBT_MODELS):  # in dependency order, as Dagster requires
        if key in context.selected_asset_keys:
            yield dg.MaterializeResult(asset_key=key)
    yield from passed(context.selected_asset_check_keys)


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(rule, asset=f"stg_{table}", blocking=True)
        for table in REFERENCE_TABLES
        for rule in TABLE_RULES
    ],
    can_subset=True,
)
def reference_table_contracts(context: dg.AssetCheckExecutionContext) -> Iterator[Any]:
    yield from passed(context.selected_asset_check_keys)


@dg.asset(
    partitions_def=daily_2013,
    backfill_policy=SINGLE_RUN,
    deps=["flights_enriched", *(f"stg_{t}" for t in REFERENCE_TABLES)],
)
def raw_snapshot() -> dg.MaterializeResult:
    return dg.MaterializeResult()


@dg.asset(
    partitions_def=daily_2013,
    backfill_policy=SINGLE_RUN,
    deps=[raw_snapshot],
    check_specs=[
        dg.AssetCheckSpec(r, asset="validated_flights", blocking=True) for r in CONTRACT_RULES
    ],
)
def validated_flights() -> dg.MaterializeResult:
    return dg.MaterializeResult(
        check_results=[dg.AssetCheckResult(check_name=r, passed=True) for r in CONTRACT_RULES]
    )


quarantine_flights = dg.AssetSpec(
    "quarantine_flights", deps=[raw_snapshot], partitions_def=daily_2013
)


@dg.asset(
    partitions_def=daily_2013,
    backfill_policy=SINGLE_RUN,
    deps=[
        dg.AssetDep(
            validated_flights,
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-28, end_offset=0, allow_nonexistent_upstream_partitions=True
            ),
        )
    ],
)
def flight_features() -> dg.MaterializeResult:
    return dg.MaterializeResult()


@dg.asset(
    partitions_def=experiments,
    backfill_policy=ONE_PER_RUN,
    deps=[dg.AssetDep(flight_features, partition_mapping=dg.AllPartitionMapping())],
)
def training_dataset() -> dg.MaterializeResult:
    return dg.MaterializeResult()


@dg.asset(
    partitions_def=experiments,
    backfill_policy=ONE_PER_RUN,
    deps=[training_dataset, dg.AssetKey(["raw", "flights"])],
)
def model() -> dg.MaterializeResult:
    return dg.MaterializeResult()


@dg.asset(partitions_def=experiments, backfill_policy=ONE_PER_RUN, deps=[training_dataset, model])
def evaluation_report() -> dg.MaterializeResult:
    return dg.MaterializeResult()


@dg.asset(
    partitions_def=experiments,
    backfill_policy=ONE_PER_RUN,
    deps=[model, evaluation_report],
    pool="model_registry",
)
def registry_entry() -> dg.MaterializeResult:
    return dg.MaterializeResult()


@dg.asset(
    partitions_def=daily_2013,
    backfill_policy=SINGLE_RUN,
    deps=[
        dg.AssetDep(flight_features, partition_mapping=dg.TimeWindowPartitionMapping()),
        dg.AssetDep(registry_entry, partition_mapping=dg.AllPartitionMapping()),
    ],
)
def flight_delay_predictions() -> dg.MaterializeResult:
    return dg.MaterializeResult()


TRAILING = dg.TimeWindowPartitionMapping(
    start_offset=-6, end_offset=0, allow_nonexistent_upstream_partitions=True
)


@dg.asset(
    partitions_def=daily_2013,
    backfill_policy=SINGLE_RUN,
    deps=[
        dg.AssetDep(flight_delay_predictions, partition_mapping=TRAILING),
        dg.AssetDep(flight_features, partition_mapping=TRAILING),
    ],
)
def champion_live_performance() -> dg.MaterializeResult:
    return dg.MaterializeResult()


# The freshness checks: one step each, as in trainflow (defs/freshness.py).
@dg.asset_check(asset=flight_features, name="fresh_against_landed_days")
def features_fresh() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


@dg.asset_check(asset=registry_entry, name="champion_fresh_against_landed_days")
def champion_fresh() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


ALL_ASSETS: list[dg.AssetsDefinition | dg.AssetSpec] = [
    *landed_tables, warehouse_models, raw_snapshot, validated_flights, quarantine_flights,
    flight_features, training_dataset, model, evaluation_report, registry_entry,
    flight_delay_predictions, champion_live_performance,
]  # fmt: skip
ALL_CHECKS = [reference_table_contracts, features_fresh, champion_fresh]
defs = dg.Definitions(assets=ALL_ASSETS, asset_checks=ALL_CHECKS)

# Run config per executor variant; the default is trainflow's local one, a process per step.
VARIANTS: dict[str, dict[str, Any] | None] = {
    "multiprocess": None,
    "forkserver": {"execution": {"config": {"multiprocess": {
        "start_method": {"forkserver": {"preload_modules": [MODULE]}}}}}},
    "in_process": {"execution": {"config": {"in_process": {}}}},
}  # fmt: skip


def shape(definitions: dg.Definitions) -> dict[str, Any]:
    """What must match trainflow: per asset its parents with their partition mappings,
    whether Dagster materializes it, its partitions, backfill policy, pools and checks; and
    under "steps", the steps a run of everything executes."""
    graph = definitions.resolve_asset_graph()
    found: dict[str, Any] = {
        "steps": sorted({a.node_def.name for a in graph.assets_defs if a.is_executable})
    }
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        parents = [
            (p.to_user_string(), repr(graph.get_partition_mapping(key, p)))
            for p in node.parent_keys
        ]
        found[key.to_user_string()] = (
            sorted(parents),
            node.is_materializable,
            repr(node.partitions_def),
            repr(node.backfill_policy),
            sorted(node.pools or ()),
            sorted(c.to_user_string() for c in node.check_keys),
        )
    return found


def steps() -> int:
    """How many steps a run of the whole graph executes (one process each, multiprocess)."""
    return len(shape(defs)["steps"])


def check_shape() -> None:
    """Exit naming each difference if this graph no longer has trainflow's shape."""
    from trainflow.definitions import defs as trainflow_defs  # heavy: only for the check

    ours, theirs = shape(defs), shape(trainflow_defs)
    differ = {
        name: {"noop": ours.get(name), "trainflow": theirs.get(name)}
        for name in sorted(ours.keys() | theirs.keys())
        if ours.get(name) != theirs.get(name)
    }
    if differ:
        sys.exit(f"the no-op graph's shape differs from trainflow's: {differ}")


def measure(variant: str, through: dt.date = LAST_DAY) -> float:
    """Wall seconds of `dagster asset materialize` of the whole graph over FIRST_DAY..
    `through` with the executor `variant` (a VARIANTS key), in a fresh instance (trainflow's
    local dagster.yaml: SQLite, telemetry off), its start-up and code loading included."""
    config = VARIANTS[variant]
    home = Path(tempfile.mkdtemp(prefix="trainflow-noop-"))
    try:
        shutil.copy(REPO_ROOT / "dagster.yaml", home)
        env = {**os.environ, "DAGSTER_HOME": str(home)}
        with dg.DagsterInstance.from_config(str(home)) as instance:  # made before the clock
            instance.add_dynamic_partitions("experiments", [EXPERIMENT])
        materialize = [str(BIN / "dagster"), "asset", "materialize", "-m", MODULE,
                       *(["--config-json", json.dumps(config)] if config else [])]  # fmt: skip
        started = time.perf_counter()
        # The three runs of the whole graph, as trainflow's: the days' features, the
        # experiment, the days' predictions.
        days = ["--partition-range", f"{FIRST_DAY}...{through}"]
        for select, partition in (
            (FEATURES_SIDE, days),
            (TRAINING_SIDE, ["--partition", EXPERIMENT]),
            (SCORING_SIDE, days),
        ):
            done = subprocess.run(
                [*materialize, "--select", select, *partition],
                env=env, cwd=REPO_ROOT, capture_output=True, text=True,
            )  # fmt: skip
            if done.returncode != 0:
                break
        seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(home, ignore_errors=True)
    if done.returncode != 0:
        sys.exit(f"noop graph ({variant}) failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--through", type=dt.date.fromisoformat, default=LAST_DAY)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    check_shape()
    n = steps()
    # Round-robin, so that load from other work on the machine hits every variant alike.
    runs: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for _ in range(args.repeat):
        for variant, seconds in runs.items():
            seconds.append(measure(variant, args.through))
    medians = {variant: statistics.median(seconds) for variant, seconds in runs.items()}
    print(
        f"no-op graph, {n} steps, window {FIRST_DAY}..{args.through}, "
        f"median of {args.repeat}, {os.cpu_count()} CPU(s)"
    )
    print(f"{'executor':>14} {'wall':>8} {'min..max':>14} {'per step over in_process':>26}")
    for variant, median in medians.items():
        spread = f"{min(runs[variant]):.1f}..{max(runs[variant]):.1f} s"
        per_step = (median - medians["in_process"]) / n
        print(f"{variant:>14} {median:6.2f} s {spread:>14} {per_step:24.2f} s")


if __name__ == "__main__":
    main()
