"""Every trainflow asset's code version, derived from its code (`trainflow.code_version`).

Code versions are part of each asset's cache key and of every registered model's lineage
(docs/architecture.md). Nobody bumps them by hand: editing an asset's function, a helper it
uses or any trainflow module it imports changes its version, a comment or formatting edit
does not. The table below holds only what the code cannot show:
- `human`: a deliberate bump (e.g. a library's behaviour changed under the same version);
- `libraries`: the distributions that compute the asset's output; their installed
  versions are part of its version, so an upgrade is a cache miss.
"""

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dagster as dg

from trainflow.code_version import CodeVersion, SourceTree, derive_code_version
from trainflow.defs.pods import time_limited


@dataclass(frozen=True)
class AssetCode:
    human: str = "1"
    libraries: tuple[str, ...] = ()


ASSET_CODE: dict[str, AssetCode] = {
    "raw_snapshot": AssetCode(libraries=("duckdb", "psycopg2-binary", "polars", "pyarrow")),
    "validated_flights": AssetCode(libraries=("pandera", "polars")),
    "flight_features": AssetCode(libraries=("polars",)),
    "training_dataset": AssetCode(libraries=("polars",)),
    "model": AssetCode(libraries=("lightgbm", "numpy", "polars")),
    "evaluation_report": AssetCode(libraries=("lightgbm", "numpy", "polars", "scikit-learn")),
    "registry_entry": AssetCode(),
    "flight_delay_predictions": AssetCode(libraries=("lightgbm", "numpy", "polars")),
    "champion_live_performance": AssetCode(libraries=("numpy", "polars", "scikit-learn")),
}
# The installed source tree; parsed once per process, a few milliseconds per asset.
_SOURCE = SourceTree.installed()


def derived_code_version(fn: Callable[..., Any]) -> CodeVersion:
    """The code version of an asset function (decorators such as `fail_fast` unwrapped)."""
    target = inspect.unwrap(fn)
    spec = ASSET_CODE[target.__name__]
    return derive_code_version(
        _SOURCE, target.__module__, target.__name__, human=spec.human, libraries=spec.libraries
    )


def versioned_asset(**kwargs: Any) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """`dagster.asset` with the code version derived from the decorated function.

    What went into the version (modules, helpers, library versions) is attached as
    definition metadata, so the UI shows why a version changed.
    """

    def decorate(fn: Callable[..., Any]) -> dg.AssetsDefinition:
        derived = derived_code_version(fn)
        metadata = {
            **kwargs.pop("metadata", {}),
            "code_version_sources": dg.MetadataValue.json(list(derived.sources)),
            "code_version_libraries": dg.MetadataValue.json(dict(derived.libraries)),
        }
        # The time limit wraps the function outside its code version: how long a step may
        # run does not change what it computes (defs/pods.py).
        limited = time_limited(inspect.unwrap(fn).__name__, fn)
        return dg.asset(code_version=derived.version, metadata=metadata, **kwargs)(limited)

    return decorate


def code_versions_of_job(context: dg.AssetExecutionContext) -> dict[str, str]:
    """name -> code version of every trainflow asset in the running job's asset graph (what
    a manifest records), as Dagster knows them."""
    graph = context.job_def.asset_layer.asset_graph
    found = {}
    for name in ASSET_CODE:
        key = dg.AssetKey(name)
        if graph.has(key) and graph.get(key).code_version is not None:
            found[name] = str(graph.get(key).code_version)
    return found
