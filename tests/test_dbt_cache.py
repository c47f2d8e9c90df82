"""dbt builds only when something a build depends on changed, and never in the source tree."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg

from tests.conftest import REPO_ROOT
from trainflow.definitions import build_resources
from trainflow.defs.caching import FORCE_TAG
from trainflow.defs.warehouse import warehouse_models
from trainflow.settings import Settings
from trainflow.warehouse import landing
from trainflow.warehouse.factory import warehouse_at


def build(settings: Settings, instance: dg.DagsterInstance, **tags: str) -> dict[str, str]:
    """One materialization of every dbt model and test: each model's cache decision."""
    result = dg.materialize(
        [warehouse_models], resources=build_resources(settings), instance=instance, tags=tags
    )
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks)
    return {
        m.asset_key.to_user_string(): str(m.metadata["cache"].value)
        for m in result.asset_materializations_for_node("warehouse_models")
    }


def test_dbt_runs_only_when_its_project_or_sources_changed(tmp_path: Path) -> None:
    settings = Settings.from_env({"TRAINFLOW_HOME": str(tmp_path)})
    landing.land(settings.warehouse_url, [dt.date(2013, 1, 1), dt.date(2013, 1, 2)])
    invocations = settings.dbt_target_dir
    repo_target = sorted((REPO_ROOT / "dbt_project" / "target").glob("*"))

    with dg.instance_for_test() as instance:
        first = build(settings, instance)
        assert "flights_enriched" in first and set(first.values()) == {"miss"}
        assert len(list(invocations.iterdir())) == 1

        assert set(build(settings, instance).values()) == {"hit"}  # nothing changed
        assert len(list(invocations.iterdir())) == 1  # dbt was not called

        landing.land(settings.warehouse_url, [dt.date(2013, 1, 3)])  # source rows changed
        assert set(build(settings, instance).values()) == {"miss"}
        assert set(build(settings, instance).values()) == {"hit"}

        with warehouse_at(settings.warehouse_url).transaction() as tx:
            tx.execute("drop view main.stg_planes")  # a relation the build made is gone
        assert set(build(settings, instance).values()) == {"miss"}

        assert set(build(settings, instance, **{FORCE_TAG: "true"}).values()) == {"miss"}
        assert len(list(invocations.iterdir())) == 4

    # Invocation folders live under TRAINFLOW_HOME, never in the dbt project.
    assert sorted((REPO_ROOT / "dbt_project" / "target").glob("*")) == repo_target


def test_only_the_newest_dbt_invocations_are_kept(tmp_path: Path) -> None:
    settings = Settings.from_env({"TRAINFLOW_HOME": str(tmp_path)})
    warehouse = build_resources(settings)["warehouse"]
    created = []
    for run in range(14):
        folder = warehouse.dbt_target_path(f"run{run:05d}")  # type: ignore[attr-defined]
        folder.mkdir(parents=True)
        created.append(folder)
    kept = sorted(settings.dbt_target_dir.iterdir())
    assert len(kept) == 10 and kept == sorted(created[-10:])
