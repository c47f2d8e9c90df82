"""SLIs and per-run metrics from real runs recorded in a Dagster instance: a run that
succeeds, one that fails, and the run that recovers it; the run_metrics sensor writes each
finished run once as Prometheus text; `trainflow status` summarises the SLIs."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from tests.helpers.environment import BIN, REPO_ROOT, user_environment
from tests.helpers.graph import ingest_resources, partition_range_tags
from trainflow.defs.ingest import raw_snapshot, validated_flights
from trainflow.defs.observability import recent_runs, run_facts, run_metrics
from trainflow.lake.delta_lake import DeltaLake
from trainflow.slis import RunFacts, prometheus_text, summarise
from trainflow.warehouse import landing

# One sample line of the text exposition format: name{labels} value.
SAMPLE = re.compile(r'^([a-z_]+)\{((?:[a-z_]+="(?:[^"\\]|\\.)*",?)*)\} (-?[0-9.e+-]+|NaN)$')


def materialize(
    instance: dg.DagsterInstance, warehouse: Path, lake: Path, assets: list, days: tuple[str, str]
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets,
        instance=instance,
        resources=ingest_resources(warehouse, lake),
        tags=partition_range_tags(*days),
        raise_on_error=False,
    )


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    samples = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) [a-z_]+ .+$", line), line
            continue
        found = SAMPLE.match(line)
        assert found, line
        labels = frozenset(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', found.group(2)))
        samples[(found.group(1), labels)] = float(found.group(3))
    return samples


@pytest.fixture(scope="module")
def three_runs(built_warehouse: Path, tmp_path_factory: pytest.TempPathFactory):
    """Run 1 snapshots and validates three days; run 2 snapshots a day whose rows were
    lost upstream (fails); run 3 snapshots it again once re-landed (recovers)."""
    home = tmp_path_factory.mktemp("slis")
    warehouse = home / "warehouse.duckdb"
    warehouse.write_bytes(built_warehouse.read_bytes())
    lake = home / "lake"
    (home / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(home / "dagster")) as instance:
        first = materialize(
            instance,
            warehouse,
            lake,
            [raw_snapshot, validated_flights],
            ("2013-02-01", "2013-02-03"),
        )
        assert first.success
        with duckdb.connect(str(warehouse)) as conn:
            conn.execute("delete from raw.flights where flight_date = date '2013-02-04'")
        failed = materialize(
            instance, warehouse, lake, [raw_snapshot], ("2013-02-04", "2013-02-04")
        )
        assert not failed.success
        landing.land(warehouse, [dt.date(2013, 2, 4)])
        fixed = materialize(instance, warehouse, lake, [raw_snapshot], ("2013-02-04", "2013-02-04"))
        assert fixed.success
        yield instance, home, (first.run_id, failed.run_id, fixed.run_id)


def test_run_facts_and_their_prometheus_text_are_what_the_run_did(three_runs) -> None:
    instance, home, (first, _, _) = three_runs
    facts = run_facts(instance, first)
    lake = DeltaLake(str(home / "lake"))
    validated = lake.read("validated_flights").height
    snapshot = lake.read("raw_snapshot").filter(pl.col("day") <= dt.date(2013, 2, 3)).height
    assert facts.succeeded and facts.partitions == "2013-02-01...2013-02-03"
    assert facts.cache == {"raw_snapshot": (0, 3), "validated_flights": (0, 3)}
    assert facts.rows == {"raw_snapshot": snapshot, "validated_flights": validated}
    assert (facts.rows_in, facts.rows_validated) == (snapshot, validated)
    assert set(facts.step_seconds) == {"raw_snapshot", "validated_flights"}
    assert 0 < sum(facts.step_seconds.values()) <= facts.seconds
    samples = parse(prometheus_text(facts))
    run = {("job", facts.job), ("run_id", first)}

    def value(name: str, **labels: str) -> float:
        return samples[(name, frozenset(run | set(labels.items())))]

    assert value("trainflow_run_success") == 1
    assert value("trainflow_cache_partitions", asset="raw_snapshot", result="miss") == 3
    assert value("trainflow_cache_partitions", asset="raw_snapshot", result="hit") == 0
    assert value("trainflow_asset_rows", asset="validated_flights") == validated
    assert value("trainflow_validation_rows", result="validated") == validated
    assert value("trainflow_validation_rows", result="quarantined") == snapshot - validated
    assert value("trainflow_step_duration_seconds", step="raw_snapshot") > 0


def test_the_slis_count_the_failure_and_its_recovery(three_runs) -> None:
    instance, _, (first, failed, fixed) = three_runs
    facts = {f.run_id: f for f in recent_runs(instance, 10)}
    assert set(facts) == {first, failed, fixed}
    slis = summarise(list(facts.values()))
    assert (slis.runs, slis.succeeded) == (3, 2)
    assert slis.unrecovered_failures == 0
    assert slis.recovered_seconds == [facts[fixed].ended - facts[failed].ended]
    assert slis.latency_p95_seconds == max(facts[first].seconds, facts[fixed].seconds)
    assert slis.validation_pass_rate == facts[first].rows_validated / facts[first].rows_in


def test_the_sensor_writes_each_finished_run_once(three_runs, tmp_path, monkeypatch) -> None:
    instance, _, run_ids = three_runs
    monkeypatch.setenv("TRAINFLOW_HOME", str(tmp_path))
    context = dg.build_sensor_context(instance=instance, cursor=None)
    data = run_metrics.evaluate_tick(context)
    written = sorted(p.stem for p in (tmp_path / "metrics" / "runs").glob("*.prom"))
    assert written == sorted(run_ids)
    job = run_facts(instance, run_ids[2]).job
    assert (tmp_path / "metrics" / f"{job}.prom").read_text() == (
        tmp_path / "metrics" / "runs" / f"{run_ids[2]}.prom"
    ).read_text()  # the job's newest run
    for path in (tmp_path / "metrics" / "runs").glob("*.prom"):
        path.unlink()
    again = run_metrics.evaluate_tick(
        dg.build_sensor_context(instance=instance, cursor=data.cursor)
    )
    assert again.skip_message == "no run ended"
    assert not list((tmp_path / "metrics" / "runs").glob("*.prom"))


def test_status_prints_the_slis(three_runs) -> None:
    _, home, _ = three_runs
    # The instance the three runs were recorded in, as it is (Dagster's default settings).
    env = user_environment(home, warehouse=home / "warehouse.duckdb", instance="default")
    done = subprocess.run(
        [str(BIN / "trainflow"), "status", "--runs", "5"],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SLIs         over the last 3 finished run(s)" in done.stdout
    assert "success rate       66.7% (2 of 3 runs)" in done.stdout
    assert "time to recover    median " in done.stdout
    assert "over 1 recovered failure(s)" in done.stdout
    # An instance folder that does not exist yet is said, not a crash.
    missing = home / "no-such-dagster-home"
    done = subprocess.run(
        [str(BIN / "trainflow"), "status"],
        env={**env, "DAGSTER_HOME": str(missing)}, cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SLIs         - (no Dagster instance at DAGSTER_HOME={missing})" in done.stdout


def test_summarise_without_runs_says_nothing_is_known() -> None:
    slis = summarise([])
    assert slis.success_rate is None and slis.latency_p50_seconds is None
    assert "success rate       - (0 of 0 runs)" in slis.lines()[0]
    one = RunFacts(run_id="r", job="j", succeeded=False, started=0.0, ended=5.0)
    assert summarise([one]).unrecovered_failures == 1
