"""One resource per external system: experiment config, data contracts, warehouse, lake,
MLflow.

Resource fields hold locations only. Credentials are never resource config (they would
show in the UI): deltalake and boto3 read the standard AWS_* variables (or the pod's role)
themselves, MLflow's client reads MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, and a
tracking URI that carries a password is configured as `dg.EnvVar` (definitions.py), which
the UI shows by name only.
"""

from __future__ import annotations

import datetime as dt
import shutil
import urllib.parse
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import polars as pl
from dagster_aws.s3 import S3Resource

from trainflow.config import ExperimentConfig, load_config
from trainflow.contracts import Contract, load_contract
from trainflow.lake.delta_lake import DayWindow, DeltaLake
from trainflow.lake.object_store import ObjectStore
from trainflow.settings import (
    DBT_PROJECT_DIR,
    DEFAULT_CHUNK_ROWS,
    MLFLOW_TRACKING_URI_VAR,
    PACKAGED_CONTRACTS_DIR,
    Settings,
    redact_userinfo,
    s3_timeout_options,
)
from trainflow.sources.nycflights13 import TABLES
from trainflow.warehouse.base import MODEL_SCHEMA, Warehouse, warehouse_at
from trainflow.warehouse.dbt_profile import write_profile
from trainflow.warehouse.dbt_state import dbt_build_key
from trainflow.warehouse.landing import landed_days

if TYPE_CHECKING:  # MLflow is imported where a step uses it (definitions.STEP_MODULES)
    from mlflow import MlflowClient

WAREHOUSE_MODEL = f"{MODEL_SCHEMA}.flights_enriched"


class ExperimentConfigResource(dg.ConfigurableResource):
    """The experiment config file (TRAINFLOW_CONFIG); its hash goes into every metadata."""

    path: str

    def load(self) -> ExperimentConfig:
        return load_config(Path(self.path))


