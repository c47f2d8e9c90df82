"""A stage's `Step` (trainflow/stages/step.py) filled from a Dagster asset's context.

What the stage reports goes straight to Dagster: log lines to the run's log, partition
metadata to that partition's materialization, output metadata to the asset's output.
"""

from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from trainflow.defs.caching import CachePolicyResource, code_version_of
from trainflow.defs.code_versions import defined_code_versions
from trainflow.defs.metadata import to_dagster
from trainflow.stages.step import Step


@dataclass
class DagsterStep(Step):
    context: Any = field(default=None, repr=False)
    # An asset with checks has several outputs: its own is named (`result`).
    output_name: str | None = None

    def info(self, message: str) -> None:
        self.logs.append(("info", message))
        self.context.log.info(message)

    def warning(self, message: str) -> None:
        self.logs.append(("warning", message))
        self.context.log.warning(message)

    def add_partition_metadata(self, day: Any, metadata: dict[str, Any]) -> None:
        super().add_partition_metadata(day, metadata)
        self.context.add_asset_metadata(to_dagster(metadata), partition_key=day.isoformat())

    def add_output_metadata(self, metadata: dict[str, Any]) -> None:
        super().add_output_metadata(metadata)
        extra = {"output_name": self.output_name} if self.output_name else {}
        self.context.add_output_metadata(to_dagster(metadata), **extra)

    def tag_run(self, tags: dict[str, str]) -> None:
        super().tag_run(tags)
        self.context.instance.add_run_tags(self.run_id, tags)


def step_of(
    context: dg.AssetExecutionContext,
    cache_policy: CachePolicyResource | None = None,
    output_name: str | None = None,
) -> Step:
    """The running asset as a stage sees it: name, run, code versions, forced or not.

    The code versions are those of every trainflow asset of the definitions, not of the
    run's job alone: an experiment's run holds only the training side, and its manifest
    still records the daily assets' versions (its lineage reaches the raw snapshot)."""
    versions = defined_code_versions()
    return DagsterStep(
        asset=context.asset_key.to_user_string(),
        run_id=context.run_id,
        code_version=code_version_of(context),
        force=cache_policy.forced(context) if cache_policy is not None else False,
        job_name=context.job_name,
        upstream_code_versions=dict(versions),
        code_versions=versions,
        # The tags the run was launched with (a run may name its as-of day: trainflow.as_of).
        run_tags=dict(context.run.tags),
        context=context,
        output_name=output_name,
    )
