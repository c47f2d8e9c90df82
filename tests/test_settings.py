"""One reader of the environment: `settings.py`. Every other module, the dbt project and
the docs are held to it here, so a stray `os.environ` read or a second home for the design
cannot creep back in."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT
from trainflow.settings import Settings, SettingsError
from trainflow.warehouse.dbt_profile import write_profile

PACKAGE = REPO_ROOT / "src" / "trainflow"


def environment_reads(path: Path) -> list[str]:
    """`os.environ` / `os.getenv` / `os.putenv` uses in one Python file, as 'file:line'."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            and node.attr in {"environ", "getenv", "putenv", "unsetenv"}
        ):
            found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            names = {alias.name for alias in node.names}
            if names & {"environ", "getenv", "putenv"}:
                found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    return found


def test_only_settings_reads_the_environment() -> None:
    reads = [r for p in sorted(PACKAGE.rglob("*.py")) for r in environment_reads(p)]
    assert reads and all(r.startswith("src/trainflow/settings.py:") for r in reads), reads


def test_the_dbt_project_reads_no_environment_variable() -> None:
    files = [p for p in (REPO_ROOT / "dbt_project").rglob("*") if p.suffix in {".yml", ".sql"}]
    offenders = [
        str(p.relative_to(REPO_ROOT))
        for p in files
        if "target" not in p.parts and "env_var" in p.read_text()
    ]
    assert files and offenders == []


def test_dbt_profile_is_rendered_from_settings(tmp_path) -> None:
    settings = Settings.from_env(
        {"TRAINFLOW_HOME": str(tmp_path), "TRAINFLOW_WAREHOUSE_URL": str(tmp_path / "w.duckdb")}
    )
    folder = write_profile(settings.dbt_profiles_dir, settings.warehouse_url)
    profile = yaml.safe_load((folder / "profiles.yml").read_text())
    assert folder == tmp_path / "dbt"
    assert profile["trainflow"]["outputs"]["duckdb"]["path"] == str(tmp_path / "w.duckdb")


def test_dagster_home_is_a_setting(tmp_path) -> None:
    assert Settings.from_env({"TRAINFLOW_HOME": str(tmp_path)}).dagster_home is None
    found = Settings.from_env({"DAGSTER_HOME": str(tmp_path / "dagster")}).dagster_home
    assert found == tmp_path / "dagster"


def test_the_design_lives_in_the_repository_docs() -> None:
    """Code and docs cite the project's own docs/, never a file outside the repository: no
    relative path in them climbs above the repository root."""
    outside = [
        f"{p.relative_to(REPO_ROOT)}: {ref}"
        for p in [REPO_ROOT / "README.md", *REPO_ROOT.glob("docs/*.md"), *PACKAGE.rglob("*.py")]
        for ref in re.findall(r"(?:\.\./)+[\w.-]+", p.read_text())
        if not (p.parent / ref).resolve().is_relative_to(REPO_ROOT)
    ]
    assert outside == []
    for doc in ("architecture.md", "profiles.md", "conventions.md"):
        assert (REPO_ROOT / "docs" / doc).is_file(), doc


def test_the_prod_profile_refuses_local_fallbacks(tmp_path) -> None:
    """prod without its services would quietly write to local files inside a pod."""
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"TRAINFLOW_PROFILE": "prod", "TRAINFLOW_HOME": str(tmp_path)})
    for variable in ("TRAINFLOW_LAKE_URI", "TRAINFLOW_WAREHOUSE_URL", "MLFLOW_TRACKING_URI"):
        assert variable in str(refused.value)
    prod = Settings.from_env(
        {
            "TRAINFLOW_PROFILE": "prod",
            "TRAINFLOW_LAKE_URI": "s3://bucket/lake",
            "TRAINFLOW_WAREHOUSE_URL": "postgresql://trainflow@db:5432/warehouse",
            "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        }
    )
    assert (prod.lake_uri, prod.warehouse_url) == (
        "s3://bucket/lake",
        "postgresql://trainflow@db:5432/warehouse",
    )


def test_the_executor_follows_the_profile_unless_named(tmp_path) -> None:
    prod = {
        "TRAINFLOW_PROFILE": "prod",
        "TRAINFLOW_LAKE_URI": "s3://bucket/lake",
        "TRAINFLOW_WAREHOUSE_URL": "postgresql://trainflow@db:5432/warehouse",
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
    }
    assert Settings.from_env({"TRAINFLOW_HOME": str(tmp_path)}).executor == "multiprocess"
    assert Settings.from_env(prod).executor == "k8s"
    assert Settings.from_env({**prod, "TRAINFLOW_EXECUTOR": "multiprocess"}).executor == (
        "multiprocess"
    )
    with pytest.raises(SettingsError, match="TRAINFLOW_EXECUTOR='celery'"):
        Settings.from_env({**prod, "TRAINFLOW_EXECUTOR": "celery"})
