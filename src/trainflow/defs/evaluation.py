"""Evaluation on the test window, then registration in MLflow with the promotion gate."""

import base64
import json
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg
import mlflow
import numpy as np
import polars as pl
from mlflow.exceptions import MlflowException

from trainflow.cache import cache_key, data_hash, with_bookkeeping
from trainflow.defs.caching import CachePolicyResource, code_version_of, table_hit
from trainflow.defs.code_versions import versioned_asset
from trainflow.defs.io_manager import DeltaInput, LakeOutput
from trainflow.defs.resources import ExperimentConfigResource, LakeResource, MlflowResource
from trainflow.defs.retries import IO_RETRY, fail_fast
from trainflow.evaluation.metrics import binary_metrics, slice_metrics
from trainflow.evaluation.plots import calibration_plot, roc_plot
from trainflow.evaluation.report import render_html, render_markdown
from trainflow.features.flights import LABEL
from trainflow.models.baseline import fit_calendar_baseline, predict_baseline
from trainflow.models.lightgbm_model import load_model, predict
from trainflow.promotion import decide_promotion

CHAMPION, CHALLENGER = "champion", "challenger"
REJECTED_RUN_TAG = "trainflow/model_rejected"


def _champion_scores(
    mlflow_tracking: MlflowResource, model_name: str, test: pl.DataFrame
) -> tuple[str | None, np.ndarray | None]:
    """Score the current champion on this test window, if there is one it can score.

    Reads registry state at run time: the comparison depends on which version holds the
    alias now, so the version used is recorded in the report and metadata.
    """
    client = mlflow_tracking.client()
    try:
        version = client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None, None
    booster = mlflow.lightgbm.load_model(f"models:/{model_name}@{CHAMPION}")
    features = list(booster.feature_name())
    if not set(features) <= set(test.columns):
        return f"{version.version} (features not in this dataset)", None
    return str(version.version), predict(booster, test, features)


def _long_metrics(role: str, metrics: dict[str, float]) -> list[dict[str, Any]]:
    return [
        {"role": role, "slice": "all", "slice_value": "all", "metric": k, "value": v}
        for k, v in metrics.items()
    ]


