"""Evaluation on the test window, then registration in MLflow with the promotion gate (the
work is `trainflow.stages.evaluation` and `trainflow.stages.registration`)."""

import dagster as dg

from trainflow.defs.caching import CachePolicyResource
from trainflow.defs.code_versions import versioned_asset
from trainflow.defs.partitions import ONE_EXPERIMENT_PER_RUN, experiments
from trainflow.defs.pods import step_tags
from trainflow.defs.resources import ExperimentConfigResource, LakeResource, MlflowResource
from trainflow.defs.retries import IO_RETRY, fail_fast
from trainflow.defs.step_context import step_of
from trainflow.lake.tables import DeltaInput, LakeOutput
from trainflow.stages.evaluation import evaluate_model
from trainflow.stages.registration import REJECTED_RUN_TAG, register_model

__all__ = ["REJECTED_RUN_TAG", "evaluation_report", "registry_entry"]


@versioned_asset(
    retry_policy=IO_RETRY,
    partitions_def=experiments,
    # A backfill over several experiments: one run each, side by side up to the queue's limit.
    backfill_policy=ONE_EXPERIMENT_PER_RUN,
    group_name="evaluation",
    kinds={"mlflow"},
    op_tags=step_tags("evaluation_report", stage="evaluation"),
)
@fail_fast
def evaluation_report(
    context: dg.AssetExecutionContext,
    training_dataset: DeltaInput,
    model: DeltaInput,
    experiment: ExperimentConfigResource,
    mlflow_tracking: MlflowResource,
    lake: LakeResource,
    cache_policy: CachePolicyResource,
) -> LakeOutput:
    """The candidate, the calendar baseline and the current champion scored on the same
    frozen test rows (the training_dataset's Delta version, recorded): metrics with seeded
    bootstrap intervals, slices, calibration, drift, importance, plots, the gate's decision
    (`Evaluation.decide`, applied as is by `registry_entry`), a Markdown/HTML report and
    the model card (docs/evaluation.md).

    The cache key leaves out the registry: a hit keeps the report as it was computed,
    against the champion of that time (named in the report); force a run to re-compare.
    """
    return evaluate_model(
        step_of(context, cache_policy),
        training_dataset,
        model,
        experiment.load_experiment(context.partition_key),
        lake.lake(),
        lake.object_store("_reports"),
        mlflow_tracking.client(),
    )


@versioned_asset(
    retry_policy=IO_RETRY,
    partitions_def=experiments,
    # A backfill over several experiments: one run each, side by side up to the queue's limit.
    backfill_policy=ONE_EXPERIMENT_PER_RUN,
    group_name="evaluation",
    kinds={"mlflow"},
    op_tags=step_tags("registry_entry", stage="registry"),
    # One registration at a time across runs and machines (limit 1 in dagster.yaml); the
    # file lock in registry.versions covers processes that bypass Dagster's pools.
    pool="model_registry",
)
@fail_fast
def registry_entry(
    context: dg.AssetExecutionContext,
    model: DeltaInput,
    evaluation_report: DeltaInput,
    experiment: ExperimentConfigResource,
    mlflow_tracking: MlflowResource,
    lake: LakeResource,
    cache_policy: CachePolicyResource,
) -> LakeOutput:
    """An MLflow model version tagged with its lineage and the gate's decision, which the
    evaluation took and stored in its report (applied here, never recomputed). Fails the
    gate: tagged `rejected` with the reasons, no alias, and the Dagster run tagged. Passes:
    alias `challenger`, and `champion` too if the decision promotes (`trainflow.promotion`).

    A cache hit (same model, same evaluation, same gate) registers nothing new."""
    return register_model(
        step_of(context, cache_policy),
        model,
        evaluation_report,
        experiment.load_experiment(context.partition_key),
        lake.lake(),
        mlflow_tracking.tracking(),
    )
