"""The warehouse in the asset graph: landed source tables, the dbt models over them, and
the data contracts of the reference tables every flight joins.

The landed tables are external assets (`trainflow land` writes them, not Dagster), so the
UI shows lineage from each warehouse table through dbt to the lake assets.

`warehouse_models` is the `dbt build`. Its data tests (dbt's, shown as asset checks) read the
new data only: in a run over a partition range (or one partition) of the daily assets, only
the rows of those days (`dbt build --vars` first_day/last_day,
`dbt_project/macros/days_filter.sql`); in a run without one, every row. Each check result and
each model's materialization names the days tested (`dbt_tested_days`: `all`, or
`first...last`).

It is skipped when nothing it depends on changed since a build that succeeded with every test
passing and whose tests covered this run's days: the project, dbt, the warehouse's relations,
the source tables' columns and rows (`warehouse/dbt_state.py`). Its key is each model's
`dbt_build_key` metadata, the days it tested `dbt_tested_days`: a build that tested every row
serves any run, one that tested a range serves runs within it, and a run over other days (or
without a range) builds and tests again.
"""

import json
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, dbt_assets

from trainflow.contracts import (
    REJECT_RULE,
    SCHEMA_RULE,
    TABLE_EXPECTATIONS,
    TABLE_MIN_ROWS_RULE,
    ContractViolation,
)
from trainflow.defs.caching import CachePolicyResource
from trainflow.defs.dbt import dbt_cli, dbt_project, ensure_manifest
from trainflow.defs.partitions import run_day_window
from trainflow.defs.pods import step_tags
from trainflow.defs.resources import ContractsResource, WarehouseResource
from trainflow.lake.delta_lake import DayWindow
from trainflow.sources.nycflights13 import TABLES
from trainflow.stages.reference_tables import REFERENCE_TABLES, check_reference_tables
from trainflow.warehouse.dbt_state import days_label, dbt_vars, label_covers


def _raw_table_descriptions() -> dict[str, str]:
    """Each landed table's description, from the dbt project's `sources.yml` (one text for
    dbt docs and the Dagster UI)."""
    manifest = json.loads(ensure_manifest().read_text())
    return {
        source["name"]: " ".join(str(source.get("description") or "").split())
        for source in manifest["sources"].values()
        if source["source_name"] == "raw"
    }


def _landed_table(table: str, described: Mapping[str, str]) -> dg.AssetSpec:
    """A warehouse table `trainflow land` writes: shown in the graph (kind `table`; DuckDB
    here, PostgreSQL where definitions.py says so) and named as the table it is, never
    materialized by Dagster."""
    return dg.AssetSpec(
        key=dg.AssetKey(["raw", table]),
        group_name="warehouse",
        kinds={"duckdb", "table"},
        description=(
            f"Warehouse table `raw.{table}`, landed by `trainflow land` (not materialized by "
            f"Dagster). {described.get(table, '')}"
        ).strip(),
        metadata={"dagster/table_name": f"raw.{table}"},
    )


_RAW_DESCRIPTIONS = _raw_table_descriptions()
landed_tables = [_landed_table(table, _RAW_DESCRIPTIONS) for table in (*TABLES, "landings")]


class WarehouseTranslator(DagsterDbtTranslator):
    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "warehouse"


@dbt_assets(
    manifest=ensure_manifest(),
    project=dbt_project,
    dagster_dbt_translator=WarehouseTranslator(),
    # Lets one `--partition-range` run hold the unpartitioned dbt step with daily assets.
    backfill_policy=dg.BackfillPolicy.single_run(),
    op_tags=step_tags("warehouse_models", stage="warehouse"),
)
def warehouse_models(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    cache_policy: CachePolicyResource,
) -> Iterator[Any]:
    """`dbt build` of the staging models (views in the warehouse) and their tests, with the
    profile written for this warehouse from trainflow's settings; which rows the tests read
    and when the build is skipped: the module's docstring."""
    manifest = dbt_project.manifest_path
    days = run_day_window(context.run.tags)
    tested = days_label(days)
    key = warehouse.dbt_build_key(manifest)
    stored = None if cache_policy.forced(context) else _built_with(context, key, days)
    if stored is not None:
        context.log.info(
            f"dbt: nothing changed since build {key[:12]}, whose data tests read "
            f"{', '.join(sorted(set(stored.values())))} (this run: {tested}); dbt not run"
        )
        yield from _reused(context, key, stored)
        return
    context.log.info(
        "dbt: data tests on every row" if days is None else f"dbt: data tests on {tested} only"
    )
    dbt = dbt_cli(warehouse.write_dbt_profile())
    target_path = warehouse.dbt_target_path(context.run.run_id)
    args = ["build", *(["--vars", json.dumps(dbt_vars(days))] if days else [])]
    events: list[Any] = []
    try:
        events.extend(dbt.cli(args, context=context, target_path=target_path).stream())
    except Exception:
        # What dbt did before it failed (a failed test's check included), unkeyed: the
        # next run builds again.
        yield from _with_tested_days(events, tested, built=None)
        raise
    every_test_passed = all(e.passed for e in events if isinstance(e, dg.AssetCheckResult))
    built = warehouse.dbt_build_key(manifest) if every_test_passed else None  # views now exist
    yield from _with_tested_days(events, tested, built)


