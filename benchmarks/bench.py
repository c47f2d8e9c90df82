"""`make bench`: trainflow against a plain script and Dagster's own floor, on one machine.

Everything runs in this process tree, one measurement after another, so the ratios compare
figures taken under the same conditions:
- plain: the same work as one polars script (`plain_pipeline.py`), imports not counted;
- floor: a no-op graph of trainflow's shape (`noop_graph.py`) under the same executor
  (one process per step from a preloaded forkserver), and in process;
- cold: `dagster asset materialize` of the features side over the year into a fresh home,
  the configured experiment's training side, then the predictions (as `make materialize`);
- warm: the same command again, nothing changed: every step must be a cache hit;
- new day: a day landed after the first half-year, a tick of the `warehouse_days` sensor,
  and the run it requests (as the daemon launches it: a fresh process) until its features
  are written;
- per step: each step process's start (Dagster's STEP_WORKER_STARTING -> STEP_START);
- peak RSS: the largest process of the run, and all of them at once (sampled from /proc);
- where the time goes: each step's compute time in the cold, warm and scaled runs;
- scale: the cold run with `trainflow land --scale N` data;
- experiments: a 16-trial search two at a time and one by one, and two experiments at
  once against one after the other (`experiments_bench.py`).
Medians of --repeat runs (scaled runs once). Prints a Markdown table and the targets
(docs/benchmarks.md); `--json FILE` keeps the figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks.*` importable

from benchmarks import noop_graph, plain_pipeline

BIN = Path(sys.executable).parent
REPO_ROOT = Path(__file__).resolve().parents[1]
YEAR = "2013-01-01...2013-12-31"
DAILY = "raw_snapshot,validated_flights,flight_features"
# The three runs of the whole graph (docs/experiments.md): the days' features, one
# experiment, the days' predictions.
FEATURES_SIDE = "not (group:training or group:evaluation or group:predictions)"
TRAINING_SIDE = "group:training or group:evaluation"
SCORING_SIDE = "group:predictions"
HALF_YEAR_END, NEW_DAY = dt.date(2013, 6, 29), dt.date(2013, 6, 30)
GIB = 1024**3


@dataclass
class Run:
    wall: float
    peak_rss: int  # the largest single process of the run's process tree
    peak_total_rss: int  # all of its processes at once
    cache: Counter[str] = field(default_factory=Counter)
    worker_starts: list[float] = field(default_factory=list)
    step_seconds: dict[str, float] = field(default_factory=dict)


def session_rss(session: int) -> tuple[int, int]:
    """Largest and total resident memory of the processes in a session, from /proc.

    Not GNU time: its maximum covers only children that were waited for, and a run's
    forkserver is reaped by no one in the tree, so its steps' memory would be missed.
    """
    largest = total = 0
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) != session:  # field 6 of stat: the session id
                continue
            rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")  # field 24: rss in pages
        except (OSError, IndexError, ValueError):
            continue  # the process ended while being read
        largest, total = max(largest, rss), total + rss
    return largest, total


# A run whose processes together hold more than this is stopped (and the benchmark fails
# saying so) before the machine's OOM killer picks a victim, perhaps another program.
MEMORY_CEILING = 22 * GIB


def run_sampled(args: list[str], env: dict[str, str]) -> tuple[float, int, int]:
    """Run a command in its own session, sampling its memory every 0.1 s: wall seconds,
    peak single-process RSS, peak total RSS. Stopped over MEMORY_CEILING."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(
            args, env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        largest = total = 0
        while proc.poll() is None:
            one, every = session_rss(proc.pid)
            largest, total = max(largest, one), max(total, every)
            if every > MEMORY_CEILING:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                out.seek(0)
                steps = re.findall(r" - (\w+) - STEP_START", out.read())
                sys.exit(
                    f"{' '.join(args[:4])} ... stopped: its processes held {every / GIB:.1f} GiB, "
                    f"over the {MEMORY_CEILING / GIB:.0f} GiB ceiling, "
                    f"{time.perf_counter() - started:.0f} s in (last step started: "
                    f"{steps[-1] if steps else 'none'})"
                )
            time.sleep(0.1)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            out.seek(0)
            sys.exit(f"{' '.join(args[:4])} ... failed:\n{out.read()[-6000:]}")
    return wall, largest, total


