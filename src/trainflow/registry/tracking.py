"""Where MLflow is, as the stages use it: a client, the experiment of a config, UI links.

The Dagster resource (`defs/resources.MlflowResource`) hands one out; a test or the CLI
builds one from a tracking URI. MLflow itself is imported only when a client is made.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trainflow.settings import redact_userinfo

if TYPE_CHECKING:
    from mlflow import MlflowClient


@dataclass(frozen=True)
class MlflowTracking:
    tracking_uri: str
    # Experiments' artifact root for a local store; None for a tracking server, which
    # chooses (its `mlflow-artifacts:/` proxy in front of S3).
    artifact_uri: str | None
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
