"""Retries only for what can heal: each class of failure, produced for real, is either
retried by IO_RETRY (it may heal) or fails at once with its message (it would fail the same
way again). Classified by cause, the chain of `raise ... from ...` included."""

from __future__ import annotations

import datetime as dt
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import dagster as dg
import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.config import Config
from deltalake import write_deltalake
from mlflow import MlflowClient

from tests.conftest import QUICK_CONFIG, REPO_ROOT, free_port
from tests.helpers.environment import user_environment
from tests.helpers.graph import (
    graph_command,
    partition_range_tags,
    printed_run_id,
    run_graph_process,
    settings_for,
)
from tests.helpers.reexecution import step_retries
from trainflow.config import load_config
from trainflow.definitions import build_resources
from trainflow.defs.features import flight_features
from trainflow.defs.ingest import raw_snapshot, validated_flights
from trainflow.defs.resources import WarehouseResource
from trainflow.defs.retries import IO_RETRY, fail_fast, is_transient
from trainflow.lake.delta_lake import DayWindow, DeltaLake

JAN_1_3 = partition_range_tags("2013-01-01", "2013-01-03")


def raised(action) -> BaseException:
    with pytest.raises(BaseException) as caught:
        action()
    return caught.value


def failure_of(result: dg.ExecuteInProcessResult) -> str:
    assert not result.success
    (event,) = result.get_step_failure_events()
    error = event.step_failure_data.error
    assert error is not None
    return error.message


# --- the classifier, on real exceptions -------------------------------------------------


