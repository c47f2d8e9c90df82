"""The evaluation report as Markdown (shown in Dagster's UI, stored beside the plots) and
as a self-contained HTML page (the same sections as tables, the plots inline)."""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Mapping

import polars as pl

from trainflow.evaluation.scorecard import DIFFERENCE_ROLE, Evaluation
from trainflow.promotion import PromotionDecision

SHOWN_METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "precision", "recall", "ece")


def _fmt(value: float | None, places: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{places}f}"


def metric_rows(evaluation: Evaluation) -> list[dict[str, object]]:
    """role, metric, value, ci_low, ci_high (rounded to 4 places): the report's and the
    UI's metrics table."""
    rows: list[dict[str, object]] = []
    for role, metrics in evaluation.metrics.items():
        for metric in (*SHOWN_METRICS, "rows"):
            if metric not in metrics:
                continue
            ci = evaluation.intervals.get(role, {}).get(metric)
            rows.append(
                {"role": role, "metric": metric, "value": _round(metrics[metric]),
                 "ci_low": _round(ci.low) if ci else None,
                 "ci_high": _round(ci.high) if ci else None}
            )  # fmt: skip
    champion = evaluation.champion
    if champion.difference_ci and champion.candidate_auc is not None:
        assert champion.champion_auc is not None
        low, high = champion.difference_ci
        rows.append(
            {"role": DIFFERENCE_ROLE, "metric": "roc_auc",
             "value": _round(champion.candidate_auc - champion.champion_auc),
             "ci_low": _round(low), "ci_high": _round(high)}
        )  # fmt: skip
    return rows


def _round(value: float) -> float | None:
    return None if math.isnan(value) else round(float(value), 4)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def metrics_section(evaluation: Evaluation) -> str:
    level = f"{evaluation.confidence_level:.0%}"
    rows = [
        [str(r["role"]), str(r["metric"]), _fmt(r["value"]),  # type: ignore[arg-type]
         f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]" if r["ci_low"] is not None else ""]  # type: ignore[arg-type]
        for r in metric_rows(evaluation)
        if r["metric"] != "rows"
    ]  # fmt: skip
    rows_line = ", ".join(
        f"{role} {m['rows']:.0f}" for role, m in evaluation.metrics.items() if "rows" in m
    )
    return (
        f"Rows scored: {rows_line}. Intervals: {level} percentile bootstrap, "
        f"{evaluation.resamples} resamples, seed {evaluation.seed}; every model on the same "
        f"resamples of the same rows ({DIFFERENCE_ROLE}: paired).\n\n"
        + _table(["role", "metric", "value", f"{level} interval"], rows)
    )


def slices_section(slices: pl.DataFrame, min_rows: int) -> str:
    rows = [
        [r["slice"], r["value"], f"{r['rows']:.0f}", _fmt(r["positive_rate"], 3),
         _fmt(r["roc_auc"]), "yes" if r["gated"] else "no (reported only)"]
        for r in slices.iter_rows(named=True)
    ]  # fmt: skip
    return (
        f"The candidate per slice; slices under {min_rows} rows are reported, not gated.\n\n"
        + _table(["slice", "value", "rows", "positive rate", "ROC AUC", "gated"], rows)
    )


def calibration_section(evaluation: Evaluation) -> str:
    eces = ", ".join(f"{role} {m['ece']:.4f}" for role, m in evaluation.metrics.items())
    curve = evaluation.calibration["model"]
    rows = [
        [f"{r['lower']:.1f}-{r['upper']:.1f}", str(r["rows"]), _fmt(r["mean_predicted"], 3),
         _fmt(r["observed_rate"], 3)]
        for r in curve.iter_rows(named=True)
    ]  # fmt: skip
    return (
        f"Expected calibration error (10 equal-width bins): {eces}.\n\n"
        "Reliability curve of the candidate:\n\n"
        + _table(["predicted", "rows", "mean predicted", "observed rate"], rows)
    )


