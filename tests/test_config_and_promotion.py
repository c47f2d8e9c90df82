"""Experiment config validation and hashing; the promotion gate's rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import QUICK_CONFIG, REPO_ROOT
from trainflow.config import ConfigError, GateConfig, config_hash, load_config
from trainflow.promotion import decide_promotion


def test_shipped_configs_load_with_time_ordered_windows() -> None:
    for path in (REPO_ROOT / "configs").glob("*.yaml"):
        config = load_config(path)
        assert config.windows.train.end < config.windows.validation.start
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


@pytest.mark.parametrize(
    ("auc", "baseline", "champion", "verdict"),
    [
        (0.70, 0.60, None, "champion"),  # passes the gate, no champion yet
        (0.70, 0.60, 0.69, "champion"),  # better than the champion
        (0.70, 0.60, 0.70, "champion"),  # equal is "not worse"
        (0.70, 0.60, 0.71, "challenger"),  # passes the gate, worse than the champion
        (0.64, 0.50, None, "rejected"),  # under the absolute gate
        (0.70, 0.69, None, "rejected"),  # too little uplift over baseline
    ],
)
def test_promotion_gate(auc: float, baseline: float, champion: float | None, verdict: str) -> None:
    decision = decide_promotion(
        candidate_auc=auc, baseline_auc=baseline, champion_auc=champion, gate=GATE
    )
    assert decision.verdict == verdict
    assert decision.summary().startswith(f"{verdict}: ")
    assert len(decision.reasons) == 3
