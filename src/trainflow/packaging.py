"""Build the wheel of a source checkout: `make wheel`, or `python -m trainflow.packaging`.

An installed package has no repository beside it, so the wheel carries copies of what the
code reads from the repository (settings.py decides which one is read): the configs, the
dbt project with its manifest parsed at build time (loading the code location then parses
nothing and writes nothing), and requirements.lock (a run manifest records its hash). A
clean checkout also writes its commit into BUILD_COMMIT; one with uncommitted changes
writes none, since the package's code is not that commit's (TRAINFLOW_GIT_COMMIT can
still name one at run time). A copy without git (an image's build context has no .git)
takes the commit from `--commit SHA`, which the image build passes from its GIT_COMMIT
argument; in a git checkout git decides, and a `--commit` naming another commit than a
clean HEAD is refused.

The wheel is built from a copy of the checkout in a temporary folder, so the bundled copies
never appear in `src/trainflow/` (where they could be mistaken for the repository's files)
and no stale file of an earlier build (setuptools' build/) can slip into the wheel. Nothing
is downloaded: pip builds without an index or build isolation, with this environment's
setuptools.
"""

from __future__ import annotations

import argparse
import re
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


# A full or abbreviated git object name (SHA-1 or SHA-256).
_COMMIT = re.compile(r"[0-9a-f]{7,64}")


def build_commit(repo: Path, given: str | None = None) -> str | None:
    """The commit to write into BUILD_COMMIT, if any.

    A git checkout decides by itself (HEAD when clean, none when dirty): `given` may only
    repeat a clean HEAD, since a wheel labelled with another commit would make every run
    manifest lie. Without git (a container build context) `given` is trusted: the one who
    copied the files knows which commit they are, and git cannot say."""
    if given is not None:
        given = given.strip().lower()
        if not _COMMIT.fullmatch(given):
            raise PackagingError(f"--commit {given!r} is not a git commit (7-64 hex digits)")
    state = git_state(repo)
    if state["source"] != "git":
        return given
    if state["dirty"]:
        return None
    head = str(state["commit"])
    if given is not None and not head.startswith(given):
        raise PackagingError(f"--commit {given} disagrees with the checkout's clean HEAD {head}")
    return head


def stage(tree: Path, commit: str | None = None) -> Path:
    """Copy the checkout's build inputs into `tree` with the project files bundled into the
    package and the dbt manifest parsed; `commit` (`build_commit`'s) goes into BUILD_COMMIT.
    Returns the bundle folder."""
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
    if commit:
        (package / BUILD_COMMIT_FILE.name).write_text(commit + "\n")
    return bundle


def build_wheel(out: Path, commit: str | None = None) -> Path:
    """Build trainflow's wheel into `out`, with `commit` in BUILD_COMMIT (what `build_commit`
    decided; None: the checkout's own clean HEAD, if any); returns its path."""
    baked = commit if commit is not None else build_commit(_checkout())
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="trainflow-wheel-") as folder:
        tree = Path(folder)
        stage(tree, baked)
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
    parser.add_argument(
        "--commit",
        help="the commit of a copy without git (an image build); a git checkout decides itself",
    )
    args = parser.parse_args(argv)
    try:
        commit = build_commit(_checkout(), args.commit or None)
        wheel = build_wheel(args.out.resolve(), commit)
    except PackagingError as exc:
        parser.exit(1, f"error: {exc}\n")
    print(f"built {wheel}")
    if commit is None:
        print("note: uncommitted changes (or no git and no --commit): no BUILD_COMMIT in the wheel")
    else:
        print(f"BUILD_COMMIT {commit}")


if __name__ == "__main__":
    main()
