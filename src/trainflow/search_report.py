"""A search's report: every trial with its params, validation ROC AUC and CPU-seconds, the
best marked, and the metric plotted against each parameter (Markdown + HTML + PNG)."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence

from trainflow.config import SearchConfig
from trainflow.search import TrialResult


def markdown(
    name: str, search: SearchConfig, results: Sequence[TrialResult], best: TrialResult,
    stopped: str,
) -> str:  # fmt: skip
    params = sorted(search.space)
    lines = [
        f"# Search {name}",
        "",
        f"- sampler: {search.sampler}, {search.parallel} trial(s) per round",
        f"- budget: {search.trials} trials"
        + (f", {search.cpu_seconds:.0f} CPU-seconds of training" if search.cpu_seconds else ""),
        f"- stopped: {stopped}",
        f"- best: {best.trial.name}, {search.metric} {best.value:.4f} (chosen on the "
        "validation window; the test window is the gate's)",
        "",
        "| trial | " + " | ".join(params) + f" | {search.metric} | train CPU-s |",
        "|---" * (len(params) + 3) + "|",
    ]
    for r in sorted(results, key=lambda r: r.trial.number):
        mark = " (best)" if r.trial.number == best.trial.number else ""
        cells = [_cell(r.trial.params[p]) for p in params]
        cpu = "-" if r.cpu_seconds is None else f"{r.cpu_seconds:.1f}"
        lines.append(
            f"| {r.trial.name}{mark} | " + " | ".join(cells) + f" | {r.value:.4f} | {cpu} |"
        )
    return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def metric_plot(search: SearchConfig, results: Sequence[TrialResult], best: TrialResult) -> bytes:
    """The validation metric against each parameter, one panel each, the best trial red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = sorted(search.space)
    fig, axes = plt.subplots(1, len(params), figsize=(3.2 * len(params), 3.0), squeeze=False)
    values = [r.value for r in results]
    for ax, name in zip(axes[0], params, strict=True):
        p = search.space[name]
        if p.type == "choice":
            choices = [str(c) for c in p.choices or []]
            xs: list[float] = [choices.index(str(r.trial.params[name])) for r in results]
            ax.set_xticks(range(len(choices)), choices)
        else:
            xs = [float(r.trial.params[name]) for r in results]
            if p.log:
                from matplotlib.ticker import NullFormatter

                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap
        ax.scatter(xs, values, color="#4c72b0")
        top = results.index(best)
        ax.scatter([xs[top]], [values[top]], color="#c44e52", zorder=3, label="best")
        ax.set(xlabel=name, ylabel=search.metric if ax is axes[0][0] else None)
    axes[0][0].legend(loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def html_page(text: str, png: bytes) -> str:
    image = base64.b64encode(png).decode()
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Search</title></head><body>"
        f"<pre>{html.escape(text)}</pre>"
        f"<img alt='metric against each parameter' src='data:image/png;base64,{image}'>"
        "</body></html>"
    )
