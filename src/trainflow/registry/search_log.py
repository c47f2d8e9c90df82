"""A search in MLflow: one parent run in the search's experiment, with each trial's model
run (logged by the model step) as its child, so MLflow's UI groups and compares them."""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from trainflow.search import TrialResult

if TYPE_CHECKING:
    from mlflow import MlflowClient

SEARCH_RUN_TAG = "trainflow.search"
SEARCH_DIGEST_TAG = "trainflow.search_digest"
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own tag for nested runs


def log_search(
    client: MlflowClient,
    experiment_id: str,
    name: str,
    results: Sequence[TrialResult],
    best: TrialResult,
    report: dict[str, str],
) -> str:
    """The search's parent run (made once per set of trials and results: a repeated search
    finds it), with the trials' model runs attached as its children. Returns its run id."""
    digest = hashlib.sha256(
        json.dumps(
            [[r.trial.name, r.trial.params, r.value, r.mlflow_run_id] for r in results],
            sort_keys=True,
        ).encode()
    ).hexdigest()
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{SEARCH_DIGEST_TAG}` = '{digest}'",
        max_results=1,
    )
    if found:
        parent = found[0].info.run_id
    else:
        run = client.create_run(
            experiment_id,
            run_name=f"search {name}",
            tags={SEARCH_RUN_TAG: name, SEARCH_DIGEST_TAG: digest},
        )
        parent = run.info.run_id
        client.log_param(parent, "trials", len(results))
        client.log_param(parent, "best_trial", best.trial.name)
        for key, value in sorted(best.trial.params.items()):
            client.log_param(parent, f"best.{key}", value)
        client.log_metric(parent, "best_validation_roc_auc", best.value)
        with tempfile.TemporaryDirectory() as folder:
            for file, text in report.items():
                (Path(folder) / file).write_text(text)
            client.log_artifacts(parent, folder, "search")
        client.set_terminated(parent)
    for r in results:
        if r.mlflow_run_id is not None:
            client.set_tag(r.mlflow_run_id, PARENT_TAG, parent)
            client.set_tag(r.mlflow_run_id, SEARCH_RUN_TAG, name)
    return parent
