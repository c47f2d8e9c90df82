"""The whole graph over a range of days, in process: the days' features, the experiment's
training, then the days' predictions.

Dagster runs one partitions definition per run: the daily assets over a range of days, or
the training side for one experiment. "Everything for Jan-Feb with config X" is so three
runs on one instance, each after the one before succeeded (what a backfill of them all in
the UI does with the daemon, here without one): the predictions come last because they
are scored by the champion, which the experiment's run may register.
`definitions.materialize_range`, the tests and the graph process use it; `make
materialize` runs the same three runs with `dg launch`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from trainflow.defs.partitions import RANGE_END_TAG, RANGE_START_TAG, add_experiment, experiments


@dataclass(frozen=True)
class GraphRuns:
    """The runs one call made, in order, read as one: what tests ask of a single run."""

    runs: list[dg.ExecuteInProcessResult]

    @property
    def success(self) -> bool:
        return all(r.success for r in self.runs)

    @property
    def run_id(self) -> str:
        """The last run's id (the experiment's, when one ran)."""
        return self.runs[-1].run_id

    @property
    def run_ids(self) -> list[str]:
        return [r.run_id for r in self.runs]

    @property
    def all_events(self) -> list[dg.DagsterEvent]:
        return [e for r in self.runs for e in r.all_events]

    def get_asset_materialization_events(self) -> list[dg.DagsterEvent]:
        return [e for r in self.runs for e in r.get_asset_materialization_events()]

    def get_asset_check_evaluations(self) -> list[dg.AssetCheckEvaluation]:
        return [e for r in self.runs for e in r.get_asset_check_evaluations()]

    def get_step_failure_events(self) -> list[dg.DagsterEvent]:
        return [e for r in self.runs for e in r.get_step_failure_events()]

    def asset_materializations_for_node(self, node_name: str) -> list[dg.AssetMaterialization]:
        return [
            m
            for r in self.runs
            if node_name in {n.name for n in r.job_def.nodes}
            for m in r.asset_materializations_for_node(node_name)
        ]


def is_per_experiment(asset: dg.AssetsDefinition | dg.AssetSpec) -> bool:
    return isinstance(asset, dg.AssetsDefinition) and asset.partitions_def == experiments


def downstream_of(
    assets: Sequence[dg.AssetsDefinition | dg.AssetSpec], roots: set[dg.AssetKey]
) -> set[dg.AssetKey]:
    """The keys among `assets` that depend on `roots`, directly or through each other."""
    parents = {
        key: set(a.asset_deps[key])
        for a in assets
        if isinstance(a, dg.AssetsDefinition)
        for key in a.keys
    }
    found = set(roots)
    while grown := {k for k, ups in parents.items() if k not in found and ups & found}:
        found |= grown
    return found - roots


def materialize_graph(
    assets: Sequence[dg.AssetsDefinition | dg.AssetSpec],
    resources: dict[str, Any],
    days: tuple[str, str] | None,
    experiment: str | None,
    selection: Iterable[dg.AssetKey] | None = None,
    checks: Sequence[dg.AssetChecksDefinition] = (),
    instance: dg.DagsterInstance | None = None,
    tags: dict[str, str] | None = None,
    raise_on_error: bool = True,
) -> GraphRuns:
    """The selected assets (default: every materializable one) as up to three runs, each
    only if the one before succeeded: the daily and unpartitioned ones over `days` (with
    `checks`); the per-experiment ones for `experiment`; then the daily ones that depend on
    those (the predictions, scored by the champion the training may just have registered).
    The experiment's partition is added to the instance first (an ephemeral one, shared by
    the runs, when none is given)."""
    keys = (
        set(selection)
        if selection is not None
        else {
            key
            for a in assets
            if isinstance(a, dg.AssetsDefinition) and a.is_executable
            for key in a.keys
        }
    )
    per_experiment = {
        k for a in assets if isinstance(a, dg.AssetsDefinition) and is_per_experiment(a)
        for k in a.keys
    }  # fmt: skip
    training = keys & per_experiment
    scoring = keys & downstream_of(assets, training)
    daily = keys - per_experiment - scoring
    instance = instance or dg.DagsterInstance.ephemeral()
    range_tags = {RANGE_START_TAG: days[0], RANGE_END_TAG: days[1]} if days else {}
    planned: list[tuple[dg.AssetSelection, str | None, dict[str, str]]] = []
    if daily:
        with_checks = dg.AssetSelection.assets(*sorted(daily)) | dg.AssetSelection.checks(*checks)
        planned.append((with_checks, None, range_tags))
    if training:
        if experiment is None:
            raise ValueError("the training side runs per experiment: name one")
        add_experiment(instance, experiment)
        planned.append((dg.AssetSelection.assets(*sorted(training)), experiment, {}))
    if scoring:
        planned.append((dg.AssetSelection.assets(*sorted(scoring)), None, range_tags))
    runs: list[dg.ExecuteInProcessResult] = []
    for selection_of_run, partition, run_tags in planned:
        if not all(r.success for r in runs):
            break
        runs.append(
            dg.materialize(
                [*assets, *checks],
                selection=selection_of_run,
                partition_key=partition,
                resources=resources,
                instance=instance,
                tags={**run_tags, **(tags or {})},
                raise_on_error=raise_on_error,
            )
        )
    return GraphRuns(runs)
