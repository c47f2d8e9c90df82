"""The Dagster UI in a real browser: what a first-time user sees, clicked through.

Debian's Chromium (`apt-get install chromium`), driven headless by Playwright's sync API,
against one `dagster dev` (webserver, daemon, code server on loopback) over a lake the
quick config materialized (January to train, February to validate and test):
1. the global lineage graph shows a node for every asset of the definitions, dbt models
   included, in the definitions' groups;
2. the `evaluation_report` page shows the model's metrics and its plots as images;
3. an asset's Checks tab shows each check with its result;
4. a partition launched from the asset's Materialize dialog runs and is materialized;
5. a second experiment, added with its config file, launched from the training group's
   Materialize dialog as a partition of the experiments, trains into its own rows, and its
   partition's page shows the model's validation metric.
Each step leaves a screenshot in $TRAINFLOW_UI_SCREENSHOTS (CI keeps that folder as an
artifact), else in this run's pytest temp folder. Without Chromium the module skips on a
laptop and fails in CI (`CI` set), like every service the tests need.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from tests.conftest import QUICK_CONFIG, REPO_ROOT, user_environment
from tests.dagster_dev import LOCATION, DagsterDev
from tests.helpers.environment import whole_graph_commands
from trainflow.config import load_config
from trainflow.experiments import write_variant
from trainflow.lake.delta_lake import DeltaLake
from trainflow.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; never Playwright's own download
# The network here may be closed: without these, Chromium stalls on refused connections.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
MATERIALIZED = ("2013-01-01", "2013-02-28")  # the quick config's train, validation and test
UI_DAY = "2013-03-01"  # landed but not materialized: the partition launched from the UI
UI_ASSET = "raw_snapshot"
TIMEOUT_MS = 60_000  # a page on a busy 2-core machine; waits are on selectors, never sleeps

# What the evaluation_report page must show, by metadata key; extend these lists as the
# asset gains metadata. Numbers: the row shows a number in (0, 1]. Images: the row's
# Markdown opens with inline PNG images that the browser decoded.
REPORT_NUMBERS = ["test_roc_auc"]
REPORT_IMAGES = ["plots"]

# What the Checks tab says of a check, as XPath tests on the box that holds its name.
OUTCOMES = [
    f"contains(., '{word}')"
    for word in ("Succeeded", "Failed", "Not evaluated", "Skipped", "Running", "Warning")
]
RUNS = """
query Runs($filter: RunsFilter!) {
  runsOrError(filter: $filter) {
    ... on Runs { results { runId status tags { key value } } }
  }
}"""
PARTITIONS = """
query Partitions($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      assetPartitionStatuses {
        ... on TimePartitionStatuses { ranges { status startKey endKey } }
      }
    }
  }
}"""


def run(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(args, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.is_file():
        message = f"the UI tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return CHROMIUM


def ui_config(folder: Path) -> Path:
    """The quick config with 30 boosting rounds (early stopping ends it after about 116): a
    shorter training step, and the UI shows the same metadata, plots and checks."""
    text = QUICK_CONFIG.read_text()
    assert "num_boost_round: 2000" in text
    path = folder / "ui-quick.yaml"
    path.write_text(text.replace("num_boost_round: 2000", "num_boost_round: 30"))
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("ui_home")
    return user_environment(home, ui_config(home))


@pytest.fixture(scope="module")
def dagster_dev(
    chromium: Path, env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DagsterDev]:
    """`dagster dev` over a lake materialized as a user does it: `trainflow land`, then
    `dagster asset materialize` of the daily side over January and February and of the
    config's experiment (while the UI starts)."""
    run(["trainflow", "land", "--through", UI_DAY], env)
    # The instance's SQLite tables, made once here: two processes starting on an empty
    # DAGSTER_HOME both create them, and one fails ("table ... already exists").
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        instance.get_runs(limit=1)
        instance.fetch_materializations(dg.AssetKey(UI_ASSET), limit=1)
    logs = tmp_path_factory.mktemp("ui_logs")
    with (logs / "materialize.log").open("w") as out:
        # The daily run, the experiment added, its training run: one after the other.
        commands = whole_graph_commands("...".join(MATERIALIZED), Path(env["TRAINFLOW_CONFIG"]))
        materialize = subprocess.Popen(
            ["bash", "-c", " && ".join(shlex.join(c) for c in commands)],
            env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    dev = None
    try:
        dev = DagsterDev(env, logs / "dagster-dev.log")
        code = materialize.wait(timeout=900)
        assert code == 0, (logs / "materialize.log").read_text()[-6000:]
        yield dev
    finally:
        materialize.kill()
        materialize.wait()
        if dev is not None:
            dev.stop()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("TRAINFLOW_UI_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("ui-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any, dagster_dev: DagsterDev, screenshots: Path, request: Any) -> Iterator[Any]:
    """A fresh page on the webserver (the first-visit "join the community" dialog
    dismissed); a screenshot of where it ended, passed or failed."""
    context = browser.new_context(
        viewport={"width": 1600, "height": 1000}, base_url=dagster_dev.url
    )
    context.add_init_script("window.localStorage.setItem('communityNux', '1')")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        page.screenshot(
            path=str(screenshots / f"{request.node.name}-end.png"), animations="disabled"
        )
        context.close()


def shot(page: Any, screenshots: Path, name: str) -> None:
    """A screenshot once the page's requests settle (asset statuses arrive after the graph)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    # The UI polls; the screenshot is for a reader, no assertion depends on this wait.
    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_load_state("networkidle", timeout=10_000)
    # Transitions fast-forwarded: a dialog is shown opened, not half faded in.
    page.screenshot(path=str(screenshots / f"{name}.png"), animations="disabled")


@pytest.fixture(scope="module")
def graph() -> Any:
    from trainflow.definitions import defs

    return defs.resolve_asset_graph()


def dbt_models() -> set[str]:
    """The dbt project's models, from its parsed manifest."""
    from trainflow.defs.dbt import ensure_manifest

    nodes = json.loads(ensure_manifest().read_text())["nodes"].values()
    return {node["name"] for node in nodes if node["resource_type"] == "model"}


def untruncated(text: str, names: list[str]) -> str:
    """The one name a node's text stands for: itself, or, cut in the middle with an
    ellipsis, the only name with that head and tail (else the text, failing the test)."""
    if "\u2026" not in text:
        return text
    head, tail = text.split("\u2026", 1)
    found = [n for n in names if n.startswith(head) and n.endswith(tail) and len(n) > len(text)]
    return found[0] if len(found) == 1 else text


def test_the_lineage_graph_shows_every_asset_and_dbt_model(page, graph, screenshots) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    keys = list(graph.get_all_asset_keys())
    groups = {graph.get(key).group_name for key in keys}
    page.goto("/asset-groups")
    for group in groups:  # collapsed at first: one box per group
        expect(page.get_by_text(group, exact=True).first).to_be_visible()
    shot(page, screenshots, "01-lineage-groups")
    page.keyboard.press("Alt+KeyE")  # "Expand all groups" (the graph's context menu)
    names = page.locator("[class*='AssetNode_assetName']")
    expect(names).to_have_count(len(keys))
    # Statuses arrive after the graph (a materialized node turns green): for the screenshot.
    with contextlib.suppress(PlaywrightTimeout):
        page.locator("[style*='color-background-green']").first.wait_for(timeout=15_000)
    shot(page, screenshots, "02-lineage-expanded")
    # A node shows the last part of its key (raw/flights: flights), each exactly once; a
    # long name is cut in the middle (champion_live_performance: champ…_performance).
    expected = sorted(key.path[-1] for key in keys)
    shown = sorted(untruncated(text, expected) for text in names.all_inner_texts())
    assert shown == expected
    assert dbt_models() <= set(shown)


def test_the_evaluation_report_shows_its_metrics_and_plots(page, screenshots) -> None:
    from playwright.sync_api import expect

    page.goto("/assets/evaluation_report")

    def metadata_row(key: str) -> Any:
        row = page.locator("tr", has=page.locator("td", has_text=re.compile(rf"^{key}$")))
        expect(row.first).to_be_visible()
        row.first.scroll_into_view_if_needed()
        return row.first

    for key in REPORT_NUMBERS:
        value = metadata_row(key).locator("td").last.inner_text().strip()
        assert re.fullmatch(r"[01]\.\d+|1", value) and 0 < float(value) <= 1, (key, value)
    shot(page, screenshots, "03-evaluation-report-metadata")
    for key in REPORT_IMAGES:
        metadata_row(key).get_by_text("[Show Markdown]").click()
        dialog = page.get_by_role("dialog")
        images = dialog.locator("img[src^='data:image/png']")
        expect(images.first).to_be_visible()
        widths = images.evaluate_all("imgs => imgs.map(img => img.complete && img.naturalWidth)")
        assert widths and all(width > 0 for width in widths), (key, widths)
        shot(page, screenshots, f"04-evaluation-report-{key}")
        page.keyboard.press("Escape")
        expect(dialog).to_have_count(0)


def test_the_checks_tab_shows_each_check_and_its_result(page, graph, screenshots) -> None:
    from playwright.sync_api import expect

    asset = dg.AssetKey("validated_flights")
    names = sorted(k.name for k in graph.asset_check_keys if k.asset_key == asset)
    # Checks a sensor evaluates (freshness) have no result after a run; the contract's do.
    contract = [n for n in names if graph.get_check_spec(dg.AssetCheckKey(asset, n)).blocking]
    assert len(contract) >= 8
    page.goto("/assets/validated_flights?view=checks")
    for name in contract:
        item = page.get_by_text(name, exact=True).first
        expect(item).to_be_visible()
        # The list item: the check's name over its outcome (the nearest box with one).
        outcome = item.locator(f"xpath=ancestor::*[{' or '.join(OUTCOMES)}][1]")
        expect(outcome).to_contain_text("Succeeded")
    page.get_by_text(contract[0], exact=True).first.click()
    expect(page.get_by_text("Evaluation result")).to_be_visible()
    expect(page.get_by_text("Passed", exact=True).first).to_be_visible()
    shot(page, screenshots, "05-validated-flights-checks")


def finished_run_of(dagster_dev: DagsterDev, partition: str) -> dict[str, Any] | None:
    """The newest finished run of a partition (a day or an experiment), as the UI lists it."""
    filter_ = {"tags": [{"key": "dagster/partition", "value": partition}]}
    runs = dagster_dev.graphql(RUNS, {"filter": filter_})["runsOrError"]["results"]
    done = [r for r in runs if r["status"] in {"SUCCESS", "FAILURE", "CANCELED"}]
    return done[0] if done else None


def test_a_partition_launched_from_the_ui_is_materialized(page, dagster_dev, screenshots) -> None:
    from playwright.sync_api import expect

    page.goto(f"/assets/{UI_ASSET}")
    page.get_by_role("button", name=re.compile(r"Materialize…$")).click()
    dialog = page.get_by_role("dialog")
    partitions = dialog.get_by_placeholder(re.compile("^ex: 2013-01-01"))
    partitions.fill(UI_DAY)
    partitions.press("Enter")
    launch = dialog.get_by_role("button", name="Launch 1 run")
    expect(launch).to_be_enabled()
    shot(page, screenshots, "06-launch-one-partition")
    launch.click()
    expect(dialog).to_have_count(0)

    launched = dagster_dev.wait_for(
        lambda: finished_run_of(dagster_dev, UI_DAY), 300, f"the run of {UI_ASSET} {UI_DAY}"
    )
    assert launched["status"] == "SUCCESS", (launched, dagster_dev.tail())
    tags = {t["key"]: t["value"] for t in launched["tags"]}
    assert tags.get("dagster/from_ui") == "true", tags
    ranges = dagster_dev.graphql(PARTITIONS, {"key": {"path": [UI_ASSET]}})["assetNodeOrError"][
        "assetPartitionStatuses"
    ]["ranges"]
    assert {"status": "MATERIALIZED", "startKey": MATERIALIZED[0], "endKey": UI_DAY} in ranges
    # The UI agrees: the partition bar counts the new day.
    page.goto(f"/assets/{UI_ASSET}?view=partitions")
    expect(page.get_by_text("Materialized (60)")).to_be_visible()
    shot(page, screenshots, "07-partition-materialized")


def test_an_experiment_launched_from_the_ui_trains_in_its_own_partition(
    page, dagster_dev, env, screenshots, tmp_path
) -> None:
    """A second experiment added with one config file (`trainflow experiments add`) is a
    partition the Launchpad offers: the training group launched for it from the UI trains
    its own rows, and its partition's page shows the model's validation metric."""
    from playwright.sync_api import expect

    variant = write_variant(Path(env["TRAINFLOW_CONFIG"]), tmp_path, "ui-31-leaves",
                            {"num_leaves": 31})  # fmt: skip
    run(["trainflow", "experiments", "add", str(variant)], env)
    name = load_config(variant).name
    page.goto(f"/locations/{LOCATION}/asset-groups/training")
    page.get_by_role("button", name=re.compile(r"Materialize all…$")).click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Select a partition or create one").click()
    page.locator(f"[data-tooltip='{name}']").click()
    # A click on the dialog's plain text closes the dropdown; the dialog stays.
    dialog.get_by_text("Dagster will materialize").click()
    launch = dialog.get_by_role("button", name="Launch 1 run")
    expect(launch).to_be_enabled()
    shot(page, screenshots, "08-launch-one-experiment")
    launch.click()
    expect(dialog).to_have_count(0)

    launched = dagster_dev.wait_for(
        lambda: finished_run_of(dagster_dev, name), 600, f"the run of experiment {name}"
    )
    assert launched["status"] == "SUCCESS", (launched, dagster_dev.tail())
    lake = DeltaLake(Settings.from_env(env).lake_uri)
    assert set(lake.read("model")["experiment"]) == {
        load_config(Path(env["TRAINFLOW_CONFIG"])).name,
        name,
    }
    trained = lake.read("model", experiment=name).row(0, named=True)
    # The partition's page shows its materialization's metadata: the validation metric.
    page.goto(f"/assets/model?view=partitions&partition={name}")
    value = f"{trained['validation_roc_auc']:.4f}"[:5]
    expect(page.get_by_text("validation_roc_auc").first).to_be_visible()
    expect(page.get_by_text(re.compile(rf"^{re.escape(value)}")).first).to_be_visible()
    shot(page, screenshots, "09-experiment-partition")
