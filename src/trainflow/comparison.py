"""Experiments side by side: what each one's stored rows say, and how two compare on the
same test rows.

Every figure comes from the lake (the evaluation report, the model row, the training
dataset of each experiment), so `trainflow experiments` shows what the evaluation assets
computed, not a second computation of it. The one new number is the paired difference of
two experiments' test ROC AUC: both models score the flights their test windows share
(joined on `flight_id`), and one seeded bootstrap draws the same rows for both, so the
noise they share cancels out (as in the champion comparison, `evaluation/bootstrap.py`).
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from trainflow.cache import EXPERIMENT_COLUMN
from trainflow.config import ExperimentConfig
from trainflow.features.flights import LABEL
from trainflow.lake.delta_lake import DeltaLake

# The test metrics a comparison shows, in order: the bootstrapped ones first.
SHOWN_METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "precision", "recall")


@dataclass(frozen=True)
class Metric:
    value: float
    low: float | None = None
    high: float | None = None

    def __str__(self) -> str:
        if self.low is None or self.high is None:
            return f"{self.value:.4f}"
        return f"{self.value:.4f} [{self.low:.4f}, {self.high:.4f}]"


@dataclass(frozen=True)
class ExperimentSummary:
    """One experiment as its evaluation report and model row hold it."""

    name: str
    family: str
    model_sha256: str
    model_bytes: int
    validation_roc_auc: float
    test_window: str
    test_rows: int
    test: dict[str, Metric]
    gate_verdict: str
    mlflow_run_id: str
    train_seconds: float | None  # wall clock, from MLflow: the one figure that varies by run


@dataclass(frozen=True)
class PairedDifference:
    """`other`'s test ROC AUC minus `first`'s on the test rows both hold."""

    first: str
    other: str
    rows: int
    difference: Metric


@dataclass(frozen=True)
class Comparison:
    experiments: list[ExperimentSummary]
    differences: list[PairedDifference]
    shared_rows: int
    y_true: np.ndarray  # the label on the shared rows, for the ROC curves
    scores: dict[str, np.ndarray]  # each experiment's scores on the shared rows


def experiment_names(lake: DeltaLake) -> list[str]:
    """The experiments whose evaluation report the lake holds, sorted."""
    if lake.version("evaluation_report") is None:
        return []
    report = lake.scan("evaluation_report")
    if EXPERIMENT_COLUMN not in report.collect_schema().names():
        return []
    return sorted(report.select(pl.col(EXPERIMENT_COLUMN).unique()).collect().to_series())


def summarize(
    lake: DeltaLake, name: str, train_seconds: Callable[[str], float | None]
) -> ExperimentSummary:
    """The experiment's figures from its stored rows; `train_seconds(mlflow_run_id)` looks
    up the training time its MLflow run recorded (None where it recorded none)."""
    report = lake.read("evaluation_report", experiment=name)
    model = lake.read("model", experiment=name).row(0, named=True)
    overall = report.filter((pl.col("role") == "model") & (pl.col("slice") == "all"))
    test = {
        r["metric"]: Metric(r["value"], r["ci_low"], r["ci_high"])
        for r in overall.iter_rows(named=True)
        if r["metric"] in SHOWN_METRICS
    }
    snapshot = json.loads(report["test_snapshot_json"][0])
    return ExperimentSummary(
        name=name,
        family=model["model_family"],
        model_sha256=model["model_sha256"],
        model_bytes=len(model["model_text"].encode()),
        validation_roc_auc=float(model["validation_roc_auc"]),
        test_window=snapshot["test_window"],
        test_rows=int(snapshot["test_rows"]),
        test=test,
        gate_verdict=str(report["gate_verdict"][0]),
        mlflow_run_id=model["mlflow_run_id"],
        train_seconds=train_seconds(model["mlflow_run_id"]),
    )


def test_scores(lake: DeltaLake, name: str) -> pl.DataFrame:
    """The experiment's model scored on its own test rows: flight_id, label, score."""
    from trainflow.models.families import load_scorer

    model = lake.read("model", experiment=name).row(0, named=True)
    test = (
        lake.scan("training_dataset", experiment=name).filter(pl.col("split") == "test").collect()
    )
    scorer = load_scorer(model["model_text"], model["model_family"])
    return test.select("flight_id", LABEL).with_columns(
        pl.Series("score", np.asarray(scorer.predict(test), dtype=float))
    )


def compare(
    lake: DeltaLake,
    names: Sequence[str],
    train_seconds: Callable[[str], float | None],
) -> Comparison:
    """The experiments' summaries and, for each after the first, its paired ROC AUC
    difference to the first on the test rows all of them hold.

    The bootstrap takes its resamples, confidence and seed from the first experiment's
    config (as recorded in its model's manifest), so a comparison is as repeatable as an
    evaluation.
    """
    from trainflow.evaluation.bootstrap import paired_difference_interval
    from trainflow.evaluation.metrics import binary_metrics

    if len(names) < 2:
        raise ValueError("compare needs at least two experiments")
    known = set(experiment_names(lake))
    missing = [n for n in names if n not in known]
    if missing:
        raise ValueError(
            f"no evaluation report for experiment(s) {', '.join(missing)} in the lake "
            f"(known: {', '.join(sorted(known)) or 'none'})"
        )
    summaries = [summarize(lake, n, train_seconds) for n in names]
    shared: pl.DataFrame | None = None
    for n in names:
        scored = test_scores(lake, n).rename({"score": n})
        shared = (
            scored
            if shared is None
            else shared.join(scored.drop(LABEL), on="flight_id", how="inner")
        )
    assert shared is not None
    shared = shared.sort("flight_id")
    if shared.height == 0:
        raise ValueError(
            f"experiments {', '.join(names)} share no test rows: their test windows do not "
            "overlap, so no paired difference exists"
        )
    first_config = _config_of(lake, names[0])
    evaluation, seed = first_config.evaluation, first_config.seed
    y_true = shared[LABEL].to_numpy().astype(float)
    scores = {n: shared[n].to_numpy() for n in names}
    differences = []
    for other in names[1:]:
        point = (
            binary_metrics(y_true, scores[other], 0.5)["roc_auc"]
            - binary_metrics(y_true, scores[names[0]], 0.5)["roc_auc"]
        )
        interval = paired_difference_interval(
            y_true,
            scores[other],
            scores[names[0]],
            resamples=evaluation.bootstrap_resamples,
            seed=seed,
            confidence=evaluation.confidence_level,
        )
        differences.append(
            PairedDifference(
                names[0], other, shared.height, Metric(point, interval.low, interval.high)
            )
        )
    return Comparison(summaries, differences, shared.height, y_true, scores)


