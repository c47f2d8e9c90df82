"""`trainflow reproduce`: a recorded run retrains to identical bytes in a separate process,
after the lake has moved on; a tampered manifest or another commit is refused."""

import datetime as dt
import json
import os
import subprocess
from pathlib import Path

import duckdb
import pytest
from mlflow import MlflowClient

from tests.conftest import BIN, QUICK_CONFIG, REPO_ROOT
from tests.test_cache import recomputed, run_graph, settings_for
from trainflow.lake.delta_lake import DeltaLake
from trainflow.warehouse import landing


def trainflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "trainflow"), *args],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.fixture(scope="module")
def trained_then_moved_on(built_warehouse: Path, tmp_path_factory: pytest.TempPathFactory):
    """Run A on Jan-Feb; then 14 more days land, Jan 20 is restated, and the graph is
    re-materialized, so the lake and the registry have moved past A."""
    home = tmp_path_factory.mktemp("reproduce")
    warehouse = home / "warehouse.duckdb"
    warehouse.write_bytes(built_warehouse.read_bytes())
    settings = settings_for(home / "home", warehouse)
    run_graph(settings)
    client = MlflowClient(settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri)
    run_a = client.get_model_version_by_alias("trainflow-flight-delay-quick", "challenger").run_id

    landing.land(warehouse, [dt.date(2013, 3, d) for d in range(1, 15)])
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute(
            "update raw.flights set arr_delay = arr_delay + 45 "
            "where flight_date = date '2013-01-20' and source_row % 7 = 0"
        )
    later = run_graph(settings, days=("2013-01-01", "2013-03-14"))
    assert recomputed(later)["model"] == 1  # the restated day changed the training data
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAINFLOW_", "MLFLOW_"))}
    env.update(
        TRAINFLOW_HOME=str(settings.home),
        TRAINFLOW_WAREHOUSE_URL=str(warehouse),
        TRAINFLOW_CONFIG=str(QUICK_CONFIG),
    )
    return env, settings, run_a


def manifest_of(settings, run_id: str) -> dict:
    lake = DeltaLake(settings.lake_uri)
    return json.loads(Path(lake.table_uri("_manifests"), f"{run_id}.json").read_text())


def test_reproduce_a_earlier_run_exactly(trained_then_moved_on) -> None:
    env, settings, run_a = trained_then_moved_on
    done = trainflow(env, "reproduce", run_a)
    assert done.returncode == 0, done.stdout + done.stderr
    recorded = manifest_of(settings, run_a)["model"]["sha256"]
    assert (
        f"same  model sha256: recorded {recorded[:16]}, reproduced {recorded[:16]}" in done.stdout
    )
    assert "same  test roc_auc" in done.stdout
    assert "reproduced exactly" in done.stdout
    scratch = settings.home / "reproduce" / run_a / "model.txt"
    assert scratch.exists()
    # Nothing in production moved: the latest model is still the newer one.
    assert DeltaLake(settings.lake_uri).read("model")["model_sha256"][0] != recorded


def test_reproduce_by_model_version_and_dagster_run_id(trained_then_moved_on) -> None:
    env, settings, run_a = trained_then_moved_on
    assert trainflow(env, "reproduce", "1").returncode == 0
    dagster_run = manifest_of(settings, run_a)["dagster_run_id"]
    assert trainflow(env, "reproduce", dagster_run).returncode == 0


def test_tampered_partition_version_names_the_partition(trained_then_moved_on, tmp_path) -> None:
    env, settings, run_a = trained_then_moved_on
    manifest = manifest_of(settings, run_a)
    latest = DeltaLake(settings.lake_uri).version("flight_features")
    manifest["inputs"]["flight_features"]["partitions"]["2013-01-20"]["delta_version"] = latest
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(manifest))
    done = trainflow(env, "reproduce", "--manifest", str(tampered))
    assert done.returncode != 0
    assert "flight_features partition 2013-01-20" in done.stderr
    assert "does not match the manifest" in done.stderr

    manifest["inputs"]["flight_features"]["partitions"]["2013-01-20"]["delta_version"] = 999
    tampered.write_text(json.dumps(manifest))
    done = trainflow(env, "reproduce", "--manifest", str(tampered))
    assert done.returncode != 0
    assert "2013-01-20" in done.stderr and "version 999 does not exist" in done.stderr


def test_other_commit_is_refused_unless_allowed(trained_then_moved_on, tmp_path) -> None:
    env, settings, run_a = trained_then_moved_on
    manifest = manifest_of(settings, run_a)
    manifest["code"]["git"]["commit"] = "0" * 40
    other = tmp_path / "other.json"
    other.write_text(json.dumps(manifest))
    refused = trainflow(env, "reproduce", "--manifest", str(other))
    assert refused.returncode != 0
    assert "the run was trained at 0000000000000000000000000000000000000000" in refused.stderr
    allowed = trainflow(env, "reproduce", "--manifest", str(other), "--allow-other-commit")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "running anyway as asked" in allowed.stdout


def test_manifest_records_what_a_rerun_needs(trained_then_moved_on) -> None:
    _, settings, run_a = trained_then_moved_on
    manifest = manifest_of(settings, run_a)
    assert len(manifest["code"]["git"]["commit"]) == 40
    assert len(manifest["code"]["lockfile_sha256"]) == 64
    assert manifest["seeds"]["seed"] == 2013
    assert manifest["seeds"]["lightgbm"]["bagging_seed"] == 2013
    partitions = manifest["inputs"]["flight_features"]["partitions"]
    assert len(partitions) == 59 and all(len(p["content_hash"]) == 64 for p in partitions.values())
    # How much history each feature day rests on: January's windows reach before the data.
    assert (
        partitions["2013-01-05"]["history_days_present"],
        partitions["2013-01-05"]["history_days_expected"],
    ) == (4, 4)
    assert partitions["2013-02-28"]["history_days_present"] == 28
    history = manifest["inputs"]["flight_features"]["history"]
    assert history == {"max_missing_history_days": 0, "partitions_with_missing_history": {}}
    assert manifest["environment"]["libraries"]["lightgbm"]
    assert set(manifest["cache_keys"]) == {"training_dataset", "model"}
