"""The timeline of a replay (`trainflow replay`, docs/continuous-training.md): per week the
champion, every candidate with its gate decision, the champion's live ROC AUC per day against
its evaluation figure, the candidates' feature drift, and the alerts raised; as Markdown,
HTML and a PNG. Dagster-free: the replay driver (defs/replay.py) hands it what happened.

Nothing here reads a clock: the same replay renders the same bytes (the generated-at line is
the only timestamp, and it is the caller's).
"""

from __future__ import annotations

import datetime as dt
import html
import io
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Candidate:
    version: int
    as_of: str | None
    verdict: str  # champion | challenger | rejected
    decision: str
    test_roc_auc: float | None
    max_psi: float | None
    max_psi_feature: str | None


@dataclass(frozen=True)
class LiveDay:
    day: dt.date
    model_version: int | None
    day_roc_auc: float | None
    trailing_roc_auc: float | None
    evaluation_roc_auc: float | None
    breached: bool


@dataclass
class Week:
    first: dt.date
    last: dt.date
    runs: list[str] = field(default_factory=list)  # "<kind> <key>: ok|FAILED ..."
    candidates: list[Candidate] = field(default_factory=list)
    champion: int | None = None
    live: list[LiveDay] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Summary:
    weeks: int
    retrains: int  # candidates registered
    promotions: int
    rejections: int
    live_days: int
    mean_live_auc: float | None
    breached_days: int
    alerts: int


def summarize(weeks: list[Week]) -> Summary:
    candidates = [c for w in weeks for c in w.candidates]
    live = [d for w in weeks for d in w.live if d.day_roc_auc is not None]
    return Summary(
        weeks=len(weeks),
        retrains=len(candidates),
        promotions=sum(c.verdict == "champion" for c in candidates),
        rejections=sum(c.verdict == "rejected" for c in candidates),
        live_days=len(live),
        mean_live_auc=(
            round(sum(d.day_roc_auc for d in live) / len(live), 4)  # type: ignore[misc]
            if live
            else None
        ),
        breached_days=sum(d.breached for w in weeks for d in w.live),
        alerts=sum(len(w.alerts) for w in weeks),
    )


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def markdown(title: str, weeks: list[Week], generated: str) -> str:
    s = summarize(weeks)
    lines = [
        f"# {title}",
        "",
        f"{s.weeks} weeks, {s.retrains} candidates registered: {s.promotions} promoted, "
        f"{s.rejections} rejected. Live ROC AUC over {s.live_days} scored days: mean "
        f"{_f(s.mean_live_auc)}; {s.breached_days} day(s) breached the limit; {s.alerts} "
        "alert(s).",
        "",
        "![timeline](timeline.png)",
        "",
        "| week | champion | candidates (version: verdict, test AUC, largest PSI) | live AUC "
        "(mean of days) | alerts |",
        "|---|---|---|---|---|",
    ]
    for w in weeks:
        candidates = "; ".join(
            f"v{c.version} (as of {c.as_of}): {c.verdict}, {_f(c.test_roc_auc)}, "
            f"{_f(c.max_psi)} {c.max_psi_feature or ''}".rstrip()
            for c in w.candidates
        )
        scored = [d.day_roc_auc for d in w.live if d.day_roc_auc is not None]
        live = _f(sum(scored) / len(scored)) if scored else "-"
        lines.append(
            f"| {w.first}..{w.last} | {f'v{w.champion}' if w.champion else '-'} | "
            f"{candidates or '-'} | {live} | {'; '.join(w.alerts) or '-'} |"
        )
    lines += ["", "## Gate decisions", ""]
    for w in weeks:
        for c in w.candidates:
            lines.append(f"- v{c.version} (week of {w.first}): {c.decision}")
    lines += ["", "## Live performance per day", "", "| day | model | day AUC | trailing AUC | "
              "evaluation AUC | breached |", "|---|---|---|---|---|---|"]  # fmt: skip
    for w in weeks:
        for d in w.live:
            lines.append(
                f"| {d.day} | {f'v{d.model_version}' if d.model_version else '-'} | "
                f"{_f(d.day_roc_auc)} | {_f(d.trailing_roc_auc)} | {_f(d.evaluation_roc_auc)} "
                f"| {'yes' if d.breached else ''} |"
            )
    lines += ["", f"<!-- generated {generated} -->", ""]
    return "\n".join(lines)


def html_page(title: str, markdown_text: str) -> str:
    """The Markdown in a page of its own (pre-formatted: readable without a renderer)."""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "</head><body><img src='timeline.png' alt='timeline' style='max-width:100%'>"
        f"<pre>{html.escape(markdown_text)}</pre></body></html>\n"
    )


def timeline_png(title: str, weeks: list[Week]) -> bytes:
    """The champion's live ROC AUC per day (dots: breached days in red) against its
    evaluation's figure (steps), with each promotion marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    import numpy as np

    live = [d for w in weeks for d in w.live if d.day_roc_auc is not None]
    figure, axis = plt.subplots(figsize=(11, 4), dpi=100)

    def values(numbers: list[float | None]) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in numbers], dtype=float)

    days = mdates.date2num([d.day for d in live]) if live else np.array([])
    if live:
        axis.plot(days, values([d.day_roc_auc for d in live]), ".", color="tab:blue",
                  label="live ROC AUC (day)")  # fmt: skip
        axis.plot(days, values([d.trailing_roc_auc for d in live]), "-", color="tab:blue",
                  alpha=0.5, label="live ROC AUC (trailing 7 days)")  # fmt: skip
        axis.step(days, values([d.evaluation_roc_auc for d in live]), where="post",
                  color="black", label="champion's evaluation (test window)")  # fmt: skip
        breached = [i for i, d in enumerate(live) if d.breached]
        if breached:
            axis.plot(days[breached], values([live[i].day_roc_auc for i in breached]), "o",
                      color="tab:red", label="breached")  # fmt: skip
    for w in weeks:
        for c in w.candidates:
            if c.verdict == "champion":
                at = float(mdates.date2num(w.last))
                axis.axvline(at, color="tab:green", alpha=0.4)
                axis.annotate(f"v{c.version}", (at, 0.52), color="tab:green", fontsize=8)
    locator = mdates.AutoDateLocator()
    axis.xaxis.set_major_locator(locator)
    axis.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    axis.set_ylim(0.5, 0.9)
    axis.set_ylabel("ROC AUC")
    axis.set_title(title)
    axis.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    # No timestamp in the file: the same replay writes the same bytes.
    figure.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()