def _config_of(lake: DeltaLake, name: str) -> ExperimentConfig:
    manifest = json.loads(lake.read("model", experiment=name)["manifest_json"][0])
    return ExperimentConfig.model_validate(manifest["config"])


def _rows(experiments: Sequence[ExperimentSummary]) -> list[tuple[str, list[str]]]:
    """The comparison's rows: a label, then one cell per experiment."""
    rows: list[tuple[str, list[str]]] = [
        ("family", [e.family for e in experiments]),
        ("test window", [e.test_window for e in experiments]),
        ("test rows", [str(e.test_rows) for e in experiments]),
    ]
    for metric in SHOWN_METRICS:
        rows.append(
            (
                f"test {metric}",
                [str(e.test[metric]) if metric in e.test else "-" for e in experiments],
            )
        )
    rows += [
        ("validation roc_auc", [f"{e.validation_roc_auc:.4f}" for e in experiments]),
        ("gate", [e.gate_verdict for e in experiments]),
        (
            "train seconds",
            ["-" if e.train_seconds is None else f"{e.train_seconds:.1f}" for e in experiments],
        ),
        ("model size (bytes)", [str(e.model_bytes) for e in experiments]),
        ("model sha256", [e.model_sha256[:16] for e in experiments]),
        ("mlflow run", [e.mlflow_run_id for e in experiments]),
    ]
    return rows


def render_list(experiments: Sequence[ExperimentSummary]) -> str:
    """One line per experiment: family, test ROC AUC with its interval, log loss, gate."""
    header = (
        f"{'experiment':<36} {'family':<9} {'test roc_auc [interval]':<27} {'log_loss':<8} gate"
    )
    lines = [header]
    for e in experiments:
        auc = str(e.test.get("roc_auc", "-"))
        loss = f"{e.test['log_loss'].value:.4f}" if "log_loss" in e.test else "-"
        lines.append(f"{e.name:<36} {e.family:<9} {auc:<27} {loss:<8} {e.gate_verdict}")
    return "\n".join(lines)


def render_table(comparison: Comparison) -> str:
    """The side-by-side table, then each paired difference."""
    names = [e.name for e in comparison.experiments]
    rows = [("experiment", names), *_rows(comparison.experiments)]
    label_width = max(len(label) for label, _ in rows)
    widths = [max(len(cells[i]) for _, cells in rows) for i in range(len(names))]
    lines = [
        "  ".join(
            [label.ljust(label_width), *(c.ljust(w) for c, w in zip(cells, widths, strict=True))]
        ).rstrip()
        for label, cells in rows
    ]
    lines.append("")
    for d in comparison.differences:
        lines.append(
            f"paired test roc_auc difference, {d.other} - {d.first}: {d.difference} "
            f"(on the {d.rows} test rows both hold)"
        )
    return "\n".join(lines)


def render_html(comparison: Comparison, roc_png: bytes) -> str:
    """The table, the paired differences and the ROC curves overlaid, in one page."""
    names = [e.name for e in comparison.experiments]
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    body = "".join(
        f"<tr><th>{html.escape(label)}</th>"
        + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
        + "</tr>"
        for label, cells in _rows(comparison.experiments)
    )
    differences = "".join(
        f"<li>{html.escape(d.other)} &minus; {html.escape(d.first)}: "
        f"<span class='difference'>{html.escape(str(d.difference))}</span> "
        f"on the {d.rows} test rows both hold</li>"
        for d in comparison.differences
    )
    image = base64.b64encode(roc_png).decode()
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Experiments compared</title>"
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}</style></head><body>"
        f"<h1>Experiments compared: {html.escape(', '.join(names))}</h1>"
        f"<table><tr><th>experiment</th>{head}</tr>{body}</table>"
        f"<h2>Paired test ROC AUC difference</h2><ul>{differences}</ul>"
        f"<h2>ROC curves on the {comparison.shared_rows} shared test rows</h2>"
        f"<img alt='ROC curves' src='data:image/png;base64,{image}'>"
        "</body></html>"
    )


def report_key(names: Sequence[str]) -> str:
    """Where a comparison's report lives under the lake's `_reports/`: one per name list."""
    import hashlib

    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
    return f"experiments/compare-{digest}.html"


def as_json(comparison: Comparison) -> dict[str, Any]:
    """The comparison's figures (no scores), for scripts."""
    return {
        "experiments": [
            {**e.__dict__, "test": {m: v.__dict__ for m, v in e.test.items()}}
            for e in comparison.experiments
        ],
        "differences": [
            {**d.__dict__, "difference": d.difference.__dict__} for d in comparison.differences
        ],
        "shared_rows": comparison.shared_rows,
    }
