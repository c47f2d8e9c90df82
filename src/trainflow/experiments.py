"""Experiments side by side: which tables hold one row set per experiment.

The daily tables (snapshot, validated flights, features, predictions) are shared by every
experiment; the training-side tables hold each experiment's rows in their own partition of
the `experiment` column (the config's `name`), so training a second config never replaces
the first one's dataset, model, report or registry entry (docs/experiments.md).
"""

from __future__ import annotations

EXPERIMENT_TABLES = ("training_dataset", "model", "evaluation_report", "registry_entry")
