"""The dbt project as dagster-dbt sees it: where it is, how dbt is called, and its manifest.

Apart from the asset definitions (`warehouse.py`) so that the wheel build
(`trainflow/packaging.py`) can parse a bundled copy without loading the asset graph.

Why not dagster-dbt's own packaging (`DbtProject(packaged_project_dir=...)` with
`dagster-dbt project prepare-and-package`): `DbtProject` switches to the packaged copy
whenever that folder exists, so a copy left in a source checkout would silently shadow the
repository's models (and stop re-parsing on edits); it requires the source project to exist
even where only the packaged copy does (an installed wheel); its `prepare` needs a
profiles.yml inside the project, which trainflow never writes there; and its sync copies
the whole project folder, run artifacts and logs of local runs included. Instead
`settings.py` decides which project folder is used (the repository's, or the copy bundled
into the wheel), and the wheel build parses its bundled copy with `parse_dbt_project`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject

from trainflow.settings import DBT_PROJECT_DIR, SOURCE_CHECKOUT
from trainflow.warehouse.dbt_profile import DBT_EXECUTABLE, write_profile

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR)


def dbt_cli(profiles_dir: Path, project_dir: Path = DBT_PROJECT_DIR) -> DbtCliResource:
    """dbt over the project with a profile trainflow wrote into `profiles_dir`.

    Built when dbt runs, not as a Definitions resource: dagster-dbt checks at load time that
    `profiles_dir` holds a profiles.yml, and trainflow writes that file from its settings
    only when a step needs it (loading the code location writes nothing).
    """
    return DbtCliResource(
        project_dir=str(project_dir),
        profiles_dir=str(profiles_dir),
        dbt_executable=DBT_EXECUTABLE,
    )


def parse_dbt_project(project_dir: Path) -> Path:
    """`dbt parse` of the project in `project_dir` into its target/manifest.json (returned).

    Parsing connects to no database, so a throwaway profile serves.
    """
    project = DbtProject(project_dir=project_dir)
    with tempfile.TemporaryDirectory() as folder:
        profiles = write_profile(Path(folder), Path(folder) / "parse-only.duckdb")
        dbt_cli(profiles, project_dir).cli(
            ["parse", "--quiet"], target_path=project.target_path
        ).wait()
    return project.manifest_path


def ensure_manifest() -> Path:
    """The dbt manifest, parsed first in a source checkout when missing or older than a
    project file.

    The manifest holds absolute paths of this machine, so it is built, never committed.
    (dagster-dbt's `prepare_if_dev` re-parses on every load under `dagster dev`, which
    costs every step process of a run several seconds; a freshness check does not.)
    An installed package carries the manifest its build prepared and never writes into its
    own folder: a missing one is an error, not a parse.
    """
    manifest = dbt_project.manifest_path
    if not SOURCE_CHECKOUT:
        if not manifest.is_file():
            raise FileNotFoundError(
                f"{manifest} is missing: this trainflow package was not built with "
                "`make wheel`, which bundles the dbt project with its parsed manifest"
            )
        return manifest
    sources = [
        p for p in DBT_PROJECT_DIR.rglob("*")
        if p.suffix in {".sql", ".yml", ".yaml"} and "target" not in p.parts
    ]  # fmt: skip
    if manifest.exists() and all(p.stat().st_mtime <= manifest.stat().st_mtime for p in sources):
        return manifest
    return parse_dbt_project(DBT_PROJECT_DIR)
