"""The one place that reads the environment (docs/profiles.md lists every variable).

Everything else receives a `Settings` object, so a profile switch is a change of
environment variables only and tests can build settings for a temporary folder. Tools
that read their own standard variables (Dagster's DAGSTER_HOME, MLflow's MLFLOW_*, boto3's
and deltalake's AWS_*) still do; trainflow reads them here only where it needs the value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

PROFILES = ("local", "prod")
# How a run executes its steps (TRAINFLOW_EXECUTOR): one process per step on this machine,
# or one Kubernetes Job per step (`defs/pods.py`). `prod` defaults to k8s; its services can
# also be used from one machine with TRAINFLOW_EXECUTOR=multiprocess (docs/profiles.md).
EXECUTORS = ("multiprocess", "k8s")
PACKAGE_DIR = Path(__file__).resolve().parent
# The one place that decides "source checkout or installed package". A checkout (an editable
# install, or PYTHONPATH=<checkout>/src) has the package in src/ beside the repository's
# dbt_project/: it reads the repository's configs/, dbt_project/ and requirements.lock, so an
# edit there counts at once. An installed wheel has no repository beside it; `make wheel`
# (trainflow/packaging.py) bundles copies of those files into the package, dbt manifest
# prepared, and the package reads them from BUNDLE_DIR.
BUNDLE_DIR = PACKAGE_DIR / "bundled"
_CHECKOUT = PACKAGE_DIR.parents[1]
SOURCE_CHECKOUT = (
    PACKAGE_DIR.parent.name == "src" and (_CHECKOUT / "dbt_project" / "dbt_project.yml").is_file()
)
# The repository root in a source checkout (git state comes from it); None when installed,
# where the commit is TRAINFLOW_GIT_COMMIT or the BUILD_COMMIT file (never the git state of
# whatever folder the environment happens to sit in).
REPO_ROOT: Path | None = _CHECKOUT if SOURCE_CHECKOUT else None
PROJECT_FILES_DIR = _CHECKOUT if SOURCE_CHECKOUT else BUNDLE_DIR
DEFAULT_CONFIG = PROJECT_FILES_DIR / "configs" / "experiment.yaml"
DBT_PROJECT_DIR = PROJECT_FILES_DIR / "dbt_project"
# The lock the environment was installed from; a run manifest records its hash.
LOCK_FILE = PROJECT_FILES_DIR / "requirements.lock"
# The data contracts shipped in the package; TRAINFLOW_CONTRACTS_DIR points elsewhere (a
# contract change reviewed before release, or a test's edited copy).
PACKAGED_CONTRACTS_DIR = PACKAGE_DIR / "contracts"

# Where the object store is. Credentials (AWS_ACCESS_KEY_ID, ...) are deliberately absent:
# deltalake and boto3 read them from the environment themselves, so they never enter
# trainflow's settings, resource config, logs or metadata.
_AWS_KEYS = ("AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP", "AWS_REGION", "AWS_DEFAULT_REGION")
# How long one object-store request may take, the store client's own retries included. By
# default deltalake's client retries a store that does not answer 10 times (about 25 s per
# request here, up to 3 minutes by its retry budget) before a step sees the error; with this
# set, the step fails after that many seconds and IO_RETRY (defs/retries.py) decides.
S3_TIMEOUT_VAR = "TRAINFLOW_S3_TIMEOUT"
# Rows a daily step holds in memory at a time (lake/spool.py); results never depend on it.
# The whole real year (336,776 flights) is one chunk; `trainflow land --scale 10` nine.
CHUNK_ROWS_VAR = "TRAINFLOW_CHUNK_ROWS"
# Where alerts go (a Slack-compatible incoming webhook; its URL holds a secret token), and
# the Dagster UI's address as people reach it, for a link to the run in each alert.
ALERT_WEBHOOK_URL_VAR = "TRAINFLOW_ALERT_WEBHOOK_URL"
DAGSTER_URL_VAR = "TRAINFLOW_DAGSTER_URL"
# One time limit for every asset step (seconds), over each step's own (defs/pods.py).
STEP_TIME_LIMIT_VAR = "TRAINFLOW_STEP_TIME_LIMIT_SECONDS"
DEFAULT_CHUNK_ROWS = 400_000
# MLflow's own variable. Its value may carry credentials (`https://user:password@host`, or a
# database URI `postgresql://user:password@host/db`): trainflow keeps only the redacted URI,
# and whatever must connect reads the variable itself (MLflow's client, or a resource field
# configured with `dg.EnvVar`), so the password never enters settings or resource config.
MLFLOW_TRACKING_URI_VAR = "MLFLOW_TRACKING_URI"
# `scheme://user:password@host`: the userinfo part of a URI, wherever it occurs in a text.
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def redact_userinfo(text: str) -> str:
    """`text` with the `user:password@` of every URI in it removed: what may be logged,
    shown in the Dagster UI, or written to metadata and manifests."""
    return _USERINFO.sub("", text)


class SettingsError(ValueError):
    """An environment variable holds a value trainflow cannot use."""


@dataclass(frozen=True)
class Settings:
    profile: str
    home: Path
    lake_uri: str
    # A DuckDB file path (absolute) or a PostgreSQL URL without a password.
    warehouse_url: str
    config_path: Path
    # Without userinfo (`redact_userinfo`): safe to print, log and show.
    mlflow_tracking_uri: str
    # Where a local tracking store keeps artifacts; None for a tracking server, which
    # decides itself (`mlflow server --artifacts-destination s3://...` proxies them as
    # `mlflow-artifacts:/`, so clients need no access to the bucket).
    mlflow_artifact_uri: str | None
    contracts_dir: Path = PACKAGED_CONTRACTS_DIR
    storage_options: Mapping[str, str] = field(default_factory=dict)
    s3_timeout_seconds: int | None = None
    # DAGSTER_HOME, when set: a persistent Dagster instance (CLI commands record their runs).
    dagster_home: Path | None = None
    # The git commit of code that runs without a git checkout (a container image): from
    # TRAINFLOW_GIT_COMMIT, or the BUILD_COMMIT file an image build writes into the package.
    git_commit: str | None = None
    # MLFLOW_TRACKING_URI carries `user:password@`: connect with the variable itself
    # (`mlflow_client_uri`), never with `mlflow_tracking_uri`, which has it removed.
    mlflow_credentials_in_uri: bool = False
    executor: str = "multiprocess"
    # TRAINFLOW_CHUNK_ROWS: rows a daily step holds at a time (memory, not results).
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    # TRAINFLOW_ALERT_WEBHOOK_URL (None: alerts off); a secret, so never in repr or logs.
    alert_webhook_url: str | None = field(default=None, repr=False)
    dagster_url: str | None = None
    # TRAINFLOW_STEP_TIME_LIMIT_SECONDS: one limit for every asset step instead of each
    # step's own (defs/pods.py, STEP_TIME_LIMIT_SECONDS); None: the table's.
    step_time_limit_seconds: int | None = None

    @property
    def mlflow_server(self) -> bool:
        """MLflow is a tracking server (`mlflow server`) rather than a store on this machine."""
        return self.mlflow_tracking_uri.startswith(("http://", "https://"))

    @property
    def mlflow_client_uri(self) -> str | None:
        """The tracking URI to hand MLflow's client: None when the URI carries credentials,
        so that MLflow reads MLFLOW_TRACKING_URI itself (as it reads
        MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, the better place for them)."""
        return None if self.mlflow_credentials_in_uri else self.mlflow_tracking_uri

    @property
    def registry_lock_dir(self) -> Path:
        """Where registrations take their lock: beside the SQLite tracking store when there
        is one (every process using that store shares it), else under TRAINFLOW_HOME (a
        tracking server: the lock covers this machine's processes, Dagster's
        `model_registry` pool covers the others; registry/versions.py)."""
        if self.mlflow_tracking_uri.startswith("sqlite:///"):
            return Path(self.mlflow_tracking_uri.removeprefix("sqlite:///")).parent
        return self.home / "locks"

    @property
    def dbt_profiles_dir(self) -> Path:
        """Where trainflow writes dbt's profiles.yml, rendered from these settings."""
        return self.home / "dbt"

    @property
    def dbt_target_dir(self) -> Path:
        """Where `dbt build` writes its run artifacts and logs, one folder per invocation:
        under TRAINFLOW_HOME, never in the dbt project (a checkout's source tree, or an
        installed package's folder, which may be read-only). The newest few are kept."""
        return self.home / "dbt" / "target"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        profile = env.get("TRAINFLOW_PROFILE", "local")
        if profile not in PROFILES:
            raise SettingsError(
                f"TRAINFLOW_PROFILE={profile!r} is not one of {', '.join(PROFILES)}"
            )
        home = Path(env.get("TRAINFLOW_HOME", ".trainflow")).expanduser().resolve()
        lake_uri = env.get("TRAINFLOW_LAKE_URI") or str(home / "lake")
        if not lake_uri.startswith("s3://"):
            lake_uri = str(Path(lake_uri).expanduser().resolve())
        warehouse_url = _warehouse_url(
            env.get("TRAINFLOW_WAREHOUSE_URL") or str(home / "warehouse.duckdb")
        )
        config_path = Path(env.get("TRAINFLOW_CONFIG") or DEFAULT_CONFIG).expanduser().resolve()
        mlflow_dir = home / "mlflow"
        tracking_uri = env.get(MLFLOW_TRACKING_URI_VAR) or f"sqlite:///{mlflow_dir / 'mlflow.db'}"
        redacted_tracking_uri = redact_userinfo(tracking_uri)
        server = redacted_tracking_uri.startswith(("http://", "https://"))
        storage_options = {k: env[k] for k in _AWS_KEYS if env.get(k)}
        s3_timeout = _positive_seconds(S3_TIMEOUT_VAR, env.get(S3_TIMEOUT_VAR))
        if s3_timeout is not None and lake_uri.startswith("s3://"):
            storage_options.update(s3_timeout_options(s3_timeout))
        if profile == "prod":
            _require_prod_services(lake_uri, warehouse_url, tracking_uri)
        executor = env.get("TRAINFLOW_EXECUTOR") or ("k8s" if profile == "prod" else "multiprocess")
        if executor not in EXECUTORS:
            raise SettingsError(
                f"TRAINFLOW_EXECUTOR={executor!r} is not one of {', '.join(EXECUTORS)}"
            )
        return cls(
            profile=profile,
            home=home,
            lake_uri=lake_uri.rstrip("/"),
            warehouse_url=warehouse_url,
            config_path=config_path,
            mlflow_tracking_uri=redacted_tracking_uri,
            mlflow_artifact_uri=None if server else (mlflow_dir / "artifacts").as_uri(),
            mlflow_credentials_in_uri=redacted_tracking_uri != tracking_uri,
            contracts_dir=Path(env.get("TRAINFLOW_CONTRACTS_DIR") or PACKAGED_CONTRACTS_DIR)
            .expanduser()
            .resolve(),
            storage_options=storage_options,
            s3_timeout_seconds=s3_timeout,
            dagster_home=Path(env["DAGSTER_HOME"]).expanduser().resolve()
            if env.get("DAGSTER_HOME")
            else None,
            git_commit=env.get("TRAINFLOW_GIT_COMMIT") or _build_commit(),
            executor=executor,
            chunk_rows=_positive_int(CHUNK_ROWS_VAR, env.get(CHUNK_ROWS_VAR)) or DEFAULT_CHUNK_ROWS,
            alert_webhook_url=env.get(ALERT_WEBHOOK_URL_VAR) or None,
            dagster_url=env.get(DAGSTER_URL_VAR) or None,
            step_time_limit_seconds=_positive_seconds(
                STEP_TIME_LIMIT_VAR, env.get(STEP_TIME_LIMIT_VAR)
            ),
        )


