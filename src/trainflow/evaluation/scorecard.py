"""Everything measured on the frozen test rows, in one value: metrics with bootstrap
intervals for the candidate, the baseline and the champion, slices, calibration, drift and
importance, plus the gate's decision taken from those very numbers.

Plain data in, plain data out (no Dagster, no MLflow): the `evaluation_report` asset
gathers the inputs and stores what comes out; tests build it from real data the same way.
Deterministic: every random draw is seeded from the experiment's seed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from trainflow.config import EvaluationConfig, GateConfig
from trainflow.evaluation.bootstrap import (
    Interval,
    bootstrap_intervals,
    paired_difference_interval,
)
from trainflow.evaluation.calibration import calibration_error_of, reliability_curve
from trainflow.evaluation.drift import feature_drift
from trainflow.evaluation.importance import permutation_importance
from trainflow.evaluation.metrics import binary_metrics, slice_metrics
from trainflow.promotion import ChampionResult, PromotionDecision, SliceResult, decide_promotion

# Roles in the report: the champion and the candidate scored on the same rows (the test
# days after the champion's training window), and their paired difference.
MODEL, BASELINE = "model", "baseline"
CHAMPION_ROLE, CANDIDATE_ON_CHAMPION_ROWS = "champion", "model_on_champion_rows"
DIFFERENCE_ROLE = "model_minus_champion"
DRIFT_ROLE, IMPORTANCE_ROLE = "drift", "importance"


@dataclass(frozen=True)
class ChampionScores:
    """The champion as the evaluation saw it: scores on the test rows after its own
    training window (`rows`, a mask over the test rows), or why it was not scored."""

    version: str | None  # None: no champion yet
    refused: str | None = None
    rows: np.ndarray | None = None
    scores: np.ndarray | None = None


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, dict[str, float]]  # role -> metric -> point estimate
    intervals: dict[str, dict[str, Interval]]  # role -> metric -> bootstrap interval
    slices: pl.DataFrame  # the candidate per slice (`gated`: judged by a slice floor)
    calibration: dict[str, pl.DataFrame]  # role -> reliability curve
    drift: pl.DataFrame  # PSI per feature, training window -> test window
    importance: pl.DataFrame  # permutation importance (test ROC AUC drop)
    champion: ChampionResult
    confidence_level: float
    resamples: int
    seed: int
    extra: dict[str, Any] = field(default_factory=dict)

    def decide(self, gate: GateConfig) -> PromotionDecision:
        """The gate's decision on these numbers (`promotion.decide_promotion`)."""
        slices = [
            SliceResult(r["slice"], r["value"], int(r["rows"]), float(r["roc_auc"]), r["gated"])
            for r in self.slices.iter_rows(named=True)
        ]
        psi = dict(zip(self.drift["feature"], self.drift["psi"], strict=True))
        return decide_promotion(
            candidate_auc=self.metrics[MODEL]["roc_auc"],
            baseline_auc=self.metrics[BASELINE]["roc_auc"],
            champion=self.champion,
            gate=gate,
            slices=slices,
            feature_psi=psi,
        )

    def long_frame(self) -> pl.DataFrame:
        """One row per number: role, slice, slice_value, metric, value, ci_low, ci_high.
        Overall rows come first within each role (readers take the first match)."""
        rows: list[dict[str, Any]] = []

        def add(role: str, sliced: str, value_of: str, metric: str, value: float,
                ci: Interval | None = None) -> None:  # fmt: skip
            rows.append(
                {"role": role, "slice": sliced, "slice_value": value_of, "metric": metric,
                 "value": float(value), "ci_low": ci.low if ci else None,
                 "ci_high": ci.high if ci else None}
            )  # fmt: skip

        for role, metrics in self.metrics.items():
            for metric, value in metrics.items():
                add(role, "all", "all", metric, value, self.intervals.get(role, {}).get(metric))
        if self.champion.difference_ci is not None and self.champion.candidate_auc is not None:
            assert self.champion.champion_auc is not None
            low, high = self.champion.difference_ci
            difference = self.champion.candidate_auc - self.champion.champion_auc
            add(DIFFERENCE_ROLE, "all", "all", "roc_auc", difference, Interval(low, high))
        for s in self.slices.iter_rows(named=True):
            for metric in ("roc_auc", "positive_rate", "rows"):
                add(MODEL, s["slice"], s["value"], metric, s[metric])
            add(MODEL, s["slice"], s["value"], "gated", float(s["gated"]))
        for d in self.drift.iter_rows(named=True):
            add(DRIFT_ROLE, "feature", d["feature"], "psi", d["psi"])
        for i in self.importance.iter_rows(named=True):
            add(IMPORTANCE_ROLE, "feature", i["feature"], "auc_drop", i["auc_drop"])
        schema: dict[str, type[pl.DataType]] = {
            "role": pl.String, "slice": pl.String, "slice_value": pl.String,
            "metric": pl.String, "value": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64,
        }  # fmt: skip
        return pl.DataFrame(rows, schema=schema)


