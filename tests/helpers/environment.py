"""The fresh user environment: what a user's shell over a new trainflow home holds, so the
commands a test runs see that home only, never a TRAINFLOW_, MLFLOW_ or AWS_ variable of
the machine (or of CI)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Literal

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
QUICK_CONFIG = REPO_ROOT / "configs" / "quick.yaml"

# Where the commands' Dagster instance lives (`instance=`):
#   "local"   home/dagster with the local profile's dagster.yaml, as `make` leaves it;
#   "default" home/dagster without it: Dagster's defaults, no run or pool limits (a step a
#             test SIGKILLs would keep its claim on the profile's model_registry pool);
#   None      no DAGSTER_HOME: each command makes an ephemeral instance of its own.
InstanceFolder = Literal["local", "default"] | None


def user_environment(
    home: Path,
    config: Path = QUICK_CONFIG,
    *,
    warehouse: Path | str | None = None,
    lake: Path | str | None = None,
    mlflow_tracking_uri: str | None = None,
    instance: InstanceFolder = "local",
) -> dict[str, str]:
    """A user's shell over a fresh trainflow home: the venv's commands first on PATH, no
    TRAINFLOW_, MLFLOW_ or AWS_ variable inherited, the Dagster instance `instance` says,
    and the warehouse, lake and tracking URI when given (else the home's defaults)."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("TRAINFLOW_", "MLFLOW_", "AWS_"))
    }
    env.pop("DAGSTER_HOME", None)
    env.update(
        TRAINFLOW_HOME=str(home),
        TRAINFLOW_CONFIG=str(config),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    if instance is not None:
        (home / "dagster").mkdir(parents=True, exist_ok=True)
        env["DAGSTER_HOME"] = str(home / "dagster")
    if instance == "local":
        shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster" / "dagster.yaml")
    if warehouse is not None:
        env["TRAINFLOW_WAREHOUSE_URL"] = str(warehouse)
    if lake is not None:
        env["TRAINFLOW_LAKE_URI"] = str(lake)
    if mlflow_tracking_uri is not None:
        env["MLFLOW_TRACKING_URI"] = mlflow_tracking_uri
    return env


def rolling_config(folder: Path, train: int, validation: int = 14, test: int = 14) -> Path:
    """configs/rolling.yaml with other window lengths (days), written into `folder`."""
    path = folder / f"rolling-{train}-{validation}-{test}.yaml"
    text = (REPO_ROOT / "configs" / "rolling.yaml").read_text()
    path.write_text(
        text.replace("train_days: 120", f"train_days: {train}")
        .replace("validation_days: 14", f"validation_days: {validation}")
        .replace("test_days: 14", f"test_days: {test}")
    )
    return path


# The whole graph from the terminal is three runs (docs/experiments.md): the days' features,
# the training side for one experiment partition, the days' predictions (what make
# materialize runs, with `dg launch`).
FEATURES_SIDE = "not (group:training or group:evaluation or group:predictions)"
TRAINING_SIDE = "group:training or group:evaluation"
SCORING_SIDE = "group:predictions"
TERMINAL = "configs/run/terminal.yaml"


def whole_graph_commands(days: str, config: Path, terminal: bool = True) -> list[list[str]]:
    """`dagster asset materialize` of the features side over `days` ("FIRST...LAST"), the
    experiment of `config` added, its training side, and the days' predictions: as a user
    types them."""
    from trainflow.config import load_config

    run_config = ["-c", TERMINAL] if terminal else []
    materialize = ["dagster", "asset", "materialize", "-m", "trainflow.definitions"]
    return [
        [*materialize, "--select", FEATURES_SIDE, "--partition-range", days, *run_config],
        ["trainflow", "experiments", "add", str(config)],
        [*materialize, "--select", TRAINING_SIDE, "--partition", load_config(config).name,
         *run_config],
        [*materialize, "--select", SCORING_SIDE, "--partition-range", days, *run_config],
    ]  # fmt: skip
