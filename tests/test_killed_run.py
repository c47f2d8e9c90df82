"""A run killed with SIGKILL midway, then re-run as a user would: no stale hit, no
duplicate partition, and the same model a clean run trains."""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import polars as pl

from tests.helpers.environment import (
    BIN,
    QUICK_CONFIG,
    REPO_ROOT,
    user_environment,
    whole_graph_commands,
)
from tests.helpers.graph import run_graph, settings_for
from trainflow.lake.delta_lake import DeltaLake
from trainflow.settings import Settings

# The daily run, the experiment added, its training run (each command from the venv).
COMMANDS = [
    [str(BIN / c[0]), *c[1:]]
    for c in whole_graph_commands("2013-01-01...2013-02-28", QUICK_CONFIG, terminal=False)
]


def test_killed_run_then_rerun_is_whole_and_correct(built_warehouse: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = user_environment(home)
    shutil.copy(built_warehouse, home / "warehouse.duckdb")
    lake = DeltaLake(Settings.from_env(env).lake_uri)

    run = subprocess.Popen(
        COMMANDS[0], env=env, cwd=REPO_ROOT, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 400
    while lake.version("flight_features") is None:
        assert run.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "flight_features never committed"
        time.sleep(0.2)
    os.killpg(run.pid, signal.SIGKILL)  # the daily run dies once the features are in
    run.wait(timeout=30)
    assert lake.version("model") is None
    committed = {
        t: lake.version(t) for t in ("raw_snapshot", "validated_flights", "flight_features")
    }

    for command in COMMANDS:
        done = subprocess.run(
            command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-4000:]
    # Committed partitions were reused (a recompute would have made a new Delta version) ...
    assert {t: lake.version(t) for t in committed} == committed
    # ... each exactly once ...
    for table in ("raw_snapshot", "validated_flights", "flight_features"):
        frame = lake.read(table)
        assert frame.height == 51955, table
        assert frame["flight_id"].n_unique() == 51955, table
    # ... and the model equals the one a clean, uninterrupted run trains.
    clean = settings_for(tmp_path / "clean", home / "warehouse.duckdb")
    run_graph(clean)
    assert (
        lake.read("model")["model_sha256"][0]
        == DeltaLake(clean.lake_uri).read("model")["model_sha256"][0]
    )
    assert lake.read("registry_entry").filter(pl.col("version") == 1).height == 1