class ContractsResource(dg.ConfigurableResource):
    """The folder of data contracts (`<table>.yaml`, TRAINFLOW_CONTRACTS_DIR)."""

    directory: str = str(PACKAGED_CONTRACTS_DIR)

    def load(self, table: str) -> Contract:
        path = Path(self.directory) / f"{table}.yaml"
        if not path.exists():
            raise FileNotFoundError(f"no data contract for table {table!r}: {path} is missing")
        return load_contract(path)


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse that `trainflow land` fills and dbt models: a DuckDB file or a
    PostgreSQL database (TRAINFLOW_WAREHOUSE_URL; never a password, see settings.py)."""

    url: str
    # Where the dbt profile for this warehouse is written (settings.dbt_profiles_dir).
    dbt_profiles_dir: str = ""
    # Where dbt writes run artifacts (settings.dbt_target_dir); empty: the project's target/.
    dbt_target_dir: str = ""
    # Invocation folders kept under dbt_target_dir (older ones are removed): enough to read
    # the logs of the last few builds, never a folder per run forever.
    dbt_invocations_kept: int = 10

    def connect(self) -> Warehouse:
        return warehouse_at(self.url)

    def write_dbt_profile(self) -> Path:
        """Render dbt's profiles.yml for this warehouse; returns its folder."""
        if not self.dbt_profiles_dir:
            raise ValueError(
                "WarehouseResource.dbt_profiles_dir is not set (build_resources sets it)"
            )
        return write_profile(Path(self.dbt_profiles_dir), self.connect())

    def dbt_target_path(self, run_id: str) -> Path | None:
        """A fresh folder for one dbt call's artifacts and logs under `dbt_target_dir` (the
        oldest beyond `dbt_invocations_kept` removed), or None for dagster-dbt's default (a
        fresh folder in the dbt project's target/)."""
        if not self.dbt_target_dir:
            return None
        root = Path(self.dbt_target_dir)
        if root.is_dir():
            folders = sorted(
                (p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime
            )
            for old in folders[: max(0, len(folders) - self.dbt_invocations_kept + 1)]:
                shutil.rmtree(old, ignore_errors=True)
        return root / f"{run_id[:8]}-{uuid.uuid4().hex[:8]}"

    def dbt_build_key(self, manifest: Path) -> str:
        """What a `dbt build` of the parsed project `manifest` depends on here
        (trainflow/warehouse/dbt_state.py)."""
        return dbt_build_key(
            manifest, DBT_PROJECT_DIR / "dbt_project.yml", self.connect(),
            [f"raw.{table}" for table in (*TABLES, "landings")],
        )  # fmt: skip

    def read_flights(self, window: DayWindow) -> pl.DataFrame:
        """The dbt model's rows for the window, sorted by flight_id (a stable order)."""
        return self.connect().read(
            f"select * from {WAREHOUSE_MODEL} where day between ? and ? order by flight_id",
            [window.first, window.last],
        )

    def flight_counts(self, window: DayWindow) -> dict[dt.date, int]:
        """Rows per day of the window in the warehouse (how a step sizes its chunks)."""
        counts = self.connect().read(
            f"select day, count(*) as n_rows from {MODEL_SCHEMA}.stg_flights "
            "where day between ? and ? group by day",
            [window.first, window.last],
        )
        return {day: int(n) for day, n in counts.iter_rows()}

    def landed_rows(self, window: DayWindow) -> dict[dt.date, int]:
        """Flight rows the landing log records for each day of the window (its latest
        landing; days whose count predates the log's column are left out)."""
        landed = self.connect().read(
            f"select day, landed_rows from {MODEL_SCHEMA}.stg_landings "
            "where day between ? and ? and landed_rows is not null",
            [window.first, window.last],
        )
        return {day: int(n) for day, n in landed.iter_rows()}

    def read_model(self, model: str) -> pl.DataFrame:
        """A whole (small) warehouse model, e.g. a reference table such as `stg_planes`."""
        return self.connect().read(f"select * from {MODEL_SCHEMA}.{model}")

    def newest_landed_day(self) -> dt.date | None:
        days = landed_days(self.connect())
        return days[-1] if days else None


class LakeResource(dg.ConfigurableResource):
    """Where the lake is: a folder, or `s3://bucket/prefix` plus endpoint and region."""

    lake_uri: str
    aws_endpoint_url: str | None = None
    aws_region: str | None = None
    aws_allow_http: bool = False
    # TRAINFLOW_S3_TIMEOUT: a store that does not answer fails the step after this many
    # seconds, so IO_RETRY sees it (settings.py says why).
    s3_timeout_seconds: int | None = None
    # TRAINFLOW_CHUNK_ROWS: rows a daily step holds at a time (lake/spool.py).
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    # The boto3 side of an S3 lake (reports, manifests): dagster-aws's resource, configured
    # with endpoint and region only (build_resources). Optional because a folder lake needs
    # none; an S3 lake without one gets the same resource built from the fields above.
    # Delta tables do not use it: deltalake has its own Rust client (storage options).
    s3: S3Resource | None = None

    def _options(self) -> dict[str, str]:
        options: dict[str, str] = {}
        if self.aws_endpoint_url:
            options["AWS_ENDPOINT_URL"] = self.aws_endpoint_url
        if self.aws_region:
            options["AWS_REGION"] = self.aws_region
        if self.aws_allow_http:
            options["AWS_ALLOW_HTTP"] = "true"
        if self.s3_timeout_seconds and self.lake_uri.startswith("s3://"):
            options.update(s3_timeout_options(self.s3_timeout_seconds))
        return options

    def lake(self) -> DeltaLake:
        return DeltaLake(root=self.lake_uri, storage_options=self._options())

    def s3_resource(self) -> S3Resource:
        # No credential fields are ever set: boto3 finds them in the environment or the
        # pod's role. (TRAINFLOW_S3_TIMEOUT bounds deltalake only: S3Resource has no
        # timeout fields, so boto3 keeps botocore's timeouts and S3Resource's retries.)
        return self.s3 or S3Resource(
            endpoint_url=self.aws_endpoint_url, region_name=self.aws_region
        )

    def object_store(self, folder: str) -> ObjectStore:
        """Files that are not tables under `<lake root>/<folder>` (`_reports`, `_manifests`):
        one S3 client per store, from `S3Resource.get_client`, not one per request."""
        root = f"{self.lake_uri.rstrip('/')}/{folder}"
        if not root.startswith("s3://"):
            return ObjectStore(root=root)
        return ObjectStore(root=root, s3_client_factory=self.s3_resource().get_client)


class MlflowResource(dg.ConfigurableResource):
    """MLflow tracking and registry (MLflow's own client; aliases, never stages).

    Why not dagster-mlflow's `mlflow_tracking` resource and `end_mlflow_on_run_finished`
    hook: they start one MLflow run per *Dagster run*, in every step that names the
    resource, and end it from a hook on the job's last op. trainflow logs one MLflow run per
    *model cache key*, found again by a retry or a re-execution in another Dagster run
    (registry/runs.py), and only the `model` step logs one; an asset job whose last node is
    not selected would never end dagster-mlflow's run. Its `env` config copies variables
    into os.environ, and its documented use puts AWS keys there: resource config the UI
    shows. What trainflow keeps from it is its tag convention: every MLflow run carries
    the Dagster run under `dagster_run_id` (registry.DAGSTER_RUN_ID_TAG), the tag
    dagster-mlflow's resource sets and searches by. (Its chunked `log_params` is not
    needed: MLflow's client batches parameters itself.)
    """

    # The tracking URI: a plain string without credentials, or `dg.EnvVar` when
    # MLFLOW_TRACKING_URI carries them (definitions.mlflow_resource). Never logged as is.
    tracking_uri: str
    # Experiments' artifact root for a local store; None for a tracking server, which
    # chooses (its `mlflow-artifacts:/` proxy in front of S3).
    artifact_uri: str | None = None
    # Where registrations take their lock (settings.registry_lock_dir).
    lock_dir: str

    def client(self) -> MlflowClient:
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        return mlflow.MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def experiment_id(self, name: str) -> str:
        client = self.client()
        found = client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        if self.artifact_uri is None:  # the server's default artifact root
            return str(client.create_experiment(name))
        return str(client.create_experiment(name, artifact_location=f"{self.artifact_uri}/{name}"))

    @property
    def ui_url(self) -> str | None:
        """The tracking server's web UI, without credentials; None for a local store."""
        uri = redact_userinfo(self.tracking_uri).rstrip("/")
        return uri if uri.startswith(("http://", "https://")) else None

    def run_url(self, experiment_id: str, run_id: str) -> str | None:
        """A link to the MLflow run for the Dagster UI (the server's own URL layout)."""
        return f"{self.ui_url}/#/experiments/{experiment_id}/runs/{run_id}" if self.ui_url else None

    def model_version_url(self, name: str, version: str) -> str | None:
        if self.ui_url is None:
            return None
        return f"{self.ui_url}/#/models/{urllib.parse.quote(name, safe='')}/versions/{version}"


def lake_resource(settings: Settings) -> LakeResource:
    """The lake: Delta tables through deltalake, other files through dagster-aws's
    S3Resource; both configured with endpoint and region, never credentials."""
    opts = settings.storage_options
    endpoint = opts.get("AWS_ENDPOINT_URL")
    region = opts.get("AWS_REGION") or opts.get("AWS_DEFAULT_REGION")
    return LakeResource(
        lake_uri=settings.lake_uri,
        aws_endpoint_url=endpoint,
        aws_region=region,
        aws_allow_http=opts.get("AWS_ALLOW_HTTP", "").lower() == "true",
        s3_timeout_seconds=settings.s3_timeout_seconds,
        chunk_rows=settings.chunk_rows,
        s3=S3Resource(endpoint_url=endpoint, region_name=region)
        if settings.lake_uri.startswith("s3://")
        else None,
    )


def mlflow_resource(settings: Settings) -> MlflowResource:
    """MLflow: a tracking URI that carries a password is read from MLFLOW_TRACKING_URI when
    the resource is built in the step (`dg.EnvVar`: the UI shows the variable's name)."""
    return MlflowResource(
        tracking_uri=dg.EnvVar(MLFLOW_TRACKING_URI_VAR)
        if settings.mlflow_credentials_in_uri
        else settings.mlflow_tracking_uri,
        artifact_uri=settings.mlflow_artifact_uri,
        lock_dir=str(settings.registry_lock_dir),
    )
