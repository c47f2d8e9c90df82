"""The `prod` profile end to end on real services: S3 (moto's server), PostgreSQL for the
warehouse, the Dagster instance and MLflow's backend store, and an `mlflow server` whose
artifacts go to S3.

Everything is switched by environment variables alone and run the way a user types it:
`trainflow land`, then `dagster asset materialize` of the daily side over January-February
and of the quick config's experiment partition (the multiprocess executor; no cluster runs here). Every credential is a
distinctive fake (the servers here do not check them), so the secrets test can search every
record the run left for each of them.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import shutil
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import dagster as dg
import psycopg2
import pytest

from tests.conftest import BIN, QUICK_CONFIG, REPO_ROOT, free_port, fresh_postgres_database
from tests.dagster_dev import post_graphql
from tests.helpers.environment import whole_graph_commands
from tests.helpers.graph import partition_range_tags
from tests.helpers.servers import wait_for_http
from trainflow.config import load_config
from trainflow.defs.code_versions import ASSET_CODE
from trainflow.lake.delta_lake import DeltaLake
from trainflow.settings import Settings

RANGE = "2013-01-01...2013-02-28"
JAN_FEB_FLIGHTS = 51_955
LAKE_ASSETS = list(ASSET_CODE)
# Distinctive fake credentials: none of these strings may appear in anything the run wrote.
SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIALEAKCHECK7Q2Z9XW",
    "AWS_SECRET_ACCESS_KEY": "leakcheck-aws-secret-4f9c1e7b",
    "PGPASSWORD": "leakcheck-pg-password-8d3a2c",
    "DAGSTER_PG_PASSWORD": "leakcheck-dagster-pg-6b1e9f",
    "MLFLOW_TRACKING_USERNAME": "leakcheck-mlflow-user-3c7d",
    "MLFLOW_TRACKING_PASSWORD": "leakcheck-mlflow-password-5e2a",
}


@dataclass
class ProdStack:
    env: dict[str, str]  # what the user's terminal holds
    bucket: str
    s3_endpoint: str
    warehouse_url: str
    dagster_db_url: str
    mlflow_db_url: str
    mlflow_url: str
    home: Path
    outputs: list[str]  # stdout and stderr of every command run against the stack


@pytest.fixture(scope="module")
def prod_stack(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProdStack]:
    """moto S3, three fresh PostgreSQL databases and an MLflow server on free loopback ports."""
    home = tmp_path_factory.mktemp("prod_home")
    bucket = f"prod-{uuid.uuid4().hex[:12]}"
    aws = {
        "AWS_ACCESS_KEY_ID": SECRETS["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": SECRETS["AWS_SECRET_ACCESS_KEY"],
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_REGION": "us-east-1",
    }
    boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id=aws["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=aws["AWS_SECRET_ACCESS_KEY"],
    ).create_bucket(Bucket=bucket)
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRAINFLOW_", "MLFLOW_", "AWS_", "DAGSTER_", "PG"))
    }
    with ExitStack() as stack:
        warehouse_url = stack.enter_context(fresh_postgres_database("prod_warehouse"))
        dagster_db_url = stack.enter_context(fresh_postgres_database("prod_dagster"))
        mlflow_db_url = stack.enter_context(fresh_postgres_database("prod_mlflow"))

        port = free_port()
        log = home / "mlflow-server.log"
        with log.open("w") as out:
            server = subprocess.Popen(
                [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
                 "--workers", "1", "--backend-store-uri", mlflow_db_url.replace("postgresql://", "postgresql+psycopg2://"),
                 "--artifacts-destination", f"s3://{bucket}/mlflow"],
                env={**base, **aws, "MLFLOW_S3_ENDPOINT_URL": moto_endpoint,
                     "PATH": f"{BIN}{os.pathsep}{base.get('PATH', '')}"},
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        stack.callback(lambda: (server.terminate(), server.wait(timeout=30)))
        mlflow_url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{mlflow_url}/health", server, log)

        dagster_home = home / "dagster"
        dagster_home.mkdir()
        shutil.copy(REPO_ROOT / "dagster.prod.yaml", dagster_home / "dagster.yaml")
        dagster_db = urlsplit(dagster_db_url)
        env = {
            **base,
            **aws,
            "PATH": f"{BIN}{os.pathsep}{base.get('PATH', '')}",
            "TRAINFLOW_PROFILE": "prod",
            # The prod services from one machine: no cluster runs here, so steps run as
            # local processes instead of prod's default Kubernetes Jobs (tests/deploy/).
            "TRAINFLOW_EXECUTOR": "multiprocess",
            "TRAINFLOW_HOME": str(home / "trainflow"),
            "TRAINFLOW_LAKE_URI": f"s3://{bucket}/lake",
            "TRAINFLOW_WAREHOUSE_URL": warehouse_url,
            "TRAINFLOW_CONFIG": str(QUICK_CONFIG),
            "PGPASSWORD": SECRETS["PGPASSWORD"],
            "MLFLOW_TRACKING_URI": mlflow_url,
            "MLFLOW_TRACKING_USERNAME": SECRETS["MLFLOW_TRACKING_USERNAME"],
            "MLFLOW_TRACKING_PASSWORD": SECRETS["MLFLOW_TRACKING_PASSWORD"],
            "DAGSTER_HOME": str(dagster_home),
            "DAGSTER_PG_HOST": dagster_db.hostname or "127.0.0.1",
            "DAGSTER_PG_PORT": str(dagster_db.port or 5432),
            "DAGSTER_PG_USER": dagster_db.username or "postgres",
            "DAGSTER_PG_PASSWORD": SECRETS["DAGSTER_PG_PASSWORD"],
            "DAGSTER_PG_DB": dagster_db.path.lstrip("/"),
        }
        yield ProdStack(
            env=env, bucket=bucket, s3_endpoint=moto_endpoint, warehouse_url=warehouse_url,
            dagster_db_url=dagster_db_url, mlflow_db_url=mlflow_db_url, mlflow_url=mlflow_url,
            home=home, outputs=[],
        )  # fmt: skip


def run(stack: ProdStack, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        list(args), env=stack.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900
    )
    stack.outputs += [done.stdout, done.stderr]
    assert done.returncode == 0, (
        f"{' '.join(args)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-8000:]}"
    )
    return done


@pytest.fixture(scope="module")
def materialized(prod_stack: ProdStack) -> ProdStack:
    started = time.monotonic()
    landed = run(prod_stack, "trainflow", "land", "--through", "2013-02-28")
    assert "landed 59 day(s) 2013-01-01..2013-02-28" in landed.stdout
    for command in whole_graph_commands(RANGE, QUICK_CONFIG, terminal=False):
        run(prod_stack, *command)
    print(f"prod land + materialize Jan-Feb: {time.monotonic() - started:.0f} s")
    return prod_stack


def prod_lake(stack: ProdStack) -> DeltaLake:
    """The lake as the prod processes see it (this process's environment has no AWS keys)."""
    settings = Settings.from_env(stack.env)
    keys = {k: stack.env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    return DeltaLake(settings.lake_uri, {**settings.storage_options, **keys})


def s3_keys(stack: ProdStack, prefix: str) -> list[str]:
    s3 = boto3.client("s3", endpoint_url=stack.s3_endpoint, region_name="us-east-1",
                      aws_access_key_id="reader", aws_secret_access_key="reader")  # fmt: skip
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def query(url: str, sql: str) -> list[tuple]:
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def mlflow_api(stack: ProdStack, path: str) -> dict:
    with urllib.request.urlopen(f"{stack.mlflow_url}/api/2.0/mlflow/{path}", timeout=10) as r:
        return json.loads(r.read())


def test_prod_run_lands_on_s3_postgres_and_the_mlflow_server(materialized: ProdStack) -> None:
    stack = materialized
    # The lake: every asset a Delta table under the bucket's lake prefix, plus the report
    # files and the run manifest.
    lake_keys = s3_keys(stack, "lake/")
    for table in LAKE_ASSETS:
        assert f"lake/{table}/_delta_log/00000000000000000000.json" in lake_keys, table
    assert any(k.startswith("lake/_reports/") and k.endswith("/report.html") for k in lake_keys)
    assert any(k.startswith("lake/_manifests/") and k.endswith(".json") for k in lake_keys)
    assert prod_lake(stack).read("raw_snapshot").height == JAN_FEB_FLIGHTS

    # The warehouse: the landed rows and dbt's models in PostgreSQL.
    assert query(stack.warehouse_url, "select count(*) from raw.flights") == [(JAN_FEB_FLIGHTS,)]
    assert query(stack.warehouse_url, "select count(*) from main.flights_enriched") == [
        (JAN_FEB_FLIGHTS,)
    ]

    # The Dagster instance: the runs (the features, the experiment, the predictions) and
    # their materializations in PostgreSQL.
    assert query(stack.dagster_db_url, "select status from runs") == [("SUCCESS",)] * 3
    materialized_assets = {
        tuple(json.loads(key))
        for (key,) in query(
            stack.dagster_db_url,
            "select asset_key from event_logs where dagster_event_type = 'ASSET_MATERIALIZATION'",
        )
    }
    assert {(name,) for name in LAKE_ASSETS} <= materialized_assets

    # The MLflow server: the model version and its alias over REST, artifacts in S3.
    model = load_config(QUICK_CONFIG).registered_model_name
    found = mlflow_api(stack, f"registered-models/alias?name={model}&alias=challenger")
    version = found["model_version"]
    assert version["version"] == "1" and version["status"] == "READY"
    artifacts = s3_keys(stack, "mlflow/")
    assert any(k.endswith("/model.txt") for k in artifacts), artifacts[:20]


def test_reproduce_through_s3_time_travel_and_the_mlflow_server(materialized: ProdStack) -> None:
    done = subprocess.run(
        [str(BIN / "trainflow"), "reproduce", "1", *reproduce_flags()],
        env=materialized.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    materialized.outputs += [done.stdout, done.stderr]
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reproduced exactly" in done.stdout


def reproduce_flags() -> list[str]:
    from tests.test_reproduce import ALLOW_DIRTY

    return list(ALLOW_DIRTY)


def dump_database(url: str) -> dict[str, bytes]:
    """Every row of every table in every schema of a database, as COPY text, by table."""
    tables: dict[str, bytes] = {}
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_type = 'BASE TABLE' "
            "and table_schema not in ('pg_catalog', 'information_schema')"
        )
        for schema, table in cursor.fetchall():
            out = io.BytesIO()
            cursor.copy_expert(f'copy "{schema}"."{table}" to stdout', out)
            tables[f"{schema}.{table}"] = out.getvalue()
    return tables


def test_no_credential_reaches_any_record(materialized: ProdStack, tmp_path: Path) -> None:
    """Event log, runs and their configs, asset metadata (all in the Dagster database),
    MLflow params, tags and registry (its database), every object in the bucket (lake,
    manifests, reports, MLflow artifacts), every file under the homes (captured logs, the
    rendered dbt profile) and every command's output: no fake credential anywhere."""
    stack = materialized
    records: dict[str, bytes] = {}
    for name, url in (("dagster", stack.dagster_db_url), ("mlflow", stack.mlflow_db_url),
                      ("warehouse", stack.warehouse_url)):  # fmt: skip
        tables = dump_database(url)
        assert sum(len(rows) for rows in tables.values()) > 1_000, name
        records.update({f"database {name}, table {t}": rows for t, rows in tables.items()})
    s3 = boto3.client("s3", endpoint_url=stack.s3_endpoint, region_name="us-east-1",
                      aws_access_key_id="reader", aws_secret_access_key="reader")  # fmt: skip
    keys = s3_keys(stack, "")
    assert len(keys) > 100
    for key in keys:
        records[f"s3://{stack.bucket}/{key}"] = s3.get_object(Bucket=stack.bucket, Key=key)[
            "Body"
        ].read()
    files = [p for p in stack.home.rglob("*") if p.is_file()]
    assert any("compute_logs" in str(p) or p.suffix in {".out", ".err"} for p in files), (
        "no captured logs"
    )
    for path in files:
        records[str(path)] = path.read_bytes()
    records["command output"] = "\n".join(stack.outputs).encode()

    leaks = [
        f"{variable} in {where}"
        for where, data in records.items()
        for variable, secret in SECRETS.items()
        if secret.encode() in data
    ]
    assert leaks == []


# --- Load: many runs queued at once on the PostgreSQL instance and the S3 lake --------------

LOAD_RUNS = 8
MAX_CONCURRENT_RUNS = 2  # dagster.prod.yaml's run queue limit
LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""


@pytest.fixture(scope="module")
def webserver_and_daemon(materialized: ProdStack) -> Iterator[str]:
    """`dagster-webserver` (to submit runs, as the UI does) and `dagster-daemon` (which
    dequeues them within the limit), both on the prod instance."""
    port = free_port()
    procs = []
    for name, args in (
        (
            "webserver",
            ["dagster-webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        ),
        ("daemon", ["dagster-daemon", "run", "-w", "workspace.yaml"]),
    ):
        log = materialized.home / f"{name}.log"
        with log.open("w") as out:
            procs.append((subprocess.Popen(
                [str(BIN / args[0]), *args[1:]], env=materialized.env, cwd=REPO_ROOT,
                stdout=out, stderr=subprocess.STDOUT,
            ), log))  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/server_info", *procs[0])
        yield url
    finally:
        for proc, _ in procs:
            proc.terminate()
            proc.wait(timeout=60)


def test_eight_runs_at_once_each_partition_stored_once_within_the_queue_limit(
    materialized: ProdStack, webserver_and_daemon: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """8 runs of overlapping partition ranges (4 days each, a day shared with the next),
    submitted at once and forced to rewrite their days: all succeed, never more than the
    queue's 2 at a time, and every flight is stored exactly once."""
    from trainflow.defs.caching import FORCE_TAG

    first = dt.date(2013, 1, 1)
    ranges = [
        (first + dt.timedelta(3 * i), first + dt.timedelta(3 * i + 3)) for i in range(LOAD_RUNS)
    ]
    started = time.monotonic()
    run_ids = []
    for start, end in ranges:
        tags = {**partition_range_tags(start, end), FORCE_TAG: "true"}
        params = {
            "selector": {
                "repositoryLocationName": "trainflow",
                "repositoryName": "__repository__",
                "jobName": "__ASSET_JOB",
                "assetSelection": [{"path": ["raw_snapshot"]}, {"path": ["validated_flights"]}],
            },
            # One process per run (the code location's executor allows it): the load is on
            # the queue, the instance and the lake, not on step start-up.
            "runConfigData": {"execution": {"config": {"in_process": {}}}},
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        }
        launched = post_graphql(webserver_and_daemon, LAUNCH_RUN, {"params": params})["data"][
            "launchRun"
        ]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_ids.append(launched["run"]["runId"])

    for key, value in materialized.env.items():  # this process reads the prod instance too
        if key.startswith("DAGSTER_"):
            monkeypatch.setenv(key, value)
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        deadline = time.monotonic() + 900
        while True:
            found = instance.get_run_records(dg.RunsFilter(run_ids=run_ids))
            records = sorted(found, key=lambda r: run_ids.index(r.dagster_run.run_id))
            if len(records) == LOAD_RUNS and all(r.dagster_run.is_finished for r in records):
                break
            assert time.monotonic() < deadline, [r.dagster_run.status for r in records]
            time.sleep(2)
    wall = time.monotonic() - started
    print(f"{LOAD_RUNS} runs (raw_snapshot + validated_flights, 4 days each) on S3 + "
          f"PostgreSQL: {wall:.0f} s wall")  # fmt: skip
    statuses = [r.dagster_run.status for r in records]
    assert statuses == [dg.DagsterRunStatus.SUCCESS] * LOAD_RUNS, statuses

    # The queue: at no moment were more than 2 of these runs started and not yet ended.
    spans = [(r.start_time, r.end_time) for r in records]
    assert all(s is not None and e is not None for s, e in spans)
    peak = max(sum(1 for s, e in spans if s <= moment < e) for moment, _ in spans)  # type: ignore[operator]
    assert 1 <= peak <= MAX_CONCURRENT_RUNS, spans

    lake = prod_lake(materialized)
    expected = dict(
        query(
            materialized.warehouse_url, "select flight_date, count(*) from raw.flights group by 1"
        )
    )
    for table in ("raw_snapshot", "validated_flights"):
        stored = lake.read(table)
        assert stored.height == stored["flight_id"].n_unique(), f"{table}: duplicated flights"
    snapshot = lake.read("raw_snapshot")
    assert dict(snapshot.group_by("day").len().iter_rows()) == expected
