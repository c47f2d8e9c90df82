"""`trainflow quarantine list | show | revalidate`: rows the contract held back."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
import polars as pl

from trainflow.settings import Settings

if TYPE_CHECKING:
    pass

from trainflow.cli.group import _checked_day, _date, main


@main.group()
def quarantine() -> None:
    """Inspect rows that broke the data contract (the quarantine_flights table)."""


def _quarantine_table() -> pl.DataFrame | None:
    """The quarantined rows that belong to the validated partitions stored now (or to a
    partition validation refused): contracts/quarantine.py's read rule."""
    from trainflow.contracts.quarantine import visible
    from trainflow.defs.ingest import QUARANTINE_TABLE
    from trainflow.lake.delta_lake import DeltaLake

    settings = Settings.from_env()
    lake = DeltaLake(settings.lake_uri, settings.storage_options)
    if lake.version(QUARANTINE_TABLE) is None:
        return None
    return visible(lake.read(QUARANTINE_TABLE), lake.day_keys("validated_flights"))


@quarantine.command("list")
def quarantine_list() -> None:
    """Quarantined rows per partition, column and rule."""
    table = _quarantine_table()
    if table is None or table.is_empty():
        click.echo("quarantine is empty")
        return
    if "attempt" not in table.columns:  # a quarantine written before attempts were recorded
        table = table.with_columns(pl.lit("validated").alias("attempt"))
    summary = (
        table.group_by("day", "column", "rule", "contract", "attempt")
        .agg(pl.col("row_index").n_unique().alias("rows"))
        .sort("day", "column", "rule")
    )
    click.echo(f"{'partition':<12} {'rows':>5}  {'column':<18} {'rule':<34} contract")
    for day, column, rule, contract, attempt, rows in summary.select(
        "day", "column", "rule", "contract", "attempt", "rows"
    ).iter_rows():
        refused = "  (partition refused: too many rejects)" if attempt == "refused" else ""
        click.echo(f"{day!s:<12} {rows:>5}  {column:<18} {rule:<34} {contract}{refused}")


@quarantine.command("show")
@click.argument("partition")
@click.option("--limit", default=20, show_default=True, help="Rows to print.")
def quarantine_show(partition: str, limit: int) -> None:
    """The quarantined rows of one partition (YYYY-MM-DD): rule, column, observed value, row."""
    day = _date(partition)
    table = _quarantine_table()
    rows = table.filter(pl.col("day") == day) if table is not None else None
    if rows is None or rows.is_empty():
        raise click.ClickException(f"no quarantined rows for partition {partition}")
    click.echo(f"partition {partition}: {rows['row_index'].n_unique()} row(s) quarantined")
    for row in rows.head(limit).iter_rows(named=True):
        click.echo(
            f"  row {row['row_index']}: column {row['column']!r} rule {row['rule']} "
            f"observed {row['observed']!r} ({row['contract']}, run {row['run_id'][:8]})"
        )
        click.echo(f"    {row['row_json']}")


@quarantine.command("revalidate")
@click.argument("partitions", nargs=-1, required=True)
def quarantine_revalidate(partitions: tuple[str, ...]) -> None:
    """Validate partitions (YYYY-MM-DD) again against the current contract, after a change.

    Runs `validated_flights` for each partition from its stored raw snapshot, as a Dagster
    run (it shows in the UI): rows that now pass leave quarantine, rows that now break a
    rule enter it. Features and the model follow on the next materialization, whose cache
    keys see the new validated data.
    """
    import dagster as dg

    from trainflow.definitions import ALL_ASSETS, build_resources
    from trainflow.defs.ingest import validated_flights

    settings = Settings.from_env()
    days = sorted({_checked_day(p) for p in partitions})
    before = _quarantine_table()
    instance = dg.DagsterInstance.get() if settings.dagster_home else None
    failed = False
    for day in days:
        result = dg.materialize(
            ALL_ASSETS,
            selection=[validated_flights.key],
            resources=build_resources(settings),
            partition_key=day.isoformat(),
            instance=instance,
            raise_on_error=False,
        )
        was = 0 if before is None else before.filter(pl.col("day") == day)["row_index"].n_unique()
        if not result.success:
            failed = True
            for event in result.get_step_failure_events():
                error = event.step_failure_data.error
                if error is not None:
                    click.echo(f"partition {day}: FAILED: {error.message.strip()}", err=True)
            continue
        (md,) = [
            e.materialization.metadata
            for e in result.get_asset_materialization_events()
            if e.materialization.asset_key == validated_flights.key
        ]
        if md["cache"].value == "hit":
            click.echo(f"partition {day}: unchanged (validated with this contract already)")
            continue
        click.echo(
            f"partition {day}: {md['rows_in'].value} rows in, {md['rows_validated'].value} "
            f"validated, {md['rows_quarantined'].value} quarantined (was {was}) against "
            f"{md['contract'].value} (run {result.run_id[:8]})"
        )
    if failed:
        raise click.ClickException("some partitions still break the contract (see above)")
