"""Every shell block of the docs carries a class, names commands and flags that exist and the
location `make dev` serves; every link resolves; the README stays a front door. Seconds: the
blocks that run are run by tests/test_docs_run.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import doc_blocks
from tests.doc_blocks import REPO_ROOT, Block, blocks, doc_files

README_MAX_LINES = 150


def every_block() -> list[Block]:
    return [block for path in doc_files() for block in blocks(path)]


def test_every_fenced_block_has_a_language_and_every_shell_block_a_class() -> None:
    assert [p for block in every_block() for p in doc_blocks.class_problems(block)] == []
    classes = {block.cls for block in every_block() if block.is_shell}
    assert {"local", "prod", "cluster", "illustrative"} <= classes


def test_every_command_names_subcommands_flags_and_targets_that_exist() -> None:
    shell = [block for block in every_block() if block.is_shell]
    assert len(shell) > 40
    assert [p for block in shell for p in doc_blocks.command_problems(block)] == []


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_link_resolves(path: Path) -> None:
    assert doc_blocks.link_problems(path) == []


def test_the_readme_is_a_front_door() -> None:
    text = (REPO_ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    assert "](docs/img/lineage.png)" in text, "the lineage picture from the UI"
    assert "make pipeline" in text and "make test" in text
    for step in ["land", "dg launch", "make dev", "reproduce", "promote", "rollback"]:
        assert step in text, step
    assert "| measurement | figure |" in text


# The test of the test: each check finds a planted mistake of its kind.
PLANTED = [
    ("```bash local\n.venv/bin/dg launch --assets '*' --partition-rang 2013-01-01...2013-01-02\n```\n",
     "`dg launch` has no option --partition-rang"),
    ("```bash local\n.venv/bin/dagster sensor start warehouse_days -m trainflow.definitions\n```\n",
     "names a location by module"),
    ("```bash local\n.venv/bin/dagster schedule start weekly_retrain\n```\n",
     "names no location"),
    ("```bash local\n.venv/bin/trainflow quarantine lst\n```\n", "has no subcommand 'lst'"),
    ("```bash local\nTRAINFLOW_CONFIG=x make pipelin\n```\n", "no target 'pipelin'"),
    ("```bash local\n.venv/bin/python benchmarks/plain_pipeline.py --thru 2013-02-28\n```\n",
     "has no option --thru"),
    ("```bash cluster\nkubectl -n t exec \"$loc\" -- trainflow code-versions --chek\n```\n",
     "has no option --chek"),
    ("```bash\n.venv/bin/trainflow status\n```\n", "a shell block without a class"),
    ("```\nprose\n```\n", "a fenced block without a language"),
]  # fmt: skip


@pytest.mark.parametrize("text,problem", PLANTED, ids=[p for _, p in PLANTED])
def test_a_planted_mistake_is_found(text: str, problem: str) -> None:
    (block,) = blocks(REPO_ROOT / "docs" / "planted.md", text)
    found = doc_blocks.class_problems(block) or doc_blocks.command_problems(block)
    assert any(problem in p for p in found), found
    assert all(p.startswith("docs/planted.md:1: ") for p in found), found


def test_the_same_commands_written_right_pass() -> None:
    text = (
        "```bash local\n.venv/bin/dagster sensor start warehouse_days -w workspace.yaml\n"
        "TRAINFLOW_CONFIG=x make pipeline\n.venv/bin/trainflow quarantine list\n```\n"
    )
    (block,) = blocks(REPO_ROOT / "docs" / "planted.md", text)
    assert doc_blocks.command_problems(block) == []


def test_a_planted_broken_link_and_anchor_are_found() -> None:
    readme = REPO_ROOT / "README.md"
    found = doc_blocks.link_problems(
        readme, "[a](docs/nope.md) [b](docs/runbook.md#no-such-heading) [c](docs/runbook.md#alerts)"
    )
    assert found == [
        "README.md: link to docs/nope.md: no such file",
        "README.md: link to docs/runbook.md#no-such-heading: no heading #no-such-heading",
    ]


def test_values_replace_the_placeholders_a_doc_states() -> None:
    text = (
        "```bash local\n.venv/bin/dg launch --assets '*' --partition-range FIRST...LAST\n```\n\n"
        "<!-- values: FIRST=2013-02-01 LAST=2013-02-07 -->\n<!-- expect: output done -->\n"
    )
    (block,) = blocks(REPO_ROOT / "docs" / "planted.md", text)
    assert "--partition-range 2013-02-01...2013-02-07" in block.with_values()
    assert block.expects == ["output done"]


def test_the_cluster_blocks_values_render_the_chart_they_install() -> None:
    """A cluster block that writes a values file and `helm install`s trainflow's chart with
    it: the file, as the doc writes it, renders every object valid for each Kubernetes
    version the chart supports, and the ConfigMap carries the doc's settings."""
    import re

    import helm_python as helm
    import yaml

    from tests.deploy.helpers import CHART_DIR, KUBERNETES_VERSIONS, validate_kubernetes
    from tests.deploy.test_helm import render

    installs = []
    for block in every_block():
        written = dict(re.findall(r"cat > (\S+) <<'EOF'\n(.*?)\nEOF\n", block.body + "\n", re.S))
        for file in re.findall(r"helm install \S+ helm/trainflow .*?-f (\S+)", block.body):
            if file in written:
                installs.append((block.where, yaml.safe_load(written[file])))
    assert installs, "docs/deploy.md writes my-trainflow.yaml and installs the chart with it"
    with helm.Chart.load(CHART_DIR) as chart:
        for where, values in installs:
            objects = render(chart, values)
            for obj in objects:
                for version in KUBERNETES_VERSIONS:
                    validate_kubernetes(obj, version)
            (config,) = [o for o in objects if o["kind"] == "ConfigMap"]
            assert config["data"]["TRAINFLOW_LAKE_URI"] == values["lakeUri"], where
