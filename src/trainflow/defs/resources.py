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
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import polars as pl
from dagster_aws.s3 import S3Resource

from trainflow.config import ExperimentConfig, load_config
from trainflow.contracts import Contract, load_contract
from trainflow.experiment_store import STORE_FOLDER, ExperimentStore
from trainflow.lake.delta_lake import DayWindow, DeltaLake
from trainflow.lake.object_store import ObjectStore
from trainflow.registry.tracking import MlflowTracking
from trainflow.settings import (
    DBT_PROJECT_DIR,
    DEFAULT_CHUNK_ROWS,
    MLFLOW_TRACKING_URI_VAR,
    PACKAGED_CONTRACTS_DIR,
    Settings,
    s3_timeout_options,
)
from trainflow.sources.nycflights13 import TABLES
from trainflow.stages.reference_tables import REFERENCE_TABLES
from trainflow.warehouse.base import Warehouse
from trainflow.warehouse.dbt_profile import write_profile
from trainflow.warehouse.dbt_state import dbt_build_key
from trainflow.warehouse.factory import warehouse_at
from trainflow.warehouse.models import WarehouseModels

if TYPE_CHECKING:  # MLflow is imported where a step uses it (definitions.STEP_MODULES)
    from mlflow import MlflowClient


class ContractsResource(dg.ConfigurableResource):
    """The folder of data contracts (`<table>.yaml`, TRAINFLOW_CONTRACTS_DIR)."""

    directory: str = str(PACKAGED_CONTRACTS_DIR)

    def load(self, table: str) -> Contract:
        path = Path(self.directory) / f"{table}.yaml"
        if not path.exists():
            raise FileNotFoundError(f"no data contract for table {table!r}: {path} is missing")
        return load_contract(path)

    def reference_contracts(self) -> dict[str, Contract]:
        """The contract of every reference table a flight joins (stages/reference_tables.py)."""
        return {table: self.load(table) for table in REFERENCE_TABLES}


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

    def models(self) -> WarehouseModels:
        """The dbt models as the stages read them (trainflow/warehouse/models.py)."""
        return WarehouseModels(self.connect())

    def read_flights(self, window: DayWindow) -> pl.DataFrame:
        return self.models().read_flights(window)

    def flight_counts(self, window: DayWindow) -> dict[dt.date, int]:
        return self.models().flight_counts(window)

    def landed_rows(self, window: DayWindow) -> dict[dt.date, int]:
        return self.models().landed_rows(window)

    def read_model(self, model: str) -> pl.DataFrame:
        return self.models().read_model(model)

    def newest_landed_day(self) -> dt.date | None:
        return self.models().newest_landed_day()


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


class ExperimentConfigResource(dg.ConfigurableResource):
    """The code location's experiment config (TRAINFLOW_CONFIG), which the daily steps and
    the automation read, and the configs of the `experiments` partitions, which the
    training-side steps read by their partition key (trainflow/experiment_store.py)."""

    path: str
    # Where `trainflow experiments add` stores the other experiments' configs (None: only
    # the code location's own config, as tests of the daily steps build it).
    lake: LakeResource | None = None

    def load(self) -> ExperimentConfig:
        return load_config(Path(self.path))

    def store(self) -> ExperimentStore:
        if self.lake is None:
            raise ValueError("experiment configs other than TRAINFLOW_CONFIG need the lake")
        return ExperimentStore(self.lake.object_store(STORE_FOLDER), Path(self.path))

    def load_experiment(self, name: str) -> ExperimentConfig:
        """The config of experiment partition `name`."""
        if self.lake is None:
            own = self.load()
            if name != own.name:
                raise ValueError(f"experiment {name!r}: this resource holds {own.name!r} only")
            return own
        return self.store().load(name)


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

    def tracking(self) -> MlflowTracking:
        """The server as the stages use it (trainflow/registry/tracking.py)."""
        return MlflowTracking(self.tracking_uri, self.artifact_uri, self.lock_dir)

    def client(self) -> MlflowClient:
        return self.tracking().client()

    def experiment_id(self, name: str) -> str:
        return self.tracking().experiment_id(name)

    @property
    def ui_url(self) -> str | None:
        return self.tracking().ui_url

    def run_url(self, experiment_id: str, run_id: str) -> str | None:
        return self.tracking().run_url(experiment_id, run_id)

    def model_version_url(self, name: str, version: str) -> str | None:
        return self.tracking().model_version_url(name, version)


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
