"""Service-level indicators of the pipeline, from what each run recorded.

The SLIs the team is on call for: pipeline success rate, end-to-end latency (p50/p95), data
validation pass rate, model quality gap to the baseline and the champion, and time to
recover a failed run. Each run's facts (`RunFacts`, read from the Dagster instance by
`defs/observability.py`) also become a Prometheus text file (`prometheus_text`), one per run,
for a node exporter's textfile collector or any scraper. Pure functions: no Dagster here.

Prometheus text is written by hand (a few lines of a stable, documented format): the
`prometheus_client` library would add a dependency to format what a f-string does.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RunFacts:
    """One finished run, as its events recorded it."""

    run_id: str
    job: str
    succeeded: bool
    started: float  # unix seconds (the run's own record, never read inside a computation)
    ended: float
    # The partition or range it ran ("2013-02-01...2013-02-05"), None if unpartitioned.
    partitions: str | None = None
    step_seconds: Mapping[str, float] = field(default_factory=dict)
    # asset -> rows its materializations reported (computed and reused partitions)
    rows: Mapping[str, int] = field(default_factory=dict)
    # asset -> (partitions reused from cache, partitions computed)
    cache: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    rows_in: int = 0  # validated_flights: rows checked against the contract
    rows_validated: int = 0
    test_roc_auc: float | None = None
    baseline_test_roc_auc: float | None = None
    # The champion and the model on the same rows (the test days after the champion's
    # training window), when the evaluation could compare them.
    champion_test_roc_auc: float | None = None
    model_on_champion_rows_test_roc_auc: float | None = None

    @property
    def seconds(self) -> float:
        return self.ended - self.started


def _labels(**labels: str) -> str:
    escaped = (
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels.items()
    )
    return "{" + ",".join(escaped) + "}"


def prometheus_text(facts: RunFacts) -> str:
    """The run's metrics in Prometheus text exposition format (version 0.0.4)."""
    run = {"job": facts.job, "run_id": facts.run_id}
    lines: list[str] = []

    def family(
        name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], float]]
    ) -> None:
        if not samples:
            return
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{_labels(**run, **labels)} {value:g}" for labels, value in samples)

    family("trainflow_run_success", "gauge", "1 if the run succeeded, 0 if it failed.",
           [({}, 1.0 if facts.succeeded else 0.0)])  # fmt: skip
    family("trainflow_run_duration_seconds", "gauge", "Wall time of the run, start to end.",
           [({}, facts.seconds)])  # fmt: skip
    family("trainflow_step_duration_seconds", "gauge", "Wall time of each step.",
           [({"step": s}, t) for s, t in sorted(facts.step_seconds.items())])  # fmt: skip
    family("trainflow_asset_rows", "gauge", "Rows each asset's materializations reported.",
           [({"asset": a}, float(n)) for a, n in sorted(facts.rows.items())])  # fmt: skip
    family("trainflow_cache_partitions", "gauge", "Partitions reused (hit) or computed (miss).",
           [({"asset": a, "result": r}, float(n)) for a, (hit, miss) in sorted(facts.cache.items())
            for r, n in (("hit", hit), ("miss", miss))])  # fmt: skip
    if facts.rows_in:
        family("trainflow_validation_rows", "gauge", "Rows checked by the data contract.",
               [({"result": "validated"}, float(facts.rows_validated)),
                ({"result": "quarantined"}, float(facts.rows_in - facts.rows_validated))])  # fmt: skip
    gaps = quality_gaps(facts)
    family("trainflow_model_quality_gap", "gauge",
           "Test ROC AUC of the model minus that of the baseline or the champion.",
           [({"versus": v}, gap) for v, gap in sorted(gaps.items())])  # fmt: skip
    return "\n".join(lines) + "\n"


def quality_gaps(facts: RunFacts) -> dict[str, float]:
    """The model's test ROC AUC minus the baseline's, and minus the champion's on the rows
    both were scored on, where measured."""
    pairs = {
        "baseline": (facts.test_roc_auc, facts.baseline_test_roc_auc),
        "champion": (facts.model_on_champion_rows_test_roc_auc, facts.champion_test_roc_auc),
    }
    return {
        versus: model - other
        for versus, (model, other) in pairs.items()
        if model is not None and other is not None and not math.isnan(model - other)
    }


@dataclass(frozen=True)
class Slis:
    runs: int
    succeeded: int
    latency_p50_seconds: float | None
    latency_p95_seconds: float | None
    validation_pass_rate: float | None  # rows validated / rows checked, over the runs
    # failed run -> seconds until the next successful run of the same job and partitions
    recovered_seconds: list[float]
    unrecovered_failures: int
    quality_gaps: dict[str, float]  # of the newest run that measured them

    @property
    def success_rate(self) -> float | None:
        return self.succeeded / self.runs if self.runs else None

    def lines(self) -> list[str]:
        def share(value: float | None) -> str:
            return "-" if value is None else f"{value:.1%}"

        def seconds(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f} s"

        recover = (
            f"median {seconds(statistics.median(self.recovered_seconds))} over "
            f"{len(self.recovered_seconds)} recovered failure(s)"
            if self.recovered_seconds
            else "no failure recovered"
        ) + (f", {self.unrecovered_failures} not yet" if self.unrecovered_failures else "")
        gaps = ", ".join(f"{v:+.4f} vs {k}" for k, v in sorted(self.quality_gaps.items()))
        return [
            f"success rate       {share(self.success_rate)} ({self.succeeded} of {self.runs} runs)",
            f"latency            p50 {seconds(self.latency_p50_seconds)}, "
            f"p95 {seconds(self.latency_p95_seconds)} (successful runs)",
            f"validation pass    {share(self.validation_pass_rate)} of rows checked",
            f"time to recover    {recover}",
            f"quality gap        {gaps or '-'} (test ROC AUC, newest evaluation)",
        ]


def _percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (no interpolation: a latency that happened)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summarise(runs: Sequence[RunFacts]) -> Slis:
    """The SLIs over `runs` (finished runs, any order)."""
    ordered = sorted(runs, key=lambda r: r.started)
    durations = [r.seconds for r in ordered if r.succeeded]
    checked = sum(r.rows_in for r in ordered)
    recovered: list[float] = []
    unrecovered = 0
    for i, failed in enumerate(ordered):
        if failed.succeeded:
            continue
        fix = next(
            (
                later
                for later in ordered[i + 1 :]
                if later.succeeded
                and later.job == failed.job
                and later.partitions == failed.partitions
            ),
            None,
        )
        if fix is None:
            unrecovered += 1
        else:
            recovered.append(fix.ended - failed.ended)
    measured = [r for r in ordered if quality_gaps(r)]
    return Slis(
        runs=len(ordered),
        succeeded=sum(r.succeeded for r in ordered),
        latency_p50_seconds=_percentile(durations, 0.5),
        latency_p95_seconds=_percentile(durations, 0.95),
        validation_pass_rate=sum(r.rows_validated for r in ordered) / checked if checked else None,
        recovered_seconds=recovered,
        unrecovered_failures=unrecovered,
        quality_gaps=quality_gaps(measured[-1]) if measured else {},
    )
