"""Which sensors and schedules run, and under which code location: what `trainflow status`
shows, so that an instigator started under a location nothing serves (`dagster sensor start
-m trainflow.definitions` instead of `-w workspace.yaml`) is seen rather than silently idle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import yaml
from dagster._core.scheduler.instigation import InstigatorStatus

# The location `make dev` (workspace.yaml) and the Helm chart (helm/dagster-values.yaml) serve;
# an installed wheel has no workspace.yaml, and its deployment serves this name too.
SERVED_LOCATION = "trainflow"


def served_locations(workspace: Path | None) -> set[str]:
    """The location names workspace.yaml serves (SERVED_LOCATION without one)."""
    if workspace is None or not workspace.is_file():
        return {SERVED_LOCATION}
    entries = yaml.safe_load(workspace.read_text()).get("load_from", [])
    return {
        spec["location_name"]
        for entry in entries
        for spec in entry.values()
        if isinstance(spec, dict) and "location_name" in spec
    } or {SERVED_LOCATION}


@dataclass(frozen=True)
class InstigatorLine:
    kind: str  # "sensor" or "schedule"
    name: str
    location: str
    running: bool
    served: bool

    def describe(self) -> str:
        state = "RUNNING" if self.running else "STOPPED"
        if self.served:
            return f"{self.kind:<9}{self.name:<40} {state} in location {self.location}"
        return (
            f"warning: {self.kind} {self.name} is {state} under location {self.location!r}, "
            f"which nothing serves: no daemon ticks it. Stop it there "
            f"(dagster {self.kind} stop {self.name} -m trainflow.definitions) and start it "
            f"with -w workspace.yaml"
        )


def instigator_lines(
    instance: dg.DagsterInstance, defs: dg.Definitions, served: set[str]
) -> list[InstigatorLine]:
    """Every sensor and schedule of the code, with its state in the served location, then
    each one RUNNING under a location nothing serves."""
    stored: dict[tuple[str, str], bool] = {}
    for state in instance.all_instigator_state():
        location = state.origin.repository_origin.code_location_origin.location_name
        stored[(location, state.instigator_name)] = state.status == InstigatorStatus.RUNNING
    lines = []
    declared = [("sensor", s.name, s.default_status) for s in defs.sensors or []] + [
        ("schedule", s.name, s.default_status) for s in defs.schedules or []
    ]
    location = sorted(served)[0]
    for kind, name, default in sorted(declared, key=lambda d: (d[0], d[1])):
        running = stored.get((location, name), getattr(default, "value", default) == "RUNNING")
        lines.append(InstigatorLine(kind, name, location, bool(running), served=True))
    kinds = {name: kind for kind, name, _ in declared}
    for (where, name), running in sorted(stored.items()):
        if where not in served and running:
            lines.append(InstigatorLine(kinds.get(name, "sensor"), name, where, True, False))
    return lines