def _require_prod_services(lake_uri: str, warehouse_url: str, tracking_uri: str) -> None:
    """`prod` means the shared services: a profile that silently fell back to a local
    folder, file or SQLite store inside a pod would lose its work when the pod goes."""
    missing = [
        needed
        for needed, present in (
            ("TRAINFLOW_LAKE_URI=s3://BUCKET/PREFIX", lake_uri.startswith("s3://")),
            (
                "TRAINFLOW_WAREHOUSE_URL=postgresql://USER@HOST:PORT/DATABASE",
                warehouse_url.startswith(("postgresql://", "postgres://")),
            ),
            ("MLFLOW_TRACKING_URI=http(s)://HOST:PORT", tracking_uri.startswith("http")),
        )
        if not present
    ]
    if missing:
        raise SettingsError(
            "TRAINFLOW_PROFILE=prod needs " + ", ".join(missing) + " (see docs/profiles.md)"
        )


def _warehouse_url(value: str) -> str:
    """A PostgreSQL URL as given (refused if it holds a password: the URL is shown in the UI
    and logs, the password belongs in PGPASSWORD), or a DuckDB path made absolute."""
    if value.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(value)
        if parts.password is not None:
            raise SettingsError(
                "TRAINFLOW_WAREHOUSE_URL holds a password; remove it from the URL and set "
                "PGPASSWORD instead (the URL is shown in the Dagster UI and in logs)"
            )
        if not parts.path.strip("/"):
            raise SettingsError(
                "TRAINFLOW_WAREHOUSE_URL names no database: postgresql://USER@HOST:PORT/DATABASE"
            )
        return value
    if "://" in value:
        raise SettingsError(
            f"TRAINFLOW_WAREHOUSE_URL: {value.split('://')[0]!r} is not supported; "
            "give a DuckDB file path or a postgresql:// URL"
        )
    return str(Path(value).expanduser().resolve())


def s3_timeout_options(seconds: int) -> dict[str, str]:
    """deltalake storage options bounding one request, retries included, to `seconds`."""
    return {"timeout": f"{seconds}s", "retry_timeout": f"{seconds}s"}


def _positive_int(name: str, value: str | None, unit: str = "") -> int | None:
    if not value:
        return None
    if not value.isdigit() or int(value) == 0:
        what = f"a whole number of {unit}" if unit else "a whole number"
        raise SettingsError(f"{name}={value!r} must be {what} above 0")
    return int(value)


def _positive_seconds(name: str, value: str | None) -> int | None:
    return _positive_int(name, value, unit="seconds")


BUILD_COMMIT_FILE = PACKAGE_DIR / "BUILD_COMMIT"


def _build_commit() -> str | None:
    """The commit a build (`make wheel`, an image) wrote into the package, if any."""
    if BUILD_COMMIT_FILE.is_file():
        return BUILD_COMMIT_FILE.read_text().strip() or None
    return None