@versioned_asset(
    retry_policy=IO_RETRY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="evaluation",
    kinds={"mlflow"},
    op_tags={"trainflow/stage": "evaluation"},
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
    """Test-window metrics for the model, the calendar baseline and the current champion,
    slices by carrier and origin, ROC and calibration plots, and a Markdown/HTML report.

    The cache key leaves out the registry: a hit keeps the report as it was computed,
    against the champion of that time (named in the report); force a run to re-compare.
    """
    config = experiment.load()
    key = cache_key(
        code_version_of(context),
        config.hash_of("evaluation", "windows", "registered_model_name"),
        {"training_dataset": training_dataset.data_version, "model": model.data_version},
    )
    if table_hit(context, cache_policy, lake.lake(), "evaluation_report", key):
        return LakeOutput(frame=None)
    threshold = config.evaluation.decision_threshold
    data = training_dataset.frame
    train = data.filter(pl.col("split") == "train")
    test = data.filter(pl.col("split") == "test")
    y_true = test[LABEL].to_numpy()
    row = model.frame.row(0, named=True)

    scores = {"model": predict(load_model(row["model_text"]), test, row["feature_names"])}
    scores["baseline"] = predict_baseline(fit_calendar_baseline(train, LABEL), test)
    champion_version, champion_scores = _champion_scores(
        mlflow_tracking, config.registered_model_name, test
    )
    if champion_scores is not None:
        scores["champion"] = champion_scores
    metrics = {name: binary_metrics(y_true, s, threshold) for name, s in scores.items()}
    slices = slice_metrics(test, y_true, scores["model"], threshold)

    images = {
        "roc.png": roc_plot(y_true, scores),
        "calibration.png": calibration_plot(y_true, scores),
    }
    store = lake.object_store("_reports")
    prefix = f"evaluation_report/{context.run_id}"
    for name, png in images.items():
        store.put(f"{prefix}/{name}", png, "image/png")
    markdown = render_markdown(
        title=f"Evaluation of {config.name}",
        context={
            "model sha256": row["model_sha256"],
            "test window": f"{config.windows.test.start} .. {config.windows.test.end}",
            "decision threshold": str(threshold),
            "champion compared": champion_version or "none",
            "config hash": config.config_hash,
            "dagster run": context.run_id,
        },
        models=metrics,
        slices=slices,
        plot_links={name: f"{name} (beside this report)" for name in images},
    )
    report_uri = store.put(f"{prefix}/report.md", markdown.encode(), "text/markdown")
    html_uri = store.put(
        f"{prefix}/report.html", render_html(markdown, images).encode(), "text/html"
    )

    client = mlflow_tracking.client()
    for name, value in metrics["model"].items():
        client.log_metric(row["mlflow_run_id"], f"test_{name}", value)
    client.log_metric(row["mlflow_run_id"], "baseline_test_roc_auc", metrics["baseline"]["roc_auc"])
    with tempfile.TemporaryDirectory() as folder:
        for name, png in images.items():
            (Path(folder) / name).write_bytes(png)
        (Path(folder) / "report.md").write_text(markdown)
        client.log_artifacts(row["mlflow_run_id"], folder, "evaluation")

    inline = "\n\n".join(
        f"![{name}](data:image/png;base64,{base64.b64encode(png).decode()})"
        for name, png in images.items()
    )
    context.add_output_metadata(
        {
            "test_roc_auc": metrics["model"]["roc_auc"],
            "baseline_test_roc_auc": metrics["baseline"]["roc_auc"],
            "champion_test_roc_auc": metrics.get("champion", {}).get("roc_auc"),
            "champion_version": champion_version or "none",
            "report": dg.MetadataValue.md(markdown),
            "plots": dg.MetadataValue.md(inline),
            "report_uri": report_uri,
            "report_html_uri": html_uri,
        }
    )
    rows = [r for role, m in metrics.items() for r in _long_metrics(role, m)]
    for sliced in slices.iter_rows(named=True):
        rows += [
            {"role": "model", "slice": sliced["slice"], "slice_value": sliced["value"],
             "metric": k, "value": float(sliced[k])}
            for k in ("roc_auc", "positive_rate", "rows")
        ]  # fmt: skip
    metrics_frame = pl.DataFrame(rows)
    # Content hash of the numbers only: the report's location names the run.
    hashed = data_hash(metrics_frame)
    report = metrics_frame.with_columns(
        pl.lit(report_uri).alias("report_uri"), pl.lit(row["model_sha256"]).alias("model_sha256")
    )
    return LakeOutput(frame=with_bookkeeping(report, key, hashed))


def _metric(report: pl.DataFrame, role: str, metric: str) -> float | None:
    found = report.filter(
        (pl.col("role") == role) & (pl.col("slice") == "all") & (pl.col("metric") == metric)
    )
    return float(found["value"][0]) if found.height else None


@versioned_asset(
    retry_policy=IO_RETRY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="evaluation",
    kinds={"mlflow"},
    op_tags={"trainflow/stage": "registry"},
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
    """An MLflow model version tagged with its lineage. Fails the gate: tagged `rejected`
    with the reason, no alias, and the Dagster run tagged. Passes: alias `challenger`, and
    `champion` too if it is not worse than the current champion (`trainflow.promotion`).

    A cache hit (same model, same evaluation, same gate) registers nothing new."""
    config = experiment.load()
    key = cache_key(
        code_version_of(context),
        config.hash_of("gate", "registered_model_name"),
        {"model": model.data_version, "evaluation_report": evaluation_report.data_version},
    )
    if table_hit(context, cache_policy, lake.lake(), "registry_entry", key):
        return LakeOutput(frame=None)
    row = model.frame.row(0, named=True)
    report = evaluation_report.frame
    candidate_auc = _metric(report, "model", "roc_auc")
    baseline_auc = _metric(report, "baseline", "roc_auc")
    assert candidate_auc is not None and baseline_auc is not None
    decision = decide_promotion(
        candidate_auc=candidate_auc,
        baseline_auc=baseline_auc,
        champion_auc=_metric(report, "champion", "roc_auc"),
        gate=config.gate,
    )
    lineage = json.loads(row["lineage_json"])
    tags = {
        "dagster_run_id": lineage["dagster_run_id"],
        "registered_by_dagster_run_id": context.run_id,
        "config_hash": lineage["config_hash"],
        "code_versions": json.dumps(lineage["code_versions"], sort_keys=True),
        "input_delta_versions": json.dumps(lineage["input_delta_versions"], sort_keys=True),
        "model_sha256": row["model_sha256"],
        "test_roc_auc": f"{candidate_auc:.6f}",
        "baseline_test_roc_auc": f"{baseline_auc:.6f}",
        "promotion": decision.summary(),
    }
    if not decision.passed_gate:
        tags.update(rejected="true", rejected_reason=decision.summary())
    client = mlflow_tracking.client()
    version = mlflow.register_model(
        row["mlflow_model_uri"], config.registered_model_name, tags=tags
    )
    aliases = []
    if decision.passed_gate:
        aliases.append(CHALLENGER)
        client.set_registered_model_alias(config.registered_model_name, CHALLENGER, version.version)
    if decision.promote:
        aliases.append(CHAMPION)
        client.set_registered_model_alias(config.registered_model_name, CHAMPION, version.version)
    if not decision.passed_gate:
        # Mark the Dagster run too, so nobody promotes its model by mistake.
        context.instance.add_run_tags(
            context.run_id, {REJECTED_RUN_TAG: f"v{version.version}: {decision.summary()}"}
        )
        context.log.warning(f"model version {version.version} rejected: {decision.summary()}")
    context.log.info(
        f"registered {config.registered_model_name} v{version.version} "
        f"({', '.join(aliases) or 'no alias'}): {decision.summary()}"
    )
    context.add_output_metadata(
        {
            "registered_model": config.registered_model_name,
            "version": int(version.version),
            "aliases": ", ".join(aliases) or "none",
            "verdict": decision.verdict,
            "decision": decision.summary(),
            "model_uri": f"models:/{config.registered_model_name}/{version.version}",
        }
    )
    entry = pl.DataFrame(
        {
            "registered_model": [config.registered_model_name],
            "version": [int(version.version)],
            "aliases": [aliases],
            "promoted": [decision.promote],
            "verdict": [decision.verdict],
            "decision": [decision.summary()],
            "model_sha256": [row["model_sha256"]],
            "dagster_run_id": [context.run_id],
        }
    )
    return LakeOutput(frame=with_bookkeeping(entry, key))
