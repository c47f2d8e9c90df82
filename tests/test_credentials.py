"""A refused login is the credentials, not the network: it is never retried, and its message
names the service and the variables to check, in a run and in `trainflow land` / `status`.

Each service refuses for real. PostgreSQL: a server of this test's own, started with SCRAM
passwords (the shared test server trusts every login, so it can refuse none); its log
counts the login attempts. S3: a moto server of this test's own with its IAM
authentication on (INITIAL_NO_AUTH_ACTION_COUNT), which answers a wrong key with S3's 403
InvalidAccessKeyId. MLflow: an HTTP server answering MLflow's REST API as its basic-auth
app does (401 for a wrong password, 403 for a user without permission; the app itself
needs Flask-WTF, which is not in the locks), counting the requests it gets.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import dagster as dg
import polars as pl
import psycopg2
import pytest

from tests.conftest import (
    BIN,
    POSTGRES_ADMIN_URL,
    QUICK_CONFIG,
    REPO_ROOT,
    free_port,
    user_environment,
)
from tests.helpers.graph import settings_for
from tests.helpers.reexecution import step_retries as retries_of
from tests.test_retries import JAN_1_3, failure_of
from trainflow.credentials import MLFLOW, S3, WAREHOUSE, CredentialsRefusedError, refused_login
from trainflow.definitions import build_resources
from trainflow.defs.ingest import raw_snapshot, validated_flights
from trainflow.defs.retries import IO_RETRY, fail_fast, is_transient
from trainflow.lake.delta_lake import DeltaLake
from trainflow.lake.object_store import ObjectStore
from trainflow.registry.tracking import MlflowTracking
from trainflow.settings import Settings
from trainflow.warehouse import landing
from trainflow.warehouse.base import WarehouseUnavailableError

RIGHT_PASSWORD = "the-right-password"
WRONG_PASSWORD = "a-wrong-password"
ADMIN_PASSWORD = "the-admin-password"
WRONG_KEY_ID = "not-a-key-id"
WAREHOUSE_USER = "warehouse"


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "trainflow"), *args], env=env, capture_output=True, text=True, timeout=300
    )


def assert_says_credentials(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    """Exit status 1 with one clear line: no traceback, no "unreachable"."""
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-3000:]
    assert "Error: credentials refused by " in done.stderr, done.stderr[-3000:]
    for text in expected:
        assert text in done.stderr, (text, done.stderr[-3000:])
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "unreachable" not in done.stderr
    assert WRONG_PASSWORD not in done.stderr + done.stdout


# --- PostgreSQL with passwords ------------------------------------------------------------


@dataclass(frozen=True)
class PasswordPostgres:
    port: int
    log: Path
    admin: str
    database: str

    def url(self) -> str:
        return f"postgresql://{WAREHOUSE_USER}@127.0.0.1:{self.port}/{self.database}"

    def refused_logins(self, user: str = WAREHOUSE_USER) -> int:
        """Logins the server refused for `user` so far: its own count of attempts."""
        return self.log.read_text().count(f'password authentication failed for user "{user}"')


def _postgres_bin() -> Path:
    """Where initdb and pg_ctl are: Debian's versioned folder, else PATH."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    on_path = shutil.which("initdb")
    if found:
        return found[-1].parent
    if on_path:
        return Path(on_path).parent
    message = "the credentials tests need PostgreSQL's server programs (apt-get install postgresql)"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _unprivileged_owner() -> pwd.struct_passwd | None:
    """Who runs the server: initdb refuses root, so as root the `postgres` user (or
    `nobody`); anyone else runs it as themselves (None)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    pytest.fail("running as root, and there is no postgres or nobody user to run PostgreSQL as")


@pytest.fixture(scope="module")
def password_postgres() -> Iterator[PasswordPostgres]:
    """A PostgreSQL server of this module's own on a free loopback port that checks passwords
    (SCRAM), with a role `warehouse` owning a database `warehouse` and an empty database for
    a Dagster instance. Stopped and removed afterwards."""
    bindir = _postgres_bin()
    owner = _unprivileged_owner()
    folder = Path(tempfile.mkdtemp(prefix="trainflow-pg-"))  # not under pytest's 0700 root
    as_owner = ["runuser", "-u", owner.pw_name, "--"] if owner else []
    data, log, port = folder / "data", folder / "server.log", free_port()

    def run(*args: str) -> None:
        done = subprocess.run([*as_owner, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr

    password_file = folder / "admin-password"
    password_file.write_text(ADMIN_PASSWORD + "\n")
    if owner:
        for path in (folder, password_file):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    started = False
    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "admin", "--auth=scram-sha-256",
            f"--pwfile={password_file}", "-E", "UTF8", "--no-sync")  # fmt: skip
        options = f"-p {port} -k {folder} -h 127.0.0.1 -c fsync=off -c log_connections=on"
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o", options, "start")
        started = True
        admin = psycopg2.connect(host="127.0.0.1", port=port, user="admin", dbname="postgres",
                                 password=ADMIN_PASSWORD, connect_timeout=10)  # fmt: skip
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f"create role {WAREHOUSE_USER} login password %s", [RIGHT_PASSWORD])
            cursor.execute(f"create database warehouse owner {WAREHOUSE_USER}")
            cursor.execute("create database dagster_instance owner admin")
        admin.close()
        yield PasswordPostgres(port=port, log=log, admin="admin", database="warehouse")
    finally:
        if started:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def test_a_wrong_warehouse_password_is_a_credentials_error_and_the_right_one_works(
    password_postgres: PasswordPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = password_postgres.url()
    monkeypatch.setenv("PGPASSWORD", RIGHT_PASSWORD)
    assert landing.landed_days(url) == []  # the server, the role and its password work

    monkeypatch.setenv("PGPASSWORD", WRONG_PASSWORD)
    before = password_postgres.refused_logins()
    with pytest.raises(CredentialsRefusedError) as wrong:
        landing.landed_days(url)
    assert password_postgres.refused_logins() == before + 1  # the server really said no
    monkeypatch.delenv("PGPASSWORD")
    with pytest.raises(CredentialsRefusedError) as missing:
        landing.landed_days(url)

    assert str(wrong.value) == (
        f"credentials refused by PostgreSQL (the warehouse) at {url}: password "
        f'authentication failed for user "{WAREHOUSE_USER}"; check PGPASSWORD (or the '
        "PGPASSFILE entry) and the user in TRAINFLOW_WAREHOUSE_URL"
    )
    assert "no password supplied" in str(missing.value)
    for refused in (wrong.value, missing.value):
        assert refused.service == WAREHOUSE
        assert not is_transient(refused)
        assert "unreachable" not in str(refused)


def test_an_unknown_role_is_credentials_and_a_missing_database_stays_unreachable() -> None:
    """On the shared test server (it trusts every login, so it refuses only a role it does
    not know): the user in the URL is what to check. A database that is gone is an outage
    the retry policy waits for, not a login."""
    server = urlsplit(POSTGRES_ADMIN_URL)
    where = f"{server.hostname}:{server.port or 5432}"
    unknown_role = f"postgresql://no_such_role_{uuid.uuid4().hex[:8]}@{where}/postgres"
    with pytest.raises(CredentialsRefusedError, match=r'role "no_such_role_\w+" does not exist'):
        landing.landed_days(unknown_role)
    user = f"{server.username}@" if server.username else ""
    missing_database = f"postgresql://{user}{where}/no_such_database_{uuid.uuid4().hex[:8]}"
    with pytest.raises(WarehouseUnavailableError, match="is unreachable") as gone:
        landing.landed_days(missing_database)
    assert refused_login(gone.value) is None
    assert is_transient(gone.value)


def test_raw_snapshot_tries_a_refused_warehouse_login_once(
    password_postgres: PasswordPostgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through Dagster: the step fails on its first attempt, IO_RETRY never runs it again,
    and the server saw exactly one login."""
    monkeypatch.setenv("PGPASSWORD", WRONG_PASSWORD)
    settings = settings_for(tmp_path / "home", password_postgres.url())
    before = password_postgres.refused_logins()
    result = dg.materialize(
        [raw_snapshot], resources=build_resources(settings), tags=JAN_1_3, raise_on_error=False
    )
    message = failure_of(result)
    assert "Failure: credentials refused by PostgreSQL (the warehouse) at " in message, message
    assert "check PGPASSWORD" in message and "TRAINFLOW_WAREHOUSE_URL" in message, message
    assert retries_of(result) == []
    assert password_postgres.refused_logins() == before + 1


