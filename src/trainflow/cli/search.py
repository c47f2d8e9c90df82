"""`trainflow search CONFIG`: a config's hyperparameter search (its `search:` block) as
rounds of trial experiments run side by side, then the best trial's params through the
gate (docs/experiments.md)."""

from __future__ import annotations

from pathlib import Path

import click

from trainflow.cli.group import main
from trainflow.settings import Settings


@main.command()
@click.argument("config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Trial runs at a time (default: the search's `parallel`); the trials are the same.",
)
def search(config_file: Path, workers: int | None) -> None:
    """Run the search CONFIG_FILE describes: trials the lake holds already are not trained
    again; the best by the validation metric becomes the candidate under the config's name
    (evaluated and registered); a report goes to the lake's `_reports/search/`."""
    from trainflow import search_report
    from trainflow.config import ConfigError, load_config
    from trainflow.defs.resources import lake_resource, mlflow_resource
    from trainflow.defs.search_runs import SearchError, run_search
    from trainflow.registry.search_log import log_search

    settings = Settings.from_env()
    try:
        config = load_config(config_file)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if config.search is None:
        raise click.ClickException(f"{config_file} has no `search:` block")
    tracking = mlflow_resource(settings).tracking()
    client = tracking.client()
    # The search's MLflow experiment (and a local store's database) made here, once: the
    # trials' processes would race to create them.
    experiment_id = tracking.experiment_id(config.name)

    def cpu_seconds(run_id: str) -> float | None:
        return client.get_run(run_id).data.metrics.get("train_cpu_seconds")

    try:
        outcome = run_search(settings, config, cpu_seconds, say=click.echo, workers=workers)
    except SearchError as exc:
        raise click.ClickException(str(exc)) from None
    text = search_report.markdown(
        config.name, config.search, outcome.results, outcome.best, outcome.stopped
    )
    png = search_report.metric_plot(config.search, outcome.results, outcome.best)
    page = search_report.html_page(text, png)
    store = lake_resource(settings).object_store("_reports")
    store.put(f"search/{config.name}.md", text.encode(), "text/markdown")
    store.put(f"search/{config.name}.png", png, "image/png")
    uri = store.put(f"search/{config.name}.html", page.encode(), "text/html")
    parent = log_search(
        client,
        experiment_id,
        config.name,
        outcome.results,
        outcome.best,
        {"search.md": text, "search.html": page},
    )
    click.echo(text)
    click.echo(
        f"search {config.name}: {len(outcome.results)} trial(s), {len(outcome.trained)} trained "
        f"now, {outcome.wall_seconds:.1f} s wall, {outcome.cpu_seconds:.1f} CPU-seconds; "
        f"MLflow parent run {parent}"
    )
    click.echo(f"report: {uri}")