def home_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAINFLOW_", "MLFLOW_"))}
    env.update(TRAINFLOW_HOME=str(home), DAGSTER_HOME=str(home / "dagster"))
    return env


@contextmanager
def fresh_home(scale: int, through: dt.date | None = None) -> Iterator[dict[str, str]]:
    """A new TRAINFLOW_HOME with 2013 landed (at `scale`), removed afterwards."""
    home = Path(tempfile.mkdtemp(prefix="trainflow-bench-"))
    try:
        (home / "dagster").mkdir()
        shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster" / "dagster.yaml")
        env = home_env(home)
        days = ["--through", str(through)] if through else ["--all"]
        check([str(BIN / "trainflow"), "land", *days, "--scale", str(scale)], env)
        yield env
    finally:
        shutil.rmtree(home, ignore_errors=True)


def check(args: list[str], env: dict[str, str]) -> None:
    """Run a command to completion; exit with its output if it fails."""
    done = subprocess.run(args, env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(args[:4])} ... failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def materialize(
    env: dict[str, str], select: str, days: str, config: dict[str, Any] | None = None
) -> Run:
    """`dagster asset materialize` with its memory sampled; what its run did, from the
    instance: cache decisions, step process starts and each step's compute time."""
    run = Run(
        *run_sampled(
            [str(BIN / "dagster"), "asset", "materialize", "-m", "trainflow.definitions",
             "--select", select, "--partition-range" if "..." in days else "--partition", days,
             *(["--config-json", json.dumps(config)] if config else [])],
            env,
        )
    )  # fmt: skip
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        latest = instance.get_runs(limit=1)[0]
        starting: dict[str, float] = {}
        for entry in instance.all_logs(latest.run_id):
            event = entry.dagster_event
            if event is None:
                continue
            if event.event_type == dg.DagsterEventType.STEP_WORKER_STARTING:
                starting[str(event.step_key)] = entry.timestamp
            elif event.event_type == dg.DagsterEventType.STEP_START:
                if event.step_key in starting:
                    run.worker_starts.append(entry.timestamp - starting[str(event.step_key)])
                starting[f"compute:{event.step_key}"] = entry.timestamp
            elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
                began = starting[f"compute:{event.step_key}"]
                run.step_seconds[str(event.step_key)] = entry.timestamp - began
            elif event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
                metadata = event.step_materialization_data.materialization.metadata
                run.cache[str(metadata["cache"].value) if "cache" in metadata else "none"] += 1
    return run


def whole_graph(env: dict[str, str], days: str) -> Run:
    """The whole graph as `make materialize` runs it: the features side over `days`, the
    config's experiment added, its training side, the days' predictions; one Run of them
    all (walls added)."""
    from trainflow.config import load_config
    from trainflow.settings import Settings

    config = Settings.from_env(env).config_path
    features = materialize(env, FEATURES_SIDE, days)
    started = time.perf_counter()
    check([str(BIN / "trainflow"), "experiments", "add", str(config)], env)
    added = time.perf_counter() - started
    runs = [features, materialize(env, TRAINING_SIDE, load_config(config).name),
            materialize(env, SCORING_SIDE, days)]  # fmt: skip
    return Run(
        wall=sum(r.wall for r in runs) + added,
        peak_rss=max(r.peak_rss for r in runs),
        peak_total_rss=max(r.peak_total_rss for r in runs),
        cache=sum((r.cache for r in runs), Counter()),
        worker_starts=[s for r in runs for s in r.worker_starts],
        step_seconds={k: v for r in runs for k, v in r.step_seconds.items()},
    )