def test_transient_failures_are_retried(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens here
    refused = raised(lambda: socket.create_connection(("127.0.0.1", closed), timeout=2))
    s3_lake = DeltaLake(
        "s3://no-bucket/lake",
        {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed}",
            "AWS_ALLOW_HTTP": "true",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "x",
            "timeout": "1s",
            "retry_timeout": "1s",
        },
    )
    object_store_down = raised(lambda: s3_lake.version("validated_flights"))
    boto = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{closed}",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 0}, connect_timeout=1),
    )
    boto_down = raised(lambda: boto.list_buckets())
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    registry_down = raised(
        lambda: MlflowClient(f"http://127.0.0.1:{closed}").get_registered_model("m")
    )
    buffer = io.BytesIO()
    pq.write_table(pa.table({"x": list(range(1000))}), buffer)
    cut_short = raised(lambda: pq.read_table(io.BytesIO(buffer.getvalue()[:600])))
    locked = tmp_path / "warehouse.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         f"import duckdb, sys, time; c = duckdb.connect({str(locked)!r}); print('ok', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        warehouse_locked = raised(lambda: duckdb.connect(str(locked), read_only=True))
    finally:
        holder.kill()
    wrapped = raised(lambda: _reraise_as_value_error(refused))
    for exc in (refused, object_store_down, boto_down, registry_down, cut_short):
        assert is_transient(exc), repr(exc)
    assert is_transient(warehouse_locked), repr(warehouse_locked)
    assert is_transient(wrapped), "a transient cause under a ValueError is still transient"


def _reraise_as_value_error(cause: BaseException) -> None:
    raise ValueError("reading the warehouse failed") from cause


def test_deterministic_failures_fail_at_once(tmp_path: Path) -> None:
    missing = raised(lambda: (tmp_path / "nope.txt").read_text())
    write_deltalake(str(tmp_path / "t"), pa.table({"x": [1, 2]}))
    schema_mismatch = raised(
        lambda: write_deltalake(str(tmp_path / "t"), pa.table({"x": ["a"]}), mode="append")
    )
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text(QUICK_CONFIG.read_text().replace("seed: 2013", "seed: many"))
    config_error = raised(lambda: load_config(bad_config))
    no_table = raised(lambda: duckdb.connect().sql("select * from stg_nothing"))
    bad_cast = raised(lambda: duckdb.connect().sql("select cast('12 min' as double)").fetchall())
    no_model = raised(
        lambda: MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_registered_model("m")
    )
    programming = [raised(lambda: {}["key"]), raised(lambda: [][1]), AssertionError("x")]
    for exc in (missing, schema_mismatch, config_error, no_table, bad_cast, no_model, *programming):
        assert not is_transient(exc), repr(exc)


# --- through Dagster: what the run does with each class --------------------------------


def test_a_missing_input_fails_at_once_naming_it(warehouse_copy, tmp_path) -> None:
    settings = settings_for(tmp_path / "home", warehouse_copy)
    result = dg.materialize(
        [raw_snapshot, validated_flights],
        selection=[validated_flights.key],
        resources=build_resources(settings),
        tags=JAN_1_3,
        raise_on_error=False,
    )
    assert "raw_snapshot has no Delta table yet" in failure_of(result)
    assert "materialize it first" in failure_of(result)
    assert step_retries(result) == []


def test_a_schema_mismatch_fails_at_once(warehouse_copy, tmp_path) -> None:
    """A raw_snapshot table whose distance_miles is text (another writer's mistake): the
    next write of a float distance is a schema mismatch, not an I/O fault."""
    settings = settings_for(tmp_path / "home", warehouse_copy)
    window = DayWindow(dt.date(2013, 1, 1), dt.date(2013, 1, 3))
    rows = WarehouseResource(url=str(warehouse_copy)).read_flights(window)
    first_day = rows.filter(pl.col("day") == window.first)
    DeltaLake(settings.lake_uri).write(
        "raw_snapshot",
        first_day.with_columns(pl.col("distance_miles").cast(pl.String)),
        DayWindow(window.first, window.first),
    )
    result = dg.materialize(
        [raw_snapshot], resources=build_resources(settings), tags=JAN_1_3, raise_on_error=False
    )
    message = failure_of(result)
    assert (
        "raw_snapshot: schema mismatch, column type(s) changed (distance_miles String -> Float64)"
        in message
    )
    assert step_retries(result) == []


def test_a_config_error_fails_at_once(warehouse_copy, tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        QUICK_CONFIG.read_text().replace(
            "validation: {start: 2013-02-01", "validation: {start: 2013-01-20"
        )
    )
    settings = settings_for(tmp_path / "home", warehouse_copy, bad)
    result = dg.materialize(  # flight_features reads the config
        [raw_snapshot, validated_flights, flight_features],
        resources=build_resources(settings),
        tags=JAN_1_3,
        raise_on_error=False,
    )
    message = failure_of(result)
    assert "experiment config bad.yaml is invalid" in message
    assert "time-ordered without overlap" in message
    assert step_retries(result) == []


@dg.asset(retry_policy=IO_RETRY)
@fail_fast
def broken_code() -> None:
    """A programming error: the same KeyError on every attempt."""
    {"expected": 1}["missing"]


@dg.asset(retry_policy=IO_RETRY, config_schema={"marker": str})
@fail_fast
def flaky_connection(context) -> None:  # (no annotation: this module defers them)
    """Refused on the first attempt (a peer restarting), fine on the second."""
    marker = Path(context.op_config["marker"])
    if not marker.exists():
        marker.touch()
        socket.create_connection(("127.0.0.1", free_port()), timeout=2)


def test_a_programming_error_fails_at_once_and_a_refused_connection_heals(tmp_path) -> None:
    broken = dg.materialize([broken_code], raise_on_error=False)
    assert "KeyError: 'missing'" in failure_of(broken)
    assert step_retries(broken) == []

    healed = dg.materialize(
        [flaky_connection],
        run_config={"ops": {"flaky_connection": {"config": {"marker": str(tmp_path / "m")}}}},
    )
    assert healed.success
    assert len(step_retries(healed)) == 1


def test_a_read_cut_short_is_retried_and_heals(warehouse_copy, s3_environ, tmp_path) -> None:
    """A validated_flights object on S3 is half there while flight_features reads it: the
    read fails (Parquet footer missing), is retried, and succeeds once the object is whole."""
    bucket = s3_environ["BUCKET"]
    env = user_environment(
        tmp_path / "home", warehouse=warehouse_copy, lake=f"s3://{bucket}/lake", instance="default"
    )
    env.update({k: v for k, v in s3_environ.items() if k.startswith("AWS_")})
    days = ("2013-01-01", "2013-01-03")
    prepared = run_graph_process(env, *days, "raw_snapshot", "validated_flights")
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    s3 = boto3.client("s3", endpoint_url=s3_environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="lake/validated_flights/day=2013-01-02/")
    (key,) = [o["Key"] for o in listed["Contents"] if o["Key"].endswith(".parquet")]
    whole = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=key, Body=whole[: len(whole) // 2])

    features = subprocess.Popen(
        graph_command(*days, "flight_features"), env=env, cwd=REPO_ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            deadline = time.monotonic() + 120
            retried: list = []
            while not retried:
                if features.poll() is not None:
                    pytest.fail(f"the run ended before it was retried: {features.communicate()}")
                assert time.monotonic() < deadline, "flight_features was never retried"
                runs = instance.get_runs(limit=1)
                if runs:
                    retried = instance.all_logs(
                        runs[0].run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY
                    )
                time.sleep(0.1)
            s3.put_object(Bucket=bucket, Key=key, Body=whole)  # the object is whole again
            out, err = features.communicate(timeout=120)
            assert features.returncode == 0, err[-3000:]
            run_id = printed_run_id(out)
            error = retried[0].dagster_event.event_specific_data.error
            assert "magic bytes" in error.message or "magic bytes" in str(error.cause), error
            assert instance.get_run_by_id(run_id).is_success
    finally:
        if features.poll() is None:
            features.kill()
    assert (
        DeltaLake(f"s3://{bucket}/lake", s3_environ_storage(s3_environ))
        .read("flight_features")["day"]
        .n_unique()
        == 3
    )


def s3_environ_storage(s3_environ: dict[str, str]) -> dict[str, str]:
    return {k: s3_environ[k] for k in ("AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP", "AWS_REGION")}
