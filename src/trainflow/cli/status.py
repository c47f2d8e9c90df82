"""`trainflow status`: where the lake, the model, the report, the registry and the runs are."""

from __future__ import annotations

import click

from trainflow.cli.group import LAKE_TABLES, main
from trainflow.credentials import DAGSTER_INSTANCE, refused_login
from trainflow.settings import SOURCE_CHECKOUT, Settings
from trainflow.warehouse import landing
from trainflow.warehouse.base import WarehouseUnavailableError


@main.command()
@click.option(
    "--runs",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="The SLIs cover this many of the newest finished runs (needs DAGSTER_HOME).",
)
def status(runs: int) -> None:
    """Where things are: warehouse days, lake tables and versions, registry aliases, report,
    and the SLIs over the last runs."""
    from trainflow.config import load_config
    from trainflow.lake.delta_lake import DeltaLake
    from trainflow.registry.views import last_champion_event, registry_aliases

    settings = Settings.from_env()
    try:
        days = landing.landed_days(settings.warehouse_url)
        scales = landing.landed_scales(settings.warehouse_url)
    except WarehouseUnavailableError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"profile      {settings.profile}")
    click.echo(
        f"warehouse    {settings.warehouse_url} "
        + (
            f"({len(days)} days landed, {days[0]}..{days[-1]}, {landing.describe_scales(scales)})"
            if days
            else "(nothing landed)"
        )
    )
    lake = DeltaLake(settings.lake_uri, settings.storage_options)
    click.echo(f"lake         {settings.lake_uri}")
    for table in LAKE_TABLES:
        version = lake.version(table)
        click.echo(f"  {table:<18} " + ("-" if version is None else f"Delta version {version}"))
    config = load_config(settings.config_path)
    if lake.experiment_version("evaluation_report", config.name) is not None:
        report = lake.read("evaluation_report", experiment=config.name)
        click.echo(f"experiment   {config.name}")
        click.echo(f"report       {report['report_uri'][0]}")
        # Tables written before the HTML and the card had their own columns: the old names.
        html = (
            report["report_html_uri"][0]
            if "report_html_uri" in report.columns
            else f"{report['report_uri'][0].removesuffix('.md')}.html"
        )
        click.echo(f"             {html}")
        if "model_card_uri" in report.columns:
            click.echo(f"model card   {report['model_card_uri'][0]}")
    # settings.mlflow_tracking_uri has any `user:password@` removed; the client gets the
    # URI from MLFLOW_TRACKING_URI itself when it carries them (settings.mlflow_client_uri).
    click.echo(f"mlflow       {settings.mlflow_tracking_uri}")
    if not settings.mlflow_server:
        click.echo(f"             mlflow ui --backend-store-uri {settings.mlflow_tracking_uri}")
    for alias, described in registry_aliases(
        settings.mlflow_client_uri, config.registered_model_name
    ).items():
        click.echo(f"  {config.registered_model_name}@{alias:<10} {described}")
    event = last_champion_event(settings.mlflow_client_uri, config.registered_model_name)
    if event:
        click.echo(f"  last champion move   {event}")
    # An installed package has no Makefile or workspace.yaml beside it.
    dev = (
        "make dev  (dagster dev -w workspace.yaml)"
        if SOURCE_CHECKOUT
        else ("dagster dev -m trainflow.definitions")
    )
    click.echo(f"dagster UI   {dev}, then http://127.0.0.1:3000")
    _print_slis(settings, runs)


def _print_slis(settings: Settings, runs: int) -> None:
    """The SLIs over the newest finished runs of the persistent Dagster instance."""
    if settings.dagster_home is None:
        click.echo("SLIs         - (DAGSTER_HOME unset: runs are not kept)")
        return
    if not settings.dagster_home.is_dir():  # nothing ran with this instance yet
        click.echo(f"SLIs         - (no Dagster instance at DAGSTER_HOME={settings.dagster_home})")
        return
    import dagster as dg

    from trainflow.definitions import defs
    from trainflow.defs.instigators import instigator_lines, served_locations
    from trainflow.defs.observability import recent_runs
    from trainflow.settings import REPO_ROOT
    from trainflow.slis import summarise

    workspace = REPO_ROOT / "workspace.yaml" if REPO_ROOT else None
    try:
        with dg.DagsterInstance.get() as instance:
            facts = recent_runs(instance, runs)
            instigators = instigator_lines(instance, defs, served_locations(workspace))
    except Exception as exc:  # prod: the instance's PostgreSQL may refuse its login
        refused = refused_login(exc, postgres=DAGSTER_INSTANCE)
        if refused is None:
            raise
        raise refused from exc
    click.echo("automation   sensors and schedules (start: docs/automation.md)")
    for instigator in instigators:
        click.echo(f"  {instigator.describe()}")
    click.echo(
        f"SLIs         over the last {len(facts)} finished run(s) in {settings.dagster_home}"
    )
    for line in summarise(facts).lines():
        click.echo(f"  {line}")
