"""`trainflow experiments [compare A B ...]`: the experiments the lake holds, side by side
(docs/experiments.md). Every figure is read from the experiments' stored rows."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from trainflow.cli.group import main
from trainflow.settings import Settings

if TYPE_CHECKING:
    from trainflow.lake.delta_lake import DeltaLake


@main.group(invoke_without_command=True)
@click.pass_context
def experiments(ctx: click.Context) -> None:
    """The experiments trained into this lake, with their test metrics and intervals."""
    if ctx.invoked_subcommand is not None:
        return
    from trainflow import comparison

    lake, train_seconds = _sources()
    names = comparison.experiment_names(lake)
    if not names:
        raise click.ClickException(
            f"no experiment has an evaluation report in {lake.root} yet: materialize one first"
        )
    click.echo(
        comparison.render_list([comparison.summarize(lake, n, train_seconds) for n in names])
    )


@experiments.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON instead.")
def compare(names: tuple[str, ...], as_json: bool) -> None:
    """Compare experiments NAMES side by side: test metrics with their bootstrap intervals,
    each one's paired ROC AUC difference to the first on the test rows they share, gate
    verdict, training time and model size; writes an HTML report with the ROC curves."""
    from trainflow import comparison
    from trainflow.defs.resources import lake_resource
    from trainflow.evaluation.plots import roc_plot

    settings = Settings.from_env()
    lake, train_seconds = _sources()
    try:
        compared = comparison.compare(lake, list(names), train_seconds)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    store = lake_resource(settings).object_store("_reports")
    key = comparison.report_key(list(names))
    page = comparison.render_html(compared, roc_plot(compared.y_true, compared.scores))
    uri = store.put(key, page.encode(), "text/html")
    if as_json:
        click.echo(json.dumps({**comparison.as_json(compared), "report": uri}, indent=2))
        return
    click.echo(comparison.render_table(compared))
    click.echo(f"report: {uri}")


def _sources() -> tuple[DeltaLake, Callable[[str], float | None]]:
    """The lake, and a lookup of a model's training time in its MLflow run."""
    from mlflow import MlflowClient

    from trainflow.lake.delta_lake import DeltaLake

    settings = Settings.from_env()
    client = MlflowClient(settings.mlflow_client_uri)

    def train_seconds(run_id: str) -> float | None:
        return client.get_run(run_id).data.metrics.get("train_seconds")

    return DeltaLake(settings.lake_uri, settings.storage_options), train_seconds
