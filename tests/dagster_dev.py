"""`dagster dev` (webserver, daemon and code server) on a free loopback port, as `make dev`
runs it, with a small GraphQL client: what the UI itself calls."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.conftest import BIN, REPO_ROOT, free_port

T = TypeVar("T")
LOCATION = "trainflow"  # workspace.yaml's location_name


def post_graphql(url: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """One GraphQL request to the webserver at `url`; the whole answer (data and errors)."""
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return dict(json.load(response))


class DagsterDev:
    def __init__(
        self,
        env: dict[str, str],
        log: Path,
        command: tuple[str, ...] = ("dagster", "dev", "-w", "workspace.yaml"),
    ) -> None:
        """`command` (a venv command and its arguments; `("dg", "dev")` too) on a free port."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                [str(BIN / command[0]), *command[1:], "-h", "127.0.0.1", "-p", str(self.port)],
                env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.wait_for(self._location_loaded, 180, "the code location to load")

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = post_graphql(self.url, query, variables or {})
        assert "errors" not in answer, answer["errors"]
        return dict(answer["data"])

    def wait_for(self, probe: Callable[[], T | None], seconds: float, what: str) -> T:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"dagster dev exited while waiting for {what}:\n{self.tail()}")
            found = probe()
            if found:
                return found
            time.sleep(1)
        raise AssertionError(f"timed out after {seconds} s waiting for {what}:\n{self.tail()}")

    def _location_loaded(self) -> bool:
        try:
            data = self.graphql(
                "{ workspaceOrError { ... on Workspace { locationEntries { name "
                "locationOrLoadError { __typename } } } } }"
            )
        except (urllib.error.URLError, ConnectionError):
            return False
        entries = data["workspaceOrError"].get("locationEntries", [])
        states = {e["name"]: e["locationOrLoadError"]["__typename"] for e in entries}
        if states.get(LOCATION) == "PythonError":
            raise AssertionError(f"the code location failed to load:\n{self.tail()}")
        return states.get(LOCATION) == "RepositoryLocation"

    def tail(self, chars: int = 6000) -> str:
        return self.log.read_text()[-chars:]

    def stop(self) -> None:
        # dagster dev stops its webserver, daemon and code server on SIGTERM.
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
