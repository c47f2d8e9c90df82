"""The library warnings trainflow's own use of Dagster causes, filtered in one place.

Installed by `trainflow/__init__.py`, so every process that imports trainflow has the filters
before any of its code runs: the `trainflow` command, and every process that loads the code
location (`dagster`, `dg`, the webserver, the daemon, a code server, a run worker, the steps'
forkserver). Each filter names the category, the start of the message and the module the
warning is attributed to: any other warning of the same libraries still shows. Dagster-free
but for the warning class (dagster_shared's small leaf module).

Not here, because no filter can reach them:
- Dagster's SupersessionWarning of `dagster asset materialize` and `dagster dev`: raised as the
  command starts, before the code location is imported. The commands it points to,
  `dg launch` and `dg dev`, print nothing (docs/runbook.md).
- MLflow's UserWarning "Add type hints to the `predict` method" (in every process that
  imported the MLP's pyfunc class, `trainflow status` included): raised inside MLflow's own
  `simplefilter("once")`, ahead of any filter. MlpPyfunc is defined so that MLflow skips the
  check (models/mlp_pyfunc.py).
- dg's notice that the project's venv is not activated: a dg setting, pyproject.toml's
  `[tool.dg.cli] suppress_warnings`.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

from dagster_shared.utils.warnings import BetaWarning


class QuietWarning(NamedTuple):
    category: type[Warning]
    message: str  # a regex matched at the start of the message
    module: str  # a regex of the module the warning is attributed to
    why: str  # why hiding it is safe


QUIET_WARNINGS = [
    QuietWarning(
        BetaWarning,
        r"Parameter `backfill_policy` of function `asset` is currently in beta",
        # Dagster attributes it to its own decorator module, not to the asset's module.
        r"dagster\._core\.decorator_utils\Z",
        "every daily asset needs BackfillPolicy.single_run(): a `--partition-range` or a UI "
        "backfill is one run only then (docs/automation.md); tests/test_backfills.py and the "
        "end-to-end tests pin that behaviour at the locked Dagster version",
    ),
    QuietWarning(
        BetaWarning,
        r"Parameter `allow_nonexistent_upstream_partitions` of initializer "
        r"`TimeWindowPartitionMapping\.__init__` is currently in beta",
        r"trainflow\.defs\.(features|predictions)\Z",
        "flight_features' 28-day look-back and champion_live_performance's 7 trailing days "
        "from the first days of 2013 reach days that are no partition; every end-to-end test "
        "materializes those days",
    ),
    QuietWarning(
        BetaWarning,
        r"Parameter `include_sources` of function `AssetSelection\.all` is currently in beta",
        r"dagster\._core\.definitions\.antlr_asset_selection\.antlr_asset_selection\Z",
        "Dagster's own call when it parses the documented selection '*'; trainflow never "
        "passes the parameter",
    ),
    QuietWarning(
        BetaWarning,
        r"Parameter `include_sources` of function `AssetSelection\.groups` is currently in beta",
        r"dagster\._core\.definitions\.antlr_asset_selection\.antlr_asset_selection\Z",
        "Dagster's own call when it parses a `group:` selection, as the documented runs of "
        "the whole graph do (`group:training or group:evaluation`); trainflow never passes "
        "the parameter",
    ),
]


def install() -> None:
    """Add the filters (idempotent: `warnings.filterwarnings` replaces an equal entry)."""
    for quiet in QUIET_WARNINGS:
        warnings.filterwarnings(
            "ignore", message=quiet.message, category=quiet.category, module=quiet.module
        )
