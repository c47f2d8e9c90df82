"""Promotion rules: what a newly registered model version becomes.

- fails the gate (absolute test ROC AUC, uplift over the baseline): `rejected`, tagged
  with the reason, never aliased;
- passes the gate and there is no champion yet: `challenger` and `champion`;
- passes and was compared with the champion on the same rows (after the champion's own
  training window): `champion` too if not worse, else `challenger` only;
- passes but no fair comparison with the champion was possible: `challenger` only, with the
  reason. No comparison, no promotion.
Pure logic, so the rules can be read and tested without MLflow: the registry asset only
applies the decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from trainflow.config import GateConfig


@dataclass(frozen=True)
class ChampionResult:
    """What the evaluation found out about the champion (see registry.champion)."""

    version: str | None  # None: no champion yet
    refused: str | None = None  # why it could not be compared
    candidate_auc: float | None = None  # both on the rows after the champion's training
    champion_auc: float | None = None


@dataclass(frozen=True)
class PromotionDecision:
    passed_gate: bool
    promote: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        if not self.passed_gate:
            return "rejected"
        return "champion" if self.promote else "challenger"

    def summary(self) -> str:
        return f"{self.verdict}: " + "; ".join(self.reasons)

    def held_back(self, reason: str) -> PromotionDecision:
        """The same decision, not promoted after all, with the reason why."""
        return replace(self, promote=False, reasons=[*self.reasons, reason])


def decide_promotion(
    *,
    candidate_auc: float,
    baseline_auc: float,
    champion: ChampionResult,
    gate: GateConfig,
) -> PromotionDecision:
    reasons: list[str] = []
    passed = True
    if candidate_auc >= gate.min_test_roc_auc:
        reasons.append(f"test ROC AUC {candidate_auc:.4f} >= gate {gate.min_test_roc_auc:.4f}")
    else:
        passed = False
        reasons.append(f"test ROC AUC {candidate_auc:.4f} < gate {gate.min_test_roc_auc:.4f}")
    uplift = candidate_auc - baseline_auc
    if uplift >= gate.min_uplift_over_baseline:
        reasons.append(f"uplift over baseline {uplift:+.4f} >= {gate.min_uplift_over_baseline}")
    else:
        passed = False
        reasons.append(f"uplift over baseline {uplift:+.4f} < {gate.min_uplift_over_baseline}")
    better = True
    if champion.version is None:
        reasons.append("no current champion")
    elif champion.refused or champion.candidate_auc is None or champion.champion_auc is None:
        better = False
        reasons.append(
            f"no comparison with champion v{champion.version} ({champion.refused or 'no scores'})"
        )
    elif champion.candidate_auc >= champion.champion_auc:
        reasons.append(
            f"not worse than champion v{champion.version} on the same rows "
            f"({champion.candidate_auc:.4f} >= {champion.champion_auc:.4f})"
        )
    else:
        better = False
        reasons.append(
            f"worse than champion v{champion.version} on the same rows "
            f"({champion.candidate_auc:.4f} < {champion.champion_auc:.4f})"
        )
    return PromotionDecision(passed_gate=passed, promote=passed and better, reasons=reasons)