def evaluate(
    *,
    test: pl.DataFrame,
    train: pl.DataFrame | pl.LazyFrame,
    label: str,
    scores: dict[str, np.ndarray],
    champion: ChampionScores,
    predict: Callable[[pl.DataFrame], np.ndarray],
    features: Sequence[str],
    config: EvaluationConfig,
    seed: int,
    min_slice_rows: int,
) -> Evaluation:
    """Score the candidate (`scores["model"]`), the baseline and the champion on the same
    test rows. The champion's rows are a subset (after its training window): its metrics,
    the candidate's on those rows, and their paired difference are measured there."""
    y_true = test[label].to_numpy()
    threshold = config.decision_threshold
    resamples, confidence = config.bootstrap_resamples, config.confidence_level
    metrics = {name: binary_metrics(y_true, s, threshold) for name, s in scores.items()}
    intervals = bootstrap_intervals(
        y_true, scores, threshold=threshold, resamples=resamples, seed=seed, confidence=confidence
    )
    calibration = {name: reliability_curve(y_true, s) for name, s in scores.items()}
    result = ChampionResult(version=champion.version, refused=champion.refused)
    if champion.version and not champion.refused:
        assert champion.rows is not None and champion.scores is not None
        y_rows = y_true[champion.rows]
        on_rows = {
            CHAMPION_ROLE: champion.scores,
            CANDIDATE_ON_CHAMPION_ROWS: scores[MODEL][champion.rows],
        }
        for name, s in on_rows.items():
            metrics[name] = binary_metrics(y_rows, s, threshold)
            calibration[name] = reliability_curve(y_rows, s)
        intervals |= bootstrap_intervals(
            y_rows, on_rows, threshold=threshold, resamples=resamples, seed=seed,
            confidence=confidence,
        )  # fmt: skip
        difference = paired_difference_interval(
            y_rows,
            on_rows[CANDIDATE_ON_CHAMPION_ROWS],
            on_rows[CHAMPION_ROLE],
            resamples=resamples,
            seed=seed,
            confidence=confidence,
        )
        result = ChampionResult(
            version=champion.version,
            candidate_auc=metrics[CANDIDATE_ON_CHAMPION_ROWS]["roc_auc"],
            champion_auc=metrics[CHAMPION_ROLE]["roc_auc"],
            difference_ci=(difference.low, difference.high),
        )
    for name, curve in calibration.items():
        metrics[name]["ece"] = calibration_error_of(curve)
    return Evaluation(
        metrics=metrics,
        intervals=intervals,
        slices=slice_metrics(test, y_true, scores[MODEL], threshold, min_rows=min_slice_rows),
        calibration=calibration,
        drift=feature_drift(train, test, features),
        importance=permutation_importance(
            test, y_true, predict, features, seed=seed, rows=config.importance_rows
        ),
        champion=result,
        confidence_level=config.confidence_level,
        resamples=config.bootstrap_resamples,
        seed=seed,
    )


def decision_columns(decision: PromotionDecision) -> dict[str, Any]:
    """The decision as report columns, read back by `decision_from_report`."""
    return {
        "gate_verdict": decision.verdict,
        "gate_passed": decision.passed_gate,
        "gate_promote": decision.promote,
        "gate_reasons_json": json.dumps(decision.reasons),
    }


def decision_from_report(report: pl.DataFrame) -> PromotionDecision:
    """The decision the evaluation took, as stored in its report."""
    missing = {"gate_passed", "gate_promote", "gate_reasons_json"} - set(report.columns)
    if missing:
        raise ValueError(
            f"evaluation_report has no gate decision (columns {', '.join(sorted(missing))}); "
            "materialize evaluation_report again"
        )
    return PromotionDecision(
        passed_gate=bool(report["gate_passed"][0]),
        promote=bool(report["gate_promote"][0]),
        reasons=list(json.loads(report["gate_reasons_json"][0])),
    )
