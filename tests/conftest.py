"""Shared fixtures: real services on loopback, real landed data, isolated trainflow homes.

Nothing here is mocked: S3 is moto's HTTP server in its own process (deltalake's Rust
client deadlocks against an in-process threaded server), the warehouse is a DuckDB file
filled by `trainflow land` code and built by the real dbt project.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import boto3
import pytest

# The fresh user environment (tests/helpers/environment.py) and free_port (servers.py):
# these names stay importable from here (`from tests.conftest import user_environment`).
from tests.helpers.environment import BIN as BIN
from tests.helpers.environment import QUICK_CONFIG as QUICK_CONFIG
from tests.helpers.environment import REPO_ROOT as REPO_ROOT
from tests.helpers.environment import user_environment as user_environment
from tests.helpers.http_receiver import WebhookReceiver
from tests.helpers.servers import free_port as free_port
from tests.helpers.servers import start_moto_server
from trainflow import quiet_warnings
from trainflow.settings import ALERT_WEBHOOK_URL_VAR, DBT_PROJECT_DIR
from trainflow.warehouse import landing
from trainflow.warehouse.dbt_profile import DBT_EXECUTABLE, write_profile


def thin_history_config(folder: Path) -> Path:
    """The quick config, allowing feature days with up to 28 missing history days: for tests
    of a few February days whose January history was never validated."""
    path = folder / "thin-history.yaml"
    path.write_text(QUICK_CONFIG.read_text() + "max_missing_history_days: 28\n")
    return path


@pytest.fixture(scope="module", autouse=True)
def no_instance_left_current() -> Iterator[None]:
    """After each test file, no Dagster instance is left current. A sensor or schedule
    context used outside `with` closes the instance it opened when garbage collected, out of
    order, leaving a closed instance current: every later definitions load in the process
    then fails ("undefined DagsterInstance weakref", or SQLite "unable to open database
    file"). Caught here, in the file that did it, not in the tests that happen to come next."""
    import gc

    from dagster._core.storage.defs_state.base import DefsStateStorage

    yield
    gc.collect()
    left = DefsStateStorage.get()
    assert left is None, f"a Dagster instance was left current ({left!r}): a context not closed"


S3_TEST_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server as a separate process on a free loopback port (fails if it can't start)."""
    server, endpoint = start_moto_server(tmp_path_factory.mktemp("moto") / "moto.log")
    yield endpoint
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture
def s3_environ(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """AWS_* variables pointing at moto (dummy keys), plus a fresh bucket for this test."""
    env = {
        **S3_TEST_ENV,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_REGION": "us-east-1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    return {**env, "BUCKET": bucket}


@pytest.fixture
def webhook_receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[WebhookReceiver]:
    """A webhook receiver on loopback, its URL in the alert webhook variable for this test."""
    receiver = WebhookReceiver()
    monkeypatch.setenv(ALERT_WEBHOOK_URL_VAR, receiver.url)
    yield receiver
    receiver.close()


# The PostgreSQL server the tests create their databases on: 127.0.0.1:5432 on these
# machines and in CI; a laptop points the tests at its own server with this one variable
# (a URL of a user that may CREATE DATABASE, without a password; PGPASSWORD if it needs one).
POSTGRES_ADMIN_URL = os.environ.get(
    "TRAINFLOW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _postgres_admin() -> Any:
    import psycopg2

    try:
        conn = psycopg2.connect(POSTGRES_ADMIN_URL, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        # Never a skip: CI must fail loudly when the server the prod tests need is absent.
        pytest.fail(
            f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL} ({exc}). Start it, or set "
            "TRAINFLOW_TEST_POSTGRES_URL to a server where this user may create databases.",
            pytrace=False,
        )
    conn.autocommit = True
    return conn


@contextmanager
def fresh_postgres_database(prefix: str) -> Iterator[str]:
    """A new, empty database on the test server (dropped afterwards); yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = _postgres_admin()
    with admin.cursor() as cursor:
        cursor.execute(f'create database "{name}"')
    base = urlsplit(POSTGRES_ADMIN_URL)
    try:
        yield urlunsplit((base.scheme, base.netloc, f"/{name}", "", ""))
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'drop database if exists "{name}" with (force)')
        admin.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test."""
    with fresh_postgres_database("trainflow_test") as url:
        yield url


def run_dbt_build(warehouse: Path | str, profiles_dir: Path | None = None) -> None:
    """`dbt build` with the profile trainflow writes for this warehouse (file or URL)."""
    folder = profiles_dir or Path(str(warehouse)).parent / "dbt"
    profiles = write_profile(folder, warehouse)
    # Artifacts and logs beside the profile, never in the project's target/: test files run
    # in parallel, and others read that folder (the manifest) or check it is left unchanged.
    done = subprocess.run(
        [DBT_EXECUTABLE, "build", "--profiles-dir", str(profiles),
         "--target-path", str(folder / "target"), "--log-path", str(folder / "logs")],
        cwd=DBT_PROJECT_DIR,
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


@pytest.fixture(scope="session")
def built_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """January and February 2013 landed and modelled by dbt; copy it before changing it."""
    path = tmp_path_factory.mktemp("warehouse") / "warehouse.duckdb"
    landing.land(path, landing.plan_days([], through=dt.date(2013, 2, 28)))
    run_dbt_build(path)
    return path


@pytest.fixture
def warehouse_copy(built_warehouse: Path, tmp_path: Path) -> Path:
    target = tmp_path / "warehouse.duckdb"
    shutil.copy(built_warehouse, target)
    return target


# The longest test files (minutes each, measured on 2 cores), started first: `make test`
# hands whole files to 2 workers in collection order, and a long file collected last would
# run alone at the end while the other worker idles.
LONGEST_FILES_FIRST = (
    "test_docs_run.py",  # every local block of the docs, the full year first
    "test_reproduce.py",
    "test_promote_rollback.py",
    "test_backfills.py",
    "test_ui.py",
    "test_pipeline_end_to_end.py",
    "test_prod_end_to_end.py",
    "test_faults.py",
    "test_mlp.py",
    "test_cache.py",
    "test_champion.py",
    "test_guides.py",
    "test_docs_prod.py",
    "test_daemon.py",
)


# pytest restores the warning filters after each phase (collecting, each test): trainflow's
# (installed when it is first imported) go back in for each, as in any trainflow process.
def pytest_collection(session: pytest.Session) -> None:
    quiet_warnings.install()


def pytest_runtest_setup(item: pytest.Item) -> None:
    quiet_warnings.install()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return (
            LONGEST_FILES_FIRST.index(name)
            if name in LONGEST_FILES_FIRST
            else len(LONGEST_FILES_FIRST)
        )

    items.sort(key=rank)  # stable: the order within a file and among the rest is kept
