"""The `trainflow` command: what Dagster has no verb for (docs/conventions.md lists them).

One module per command group; importing them registers their commands on `main`.
"""

from trainflow.cli import lake, quarantine, registry, replay, reproduce, retrain, status
from trainflow.cli.group import main

__all__ = ["lake", "main", "quarantine", "registry", "replay", "reproduce", "retrain", "status"]
