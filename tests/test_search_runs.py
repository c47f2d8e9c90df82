"""`trainflow search` over real trials (configs/quick-search.yaml: 4 trials, 2 per round, on
January and February): trials run side by side as Dagster runs, each an experiment of its
own in the lake; the best by validation ROC AUC goes through the gate under the search's
name; a repeat trains nothing; a CPU budget stops it; a wider space adds only new trials."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml
from mlflow import MlflowClient

from tests.conftest import BIN, REPO_ROOT
from tests.helpers.environment import QUICK_CONFIG, user_environment
from tests.helpers.graph import DAILY_ASSET_NAMES, run_graph, settings_for
from trainflow.config import load_config
from trainflow.defs.search_runs import TRIAL_TAG
from trainflow.lake.delta_lake import DeltaLake
from trainflow.registry.search_log import PARENT_TAG
from trainflow.search import search_name_of

pytestmark = pytest.mark.timeout(1800)

SEARCH_CONFIG = REPO_ROOT / "configs" / "quick-search.yaml"
NAME = load_config(SEARCH_CONFIG).name


def _search(env: dict[str, str], config: Path) -> str:
    done = subprocess.run(
        [str(BIN / "trainflow"), "search", str(config)], env=env, cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def _variant(folder: Path, **search: object) -> Path:
    raw = yaml.safe_load(SEARCH_CONFIG.read_text())
    raw["search"].update(search)
    path = folder / f"search-{len(list(folder.glob('search-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _trained(stdout: str) -> int:
    return int(re.search(r"(\d+) trained now", stdout).group(1))


@pytest.fixture(scope="module")
def searched(built_warehouse: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("search")
    warehouse = root / "warehouse.duckdb"
    warehouse.write_bytes(built_warehouse.read_bytes())
    settings = settings_for(root / "home", warehouse)
    env = user_environment(settings.home, QUICK_CONFIG, warehouse=warehouse)
    run_graph(settings, selection=[dg.AssetKey(a) for a in DAILY_ASSET_NAMES])  # the features
    lake = DeltaLake(settings.lake_uri)
    first = _search(env, SEARCH_CONFIG)
    versions = {t: lake.version(t) for t in ("training_dataset", "model", "registry_entry")}
    again = _search(env, SEARCH_CONFIG)
    return {
        "root": root, "env": env, "lake": lake, "first": first, "again": again,
        "versions": versions, "dagster_home": Path(env["DAGSTER_HOME"]),
        "mlflow": settings.mlflow_tracking_uri,
    }  # fmt: skip


def _trial_rows(lake: DeltaLake) -> pl.DataFrame:
    return (
        lake.read("model")
        .filter(pl.col("experiment").str.contains(r"\.trial-\d{3}$"))
        .sort("experiment")
    )


def test_each_trial_is_an_experiment_and_the_best_by_validation_is_the_candidate(searched):
    lake = searched["lake"]
    trials = _trial_rows(lake)
    assert trials["experiment"].to_list() == [f"{NAME}.trial-{n:03d}" for n in range(4)]
    assert "count budget reached: 4 of 4 trials" in searched["first"]
    assert _trained(searched["first"]) == 4
    best = trials.sort("validation_roc_auc", descending=True).row(0, named=True)
    assert (
        f"best {best['experiment']} (validation ROC AUC {best['validation_roc_auc']:.4f})"
        in (searched["first"])
    )
    # Trials are trained and scored on validation only: no trial has a test evaluation or a
    # registry entry; the candidate (the best params under the search's name) has both.
    assert set(lake.read("evaluation_report")["experiment"]) == {NAME}
    assert set(lake.read("registry_entry")["experiment"]) == {NAME}
    candidate = lake.read("model", experiment=NAME).row(0, named=True)
    assert candidate["model_sha256"] == best["model_sha256"]  # the same params, the same bytes
    space = load_config(SEARCH_CONFIG).search.space
    for row in trials.iter_rows(named=True):
        params = json.loads(row["manifest_json"])["config"]["model"]["params"]
        for name, p in space.items():
            assert p.low <= params[name] <= p.high, (row["experiment"], name)


def test_the_trials_of_a_round_run_side_by_side(searched):
    """Each trial is a Dagster run of its own experiment partition, tagged with its name; a
    round's two runs overlap."""
    with dg.DagsterInstance.from_config(str(searched["dagster_home"])) as instance:
        runs = {
            r.dagster_run.tags[TRIAL_TAG]: r
            for r in instance.get_run_records(dg.RunsFilter(tags={"trainflow/search": NAME}))
            if TRIAL_TAG in r.dagster_run.tags
        }
        partitions = set(instance.get_dynamic_partitions("experiments"))
    assert sorted(runs) == [f"{NAME}.trial-{n:03d}" for n in range(4)]
    # Each trial is a partition of the training side's experiments, as the candidate is.
    for name, record in runs.items():
        assert record.dagster_run.tags["dagster/partition"] == name
    assert {*runs, NAME} <= partitions
    for a, b in ((0, 1), (2, 3)):
        one, two = runs[f"{NAME}.trial-{a:03d}"], runs[f"{NAME}.trial-{b:03d}"]
        assert one.start_time < two.end_time and two.start_time < one.end_time
    # The next round is asked only when the first is done.
    assert max(runs[f"{NAME}.trial-00{n}"].end_time for n in (0, 1)) <= min(
        runs[f"{NAME}.trial-00{n}"].start_time for n in (2, 3)
    )


