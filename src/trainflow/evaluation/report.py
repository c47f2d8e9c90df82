"""The evaluation report as Markdown (shown in Dagster's UI) and HTML (stored in the lake)."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping

import polars as pl

_SHOWN = ("roc_auc", "pr_auc", "log_loss", "brier", "precision", "recall", "rows")


def _fmt(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() and value > 1 else f"{value:.4f}"


def metrics_table(models: Mapping[str, Mapping[str, float]]) -> str:
    header = "| model | " + " | ".join(_SHOWN) + " |"
    rule = "|---" * (len(_SHOWN) + 1) + "|"
    rows = [
        f"| {name} | " + " | ".join(_fmt(m[k]) for k in _SHOWN) + " |" for name, m in models.items()
    ]
    return "\n".join([header, rule, *rows])


def slices_table(slices: pl.DataFrame) -> str:
    lines = ["| slice | value | rows | positive rate | ROC AUC |", "|---|---|---|---|---|"]
    for row in slices.iter_rows(named=True):
        lines.append(
            f"| {row['slice']} | {row['value']} | {row['rows']:.0f} | "
            f"{row['positive_rate']:.3f} | {row['roc_auc']:.4f} |"
        )
    return "\n".join(lines)


def render_markdown(
    *,
    title: str,
    context: Mapping[str, str],
    models: Mapping[str, Mapping[str, float]],
    slices: pl.DataFrame,
    plot_links: Mapping[str, str],
) -> str:
    facts = "\n".join(f"- **{k}**: {v}" for k, v in context.items())
    plots = "\n".join(f"- {name}: {where}" for name, where in plot_links.items())
    return (
        f"# {title}\n\n{facts}\n\n## Test-window metrics\n\n{metrics_table(models)}\n\n"
        f"## Slices (trained model)\n\n{slices_table(slices)}\n\n## Plots\n\n{plots}\n"
    )


def render_html(markdown: str, images: Mapping[str, bytes]) -> str:
    """A self-contained page: the Markdown as preformatted text plus the plots inline."""
    figures = "".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,'
        f'{base64.b64encode(png).decode()}"/><figcaption>{html.escape(name)}</figcaption></figure>'
        for name, png in images.items()
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>trainflow evaluation</title>"
        "</head><body><pre>" + html.escape(markdown) + "</pre>" + figures + "</body></html>"
    )
