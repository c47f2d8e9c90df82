"""helm/trainflow, rendered offline with Helm's own Go SDK (helm-python-sdk) and every object
validated against the Kubernetes OpenAPI schemas (kubernetes-validate, strict).

What is checked: the chart renders with a realistic values file and refuses to render
without the four required settings; every rendered object is a valid object of its kind in
Kubernetes 1.25, 1.31 and 1.37; the ConfigMap holds exactly the prod profile's non-secret
variables; the ServiceAccount carries the role annotation; the Role grants every Kubernetes
API call dagster-k8s's step launcher makes (read from dagster-k8s's source, so an upgrade
that adds a call fails here) and nothing more; `helm lint --strict` is clean; the values
schema refuses bad values; no literal credential is in a values file or the rendered output.

What is not: a cluster (nothing is applied), admission webhooks, Pod Security admission.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster_k8s
import helm_python as helm
import pytest
import yaml

from tests.deploy.helpers import (
    CHART_DIR,
    DAGSTER_VALUES,
    HELM_DIR,
    KUBERNETES_VERSIONS,
    NAMESPACE,
    RELEASE,
    load_yaml,
    validate_kubernetes,
)

CI_VALUES = load_yaml(CHART_DIR / "ci-values.yaml")
# The prod profile's non-secret environment (docs/profiles.md), and TRAINFLOW_EXECUTOR.
PROD_VARIABLES = {
    "TRAINFLOW_PROFILE",
    "TRAINFLOW_EXECUTOR",
    "TRAINFLOW_LAKE_URI",
    "TRAINFLOW_WAREHOUSE_URL",
    "MLFLOW_TRACKING_URI",
    "AWS_REGION",
    "TRAINFLOW_HOME",
}


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


def render(chart: helm.Chart, values: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The chart's objects for `values` over its defaults (NOTES.txt left out)."""
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    return [
        obj
        for path, text in sorted(manifests.items())
        if path.endswith((".yaml", ".yml"))
        for obj in yaml.safe_load_all(text)
        if obj
    ]


def the(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


@pytest.fixture(scope="module")
def objects(chart: helm.Chart) -> list[dict[str, Any]]:
    return render(chart, CI_VALUES)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_rendered_object_is_valid_kubernetes(objects, version) -> None:
    assert sorted(o["kind"] for o in objects) == [
        "ConfigMap",
        "NetworkPolicy",
        "Role",
        "RoleBinding",
        "ServiceAccount",
    ]
    for obj in objects:
        validate_kubernetes(obj, version)
        assert "namespace" not in obj["metadata"], "the release namespace applies"


def test_the_chart_refuses_to_render_without_the_prod_settings(chart) -> None:
    with pytest.raises(helm.HelmValuesError) as refused:
        render(chart, None)
    for key in ("lakeUri", "warehouseUrl", "mlflowTrackingUri", "awsRegion"):
        assert key in str(refused.value)


def test_the_configmap_holds_exactly_the_prod_environment(objects) -> None:
    config = the(objects, "ConfigMap")
    assert config["metadata"]["name"] == "trainflow-config"
    assert config["data"] == {
        "TRAINFLOW_PROFILE": "prod",
        "TRAINFLOW_EXECUTOR": "k8s",
        "TRAINFLOW_LAKE_URI": CI_VALUES["lakeUri"],
        "TRAINFLOW_WAREHOUSE_URL": CI_VALUES["warehouseUrl"],
        "MLFLOW_TRACKING_URI": CI_VALUES["mlflowTrackingUri"],
        "AWS_REGION": CI_VALUES["awsRegion"],
        "TRAINFLOW_HOME": "/var/lib/trainflow",
    }
    assert set(config["data"]) == PROD_VARIABLES
    assert config["metadata"]["annotations"]["trainflow/secret"] == "trainflow-secrets"


def test_the_configmap_is_what_the_prod_profile_accepts(objects) -> None:
    """trainflow's own settings load from exactly this environment, as the prod profile."""
    from trainflow.settings import Settings

    settings = Settings.from_env(the(objects, "ConfigMap")["data"])
    assert settings.profile == "prod"
    assert settings.lake_uri == CI_VALUES["lakeUri"]
    assert settings.mlflow_server


def test_the_service_account_carries_the_role_arn(chart, objects) -> None:
    account = the(objects, "ServiceAccount")
    assert account["metadata"]["name"] == "trainflow"
    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/trainflow-lake",
        "eks.amazonaws.com/sts-regional-endpoints": "true",
    }
    # Other clouds: no role ARN, other annotations pass through, nothing else is added.
    values = copy.deepcopy(CI_VALUES)
    values["serviceAccount"] = {
        "roleArn": "",
        "annotations": {
            "iam.gke.io/gcp-service-account": "trainflow@example.iam.gserviceaccount.com"
        },
    }
    account = the(render(chart, values), "ServiceAccount")
    assert account["metadata"]["annotations"] == values["serviceAccount"]["annotations"]
    values["serviceAccount"]["annotations"] = {}
    assert "annotations" not in the(render(chart, values), "ServiceAccount")["metadata"]


