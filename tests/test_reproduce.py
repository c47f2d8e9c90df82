"""`trainflow reproduce`: a recorded run retrains to identical bytes in a separate process,
after the lake has moved on; a tampered manifest or another commit is refused."""

import datetime as dt
import json
import os
import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest
from deltalake import DeltaTable
from mlflow import MlflowClient

from tests.conftest import BIN, REPO_ROOT
from tests.helpers.environment import user_environment
from tests.helpers.graph import copy_of_the_code, recomputed, run_graph, settings_for
from trainflow.lake.delta_lake import DeltaLake
from trainflow.lake.retention import NEVER_EXPIRE_LOG
from trainflow.warehouse import landing


def _working_tree_is_dirty() -> bool:
    changes = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return bool(changes.stdout.strip())


# A developer's uncommitted work makes every run these tests record "dirty", which reproduce
# rightly refuses; on such a tree the tests pass --allow-dirty. CI runs a clean clone (and
# sets CI), so there the strict path runs, and the dirty refusal has a test of its own.
ALLOW_DIRTY = ["--allow-dirty"] if _working_tree_is_dirty() and not os.environ.get("CI") else []


def trainflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    extra = ALLOW_DIRTY if args[:1] == ("reproduce",) and "--allow-dirty" not in args else []
    return subprocess.run(
        [str(BIN / "trainflow"), *args, *extra],
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
    env = user_environment(settings.home, warehouse=warehouse, instance=None)
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


def clone_of_this_commit(target: Path) -> Path:
    """A git clone of the commit under test: its code is what the run was trained with."""
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(target)], check=True)
    return target


def test_a_dirty_checkout_is_refused_unless_allowed(trained_then_moved_on, tmp_path) -> None:
    env, _, run_a = trained_then_moved_on
    clone = clone_of_this_commit(tmp_path / "clone")
    readme = clone / "README.md"
    readme.write_text(readme.read_text() + "\nan uncommitted line\n")
    env = {**env, "PYTHONPATH": str(clone / "src")}
    refused = subprocess.run(
        [str(BIN / "trainflow"), "reproduce", run_a], env=env, capture_output=True, text=True
    )  # strictly: no --allow-dirty, whatever this working tree holds
    assert refused.returncode != 0
    assert "this checkout has uncommitted changes" in refused.stderr
    allowed = trainflow(env, "reproduce", run_a, "--allow-dirty")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "WARNING: this checkout has uncommitted changes; running anyway" in allowed.stdout


def test_an_unknown_commit_never_matches(trained_then_moved_on, tmp_path) -> None:
    env, settings, run_a = trained_then_moved_on
    manifest = manifest_of(settings, run_a)
    recorded = manifest["code"]["git"]["commit"]
    unknown = tmp_path / "unknown.json"
    unknown.write_text(
        json.dumps(
            {**manifest, "code": {**manifest["code"], "git": {"commit": "unknown", "dirty": None}}}
        )
    )
    refused = trainflow(env, "reproduce", "--manifest", str(unknown))
    assert refused.returncode != 0 and "the commit is unknown (recorded unknown" in refused.stderr

    # Code without git (as in a container image): unknown, unless it carries its commit.
    code = copy_of_the_code(tmp_path / "no-git")
    without_git = {**env, "PYTHONPATH": str(code / "src")}
    refused = trainflow(without_git, "reproduce", run_a)
    assert refused.returncode != 0 and "this code unknown" in refused.stderr
    carried = trainflow({**without_git, "TRAINFLOW_GIT_COMMIT": recorded}, "reproduce", run_a)
    assert carried.returncode == 0, carried.stdout + carried.stderr


def test_another_environment_is_refused_unless_allowed(trained_then_moved_on, tmp_path) -> None:
    env, settings, run_a = trained_then_moved_on
    manifest = manifest_of(settings, run_a)
    manifest["code"]["lockfile_sha256"] = "0" * 64
    manifest["environment"]["libraries"]["lightgbm"] = "3.0.0"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(manifest))
    refused = trainflow(env, "reproduce", "--manifest", str(other))
    assert refused.returncode != 0
    assert "requirements.lock sha256" in refused.stderr
    assert "lightgbm" in refused.stderr and "recorded 3.0.0" in refused.stderr
    allowed = trainflow(env, "reproduce", "--manifest", str(other), "--allow-other-env")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "WARNING: this environment differs from the recorded one" in allowed.stdout
    assert "same  test roc_auc" in allowed.stdout  # --manifest compares the metrics too


