"""Cache keys in action: what each kind of change recomputes, counted from the run's
event log (each materialization event says `cache: hit` or `miss`), never from timing."""

import datetime as dt
import subprocess
import sys
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from tests.helpers.environment import QUICK_CONFIG, user_environment
from tests.helpers.graph import (
    DAILY_ASSET_NAMES,
    JAN_FEB,
    LAKE_ASSET_NAMES,
    WHOLE_TABLE_ASSET_NAMES,
    copy_of_the_code,
    data_versions,
    outcomes,
    recomputed,
    run_graph,
    run_graph_from_code,
    settings_for,
)
from trainflow.defs.caching import FORCE_TAG
from trainflow.defs.ingest import raw_snapshot
from trainflow.lake.delta_lake import DeltaLake
from trainflow.settings import Settings
from trainflow.warehouse import landing


@pytest.fixture
def settings(warehouse_copy: Path, tmp_path: Path) -> Settings:
    return settings_for(tmp_path / "home", warehouse_copy)


def test_second_run_recomputes_nothing_and_keeps_every_data_version(settings) -> None:
    first = run_graph(settings)
    assert recomputed(first) == {
        **{n: 59 for n in DAILY_ASSET_NAMES},
        **{n: 1 for n in WHOLE_TABLE_ASSET_NAMES},
    }
    lake = DeltaLake(settings.lake_uri)
    delta_versions = {name: lake.version(name) for name in LAKE_ASSET_NAMES}

    second = run_graph(settings)
    counts = outcomes(second)
    assert recomputed(second) == {}
    assert {n: c["hit"] for n, c in counts.items()} == {
        **{n: 59 for n in DAILY_ASSET_NAMES},
        **{n: 1 for n in WHOLE_TABLE_ASSET_NAMES},
    }
    assert data_versions(second) == data_versions(first)
    assert {name: lake.version(name) for name in LAKE_ASSET_NAMES} == delta_versions


def run_code_in(
    code: Path, env: dict[str, str], days: tuple[str, str] = JAN_FEB, succeeds: bool = True
) -> tuple[dict[str, Counter], list[str]]:
    """Run the graph importing trainflow from `code`: cache outcomes per asset and step
    failure messages, both read from the run's event log."""
    done, counts, failures = run_graph_from_code(code, env, days)
    assert (done.returncode == 0) == succeeds, done.stdout[-2000:] + done.stderr[-4000:]
    assert f"package {code / 'src' / 'trainflow' / '__init__.py'}" in done.stdout
    return counts, failures


def test_a_real_feature_code_edit_recomputes_features_and_downstream_only(
    warehouse_copy: Path, tmp_path: Path
) -> None:
    """No version string is touched: the code itself is edited, in a copy of the tree."""
    code = copy_of_the_code(tmp_path / "code")
    env = user_environment(tmp_path / "home", warehouse=warehouse_copy, instance="default")
    first, _ = run_code_in(code, env)
    assert {n: c["miss"] for n, c in first.items()} == {
        **{n: 59 for n in DAILY_ASSET_NAMES},
        **{n: 1 for n in WHOLE_TABLE_ASSET_NAMES},
    }
    features = code / "src" / "trainflow" / "features" / "flights.py"
    source = features.read_text()

    # Comments, a docstring and formatting: every output is reused.
    features.write_text(
        source.replace('"""Point-in-time flight features', '"""Flight features, point in time')
        .replace("    targets = sorted(set(days))\n", "    # sorted, unique\n    targets = sorted(\n        set(days)\n    )\n")
    )  # fmt: skip
    cosmetic, _ = run_code_in(code, env)
    assert {n: dict(c) for n, c in cosmetic.items()} == {
        **{n: {"hit": 59} for n in DAILY_ASSET_NAMES},
        **{n: {"hit": 1} for n in WHOLE_TABLE_ASSET_NAMES},
    }

    # A logic edit in a feature function: features and everything downstream recompute.
    features.write_text(
        source.replace('pl.col("day").dt.weekday().cast(pl.Int32)',
                       '(pl.col("day").dt.weekday() % 7).cast(pl.Int32)')
    )  # fmt: skip
    # Run over February only: its feature days take the new logic, January's keep the
    # old one, and the training dataset (January to February) refuses to mix them.
    february, failures = run_code_in(code, env, ("2013-02-01", "2013-02-28"), succeeds=False)
    assert february["flight_features"] == Counter(miss=28)
    assert len(failures) == 1
    assert (
        "training_dataset: 31 flight_features partition(s) read were computed by other code"
        in failures[0]
    )
    assert "Materialize flight_features for 2013-01-01...2013-01-31 first" in failures[0]

    # The whole range: January's feature days and everything downstream recompute.
    edited, _ = run_code_in(code, env)
    assert {n: c["miss"] for n, c in edited.items() if c["miss"]} == {
        "flight_features": 31,
        **{n: 1 for n in WHOLE_TABLE_ASSET_NAMES},
    }
    assert edited["raw_snapshot"]["hit"] == edited["validated_flights"]["hit"] == 59
    assert edited["flight_features"]["hit"] == 28  # February, computed by the edited code

    # The edit was a bad change: roll the code back. The lake shows what the bad version
    # left, and the next run recomputes exactly that (docs/deploy.md, rolling back).
    features.write_text(source)
    found = code_versions_in(code, env, "--check")
    assert found.returncode == 1, found.stdout + found.stderr
    # One line per table and code version: table, version, current/other, what it holds.
    rows = [line.split(maxsplit=3) for line in found.stdout.splitlines() if line[2:3].isalpha()]
    states = {(row[0], row[2]): row[3] for row in rows if len(row) == 4}
    assert ("validated_flights", "current") in states
    assert states["flight_features", "other"] == "59 days 2013-01-01..2013-02-28"
    assert ("flight_features", "current") not in states
    assert states["model", "other"] == "whole table"
    assert "--select 'flight_features*' --partition-range 2013-01-01...2013-02-28" in found.stdout
    restored, _ = run_code_in(code, env)
    assert {n: c["miss"] for n, c in restored.items() if c["miss"]} == {
        "flight_features": 59,
        **{n: 1 for n in WHOLE_TABLE_ASSET_NAMES},
    }
    clean = code_versions_in(code, env, "--check")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert " other " not in clean.stdout


