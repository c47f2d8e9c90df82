"""The `trainflow` command: what Dagster has no verb for (docs/conventions.md lists them).

One module per command group; importing them registers their commands on `main`.
"""

from trainflow.cli import (
    experiments,
    lake,
    quarantine,
    registry,
    replay,
    reproduce,
    retrain,
    search,
    status,
)
from trainflow.cli.group import main

__all__ = [
    "experiments",
    "lake",
    "main",
    "quarantine",
    "registry",
    "replay",
    "reproduce",
    "retrain",
    "search",
    "status",
]
