"""`dg` (dagster-dg-cli) on this project, and the documented terminal commands printing no
library warning.

One fresh trainflow home with eight landed days and a config whose windows fit them (train
January 1-4, validate 5-6, test 7-8), so the whole graph runs in about half a minute. Every
command runs as a user types it (docs/runbook.md): from the repository root, the venv's
commands on PATH, no virtual environment activated and no PYTHONWARNINGS, so only the
filters of trainflow/quiet_warnings.py and the `[tool.dg]` settings keep the terminal quiet.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from tests.conftest import QUICK_CONFIG, REPO_ROOT, user_environment
from tests.dagster_dev import LOCATION, DagsterDev
from tests.helpers.environment import FEATURES_SIDE, SCORING_SIDE, TERMINAL, TRAINING_SIDE
from trainflow.config import load_config
from trainflow.definitions import build_definitions
from trainflow.defs.automation import DAILY_ASSETS
from trainflow.lake.delta_lake import DeltaLake
from trainflow.settings import Settings

FIRST, LAST = "2013-01-01", "2013-01-08"
DAYS = [str(dt.date(2013, 1, 1) + dt.timedelta(n)) for n in range(8)]
RANGE = f"{FIRST}...{LAST}"
SUPERSEDED = (
    "SupersessionWarning: Function `asset_materialize_command` is superseded and its usage is "
    "discouraged. Use 'dg launch --assets <selection>' instead."
)


def eight_day_config(folder: Path) -> Path:
    text = QUICK_CONFIG.read_text()
    for old, new in [
        ("train: {start: 2013-01-01, end: 2013-01-31}", "train: {start: 2013-01-01, end: 2013-01-04}"),
        ("validation: {start: 2013-02-01, end: 2013-02-14}", "validation: {start: 2013-01-05, end: 2013-01-06}"),
        ("test: {start: 2013-02-15, end: 2013-02-28}", "test: {start: 2013-01-07, end: 2013-01-08}"),
    ]:  # fmt: skip
        assert old in text, old
        text = text.replace(old, new)
    path = folder / "eight-days.yaml"
    path.write_text(text)
    return path


def warnings_in(stderr: str) -> list[str]:
    """Lines of a Python warning (`file:line: SomeWarning: text`) or of a dg notice."""
    return [
        line
        for line in stderr.splitlines()
        if "Warning" in line or "To suppress this warning" in line
    ]


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done


def quiet(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`args` succeeds and prints no warning."""
    done = run(args, env)
    assert warnings_in(done.stderr) == [], f"{' '.join(args)}:\n{done.stderr[-6000:]}"
    return done


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("dg_home")
    env = user_environment(home, eight_day_config(home))
    for inherited in ("PYTHONWARNINGS", "VIRTUAL_ENV"):
        env.pop(inherited, None)
    quiet(["trainflow", "land", "--through", LAST], env)
    return env


@pytest.fixture(scope="module")
def instance(env: dict[str, str]) -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        yield instance


@pytest.fixture(scope="module")
def launched(env: dict[str, str], instance: dg.DagsterInstance) -> dg.DagsterRun:
    """`dg launch` of the features side over the eight days (one run; returned), the
    config's experiment added and its training side launched (a second run), then the
    days' predictions (a third)."""
    quiet(["dg", "launch", "--assets", FEATURES_SIDE, "--partition-range", RANGE, "-c", TERMINAL],
          env)  # fmt: skip
    (daily,) = instance.get_runs(limit=1)
    add = ["trainflow", "experiments", "add", "--quiet", env["TRAINFLOW_CONFIG"]]
    experiment = quiet(add, env).stdout.strip()
    quiet(["dg", "launch", "--assets", TRAINING_SIDE, "--partition", experiment, "-c", TERMINAL],
          env)  # fmt: skip
    quiet(["dg", "launch", "--assets", SCORING_SIDE, "--partition-range", RANGE, "-c", TERMINAL],
          env)  # fmt: skip
    return daily


def partitions(instance: dg.DagsterInstance, asset: dg.AssetKey) -> Counter[str | None]:
    records = instance.fetch_materializations(asset, limit=1000).records
    return Counter(r.asset_materialization.partition for r in records if r.asset_materialization)


def test_dg_check_defs_loads_the_code_location(env) -> None:
    done = quiet(["dg", "check", "defs"], env)
    assert "All definitions loaded successfully." in done.stdout


