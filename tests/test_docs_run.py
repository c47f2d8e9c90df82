"""The docs' `local` shell blocks, run as a reader types them: in the order the reader meets
them (README first, then docs/), in one fresh trainflow home, from the repository root, with
a doc's placeholders replaced by the example values it states. Each block must exit 0, print
no warning on stderr, and show the effects its `<!-- expect: ... -->` comments name.

One home for all the docs keeps this inside make test's budget: the README's `make pipeline`
lands and builds the year once, and every later doc continues from there, as a reader's
checkout does. About 6 minutes on 2 cores.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from pathlib import Path

import dagster as dg
import pytest

from tests.conftest import BIN
from tests.doc_blocks import REPO_ROOT, Block, blocks, doc_files
from trainflow.defs.instigators import instigator_lines, served_locations

pytestmark = pytest.mark.timeout(3600)


def _working_tree_is_dirty() -> bool:
    done = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return bool(done.stdout.strip())


# As in tests/test_reproduce.py: a developer's uncommitted work makes every model these
# blocks train "dirty", which `trainflow reproduce` rightly refuses; on such a tree the
# runner adds --allow-dirty. CI runs a clean clone (and sets CI): there the block runs as written.
ALLOW_DIRTY = _working_tree_is_dirty() and not os.environ.get("CI")


def as_run(block: Block) -> str:
    """The block's text as the runner types it: the doc's example values in place."""
    text = block.with_values()
    return (
        text.replace("trainflow reproduce ", "trainflow reproduce --allow-dirty ")
        if ALLOW_DIRTY
        else text
    )


def local_blocks(path: Path) -> list[Block]:
    return [block for block in blocks(path) if block.is_shell and block.cls == "local"]


READER_ORDER = [path for path in doc_files() if local_blocks(path)]


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A new user's shell: a fresh home, the local profile, the default experiment config."""
    home = tmp_path_factory.mktemp("reader") / "trainflow"
    (home / "dagster").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster" / "dagster.yaml")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("TRAINFLOW_", "MLFLOW_", "AWS_"))
    }
    env.update(
        TRAINFLOW_HOME=str(home),
        DAGSTER_HOME=str(home / "dagster"),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def warnings_in(stderr: str) -> list[str]:
    """A Python warning (`file:line: SomeWarning: text`) or a notice of one."""
    return [
        line
        for line in stderr.splitlines()
        if "Warning" in line or "To suppress this warning" in line
    ]


def days(text: str) -> list[str]:
    first, last = (dt.date.fromisoformat(d) for d in text.split("..."))
    return [str(first + dt.timedelta(n)) for n in range((last - first).days + 1)]


def unmet(expect: str, stdout: str, env: dict[str, str]) -> str | None:
    """What an `expect:` comment claims, checked; None when it holds."""
    kind, _, rest = expect.partition(" ")
    if kind == "output":  # stdout or stderr: Dagster logs a run's progress on stderr
        return None if rest in stdout else f"the output has no {rest!r}"
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        if kind == "materialized":
            asset, _, partitions = rest.partition(" ")
            key = dg.AssetKey(asset.split("/"))
            if not partitions:
                found = instance.get_latest_materialization_event(key) is not None
                return None if found else f"{asset} was never materialized"
            missing = sorted(set(days(partitions)) - instance.get_materialized_partitions(key))
            return f"{asset} lacks partitions {missing}" if missing else None
        if kind == "running":
            from trainflow.definitions import defs

            instigator, name = rest.split()
            served = served_locations(REPO_ROOT / "workspace.yaml")
            lines = instigator_lines(instance, defs, served)
            if any(
                line.kind == instigator and line.name == name and line.served and line.running
                for line in lines
            ):
                return None
            return f"{instigator} {name} is not RUNNING in the served location {sorted(served)}"
    raise AssertionError(f"unknown expectation {expect!r}")


@pytest.mark.parametrize("path", READER_ORDER, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_the_local_blocks_run_as_written(path: Path, reader: dict[str, str]) -> None:
    for block in local_blocks(path):
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", as_run(block)],
            cwd=REPO_ROOT, env=reader, capture_output=True, text=True, timeout=1800,
        )  # fmt: skip
        said = f"{block.where}:\n{block.body}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-4000:]}"
        assert done.returncode == 0, said
        assert warnings_in(done.stderr) == [], said
        problems = [
            p for p in (unmet(e, done.stdout + done.stderr, reader) for e in block.expects) if p
        ]
        assert problems == [], said


def test_the_readme_comes_first_and_starts_from_nothing() -> None:
    """The first block a reader meets builds everything the later ones continue from."""
    first = local_blocks(READER_ORDER[0])[0]
    assert READER_ORDER[0].name == "README.md" and first.body.startswith("make pipeline")
