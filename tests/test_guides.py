"""The how-to guides in docs/, followed step by step on a copy of the repository.

Each guide marks its steps for this test: `<!-- file: PATH -->` before a code block writes
it to PATH, `<!-- edit: PATH -->` before a ```diff block applies it to PATH (context and
`-` lines must match the file exactly once), `<!-- run -->` before a ```bash block runs it
from the copy's root. So a guide that no longer matches the code fails here, and the test
does exactly what a reader would.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from tests.helpers.environment import BIN, REPO_ROOT, user_environment
from tests.helpers.graph import (
    cache_outcomes,
    copy_of_the_code,
    materializations_in_run,
    run_graph_from_code,
)
from trainflow.lake.delta_lake import DeltaLake
from trainflow.settings import Settings

STEP = re.compile(r"<!-- (file|edit|run)(?:: (\S+))? -->\n```[^\n]*\n(.*?)```", re.S)


@dataclass(frozen=True)
class Step:
    kind: str
    path: str | None
    body: str


def steps(guide: str) -> list[Step]:
    found = [Step(k, p, b) for k, p, b in STEP.findall((REPO_ROOT / "docs" / guide).read_text())]
    assert found, f"{guide} marks no steps"
    return found


def apply_diff(path: Path, diff: str) -> None:
    lines = diff.rstrip("\n").split("\n")
    old = [line[1:] for line in lines if line[:1] in {" ", "-"}]
    new = [line[1:] for line in lines if line[:1] in {" ", "+"}]
    text = path.read_text()
    before = "\n".join(old) + "\n"
    assert text.count(before) == 1, f"the guide's edit does not match {path.name}:\n{before}"
    path.write_text(text.replace(before, "\n".join(new) + "\n"))


def follow(guide: str, root: Path, env: dict[str, str]) -> list[subprocess.CompletedProcess]:
    """Write, edit and run as the guide says, from `root`; returns each command's result."""
    ran = []
    for step in steps(guide):
        if step.kind == "file":
            target = root / str(step.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(step.body)
        elif step.kind == "edit":
            apply_diff(root / str(step.path), step.body)
        else:
            command = step.body.replace("\\\n", " ").replace(".venv/bin/", f"{BIN}/")
            words = shlex.split(command)
            assigned = dict(w.split("=", 1) for w in words if re.match(r"^[A-Z_]+=", w))
            argv = [w for w in words if not re.match(r"^[A-Z_]+=", w)]
            run_env = {**env, **assigned}
            ran.append(subprocess.run(argv, env=run_env, cwd=root, capture_output=True, text=True))
            assert ran[-1].returncode == 0, ran[-1].stdout[-3000:] + ran[-1].stderr[-5000:]
    return ran


@pytest.fixture
def repository(warehouse_copy: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the code, a warehouse and a lake the unchanged code has already built."""
    root = copy_of_the_code(tmp_path / "repo")
    env = user_environment(
        tmp_path / "home", root / "configs" / "quick.yaml", warehouse=warehouse_copy
    )
    env["PYTHONPATH"] = str(root / "src")
    done, before, _ = run_graph_from_code(root, env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert f"package {root / 'src' / 'trainflow' / '__init__.py'}" in done.stdout
    assert before["flight_features"]["miss"] == 59
    return root, env


def newest_run_of(instance: dg.DagsterInstance, asset: str) -> str:
    """The run that materialized `asset` last (the daily run or an experiment's)."""
    event = instance.get_latest_materialization_event(dg.AssetKey(asset))
    assert event is not None, asset
    return event.run_id


def latest_run_cache(env: dict[str, str], asset: str) -> dict[str, int]:
    """hit / miss counts of `asset` in the newest run that materialized it."""
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        run_id = newest_run_of(instance, asset)
        return dict(cache_outcomes(materializations_in_run(instance, run_id))[asset])


def test_how_to_add_a_feature(repository) -> None:
    root, env = repository
    follow("how-to-add-a-feature.md", root, env)
    lake = DeltaLake(Settings.from_env(env).lake_uri)
    features = lake.read("flight_features")
    assert features["is_weekend"].null_count() == 0  # every partition recomputed with it
    weekend = features.filter(pl.col("day").dt.weekday() >= 6)["is_weekend"].unique().to_list()
    assert weekend == [1]
    assert "is_weekend" in lake.read("training_dataset").columns
    assert "is_weekend" in lake.read("model")["feature_names"][0].to_list()
    assert (
        "| `is_weekend` | 1 on Saturdays and Sundays. | `day` |"
        in (root / "docs" / "features.md").read_text()
    )
    assert latest_run_cache(env, "validated_flights") == {"hit": 59}
    assert latest_run_cache(env, "flight_features") == {"miss": 59}


def test_how_to_add_a_dataset(repository) -> None:
    root, env = repository
    follow("how-to-add-a-dataset.md", root, env)
    lake = DeltaLake(Settings.from_env(env).lake_uri)
    validated = lake.read("validated_flights")
    holidays = validated.filter(pl.col("is_holiday"))["day"].unique().sort().to_list()
    assert [d.isoformat() for d in holidays] == ["2013-01-01", "2013-01-21", "2013-02-18"]
    assert latest_run_cache(env, "raw_snapshot") == {"miss": 59}  # every row gained a column
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        daily_run = newest_run_of(instance, "raw_snapshot")  # the dbt checks ran in it
        checks = [
            e.dagster_event.event_specific_data
            for e in instance.all_logs(
                daily_run, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
            )
            if e.dagster_event is not None
        ]
    holiday_checks = {
        c.check_name: c.passed for c in checks if c.asset_key.to_user_string() == "stg_us_holidays"
    }
    assert holiday_checks == {"schema": True, "min_rows": True, "max_reject_fraction": True}


def test_the_migration_guide_names_what_exists() -> None:
    """docs/migration.md's stage table and steps name files, script functions, assets,
    steps and config keys that exist, so the guide cannot drift from the code unseen."""
    from benchmarks import plain_pipeline

    from trainflow.config import ExperimentConfig
    from trainflow.definitions import defs

    text = (REPO_ROOT / "docs" / "migration.md").read_text()
    table = [line.split(" | ") for line in text.splitlines() if line.startswith("| ")][1:]
    assert len(table) == 7, "one row per notebook cell"
    names = re.compile(r"`([A-Za-z_]+)(?:\(.*?\))?`")
    script = {n for row in table for n in names.findall(row[1])}
    assert script and [n for n in script if not hasattr(plain_pipeline, n)] == []
    graph = defs.resolve_asset_graph()
    assets = {key.to_user_string() for key in graph.get_all_asset_keys()}
    steps_ = {a.op.name for a in graph.assets_defs if a.is_executable}
    pipeline = {n for row in table for n in names.findall(row[2])}
    assert {"raw_snapshot", "model", "registry_entry", "warehouse_models"} <= pipeline
    assert [
        n for n in pipeline if n not in assets | steps_ and not hasattr(plain_pipeline, n)
    ] == []
    keys = {k.rstrip(":") for row in table for k in re.findall(r"`(\w+:)`", row[3])}
    assert keys and keys <= set(ExperimentConfig.model_fields), keys
    paths = {p for p in re.findall(r"`([\w./*-]+/[\w./*-]*)`", text)}
    assert paths and [p for p in paths if not list(REPO_ROOT.glob(p))] == []


def test_how_to_add_an_experiment(repository) -> None:
    """One config file, no Python: the new experiment trains beside the first (features
    shared: cache hits) and compares with it."""
    root, env = repository
    edited = {s.path for s in steps("experiments.md") if s.kind in {"file", "edit"}}
    assert edited == {"configs/quick-fewer-leaves.yaml"}
    lake = DeltaLake(Settings.from_env(env).lake_uri)
    features = lake.version("flight_features")
    ran = follow("experiments.md", root, env)
    names = {"flight-delay-2013-quick", "flight-delay-2013-quick-fewer-leaves"}
    for table in ("training_dataset", "model", "evaluation_report", "registry_entry"):
        assert set(lake.read(table)["experiment"]) == names, table
    assert lake.version("flight_features") == features  # shared: not run again
    assert latest_run_cache(env, "model") == {"miss": 1}
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert set(instance.get_dynamic_partitions("experiments")) == names
    compared = ran[-1].stdout
    assert "paired test roc_auc difference, flight-delay-2013-quick-fewer-leaves - " in compared
    assert "report: " in compared
