"""Experiments side by side, measured on the full year (`make bench`, or alone:
`python benchmarks/experiments_bench.py`):

- the 16-trial search of `configs/search.yaml`, its trials two at a time (as configured)
  and one at a time, each from the same home with the year's features in place: wall
  seconds, CPU-seconds of the whole process tree, trials per minute, and whether both
  trained the same trials into the same model bytes;
- two experiments (the flagship and a fewer-leaves variant), both added, their training
  sides (one experiment partition each) at the same moment in two processes against one
  after the other: wall seconds, and whether the bytes match.

Each measurement gets its own copy of one home, so all start from the same lake.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks.*` importable

from benchmarks.bench import BIN, REPO_ROOT, YEAR, check, fresh_home, home_env, materialize
from trainflow.config import load_config
from trainflow.experiments import write_variant

SEARCH_CONFIG = REPO_ROOT / "configs" / "search.yaml"
FLAGSHIP = REPO_ROOT / "configs" / "experiment.yaml"
TRAINING_SIDE = "group:training or group:evaluation"


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _timed(commands: list[tuple[list[str], dict[str, str]]]) -> tuple[float, float]:
    """Wall and CPU-seconds (the whole process tree) of commands started at once."""
    cpu, started = _children_cpu(), time.perf_counter()
    running = [
        subprocess.Popen(args, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        for args, env in commands
    ]  # fmt: skip
    outputs = [p.communicate()[0] for p in running]
    wall = time.perf_counter() - started
    for p, out, (args, _) in zip(running, outputs, commands, strict=True):
        if p.returncode != 0:
            sys.exit(f"{' '.join(args[:3])} ... failed:\n{out[-4000:]}")
    return wall, _children_cpu() - cpu


def _train(config: Path) -> list[str]:
    """The training side of one experiment partition, from the terminal."""
    return [str(BIN / "dagster"), "asset", "materialize", "-m", "trainflow.definitions",
            "--select", TRAINING_SIDE, "--partition", load_config(config).name]  # fmt: skip


def _copy(home: Path, into: Path) -> dict[str, str]:
    shutil.copytree(home, into, symlinks=True)
    return home_env(into)


def _models(env: dict[str, str]) -> dict[str, str]:
    lake = Path(env["TRAINFLOW_HOME"]) / "lake" / "model"
    frame = pl.read_delta(str(lake)).select("experiment", "model_sha256")
    return dict(frame.iter_rows())


def measure() -> dict[str, Any]:
    figures: dict[str, Any] = {}
    search = [str(BIN / "trainflow"), "search", str(SEARCH_CONFIG)]
    with fresh_home(1) as env, tempfile.TemporaryDirectory(prefix="trainflow-xp-") as scratch:
        materialize(env, "*flight_features", YEAR)  # the features every experiment shares
        home, root = Path(env["TRAINFLOW_HOME"]), Path(scratch)
        trials = yaml.safe_load(SEARCH_CONFIG.read_text())["search"]["trials"]

        parallel = _copy(home, root / "parallel")
        wall, cpu = _timed([(search, parallel)])
        one_by_one = _copy(home, root / "one-by-one")
        wall_1, cpu_1 = _timed([([*search, "--workers", "1"], one_by_one)])
        figures["search"] = {
            "trials": trials,
            "parallel": {"wall": wall, "cpu": cpu, "per_minute": trials / wall * 60},
            "one_by_one": {"wall": wall_1, "cpu": cpu_1, "per_minute": trials / wall_1 * 60},
            "same_bytes": _models(parallel) == _models(one_by_one),
        }
        again_wall, _ = _timed([(search, parallel)])
        figures["search"]["repeat_wall"] = again_wall

        variant = write_variant(FLAGSHIP, root, "31-leaves", {"num_leaves": 31})
        sequential = _copy(home, root / "sequential")
        together = _copy(home, root / "together")
        for env in (sequential, together):  # both experiments added, as a user does first
            for config in (FLAGSHIP, variant):
                check([str(BIN / "trainflow"), "experiments", "add", str(config)], env)
        seq_wall = sum(_timed([(_train(c), sequential)])[0] for c in (FLAGSHIP, variant))
        both_wall, _ = _timed([(_train(c), together) for c in (FLAGSHIP, variant)])
        figures["two_experiments"] = {
            "sequential": seq_wall,
            "concurrent": both_wall,
            "same_bytes": _models(sequential) == _models(together),
        }
    return figures


def report_lines(f: dict[str, Any]) -> list[str]:
    s, two = f["search"], f["two_experiments"]
    return [
        f"| {s['trials']}-trial search, full year, 2 at a time | {s['parallel']['wall']:.1f} s "
        f"wall, {s['parallel']['cpu']:.0f} CPU-s, {s['parallel']['per_minute']:.1f} trials/min "
        f"| {s['parallel']['wall'] / s['one_by_one']['wall']:.2f} x one by one |",
        f"| the same trials one by one | {s['one_by_one']['wall']:.1f} s wall, "
        f"{s['one_by_one']['cpu']:.0f} CPU-s, {s['one_by_one']['per_minute']:.1f} trials/min | "
        f"same bytes: {'yes' if s['same_bytes'] else 'NO'} |",
        f"| the search again (every trial in the lake) | {s['repeat_wall']:.1f} s | |",
        f"| two experiments at once (training side, full year) | {two['concurrent']:.1f} s | "
        f"{two['concurrent'] / two['sequential']:.2f} x one after the other "
        f"({two['sequential']:.1f} s); same bytes: {'yes' if two['same_bytes'] else 'NO'} |",
    ]


if __name__ == "__main__":
    figures = measure()
    print("| measurement | figure | |\n|---|---|---|")
    print("\n".join(report_lines(figures)))
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(json.dumps(figures, indent=2))
