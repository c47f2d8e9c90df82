"""The prod profile's MLflow against real servers, nothing mocked: `mlflow server` with a
PostgreSQL backend store (a database made for this session and dropped after it) and its
artifacts in S3 (moto, through the server's `mlflow-artifacts:/` proxy), a lake on S3.

A model trained by the real graph (in its own process, like a step pod) registers through
the server; its aliases are visible over the server's REST API, its artifacts are objects
in the bucket, `trainflow reproduce` of its version is identical through the server, and
the password in MLFLOW_TRACKING_URI reaches no log, event, metadata or manifest.

PostgreSQL must be running on 127.0.0.1:5432 with trust auth for user `postgres` (as in
CI; TRAINFLOW_TEST_POSTGRES_URL points elsewhere): the session fails, never skips, without.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import mlflow
import pytest
from dagster_aws.s3 import S3Resource
from dagster_mlflow.resources import MlFlow
from mlflow import MlflowClient

from tests.conftest import (
    BIN,
    QUICK_CONFIG,
    S3_TEST_ENV,
    free_port,
    fresh_postgres_database,
)
from tests.helpers.environment import user_environment
from tests.helpers.graph import JAN_FEB, materializations_in_run, printed_run_id, run_graph_process
from tests.helpers.servers import wait_for_http
from tests.test_reproduce import trainflow
from trainflow.config import load_config
from trainflow.definitions import build_resources
from trainflow.lake.delta_lake import DeltaLake
from trainflow.manifest import MANIFEST_ARTIFACT
from trainflow.registry import CHALLENGER, CHAMPION, DAGSTER_RUN_ID_TAG, MODEL_TEXT_ARTIFACT
from trainflow.settings import Settings, redact_userinfo

# What a careless deployment puts in MLFLOW_TRACKING_URI; it must never be seen again.
SECRET = f"s3cret-{uuid.uuid4().hex[:12]}"


# --- the redaction helper and the settings, without servers ------------------------------


def test_userinfo_is_redacted_from_uris_and_from_text() -> None:
    assert redact_userinfo("https://bob:pw@mlflow.example:5000/") == "https://mlflow.example:5000/"
    assert redact_userinfo("postgresql://u:p%40ss@db:5432/mlflow") == "postgresql://db:5432/mlflow"
    assert redact_userinfo("http://token@host/x") == "http://host/x"
    line = "View run a at: http://u:p@h:1/#/experiments/1/runs/2 (and s3://bucket/key)"
    assert (
        redact_userinfo(line)
        == "View run a at: http://h:1/#/experiments/1/runs/2 (and s3://bucket/key)"
    )
    for clean in ("http://127.0.0.1:5000", "sqlite:////tmp/a@b/mlflow.db", "s3://b/p@x"):
        assert redact_userinfo(clean) == clean


def test_a_tracking_server_chooses_the_artifact_root(tmp_path: Path) -> None:
    local = Settings.from_env({"TRAINFLOW_HOME": str(tmp_path)})
    assert not local.mlflow_server
    assert local.mlflow_artifact_uri == (tmp_path / "mlflow" / "artifacts").as_uri()
    assert local.registry_lock_dir == tmp_path / "mlflow"
    server = Settings.from_env(
        {"TRAINFLOW_HOME": str(tmp_path), "MLFLOW_TRACKING_URI": "https://mlflow.example"}
    )
    assert server.mlflow_server and server.mlflow_artifact_uri is None
    assert server.mlflow_client_uri == "https://mlflow.example"
    assert server.registry_lock_dir == tmp_path / "locks"
    resource = build_resources(server)["mlflow_tracking"]
    assert resource.artifact_uri is None  # type: ignore[attr-defined]
    assert resource.tracking_uri == "https://mlflow.example"  # type: ignore[attr-defined]


def test_a_password_in_the_tracking_uri_stays_out_of_settings_and_config(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "TRAINFLOW_HOME": str(tmp_path),
            "MLFLOW_TRACKING_URI": f"https://trainflow:{SECRET}@mlflow.example",
        }
    )
    assert settings.mlflow_tracking_uri == "https://mlflow.example"
    assert settings.mlflow_credentials_in_uri
    assert settings.mlflow_client_uri is None  # MLflow reads MLFLOW_TRACKING_URI itself
    assert SECRET not in repr(settings)
    resources = build_resources(settings)
    tracking = resources["mlflow_tracking"]
    assert isinstance(tracking.tracking_uri, dg.EnvVar)  # type: ignore[attr-defined]
    assert tracking.tracking_uri == "MLFLOW_TRACKING_URI"  # type: ignore[attr-defined]
    assert SECRET not in repr(resources)


def test_the_s3_side_of_the_lake_is_dagster_aws_s3resource_without_credentials() -> None:
    settings = Settings.from_env(
        {
            "TRAINFLOW_LAKE_URI": "s3://bucket/lake",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
            "AWS_REGION": "eu-west-1",
        }
    )
    s3 = build_resources(settings)["lake"].s3  # type: ignore[attr-defined]
    assert isinstance(s3, S3Resource)
    assert (s3.endpoint_url, s3.region_name) == ("http://127.0.0.1:9", "eu-west-1")
    assert (s3.aws_access_key_id, s3.aws_secret_access_key, s3.aws_session_token) == (None,) * 3


# --- real servers -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def mlflow_database() -> Iterator[str]:
    """A fresh PostgreSQL database for the tracking server; dropped at the end."""
    with fresh_postgres_database("mlflow") as url:
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; psycopg2 is installed.
        yield url.replace("postgresql://", "postgresql+psycopg2://", 1)


@pytest.fixture(scope="session")
def artifact_bucket(moto_endpoint: str) -> str:
    bucket = f"mlflow-{uuid.uuid4().hex[:12]}"
    s3_client(moto_endpoint).create_bucket(Bucket=bucket)
    return bucket


def s3_client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=S3_TEST_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_TEST_ENV["AWS_SECRET_ACCESS_KEY"],
    )


def keys(endpoint: str, bucket: str, prefix: str = "") -> list[str]:
    pages = (
        s3_client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    )
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.fixture(scope="session")
def mlflow_server(
    mlflow_database: str,
    moto_endpoint: str,
    artifact_bucket: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """`mlflow server` on a free loopback port: PostgreSQL backend store, artifacts proxied
    to s3://<bucket>/mlflow on moto. Stopped by its process group (it runs uvicorn workers)."""
    port = free_port()
    log = tmp_path_factory.mktemp("mlflow-server") / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    env.update(
        S3_TEST_ENV,
        AWS_REGION="us-east-1",
        # The server's S3 client (boto3, inside MLflow) finds moto through this variable.
        MLFLOW_S3_ENDPOINT_URL=moto_endpoint,
    )
    command = [
        str(BIN / "mlflow"), "server",
        "--backend-store-uri", mlflow_database,
        "--artifacts-destination", f"s3://{artifact_bucket}/mlflow",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        # The first start migrates the database: longer than the default wait.
        wait_for_http(f"{url}/health", proc, log, seconds=180)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def rest(server: str, endpoint: str, **params: str) -> dict[str, Any]:
    """GET on the tracking server's REST API."""
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{server}/api/2.0/mlflow/{endpoint}?{query}", timeout=10) as r:
        found: dict[str, Any] = json.loads(r.read())
    return found


@pytest.fixture(scope="module")
def trained(
    mlflow_server: str,
    moto_endpoint: str,
    built_warehouse: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """The graph over Jan-Feb in its own process (tests/helpers/graph.py, the real assets and
    resources), with MLflow on the server, by a URI that carries a password, and the lake,
    reports and manifests on S3."""
    home = tmp_path_factory.mktemp("mlflow-prod")
    warehouse = home / "warehouse.duckdb"
    shutil.copy(built_warehouse, warehouse)
    lake_bucket = f"lake-{uuid.uuid4().hex[:12]}"
    s3_client(moto_endpoint).create_bucket(Bucket=lake_bucket)
    host = mlflow_server.removeprefix("http://")
    # The local profile with the MLflow server and an S3 lake (prod also needs the
    # PostgreSQL warehouse, which tests/test_prod_end_to_end.py covers).
    env = user_environment(
        home / "home",
        warehouse=warehouse,
        lake=f"s3://{lake_bucket}/lake",
        mlflow_tracking_uri=f"http://trainflow:{SECRET}@{host}",
        instance="default",
    )
    env.update(
        S3_TEST_ENV, AWS_ENDPOINT_URL=moto_endpoint, AWS_ALLOW_HTTP="true", AWS_REGION="us-east-1"
    )
    done = run_graph_process(env, *JAN_FEB)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    run_id = printed_run_id(done.stdout)
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        events = [dg.serialize_value(entry) for entry in instance.all_logs(run_id)]
        materializations = {
            mat.asset_key.to_user_string(): mat for mat in materializations_in_run(instance, run_id)
        }
    settings = Settings.from_env(env)
    return {
        "env": env,
        "settings": settings,
        "lake_bucket": lake_bucket,
        "run_id": run_id,
        "output": done.stdout + done.stderr,
        "events": events,
        "materializations": materializations,
        "lake": DeltaLake(settings.lake_uri, {**settings.storage_options, **S3_TEST_ENV}),
        "model_name": load_config(QUICK_CONFIG).registered_model_name,
    }


def test_the_version_and_its_aliases_are_registered_on_the_server(
    trained: dict[str, Any], mlflow_server: str
) -> None:
    name = trained["model_name"]
    entry = trained["lake"].read("registry_entry").row(0, named=True)
    assert entry["version"] == 1 and sorted(entry["aliases"]) == [CHALLENGER, CHAMPION]
    model = trained["lake"].read("model").row(0, named=True)
    for alias in (CHAMPION, CHALLENGER):
        found = rest(mlflow_server, "registered-models/alias", name=name, alias=alias)
        version = found["model_version"]
        assert version["version"] == "1", found
        assert version["run_id"] == model["mlflow_run_id"]
        assert {t["key"]: t["value"] for t in version["tags"]}["model_sha256"] == model[
            "model_sha256"
        ]
    mat = trained["materializations"]["registry_entry"]
    assert (
        mat.metadata["mlflow_model_version_url"].value
        == f"{mlflow_server}/#/models/{name}/versions/1"
    )


def test_the_artifacts_are_objects_in_the_bucket_behind_the_server(
    trained: dict[str, Any], mlflow_server: str, moto_endpoint: str, artifact_bucket: str
) -> None:
    model = trained["lake"].read("model").row(0, named=True)
    run = rest(mlflow_server, "runs/get", run_id=model["mlflow_run_id"])["run"]
    # No local root was forced: the server's proxy, which writes to the bucket.
    assert run["info"]["artifact_uri"].startswith("mlflow-artifacts:/")
    stored = keys(moto_endpoint, artifact_bucket, "mlflow/")
    prefix = f"{run['info']['experiment_id']}/{model['mlflow_run_id']}/artifacts/"
    for artifact in (MODEL_TEXT_ARTIFACT, MANIFEST_ARTIFACT, "evaluation/report.md"):
        assert f"mlflow/{prefix}{artifact}" in stored, artifact
    text = (
        s3_client(moto_endpoint)
        .get_object(Bucket=artifact_bucket, Key=f"mlflow/{prefix}{MODEL_TEXT_ARTIFACT}")["Body"]
        .read()
    )
    assert text.decode() == model["model_text"]
    # MLflow's LightGBM flavour: a logged model, stored beside the run (MLflow 3 layout).
    assert any(k.startswith("mlflow/") and k.endswith("/artifacts/MLmodel") for k in stored)
    # The lake's copies of the manifest and the report, through S3Resource's client.
    lake_keys = keys(moto_endpoint, trained["lake_bucket"])
    assert f"lake/_manifests/{model['mlflow_run_id']}.json" in lake_keys
    assert any(k.startswith("lake/_reports/") and k.endswith("/report.html") for k in lake_keys)


def test_runs_carry_the_dagster_run_as_dagster_mlflow_does(
    trained: dict[str, Any], mlflow_server: str
) -> None:
    model = trained["lake"].read("model").row(0, named=True)
    run = MlflowClient(mlflow_server).get_run(model["mlflow_run_id"])
    assert run.data.tags[DAGSTER_RUN_ID_TAG] == trained["run_id"]
    assert run.data.tags["dagster_asset_key"] == "model"
    # dagster-mlflow's own lookup (what its resource does to find "this Dagster run's
    # MLflow run") finds trainflow's run: the two agree on the tag.
    mlflow.set_tracking_uri(mlflow_server)
    experiment = mlflow.get_experiment(run.info.experiment_id)
    found = MlFlow._get_current_run_id(None, experiment, trained["run_id"])  # type: ignore[arg-type]
    assert found == model["mlflow_run_id"]
    link = trained["materializations"]["model"].metadata["mlflow_run_url"].value
    assert link == f"{mlflow_server}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"


def test_the_password_reaches_no_log_event_metadata_or_manifest(
    trained: dict[str, Any], moto_endpoint: str
) -> None:
    assert trained["events"] and trained["output"]
    assert not [e for e in trained["events"] if SECRET in e]
    assert SECRET not in trained["output"]  # the step's stdout: MLflow's run links, redacted
    assert "View run" in trained["output"]
    model = trained["lake"].read("model")
    assert SECRET not in json.dumps(model.drop("model_text").to_dicts(), default=str)
    manifest = (
        s3_client(moto_endpoint)
        .get_object(
            Bucket=trained["lake_bucket"],
            Key=f"lake/_manifests/{model['mlflow_run_id'][0]}.json",
        )["Body"]
        .read()
    )
    assert manifest and SECRET.encode() not in manifest


def test_reproduce_through_the_server_is_identical(trained: dict[str, Any]) -> None:
    done = trainflow(trained["env"], "reproduce", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reproduced exactly" in done.stdout
    sha = trained["lake"].read("model")["model_sha256"][0]
    assert f"same  model sha256: recorded {sha[:16]}, reproduced {sha[:16]}" in done.stdout
    assert "same  test roc_auc" in done.stdout
    assert SECRET not in done.stdout + done.stderr
