"""The dbt profile, written from trainflow's settings instead of read from the environment.

dagster-dbt passes the whole process environment to dbt and has no per-call option, so a
profile that reads `env_var(...)` for its locations makes dbt a second reader of the
environment. A profile rendered from the warehouse location keeps one reader (`settings.py`)
and shows exactly what dbt connects to. The one exception is PostgreSQL's password, which
dbt takes from PGPASSWORD as libpq does, so no secret is ever written to a file. The file
names a machine path or host, so it is written under TRAINFLOW_HOME at run time and never
committed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from trainflow.warehouse.base import Warehouse
from trainflow.warehouse.factory import warehouse_at

# The dbt executable of this interpreter's environment, so nothing depends on PATH.
DBT_EXECUTABLE = str(Path(sys.executable).parent / "dbt")
PROFILE_NAME = "trainflow"  # dbt_project.yml's `profile:`


def write_profile(directory: Path, warehouse: Warehouse | Path | str) -> Path:
    """Write `profiles.yml` for a warehouse (or its location) into `directory`; returns the
    folder (what dbt's `--profiles-dir` takes). The target is named after the warehouse kind
    (`duckdb`, `postgres`), which is what the models' dispatched macros key on."""
    wh = warehouse_at(warehouse) if isinstance(warehouse, Path | str) else warehouse
    profile = {PROFILE_NAME: {"target": wh.kind, "outputs": {wh.kind: wh.dbt_target()}}}
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "profiles.yml"
    partial = target.with_name("profiles.yml.partial")
    partial.write_text(
        "# Written by trainflow from its settings (TRAINFLOW_HOME, TRAINFLOW_WAREHOUSE_URL).\n"
        + yaml.safe_dump(profile, sort_keys=True)
    )
    partial.replace(target)  # never a half-written profile for a concurrent dbt call
    return directory
