"""Build the wheel of a source checkout: `make wheel`, or `python -m trainflow.packaging`.

An installed package has no repository beside it, so the wheel carries copies of what the
code reads from the repository (settings.py decides which one is read): the configs, the
dbt project with its manifest parsed at build time (loading the code location then parses
nothing and writes nothing), and requirements.lock (a run manifest records its hash). A
clean checkout also writes its commit into BUILD_COMMIT; one with uncommitted changes
writes none, since the package's code is not that commit's (TRAINFLOW_GIT_COMMIT can
still name one at run time).

The wheel is built from a copy of the checkout in a temporary folder, so the bundled copies
never appear in `src/trainflow/` (where they could be mistaken for the repository's files)
and no stale file of an earlier build (setuptools' build/) can slip into the wheel. Nothing
is downloaded: pip builds without an index or build isolation, with this environment's
setuptools.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from trainflow.defs.dbt import parse_dbt_project
from trainflow.manifest import git_state
from trainflow.settings import BUILD_COMMIT_FILE, BUNDLE_DIR, PACKAGE_DIR, REPO_ROOT

# What the build reads from the checkout, beside src/.
BUILD_FILES = ("pyproject.toml", "README.md")
# Local state and build output, never part of the wheel.
IGNORED = shutil.ignore_patterns(
    "__pycache__", "*.pyc", "*.egg-info", "target", "logs", "dbt_packages", ".user.yml"
)


class PackagingError(RuntimeError):
    """The wheel cannot be built from here (not a source checkout, or a step failed)."""


def _checkout() -> Path:
    if REPO_ROOT is None:
        raise PackagingError("the wheel is built from a source checkout, not an installed package")
    return REPO_ROOT


def clean_commit(repo: Path) -> str | None:
    """HEAD's commit when the checkout has no uncommitted change to a tracked file (what
    `git_state` calls clean), else None."""
    state = git_state(repo)
    return state["commit"] if state["source"] == "git" and not state["dirty"] else None


def stage(tree: Path) -> Path:
    """Copy the checkout's build inputs into `tree` with the project files bundled into the
    package and the dbt manifest parsed; returns the bundle folder."""
    repo = _checkout()
    for name in BUILD_FILES:
        shutil.copy2(repo / name, tree / name)
    shutil.copytree(
        repo / "src",
        tree / "src",
        ignore=shutil.ignore_patterns(
            "__pycache__", "*.pyc", "*.egg-info", BUNDLE_DIR.name, BUILD_COMMIT_FILE.name
        ),
    )
    package = tree / "src" / PACKAGE_DIR.name
    bundle = package / BUNDLE_DIR.name
    shutil.copytree(repo / "configs", bundle / "configs", ignore=IGNORED)
    shutil.copytree(repo / "dbt_project", bundle / "dbt_project", ignore=IGNORED)
    shutil.copy2(repo / "requirements.lock", bundle / "requirements.lock")
    manifest = parse_dbt_project(bundle / "dbt_project")
    # Only the manifest ships: dbt's other outputs (partial_parse.msgpack above all) hold
    # this build folder's absolute paths, and a run re-parses into TRAINFLOW_HOME anyway.
    for path in manifest.parent.iterdir():
        if path != manifest:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    shutil.rmtree(bundle / "dbt_project" / "logs", ignore_errors=True)
    commit = clean_commit(repo)
    if commit:
        (package / BUILD_COMMIT_FILE.name).write_text(commit + "\n")
    return bundle


def build_wheel(out: Path) -> Path:
    """Build trainflow's wheel into `out`; returns its path."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="trainflow-wheel-") as folder:
        tree = Path(folder)
        stage(tree)
        built = tree / "dist"
        done = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index",
             "--no-build-isolation", "--wheel-dir", str(built), str(tree)],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        wheels = sorted(built.glob("trainflow-*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            raise PackagingError(f"pip wheel failed:\n{done.stdout}\n{done.stderr}")
        target = out / wheels[0].name
        shutil.copy2(wheels[0], target)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("dist"), help="folder for the wheel")
    args = parser.parse_args(argv)
    wheel = build_wheel(args.out.resolve())
    print(f"built {wheel}")
    if clean_commit(_checkout()) is None:
        print("note: uncommitted changes (or no git), so the wheel carries no BUILD_COMMIT")


if __name__ == "__main__":
    main()
