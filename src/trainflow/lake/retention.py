"""Retention that never breaks reproduce: what `trainflow vacuum` may delete.

Every Delta commit that replaces a partition leaves the old files behind, and a killed
write leaves files no commit names; nothing else ever removes them. A careless vacuum, on
the other hand, removes the files of the table versions a registered model's manifest
names, and `trainflow reproduce` can no longer time-travel to them.

So the vacuum keeps, in each table, every version any registered model's manifest
references (and the current one), and removes the rest once older than the retention
(deltalake's own `vacuum(keep_versions=..., full=True)`: tombstoned files of other versions
and files no commit names). The Delta log itself is never expired (`NEVER_EXPIRE_LOG` on
every table, set when trainflow creates it): reading version V needs every log entry from
the checkpoint before V, and deltalake would otherwise delete entries older than 30 days
whenever it writes a checkpoint, whatever a manifest names. A log entry is a few KB.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Table properties trainflow sets on every lake table: deltalake's automatic log cleanup
# off (see the module docstring).
NEVER_EXPIRE_LOG = {"delta.enableExpiredLogCleanup": "false"}
# Files younger than this are never removed, whatever names them: a write in progress has
# written its files and not yet committed them.
DEFAULT_RETENTION_HOURS = 168


def referenced_versions(manifest: Mapping[str, Any]) -> dict[str, set[int]]:
    """table -> the Delta versions a manifest reads: what `reproduce` time-travels to
    (feature partitions; with --from-raw, the raw snapshots), and the dataset and validated
    versions it records for lineage."""
    inputs = manifest.get("inputs", {})
    found: dict[str, set[int]] = defaultdict(set)
    dataset = inputs.get("training_dataset", {})
    if dataset.get("delta_version") is not None:
        found["training_dataset"].add(int(dataset["delta_version"]))
    features = inputs.get("flight_features", {})
    if features.get("delta_version") is not None:
        found["flight_features"].add(int(features["delta_version"]))
    for entry in features.get("partitions", {}).values():
        if entry.get("delta_version") is not None:
            found["flight_features"].add(int(entry["delta_version"]))
    for table in ("validated_flights", "raw_snapshot"):
        for version in inputs.get(table, {}).get("versions", {}):
            found[table].add(int(version))
    return dict(found)


def versions_to_keep(manifests: Iterable[Mapping[str, Any]]) -> dict[str, set[int]]:
    """The union over manifests of `referenced_versions`."""
    keep: dict[str, set[int]] = defaultdict(set)
    for manifest in manifests:
        for table, versions in referenced_versions(manifest).items():
            keep[table] |= versions
    return dict(keep)


@dataclass(frozen=True)
class VacuumResult:
    """What the vacuum did (or, on a dry run, would do) to one table."""

    table: str
    version: int  # the table's version before the vacuum
    kept_versions: list[int]  # besides the current one
    removed_files: list[str]
    dry_run: bool

    def describe(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        kept = ", ".join(str(v) for v in self.kept_versions) or "none"
        return (
            f"{self.table:<18} {verb} {len(self.removed_files)} file(s); kept the current "
            f"version {self.version} and the versions manifests reference: {kept}"
        )
