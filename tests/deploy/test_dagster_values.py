"""helm/dagster-values.yaml, the values for Dagster's official chart (dagster/dagster 1.13.x).

The official chart cannot be downloaded here (nothing downloads at test time), so:
- its keys are checked against tests/deploy/dagster_chart_subset.schema.json, a hand-written
  subset of the 1.13 chart's values schema (the sources it was read from are in its
  `$comment`), with additionalProperties false at every level we set: a misspelt or moved
  key fails;
- the names are checked against helm/trainflow (ConfigMap, Secret, ServiceAccount, paths);
- the pod settings are checked against the Kubernetes OpenAPI schemas, and a step pod's Job
  is built by dagster-k8s itself (its container-context merge and Job construction) from
  these values, the way the chart hands them to the run launcher and the code location, then
  validated strictly.

Not checked here: the chart's templates themselves. The GitHub workflow renders the real chart
with `helm template dagster/dagster --version 1.13.27 -f helm/dagster-values.yaml`.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes
import pytest
import yaml
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import (
    DagsterK8sJobConfig,
    UserDefinedDagsterK8sConfig,
    construct_dagster_k8s_job,
)

from tests.deploy.helpers import (
    CHART_DIR,
    DAGSTER_VALUES,
    KUBERNETES_VERSIONS,
    NAMESPACE,
    REPO_ROOT,
    load_yaml,
    validate_kubernetes,
)

SUBSET_SCHEMA = json.loads((Path(__file__).parent / "dagster_chart_subset.schema.json").read_text())
VALUES = load_yaml(DAGSTER_VALUES)
CHART_VALUES = load_yaml(CHART_DIR / "values.yaml")
LAUNCHER = VALUES["runLauncher"]["config"]["k8sRunLauncher"]
[LOCATION] = VALUES["dagster-user-deployments"]["deployments"]
DAGSTER_RELEASE = "dagster"
UID = 10001


def schema_errors(values: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(SUBSET_SCHEMA)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(values)
    ]


def test_the_subset_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SUBSET_SCHEMA)


def test_the_values_use_only_keys_of_the_1_13_chart() -> None:
    assert schema_errors(VALUES) == []


def moved(values: dict[str, Any], path: str, to: str | None) -> dict[str, Any]:
    """`values` with the key at dotted `path` renamed to `to` (same parent) or removed."""
    changed = copy.deepcopy(values)
    *parents, last = path.split(".")
    node: Any = changed
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    value = node.pop(last)
    if to is not None:
        node[to] = value
    return changed


@pytest.mark.parametrize(
    ("path", "to"),
    [
        ("dagsterWebserver", "dagit"),  # the pre-1.3 chart's name
        ("runLauncher.config.k8sRunLauncher.envConfigMaps", "envConfigMap"),
        ("runLauncher.config.k8sRunLauncher.securityContext", "podSecurityContext"),
        ("runLauncher.config.k8sRunLauncher.runK8sConfig.podSpecConfig", "pod_spec_config"),
        ("dagsterDaemon.runCoordinator.config.queuedRunCoordinator", "queued"),
        ("concurrency.pools.defaultLimit", "default_limit"),
        ("dagster-user-deployments.deployments.0.dagsterApiGrpcArgs", "dagsterApiGrpcArg"),
        ("dagster-user-deployments.deployments.0.includeConfigInLaunchedRuns", "includeConfig"),
        ("postgresql.postgresqlHost", "host"),
        ("global.postgresqlSecretName", "postgresqlSecret"),
    ],
)
def test_the_subset_schema_refuses_a_misspelt_key(path, to) -> None:
    assert schema_errors(moved(VALUES, path, to))


def test_the_subset_schema_refuses_a_moved_key() -> None:
    values = copy.deepcopy(VALUES)
    values["dagsterDaemon"]["maxConcurrentRuns"] = 3
    values["runLauncher"]["config"]["envSecrets"] = LAUNCHER["envSecrets"]
    assert len(schema_errors(values)) == 2


def test_the_names_are_the_trainflow_charts() -> None:
    # The ConfigMap and ServiceAccount helm/trainflow renders, the Secret it names.
    for pods in (LAUNCHER, LOCATION):
        assert pods["envConfigMaps"] == [{"name": "trainflow-config"}]
        assert pods["envSecrets"] == [{"name": CHART_VALUES["existingSecret"]}]
    assert CHART_VALUES["existingSecret"] == "trainflow-secrets"
    assert VALUES["dagster-user-deployments"]["serviceAccount"] == {
        "create": False,
        "name": "trainflow",
    }
    # The code location: name, module, port.
    assert LOCATION["name"] == "trainflow"
    assert LOCATION["dagsterApiGrpcArgs"] == ["-m", "trainflow.definitions"]
    assert LOCATION["port"] == 3030
    assert LOCATION["includeConfigInLaunchedRuns"] == {"enabled": True}


def mounts(pods: dict[str, Any]) -> dict[str, str]:
    return {m["mountPath"]: m["name"] for m in pods["volumeMounts"]}


def test_the_writable_paths_are_empty_dirs() -> None:
    """The image's root is read-only: /tmp, TRAINFLOW_HOME and DAGSTER_HOME are emptyDirs."""
    for pods in (LAUNCHER, LOCATION):
        paths = mounts(pods)
        assert set(paths) == {"/tmp", CHART_VALUES["home"], VALUES["global"]["dagsterHome"]}
        volumes = {v["name"]: v for v in pods["volumes"]}
        assert set(volumes) == set(paths.values())
        assert all(set(v) == {"name", "emptyDir"} for v in volumes.values())
    assert LAUNCHER["volumes"] == LOCATION["volumes"]
    assert LAUNCHER["volumeMounts"] == LOCATION["volumeMounts"]


