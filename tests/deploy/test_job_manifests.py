"""The Kubernetes Job of every asset step, as dagster-k8s builds it for the prod profile.

No cluster runs here, and nothing in this file claims a pod ran. The Jobs are built by
dagster-k8s's own step handler (`K8sStepHandler.launch_step`) from the real definitions
with prod settings and the executor config those definitions carry; the only stand-in is
the object that would send each Job to the Kubernetes API (`JobRecorder` keeps the body
instead). Each Job is then checked against the Kubernetes OpenAPI schemas
(kubernetes-validate) and against the pod-size table in `trainflow/defs/pods.py`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import kubernetes_validate
import pytest
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.definitions.reconstruct import ReconstructableJob, ReconstructableRepository
from dagster._core.execution.api import create_execution_plan
from dagster._core.execution.context.system import PlanData, PlanOrchestrationContext
from dagster._core.execution.context_creation_job import create_context_free_log_manager
from dagster._core.execution.retries import RetryMode
from dagster._core.executor.init import InitExecutorContext
from dagster._core.executor.step_delegating.step_handler.base import StepHandlerContext
from dagster._core.system_config.objects import ResolvedRunConfig
from dagster._core.test_utils import create_run_for_test, instance_for_test
from dagster._grpc.types import ExecuteStepArgs
from dagster_k8s import k8s_job_executor

from tests.deploy.helpers import KUBERNETES_VERSIONS, validate_kubernetes
from trainflow.definitions import build_definitions, local_executor
from trainflow.defs import pods
from trainflow.settings import Settings

NAMESPACE = "trainflow"
# Pinned by digest, as docs/deploy.md asks of every deployment.
IMAGE = "registry.example.com/trainflow@sha256:" + "0" * 64
PROD_ENV = {
    "TRAINFLOW_PROFILE": "prod",
    "TRAINFLOW_LAKE_URI": "s3://trainflow-lake/prod",
    "TRAINFLOW_WAREHOUSE_URL": "postgresql://trainflow@warehouse.internal:5432/trainflow",
    "MLFLOW_TRACKING_URI": "http://mlflow.internal:5000",
    "TRAINFLOW_HOME": pods.TRAINFLOW_HOME,
}
# The K8sRunLauncher as Dagster's Helm chart configures it (helm/dagster-values.yaml):
# its settings reach step Jobs too (the instance ConfigMap, the PostgreSQL password Secret).
RUN_LAUNCHER = {
    "instance_config_map": "dagster-instance",
    "postgres_password_secret": "dagster-postgresql-secret",
    "dagster_home": pods.DAGSTER_HOME,
    "service_account_name": "dagster",
    "job_namespace": NAMESPACE,
    "load_incluster_config": False,
}
# Names of environment variables that hold a credential: never a literal value.
CREDENTIAL = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|CREDENTIAL", re.IGNORECASE)


class JobRecorder:
    """Stands where the Kubernetes API server would: keeps each Job body dagster-k8s sends.

    It answers only `create_namespaced_job`, the single call `launch_step` makes; anything
    else raises, so a change in what dagster-k8s asks of the API shows up here.
    """

    def __init__(self) -> None:
        self.jobs: list[tuple[str, Any]] = []

    def create_namespaced_job(self, body: Any, namespace: str, **_: Any) -> None:
        self.jobs.append((namespace, body))


def write_kubeconfig(folder: Path) -> Path:
    """A kubeconfig that dagster-k8s can load and nothing ever connects to (port 9)."""
    path = folder / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "none", "user": {}}],
                "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
                "current-context": "none",
            }
        )
    )
    return path


def build_step_jobs(tmp_path: Path) -> dict[str, dict[str, Any]]:
    """Every step key of the asset graph -> the Job manifest (a dict as `kubectl` reads it)."""
    defs = build_definitions(Settings.from_env(PROD_ENV))
    job_def = defs.resolve_implicit_global_asset_job_def()
    kubeconfig = str(write_kubeconfig(tmp_path))
    # What a run of these definitions resolves its executor config to, plus where to find a
    # cluster (in a pod, dagster-k8s loads the in-cluster config instead).
    executor_config = {
        **ResolvedRunConfig.build(job_def, {}).execution.execution_engine_config,
        "load_incluster_config": False,
        "kubeconfig_file": kubeconfig,
    }
    repository = ReconstructableRepository.for_module(
        "trainflow.definitions", "defs", container_image=IMAGE
    )
    origin = ReconstructableJob(repository, job_def.name).get_python_origin()
    with instance_for_test(
        overrides={
            "run_launcher": {
                "module": "dagster_k8s",
                "class": "K8sRunLauncher",
                "config": {**RUN_LAUNCHER, "kubeconfig_file": kubeconfig},
            }
        }
    ) as instance:
        executor = k8s_job_executor.executor_creation_fn(
            InitExecutorContext(
                job=InMemoryJob(job_def),
                executor_def=k8s_job_executor,
                executor_config=executor_config,
                instance=instance,
            )
        )
        handler = executor._step_handler  # type: ignore[attr-defined]
        recorder = JobRecorder()
        handler._api_client.batch_api = recorder
        run = create_run_for_test(instance, job_name=job_def.name, job_code_origin=origin)
        plan = create_execution_plan(job_def)
        plan_context = PlanOrchestrationContext(
            plan_data=PlanData(
                job=InMemoryJob(job_def),
                dagster_run=run,
                instance=instance,
                execution_plan=plan,
                raise_on_error=True,
                retry_mode=RetryMode.DISABLED,
            ),
            log_manager=create_context_free_log_manager(instance, run),
            executor=executor,
            output_capture=None,
        )
        for step in plan.steps:
            context = StepHandlerContext(
                instance=instance,
                plan_context=plan_context,
                steps=plan.steps,
                # As the executor builds them: the step reaches the instance by reference.
                execute_step_args=ExecuteStepArgs(
                    origin, run.run_id, [step.key], instance_ref=instance.get_ref()
                ),
                dagster_run=run,
            )
            list(handler.launch_step(context))
    serialise = kubernetes.client.ApiClient().sanitize_for_serialization
    jobs = {}
    for (namespace, body), step in zip(recorder.jobs, plan.steps, strict=True):
        manifest = serialise(body)
        assert namespace == NAMESPACE
        jobs[step.key] = manifest
    return jobs


@pytest.fixture(scope="module")
def step_jobs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return build_step_jobs(tmp_path_factory.mktemp("k8s"))


def containers(job: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from job["spec"]["template"]["spec"]["containers"]


def test_every_step_has_a_row_in_the_pod_table(step_jobs: dict[str, dict[str, Any]]) -> None:
    assert set(step_jobs) == set(pods.STEP_POD_SIZE), (
        "steps without a pod size (add them to STEP_POD_SIZE in trainflow/defs/pods.py): "
        f"{sorted(set(step_jobs) - set(pods.STEP_POD_SIZE))}; sizes for no step: "
        f"{sorted(set(pods.STEP_POD_SIZE) - set(step_jobs))}"
    )
    assert set(pods.STEP_POD_SIZE.values()) <= set(pods.POD_SIZES)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_job_is_valid_kubernetes(step_jobs: dict[str, dict[str, Any]], version) -> None:
    for step, job in step_jobs.items():
        try:
            validate_kubernetes(job, version)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"the Job of step {step} is not valid Kubernetes {version}: {error}")


def test_resources_follow_the_table(step_jobs: dict[str, dict[str, Any]]) -> None:
    for step, job in step_jobs.items():
        size = pods.POD_SIZES[pods.STEP_POD_SIZE[step]]
        (container,) = containers(job)
        assert container["resources"] == {
            "requests": {"cpu": size.cpu_request, "memory": size.memory_request},
            "limits": {"cpu": size.cpu_limit, "memory": size.memory_limit},
        }, step
        spec = job["spec"]["template"]["spec"]
        assert spec.get("nodeSelector", {}) == dict(size.node_selector), step
        assert spec.get("tolerations", []) == [dict(t) for t in size.tolerations], step
    # The table is not uniform: the model trains on the large, tainted pool.
    assert pods.STEP_POD_SIZE["model"] == "large"
    assert step_jobs["model"]["spec"]["template"]["spec"]["tolerations"]
    assert "tolerations" not in step_jobs["raw_snapshot"]["spec"]["template"]["spec"]


def test_image_identity_and_step_command(step_jobs: dict[str, dict[str, Any]]) -> None:
    for step, job in step_jobs.items():
        (container,) = containers(job)
        assert container["image"] == IMAGE, step
        assert container["args"][:3] == ["dagster", "api", "execute_step"], step
        spec = job["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == pods.SERVICE_ACCOUNT, step
        assert spec["restartPolicy"] == "Never"
        labels = job["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "trainflow"
        assert job["spec"]["ttlSecondsAfterFinished"] == 86400


def test_environment_comes_from_config_map_and_secrets(
    step_jobs: dict[str, dict[str, Any]],
) -> None:
    for step, job in step_jobs.items():
        (container,) = containers(job)
        sources = container["envFrom"]
        assert {"configMapRef": {"name": pods.CONFIG_MAP}} in sources, step
        assert {"secretRef": {"name": pods.SECRET}} in sources, step
        for variable in container["env"]:
            if CREDENTIAL.search(variable["name"]):
                assert "value" not in variable, f"{step}: {variable['name']} is a literal"
                assert variable["valueFrom"]["secretKeyRef"]["name"], step
        # Nothing in the manifest spells out a profile value: those are the ConfigMap's.
        text = json.dumps(job)
        for value in PROD_ENV.values():
            if value != pods.TRAINFLOW_HOME:
                assert value not in text, f"{step}: {value} written into the Job"


def test_security_context_is_locked_down(step_jobs: dict[str, dict[str, Any]]) -> None:
    for step, job in step_jobs.items():
        (container,) = containers(job)
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True, step
        assert context["runAsUser"] == pods.USER_ID != 0
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        # A read-only root needs writable folders for what a step writes locally.
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {pods.TMP, pods.TRAINFLOW_HOME, pods.DAGSTER_HOME} == mounts, step
        volumes = job["spec"]["template"]["spec"]["volumes"]
        assert all(v["emptyDir"] == {} for v in volumes), step


def test_run_limits_one_large_pod_and_a_few_pods(step_jobs: dict[str, dict[str, Any]]) -> None:
    """Per run: a bounded number of step pods and a single training pod at a time (the run
    queue in helm/dagster-values.yaml bounds the runs)."""
    config = pods.k8s_executor_config()
    assert config["max_concurrent"] == pods.MAX_PODS_PER_RUN
    assert {"key": pods.SIZE_TAG, "value": "large", "limit": 1} in config["tag_concurrency_limits"]
    large = [s for s, size in pods.STEP_POD_SIZE.items() if size == "large"]
    assert large == ["model"]


def test_local_profile_keeps_its_own_executor(tmp_path: Path) -> None:
    local = build_definitions(Settings.from_env({"TRAINFLOW_HOME": str(tmp_path)}))
    assert local.resolve_implicit_global_asset_job_def().executor_def is local_executor
    prod = build_definitions(Settings.from_env(PROD_ENV))
    assert prod.resolve_implicit_global_asset_job_def().executor_def.name == "k8s"
    one_machine = Settings.from_env({**PROD_ENV, "TRAINFLOW_EXECUTOR": "multiprocess"})
    assert build_definitions(one_machine).resolve_implicit_global_asset_job_def().executor_def is (
        local_executor
    )
