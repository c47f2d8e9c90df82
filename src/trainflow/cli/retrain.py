"""`trainflow retrain [--as-of DAY]`: the retrain job's assets at an as-of day the run names.

Dagster's verbs for a run with tags are `dagster job execute --tags`, which prints that `dg
launch` supersedes it, and the UI's launchpad; `dg launch` takes no tags. Naming a rolling
config's as-of day is trainflow's own notion (docs/continuous-training.md), so it has a verb.
"""

from __future__ import annotations

import datetime as dt

import click

from trainflow.cli.group import main
from trainflow.settings import Settings


@main.command()
@click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="The as-of day a rolling config's windows end at (default: the newest feature day).",
)
def retrain(as_of: dt.datetime | None) -> None:
    """Run training_dataset, model, evaluation_report and registry_entry (the weekly
    schedule's job) for the code location's own experiment now, as one Dagster run the UI
    shows, tagged trainflow/as_of=DAY if given. A dated config trains on its dates whatever the day."""
    import dagster as dg

    from trainflow.as_of import AS_OF_TAG
    from trainflow.config import load_config
    from trainflow.definitions import ALL_ASSETS, build_resources
    from trainflow.defs.automation import RETRAIN_ASSETS, own_experiment

    settings = Settings.from_env()
    tags = {AS_OF_TAG: as_of.date().isoformat()} if as_of else {}
    instance = dg.DagsterInstance.get() if settings.dagster_home else dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        ALL_ASSETS,
        selection=RETRAIN_ASSETS,
        partition_key=own_experiment(instance, load_config(settings.config_path)),
        resources=build_resources(settings),
        instance=instance,
        tags=tags,
        raise_on_error=False,
    )
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        click.echo(f"{event.step_key}: FAILED: {error.message.strip() if error else ''}", err=True)
    if not result.success:
        raise SystemExit(1)
    run = result.dagster_run
    click.echo(f"run {run.run_id}: {', '.join(k.to_user_string() for k in RETRAIN_ASSETS)}")
    for event in result.get_asset_materialization_events():
        metadata = event.materialization.metadata
        key = event.materialization.asset_key.to_user_string()
        if "as_of" in metadata:
            click.echo(f"{key}: as-of day {metadata['as_of'].value}")
        if "decision" in metadata:
            click.echo(f"{key}: {metadata['decision'].value}")
