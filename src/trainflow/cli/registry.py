"""`trainflow promote | rollback | history`: the registry's champion, moved by a person."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from trainflow.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

from trainflow.cli.group import main


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

    from trainflow.credentials import refused_login
    from trainflow.registry import RegistryError
    from trainflow.settings import redact_userinfo

    try:
        yield
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from exc
    except MlflowException as exc:
        refused = refused_login(exc)
        if refused is not None:
            raise click.ClickException(str(refused)) from exc
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
