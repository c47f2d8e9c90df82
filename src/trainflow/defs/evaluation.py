"""Evaluation on the test window, then registration in MLflow with the promotion gate.

Both steps have side effects outside the lake (report files, MLflow metrics, a model
version, aliases) that happen before the IO manager commits their row. Each is keyed by the
step's cache key, so a retry or a re-execution after a kill reuses what the first attempt
made: report files live under the key, metrics already logged are not logged again, and
the model version carries the key as a tag (`registry.operations.register_candidate`).
"""

import base64
import json
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from trainflow.cache import cache_key, data_hash, with_bookkeeping
from trainflow.defs.caching import CachePolicyResource, code_version_of, table_hit
from trainflow.defs.code_versions import versioned_asset
from trainflow.defs.io_manager import DeltaInput, LakeOutput
from trainflow.defs.pods import step_tags
from trainflow.defs.resources import ExperimentConfigResource, LakeResource, MlflowResource
from trainflow.defs.retries import IO_RETRY, fail_fast
from trainflow.evaluation.metrics import binary_metrics, slice_metrics
from trainflow.evaluation.plots import calibration_plot, roc_plot
from trainflow.evaluation.report import render_html, render_markdown
from trainflow.features.flights import LABEL
from trainflow.models.baseline import fit_calendar_baseline, predict_baseline
from trainflow.models.families import load_scorer
from trainflow.promotion import ChampionResult, decide_promotion
from trainflow.registry import DAGSTER_RUN_ID_TAG
from trainflow.registry.champion import compare_with_champion
from trainflow.registry.operations import register_candidate