def _with_tested_days(events: list[Any], tested: str, built: str | None) -> Iterator[Any]:
    """dagster-dbt's events, each model's output and each test's check result naming the
    days tested; the outputs stamped with the build key `built` when every test passed."""
    for event in events:
        if isinstance(event, dg.Output):
            stamp = {"dbt_build_key": built, "cache": "miss"} if built else {}
            metadata = {**_rounded(event.metadata), **stamp, "dbt_tested_days": tested}
            event = event.with_metadata(metadata)
        elif isinstance(event, dg.AssetCheckResult):
            event = event.with_metadata({**_rounded(event.metadata), "dbt_tested_days": tested})
        yield event


def _rounded(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """dagster-dbt's metadata with its floats (`Execution Duration`: 0.142743) to 3 places."""
    return {
        key: round(value.value, 3)
        if isinstance(value, dg.FloatMetadataValue) and value.value is not None
        else value
        for key, value in metadata.items()
    }


def _built_with(
    context: dg.AssetExecutionContext, key: str, days: DayWindow | None
) -> dict[dg.AssetKey, str] | None:
    """The days each model's latest build tested, if every model this step builds or
    checks was last materialized by a build with `key` whose tests covered `days` (None:
    every row); else None."""
    checked = {check_key.asset_key for check_key in context.selected_asset_check_keys}
    tested: dict[dg.AssetKey, str] = {}
    for asset_key in context.selected_asset_keys | checked:
        event = context.instance.get_latest_materialization_event(asset_key)
        mat = event.asset_materialization if event else None
        stored = mat.metadata.get("dbt_build_key") if mat else None
        stored_days = mat.metadata.get("dbt_tested_days") if mat else None
        if stored is None or stored.value != key or stored_days is None:
            return None
        tested[asset_key] = str(stored_days.value)
        if not label_covers(tested[asset_key], days):
            return None
    return tested


def _reused(
    context: dg.AssetExecutionContext, key: str, tested: Mapping[dg.AssetKey, str]
) -> Iterator[Any]:
    """The build with the same key as this step's outcome: each model materialized again
    (lineage stays whole), each test reported as passed on exactly these source rows, over
    the days that build tested (which cover this run's)."""
    graph = context.job_def.asset_layer.asset_graph  # a model after the models it selects
    for asset_key in graph.toposorted_asset_keys:
        if asset_key in context.selected_asset_keys:
            yield dg.MaterializeResult(
                asset_key=asset_key,
                metadata={
                    "cache": "hit", "dbt_build_key": key, "dbt_tested_days": tested[asset_key]
                },
            )  # fmt: skip
    for check_key in sorted(context.selected_asset_check_keys):
        yield dg.AssetCheckResult(
            asset_key=check_key.asset_key, check_name=check_key.name, passed=True,
            metadata={
                "cache": f"hit: passed in build {key[:12]} on the same source rows",
                "dbt_tested_days": tested[check_key.asset_key],
            },
        )  # fmt: skip


TABLE_CHECKS = {
    SCHEMA_RULE: "Every contract column is present with its type.",
    TABLE_MIN_ROWS_RULE: "The table has at least the contract's minimum rows.",
    REJECT_RULE: "No more than the contract's share of rows breaks a row rule.",
}
assert tuple(TABLE_CHECKS) == TABLE_EXPECTATIONS


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            name,
            asset=dg.AssetKey(f"stg_{table}"),
            description=f"{text} ({table}.yaml)",
            blocking=True,
        )
        for table in REFERENCE_TABLES
        for name, text in TABLE_CHECKS.items()
    ],
    # Lets a table's checks after a failed one go unevaluated (no result), as on
    # validated_flights, instead of reporting an outcome nobody computed.
    can_subset=True,
    op_tags=step_tags("reference_table_contracts", stage="warehouse"),
)
def reference_table_contracts(
    context: dg.AssetCheckExecutionContext,
    warehouse: WarehouseResource,
    contracts: ContractsResource,
) -> Iterator[dg.AssetCheckResult]:
    """The reference tables' contract expectations as checks in the UI, each with what it
    observed. A failed expectation fails the step (blocking); those after it in a table are
    not evaluated.

    Dagster's blocking checks do not stop every downstream path (dagster#25112), so
    `raw_snapshot` enforces the same contracts itself before it snapshots any flight.
    """
    selected = context.selected_asset_check_keys
    outcomes = check_reference_tables(warehouse.models(), contracts.reference_contracts())
    for table, outcome in outcomes.items():
        key = dg.AssetKey(f"stg_{table}")
        if isinstance(outcome, ContractViolation):
            failed = TABLE_EXPECTATIONS.index(outcome.expectation)
            results = [
                dg.AssetCheckResult(asset_key=key, check_name=name, passed=True)
                for name in TABLE_EXPECTATIONS[:failed]
            ] + [
                dg.AssetCheckResult(
                    asset_key=key,
                    check_name=outcome.expectation,
                    passed=False,
                    severity=dg.AssetCheckSeverity.ERROR,
                    metadata={"violation": str(outcome)},
                )
            ]
        else:
            results = [
                dg.AssetCheckResult(asset_key=key, check_name=name, passed=True, metadata=seen)
                for name, seen in outcome.observed().items()
            ]
        yield from (r for r in results if dg.AssetCheckKey(key, r.check_name or "") in selected)