def test_a_repeated_search_trains_nothing(searched):
    assert _trained(searched["again"]) == 0
    lake = searched["lake"]
    assert {t: lake.version(t) for t in searched["versions"]} == searched["versions"]
    parent = re.search(r"MLflow parent run (\w+)", searched["first"]).group(1)
    assert f"MLflow parent run {parent}" in searched["again"]


def test_the_search_is_one_mlflow_parent_run_with_a_child_run_per_trial(searched):
    client = MlflowClient(searched["mlflow"])
    parent_id = re.search(r"MLflow parent run (\w+)", searched["first"]).group(1)
    parent = client.get_run(parent_id)
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.name == NAME
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}'"
    )
    trial_runs = set(_trial_rows(searched["lake"])["mlflow_run_id"])
    assert {c.info.run_id for c in children} == trial_runs
    best = _trial_rows(searched["lake"])["validation_roc_auc"].max()
    assert parent.data.metrics["best_validation_roc_auc"] == best


def test_the_report_shows_every_trial_with_its_validation_metric(searched):
    lake = searched["lake"]
    report = Path(re.search(r"report: (\S+)", searched["first"]).group(1))
    text = report.with_suffix(".md").read_text()
    for row in _trial_rows(lake).iter_rows(named=True):
        line = next(li for li in text.splitlines() if li.startswith(f"| {row['experiment']}"))
        assert f"| {row['validation_roc_auc']:.4f} |" in line
    assert "data:image/png;base64," in report.read_text()
    assert search_name_of(f"{NAME}.trial-003") == NAME


def test_a_cpu_budget_stops_the_search_and_says_so(searched):
    """A budget below one round's training: the first round (already in the lake) is
    all it runs, and it says why."""
    tight = _variant(searched["root"], cpu_seconds=0.5)
    out = _search(searched["env"], tight)
    assert re.search(r"CPU budget spent: [\d.]+ of 0\.5 CPU-seconds after 2 of 4 trials", out)
    assert _trained(out) == 0


def test_a_wider_space_keeps_the_trials_run_and_adds_only_new_ones(searched):
    raw = yaml.safe_load(SEARCH_CONFIG.read_text())["search"]
    space = {**raw["space"], "num_leaves": {"type": "int", "low": 7, "high": 255, "log": True}}
    wider = _variant(searched["root"], space=space, trials=6)
    before = _trial_rows(searched["lake"]).select("experiment", "model_sha256")
    out = _search(searched["env"], wider)
    assert _trained(out) == 2
    after = _trial_rows(searched["lake"])
    assert after["experiment"].to_list() == [f"{NAME}.trial-{n:03d}" for n in range(6)]
    assert after.select("experiment", "model_sha256").head(4).equals(before)
