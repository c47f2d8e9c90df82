"""Benchmark: a cold run against a warm re-run of the same window (`make bench-cache`).

Prints wall times and their ratio, measured in the same process on the same machine,
for the whole graph over all of 2013 (or --through), twice each way:
- as a user runs it: `dagster asset materialize` with the multiprocess executor, which
  pays a fresh process per step (about 6-8 s each here) whatever the cache does;
- in process (`dagster.materialize`), which shows the compute the cache saves.
Hits are counted from the warm runs' event logs, so the figures cannot come from a
run that silently did nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from trainflow.config import load_config
from trainflow.definitions import materialize_range
from trainflow.settings import Settings
from trainflow.warehouse import landing

BIN = Path(sys.executable).parent
REPO_ROOT = Path(__file__).resolve().parents[1]


def cli_run(env: dict[str, str], through: dt.date) -> float:
    """The whole graph as `make materialize` runs it: the days' features, the experiment
    added, its training side, the days' predictions (docs/experiments.md)."""
    config = Settings.from_env(env).config_path
    materialize = [str(BIN / "dagster"), "asset", "materialize", "-m", "trainflow.definitions"]
    started = time.perf_counter()
    for command in (
        [*materialize, "--select", "not (group:training or group:evaluation or group:predictions)",
         "--partition-range", f"2013-01-01...{through}"],
        [str(BIN / "trainflow"), "experiments", "add", str(config)],
        [*materialize, "--select", "group:training or group:evaluation",
         "--partition", load_config(config).name],
        [*materialize, "--select", "group:predictions", "--partition-range", f"2013-01-01...{through}"],
    ):  # fmt: skip
        done = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(
                f"{' '.join(command[1:3])} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
    return time.perf_counter() - started


def in_process_run(settings: Settings, through: dt.date) -> tuple[float, Counter]:
    started = time.perf_counter()
    result = materialize_range(settings, "2013-01-01", str(through))
    seconds = time.perf_counter() - started
    cache = Counter(
        str(e.materialization.metadata["cache"].value)
        for e in result.get_asset_materialization_events()
        if "cache" in e.materialization.metadata
    )
    return seconds, cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--through", type=dt.date.fromisoformat, default=dt.date(2013, 12, 31))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="trainflow-bench-"))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAINFLOW_", "MLFLOW_"))}
        results: dict[str, tuple[float, float, Counter | None]] = {}
        for mode in ("cli", "in_process"):
            home = root / mode
            (home / "dagster").mkdir(parents=True)
            shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster")
            mode_env = {**env, "TRAINFLOW_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
            settings = Settings.from_env(mode_env)
            landing.land(settings.warehouse_url, landing.plan_days([], through=args.through))
            if mode == "cli":
                cold, warm = cli_run(mode_env, args.through), cli_run(mode_env, args.through)
                results[mode] = (cold, warm, None)
            else:
                cold, _ = in_process_run(settings, args.through)
                warm, hits = in_process_run(settings, args.through)
                results[mode] = (cold, warm, hits)
        print(f"window 2013-01-01..{args.through}, whole graph, {os.cpu_count()} CPU(s)")
        for mode, (cold, warm, events) in results.items():
            extra = f"  warm run events: {dict(events)}" if events else ""
            print(
                f"{mode:>10}: cold {cold:6.1f} s   warm {warm:6.1f} s   warm/cold {warm / cold:.2f}{extra}"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