def test_land_and_status_say_the_warehouse_refused_the_login(
    password_postgres: PasswordPostgres, tmp_path: Path
) -> None:
    url = password_postgres.url()
    env = {**user_environment(tmp_path / "home"), "TRAINFLOW_WAREHOUSE_URL": url}
    env["PGPASSWORD"] = WRONG_PASSWORD
    expected = (f"credentials refused by PostgreSQL (the warehouse) at {url}", "check PGPASSWORD")
    assert_says_credentials(run_cli(["land", "--through", "2013-01-01"], env), *expected)
    assert_says_credentials(run_cli(["status"], env), *expected)

    env["PGPASSWORD"] = RIGHT_PASSWORD
    landed = run_cli(["land", "--through", "2013-01-01"], env)
    assert landed.returncode == 0, landed.stderr[-3000:]
    assert "landed 1 day(s) 2013-01-01..2013-01-01" in landed.stdout


def test_status_names_the_dagster_instance_when_its_postgres_refuses(
    password_postgres: PasswordPostgres, tmp_path: Path
) -> None:
    """prod's instance storage (dagster.prod.yaml) with a wrong DAGSTER_PG_PASSWORD: status
    shows what it can, then says which password the instance needs."""
    env = user_environment(tmp_path / "home")
    shutil.copy(REPO_ROOT / "dagster.prod.yaml", Path(env["DAGSTER_HOME"]) / "dagster.yaml")
    env.update(
        DAGSTER_PG_HOST="127.0.0.1",
        DAGSTER_PG_PORT=str(password_postgres.port),
        DAGSTER_PG_USER=password_postgres.admin,
        DAGSTER_PG_PASSWORD=WRONG_PASSWORD,
        DAGSTER_PG_DB="dagster_instance",
    )
    done = run_cli(["status"], env)
    assert "lake         " in done.stdout  # what came before the instance was shown
    assert_says_credentials(
        done, "credentials refused by PostgreSQL (the Dagster instance)", "DAGSTER_PG_PASSWORD"
    )


