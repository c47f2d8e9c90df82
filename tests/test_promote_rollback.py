"""`trainflow promote`, `rollback`, `history` and `status` against a real MLflow registry:
the local profile's SQLite store, and `mlflow server` (PostgreSQL backend, S3 artifacts on
moto) as tests/test_mlflow_server.py starts it. Nothing is mocked.

Versions are small real LightGBM models, logged and registered by trainflow's own code
path (`registry.runs.log_model_run`, `registry.operations.register_candidate`, decisions
from `promotion.decide_promotion`): seconds each instead of a pipeline run. The commands
run as the installed `trainflow` executable, in their own process, as an operator runs them.
"""

from __future__ import annotations

import getpass
import hashlib
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from tests.conftest import BIN, QUICK_CONFIG, REPO_ROOT
from tests.helpers.environment import user_environment
from tests.test_mlflow_server import (  # noqa: F401  (session fixtures, used by name)
    artifact_bucket,
    mlflow_database,
    mlflow_server,
)
from trainflow.config import GateConfig
from trainflow.definitions import build_resources
from trainflow.promotion import ChampionResult, decide_promotion
from trainflow.registry import CHAMPION
from trainflow.registry.operations import history, register_candidate
from trainflow.registry.runs import log_model_run
from trainflow.registry.versions import current_champion
from trainflow.settings import Settings

GATE = GateConfig(min_test_roc_auc=0.6, min_uplift_over_baseline=0.02)
ROLLBACK_LIMIT_SECONDS = 30
FEATURES = np.random.default_rng(7).normal(size=(400, 4))
LABELS = (FEATURES[:, 0] + 0.5 * FEATURES[:, 1] > 0).astype(int)


@dataclass
class Registry:
    env: dict[str, str]
    settings: Settings
    client: MlflowClient
    name: str


