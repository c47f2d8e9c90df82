"""What Dagster tells a stage about caching: whether the run forces a recompute, and the
running asset's code version. The keys are `trainflow.cache`, the hit-or-miss decisions
`trainflow.stages.step`."""

import dagster as dg

FORCE_TAG = "trainflow/force_recompute"


class CachePolicyResource(dg.ConfigurableResource):
    """`force_recompute: true` in run config (or the run tag `trainflow/force_recompute`)
    recomputes every selected asset whatever its cache key."""

    force_recompute: bool = False

    def forced(self, context: dg.AssetExecutionContext) -> bool:
        tagged = context.run.tags.get(FORCE_TAG, "").lower() in {"1", "true", "yes"}
        return self.force_recompute or tagged


def code_version_of(context: dg.AssetExecutionContext) -> str:
    """The running asset's code version as Dagster knows it (what the UI shows)."""
    version = context.assets_def.code_versions_by_key[context.asset_key]
    if version is None:
        raise ValueError(f"{context.asset_key.to_user_string()} has no code_version")
    return version
