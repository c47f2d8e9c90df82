"""The dbt profile, written from trainflow's settings instead of read from the environment.

dagster-dbt passes the whole process environment to dbt and has no per-call option, so a
profile that reads `env_var(...)` makes dbt a second reader of the environment (and needs
the variables set, i.e. written, around each call). A profile rendered from `Settings`
keeps one reader (`settings.py`) and shows exactly what dbt connects to. The file names a
machine path, so it is written under TRAINFLOW_HOME at run time and never committed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

# The dbt executable of this interpreter's environment, so nothing depends on PATH.
DBT_EXECUTABLE = str(Path(sys.executable).parent / "dbt")
PROFILE_NAME = "trainflow"  # dbt_project.yml's `profile:`
TARGET = "local"


def write_profile(directory: Path, warehouse_path: Path) -> Path:
    """Write `profiles.yml` for a DuckDB warehouse file into `directory`; returns the folder
    (what dbt's `--profiles-dir` takes)."""
    profile = {
        PROFILE_NAME: {
            "target": TARGET,
            "outputs": {TARGET: {"type": "duckdb", "path": str(warehouse_path), "threads": 1}},
        }
    }
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "profiles.yml"
    partial = target.with_name("profiles.yml.partial")
    partial.write_text(
        "# Written by trainflow from its settings (TRAINFLOW_HOME, TRAINFLOW_WAREHOUSE_URL).\n"
        + yaml.safe_dump(profile, sort_keys=True)
    )
    partial.replace(target)  # never a half-written profile for a concurrent dbt call
    return directory
