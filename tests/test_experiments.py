"""Experiments side by side in one lake: a second config's training never replaces the
first one's rows, two experiments trained at once give the bytes they give one after the
other, and each reproduces bit-identically after the other trained (docs/experiments.md)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import polars as pl
import pytest
from mlflow import MlflowClient

from tests.conftest import BIN, REPO_ROOT
from tests.helpers.environment import QUICK_CONFIG, user_environment
from tests.helpers.graph import (
    DAILY_ASSET_NAMES,
    JAN_FEB,
    WHOLE_TABLE_ASSET_NAMES,
    graph_command,
    outcomes,
    run_graph,
    settings_for,
)
from trainflow.config import load_config
from trainflow.experiments import EXPERIMENT_TABLES, write_variant
from trainflow.lake.delta_lake import DeltaLake
from trainflow.settings import Settings

pytestmark = pytest.mark.timeout(1800)

FIRST = load_config(QUICK_CONFIG).name


def _per_experiment(lake: DeltaLake, table: str, column: str) -> dict[str, object]:
    frame = lake.read(table).select("experiment", column).unique()
    assert frame.height == frame["experiment"].n_unique(), f"{table}: one {column} per experiment"
    return dict(frame.iter_rows())


def _fingerprint(lake: DeltaLake) -> dict[str, dict[str, object]]:
    """Per training-side table and experiment: the content hash of its rows (for the model,
    also the model's sha256): what must not depend on what else trained, or when."""
    found = {table: _per_experiment(lake, table, "_content_hash") for table in EXPERIMENT_TABLES}
    found["model_sha256"] = _per_experiment(lake, "model", "model_sha256")
    # registry_entry's row holds its Dagster run id: compared by version and aliases instead.
    found["registry_entry"] = {
        name: (version, tuple(aliases))
        for name, version, aliases in lake.read("registry_entry")
        .select("experiment", "version", "aliases")
        .iter_rows()
    }
    return found


@pytest.fixture(scope="module")
def one_after_the_other(built_warehouse: Path, tmp_path_factory: pytest.TempPathFactory):
    """The quick experiment trained, then a second one in the same home, then the first again."""
    root = tmp_path_factory.mktemp("experiments")
    second = write_variant(QUICK_CONFIG, root, "31-leaves", {"num_leaves": 31})
    warehouse = root / "warehouse.duckdb"
    warehouse.write_bytes(built_warehouse.read_bytes())
    first_settings = settings_for(root / "home", warehouse)
    first_result = run_graph(first_settings)
    lake = DeltaLake(first_settings.lake_uri)
    before = lake.read("model", experiment=FIRST)
    second_result = run_graph(settings_for(root / "home", warehouse, second))
    again = run_graph(first_settings)
    return {
        "root": root,
        "warehouse": warehouse,
        "second": second,
        "lake": lake,
        "first_model_before": before,
        "second_outcomes": outcomes(second_result),
        "again_outcomes": outcomes(again),
        "settings": first_settings,
        "metadata": {
            FIRST: _metadata(first_result),
            load_config(second).name: _metadata(second_result),
        },
    }


def _metadata(result) -> dict[str, dict[str, object]]:
    """The model's and the evaluation report's materialization metadata in a run."""
    found = {}
    for asset in ("model", "evaluation_report"):
        (event,) = result.asset_materializations_for_node(asset)
        found[asset] = {k: getattr(v, "value", v) for k, v in event.metadata.items()}
    return found


def test_a_second_experiment_keeps_the_first_ones_rows(one_after_the_other) -> None:
    lake, second = one_after_the_other["lake"], load_config(one_after_the_other["second"]).name
    for table in EXPERIMENT_TABLES:
        assert set(lake.read(table)["experiment"]) == {FIRST, second}, table
    models = _per_experiment(lake, "model", "model_sha256")
    assert models[FIRST] != models[second]  # two models, not one written twice
    # The first experiment's model row is the one stored before the second trained.
    after = lake.read("model", experiment=FIRST)
    assert after.drop("experiment").equals(
        one_after_the_other["first_model_before"].drop("experiment")
    )
    # Each experiment reads its own columns back, with nothing of the other's.
    assert (
        lake.read("training_dataset", experiment=FIRST).columns
        == lake.read("training_dataset", experiment=second).columns
    )


def test_the_second_experiment_shares_the_daily_tables(one_after_the_other) -> None:
    """Features are computed once for every experiment: the second one's daily steps are
    cache hits, its training-side steps compute."""
    outcomes = one_after_the_other["second_outcomes"]
    for asset in DAILY_ASSET_NAMES:
        assert outcomes[asset] == {"hit": 59}, asset
    for asset in WHOLE_TABLE_ASSET_NAMES:
        assert outcomes[asset] == {"miss": 1}, asset


def test_the_first_experiment_again_is_a_cache_hit(one_after_the_other) -> None:
    outcomes = one_after_the_other["again_outcomes"]
    for asset in [*DAILY_ASSET_NAMES, *WHOLE_TABLE_ASSET_NAMES]:
        assert set(outcomes[asset]) == {"hit"}, asset


def test_two_experiments_at_once_give_the_bytes_of_one_after_the_other(
    one_after_the_other, tmp_path: Path
) -> None:
    """The daily steps first, then the two experiments' training runs in two processes at
    the same moment, into one lake: the same content hashes and model bytes as sequentially."""
    home = tmp_path / "home"
    first_env = _graph_env(home, QUICK_CONFIG, one_after_the_other["warehouse"], tmp_path)
    second_env = {**first_env, "TRAINFLOW_CONFIG": str(one_after_the_other["second"])}
    daily = subprocess.run(
        graph_command(*JAN_FEB, *DAILY_ASSET_NAMES), env=first_env, cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert daily.returncode == 0, daily.stderr[-3000:]
    # MLflow's SQLite store made here, once: two processes creating it at the same moment
    # race on its schema (a tracking server, as in prod, has no such first moment).
    settings = Settings.from_env(first_env)
    MlflowClient(
        settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri
    ).search_registered_models()
    both = [
        subprocess.Popen(
            graph_command(*JAN_FEB, *WHOLE_TABLE_ASSET_NAMES),
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / f"{n}.err").open("w"),
        )
        for n, env in enumerate((first_env, second_env))
    ]
    try:
        codes = [process.wait(timeout=900) for process in both]
    finally:
        for process in both:
            process.kill()
    assert codes == [0, 0], [(tmp_path / f"{n}.err").read_text()[-3000:] for n in range(2)]
    assert _fingerprint(DeltaLake(str(home / "lake"))) == _fingerprint(one_after_the_other["lake"])


def _graph_env(home: Path, config: Path, warehouse: Path, scratch: Path) -> dict[str, str]:
    """The graph process's environment: a home of its own with a Dagster instance folder."""
    env = user_environment(home, config, warehouse=warehouse)
    env["DAGSTER_HOME"] = str(scratch / "dagster")
    (scratch / "dagster").mkdir(exist_ok=True)
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def test_the_first_experiment_reproduces_after_the_second_trained(one_after_the_other) -> None:
    settings = one_after_the_other["settings"]
    run_id = one_after_the_other["lake"].read("model", experiment=FIRST)["mlflow_run_id"][0]
    env = user_environment(settings.home, QUICK_CONFIG, warehouse=one_after_the_other["warehouse"])
    dirty = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    extra = ["--allow-dirty"] if dirty and not os.environ.get("CI") else []
    done = subprocess.run(
        [str(BIN / "trainflow"), "reproduce", run_id, *extra], env=env, cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "reproduced exactly: identical model bytes and metrics" in done.stdout
    assert pl.read_delta(str(settings.home / "lake" / "model")).height == 2


def _trainflow(settings, warehouse: Path, *args: str) -> str:
    env = user_environment(settings.home, QUICK_CONFIG, warehouse=warehouse)
    done = subprocess.run(
        [str(BIN / "trainflow"), *args], env=env, cwd=REPO_ROOT, capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_experiments_lists_each_experiment_with_the_metrics_its_evaluation_recorded(
    one_after_the_other,
) -> None:
    listed = _trainflow(one_after_the_other["settings"], one_after_the_other["warehouse"],
                        "experiments")  # fmt: skip
    lines = {line.split()[0]: line for line in listed.splitlines()[1:]}
    assert set(lines) == set(one_after_the_other["metadata"])
    for name, metadata in one_after_the_other["metadata"].items():
        assert f"{metadata['evaluation_report']['test_roc_auc']:.4f} [" in lines[name]
        assert metadata["evaluation_report"]["gate"].startswith(lines[name].split()[-1])


def test_compare_shows_the_numbers_of_the_evaluation_assets(one_after_the_other) -> None:
    """Every figure `compare` prints is the evaluation's or the model's own (their
    materialization metadata), and its report page shows the same."""
    second = load_config(one_after_the_other["second"]).name
    settings, warehouse = one_after_the_other["settings"], one_after_the_other["warehouse"]
    figures = json.loads(_trainflow(settings, warehouse, "experiments", "compare", FIRST,
                                    second, "--json"))  # fmt: skip
    table = _trainflow(settings, warehouse, "experiments", "compare", FIRST, second)
    page = Path(figures["report"]).read_text()
    assert [e["name"] for e in figures["experiments"]] == [FIRST, second]
    for shown in figures["experiments"]:
        recorded = one_after_the_other["metadata"][shown["name"]]
        auc = shown["test"]["roc_auc"]
        assert round(auc["value"], 4) == recorded["evaluation_report"]["test_roc_auc"]
        assert auc["low"] < auc["value"] < auc["high"]
        assert recorded["evaluation_report"]["gate"].startswith(shown["gate_verdict"])
        assert shown["model_sha256"] == recorded["model"]["model_sha256"]
        assert round(shown["validation_roc_auc"], 4) == recorded["model"]["validation_roc_auc"]
        assert round(shown["train_seconds"], 2) == recorded["model"]["train_seconds"]
        cell = f"{auc['value']:.4f} [{auc['low']:.4f}, {auc['high']:.4f}]"
        assert cell in table and cell in page, cell
    # Same test window: the shared rows are every test row, and the paired difference's
    # point value is the difference of the two reports' test ROC AUC.
    (difference,) = figures["differences"]
    first_auc, second_auc = (e["test"]["roc_auc"]["value"] for e in figures["experiments"])
    assert difference["rows"] == figures["shared_rows"] == figures["experiments"][0]["test_rows"]
    assert abs(difference["difference"]["value"] - (second_auc - first_auc)) < 1e-9
    low, high = difference["difference"]["low"], difference["difference"]["high"]
    assert low <= difference["difference"]["value"] <= high
    assert f"{difference['difference']['value']:.4f} [{low:.4f}, {high:.4f}]" in page
    assert "data:image/png;base64," in page  # the ROC curves overlaid
