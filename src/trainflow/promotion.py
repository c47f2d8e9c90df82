"""Promotion rules: what a newly registered model version becomes.

- fails the gate (absolute test ROC AUC, uplift over the baseline): `rejected`, tagged
  with the reason, never aliased;
- passes the gate but is worse than the current champion: `challenger` only;
- passes and is not worse than the champion (both on the same test window): `challenger`
  and `champion`.
Pure logic, so the rules can be read and tested without MLflow: the registry asset only
applies the decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trainflow.config import GateConfig


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


def decide_promotion(
    *,
    candidate_auc: float,
    baseline_auc: float,
    champion_auc: float | None,
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
    if champion_auc is None:
        reasons.append("no current champion")
    elif candidate_auc >= champion_auc:
        reasons.append(f"not worse than champion ({candidate_auc:.4f} >= {champion_auc:.4f})")
    else:
        better = False
        reasons.append(f"worse than champion ({candidate_auc:.4f} < {champion_auc:.4f})")
    return PromotionDecision(passed_gate=passed, promote=passed and better, reasons=reasons)