def test_dg_list_defs_lists_every_definition(env) -> None:
    listed = json.loads(quiet(["dg", "list", "defs", "--json"], env).stdout)
    defs = build_definitions(Settings.from_env(env))
    graph = defs.resolve_asset_graph()
    assert {a["asset_key"] for a in listed["assets"]} == {
        key.to_user_string() for key in graph.get_all_asset_keys()
    }
    assert {"raw/flights", "flights_enriched", "flight_features", "model", "registry_entry"} <= {
        a["asset_key"] for a in listed["assets"]
    }
    assert {c["key"] for c in listed["asset_checks"]} == {
        key.to_user_string() for key in graph.asset_check_keys
    }
    assert [j["name"] for j in listed["jobs"]] == ["retrain"]
    assert [s["name"] for s in listed["schedules"]] == ["weekly_retrain"]
    assert {s["name"] for s in listed["sensors"]} == {s.name for s in defs.sensors}


def test_dg_launch_materializes_a_partition_range_in_one_run(launched, instance, env) -> None:
    assert launched.status == dg.DagsterRunStatus.SUCCESS
    assert launched.tags["dagster/asset_partition_range_start"] == FIRST
    assert launched.tags["dagster/asset_partition_range_end"] == LAST
    for asset in DAILY_ASSETS:
        assert partitions(instance, asset) == dict.fromkeys(DAYS, 1), asset
    model = instance.get_latest_materialization_event(dg.AssetKey("model"))
    assert model is not None and model.run_id != launched.run_id
    trained = instance.get_run_by_id(model.run_id)
    assert trained is not None and trained.status == dg.DagsterRunStatus.SUCCESS
    assert trained.tags["dagster/partition"] == load_config(Path(env["TRAINFLOW_CONFIG"])).name
    lake = DeltaLake(Settings.from_env(env).lake_uri)
    assert lake.read("flight_features")["day"].cast(str).unique().sort().to_list() == DAYS


def test_dg_launch_materializes_one_partition(launched, instance, env) -> None:
    quiet(["dg", "launch", "--assets", "raw_snapshot", "--partition", LAST, "-c", TERMINAL], env)
    (newest,) = instance.get_runs(limit=1)
    assert newest.run_id != launched.run_id
    assert newest.status == dg.DagsterRunStatus.SUCCESS
    counts = partitions(instance, dg.AssetKey("raw_snapshot"))
    assert counts == {**dict.fromkeys(DAYS, 1), LAST: 2}


def test_dagster_asset_materialize_keeps_working_with_only_its_supersession_notice(
    launched, instance, env
) -> None:
    """The command Dagster supersedes by `dg launch` says so itself, as it starts and before
    trainflow is imported (no filter of ours can reach it); nothing else warns."""
    done = run(
        ["dagster", "asset", "materialize", "-m", "trainflow.definitions", "--select",
         FEATURES_SIDE, "--partition-range", RANGE, "-c", TERMINAL],
        env,
    )  # fmt: skip
    assert [line.split(": ", 1)[1] for line in warnings_in(done.stderr)] == [SUPERSEDED]
    (newest,) = instance.get_runs(limit=1)
    assert newest.status == dg.DagsterRunStatus.SUCCESS
    assert newest.run_id != launched.run_id


def test_trainflow_status_prints_no_warning(launched, env) -> None:
    done = quiet(["trainflow", "status"], env)
    assert "flight_features" in done.stdout


def test_dg_dev_serves_the_trainflow_location_with_the_terminal_runs(
    launched, instance, env, tmp_path
) -> None:
    """The location dg serves has workspace.yaml's name, and the UI shows what the terminal
    ran. (Its log does show Dagster's line, at level WARNING, that the repository's
    dagster.yaml is not the instance's: `make instance` copies it into DAGSTER_HOME.)"""
    dev = DagsterDev(env, tmp_path / "dg-dev.log", command=("dg", "dev"))
    try:
        data = dev.graphql(
            '{ assetOrError(assetKey: {path: ["model"]}) { ... on Asset {'
            " definition { repository { location { name } } }"
            " assetMaterializations(limit: 1) { runId } } } }"
        )
    finally:
        dev.stop()
    asset = data["assetOrError"]
    assert asset["definition"]["repository"]["location"]["name"] == LOCATION
    newest = instance.get_latest_materialization_event(dg.AssetKey("model"))
    assert newest is not None
    assert asset["assetMaterializations"][0]["runId"] == newest.run_id
    assert warnings_in(dev.tail(200_000)) == [], dev.tail()