def drift_section(drift: pl.DataFrame, ceiling: float | None, exempt: list[str]) -> str:
    def status(feature: str, psi: float) -> str:
        if ceiling is None:
            return "not gated"
        if feature in exempt:
            return "exempt (reported only)"
        return "over ceiling" if psi > ceiling else "ok"

    rows = [
        [r["feature"], _fmt(r["psi"], 3), _fmt(r["train_missing_share"], 3),
         _fmt(r["test_missing_share"], 3), status(r["feature"], r["psi"])]
        for r in drift.sort("psi", descending=True).iter_rows(named=True)
    ]  # fmt: skip
    limit = f"ceiling {ceiling}" if ceiling is not None else "no ceiling configured"
    return f"Population stability index, training window -> test window ({limit}).\n\n" + _table(
        ["feature", "PSI", "missing (train)", "missing (test)", "status"], rows
    )


def importance_section(importance: pl.DataFrame) -> str:
    rows = [[r["feature"], _fmt(r["auc_drop"])] for r in importance.iter_rows(named=True)]
    return (
        "Permutation importance: test ROC AUC lost when the feature is shuffled "
        "(seeded sample of test rows).\n\n" + _table(["feature", "ROC AUC drop"], rows)
    )


def gate_section(decision: PromotionDecision) -> str:
    reasons = "\n".join(f"- {reason}" for reason in decision.reasons)
    return f"**{decision.verdict}**\n\n{reasons}"


def render_markdown(
    *,
    title: str,
    context: Mapping[str, str],
    evaluation: Evaluation,
    decision: PromotionDecision,
    min_slice_rows: int,
    drift_ceiling: float | None,
    drift_exempt: list[str],
    links: Mapping[str, str],
) -> str:
    facts = "\n".join(f"- **{k}**: {v}" for k, v in context.items())
    linked = "\n".join(f"- [{name}]({target})" for name, target in links.items())
    sections = {
        "Gate decision": gate_section(decision),
        "Test-window metrics": metrics_section(evaluation),
        "Slices (candidate)": slices_section(evaluation.slices, min_slice_rows),
        "Calibration": calibration_section(evaluation),
        "Feature drift": drift_section(evaluation.drift, drift_ceiling, drift_exempt),
        "Feature importance": importance_section(evaluation.importance),
        "Plots and model card": linked,
    }
    body = "\n\n".join(f"## {name}\n\n{text}" for name, text in sections.items())
    return f"# {title}\n\n{facts}\n\n{body}\n"


_LINK = re.compile(r"\[([^\]]+)\]\(([^)]+)\)")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def _inline(text: str) -> str:
    escaped = html.escape(text, quote=False)
    escaped = _LINK.sub(lambda m: f'<a href="{html.escape(m[2])}">{m[1]}</a>', escaped)
    return _BOLD.sub(r"<strong>\1</strong>", escaped)


def markdown_to_html(markdown: str) -> str:
    """The subset of Markdown `render_markdown` writes (headings, paragraphs, bullet lists,
    pipe tables, links, bold) as HTML; no dependency for so little."""
    out: list[str] = []
    blocks = markdown.strip().split("\n\n")
    for block in blocks:
        lines = block.splitlines()
        if block.startswith("#"):
            level = len(block) - len(block.lstrip("#"))
            out.append(f"<h{level}>{_inline(block[level:].strip())}</h{level}>")
        elif all(line.startswith("|") for line in lines) and len(lines) >= 2:
            cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
            head = "".join(f"<th>{_inline(c)}</th>" for c in cells[0])
            body = "".join(
                "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>"
                for row in cells[2:]
            )
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif all(line.startswith("- ") for line in lines):
            items = "".join(f"<li>{_inline(line[2:])}</li>" for line in lines)
            out.append(f"<ul>{items}</ul>")
        else:
            out.append(f"<p>{_inline(' '.join(lines))}</p>")
    return "\n".join(out)


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;"
    "padding:2px 8px;font-size:13px;text-align:left}th{background:#f2f2f2}"
    "figure{display:inline-block;margin:0 1em 1em 0}h2{border-bottom:1px solid #ddd}"
)


def render_html(markdown: str, images: Mapping[str, bytes]) -> str:
    """A self-contained page: the report's sections as HTML plus the plots inline."""
    figures = "".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,'
        f'{base64.b64encode(png).decode()}"/><figcaption>{html.escape(name)}</figcaption></figure>'
        for name, png in images.items()
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>trainflow evaluation</title>"
        f"<style>{_STYLE}</style></head><body>{markdown_to_html(markdown)}"
        f"<h2>Plots</h2>{figures}</body></html>"
    )
