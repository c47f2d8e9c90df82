"""`trainflow code-versions` and `trainflow reproduce`: which code computed what, and a run again."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from trainflow.credentials import refused_login
from trainflow.settings import Settings

if TYPE_CHECKING:
    pass

from trainflow.cli.group import LAKE_TABLES, main


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
        # "no model version 'v3'" raised from MLflow's 401 is a refused login, not a typo.
        raise click.ClickException(str(refused_login(exc) or exc)) from exc
    for line in comparison.lines:
        click.echo(line)
    if not comparison.matches:
        raise click.ClickException(
            f"the reproduced run differs from the recorded one; first: {comparison.first_difference}"
        )
    click.echo("reproduced exactly: identical model bytes and metrics")
