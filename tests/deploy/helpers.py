"""Shared by the deployment-file checks: paths, YAML loading, Kubernetes validation.

Everything is offline: charts render with Helm's own Go SDK (helm-python-sdk), objects are
validated against the Kubernetes OpenAPI schemas that kubernetes-validate ships.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from tests.conftest import REPO_ROOT

HELM_DIR = REPO_ROOT / "helm"
CHART_DIR = HELM_DIR / "trainflow"
DAGSTER_VALUES = HELM_DIR / "dagster-values.yaml"
# The oldest Kubernetes the chart claims (Chart.yaml kubeVersion), a middle one, and the
# newest kubernetes-validate ships: a field that moved or went away fails one of them.
KUBERNETES_VERSIONS = ("1.25", "1.31", "1.37")
RELEASE = "trainflow-base"
NAMESPACE = "trainflow"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def validate_kubernetes(obj: dict[str, Any], version: str) -> None:
    """Raise unless `obj` is a valid object of its kind in that Kubernetes version (strict:
    unknown fields fail)."""
    kubernetes_validate.validate(obj, version, strict=True)