def new_day_seconds(scale: int) -> tuple[float, float]:
    """A half-year materialized; then NEW_DAY landed, a sensor tick and its run: seconds of
    the tick and of the run (a fresh process, as the daemon launches it)."""
    from trainflow.definitions import build_resources
    from trainflow.defs.automation import DBT_TESTS_TAG, warehouse_days_sensor
    from trainflow.settings import Settings

    with fresh_home(scale, HALF_YEAR_END) as env:
        materialize(env, "*flight_features", f"2013-01-01...{HALF_YEAR_END}")
        settings = Settings.from_env(env)

        def tick(cursor: str | None) -> dg.SensorResult:
            resources = build_resources(settings)
            with (
                dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance,
                dg.build_sensor_context(
                    instance=instance, cursor=cursor,
                    resources={"warehouse": resources["warehouse"],
                               "experiment": resources["experiment"]},
                ) as context,
            ):  # fmt: skip
                result = warehouse_days_sensor(context)
            assert isinstance(result, dg.SensorResult)
            return result

        cursor = tick(None).cursor
        check([str(BIN / "trainflow"), "land", "--day", str(NEW_DAY), "--scale", str(scale)], env)
        started = time.perf_counter()
        result = tick(cursor)
        ticked = time.perf_counter() - started
        # The daily run (the dbt data-test run queued behind it is not part of this figure).
        (request,) = [r for r in result.run_requests or [] if DBT_TESTS_TAG not in r.tags]
        days = f"{request.tags['dagster/asset_partition_range_start']}...{request.tags['dagster/asset_partition_range_end']}"
        run = materialize(env, DAILY, days, dict(request.run_config) or None)
        if run.cache["miss"] != 3:  # the new day of each daily asset
            sys.exit(f"the new day's run did not compute exactly its day: {run.cache}")
        return ticked, run.wall


def median_of(repeat: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--scales", default="10", help="comma-separated scales beyond 1")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--scales-only", action="store_true", help="only the scaled cold runs (no ratios)"
    )
    args = parser.parse_args()
    noop_graph.check_shape()
    if args.scales_only:
        for scale in (int(s) for s in args.scales.split(",") if s):
            with fresh_home(scale) as env:
                run = whole_graph(env, YEAR)
            print(
                f"scale {scale}: cold, full year {run.wall:.1f} s; peak RSS largest process "
                f"{run.peak_rss / GIB:.2f} GiB, all at once {run.peak_total_rss / GIB:.2f} GiB"
            )
            for step, seconds in run.step_seconds.items():
                print(f"  {step}: {seconds:.1f} s")
        return
    figures: dict[str, Any] = {
        "date": dt.date.today().isoformat(),  # when the benchmark ran, not data: fine here
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU(s), Python {platform.python_version()}",
        "repeat": args.repeat,
    }
    with fresh_home(1) as env:  # the plain script reads the settings of a landed home
        os.environ.update(TRAINFLOW_HOME=env["TRAINFLOW_HOME"])
        figures["plain"] = median_of(args.repeat, lambda: plain_pipeline.measure()["total_seconds"])
    steps = noop_graph.steps()
    floor = {
        variant: statistics.median(noop_graph.measure(variant) for _ in range(args.repeat))
        for variant in ("forkserver", "in_process")
    }
    figures["floor"], figures["floor_in_process"] = floor["forkserver"], floor["in_process"]
    figures["floor_per_step"] = (floor["forkserver"] - floor["in_process"]) / steps

    cold: list[Run] = []
    warm: list[Run] = []
    for _ in range(args.repeat):
        with fresh_home(1) as env:
            cold.append(whole_graph(env, YEAR))
            warm.append(whole_graph(env, YEAR))
    figures["cold"] = statistics.median(r.wall for r in cold)
    figures["warm"] = statistics.median(r.wall for r in warm)
    figures["warm_recomputed"] = max(r.cache["miss"] for r in warm)
    figures["warm_cache"] = dict(warm[-1].cache)
    figures["step_start"] = statistics.median(s for r in cold + warm for s in r.worker_starts)
    figures["peak_rss"] = max(r.peak_rss for r in cold)
    figures["peak_total_rss"] = max(r.peak_total_rss for r in cold)
    figures["cold_steps"] = {
        k: statistics.median(r.step_seconds[k] for r in cold) for k in cold[0].step_seconds
    }
    figures["warm_steps"] = {
        k: statistics.median(r.step_seconds[k] for r in warm) for k in warm[0].step_seconds
    }
    ticks, runs = zip(*(new_day_seconds(1) for _ in range(args.repeat)), strict=True)
    figures["new_day_tick"], figures["new_day_run"] = (
        statistics.median(ticks),
        statistics.median(runs),
    )

    figures["scales"] = {}
    for scale in (int(s) for s in args.scales.split(",") if s):
        with fresh_home(scale) as env:
            run = whole_graph(env, YEAR)
        figures["scales"][scale] = {
            "cold": run.wall, "peak_rss": run.peak_rss, "peak_total_rss": run.peak_total_rss,
            "steps": run.step_seconds,
        }  # fmt: skip
    from benchmarks import experiments_bench

    figures["experiments"] = experiments_bench.measure()
    report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))


