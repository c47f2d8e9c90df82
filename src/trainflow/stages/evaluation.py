"""Stage 6, evaluation: the candidate, the calendar baseline and the current champion scored on
the same frozen test rows, with the gate's decision, the report files and the model card.

Its side effects outside the lake (report files, MLflow metrics and artifacts) happen before
the IO manager commits its row; each is keyed by the cache key, so a retry or a re-execution
after a kill reuses what the first attempt made: report files live under the key, metrics
already logged are not logged again.

scikit-learn, matplotlib, LightGBM and MLflow are imported inside the functions: loading the
code location skips them (`definitions.STEP_MODULES` preloads them for the steps).
"""

from __future__ import annotations

import base64
import json
import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from trainflow.cache import cache_key, data_hash, with_bookkeeping
from trainflow.config import ExperimentConfig
from trainflow.features.flights import LABEL
from trainflow.lake.delta_lake import DeltaLake
from trainflow.lake.object_store import ObjectStore
from trainflow.lake.tables import DeltaInput, LakeOutput
from trainflow.promotion import ChampionResult
from trainflow.stages.dataset import config_of_dataset
from trainflow.stages.step import Json, Link, Markdown, Step, Table, table_hit

if TYPE_CHECKING:
    from mlflow import MlflowClient

TABLE = "evaluation_report"


