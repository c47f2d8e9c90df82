"""Promotion rules: what a newly registered model version becomes.

- fails the gate (an absolute floor: test ROC AUC, uplift over the baseline; a slice
  floor; a drift ceiling): `rejected`, tagged with the reasons, never aliased;
- passes the gate and there is no champion yet: `challenger` and `champion`;
- passes and was compared with the champion on the same rows (after the champion's own
  training window): `champion` too unless it is worse by more than
  `gate.max_auc_drop_vs_champion`, judged with the paired bootstrap interval of the AUC
  difference, else `challenger` only;
- passes but no fair comparison with the champion was possible: `challenger` only, with the
  reason. No comparison, no promotion.
Pure logic, so the rules can be read and tested without MLflow. The evaluation report
computes the decision from its own numbers (one source of truth, shown in its "Gate
decision" section); the registry asset only applies it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from trainflow.config import GateConfig


@dataclass(frozen=True)
class ChampionResult:
    """What the evaluation found out about the champion (see registry.champion)."""

    version: str | None  # None: no champion yet
    refused: str | None = None  # why it could not be compared
    candidate_auc: float | None = None  # both on the rows after the champion's training
    champion_auc: float | None = None
    # Paired bootstrap interval of candidate minus champion ROC AUC on those rows.
    difference_ci: tuple[float, float] | None = None


@dataclass(frozen=True)
class SliceResult:
    """The candidate's ROC AUC on one slice of the test rows."""

    column: str
    value: str
    rows: int
    roc_auc: float
    gated: bool  # enough rows for the slice floor to apply


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


def _champion_reason(champion: ChampionResult, gate: GateConfig) -> tuple[bool, str]:
    """Whether the candidate may replace the champion, and why."""
    if champion.version is None:
        return True, "no current champion"
    if champion.refused or champion.candidate_auc is None or champion.champion_auc is None:
        return False, (
            f"no comparison with champion v{champion.version} ({champion.refused or 'no scores'})"
        )
    ours, theirs = champion.candidate_auc, champion.champion_auc
    allowed = gate.max_auc_drop_vs_champion
    if champion.difference_ci is None:  # no interval recorded: the point difference decides
        if ours - theirs >= -allowed:
            return True, (
                f"not worse than champion v{champion.version} on the same rows "
                f"({ours:.4f} >= {theirs:.4f})"
            )
        return False, (
            f"worse than champion v{champion.version} on the same rows ({ours:.4f} < {theirs:.4f})"
        )
    low, high = champion.difference_ci
    measured = (
        f"{ours:.4f} vs {theirs:.4f}, difference {ours - theirs:+.4f}, "
        f"interval [{low:+.4f}, {high:+.4f}]"
    )
    if high < -allowed:
        return False, (
            f"worse than champion v{champion.version} by more than {allowed:.4f} on the same "
            f"rows: the whole interval is below {-allowed:+.4f} ({measured})"
        )
    return True, (
        f"not worse than champion v{champion.version} by more than {allowed:.4f} on the same "
        f"rows ({measured})"
    )


def _slice_reason(slices: Sequence[SliceResult], gate: GateConfig) -> tuple[bool, str] | None:
    floor = gate.min_slice_roc_auc
    if floor is None:
        return None
    gated = [s for s in slices if s.gated and s.roc_auc == s.roc_auc]  # NaN: one class only
    under = [s for s in gated if s.roc_auc < floor]
    if under:
        named = ", ".join(
            f"{s.column}={s.value} {s.roc_auc:.4f} ({s.rows} rows)"
            for s in sorted(under, key=lambda s: s.roc_auc)
        )
        return False, f"slice ROC AUC under floor {floor:.4f}: {named}"
    return True, (
        f"every slice with >= {gate.min_slice_rows} rows has ROC AUC >= {floor:.4f} "
        f"({len(gated)} judged, {len(slices) - len(gated)} reported only)"
    )


def _drift_reason(feature_psi: Mapping[str, float], gate: GateConfig) -> tuple[bool, str] | None:
    ceiling = gate.max_feature_psi
    if ceiling is None:
        return None
    judged = {f: v for f, v in feature_psi.items() if f not in gate.drift_exempt_features}
    over = sorted(((v, f) for f, v in judged.items() if v > ceiling), reverse=True)
    if over:
        named = ", ".join(f"{f} PSI {v:.3f}" for v, f in over)
        return False, f"feature drift over ceiling {ceiling:.3f}: {named}"
    if not judged:
        return True, "no feature judged for drift"
    worst = max(judged, key=lambda f: (judged[f], f))
    return True, (
        f"feature drift within ceiling {ceiling:.3f} (largest PSI {judged[worst]:.3f}, {worst})"
    )


def decide_promotion(
    *,
    candidate_auc: float,
    baseline_auc: float,
    champion: ChampionResult,
    gate: GateConfig,
    slices: Sequence[SliceResult] = (),
    feature_psi: Mapping[str, float] | None = None,
) -> PromotionDecision:
    """The gate's verdict and every reason, in a fixed order: floor, uplift, champion,
    slices and drift (the last two only when the gate configures them)."""
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
    better, reason = _champion_reason(champion, gate)
    reasons.append(reason)
    for judged in (_slice_reason(slices, gate), _drift_reason(feature_psi or {}, gate)):
        if judged is not None:
            passed &= judged[0]
            reasons.append(judged[1])
    return PromotionDecision(passed_gate=passed, promote=passed and better, reasons=reasons)
