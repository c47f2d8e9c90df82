"""Read-only views of the MLflow model registry, for the CLI and tests."""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from trainflow.credentials import refused_login
from trainflow.registry import CHALLENGER, CHAMPION, RegistryError

ALIASES = (CHAMPION, CHALLENGER)


def registry_aliases(tracking_uri: str | None, model_name: str) -> dict[str, str]:
    """alias -> "vN (test ROC AUC x)" for each alias that is set. A None URI: MLflow reads
    MLFLOW_TRACKING_URI itself (settings.mlflow_client_uri). A refused login raises: an
    empty list would read as "no champion"."""
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    found: dict[str, str] = {}
    for alias in ALIASES:
        try:
            version = client.get_model_version_by_alias(model_name, alias)
        except MlflowException as exc:
            if refused_login(exc) is not None:
                raise
            continue
        auc = version.tags.get("test_roc_auc", "?")
        found[alias] = f"v{version.version} (test ROC AUC {auc}, source {version.source})"
    return found


def last_champion_event(tracking_uri: str | None, model_name: str) -> str | None:
    """The newest promotion or rollback of the champion as one line; None when none is
    recorded or the registry cannot be read (status shows what it can)."""
    from trainflow.registry.operations import history

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        events = history(client, model_name)
    except (MlflowException, RegistryError) as exc:
        if refused_login(exc) is not None:
            raise
        return None
    return events[0].line() if events else None