def evaluate_model(
    step: Step,
    training_dataset: DeltaInput,
    model: DeltaInput,
    config: ExperimentConfig,
    lake: DeltaLake,
    reports: ObjectStore,
    client: MlflowClient,
) -> LakeOutput:
    """The report rows (metrics with seeded bootstrap intervals, slices, calibration, drift,
    importance, the gate's decision) and its files, or the stored report reused.

    The cache key leaves out the registry: a hit keeps the report as it was computed,
    against the champion of that time (named in the report); force a run to re-compare.
    """
    from trainflow.evaluation.model_card import MODEL_CARD_FILE, ModelCardFacts, render_model_card
    from trainflow.evaluation.plots import bar_plot, calibration_plot, roc_plot
    from trainflow.evaluation.report import metric_rows, render_html, render_markdown
    from trainflow.evaluation.scorecard import (
        BASELINE,
        CANDIDATE_ON_CHAMPION_ROWS,
        CHAMPION_ROLE,
        MODEL,
        ChampionScores,
        decision_columns,
        evaluate,
    )
    from trainflow.models.baseline import BASELINE_FEATURES, fit_calendar_baseline, predict_baseline
    from trainflow.models.families import load_scorer
    from trainflow.registry.champion import compare_with_champion

    config = config_of_dataset(config, lake, training_dataset.version)
    key = cache_key(
        step.code_version,
        config.hash_of("evaluation", "windows", "registered_model_name", "seed", "gate"),
        {"training_dataset": training_dataset.data_version, "model": model.data_version},
    )
    if table_hit(step, lake, TABLE, key, config.name):
        return LakeOutput(frame=None)
    threshold = config.evaluation.decision_threshold
    # The test split is held; the train split (most of the dataset) stays a lazy scan: the
    # baseline reads its calendar columns, drift one feature at a time (1.50 -> 0.96 GiB
    # peak at scale 10, docs/benchmarks.md).
    train = training_dataset.lazy.filter(pl.col("split") == "train")
    test = training_dataset.lazy.filter(pl.col("split") == "test").collect()
    y_true = test[LABEL].to_numpy()
    row = model.frame.row(0, named=True)

    scorer = load_scorer(row["model_text"], row["model_family"])
    scores = {MODEL: scorer.predict(test)}
    baseline = fit_calendar_baseline(train.select(*BASELINE_FEATURES, LABEL).collect(), LABEL)
    scores[BASELINE] = predict_baseline(baseline, test)
    champion = compare_with_champion(
        client,
        config.registered_model_name,
        test,
        scores[MODEL],
        label=LABEL,
        threshold=threshold,
    )
    evaluation = evaluate(
        test=test,
        train=train,
        label=LABEL,
        scores=scores,
        champion=ChampionScores(champion.version, champion.refused, champion.mask, champion.scores),
        predict=scorer.predict,
        features=config.features,
        config=config.evaluation,
        seed=config.seed,
        min_slice_rows=config.gate.min_slice_rows,
    )
    decision = evaluation.decide(config.gate)
    drift = evaluation.drift.sort("psi", descending=True)
    importance = evaluation.importance
    images = {
        "roc.png": roc_plot(y_true, scores),
        "calibration.png": calibration_plot(y_true, scores),
        "drift.png": bar_plot(drift["feature"].to_list(), drift["psi"].to_list(),
                              title="Feature drift (PSI)", xlabel="PSI, train -> test"),
        "importance.png": bar_plot(importance["feature"].to_list(),
                                   importance["auc_drop"].to_list(),
                                   title="Permutation importance", xlabel="test ROC AUC drop"),
    }  # fmt: skip
    store = reports
    prefix = f"evaluation_report/{key[:16]}"  # the same files for every attempt
    for name, png in images.items():
        store.put(f"{prefix}/{name}", png, "image/png")
    # The frozen test snapshot: which table version the test rows were read from.
    snapshot = {
        "training_dataset_delta_version": training_dataset.version,
        "training_dataset_data_version": training_dataset.data_version,
        "test_rows": test.height,
        "test_window": f"{config.dated_windows.test.start} .. {config.dated_windows.test.end}",
    }
    lineage = json.loads(row["lineage_json"])
    manifest = json.loads(row["manifest_json"])
    split_rows = _split_rows(training_dataset)
    card = render_model_card(
        ModelCardFacts(
            experiment=config.name,
            registered_model_name=config.registered_model_name,
            family=row["model_family"],
            windows={
                split: f"{window.start} .. {window.end}"
                for split, window in (
                    ("train", config.dated_windows.train),
                    ("validation", config.dated_windows.validation),
                    ("test", config.dated_windows.test),
                )
            },
            split_rows=split_rows,
            features=config.features,
            lineage={
                "git commit": _commit(manifest),
                "config hash": config.config_hash,
                "model sha256": row["model_sha256"],
                "input Delta versions": json.dumps(lineage["input_delta_versions"], sort_keys=True),
                "training_dataset data version": training_dataset.data_version,
                "MLflow run": row["mlflow_run_id"],
                "trained by Dagster run": lineage["dagster_run_id"],
            },
            report=store.uri(f"{prefix}/report.html"),
        ),
        evaluation,
        decision,
    )
    card_uri = store.put(f"{prefix}/{MODEL_CARD_FILE}", card.encode(), "text/markdown")
    markdown = render_markdown(
        title=f"Evaluation of {config.name}",
        context={
            "model sha256": row["model_sha256"],
            "test window": str(snapshot["test_window"]),
            "test snapshot": (
                f"training_dataset Delta version {training_dataset.version}, data version "
                f"{training_dataset.data_version[:16]}, {test.height} labelled rows"
            ),
            "decision threshold": str(threshold),
            "champion": champion.status,
            "config hash": config.config_hash,
            "dagster run": step.run_id,
        },
        evaluation=evaluation,
        decision=decision,
        min_slice_rows=config.gate.min_slice_rows,
        drift_ceiling=config.gate.max_feature_psi,
        drift_exempt=config.gate.drift_exempt_features,
        links={"model card": MODEL_CARD_FILE, **{name: name for name in images}},
    )
    report_uri = store.put(f"{prefix}/report.md", markdown.encode(), "text/markdown")
    html_uri = store.put(
        f"{prefix}/report.html", render_html(markdown, images).encode(), "text/html"
    )

    metrics = evaluation.metrics
    logged = client.get_run(row["mlflow_run_id"]).data.metrics
    to_log = {f"test_{name}": value for name, value in metrics[MODEL].items() if name != "ece"}
    to_log["baseline_test_roc_auc"] = metrics[BASELINE]["roc_auc"]
    to_log["test_expected_calibration_error"] = metrics[MODEL]["ece"]
    for name, value in to_log.items():
        if logged.get(name) != value:  # an earlier attempt logged it already
            client.log_metric(row["mlflow_run_id"], name, value)
    with tempfile.TemporaryDirectory() as folder:
        for name, png in images.items():
            (Path(folder) / name).write_bytes(png)
        (Path(folder) / "report.md").write_text(markdown)
        (Path(folder) / MODEL_CARD_FILE).write_text(card)
        client.log_artifacts(row["mlflow_run_id"], folder, "evaluation")

    inline = "\n\n".join(
        f"![{name}](data:image/png;base64,{base64.b64encode(png).decode()})"
        for name, png in images.items()
    )
    champion_metrics = metrics.get(CHAMPION_ROLE, {})
    on_champion_rows = metrics.get(CANDIDATE_ON_CHAMPION_ROWS, {})
    step.add_output_metadata(
        {
            "test_roc_auc": round(metrics[MODEL]["roc_auc"], 4),
            "baseline_test_roc_auc": round(metrics[BASELINE]["roc_auc"], 4),
            "champion_test_roc_auc": _rounded(champion_metrics.get("roc_auc")),
            # The model on the champion's rows: what its AUC is compared with.
            "model_on_champion_rows_test_roc_auc": _rounded(on_champion_rows.get("roc_auc")),
            "champion": champion.status,
            "test_snapshot": Json(snapshot),
            "metrics": _table(metric_rows(evaluation)),
            "slices": _table(
                [
                    {
                        "slice": r["slice"],
                        "value": r["value"],
                        "rows": int(r["rows"]),
                        "positive_rate": round(r["positive_rate"], 4),
                        "roc_auc": _rounded(r["roc_auc"]),
                        "gated": r["gated"],
                    }
                    for r in evaluation.slices.iter_rows(named=True)
                ]
            ),
            "drift": _table(
                [
                    {
                        "feature": r["feature"],
                        "psi": round(r["psi"], 4),
                        "test_missing_share": round(r["test_missing_share"], 4),
                    }
                    for r in drift.iter_rows(named=True)
                ]
            ),
            "gate": decision.summary(),
            "report": Markdown(markdown),
            "plots": Markdown(inline),
            "report_html": Link(html_uri),
            "model_card": Link(card_uri),
        }
    )
    report_frame = evaluation.long_frame().with_columns(
        **{k: pl.lit(v) for k, v in decision_columns(decision).items()}
    )
    # Content hash of the numbers and the decision only (not where the files are, nor the
    # Delta version the rows were read at, which a replay into a fresh lake changes).
    hashed = data_hash(report_frame)
    report = report_frame.with_columns(
        pl.lit(report_uri).alias("report_uri"),
        pl.lit(html_uri).alias("report_html_uri"),
        pl.lit(card_uri).alias("model_card_uri"),
        pl.lit(json.dumps(snapshot, sort_keys=True)).alias("test_snapshot_json"),
        pl.lit(row["model_sha256"]).alias("model_sha256"),
        pl.lit(champion.version, dtype=pl.String).alias("champion_version"),
        pl.lit(champion.refused, dtype=pl.String).alias("champion_refused"),
    )
    return LakeOutput(frame=with_bookkeeping(report, key, hashed))