def report(f: dict[str, Any]) -> None:
    new_day = f["new_day_tick"] + f["new_day_run"]
    rows = [
        ("plain polars script (same work, one process)", f["plain"], 1.0),
        ("no-op graph, same shape and executor (floor)", f["floor"], f["floor"] / f["plain"]),
        ("no-op graph, in process", f["floor_in_process"], f["floor_in_process"] / f["plain"]),
        ("trainflow cold, full year", f["cold"], f["cold"] / f["plain"]),
        ("trainflow warm re-run, nothing changed", f["warm"], f["warm"] / f["plain"]),
        ("new day: sensor tick + its run", new_day, new_day / f["plain"]),
    ]
    print(f"\n`make bench`, {f['date']}, {f['machine']}, median of {f['repeat']}\n")
    print("| measurement | wall | x plain |\n|---|---|---|")
    for name, seconds, ratio in rows:
        print(f"| {name} | {seconds:.1f} s | {ratio:.2f} |")
    print(f"| per-step process start (trainflow) | {f['step_start']:.2f} s | |")
    print(
        f"| per-step overhead of the floor (forkserver - in process) | {f['floor_per_step']:.2f} s | |"
    )
    print(
        f"| peak RSS, cold: largest process / all at once | {f['peak_rss'] / GIB:.2f} / {f['peak_total_rss'] / GIB:.2f} GiB | |"
    )
    for scale, s in f["scales"].items():
        print(f"| scale {scale}: cold, full year ({scale}x rows) | {s['cold']:.1f} s | "
              f"{s['cold'] / f['cold']:.2f} x scale 1, peak RSS {s['peak_rss'] / GIB:.2f} GiB |")  # fmt: skip
    print(
        "\n| step (compute, Dagster's STEP_START..STEP_SUCCESS) | cold | warm |"
        + "".join(f" scale {k} |" for k in f["scales"])
        + "\n|---|---|---|"
        + "---|" * len(f["scales"])
    )
    for step, seconds in f["cold_steps"].items():
        scaled = "".join(f" {s['steps'].get(step, 0):.1f} s |" for s in f["scales"].values())
        print(f"| {step} | {seconds:.1f} s | {f['warm_steps'].get(step, 0):.1f} s |{scaled}")
    targets = [
        ("per-step orchestration overhead <= 0.5 s", f["step_start"], 0.5),
        ("cold minus floor <= 1.3x plain", (f["cold"] - f["floor"]) / f["plain"], 1.3),
        ("warm <= 1.2x floor", f["warm"] / f["floor"], 1.2),
        ("warm recomputes nothing (misses)", f["warm_recomputed"], 0),
        ("new day -> features <= 10 s", new_day, 10.0),
        *((f"scale {k}: wall <= {k}x scale 1", s["cold"] / f["cold"], float(k))
          for k, s in f["scales"].items()),
        *((f"scale {k}: peak RSS <= 4 GiB" if k <= 10 else f"scale {k}: peak RSS <= 24 GiB",
           s["peak_rss"] / GIB, 4.0 if k <= 10 else 24.0) for k, s in f["scales"].items()),
    ]  # fmt: skip
    if "experiments" in f:
        from benchmarks import experiments_bench

        print("\n| experiments (benchmarks/experiments_bench.py) | figure | |\n|---|---|---|")
        print("\n".join(experiments_bench.report_lines(f["experiments"])))
    print("\n| target | measured | |\n|---|---|---|")
    for name, value, limit in targets:
        verdict = "met" if value <= limit else f"missed by {value - limit:.2f}"
        print(f"| {name} | {value:.2f} | {verdict} |")


if __name__ == "__main__":
    main()
