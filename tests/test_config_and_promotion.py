"""Experiment config validation and hashing; the promotion gate's rules."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tests.conftest import QUICK_CONFIG, REPO_ROOT
from trainflow.config import ConfigError, GateConfig, config_hash, load_config
from trainflow.promotion import ChampionResult, decide_promotion


def test_shipped_configs_load_with_time_ordered_windows() -> None:
    for path in (REPO_ROOT / "configs").glob("*.yaml"):
        # A rolling config's windows get dates at a run's as-of day (configs/rolling.yaml).
        config = load_config(path).at(dt.date(2013, 12, 31))
        assert config.dated_windows.train.end < config.dated_windows.validation.start
        assert len(config.config_hash) == 64


def test_hash_ignores_comments_and_key_order_but_not_values(tmp_path: Path) -> None:
    text = QUICK_CONFIG.read_text()
    reordered = tmp_path / "a.yaml"
    reordered.write_text("# a comment\n" + text.replace("seed: 2013\n", "") + "seed: 2013\n")
    changed = tmp_path / "b.yaml"
    changed.write_text(text.replace("seed: 2013", "seed: 2014"))
    base = config_hash(load_config(QUICK_CONFIG))
    assert config_hash(load_config(reordered)) == base
    assert config_hash(load_config(changed)) != base


def test_overlapping_windows_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        QUICK_CONFIG.read_text().replace(
            "validation: {start: 2013-02-01", "validation: {start: 2013-01-20"
        )
    )
    with pytest.raises(ConfigError, match="time-ordered without overlap"):
        load_config(bad)


GATE = GateConfig(min_test_roc_auc=0.65, min_uplift_over_baseline=0.02)
NONE = ChampionResult(version=None)


def compared(candidate: float, champion: float) -> ChampionResult:
    return ChampionResult(version="3", candidate_auc=candidate, champion_auc=champion)


@pytest.mark.parametrize(
    ("auc", "baseline", "champion", "verdict"),
    [
        (0.70, 0.60, NONE, "champion"),  # passes the gate, no champion yet
        (0.70, 0.60, compared(0.70, 0.69), "champion"),  # better than the champion
        (0.70, 0.60, compared(0.70, 0.70), "champion"),  # equal is "not worse"
        (0.70, 0.60, compared(0.70, 0.71), "challenger"),  # worse than the champion
        (0.64, 0.50, NONE, "rejected"),  # under the absolute gate
        (0.70, 0.69, NONE, "rejected"),  # too little uplift over baseline
        # No comparison, no promotion: the champion could not be scored fairly.
        (
            0.70,
            0.60,
            ChampionResult(version="3", refused="its features x are not in this dataset"),
            "challenger",
        ),
    ],
)
def test_promotion_gate(
    auc: float, baseline: float, champion: ChampionResult, verdict: str
) -> None:
    decision = decide_promotion(
        candidate_auc=auc, baseline_auc=baseline, champion=champion, gate=GATE
    )
    assert decision.verdict == verdict
    assert decision.summary().startswith(f"{verdict}: ")
    assert len(decision.reasons) == 3


def test_the_comparison_uses_the_same_rows_not_the_whole_test_window() -> None:
    """0.75 on the whole window, but 0.68 on the rows after the champion's training."""
    decision = decide_promotion(
        candidate_auc=0.75, baseline_auc=0.60, champion=compared(0.68, 0.70), gate=GATE
    )
    assert decision.verdict == "challenger"
    assert "worse than champion v3 on the same rows (0.6800 < 0.7000)" in decision.summary()


def test_a_refused_comparison_says_why() -> None:
    refused = ChampionResult(
        version="3", refused="every test day is inside its own training window"
    )
    decision = decide_promotion(candidate_auc=0.9, baseline_auc=0.6, champion=refused, gate=GATE)
    assert not decision.promote
    assert "no comparison with champion v3 (every test day is inside" in decision.summary()


def test_shipped_configs_register_under_their_own_model_names() -> None:
    names = [load_config(p).registered_model_name for p in (REPO_ROOT / "configs").glob("*.yaml")]
    assert len(names) == len(set(names)) >= 2
    assert load_config(QUICK_CONFIG).registered_model_name.endswith("-quick")