# Each Kubernetes client method dagster-k8s calls, as (API group, resource, verb).
CLIENT_CALLS = {
    "create_namespaced_job": ("batch", "jobs", "create"),
    "list_namespaced_job": ("batch", "jobs", "list"),
    "read_namespaced_job": ("batch", "jobs", "get"),
    "read_namespaced_job_status": ("batch", "jobs/status", "get"),
    "delete_namespaced_job": ("batch", "jobs", "delete"),
    "create_namespaced_pod": ("", "pods", "create"),
    "read_namespaced_pod": ("", "pods", "get"),
    "list_namespaced_pod": ("", "pods", "list"),
    "delete_namespaced_pod": ("", "pods", "delete"),
    "read_namespaced_pod_log": ("", "pods/log", "get"),
    "list_namespaced_event": ("", "events", "list"),
}
# Calls of dagster-k8s that a trainflow run never makes, and why.
NOT_NEEDED = {
    # dagster-k8s's Pipes client starts bare pods; the k8s_job_executor starts Jobs.
    "create_namespaced_pod",
}
# What the Role grants beyond the calls: reading and following Jobs and pods (the client
# polls with list and get; watch serves clients that follow instead of polling).
FOLLOW = {
    ("batch", "jobs", "get"),
    ("batch", "jobs", "watch"),
    ("batch", "jobs/status", "list"),
    ("batch", "jobs/status", "watch"),
    ("", "pods", "watch"),
    ("", "events", "get"),
    ("", "events", "watch"),
}


def dagster_k8s_calls() -> set[str]:
    """The batch/core API methods called in the modules a run and its steps use."""
    package = Path(dagster_k8s.__file__).parent
    sources = [package / name for name in ("client.py", "executor.py", "launcher.py", "job.py")]
    return {
        method
        for source in sources
        for method in re.findall(r"\b(?:batch_api|core_api)\.(\w+)\(", source.read_text())
    }


