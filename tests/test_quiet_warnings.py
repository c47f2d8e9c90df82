"""trainflow's warning filters hide exactly the warnings they name: the same message from
another module, or another message of the same category from the same module, still shows."""

from __future__ import annotations

import warnings

import pytest

from trainflow import quiet_warnings
from trainflow.quiet_warnings import QUIET_WARNINGS, QuietWarning

BETA_TAIL = (
    ", and may have breaking changes in minor version releases, with behavior changes in "
    "patch releases."
)
# Each filter's warning as Dagster words it, and the module it is attributed to.
RAISED = {
    "backfill_policy of asset": (
        "Parameter `backfill_policy` of function `asset` is currently in beta" + BETA_TAIL,
        "dagster._core.decorator_utils",
    ),
    "allow_nonexistent_upstream_partitions of TimeWindowPartitionMapping.__init__": (
        "Parameter `allow_nonexistent_upstream_partitions` of initializer "
        "`TimeWindowPartitionMapping.__init__` is currently in beta" + BETA_TAIL,
        "trainflow.defs.features",
    ),
    "include_sources of AssetSelection.all": (
        "Parameter `include_sources` of function `AssetSelection.all` is currently in beta"
        + BETA_TAIL,
        "dagster._core.definitions.antlr_asset_selection.antlr_asset_selection",
    ),
    "include_sources of AssetSelection.groups": (
        "Parameter `include_sources` of function `AssetSelection.groups` is currently in beta"
        + BETA_TAIL,
        "dagster._core.definitions.antlr_asset_selection.antlr_asset_selection",
    ),
}


def parameter(quiet: QuietWarning) -> str:
    """`<parameter> of <function>`, as the filter's message names them."""
    parts = quiet.message.replace("\\", "").split("`")
    return f"{parts[1]} of {parts[3]}"


def shown(category: type[Warning], message: str, module: str) -> bool:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_warnings.install()
        warnings.warn_explicit(message, category, "somewhere.py", 1, module=module, registry={})
    return bool(caught)


def test_every_filter_has_a_raised_warning_and_a_reason() -> None:
    assert {parameter(q) for q in QUIET_WARNINGS} == set(RAISED)
    assert all(len(q.why) > 40 for q in QUIET_WARNINGS)


@pytest.mark.parametrize("quiet", QUIET_WARNINGS, ids=parameter)
def test_a_filter_hides_its_warning_only(quiet: QuietWarning) -> None:
    message, module = RAISED[parameter(quiet)]
    assert not shown(quiet.category, message, module)
    assert shown(quiet.category, message, "some_other_package.module")
    assert shown(quiet.category, "Parameter `other` of function `asset` is in beta", module)
    assert shown(UserWarning, message, module)