def _table(rows: list[dict[str, Any]]) -> Table:
    """Rows of plain values as a table (column types from the first row)."""
    kinds = {bool: "bool", int: "int", float: "float", str: "string"}
    columns = (
        {name: kinds.get(type(value), "float") for name, value in rows[0].items()} if rows else {}
    )
    return Table(records=rows, columns=columns)


def _split_rows(dataset: DeltaInput) -> dict[str, int]:
    counts = dataset.lazy.group_by("split").agg(pl.len().alias("rows")).collect()
    return {r["split"]: int(r["rows"]) for r in counts.iter_rows(named=True)}


def _commit(manifest: dict[str, Any]) -> str:
    git = manifest.get("code", {}).get("git", {})
    dirty = " (uncommitted changes)" if git.get("dirty") else ""
    return f"{git.get('commit', 'unknown')}{dirty}"


def _rounded(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 4)


def metric_of(report: pl.DataFrame, role: str, metric: str) -> float | None:
    found = report.filter(
        (pl.col("role") == role) & (pl.col("slice") == "all") & (pl.col("metric") == metric)
    )
    return float(found["value"][0]) if found.height else None


def champion_result(report: pl.DataFrame) -> ChampionResult:
    """What the evaluation found about the champion, read back from its report."""
    from trainflow.evaluation.scorecard import CANDIDATE_ON_CHAMPION_ROWS, CHAMPION_ROLE

    version = report["champion_version"][0] if "champion_version" in report.columns else None
    refused = report["champion_refused"][0] if "champion_refused" in report.columns else None
    return ChampionResult(
        version=version,
        refused=refused,
        candidate_auc=metric_of(report, CANDIDATE_ON_CHAMPION_ROWS, "roc_auc"),
        champion_auc=metric_of(report, CHAMPION_ROLE, "roc_auc"),
    )
