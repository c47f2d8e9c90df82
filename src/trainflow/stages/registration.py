"""Stage 7, registration: an MLflow model version tagged with its lineage and the gate's
decision, which the evaluation took and stored in its report (applied here, never
recomputed).

Fails the gate: tagged `rejected` with the reasons, no alias, and the run tagged. Passes:
alias `challenger`, and `champion` too if the decision promotes (`trainflow.promotion`).
The model version carries the cache key as a tag, so a retry or a re-execution after a kill
finds the version the first attempt made (`registry.operations.register_candidate`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from trainflow.cache import cache_key, with_bookkeeping
from trainflow.config import ExperimentConfig
from trainflow.lake.delta_lake import DeltaLake
from trainflow.lake.tables import DeltaInput, LakeOutput
from trainflow.registry import DAGSTER_RUN_ID_TAG
from trainflow.registry.tracking import MlflowTracking
from trainflow.stages.evaluation import champion_result, metric_of
from trainflow.stages.step import Step, Url, table_hit

if TYPE_CHECKING:
    pass

TABLE = "registry_entry"
# Set on a run whose model failed the gate, so nobody promotes its model by mistake.
REJECTED_RUN_TAG = "trainflow/model_rejected"


def register_model(
    step: Step,
    model: DeltaInput,
    evaluation_report: DeltaInput,
    config: ExperimentConfig,
    lake: DeltaLake,
    registry: MlflowTracking,
) -> LakeOutput:
    """The registry entry row for the evaluated model, registering it first (exactly once
    per cache key). A cache hit (same model, same evaluation, same gate) registers nothing
    new."""
    from trainflow.evaluation.scorecard import decision_from_report
    from trainflow.registry.operations import register_candidate

    key = cache_key(
        step.code_version,
        config.hash_of("gate", "registered_model_name"),
        {"model": model.data_version, "evaluation_report": evaluation_report.data_version},
    )
    if table_hit(step, lake, TABLE, key, config.name):
        return LakeOutput(frame=None)
    row = model.frame.row(0, named=True)
    report = evaluation_report.frame
    candidate_auc = metric_of(report, "model", "roc_auc")
    baseline_auc = metric_of(report, "baseline", "roc_auc")
    if candidate_auc is None or baseline_auc is None:
        raise ValueError(
            "registry_entry: evaluation_report has no test ROC AUC for the model or the "
            "baseline; materialize evaluation_report again"
        )
    champion = champion_result(report)
    # The decision the evaluation took and showed in its report: one source of truth.
    decision = decision_from_report(report)
    lineage = json.loads(row["lineage_json"])
    tags = {
        DAGSTER_RUN_ID_TAG: lineage["dagster_run_id"],
        "registered_by_dagster_run_id": step.run_id,
        "config_hash": lineage["config_hash"],
        "code_versions": json.dumps(lineage["code_versions"], sort_keys=True),
        "input_delta_versions": json.dumps(lineage["input_delta_versions"], sort_keys=True),
        "model_sha256": row["model_sha256"],
        "test_roc_auc": f"{candidate_auc:.6f}",
        "baseline_test_roc_auc": f"{baseline_auc:.6f}",
        **(
            {"model_card": str(report["model_card_uri"][0])}
            if "model_card_uri" in report.columns
            else {}
        ),
    }
    name = config.registered_model_name
    registered = register_candidate(
        registry.client(),
        name,
        lock_dir=Path(registry.lock_dir),
        source=row["mlflow_model_uri"],
        run_id=row["mlflow_run_id"],
        cache_key=key,
        tags=tags,
        decision=decision,
        compared_champion=champion.version,
        via=f"dagster run {step.run_id}",
    )
    version, created = registered.version, registered.created
    aliases, decision = registered.aliases, registered.decision
    if not created:
        step.info(f"{name} v{version.version} was registered by an earlier attempt")
    if not decision.passed_gate:
        # Mark the Dagster run too, so nobody promotes its model by mistake.
        step.tag_run({REJECTED_RUN_TAG: f"v{version.version}: {decision.summary()}"})
        step.warning(f"model version {version.version} rejected: {decision.summary()}")
    step.info(
        f"registered {name} v{version.version} "
        f"({', '.join(aliases) or 'no alias'}): {decision.summary()}"
    )
    version_url = registry.model_version_url(name, str(version.version))
    step.add_output_metadata(
        {
            **({"mlflow_model_version_url": Url(version_url)} if version_url else {}),
            "registered_model": name,
            "version": int(version.version),
            "aliases": ", ".join(aliases) or "none",
            "verdict": decision.verdict,
            "decision": decision.summary(),
            "model_uri": f"models:/{name}/{version.version}",
        }
    )
    entry = pl.DataFrame(
        {
            "registered_model": [name],
            "version": [int(version.version)],
            "aliases": [aliases],
            "promoted": [decision.promote],
            "verdict": [decision.verdict],
            "decision": [decision.summary()],
            "model_sha256": [row["model_sha256"]],
            "dagster_run_id": [step.run_id],
        }
    )
    return LakeOutput(frame=with_bookkeeping(entry, key))
