"""What a `dbt build` of the warehouse models depends on, as one key.

The build creates views and runs data tests. Its outcome can change only if the project
changes (models, tests, macros, sources, vars: the parsed manifest's checksums and the
project file), dbt itself changes (core and adapter versions), the warehouse it builds in
changes (adapter, database, schema), the source tables change (their columns and their
rows), or a view it created is gone. A build that succeeded with the same key would do
nothing new, so the dbt step skips it (`defs/warehouse.py`); a run that changes nothing
costs no dbt process.

The data tests on day-keyed models test only the days of a run over a partition range
(`dbt_project/macros/days_filter.sql`), so a build covers its key *and* the days it tested:
`days_label` records them (`all`, or `first...last`) next to the key, and a later
run reuses the build only if its key is the same and the days it would test are among them
(`label_covers`). Keeping one recorded range, not a union of every range tested since the
key last changed, is the simple rule: a run over other days builds and tests those days
(and records them instead), never reuses a build that did not test them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from importlib.metadata import version
from pathlib import Path

from trainflow.lake.delta_lake import DayWindow
from trainflow.warehouse.base import MODEL_SCHEMA, Warehouse
from trainflow.warehouse.changes import table_checksums


def project_state(manifest_path: Path, project_file: Path, adapter: str) -> dict[str, object]:
    """The parsed project: every node's checksum (models, tests), the project's own macros,
    the sources as declared, and dbt_project.yml (vars)."""
    manifest = json.loads(manifest_path.read_text())
    return {
        "nodes": {uid: node["checksum"]["checksum"] for uid, node in manifest["nodes"].items()},
        "macros": {
            uid: hashlib.sha256(macro["macro_sql"].encode()).hexdigest()
            for uid, macro in manifest["macros"].items()
            if macro["package_name"] == manifest["metadata"].get("project_name", "trainflow")
        },
        "sources": {
            uid: [source["schema"], source["identifier"], sorted(source.get("columns", {}))]
            for uid, source in manifest["sources"].items()
        },
        "project_file": hashlib.sha256(project_file.read_bytes()).hexdigest(),
        "dbt": {dist: version(dist) for dist in ("dbt-core", f"dbt-{adapter}")},
    }


def warehouse_state(warehouse: Warehouse, source_tables: list[str]) -> dict[str, object]:
    """The warehouse side: where dbt builds (no secret is part of a dbt target), which
    relations exist in the model schema, the source tables' columns and rows."""
    target = {k: v for k, v in warehouse.dbt_target().items() if k != "threads"}
    relations = warehouse.read(
        "select table_name, table_type from information_schema.tables "
        "where table_schema = ? order by table_name",
        [MODEL_SCHEMA],
    )
    columns = warehouse.read(
        "select table_name, column_name, data_type from information_schema.columns "
        "where table_schema = 'raw' order by table_name, column_name"
    )
    return {
        "target": {k: str(v) for k, v in target.items()},
        "relations": [list(r) for r in relations.iter_rows()],
        "source_columns": [list(r) for r in columns.iter_rows()],
        "source_rows": table_checksums(warehouse, source_tables),
    }


def dbt_build_key(
    manifest_path: Path, project_file: Path, warehouse: Warehouse, source_tables: list[str]
) -> str:
    state = {
        "project": project_state(manifest_path, project_file, warehouse.kind),
        "warehouse": warehouse_state(warehouse, source_tables),
    }
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


# A build whose data tests read every row.
ALL_DAYS = "all"


def days_label(days: DayWindow | None) -> str:
    """The days a build's data tests read, as recorded: `all` (None) or `first...last`."""
    return ALL_DAYS if days is None else f"{days.first.isoformat()}...{days.last.isoformat()}"


def parse_days_label(label: str) -> DayWindow | None:
    """The inverse of `days_label`; raises ValueError on anything else."""
    if label == ALL_DAYS:
        return None
    first, sep, last = label.partition("...")
    if not sep:
        raise ValueError(f"not a tested-days label: {label!r}")
    return DayWindow(dt.date.fromisoformat(first), dt.date.fromisoformat(last))


def label_covers(tested: str, wanted: DayWindow | None) -> bool:
    """Whether a build whose tests read `tested` (a label) read every row a run over
    `wanted` (None: every row) would: `all` covers anything, a range only the ranges within
    it. Rows without a day are read by every build (days_filter.sql)."""
    try:
        done = parse_days_label(tested)
    except ValueError:
        return False
    if done is None:
        return True
    return wanted is not None and done.first <= wanted.first and wanted.last <= done.last


def dbt_vars(days: DayWindow | None) -> dict[str, str]:
    """The `dbt build --vars` that restrict the data tests to `days` (none: every row)."""
    if days is None:
        return {}
    return {"first_day": days.first.isoformat(), "last_day": days.last.isoformat()}