def code_versions_in(code: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`trainflow code-versions` importing trainflow from `code`."""
    return subprocess.run(
        [sys.executable, "-c", "from trainflow.cli import main; main()", "code-versions", *args],
        env={**env, "PYTHONPATH": str(code / "src")},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_hyperparameter_change_recomputes_model_and_downstream_only(
    settings, tmp_path: Path
) -> None:
    run_graph(settings)
    changed = tmp_path / "changed.yaml"
    changed.write_text(QUICK_CONFIG.read_text().replace("num_leaves: 63", "num_leaves: 31"))
    result = run_graph(settings_for(settings.home, settings.warehouse_url, changed))
    assert recomputed(result) == {"model": 1, "evaluation_report": 1, "registry_entry": 1}


def test_new_and_restated_days_recompute_their_partitions_and_feature_windows(
    warehouse_copy: Path, tmp_path: Path
) -> None:
    january_config = tmp_path / "january.yaml"
    january_config.write_text(
        QUICK_CONFIG.read_text()
        .replace("end: 2013-01-31}", "end: 2013-01-20}")
        .replace("{start: 2013-02-01, end: 2013-02-14}", "{start: 2013-01-21, end: 2013-01-25}")
        .replace("{start: 2013-02-15, end: 2013-02-28}", "{start: 2013-01-26, end: 2013-01-31}")
    )
    with duckdb.connect(str(warehouse_copy)) as conn:
        conn.execute("delete from raw.flights where flight_date > date '2013-02-10'")
        conn.execute("delete from raw.weather where weather_date > date '2013-02-10'")
    settings = settings_for(tmp_path / "home", warehouse_copy, january_config)
    run_graph(settings, days=("2013-01-01", "2013-02-10"))

    landing.land(warehouse_copy, [dt.date(2013, 2, 11)])  # a new day arrives
    new_day = run_graph(settings, days=("2013-01-01", "2013-02-11"))
    assert recomputed(new_day) == {"raw_snapshot": 1, "validated_flights": 1, "flight_features": 1}

    with duckdb.connect(str(warehouse_copy)) as conn:  # a late correction of Feb 5
        conn.execute(
            "update raw.flights set arr_delay = arr_delay + 30 "
            "where flight_date = date '2013-02-05' and source_row % 10 = 0"
        )
    restated = run_graph(settings, days=("2013-01-01", "2013-02-11"))
    # Feature days Feb 5 .. Feb 11 have Feb 5 in their 28-day window (or are Feb 5).
    assert recomputed(restated) == {"raw_snapshot": 1, "validated_flights": 1, "flight_features": 7}


def test_failed_run_leaves_no_stale_hit(settings, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(QUICK_CONFIG.read_text().replace("num_leaves: 63", "num_leaves: -1"))
    failed = run_graph(
        settings_for(settings.home, settings.warehouse_url, broken), raise_on_error=False
    )
    assert not failed.success
    assert [e.step_key for e in failed.get_step_failure_events()] == ["model"]
    assert DeltaLake(settings.lake_uri).version("model") is None

    # A range with one day missing in the warehouse fails before writing anything.
    with duckdb.connect(str(settings.warehouse_url)) as conn:
        conn.execute("delete from raw.flights where flight_date = date '2013-03-01'")
    partial = run_graph(
        settings, days=("2013-02-20", "2013-03-01"), assets=[raw_snapshot], raise_on_error=False
    )
    assert not partial.success
    assert DeltaLake(settings.lake_uri).version("raw_snapshot") == 0  # the first run's only

    rerun = run_graph(settings)
    assert recomputed(rerun) == {"model": 1, "evaluation_report": 1, "registry_entry": 1}
    clean_home = settings_for(tmp_path / "clean", settings.warehouse_url)
    run_graph(clean_home)
    model_hash = DeltaLake(settings.lake_uri).read("model")["model_sha256"][0]
    assert model_hash == DeltaLake(clean_home.lake_uri).read("model")["model_sha256"][0]


def test_force_tag_recomputes_everything_to_the_same_versions(settings) -> None:
    first = run_graph(settings)
    forced = run_graph(settings, tags={FORCE_TAG: "true"})
    assert recomputed(forced) == {
        **{n: 59 for n in DAILY_ASSET_NAMES},
        **{n: 1 for n in WHOLE_TABLE_ASSET_NAMES},
    }
    assert data_versions(forced) == data_versions(first)
