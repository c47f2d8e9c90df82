"""Benchmark: each asset step's peak memory over all of 2013 against its pod size
(`make bench-pods`).

Every step runs alone in its own process, as a step pod runs it: `dagster asset
materialize` of that one step over the whole year, in process (the code location's
imports included), its upstream already materialized by the steps before it. The peak
resident set of the process and of everything it started (dbt's subprocess included) is
read with GNU time; it is compared with the memory request and limit that
`trainflow/defs/pods.py` gives the step. Exits non-zero if a step's peak reaches its
limit (on Kubernetes it would be OOM-killed).

Memory is a maximum over processes, not a sum: where a step runs a subprocess (dbt), the
pod holds both at once, so keep headroom there.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trainflow.defs.pods import POD_SIZES, STEP_POD_SIZE
from trainflow.settings import Settings
from trainflow.warehouse import landing

BIN = Path(sys.executable).parent
REPO_ROOT = Path(__file__).resolve().parents[1]
# In execution order, each reading what the ones before it wrote: (pod-table steps, the
# selection that runs them). The reference tables' checks run with the dbt models they
# check, in the same process, so the two share one row and one peak.
STEPS: list[tuple[tuple[str, ...], str]] = [
    (("warehouse_models", "reference_table_contracts"), "kind:dbt"),
    (("raw_snapshot",), "raw_snapshot"),
    (("validated_flights",), "validated_flights"),
    (("flight_features",), "flight_features"),
    (("training_dataset",), "training_dataset"),
    (("model",), "model"),
    (("evaluation_report",), "evaluation_report"),
    (("registry_entry",), "registry_entry"),
]
UNITS = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}
IN_PROCESS = "execution:\n  config:\n    in_process: {}\n"


def to_bytes(quantity: str) -> int:
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi)", quantity)
    if match is None:
        raise ValueError(f"{quantity!r} is not a memory quantity trainflow uses")
    return int(match[1]) * UNITS[match[2]]


def run_step(selection: str, env: dict[str, str], through: dt.date) -> tuple[float, int]:
    """(seconds, peak bytes) of one selection over the window, alone, in one process."""
    home = Path(env["TRAINFLOW_HOME"])
    config, report = home / "in_process.yaml", home / "step.time"
    config.write_text(IN_PROCESS)
    window = [] if selection == "kind:dbt" else [
        "--partition-range", f"2013-01-01...{through}"
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", "-o", str(report),
         str(BIN / "dagster"), "asset", "materialize", "-m", "trainflow.definitions",
         "--select", selection, *window, "-c", str(config)],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{selection} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    # GNU time's %M: the peak resident set in KiB of the process or any it waited for.
    return seconds, int(report.read_text().split()[-1]) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--through", type=dt.date.fromisoformat, default=dt.date(2013, 12, 31))
    parser.add_argument("--scale", type=int, default=1, help="land N times the data (--scale)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="trainflow-bench-pods-"))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAINFLOW_", "MLFLOW_"))}
        (root / "dagster").mkdir(parents=True)
        shutil.copy(REPO_ROOT / "dagster.yaml", root / "dagster")
        env.update(TRAINFLOW_HOME=str(root), DAGSTER_HOME=str(root / "dagster"))
        settings = Settings.from_env(env)
        landing.land(
            settings.warehouse_url, landing.plan_days([], through=args.through), args.scale
        )
        print(
            f"window 2013-01-01..{args.through}, scale {args.scale}, one process per step, "
            f"{os.cpu_count()} CPU(s)"
        )
        print(f"{'step':<44} {'size':<7} {'peak':>9} {'request':>8} {'limit':>8}  peak/limit  time")
        over = []
        for steps, selection in STEPS:
            seconds, peak = run_step(selection, env, args.through)
            sizes = {STEP_POD_SIZE[s] for s in steps}
            # Steps that share a process are sized alike; the table's largest counts.
            size = max(sizes, key=lambda s: to_bytes(POD_SIZES[s].memory_limit))
            pod = POD_SIZES[size]
            ratio = peak / to_bytes(pod.memory_limit)
            print(
                f"{' + '.join(steps):<44} {size:<7} {peak / 2**20:7.0f}Mi "
                f"{pod.memory_request:>8} {pod.memory_limit:>8}  {ratio:10.2f}  {seconds:5.1f} s"
            )
            if ratio >= 1:
                over.append(selection)
        if over:
            sys.exit(f"peak at or over the pod's memory limit: {', '.join(over)}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
