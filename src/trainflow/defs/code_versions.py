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


# asset name -> its code version, as each versioned asset is defined (defined_code_versions).
DEFINED_VERSIONS: dict[str, str] = {}


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
        DEFINED_VERSIONS[kwargs.get("name") or inspect.unwrap(fn).__name__] = derived.version
        return dg.asset(code_version=derived.version, metadata=metadata, **kwargs)(limited)

    return decorate


def defined_code_versions() -> dict[str, str]:
    """name -> code version of every trainflow asset defined so far (what a manifest
    records and what upstream partitions are checked against): the definitions import every
    asset module, so a step sees them all. From the definitions, not the running job: an
    experiment's run holds the training side only, and `dagster.materialize` in process
    sets no repository on the step's context."""
    return {name: DEFINED_VERSIONS[name] for name in ASSET_CODE if name in DEFINED_VERSIONS}