def test_the_pods_are_hardened() -> None:
    for pods in (LAUNCHER, LOCATION):
        container = pods["securityContext"]
        assert container["runAsNonRoot"] is True
        assert container["runAsUser"] == UID
        assert container["allowPrivilegeEscalation"] is False
        assert container["readOnlyRootFilesystem"] is True
        assert container["capabilities"] == {"drop": ["ALL"]}
        assert container["seccompProfile"] == {"type": "RuntimeDefault"}
    pod = LAUNCHER["runK8sConfig"]["podSpecConfig"]["securityContext"]
    assert pod == LOCATION["podSecurityContext"]
    assert pod["runAsUser"] == pod["runAsGroup"] == pod["fsGroup"] == UID
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}


def test_run_pods_get_the_same_resources_either_way() -> None:
    """The code location's container context wins over the run launcher's resources; they are
    kept equal, so neither one is a setting that silently does nothing."""
    assert LAUNCHER["resources"] == LOCATION["resources"]
    assert LOCATION["resources"]["limits"]["memory"]


def test_the_run_queue_and_the_registry_pool() -> None:
    coordinator = VALUES["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] is True
    assert coordinator["type"] == "QueuedRunCoordinator"
    queue = coordinator["config"]["queuedRunCoordinator"]
    limits = {limit["key"]: limit for limit in queue["tagConcurrencyLimits"]}
    assert "value" not in limits["dagster/backfill"], "every backfill run counts"
    assert 0 < limits["dagster/backfill"]["limit"] < queue["maxConcurrentRuns"]
    # One slot per pool: trainflow's model_registry pool registers one model at a time.
    assert VALUES["concurrency"]["enabled"] is True
    assert VALUES["concurrency"]["pools"]["defaultLimit"] == 1
    # The chart fails if run limits are set both here and in the run coordinator.
    assert "runs" not in VALUES["concurrency"]
    assert VALUES["telemetry"] == {"enabled": False}
    # The one-machine prod instance queues backfills and registrations the same way.
    one_machine = load_yaml(REPO_ROOT / "dagster.prod.yaml")["concurrency"]
    assert one_machine["runs"]["tag_concurrency_limits"] == queue["tagConcurrencyLimits"]
    assert one_machine["pools"]["default_limit"] == VALUES["concurrency"]["pools"]["defaultLimit"]


def test_the_instance_database_is_external_and_its_password_a_secret() -> None:
    postgresql = VALUES["postgresql"]
    assert postgresql["enabled"] is False
    assert "postgresqlPassword" not in postgresql
    assert VALUES["generatePostgresqlPasswordSecret"] is False
    assert VALUES["global"]["postgresqlSecretName"]
    # The same driver as the one-machine prod instance (dagster.prod.yaml).
    prod_instance = load_yaml(REPO_ROOT / "dagster.prod.yaml")
    assert (
        postgresql["postgresqlScheme"]
        == prod_instance["storage"]["postgres"]["postgres_db"]["scheme"]
    )


# An image reference: [registry/]path[:tag][@sha256:digest] (the distribution grammar, simplified).
IMAGE_REFERENCE = re.compile(
    r"^(?:[a-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)


def image_reference(image: dict[str, Any]) -> str:
    """What the chart writes: repository:tag."""
    return f"{image['repository']}:{image['tag']}"


def test_the_image_reference_is_valid_and_can_be_pinned_by_digest() -> None:
    assert IMAGE_REFERENCE.match(image_reference(LOCATION["image"]))
    pinned = {**LOCATION["image"], "tag": f"{LOCATION['image']['tag']}@sha256:{'0' * 64}"}
    assert IMAGE_REFERENCE.match(image_reference(pinned))
    assert not IMAGE_REFERENCE.match(image_reference({**pinned, "tag": "0.1.0@sha256:abc"}))


def kubernetes_pod(pods: dict[str, Any], pod_security: dict[str, Any]) -> dict[str, Any]:
    """A Pod with the pod settings of a values section, to check them against the schemas."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "trainflow"},
        "spec": {
            "securityContext": pod_security,
            "containers": [
                {
                    "name": "trainflow",
                    "image": image_reference(LOCATION["image"]),
                    "securityContext": pods["securityContext"],
                    "resources": pods["resources"],
                    "volumeMounts": pods["volumeMounts"],
                    "envFrom": [{"configMapRef": c} for c in pods["envConfigMaps"]]
                    + [{"secretRef": s} for s in pods["envSecrets"]],
                }
            ],
            "volumes": pods["volumes"],
        },
    }


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_pod_settings_are_valid_kubernetes(version) -> None:
    validate_kubernetes(
        kubernetes_pod(LAUNCHER, LAUNCHER["runK8sConfig"]["podSpecConfig"]["securityContext"]),
        version,
    )
    validate_kubernetes(kubernetes_pod(LOCATION, LOCATION["podSecurityContext"]), version)
    for section in (VALUES["dagsterWebserver"], VALUES["dagsterDaemon"]):
        validate_kubernetes(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "dagster"},
                "spec": {
                    "containers": [
                        {"name": "dagster", "image": "dagster", "resources": section["resources"]}
                    ]
                },
            },
            version,
        )


def step_job() -> dict[str, Any]:
    """The Job a run's k8s_job_executor would create for a step, built by dagster-k8s.

    The chart hands runLauncher.config.k8sRunLauncher to the K8sRunLauncher (snake_case
    names, envConfigMaps/envSecrets as lists of names) and this deployment to the code server
    as its container context (the user-deployments chart's k8sContainerContext helper); the
    executor merges the two as K8sContainerContext.create_for_run does and builds the Job with
    construct_dagster_k8s_job. The mapping of the chart's keys is written out here; the
    merging and the Job are dagster-k8s's own code.
    """
    launcher = K8sContainerContext(
        image_pull_policy=LAUNCHER["imagePullPolicy"],
        env_config_maps=[c["name"] for c in LAUNCHER["envConfigMaps"]],
        env_secrets=[s["name"] for s in LAUNCHER["envSecrets"]],
        volume_mounts=LAUNCHER["volumeMounts"],
        volumes=LAUNCHER["volumes"],
        resources=LAUNCHER["resources"],
        security_context=LAUNCHER["securityContext"],
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(
            {"pod_spec_config": LAUNCHER["runK8sConfig"]["podSpecConfig"]}
        ),
    )
    location = K8sContainerContext.create_from_config(
        {
            "k8s": {
                "image_pull_policy": LOCATION["image"]["pullPolicy"],
                "env_config_maps": [
                    f"{DAGSTER_RELEASE}-dagster-user-deployments-{LOCATION['name']}-user-env",
                    *(c["name"] for c in LOCATION["envConfigMaps"]),
                ],
                "env_secrets": [s["name"] for s in LOCATION["envSecrets"]],
                "volume_mounts": LOCATION["volumeMounts"],
                "volumes": LOCATION["volumes"],
                "resources": LOCATION["resources"],
                "namespace": NAMESPACE,
                "service_account_name": VALUES["dagster-user-deployments"]["serviceAccount"][
                    "name"
                ],
            }
        }
    )
    context = launcher.merge(location)
    job = construct_dagster_k8s_job(
        job_config=DagsterK8sJobConfig(
            job_image=image_reference(LOCATION["image"]),
            dagster_home=VALUES["global"]["dagsterHome"],
            postgres_password_secret=VALUES["global"]["postgresqlSecretName"],
        ),
        args=["dagster", "api", "execute_step", "{}"],
        job_name="dagster-step-0123456789abcdef",
        user_defined_k8s_config=context.run_k8s_config,
        component="step_worker",
    )
    return kubernetes.client.ApiClient().sanitize_for_serialization(job)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_a_step_job_built_by_dagster_k8s_is_valid_and_hardened(version) -> None:
    job = step_job()
    validate_kubernetes(job, version)
    spec = job["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "trainflow"
    assert spec["securityContext"]["runAsUser"] == UID
    [container] = spec["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    # The two sources' identical volumes were merged, not doubled (a Pod with two volumes of
    # one name is refused by the API server).
    assert sorted(v["name"] for v in spec["volumes"]) == ["dagster-home", "tmp", "trainflow-home"]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {
        "/tmp",
        "/var/lib/trainflow",
        "/opt/dagster/dagster_home",
    }
    sources = {
        (kind, ref["name"])
        for source in container["envFrom"]
        for kind, ref in source.items()
        if kind in ("configMapRef", "secretRef")
    }
    assert {("configMapRef", "trainflow-config"), ("secretRef", "trainflow-secrets")} <= sources
    env = {e["name"]: e for e in container["env"]}
    assert env["DAGSTER_HOME"]["value"] == "/opt/dagster/dagster_home"
    assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": VALUES["global"]["postgresqlSecretName"],
        "key": "postgresql-password",
    }
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "step_worker"


DIGEST = "sha256:" + "ab" * 32


def dagster_values_for(*args: str) -> subprocess.CompletedProcess[str]:
    """`deploy/dagster_values.py` as docs/deploy.md has an operator run it."""
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "deploy" / "dagster_values.py"), *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_the_values_of_one_deployment_keep_the_code_location_whole() -> None:
    """Filling in the image and database keeps every other setting (a second -f file would
    replace the deployments list), pins the digest, and stays inside the chart's keys."""
    done = dagster_values_for(
        "--image", f"registry.example.com/trainflow:abc1234@{DIGEST}", "--db-host", "pg.data.svc"
    )
    assert done.returncode == 0, done.stderr
    values = yaml.safe_load(done.stdout)
    assert schema_errors(values) == []
    [location] = values["dagster-user-deployments"]["deployments"]
    assert location["image"]["repository"] == "registry.example.com/trainflow"
    assert location["image"]["tag"] == f"abc1234@{DIGEST}"
    assert {k: v for k, v in location.items() if k != "image"} == {
        k: v for k, v in LOCATION.items() if k != "image"
    }
    assert values["postgresql"]["postgresqlHost"] == "pg.data.svc"
    assert values["runLauncher"] == VALUES["runLauncher"]
    assert "&" not in done.stdout and "*trainflow" not in done.stdout  # written out in full


def test_an_image_without_a_digest_is_refused() -> None:
    done = dagster_values_for("--image", "registry.example.com/trainflow:latest", "--db-host", "h")
    assert done.returncode == 2
    assert "not pinned by digest" in done.stderr
