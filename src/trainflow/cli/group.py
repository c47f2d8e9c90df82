"""The `trainflow` command group and what its commands share."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from trainflow.credentials import refused_login


def _date(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


class _Commands(click.Group):
    """A refused login, in any command, ends it as a message naming the service and the
    variables to check (exit status 1), never as a traceback or "unreachable"."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            refused = refused_login(exc)
            if refused is None:
                raise
            raise click.ClickException(str(refused)) from exc


@click.group(cls=_Commands)
def main() -> None:
    """trainflow: a Dagster training pipeline on NYC 2013 flights."""


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
