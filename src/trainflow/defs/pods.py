"""Where each asset step runs on Kubernetes: the size of its pod, and the k8s executor.

The `prod` profile runs every asset step as its own Kubernetes Job (dagster-k8s's
`k8s_job_executor`). What a step may use is read from one table, `STEP_POD_SIZE`, and
applied to the asset as a `dagster-k8s/config` op tag (`step_tags`), which dagster-k8s
merges into that step's Job. The `local` profile ignores these tags.

Pod sizes are not part of any code version (`code_version.EXCLUDED_MODULES`): where a step
runs does not change what it computes, so resizing a pod never invalidates the cache.

The names below (ConfigMap, Secret, ServiceAccount, mount paths, user id) are the contract
with the Helm chart in `helm/trainflow/` and the image's Dockerfile (docs/deploy.md).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from trainflow.settings import Settings

# Rendered by helm/trainflow: the prod profile's non-secret environment.
CONFIG_MAP = "trainflow-config"
# Created out of band (kubectl, an external-secrets operator): PGPASSWORD and friends.
SECRET = "trainflow-secrets"
# Carries the object-storage role (e.g. EKS's eks.amazonaws.com/role-arn annotation).
SERVICE_ACCOUNT = "trainflow"
# The image's non-root user (Dockerfile).
USER_ID = 10001
# The root file system is read-only: state lives here (an emptyDir per pod; everything
# that outlives the step is in object storage, the warehouse or the Dagster instance).
TRAINFLOW_HOME = "/var/lib/trainflow"
TMP = "/tmp"
# Dagster's Helm chart sets DAGSTER_HOME here; a step reaches the instance through the
# serialized instance reference, and anything Dagster writes locally lands in an emptyDir.
DAGSTER_HOME = "/opt/dagster/dagster_home"

SIZE_TAG = "trainflow/pod-size"
STAGE_TAG = "trainflow/stage"


@dataclass(frozen=True)
class PodSize:
    """Requests are what the scheduler reserves; limits are where the kernel stops a step
    (memory: OOM-killed, the step fails and is not retried as transient)."""

    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, str], ...] = ()


# A dedicated, tainted node pool for training keeps large pods off the nodes that serve
# the webserver and daemon; only `large` steps tolerate the taint.
TRAINING_POOL = {"trainflow.io/node-pool": "training"}
TRAINING_TOLERATION = {
    "key": "trainflow.io/training",
    "operator": "Exists",
    "effect": "NoSchedule",
}

# Memory requests cover the peak of a whole-year run of the step with at least 20 % to
# spare, limits are twice the requests. Peaks measured by `make bench-pods` (benchmarks/step_memory.py:
# each step alone over all of 2013, one process, dbt's subprocess included), 2-core x86_64.
POD_SIZES: dict[str, PodSize] = {
    # dbt (the database does the work), the reference checks, the report, the registry.
    "small": PodSize("250m", "1Gi", "1", "2Gi"),
    # A year of flights in memory: snapshots, validation, features, the training dataset.
    "medium": PodSize("1", "2560Mi", "2", "5Gi"),
    # LightGBM: CPU-bound with `model.num_threads` threads (2 in configs/, fixed for
    # determinism), so exactly two cores; memory modest. On the training pool.
    "large": PodSize(
        "2", "3Gi", "2", "6Gi", node_selector=TRAINING_POOL, tolerations=(TRAINING_TOLERATION,)
    ),
}

# Every step (an asset, or the reference tables' checks) and its pod size, with its
# measured whole-year peak: the one table to edit (a test fails on a step missing here, or
# on a name here that is not a step).
STEP_POD_SIZE: dict[str, str] = {
    "warehouse_models": "small",  # 587 MiB with the reference checks (dbt build)
    "reference_table_contracts": "small",  # runs with the dbt models it checks
    "raw_snapshot": "medium",  # 1,676 MiB
    "validated_flights": "medium",  # 1,665 MiB
    "flight_features": "medium",  # 1,741 MiB
    "training_dataset": "medium",  # 1,126 MiB
    "model": "large",  # 854 MiB, all cores
    "evaluation_report": "small",  # 734 MiB
    "registry_entry": "small",  # 584 MiB
    "flight_delay_predictions": "small",  # one day a run: features, one model
    "champion_live_performance": "small",  # a week of predictions and outcomes
    # Freshness against landed data: a warehouse query, the lake's day keys, the registry.
    "flight_features_fresh_against_landed_days": "small",
    "registry_entry_champion_fresh_against_landed_days": "small",
}

# How long each asset step may run before it is failed (seconds), sized from measured step
# times (docs/benchmarks.md, `make bench --scales 10,100`: the slowest, flight_features, took
# 20 s over the year at scale 10 and 1,217 s at scale 100): about 3x the scale-100 time, at
# least 10 minutes. Enforced inside the step (`time_limited`) everywhere, and on Kubernetes
# also as the step Job's deadline, which fails a pod that never starts.
# TRAINFLOW_STEP_TIME_LIMIT_SECONDS replaces every entry (a test's short limit).
STEP_TIME_LIMIT_SECONDS: dict[str, int] = {
    "warehouse_models": 900,  # dbt build: 6 s at scale 10
    "reference_table_contracts": 900,  # runs with the dbt models it checks
    "raw_snapshot": 1800,  # 21 s at scale 10, about 230 s at scale 100
    "validated_flights": 1800,  # 18 s at scale 10
    "flight_features": 3600,  # 20 s at scale 10, 1,217 s at scale 100
    "training_dataset": 1800,
    "model": 3600,  # 33 s at scale 10 (LightGBM); the MLP family is slower
    "evaluation_report": 1800,  # 12 s at scale 10
    "registry_entry": 600,  # MLflow calls only
    "flight_delay_predictions": 900,  # one day to a year of features, one model
    "champion_live_performance": 900,
    # Freshness against landed data: a warehouse query, the lake's day keys, the registry.
    "flight_features_fresh_against_landed_days": 300,
    "registry_entry_champion_fresh_against_landed_days": 300,
}
# A step pod's Job may also wait this long to be scheduled and pulled before it counts as
# never started (the Job deadline is the step's limit plus this).
POD_START_GRACE_SECONDS = 300


def step_time_limit(step: str) -> int:
    return Settings.from_env().step_time_limit_seconds or STEP_TIME_LIMIT_SECONDS[step]


def time_limited(step: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` failing (a non-retryable `dagster.Failure`) once it has run
    `step_time_limit(step)` seconds: retrying a hung step would hang again.

    A SIGALRM in the step's process: Dagster runs a step in the main thread of its process
    (a step process, a run worker with `in_process`, a step pod), and a handler that raises
    interrupts sleeps and socket waits (PEP 475), which is how a step hangs on a service that
    accepts and never answers. Elsewhere (a thread) the step runs unlimited and the run's
    `max_runtime_seconds` (dagster.yaml) is the bound. Why not a library: Dagster has no
    step timeout, and a thread-based one could not stop the step's own thread.
    """

    @contextlib.contextmanager
    def alarm() -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        limit = step_time_limit(step)

        def expire(signum: int, frame: Any) -> None:
            raise dg.Failure(
                description=f"{step} ran past its time limit of {limit} s and was stopped "
                "(docs/runbook.md, 'Alert: a step or a run timed out')",
                allow_retries=False,
            )

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, limit)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    if inspect.isgeneratorfunction(fn):  # a step that yields its outputs (and checks)

        @functools.wraps(fn)
        def limited_generator(*args: Any, **kwargs: Any) -> Any:
            with alarm():
                yield from fn(*args, **kwargs)

        return limited_generator

    @functools.wraps(fn)
    def limited(*args: Any, **kwargs: Any) -> Any:
        with alarm():
            return fn(*args, **kwargs)

    return limited