@pytest.fixture(params=["local", "server"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Registry:
    """An empty registered model of its own (a fresh name), on the local SQLite store of
    a fresh TRAINFLOW_HOME or on the shared tracking server."""
    name = f"trainflow-registry-test-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "config.yaml"
    text = QUICK_CONFIG.read_text()
    assert "registered_model_name: trainflow-flight-delay-quick" in text
    config.write_text(
        text.replace(
            "registered_model_name: trainflow-flight-delay-quick", f"registered_model_name: {name}"
        )
    )
    server = request.getfixturevalue("mlflow_server") if request.param == "server" else None
    env = user_environment(tmp_path / "home", config, mlflow_tracking_uri=server, instance=None)
    settings = Settings.from_env(env)
    client = MlflowClient(settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri)
    # What `models:/` URIs resolve against in this process (download, pyfunc.load_model):
    # the registry defaults to the tracking URI. Never `mlflow.set_registry_uri`, which
    # would outlive the test (in the process and in MLFLOW_REGISTRY_URI) and point every
    # later client without a registry URI of its own at this store.
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    return Registry(env, settings, client, name)


def booster(rounds: int) -> lgb.Booster:
    data = lgb.Dataset(FEATURES, LABELS)
    params = {"objective": "binary", "num_leaves": 4, "seed": 1, "deterministic": True,
              "force_row_wise": True, "num_threads": 1, "verbose": -1}  # fmt: skip
    return lgb.train(params, data, num_boost_round=rounds)


@dataclass(frozen=True)
class Logged:
    run_id: str
    uri: str
    sha256: str
    key: str


def log(registry: Registry, rounds: int) -> Logged:
    """A real LightGBM model logged as trainflow's `model` step logs one."""
    tracking = build_resources(registry.settings)["mlflow_tracking"]
    tracking.client()  # type: ignore[attr-defined]  # sets the fluent API's tracking URI
    trained = booster(rounds)
    text = trained.model_to_string()
    sha = hashlib.sha256(text.encode()).hexdigest()
    key = f"key-{rounds}"
    run_id, uri = log_model_run(
        experiment_id=tracking.experiment_id(registry.name),  # type: ignore[attr-defined]
        run_name=f"test-{rounds}", cache_key=key, tags={"model_sha256": sha},
        params={"rounds": rounds}, metrics={}, documents={}, manifest_text="{}",
        booster=trained, model_text=text,
    )  # fmt: skip
    return Logged(run_id, uri, sha, key)


def register(registry: Registry, logged: Logged, auc: float) -> str:
    """Register a logged model with the gate's decision for a test ROC AUC of `auc`
    (baseline 0.5; the champion, if any, at 0.65 on the same rows): the version number."""
    client = registry.client
    champion = current_champion(client, registry.name)
    decision = decide_promotion(
        candidate_auc=auc,
        baseline_auc=0.5,
        champion=ChampionResult(champion, candidate_auc=auc, champion_auc=0.65),
        gate=GATE,
    )
    done = register_candidate(
        client, registry.name, lock_dir=registry.settings.registry_lock_dir, source=logged.uri,
        run_id=logged.run_id, cache_key=logged.key, tags={"model_sha256": logged.sha256},
        decision=decision, compared_champion=champion, via="test",
    )  # fmt: skip
    return str(done.version.version)


def trainflow(registry: Registry, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "trainflow"), *args],
        env=registry.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def refused(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr


# Written by MLflow into every download from the registry (model name and version): what
# the URI resolved to, not part of the model.
REGISTRY_META = "registered_model_meta"


def artifact_hashes(uri: str) -> dict[str, str]:
    """relative path -> sha256 of every file of the model the URI resolves to."""
    folder = Path(mlflow.artifacts.download_artifacts(uri, tracking_uri=mlflow.get_tracking_uri()))
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != REGISTRY_META
    }


def test_promote_rollback_history_and_status(registry: Registry) -> None:
    name, client = registry.name, registry.client
    logged = log(registry, rounds=5)
    first = register(registry, logged, auc=0.70)  # no champion yet: champion
    assert (first, current_champion(client, name)) == ("1", "1")

    # Idempotent registration: the same run registered again is the same version.
    assert register(registry, logged, auc=0.70) == first
    assert len(client.search_model_versions(f"name = '{name}'")) == 1
    assert len(history(client, name)) == 1  # and no second event

    second = register(registry, log(registry, rounds=30), auc=0.72)  # beats it: champion
    rejected = register(registry, log(registry, rounds=60), auc=0.55)  # under the gate
    assert (second, rejected) == ("2", "3")
    assert current_champion(client, name) == second
    assert client.get_model_version(name, rejected).tags["rejected"] == "true"
    old_files = artifact_hashes(f"models:/{name}/{first}")
    assert old_files != artifact_hashes(f"models:/{name}/{second}")

    # A rejected version needs --force and --reason; the refusal says so.
    message = refused(trainflow(registry, "promote", rejected))
    assert f"{name} v3 was rejected by the gate" in message and "--force" in message
    assert "--force needs --reason" in refused(trainflow(registry, "promote", rejected, "--force"))
    assert current_champion(client, name) == second
    # The champion again: a no-op, no event. An unknown version: named.
    assert "v2 is already champion: nothing to do" in ok(trainflow(registry, "promote", "v2"))
    assert len(history(client, name)) == 2
    assert f"{name} has no version 99" in refused(trainflow(registry, "promote", "99"))

    # Roll back to the previous champion: fast, and serving loads the old bytes.
    started = time.monotonic()
    out = ok(trainflow(registry, "rollback", "--reason", "v2 misbehaves in production"))
    took = time.monotonic() - started
    print(f"rollback ({registry.settings.mlflow_tracking_uri.split(':')[0]}): {took:.1f}s")
    assert took < ROLLBACK_LIMIT_SECONDS
    assert "rollback v2 -> v1" in out
    assert current_champion(client, name) == first
    assert artifact_hashes(f"models:/{name}@{CHAMPION}") == old_files
    assert "model.lgb" in old_files  # the LightGBM flavour's model file is among them
    served = mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION}")
    assert np.array_equal(served.predict(FEATURES), booster(5).predict(FEATURES))

    # v1 was the first champion: nothing before it.
    message = refused(trainflow(registry, "rollback"))
    assert f"{name} has no previous champion to roll back to (none before v1 " in message

    forced = ok(trainflow(registry, "promote", "3", "--force", "--reason", "hotfix for a carrier"))
    assert "promote (forced) v1 -> v3" in forced
    assert current_champion(client, name) == rejected

    user = ok(trainflow(registry, "history")).splitlines()
    assert user[0] == f"{name}: 4 champion move(s), newest first"
    lines = user[1:]
    assert [line.split()[2] for line in lines] == ["promote", "rollback", "promote", "promote"]
    who = f"by {getpass.getuser()}"
    assert "v1 -> v3" in lines[0] and who in lines[0] and "hotfix for a carrier" in lines[0]
    assert "v2 -> v1" in lines[1] and "v2 misbehaves in production" in lines[1]
    assert "no champion -> v1" in lines[3] and "via test" in lines[3]
    assert all(line.split()[1].endswith("Z") for line in lines)  # UTC

    status = ok(trainflow(registry, "status"))
    assert f"{name}@champion   v3 " in status
    assert "last champion move   #4 " in status and "promote (forced) v1 -> v3" in status

    # Rolling back from the forced champion goes to v1, the champion before it.
    assert "rollback v3 -> v1" in ok(trainflow(registry, "rollback", "--reason", "undo hotfix"))
    assert current_champion(client, name) == first


def test_rollback_without_a_champion_is_refused(registry: Registry) -> None:
    message = refused(trainflow(registry, "rollback"))
    assert f"{registry.name} has no champion: nothing to roll back" in message
    assert "no promotion or rollback recorded" in ok(trainflow(registry, "history"))
