"""The gate's decisions on real evaluation outputs: LightGBM models trained on landed
January 2013 flights, evaluated on February 15-28 (the quick config's windows) against a
real champion, then judged by the quick config's gate and by variants of it. Each test
checks the verdict and the reason the gate gives."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import polars as pl
import pytest

from tests.conftest import QUICK_CONFIG
from trainflow.config import ExperimentConfig, GateConfig, load_config
from trainflow.defs.resources import WarehouseResource
from trainflow.evaluation.model_card import ModelCardFacts, render_model_card
from trainflow.evaluation.report import render_markdown
from trainflow.evaluation.scorecard import ChampionScores, Evaluation, evaluate
from trainflow.features.flights import LABEL, build_flight_features
from trainflow.lake.delta_lake import DayWindow
from trainflow.models.baseline import fit_calendar_baseline, predict_baseline
from trainflow.models.families import load_scorer
from trainflow.models.lightgbm_model import train_lightgbm
from trainflow.registry.operations import gate_tags

CONFIG: ExperimentConfig = load_config(QUICK_CONFIG)


@pytest.fixture(scope="module")
def evaluations(built_warehouse) -> dict[str, Evaluation]:
    """`close`: the candidate against a slightly better champion (fewer leaves), their
    difference inside the interval; `outclassed`: a three-tree candidate against the full
    model as champion."""
    flights = WarehouseResource(url=str(built_warehouse)).read_flights(
        DayWindow(dt.date(2013, 1, 1), dt.date(2013, 2, 28))
    )
    features = build_flight_features(flights, sorted(set(flights["day"].to_list())))
    features = features.filter(pl.col(LABEL).is_not_null())
    w = CONFIG.windows
    train, validation, test = (
        features.filter(pl.col("day").is_between(s.start, s.end))
        for s in (w.train, w.validation, w.test)
    )

    def fit(rounds: int, num_leaves: int = 63) -> Any:
        trained = train_lightgbm(
            train, validation, features=CONFIG.features, label=LABEL,
            params={**CONFIG.model.params, "num_leaves": num_leaves}, seed=CONFIG.seed,
            num_threads=2, num_boost_round=rounds, early_stopping_rounds=30,
        )  # fmt: skip
        return load_scorer(trained.model_text)

    full, fewer_leaves, three_trees = fit(300), fit(300, num_leaves=31), fit(3)
    baseline = predict_baseline(fit_calendar_baseline(train, LABEL), test)
    # The champion learned until Feb 14: every test row lies after its training window.
    after = (test["day"] > w.validation.end).to_numpy()

    def evaluated(candidate: Any, champion: Any) -> Evaluation:
        return evaluate(
            test=test, train=train, label=LABEL,
            scores={"model": candidate.predict(test), "baseline": baseline},
            champion=ChampionScores("1", rows=after, scores=champion.predict(test)[after]),
            predict=candidate.predict, features=CONFIG.features, config=CONFIG.evaluation,
            seed=CONFIG.seed, min_slice_rows=CONFIG.gate.min_slice_rows,
        )  # fmt: skip

    return {"close": evaluated(full, fewer_leaves), "outclassed": evaluated(three_trees, full)}


def gate(**changes: Any) -> GateConfig:
    return CONFIG.gate.model_copy(update=changes)


def test_the_shipped_gate_passes_a_good_model(evaluations) -> None:
    evaluation = evaluations["close"]
    decision = evaluation.decide(CONFIG.gate)
    auc = evaluation.metrics["model"]["roc_auc"]
    assert decision.verdict == "champion", decision.summary()
    assert decision.reasons[0] == f"test ROC AUC {auc:.4f} >= gate 0.6000"
    assert decision.reasons[1].startswith("uplift over baseline +")
    assert decision.reasons[2].startswith("not worse than champion v1 by more than 0.0050")
    assert decision.reasons[3].startswith("every slice with >= 500 rows has ROC AUC >= 0.5000")
    assert decision.reasons[4].startswith("feature drift within ceiling 0.250")
    # The same reasons become the version's tags, one each, in order.
    tags = gate_tags(decision)
    assert tags["gate.verdict"] == "champion"
    assert [tags[f"gate.reason.{i:02d}"] for i in range(1, 6)] == decision.reasons


def test_fails_on_the_absolute_floor(evaluations) -> None:
    auc = evaluations["close"].metrics["model"]["roc_auc"]
    decision = evaluations["close"].decide(gate(min_test_roc_auc=0.7))
    assert decision.verdict == "rejected"
    assert f"test ROC AUC {auc:.4f} < gate 0.7000" in decision.reasons


def test_fails_against_a_champion_better_beyond_the_interval(evaluations) -> None:
    evaluation = evaluations["outclassed"]
    assert evaluation.champion.difference_ci is not None
    low, high = evaluation.champion.difference_ci
    assert high < -0.005  # the whole interval: worse by more than the allowed drop
    decision = evaluation.decide(CONFIG.gate)
    assert decision.verdict == "challenger"  # passes the floors, but does not replace v1
    reason = decision.reasons[2]
    assert reason.startswith(
        "worse than champion v1 by more than 0.0050 on the same rows: "
        "the whole interval is below -0.0050"
    )
    assert f"interval [{low:+.4f}, {high:+.4f}]" in reason


def test_passes_against_a_slightly_better_champion_inside_the_interval(evaluations) -> None:
    """The champion's point estimate is higher, but the paired interval of the difference
    holds zero: not worse by more than the allowed drop (here none)."""
    champion = evaluations["close"].champion
    assert champion.candidate_auc is not None and champion.champion_auc is not None
    assert champion.candidate_auc < champion.champion_auc
    assert champion.difference_ci is not None
    low, high = champion.difference_ci
    assert low < 0 < high
    decision = evaluations["close"].decide(gate(max_auc_drop_vs_champion=0.0))
    assert decision.verdict == "champion"
    assert decision.reasons[2].startswith(
        f"not worse than champion v1 by more than 0.0000 on the same rows "
        f"({champion.candidate_auc:.4f} vs {champion.champion_auc:.4f}"
    )


def test_fails_on_a_slice_floor_judging_only_slices_large_enough(evaluations) -> None:
    evaluation = evaluations["close"]
    decision = evaluation.decide(gate(min_slice_roc_auc=0.6))
    assert decision.verdict == "rejected"
    slices = evaluation.slices
    under = slices.filter(pl.col("gated") & (pl.col("roc_auc") < 0.6)).sort("roc_auc")
    assert under.height >= 1
    worst = under.row(0, named=True)
    expected = (
        f"slice ROC AUC under floor 0.6000: {worst['slice']}={worst['value']} "
        f"{worst['roc_auc']:.4f} ({worst['rows']:.0f} rows)"
    )
    assert decision.reasons[3].startswith(expected)
    # Small slices are reported but never judged: with a high minimum none is gated.
    lenient = dataclasses.replace(evaluation, slices=slices.with_columns(gated=pl.lit(False)))
    kept = lenient.decide(gate(min_slice_roc_auc=0.6))
    assert kept.verdict == "champion"
    assert kept.reasons[3].endswith(f"(0 judged, {slices.height} reported only)")
    assert not slices.filter(pl.col("rows") < 500)["gated"].any()


def test_fails_on_drift_over_the_ceiling(evaluations) -> None:
    evaluation = evaluations["close"]
    psi = dict(zip(evaluation.drift["feature"], evaluation.drift["psi"], strict=True))
    decision = evaluation.decide(gate(drift_exempt_features=[]))  # month is judged now
    assert decision.verdict == "rejected"
    assert decision.reasons[4].startswith(
        f"feature drift over ceiling 0.250: month PSI {psi['month']:.3f}"
    )


def test_the_report_and_the_model_card_state_the_decision_and_its_reasons(evaluations) -> None:
    evaluation = evaluations["outclassed"]
    decision = evaluation.decide(CONFIG.gate)
    markdown = render_markdown(
        title="Evaluation", context={"test window": "2013-02-15 .. 2013-02-28"},
        evaluation=evaluation, decision=decision, min_slice_rows=500, drift_ceiling=0.25,
        drift_exempt=CONFIG.gate.drift_exempt_features, links={"model card": "model_card.md"},
    )  # fmt: skip
    gate_section = markdown.split("## Gate decision\n\n")[1].split("\n## ")[0]
    assert gate_section.startswith("**challenger**")
    assert all(f"- {reason}" in gate_section for reason in decision.reasons)
    assert "[model card](model_card.md)" in markdown
    assert "| model_minus_champion | roc_auc |" in markdown
    card = render_model_card(
        ModelCardFacts(
            experiment=CONFIG.name, registered_model_name=CONFIG.registered_model_name,
            family="lightgbm", windows={"test": "2013-02-15 .. 2013-02-28"},
            split_rows={"test": int(evaluation.metrics["model"]["rows"])},
            features=CONFIG.features, lineage={"config hash": CONFIG.config_hash},
            report="report.html",
        ),
        evaluation,
        decision,
    )  # fmt: skip
    for heading in ("Purpose and label", "Data windows", "Features", "Metrics on the test "
                    "window", "Slices", "Calibration", "Known limits", "Lineage"):  # fmt: skip
        assert f"\n## {heading}\n" in card, heading
    assert (
        f"| test | 2013-02-15 .. 2013-02-28 | {evaluation.metrics['model']['rows']:.0f} |" in card
    )
    assert "Cancelled and diverted flights are excluded" in card
    assert "2013 only, and only the three NYC origins" in card
    assert f"- **config hash**: {CONFIG.config_hash}" in card