def granted(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_the_role_grants_what_dagster_k8s_calls_and_no_more(objects) -> None:
    calls = dagster_k8s_calls()
    unknown = calls - set(CLIENT_CALLS)
    assert not unknown, f"dagster-k8s calls {unknown}: add them to CLIENT_CALLS and the Role"
    needed = {CLIENT_CALLS[c] for c in calls - NOT_NEEDED}
    role = the(objects, "Role")
    assert role["metadata"]["name"] == "trainflow-job-launcher"
    rights = granted(role)
    assert needed <= rights, f"missing: {needed - rights}"
    assert rights == needed | FOLLOW, f"more than needed: {rights - needed - FOLLOW}"
    assert not any("*" in item for right in rights for item in right)


def test_the_role_binding_names_the_service_account(objects) -> None:
    binding = the(objects, "RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": the(objects, "Role")["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "trainflow", "namespace": NAMESPACE}
    ]


def test_the_network_policy_selects_run_and_step_pods(chart, objects) -> None:
    from dagster_k8s.utils import get_common_labels

    policy = the(objects, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert "ingress" not in policy["spec"], "no ingress rule: all ingress denied"
    selector = {e["key"]: e["values"] for e in policy["spec"]["podSelector"]["matchExpressions"]}
    labels = get_common_labels()
    assert selector["app.kubernetes.io/part-of"] == [labels["app.kubernetes.io/part-of"]]
    assert selector["app.kubernetes.io/component"] == ["run_worker", "step_worker"]
    off = render(chart, {**CI_VALUES, "networkPolicy": {"enabled": False}})
    assert "NetworkPolicy" not in {o["kind"] for o in off}


def test_helm_lint_strict_is_clean() -> None:
    result = helm.lint(CHART_DIR, CI_VALUES, strict=True)
    assert result["errors"] == []
    # Severity 1 is information (e.g. "icon is recommended"); 2 and up are warnings, errors.
    assert [m for m in result["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"lakeUri": None}, "lakeUri"),
        ({"lakeUri": "/var/lib/trainflow/lake"}, "lakeUri"),
        ({"lakeUri": "s3://"}, "lakeUri"),
        ({"warehouseUrl": "postgresql://trainflow:hunter2@db:5432/warehouse"}, "warehouseUrl"),
        ({"warehouseUrl": "postgresql://trainflow@db:5432/warehouse?password=x"}, "warehouseUrl"),
        ({"warehouseUrl": "postgresql://trainflow@db:5432"}, "warehouseUrl"),
        ({"warehouseUrl": "/var/lib/trainflow/warehouse.duckdb"}, "warehouseUrl"),
        ({"mlflowTrackingUri": "http://admin:secret@mlflow:5000"}, "mlflowTrackingUri"),
        ({"mlflowTrackingUri": "sqlite:///mlflow.db"}, "mlflowTrackingUri"),
        ({"awsRegion": "Ireland"}, "awsRegion"),
        ({"home": "relative/home"}, "home"),
        ({"existingSecret": ""}, "existingSecret"),
        ({"serviceAccount": {"roleArn": "trainflow-lake", "annotations": {}}}, "roleArn"),
        ({"lakeURI": "s3://bucket/lake"}, "lakeURI"),
        ({"networkPolicy": {"enabled": "yes"}}, "enabled"),
    ],
)
def test_the_values_schema_refuses_bad_values(chart, change, key) -> None:
    values = {**CI_VALUES, **change}
    values = {k: v for k, v in values.items() if v is not None}
    with pytest.raises(helm.HelmValuesError) as refused:
        chart.validate_schema(chart.merge_values(values))
    assert key in str(refused.value)


def test_the_values_schema_accepts_the_realistic_values(chart) -> None:
    chart.validate_schema(chart.merge_values(CI_VALUES))
    # A URL without a user, without a port, and an https tracking server with a path.
    chart.validate_schema(
        chart.merge_values(
            {
                **CI_VALUES,
                "warehouseUrl": "postgres://db.internal/warehouse",
                "mlflowTrackingUri": "https://mlflow.example.com/tracking",
                "awsRegion": "us-gov-west-1",
            }
        )
    )


# --- no literal credentials -----------------------------------------------------------------

# Keys whose value would be a credential.
CREDENTIAL_KEY = re.compile(
    r"pass(word|wd)?|secret|token|credential|private.?key|access.?key", re.I
)
# Keys that name a credential's holder, or switch a generated one off: a name, never a value.
REFERENCE_KEYS = {
    "existingSecret",
    "postgresqlSecretName",
    "generatePostgresqlPasswordSecret",
    "envSecrets",
    "trainflow/secret",
}
CREDENTIAL_TEXT = [
    re.compile(r"://[^/\s:@'\"]+:[^/\s@'\"]+@"),  # user:password@ in a URL
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),  # an AWS access key id
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"[?&]password=", re.I),
]


def literal_credentials(document: Any, where: str = "") -> Iterator[str]:
    """Where `document` (parsed YAML) holds something that looks like a credential."""
    if isinstance(document, dict):
        # An environment variable given by value: {name: PGPASSWORD, value: ...}.
        name, value = document.get("name"), document.get("value")
        if isinstance(name, str) and CREDENTIAL_KEY.search(name) and value not in (None, ""):
            yield f"{where}: {name}={value!r}"
        for key, value in document.items():
            path = f"{where}.{key}"
            if (
                CREDENTIAL_KEY.search(str(key))
                and key not in REFERENCE_KEYS
                and isinstance(value, str | int)
                and not isinstance(value, bool)
                and str(value)
            ):
                yield f"{path}={value!r}"
            yield from literal_credentials(value, path)
    elif isinstance(document, list):
        for index, item in enumerate(document):
            yield from literal_credentials(item, f"{where}[{index}]")
    elif isinstance(document, str):
        for pattern in CREDENTIAL_TEXT:
            if pattern.search(document):
                yield f"{where}: {pattern.pattern} in {document!r}"


VALUES_FILES = sorted(HELM_DIR.rglob("*.yaml"))


def test_the_values_files_are_the_ones_scanned() -> None:
    names = {str(p.relative_to(HELM_DIR)) for p in VALUES_FILES}
    assert {"dagster-values.yaml", "trainflow/values.yaml", "trainflow/ci-values.yaml"} <= names
    assert DAGSTER_VALUES in VALUES_FILES


@pytest.mark.parametrize("path", [p for p in VALUES_FILES if "templates" not in p.parts], ids=str)
def test_no_literal_credentials_in_values_files(path) -> None:
    assert list(literal_credentials(load_yaml(path))) == []
    text = path.read_text()
    assert not any(p.search(text) for p in CREDENTIAL_TEXT)


def test_no_literal_credentials_in_the_rendered_chart(chart, objects) -> None:
    assert "Secret" not in {o["kind"] for o in objects}, "the chart only names the Secret"
    assert [f for o in objects for f in literal_credentials(o)] == []
    notes = chart.render(CI_VALUES, name=RELEASE, namespace=NAMESPACE)
    assert not any(p.search(text) for text in notes.values() for p in CREDENTIAL_TEXT)


@pytest.mark.parametrize(
    "planted",
    [
        {"postgresql": {"postgresqlPassword": "hunter2"}},
        {"env": [{"name": "AWS_SECRET_ACCESS_KEY", "value": "x"}]},
        {"env": {"MLFLOW_TRACKING_PASSWORD": "x"}},
        {"warehouseUrl": "postgresql://trainflow:hunter2@db/warehouse"},
        {"note": "key AKIAABCDEFGHIJKLMNOP"},
    ],
)
def test_the_credential_scan_finds_a_planted_one(planted) -> None:
    assert list(literal_credentials(planted)), planted
