"""Promotion rules: when a registered challenger may also become champion.

Pure logic, so the rules can be read and tested without MLflow: the registry asset only
applies the decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trainflow.config import GateConfig


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reasons: list[str] = field(default_factory=list)

    def summary(self) -> str:
        verdict = "promote to champion" if self.promote else "stay challenger"
        return f"{verdict}: " + "; ".join(self.reasons)


def decide_promotion(
    *,
    candidate_auc: float,
    baseline_auc: float,
    champion_auc: float | None,
    gate: GateConfig,
) -> PromotionDecision:
    """Champion only if the gate passes and the candidate is not worse than the champion,
    both measured on the same test window."""
    reasons: list[str] = []
    ok = True
    if candidate_auc >= gate.min_test_roc_auc:
        reasons.append(f"test ROC AUC {candidate_auc:.4f} >= gate {gate.min_test_roc_auc:.4f}")
    else:
        ok = False
        reasons.append(f"test ROC AUC {candidate_auc:.4f} < gate {gate.min_test_roc_auc:.4f}")
    uplift = candidate_auc - baseline_auc
    if uplift >= gate.min_uplift_over_baseline:
        reasons.append(f"uplift over baseline {uplift:+.4f} >= {gate.min_uplift_over_baseline}")
    else:
        ok = False
        reasons.append(f"uplift over baseline {uplift:+.4f} < {gate.min_uplift_over_baseline}")
    if champion_auc is None:
        reasons.append("no current champion")
    elif candidate_auc >= champion_auc:
        reasons.append(f"not worse than champion ({candidate_auc:.4f} >= {champion_auc:.4f})")
    else:
        ok = False
        reasons.append(f"worse than champion ({candidate_auc:.4f} < {champion_auc:.4f})")
    return PromotionDecision(promote=ok, reasons=reasons)
