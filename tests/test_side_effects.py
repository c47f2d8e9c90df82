"""Side effects after the commit, exactly once: a step killed after its side effects (an
MLflow run, a model version and its aliases, the quarantine) and before its Delta commit
is executed again, and finds and reuses what it made; readers never see the quarantine of
an attempt whose validated rows were not committed."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from pathlib import Path

import duckdb
import polars as pl
from mlflow import MlflowClient

from tests.helpers.environment import BIN, QUICK_CONFIG, user_environment
from tests.helpers.graph import JAN_FEB, run_graph_process
from trainflow.config import load_config
from trainflow.lake.delta_lake import DeltaLake
from trainflow.registry.operations import history
from trainflow.settings import PACKAGED_CONTRACTS_DIR, Settings

BAD_DAY = "2013-02-03"


def test_a_step_killed_before_its_commit_reuses_its_run_and_its_model_version(
    warehouse_copy: Path, tmp_path: Path
) -> None:
    env = user_environment(tmp_path / "home", warehouse=warehouse_copy, instance="default")
    settings = Settings.from_env(env)
    lake = DeltaLake(settings.lake_uri)
    client = MlflowClient(settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri)
    config = load_config(QUICK_CONFIG)

    # Killed after the MLflow run was logged, before the model was committed to the lake.
    killed = run_graph_process(env, *JAN_FEB, "--kill-before-commit", "model")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert lake.version("model") is None
    experiment = client.get_experiment_by_name(config.name)
    assert experiment is not None
    (logged,) = client.search_runs([experiment.experiment_id])

    # Re-executed, and killed after registering and moving the aliases, before the commit.
    killed = run_graph_process(env, *JAN_FEB, "--kill-before-commit", "registry_entry")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert lake.read("model")["mlflow_run_id"][0] == logged.info.run_id  # reused, not re-logged
    (version,) = client.search_model_versions(f"name = '{config.registered_model_name}'")
    assert lake.version("registry_entry") is None

    # Re-executed to the end: one MLflow run, one model version, its aliases, its row.
    done = run_graph_process(env, *JAN_FEB)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [r.info.run_id for r in client.search_runs([experiment.experiment_id])] == [
        logged.info.run_id
    ]
    (again,) = client.search_model_versions(f"name = '{config.registered_model_name}'")
    assert str(again.version) == str(version.version) == "1"
    assert again.run_id == logged.info.run_id
    registered = client.get_model_version(config.registered_model_name, "1")
    assert sorted(registered.aliases) == ["challenger", "champion"]
    # The promotion's audit event, recorded once across the three attempts.
    (event,) = history(client, config.registered_model_name)
    assert (event.from_version, event.to_version, event.action) == (None, "1", "promote")
    assert lake.read("registry_entry")["version"].to_list() == [1]
    assert len(client.get_metric_history(logged.info.run_id, "test_roc_auc")) == 1


def quarantined(env: dict[str, str], day: str) -> int:
    """Rows `trainflow quarantine list` reports for a day (what an operator sees)."""
    listed = subprocess.run(
        [str(BIN / "trainflow"), "quarantine", "list"], env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    return sum(int(line.split()[1]) for line in listed.stdout.splitlines() if line.startswith(day))


def test_quarantine_and_validated_rows_are_never_seen_apart(
    warehouse_copy: Path, tmp_path: Path
) -> None:
    """The shipped contract quarantines a new carrier's rows; its next version accepts it,
    but the revalidation is killed after writing the (now empty) quarantine and before
    committing the validated rows. Readers still see the old quarantine beside the old
    validated rows."""
    with duckdb.connect(str(warehouse_copy)) as conn:
        conn.execute(
            f"update raw.flights set carrier = 'ZZ' where flight_date = date '{BAD_DAY}' "
            "and source_row % 50 = 0"
        )
    env = user_environment(tmp_path / "home", warehouse=warehouse_copy, instance="default")
    lake = DeltaLake(Settings.from_env(env).lake_uri)
    feb = ("2013-02-01", "2013-02-05", "raw_snapshot", "validated_flights")
    assert run_graph_process(env, *feb).returncode == 0
    rows_in = lake.read("raw_snapshot").filter(pl.col("day").cast(pl.String) == BAD_DAY).height
    held = quarantined(env, BAD_DAY)
    validated = lake.read("validated_flights").filter(pl.col("day").cast(pl.String) == BAD_DAY)
    assert held > 0 and validated.height + held == rows_in

    contracts = tmp_path / "contracts"
    shutil.copytree(PACKAGED_CONTRACTS_DIR, contracts, ignore=shutil.ignore_patterns("*.py*"))
    text = (contracts / "flights.yaml").read_text()
    bumped = re.sub(r"^version: (\d+)$", lambda m: f"version: {int(m[1]) + 1}", text, flags=re.M)
    (contracts / "flights.yaml").write_text(bumped.replace("VX, WN, YV]", "VX, WN, YV, ZZ]"))
    env["TRAINFLOW_CONTRACTS_DIR"] = str(contracts)
    killed = run_graph_process(env, *feb, "--kill-before-commit", "validated_flights")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    # The quarantine table was rewritten, the validated rows were not: the pair still adds up.
    assert quarantined(env, BAD_DAY) == held
    still = lake.read("validated_flights").filter(pl.col("day").cast(pl.String) == BAD_DAY)
    assert still.height + held == rows_in

    assert run_graph_process(env, *feb).returncode == 0
    assert quarantined(env, BAD_DAY) == 0
    now = lake.read("validated_flights").filter(pl.col("day").cast(pl.String) == BAD_DAY)
    assert now.height == rows_in == now["flight_id"].n_unique()
