"""The model card: what the model is for, what it saw, how good it is and where it is weak,
and where it came from. Markdown, rendered from facts the evaluation already holds, stored
beside the report and logged with the model version's MLflow run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from trainflow.evaluation.report import metrics_section
from trainflow.evaluation.scorecard import Evaluation
from trainflow.features.flights import WEATHER_FEATURES
from trainflow.promotion import PromotionDecision

MODEL_CARD_FILE = "model_card.md"
PURPOSE = (
    "Predicts whether a flight departing New York City (EWR, JFK, LGA) in 2013 arrives more "
    "than 15 minutes late, from what is known before departure: the schedule, the aircraft, "
    "the origin's latest weather observation before departure, and delay rates of earlier days."
)
LABEL_TEXT = (
    "`is_delayed`: arrival delay over 15 minutes. Cancelled and diverted flights have no "
    "arrival delay, hence no label, and are excluded from training and test rows."
)


@dataclass(frozen=True)
class ModelCardFacts:
    """What the card states besides the evaluation's numbers."""

    experiment: str
    registered_model_name: str
    family: str
    windows: Mapping[str, str]  # split -> "start .. end"
    split_rows: Mapping[str, int]  # split -> labelled rows
    features: Sequence[str]
    lineage: Mapping[str, str]  # commit, config hash, data versions, run ids
    report: str  # where the evaluation report is


def known_limits(evaluation: Evaluation) -> list[str]:
    """The limits every trainflow model shares, with this test window's figures."""
    gaps = [
        f"{r['feature']} {r['test_missing_share']:.1%}"
        for r in evaluation.drift.iter_rows(named=True)
        if r["feature"] in WEATHER_FEATURES and r["test_missing_share"] > 0
    ]
    return [
        "Weather gaps: a flight takes the origin's latest observation before departure; hours "
        "without a weather row, or fields not reported, leave features missing (share of test "
        f"rows missing: {', '.join(gaps) or 'none'}).",
        "Cancelled and diverted flights are excluded (no arrival delay): the model says "
        "nothing about cancellations.",
        "2013 only, and only the three NYC origins (EWR, JFK, LGA): other years, airports or "
        "a changed schedule are outside what it has seen.",
        "Time-split evaluation: the test window follows training; seasonal features drift "
        "between them (see the drift table of the report).",
    ]


def render_model_card(
    facts: ModelCardFacts, evaluation: Evaluation, decision: PromotionDecision
) -> str:
    windows = "\n".join(
        f"| {split} | {span} | {facts.split_rows.get(split, 0)} |"
        for split, span in facts.windows.items()
    )
    gated = evaluation.slices.filter("gated").sort("roc_auc")
    weakest = "\n".join(
        f"- {r['slice']}={r['value']}: ROC AUC {r['roc_auc']:.4f} ({r['rows']:.0f} rows)"
        for r in gated.head(5).iter_rows(named=True)
    )
    eces = ", ".join(f"{role} {m['ece']:.4f}" for role, m in evaluation.metrics.items())
    drifted = ", ".join(
        f"{r['feature']} {r['psi']:.2f}"
        for r in evaluation.drift.sort("psi", descending=True).head(5).iter_rows(named=True)
    )
    lineage = "\n".join(f"- **{k}**: {v}" for k, v in facts.lineage.items())
    limits = "\n".join(f"- {limit}" for limit in known_limits(evaluation))
    reasons = "\n".join(f"- {reason}" for reason in decision.reasons)
    return f"""# Model card: {facts.registered_model_name} ({facts.family})

Experiment `{facts.experiment}`. Evaluation report: [{facts.report}]({facts.report})

## Purpose and label

{PURPOSE}

{LABEL_TEXT}

## Data windows

| split | days | labelled rows |
|---|---|---|
{windows}

## Features

{", ".join(f"`{f}`" for f in facts.features)}

## Metrics on the test window

{metrics_section(evaluation)}

## Slices

Weakest slices with enough rows to be gated:

{weakest or "- none"}

## Calibration

Expected calibration error: {eces}.

## Drift

Largest PSI, training window -> test window: {drifted or "none"}.

## Gate decision

**{decision.verdict}**

{reasons}

## Known limits

{limits}

## Lineage

{lineage}
"""