def test_from_raw_rebuilds_every_partition_of_the_chain(trained_then_moved_on) -> None:
    """Run A, after the lake moved on (Jan 20 restated, March landed): validation and
    features rebuilt from the recorded raw_snapshot versions match partition by partition."""
    env, settings, run_a = trained_then_moved_on
    done = trainflow(env, "reproduce", run_a, "--from-raw")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    validated = [line for line in lines if "validated_flights partition" in line]
    features = [line for line in lines if "flight_features partition" in line]
    assert len(validated) == 59 and all(line.strip().startswith("same") for line in validated)
    assert len(features) == 59 and all(line.strip().startswith("same") for line in features)
    assert any("validated_flights partition 2013-01-20" in line for line in validated)
    assert "reproduced exactly" in done.stdout
    manifest = manifest_of(settings, run_a)
    assert set(manifest["inputs"]["raw_snapshot"]["versions"]) == {"0"}  # before the restatement


def test_from_raw_names_the_first_partition_other_code_would_change(
    trained_then_moved_on, tmp_path
) -> None:
    """The same commit with a feature edited (and --allow-dirty): the recorded features
    were not produced by this code, and the first partition that proves it is named."""
    env, _, run_a = trained_then_moved_on
    clone = clone_of_this_commit(tmp_path / "clone")
    features = clone / "src" / "trainflow" / "features" / "flights.py"
    features.write_text(
        features.read_text().replace("SMOOTHING_FLIGHTS = 20.0", "SMOOTHING_FLIGHTS = 25.0")
    )
    env = {**env, "PYTHONPATH": str(clone / "src")}
    done = trainflow(env, "reproduce", run_a, "--from-raw", "--allow-dirty")
    assert done.returncode != 0
    assert "DIFFERENT  flight_features partition 2013-01-02" in done.stdout
    assert "first: flight_features partition 2013-01-02" in done.stderr
    assert all(
        line.strip().startswith("same")
        for line in done.stdout.splitlines()
        if "validated_flights partition" in line
    )


def test_vacuum_keeps_every_version_a_manifest_needs_and_reproduce_still_matches(
    trained_then_moved_on, tmp_path
) -> None:
    """Last in this module: it vacuums the module's lake. A careless vacuum of a copy
    breaks reproduce; `trainflow vacuum` removes replaced and orphaned files and keeps the
    versions of every registered model, which then reproduce bit for bit."""
    env, settings, run_a = trained_then_moved_on
    lake_root = Path(settings.lake_uri)
    # A write killed before its commit: a file no commit names.
    orphan = lake_root / "flight_features" / "day=2013-01-20" / "part-00000-killed.parquet"
    orphan.write_bytes(b"PAR1 half a file")

    careless_home = tmp_path / "careless"
    shutil.copytree(settings.home, careless_home)
    DeltaTable(str(careless_home / "lake" / "flight_features")).vacuum(
        retention_hours=0, dry_run=False, enforce_retention_duration=False, full=True
    )
    careless = trainflow({**env, "TRAINFLOW_HOME": str(careless_home)}, "reproduce", run_a)
    assert careless.returncode != 0  # run A's January 20 was vacuumed away

    assert DeltaTable(str(lake_root / "flight_features")).metadata().configuration == (
        NEVER_EXPIRE_LOG
    )
    dry = trainflow(env, "vacuum", "--retention-hours", "0", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert orphan.exists()
    done = trainflow(env, "vacuum", "--retention-hours", "0")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not orphan.exists()
    removed = {
        line.split()[0]: int(line.split(" removed ")[1].split(" ")[0])
        for line in done.stdout.splitlines()[1:]
    }
    # In flight_features only the orphan: every replaced file is one run A's version reads.
    assert removed["flight_features"] == 1
    # Tables no manifest reads lose the files their later commits replaced.
    assert removed["model"] >= 1 and removed["evaluation_report"] >= 1
    assert dry.stdout.replace("would remove", "removed") == done.stdout
    client = MlflowClient(settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri)
    versions = client.search_model_versions("name = 'trainflow-flight-delay-quick'")
    assert len(versions) == 2
    champion = client.get_model_version_by_alias("trainflow-flight-delay-quick", "champion")
    for version in ("1", str(champion.version)):
        reproduced = trainflow(env, "reproduce", version)
        assert reproduced.returncode == 0, reproduced.stdout + reproduced.stderr
        assert "reproduced exactly" in reproduced.stdout
    from_raw = trainflow(env, "reproduce", run_a, "--from-raw")
    assert from_raw.returncode == 0 and "reproduced exactly" in from_raw.stdout