# Per run: at most this many step pods at once, and one `large` pod.
MAX_PODS_PER_RUN = 4
MAX_LARGE_PODS_PER_RUN = 1


def k8s_config(size: PodSize) -> dict[str, Any]:
    """The `dagster-k8s/config` tag value of one pod size (dagster-k8s's
    UserDefinedDagsterK8sConfig, in the Kubernetes client's snake_case)."""
    pod_spec: dict[str, Any] = {}
    if size.node_selector:
        pod_spec["node_selector"] = dict(size.node_selector)
    if size.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in size.tolerations]
    return {
        "container_config": {
            "resources": {
                "requests": {"cpu": size.cpu_request, "memory": size.memory_request},
                "limits": {"cpu": size.cpu_limit, "memory": size.memory_limit},
            }
        },
        "pod_spec_config": pod_spec,
    }


def step_tags(asset: str, stage: str) -> dict[str, Any]:
    """The op tags of an asset step: its stage, its pod size and that size's k8s config,
    with the step Job's deadline (its time limit plus the pod start grace)."""
    size = STEP_POD_SIZE[asset]
    config = k8s_config(POD_SIZES[size])
    config["job_spec_config"] = {
        "active_deadline_seconds": STEP_TIME_LIMIT_SECONDS[asset] + POD_START_GRACE_SECONDS
    }
    return {STAGE_TAG: stage, SIZE_TAG: size, "dagster-k8s/config": config}


def k8s_executor_config() -> dict[str, Any]:
    """Config of dagster-k8s's `k8s_job_executor` for every step pod of the prod profile.

    The image, namespace and Dagster instance come from the deployment (the user-code
    deployment's image, the K8sRunLauncher's settings in helm/dagster-values.yaml); what a
    trainflow step needs wherever it runs is here: its environment, identity, writable
    folders and a locked-down security context.
    """
    return {
        "env_config_maps": [CONFIG_MAP],
        "env_secrets": [SECRET],
        "service_account_name": SERVICE_ACCOUNT,
        "volumes": [
            {"name": "tmp", "empty_dir": {}},
            {"name": "trainflow-home", "empty_dir": {}},
            {"name": "dagster-home", "empty_dir": {}},
        ],
        "volume_mounts": [
            {"name": "tmp", "mount_path": TMP},
            {"name": "trainflow-home", "mount_path": TRAINFLOW_HOME},
            {"name": "dagster-home", "mount_path": DAGSTER_HOME},
        ],
        "security_context": {
            "run_as_non_root": True,
            "run_as_user": USER_ID,
            "run_as_group": USER_ID,
            "allow_privilege_escalation": False,
            "read_only_root_filesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccomp_profile": {"type": "RuntimeDefault"},
        },
        "step_k8s_config": {
            "pod_spec_config": {"security_context": {"fs_group": USER_ID}},
            # Finished step Jobs (and their pods' logs) are removed after a day; the step's
            # events and metadata live in the Dagster instance.
            "job_spec_config": {"ttl_seconds_after_finished": 86400},
        },
        "labels": {"app.kubernetes.io/part-of": "trainflow"},
        "max_concurrent": MAX_PODS_PER_RUN,
        "tag_concurrency_limits": [
            {"key": SIZE_TAG, "value": "large", "limit": MAX_LARGE_PODS_PER_RUN}
        ],
    }
