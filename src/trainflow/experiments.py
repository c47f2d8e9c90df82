"""Experiments side by side: which tables hold one row set per experiment.

The daily tables (snapshot, validated flights, features, predictions) are shared by every
experiment; the training-side tables hold each experiment's rows in their own partition of
the `experiment` column (the config's `name`), so training a second config never replaces
the first one's dataset, model, report or registry entry (docs/experiments.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

EXPERIMENT_TABLES = ("training_dataset", "model", "evaluation_report", "registry_entry")


def write_variant(source: Path, into: Path, suffix: str, params: dict[str, Any]) -> Path:
    """A copy of config `source` as a new experiment: its name and registered model name
    suffixed with `-<suffix>`, `model.params` updated with `params`, written to
    `into/<source stem>-<suffix>.yaml`. What the guide in docs/experiments.md does by hand;
    the benchmark and the tests derive their second experiment with it."""
    raw = yaml.safe_load(source.read_text())
    raw["name"] = f"{raw['name']}-{suffix}"
    raw["registered_model_name"] = f"{raw['registered_model_name']}-{suffix}"
    raw["model"]["params"].update(params)
    path = into / f"{source.stem}-{suffix}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path
