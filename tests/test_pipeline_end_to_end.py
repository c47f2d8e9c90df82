"""The whole graph on real data: January to train, February to validate and test.

Run the way a user runs it: `trainflow land` and `dagster asset materialize` as
subprocesses (multiprocess executor, one process per step), then everything a user would
check is read back from the Dagster instance, the lake, the report store and MLflow.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections import Counter
from pathlib import Path

import boto3
import dagster as dg
import polars as pl
import pytest
from mlflow import MlflowClient

from tests.conftest import QUICK_CONFIG, REPO_ROOT, user_environment
from tests.helpers.environment import whole_graph_commands
from trainflow.config import load_config
from trainflow.definitions import materialize_range
from trainflow.defs.code_versions import ASSET_CODE
from trainflow.lake.delta_lake import DeltaLake
from trainflow.settings import Settings

LAKE_ASSETS = list(ASSET_CODE)
RANGE = "2013-01-01...2013-02-28"


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (
        f"{' '.join(args)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-8000:]}"
    )
    return done


@pytest.fixture(scope="module")
def user_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return user_environment(tmp_path_factory.mktemp("trainflow_home"))


@pytest.fixture(scope="module")
def materialized(user_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    landed = run(["trainflow", "land", "--through", "2013-02-28"], user_env)
    assert "landed 59 day(s) 2013-01-01..2013-02-28" in landed.stdout
    done = [run(command, user_env) for command in whole_graph_commands(RANGE, QUICK_CONFIG)]
    return subprocess.CompletedProcess(
        [c for d in done for c in d.args],
        0,
        "".join(d.stdout for d in done),
        "".join(d.stderr for d in done),
    )


@pytest.fixture(scope="module")
def settings(user_env: dict[str, str]) -> Settings:
    return Settings.from_env(user_env)


def code_versions() -> dict[str, str | None]:
    """The derived code version of every lake asset, as the code location shows them."""
    from trainflow.definitions import defs

    graph = defs.resolve_asset_graph()
    return {name: graph.get(dg.AssetKey(name)).code_version for name in LAKE_ASSETS}


def latest(instance: dg.DagsterInstance, asset: str) -> dg.AssetMaterialization:
    event = instance.get_latest_materialization_event(dg.AssetKey(asset))
    assert event is not None and event.asset_materialization is not None, asset
    return event.asset_materialization


def test_every_asset_materialized_with_code_version_and_metadata(
    materialized, user_env, monkeypatch
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", user_env["DAGSTER_HOME"])
    with dg.DagsterInstance.get() as instance:
        for asset in LAKE_ASSETS:
            mat = latest(instance, asset)
            assert mat.tags is not None
            assert mat.tags.get("dagster/code_version") == code_versions()[asset]
            assert mat.metadata["dagster/row_count"].value > 0  # type: ignore[operator]
            assert isinstance(mat.metadata["delta_version"].value, int)
        # The CLI's range is one run in which every partition is materialized exactly once.
        days = [str(dt.date(2013, 1, 1) + dt.timedelta(n)) for n in range(59)]  # Jan-Feb
        for asset in ("raw_snapshot", "validated_flights", "flight_features"):
            records = instance.fetch_materializations(dg.AssetKey(asset), limit=1000).records
            events = [r.asset_materialization for r in records]
            assert Counter(e.partition for e in events if e) == dict.fromkeys(days, 1), asset
            assert {e.metadata["cache"].value for e in events if e} == {"miss"}
            assert len({r.run_id for r in records}) == 1
        snapshot = latest(instance, "raw_snapshot")  # the range's last day, 2013-02-28
        assert snapshot.partition == "2013-02-28"
        assert snapshot.metadata["cache"].value == "miss"
        assert len(str(snapshot.metadata["content_hash"].value)) == 64
        assert len(str(snapshot.metadata["data_version"].value)) == 64
        lake = DeltaLake(Settings.from_env(user_env).lake_uri)
        assert lake.read("raw_snapshot").height == 51955  # Jan + Feb 2013 flights
        config_hash = load_config(QUICK_CONFIG).config_hash
        assert latest(instance, "training_dataset").metadata["config_hash"].value == config_hash
        assert latest(instance, "model").metadata["config_hash"].value == config_hash


def test_the_terminal_shows_progress_not_debug_events(materialized) -> None:
    """As `make materialize` runs it (configs/run/terminal.yaml): each step's progress and
    cache decisions, not a DEBUG line per Dagster event (the UI keeps the full log)."""
    printed = materialized.stdout + materialized.stderr
    run_lines = [line for line in printed.splitlines() if " - dagster - " in line]
    # Dagster logs one line per step process before the run's logger config applies.
    debug = [line for line in run_lines if " - DEBUG - " in line]
    assert all(" - STEP_WORKER_STARTED - " in line for line in debug), debug[:3]
    assert len(run_lines) < 100, len(run_lines)
    assert "raw_snapshot: read 59/59 partitions, " in printed
    assert "rows/s" in printed
    assert "validated_flights: 0 of 59 partition(s) reused from cache, 59 computed" in printed


def test_registered_challenger_with_lineage_beats_baseline(materialized, settings) -> None:
    config = load_config(QUICK_CONFIG)
    client = MlflowClient(settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri)
    version = client.get_model_version_by_alias(config.registered_model_name, "challenger")
    tags = version.tags
    assert tags["config_hash"] == config.config_hash
    assert json.loads(tags["code_versions"]) == code_versions()
    assert set(json.loads(tags["input_delta_versions"])) == {"training_dataset", "flight_features"}
    assert len(tags["dagster_run_id"]) == 36

    report = DeltaLake(settings.lake_uri).read("evaluation_report")
    overall = report.filter((pl.col("slice") == "all") & (pl.col("metric") == "roc_auc"))
    auc = dict(zip(overall["role"], overall["value"], strict=True))
    assert auc["model"] > auc["baseline"]
    assert float(tags["test_roc_auc"]) == pytest.approx(auc["model"], abs=1e-6)
    slices = report.filter(pl.col("slice").is_in(["carrier", "origin"]))
    assert set(slices.filter(pl.col("slice") == "origin")["slice_value"]) == {"EWR", "JFK", "LGA"}

    run = client.get_run(version.run_id)
    assert run.data.metrics["test_roc_auc"] == pytest.approx(auc["model"])
    assert run.data.tags["model_sha256"] == tags["model_sha256"]


def test_report_files_are_in_the_lake(materialized, settings) -> None:
    report_uri = DeltaLake(settings.lake_uri).read("evaluation_report")["report_uri"][0]
    folder = Path(report_uri).parent
    assert (folder / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (folder / "calibration.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (folder / "report.md").read_text()
    assert "| model |" in markdown and "| baseline |" in markdown
    assert "<img" in (folder / "report.html").read_text()


def test_one_day_rematerialized_from_the_terminal(materialized, user_env, settings) -> None:
    lake = DeltaLake(settings.lake_uri)
    before = lake.version("flight_features")
    rows_before = lake.read("flight_features").height
    one_day = ["dagster", "asset", "materialize", "-m", "trainflow.definitions",
               "--select", "raw_snapshot,validated_flights,flight_features",
               "--partition", "2013-02-01"]  # fmt: skip
    run(one_day, user_env)
    assert lake.version("flight_features") == before  # unchanged inputs: a cache hit

    force = '{"resources": {"cache_policy": {"config": {"force_recompute": true}}}}'
    run([*one_day, "--config-json", force], user_env)
    assert lake.version("flight_features") == (before or 0) + 1
    assert lake.read("flight_features").height == rows_before  # replaced, not appended
    status = run(["trainflow", "status"], user_env).stdout
    assert "trainflow-flight-delay-quick@challenger" in status


def test_whole_graph_on_an_s3_lake(warehouse_copy, s3_environ, tmp_path) -> None:
    """The same assets and resources with the lake on S3 (moto over HTTP), in process."""
    settings = Settings.from_env(
        {
            **s3_environ,
            "TRAINFLOW_HOME": str(tmp_path),
            "TRAINFLOW_LAKE_URI": f"s3://{s3_environ['BUCKET']}/lake",
            "TRAINFLOW_WAREHOUSE_URL": str(warehouse_copy),
            "TRAINFLOW_CONFIG": str(QUICK_CONFIG),
        }
    )
    result = materialize_range(settings, "2013-01-01", "2013-02-28")
    assert result.success
    s3 = boto3.client("s3", endpoint_url=s3_environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
    keys = [
        o["Key"] for o in s3.list_objects_v2(Bucket=s3_environ["BUCKET"], MaxKeys=1000)["Contents"]
    ]
    for table in LAKE_ASSETS:
        assert f"lake/{table}/_delta_log/00000000000000000000.json" in keys
    assert any(k.endswith("/report.html") for k in keys)


def test_the_plain_script_and_the_graph_agree(materialized, settings) -> None:
    """docs/migration.md's side-by-side check: the notebook-style script over the same days
    and config lands on the same flights, splits and model bytes as the graph's lake."""
    from benchmarks import plain_pipeline

    run = plain_pipeline.measure(dt.date(2013, 2, 28), QUICK_CONFIG)
    assert plain_pipeline.differences_from_lake(run, settings) == []
    # The comparison can fail: a script that trained something else is caught.
    other = {**run, "model_sha256": "0" * 64, "rows": {**run["rows"], "test": 1}}
    found = plain_pipeline.differences_from_lake(other, settings)  # type: ignore[arg-type]
    assert [d.split(":")[0] for d in found] == ["test rows", "model sha256"]