REJECTED_RUN_TAG = "trainflow/model_rejected"
# Roles in the evaluation report's metrics: the champion and the candidate scored on the
# same rows (the test days after the champion's training window).
CHAMPION_ROLE, CANDIDATE_ON_CHAMPION_ROWS = "champion", "model_on_champion_rows"


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
    # Each split read on its own (not the whole dataset, then copies of two of its parts).
    train = training_dataset.lazy.filter(pl.col("split") == "train").collect()
    test = training_dataset.lazy.filter(pl.col("split") == "test").collect()
    y_true = test[LABEL].to_numpy()
    row = model.frame.row(0, named=True)

    scores = {"model": load_scorer(row["model_text"], row["model_family"]).predict(test)}
    scores["baseline"] = predict_baseline(fit_calendar_baseline(train, LABEL), test)
    metrics = {name: binary_metrics(y_true, s, threshold) for name, s in scores.items()}
    champion = compare_with_champion(
        mlflow_tracking.client(),
        config.registered_model_name,
        test,
        scores["model"],
        label=LABEL,
        threshold=threshold,
    )
    if champion.champion:
        metrics[CHAMPION_ROLE] = champion.champion
        metrics[CANDIDATE_ON_CHAMPION_ROWS] = champion.candidate
    slices = slice_metrics(test, y_true, scores["model"], threshold)

    images = {
        "roc.png": roc_plot(y_true, scores),
        "calibration.png": calibration_plot(y_true, scores),
    }
    store = lake.object_store("_reports")
    prefix = f"evaluation_report/{key[:16]}"  # the same files for every attempt
    for name, png in images.items():
        store.put(f"{prefix}/{name}", png, "image/png")
    markdown = render_markdown(
        title=f"Evaluation of {config.name}",
        context={
            "model sha256": row["model_sha256"],
            "test window": f"{config.windows.test.start} .. {config.windows.test.end}",
            "decision threshold": str(threshold),
            "champion": champion.status,
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
    logged = client.get_run(row["mlflow_run_id"]).data.metrics
    to_log = {f"test_{name}": value for name, value in metrics["model"].items()}
    to_log["baseline_test_roc_auc"] = metrics["baseline"]["roc_auc"]
    for name, value in to_log.items():
        if logged.get(name) != value:  # an earlier attempt logged it already
            client.log_metric(row["mlflow_run_id"], name, value)
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
            "champion_test_roc_auc": champion.champion.get("roc_auc"),
            # The model on the champion's rows: what its AUC is compared with.
            "model_on_champion_rows_test_roc_auc": champion.candidate.get("roc_auc"),
            "champion": champion.status,
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
    # Content hash of the numbers only (not where the report files are).
    hashed = data_hash(metrics_frame)
    report = metrics_frame.with_columns(
        pl.lit(report_uri).alias("report_uri"),
        pl.lit(row["model_sha256"]).alias("model_sha256"),
        pl.lit(champion.version, dtype=pl.String).alias("champion_version"),
        pl.lit(champion.refused, dtype=pl.String).alias("champion_refused"),
    )
    return LakeOutput(frame=with_bookkeeping(report, key, hashed))


def _metric(report: pl.DataFrame, role: str, metric: str) -> float | None:
    found = report.filter(
        (pl.col("role") == role) & (pl.col("slice") == "all") & (pl.col("metric") == metric)
    )
    return float(found["value"][0]) if found.height else None


def champion_result(report: pl.DataFrame) -> ChampionResult:
    """What the evaluation found about the champion, read back from its report."""
    version = report["champion_version"][0] if "champion_version" in report.columns else None
    refused = report["champion_refused"][0] if "champion_refused" in report.columns else None
    return ChampionResult(
        version=version,
        refused=refused,
        candidate_auc=_metric(report, CANDIDATE_ON_CHAMPION_ROWS, "roc_auc"),
        champion_auc=_metric(report, CHAMPION_ROLE, "roc_auc"),
    )


@versioned_asset(
    retry_policy=IO_RETRY,
    backfill_policy=dg.BackfillPolicy.single_run(),
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
    if candidate_auc is None or baseline_auc is None:
        raise ValueError(
            "registry_entry: evaluation_report has no test ROC AUC for the model or the "
            "baseline; materialize evaluation_report again"
        )
    champion = champion_result(report)
    decision = decide_promotion(
        candidate_auc=candidate_auc, baseline_auc=baseline_auc, champion=champion, gate=config.gate
    )
    lineage = json.loads(row["lineage_json"])
    tags = {
        DAGSTER_RUN_ID_TAG: lineage["dagster_run_id"],
        "registered_by_dagster_run_id": context.run_id,
        "config_hash": lineage["config_hash"],
        "code_versions": json.dumps(lineage["code_versions"], sort_keys=True),
        "input_delta_versions": json.dumps(lineage["input_delta_versions"], sort_keys=True),
        "model_sha256": row["model_sha256"],
        "test_roc_auc": f"{candidate_auc:.6f}",
        "baseline_test_roc_auc": f"{baseline_auc:.6f}",
    }
    name = config.registered_model_name
    registered = register_candidate(
        mlflow_tracking.client(),
        name,
        lock_dir=Path(mlflow_tracking.lock_dir),
        source=row["mlflow_model_uri"],
        run_id=row["mlflow_run_id"],
        cache_key=key,
        tags=tags,
        decision=decision,
        compared_champion=champion.version,
        via=f"dagster run {context.run_id}",
    )
    version, created = registered.version, registered.created
    aliases, decision = registered.aliases, registered.decision
    if not created:
        context.log.info(f"{name} v{version.version} was registered by an earlier attempt")
    if not decision.passed_gate:
        # Mark the Dagster run too, so nobody promotes its model by mistake.
        context.instance.add_run_tags(
            context.run_id, {REJECTED_RUN_TAG: f"v{version.version}: {decision.summary()}"}
        )
        context.log.warning(f"model version {version.version} rejected: {decision.summary()}")
    context.log.info(
        f"registered {name} v{version.version} "
        f"({', '.join(aliases) or 'no alias'}): {decision.summary()}"
    )
    version_url = mlflow_tracking.model_version_url(name, str(version.version))
    context.add_output_metadata(
        {
            **(
                {"mlflow_model_version_url": dg.MetadataValue.url(version_url)}
                if version_url
                else {}
            ),
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
            "dagster_run_id": [context.run_id],
        }
    )
    return LakeOutput(frame=with_bookkeeping(entry, key))