# --- S3 that checks its keys ---------------------------------------------------------------


@dataclass(frozen=True)
class KeyedS3:
    endpoint: str
    key_id: str
    secret: str
    bucket: str
    log: Path

    def options(self, key_id: str | None = None, secret: str | None = None) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": key_id or self.key_id,
            "AWS_SECRET_ACCESS_KEY": secret or self.secret,
        }

    def refused_requests(self) -> int:
        """Requests moto answered with 403 so far (its request log)."""
        return sum(1 for line in self.log.read_text().splitlines() if '" 403 ' in line)


@pytest.fixture(scope="module")
def keyed_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyedS3]:
    """moto's server in its own process, checking every request's key after the first three
    actions: those create an IAM user, its access key and a policy letting it do anything.
    The bucket is then made with that key."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto-auth") / "moto.log"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        unchecked = {"endpoint_url": endpoint, "region_name": "us-east-1",
                     "aws_access_key_id": "setup", "aws_secret_access_key": "setup"}  # fmt: skip
        iam = boto3.client("iam", **unchecked)
        iam.create_user(UserName="lake")
        key = iam.create_access_key(UserName="lake")["AccessKey"]
        iam.put_user_policy(
            UserName="lake",
            PolicyName="everything",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
                }
            ),
        )
        s3 = KeyedS3(endpoint, key["AccessKeyId"], key["SecretAccessKey"], "keyed-lake", log)
        _boto(s3).create_bucket(Bucket=s3.bucket)
        yield s3
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _boto(s3: KeyedS3, key_id: str | None = None, secret: str | None = None) -> object:
    options = s3.options(key_id, secret)
    return boto3.client(
        "s3",
        endpoint_url=s3.endpoint,
        region_name="us-east-1",
        aws_access_key_id=options["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=options["AWS_SECRET_ACCESS_KEY"],
    )


def test_s3_refusing_a_key_is_a_credentials_error_for_deltalake_and_boto3(
    keyed_s3: KeyedS3,
) -> None:
    right = DeltaLake(f"s3://{keyed_s3.bucket}/keys-test", keyed_s3.options())
    right.write("t", pl.DataFrame({"x": [1, 2]}), None)
    assert right.version("t") == 0  # the key moto made works

    wrong_key = DeltaLake(right.root, keyed_s3.options(key_id=WRONG_KEY_ID))
    wrong_secret = DeltaLake(right.root, keyed_s3.options(secret=WRONG_PASSWORD))
    store = ObjectStore(right.root, lambda: _boto(keyed_s3, key_id=WRONG_KEY_ID))
    cases = {
        "InvalidAccessKeyId (403 Forbidden)": lambda: wrong_key.version("t"),
        "SignatureDoesNotMatch (403 Forbidden)": lambda: wrong_secret.version("t"),
        "InvalidAccessKeyId: The AWS Access Key Id": lambda: store.get("t/whatever"),
    }
    for expected, action in cases.items():
        with pytest.raises(Exception) as caught:
            action()
        refused = refused_login(caught.value)
        assert refused is not None, repr(caught.value)
        assert refused.service == S3
        assert f"credentials refused by S3 (the lake's object storage): {expected}" in str(refused)
        assert "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in str(refused)
        assert WRONG_PASSWORD not in str(refused)
        assert not is_transient(caught.value), repr(caught.value)


def test_a_step_reading_s3_with_a_wrong_key_fails_at_once(
    keyed_s3: KeyedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """validated_flights loads its input through the IO manager: S3's 403 fails the step on
    the first attempt, naming the variables, and moto got one refused request for it."""
    for key, value in keyed_s3.options(key_id=WRONG_KEY_ID).items():
        monkeypatch.setenv(key, value)
    settings = Settings.from_env(
        {
            **keyed_s3.options(),  # settings keep endpoint and region; keys stay in the env
            "TRAINFLOW_HOME": str(tmp_path / "home"),
            "TRAINFLOW_LAKE_URI": f"s3://{keyed_s3.bucket}/step-test",
            "TRAINFLOW_CONFIG": str(QUICK_CONFIG),
        }
    )
    assert "AWS_ACCESS_KEY_ID" not in settings.storage_options
    before = keyed_s3.refused_requests()
    result = dg.materialize(
        [raw_snapshot, validated_flights],
        selection=[validated_flights.key],
        resources=build_resources(settings),
        tags=JAN_1_3,
        raise_on_error=False,
    )
    message = failure_of(result)
    assert "credentials refused by S3 (the lake's object storage): InvalidAccessKeyId" in message
    assert "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in message
    assert retries_of(result) == []
    assert keyed_s3.refused_requests() == before + 1


def test_status_says_s3_refused_the_key(keyed_s3: KeyedS3, tmp_path: Path) -> None:
    env = {
        **user_environment(tmp_path / "home"),
        **keyed_s3.options(secret=WRONG_PASSWORD),
        "TRAINFLOW_LAKE_URI": f"s3://{keyed_s3.bucket}/status-test",
    }
    assert_says_credentials(
        run_cli(["status"], env),
        "credentials refused by S3 (the lake's object storage): SignatureDoesNotMatch",
        "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
    )


# --- MLflow behind basic auth ----------------------------------------------------------------

MLFLOW_USER, MLFLOW_READER = "trainer", "reader"
NOT_AUTHENTICATED = (
    b"You are not authenticated. Please see "
    b"https://www.mlflow.org/docs/latest/auth/index.html#authenticating-to-mlflow "
    b"on how to authenticate."
)


@dataclass
class RefusingMlflow:
    """What MLflow's basic-auth app answers: 401 unless the login is right, 403 for the
    reader (a right login without permission). Nothing is ever allowed."""

    uri: str
    requests: list[tuple[str, str]] = field(default_factory=list)


@pytest.fixture(scope="module")
def refusing_mlflow() -> Iterator[RefusingMlflow]:
    server_state = RefusingMlflow(uri="")
    reader_login = _basic(MLFLOW_READER, RIGHT_PASSWORD)

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            authorization = self.headers.get("Authorization", "")
            server_state.requests.append((self.path, authorization))
            if authorization == reader_login:
                body, status, headers = b"Permission denied", 403, {}
            else:
                body, status = NOT_AUTHENTICATED, 401
                headers = {"WWW-Authenticate": 'Basic realm="mlflow"'}
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state.uri = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server_state
    server.shutdown()
    server.server_close()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


MLFLOW_LOGIN_VARS = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
)


def test_mlflow_refusing_a_login_is_a_credentials_error_asked_once(
    refusing_mlflow: RefusingMlflow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracking = MlflowTracking(refusing_mlflow.uri, None, str(tmp_path / "locks"))
    # (what MLflow calls the refusal, the login variables, the header the server must get)
    logins = [
        ("UNAUTHENTICATED", {"MLFLOW_TRACKING_USERNAME": MLFLOW_USER,
                             "MLFLOW_TRACKING_PASSWORD": WRONG_PASSWORD},
         _basic(MLFLOW_USER, WRONG_PASSWORD)),
        ("PERMISSION_DENIED", {"MLFLOW_TRACKING_USERNAME": MLFLOW_READER,
                               "MLFLOW_TRACKING_PASSWORD": RIGHT_PASSWORD},
         _basic(MLFLOW_READER, RIGHT_PASSWORD)),
        ("UNAUTHENTICATED", {"MLFLOW_TRACKING_TOKEN": WRONG_PASSWORD}, f"Bearer {WRONG_PASSWORD}"),
    ]  # fmt: skip
    for code, variables, sent in logins:
        for name in MLFLOW_LOGIN_VARS:
            monkeypatch.delenv(name, raising=False)
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        refusing_mlflow.requests.clear()
        with pytest.raises(Exception) as caught:
            tracking.experiment_id("flights")
        # One request, carrying the login from the variables: MLflow's client does not retry.
        assert refusing_mlflow.requests == [
            ("/api/2.0/mlflow/experiments/get-by-name?experiment_name=flights", sent)
        ]
        refused = refused_login(caught.value)
        assert refused is not None, repr(caught.value)
        assert refused.service == MLFLOW
        text = str(refused)
        assert text.startswith(f"credentials refused by MLflow (the tracking server): {code}: ")
        assert "check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or " in text
        assert "MLFLOW_TRACKING_TOKEN" in text
        assert WRONG_PASSWORD not in text and RIGHT_PASSWORD not in text
        assert not is_transient(caught.value)


def test_mlflow_s_artifact_proxy_refusing_a_login_is_a_credentials_error(
    refusing_mlflow: RefusingMlflow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tracking server's `mlflow-artifacts:/` proxy answers with requests' HTTPError, not
    an MlflowException: recognised by MLflow's path in the URL."""
    from mlflow.store.artifact.http_artifact_repo import HttpArtifactRepository

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", MLFLOW_USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", WRONG_PASSWORD)
    report = tmp_path / "report.md"
    report.write_text("# report\n")
    repo = HttpArtifactRepository(f"{refusing_mlflow.uri}/api/2.0/mlflow-artifacts/artifacts/1/r")
    refusing_mlflow.requests.clear()
    with pytest.raises(Exception) as caught:
        repo.log_artifact(str(report))
    assert type(caught.value).__name__ == "HTTPError"
    assert len(refusing_mlflow.requests) == 1
    refused = refused_login(caught.value)
    assert refused is not None and refused.service == MLFLOW
    assert "401 Client Error: Unauthorized" in str(refused)
    assert not is_transient(caught.value)


