"""`trainflow experiments [compare A B ...]`: the experiments the lake holds, side by side
(docs/experiments.md). Every figure is read from the experiments' stored rows."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
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


@experiments.command()
@click.argument("config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--quiet", is_flag=True, help="Print the experiment's name only (for scripts).")
def add(config_file: Path, quiet: bool) -> None:
    """Add the experiment CONFIG_FILE describes (or change it: its name is the key): the
    config stored in the lake, where every step reads it, and its name added to the
    `experiments` partitions of the DAGSTER_HOME instance, so the UI and `dagster asset
    materialize --partition NAME` can train it. Touches no code."""
    import dagster as dg

    from trainflow.config import ConfigError
    from trainflow.defs.partitions import EXPERIMENTS, add_experiment
    from trainflow.defs.resources import ExperimentConfigResource, lake_resource

    settings = Settings.from_env()
    resource = ExperimentConfigResource(
        path=str(settings.config_path), lake=lake_resource(settings)
    )
    try:
        config = resource.store().add_file(config_file)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if settings.dagster_home is None:
        raise click.ClickException("DAGSTER_HOME is not set: no instance to add the partition to")
    with dg.DagsterInstance.get() as instance:
        new = not instance.has_dynamic_partition(EXPERIMENTS, config.name)
        add_experiment(instance, config.name)
    if quiet:
        click.echo(config.name)
        return
    click.echo(
        f"experiment {config.name}: config stored at "
        f"{resource.store().store.uri(config.name + '.yaml')}; "
        + ("partition added" if new else "partition already there")
    )


def _sources() -> tuple[DeltaLake, Callable[[str], float | None]]:
    """The lake, and a lookup of a model's training time in its MLflow run."""
    from mlflow import MlflowClient

    from trainflow.lake.delta_lake import DeltaLake

    settings = Settings.from_env()
    client = MlflowClient(settings.mlflow_client_uri)

    def train_seconds(run_id: str) -> float | None:
        return client.get_run(run_id).data.metrics.get("train_seconds")

    return DeltaLake(settings.lake_uri, settings.storage_options), train_seconds
