"""One resource per external system: experiment config, data contracts, warehouse, lake,
MLflow.

Resource fields hold locations only. Credentials are never resource config (they would
show in the UI): deltalake and boto3 read the standard AWS_* variables themselves.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import dagster as dg
import mlflow
import polars as pl
from mlflow import MlflowClient

from trainflow.config import ExperimentConfig, load_config
from trainflow.contracts.contract import Contract, load_contract
from trainflow.lake.delta_lake import DayWindow, DeltaLake
from trainflow.lake.object_store import ObjectStore
from trainflow.settings import PACKAGED_CONTRACTS_DIR, s3_timeout_options
from trainflow.warehouse.base import MODEL_SCHEMA, Warehouse, warehouse_at
from trainflow.warehouse.dbt_profile import write_profile
from trainflow.warehouse.landing import landed_days

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
        """A fresh folder for one dbt call's artifacts and logs under `dbt_target_dir`, or
        None for dagster-dbt's default (a fresh folder in the dbt project's target/)."""
        if not self.dbt_target_dir:
            return None
        return Path(self.dbt_target_dir) / f"{run_id[:8]}-{uuid.uuid4().hex[:8]}"

    def read_flights(self, window: DayWindow) -> pl.DataFrame:
        """The dbt model's rows for the window, sorted by flight_id (a stable order)."""
        return self.connect().read(
            f"select * from {WAREHOUSE_MODEL} where day between ? and ? order by flight_id",
            [window.first, window.last],
        )

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

    def object_store(self, folder: str) -> ObjectStore:
        """Files that are not tables under `<lake root>/<folder>` (`_reports`, `_manifests`)."""
        return ObjectStore(
            root=f"{self.lake_uri.rstrip('/')}/{folder}", storage_options=self._options()
        )


class MlflowResource(dg.ConfigurableResource):
    """MLflow tracking and registry (MLflow's own client; aliases, never stages)."""

    tracking_uri: str
    artifact_uri: str
    # Where registrations take their lock (settings.registry_lock_dir).
    lock_dir: str

    def client(self) -> MlflowClient:
        mlflow.set_tracking_uri(self.tracking_uri)
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def experiment_id(self, name: str) -> str:
        client = self.client()
        found = client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        return str(client.create_experiment(name, artifact_location=f"{self.artifact_uri}/{name}"))
