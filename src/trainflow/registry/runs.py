"""One MLflow run per model cache key.

The `model` step logs its run before the IO manager commits the model to the lake. A retry,
or a re-execution after the process was killed between the two, must not log a second run:
it looks for a complete run tagged with the same cache key and reuses it. A run that was
interrupted while logging (no completion tag) is deleted and logged anew, so `reproduce`
never has two runs to choose from.
"""

from __future__ import annotations

import contextlib
import getpass
import io
import json
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Run, ViewType

from trainflow.manifest import MANIFEST_ARTIFACT
from trainflow.models.mlp_pyfunc import log_mlp_pyfunc
from trainflow.registry import CACHE_KEY_TAG, MODEL_TEXT_ARTIFACT, RegistryError
from trainflow.settings import redact_userinfo

if TYPE_CHECKING:
    import lightgbm as lgb  # imported where a booster is logged: CLI commands skip its ~2 s

# Set last, after every artifact: a run without it was interrupted while logging.
COMPLETE_TAG = "trainflow.complete"
MODEL_URI_TAG = "trainflow.model_uri"


def runs_with_key(client: MlflowClient, experiment_id: str, cache_key: str) -> list[Run]:
    """Active runs of the experiment tagged with this cache key, oldest first."""
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{CACHE_KEY_TAG}` = '{cache_key}'",
        run_view_type=ViewType.ACTIVE_ONLY,
        order_by=["attributes.start_time ASC"],
    )
    return list(found)


def complete_run(runs: list[Run]) -> Run | None:
    """The run that finished logging everything, if one did."""
    for run in runs:
        if run.info.status == "FINISHED" and run.data.tags.get(COMPLETE_TAG) == "true":
            return run
    return None


def discard_incomplete(client: MlflowClient, runs: list[Run]) -> list[str]:
    """Delete runs interrupted while logging; returns their ids (for the step's log)."""
    discarded = []
    for run in runs:
        if run.data.tags.get(COMPLETE_TAG) != "true":
            client.delete_run(run.info.run_id)
            discarded.append(run.info.run_id)
    return discarded


@dataclass(frozen=True)
class ModelRun:
    """The MLflow run of one model cache key."""

    run_id: str
    model_uri: str
    # The manifest the run logged when an earlier attempt logged it (the record of how its
    # model was trained); None when logged now.
    reused_manifest: dict[str, Any] | None
    discarded: list[str]  # runs of attempts interrupted while logging, deleted


def model_run_once(
    client: MlflowClient,
    experiment_id: str,
    cache_key: str,
    model_sha256: str,
    log: Callable[[], tuple[str, str]],
) -> ModelRun:
    """The complete run an earlier attempt logged for this cache key, else `log()`'s new
    one (after deleting runs interrupted while logging). A reused run whose model differs
    from the one trained now means training is not deterministic here: refused."""
    attempts = runs_with_key(client, experiment_id, cache_key)
    logged = complete_run(attempts)
    if logged is not None:
        if logged.data.tags.get("model_sha256") != model_sha256:
            raise RegistryError(
                f"MLflow run {logged.info.run_id} logged model "
                f"{logged.data.tags.get('model_sha256')} for this cache key, training now gave "
                f"{model_sha256}: training is not deterministic on this machine"
            )
        return ModelRun(
            logged.info.run_id,
            logged.data.tags[MODEL_URI_TAG],
            logged_manifest(client, logged),
            discarded=[],
        )
    discarded = discard_incomplete(client, attempts)
    run_id, model_uri = log()
    return ModelRun(run_id, model_uri, None, discarded)


def log_model_run(
    *,
    experiment_id: str,
    run_name: str,
    cache_key: str,
    tags: Mapping[str, str],
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    documents: Mapping[str, Any],
    manifest_text: str,
    booster: lgb.Booster | None,
    model_text: str,
    family: str = "lightgbm",
) -> tuple[str, str]:
    """Log a trained model as one MLflow run tagged with its cache key; returns the run id
    and the model URI. The completion tag is set last (see `complete_run`)."""
    # MLflow run ids and timestamps are random / wall-clock by design: they identify the
    # run, they never enter the model bytes, the manifest's hashes or any cache key.
    with (
        _run_links_redacted(),
        mlflow.start_run(
            experiment_id=experiment_id, run_name=run_name, tags={MLFLOW_USER_TAG: os_user()}
        ) as run,
    ):
        mlflow.set_tags({**tags, CACHE_KEY_TAG: cache_key})
        mlflow.log_params(dict(params))
        mlflow.log_metrics(dict(metrics))
        for name, document in documents.items():
            mlflow.log_dict(document, name)
        mlflow.log_text(manifest_text, MANIFEST_ARTIFACT)
        mlflow.log_text(model_text, MODEL_TEXT_ARTIFACT)
        if family == "mlp":  # a pyfunc over the stored weights (no torch to score)
            info = log_mlp_pyfunc(model_text, tags={MLFLOW_USER_TAG: os_user()})
        else:
            assert booster is not None, "a LightGBM run logs its booster"
            import lightgbm as lgb

            info = mlflow.lightgbm.log_model(
                booster,
                name="model",
                pip_requirements=[f"lightgbm=={lgb.__version__}"],
                tags={MLFLOW_USER_TAG: os_user()},  # the logged model gets the tag too
            )
        mlflow.set_tags({MODEL_URI_TAG: info.model_uri, COMPLETE_TAG: "true"})
    return run.info.run_id, info.model_uri


# MLflow fills `mlflow.user` of runs and logged models with MLFLOW_TRACKING_USERNAME when it
# is set: a credential the tags would show to everyone who can read the experiment. The login name of the
# process is what the tag means anyway.
MLFLOW_USER_TAG = "mlflow.user"


def os_user() -> str:
    try:
        return getpass.getuser()
    except (ImportError, KeyError, OSError):  # no login name (a container without a passwd entry)
        return "unknown"


@contextlib.contextmanager
def _run_links_redacted() -> Iterator[None]:
    """MLflow prints "View run ... at: <tracking URI>/#/..." to stdout when a run on a
    tracking server ends, with the URI as given, `user:password@` included; Dagster
    captures stdout into the step's logs. Print it with the userinfo removed instead."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            yield
    finally:
        sys.stdout.write(redact_userinfo(captured.getvalue()))


def logged_manifest(client: MlflowClient, run: Run) -> dict[str, Any]:
    """The manifest a complete run logged (the record of how its model was trained)."""
    with tempfile.TemporaryDirectory() as folder:
        path = client.download_artifacts(run.info.run_id, MANIFEST_ARTIFACT, folder)
        found: dict[str, Any] = json.loads(Path(path).read_text())
    return found