@dg.asset(retry_policy=IO_RETRY, config_schema={"tracking_uri": str})
@fail_fast
def uses_mlflow(context) -> None:  # (no annotation: this module defers them)
    """What the model step does first: find its experiment on the tracking server."""
    MlflowTracking(context.op_config["tracking_uri"], None, "unused").experiment_id("flights")


def test_a_step_refused_by_mlflow_fails_at_once(
    refusing_mlflow: RefusingMlflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", MLFLOW_USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", WRONG_PASSWORD)
    refusing_mlflow.requests.clear()
    result = dg.materialize(
        [uses_mlflow],
        run_config={"ops": {"uses_mlflow": {"config": {"tracking_uri": refusing_mlflow.uri}}}},
        raise_on_error=False,
    )
    message = failure_of(result)
    assert "Failure: credentials refused by MLflow (the tracking server): " in message, message
    assert "MLFLOW_TRACKING_USERNAME" in message and "MLFLOW_TRACKING_TOKEN" in message
    assert retries_of(result) == []
    assert len(refusing_mlflow.requests) == 1


def test_status_and_history_say_mlflow_refused_the_login(
    refusing_mlflow: RefusingMlflow, tmp_path: Path
) -> None:
    env = {
        **user_environment(tmp_path / "home"),
        "MLFLOW_TRACKING_URI": refusing_mlflow.uri,
        "MLFLOW_TRACKING_USERNAME": MLFLOW_USER,
        "MLFLOW_TRACKING_PASSWORD": WRONG_PASSWORD,
    }
    expected = ("credentials refused by MLflow (the tracking server): UNAUTHENTICATED",
                "check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")  # fmt: skip
    assert_says_credentials(run_cli(["status"], env), *expected)
    assert_says_credentials(run_cli(["history"], env), *expected)
