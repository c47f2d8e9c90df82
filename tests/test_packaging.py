"""trainflow runs from an installed wheel, not only from a source checkout.

The wheel (`make wheel`) is installed into a fresh virtual environment outside the
repository and used from another folder: the definitions load, the dbt models build, the
CLI works, and neither the package folder nor the repository is written to. The fresh
environment gets the repository environment's dependencies through a `.pth` line (a plain
path: the editable install's own `.pth`, which points at src/, is not processed), so the
test takes seconds instead of a reinstall; the test checks that trainflow itself is the
wheel's copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import BIN, REPO_ROOT
from trainflow import settings
from trainflow.manifest import git_state
from trainflow.packaging import PackagingError, build_commit, build_wheel

DBT_MODELS = [
    "stg_flights",
    "stg_weather",
    "stg_planes",
    "stg_airports",
    "stg_airlines",
    "stg_landings",
    "flights_enriched",
]

# Run by the fresh environment's python: what it imported and what settings it found,
# then a `dbt build` of the warehouse models through the loaded definitions.
LOAD_AND_BUILD = f"""
import json, sys
import dagster as dg
import trainflow
from trainflow import settings
from trainflow.definitions import defs

keys = sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys())
found = settings.Settings.from_env()
job = defs.resolve_implicit_global_asset_job_def()
result = job.execute_in_process(asset_selection=[dg.AssetKey(m) for m in {DBT_MODELS!r}])
built = sorted(
    e.asset_key.to_user_string() for e in result.get_asset_materialization_events()
    if e.asset_key is not None
)
print(json.dumps({{
    "package": trainflow.__file__,
    "sys_path": sys.path,
    "source_checkout": settings.SOURCE_CHECKOUT,
    "dbt_project": str(settings.DBT_PROJECT_DIR),
    "config": str(found.config_path),
    "lock": str(settings.LOCK_FILE),
    "git_commit": found.git_commit,
    "assets": keys,
    "built": built,
    "success": result.success,
}}))
"""


def files_under(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file below `folder` with its size and modification time (bytecode caches
    aside: Python may write those on import anywhere it can)."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fresh_venv(folder: Path, wheel: Path) -> tuple[Path, Path]:
    """A new virtual environment with the wheel installed (no dependencies) and the
    repository environment's site-packages appended to its path; returns its bin/ and
    site-packages."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=120)
    bin_dir = folder / "bin"
    subprocess.run(
        [bin_dir / "python", "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         str(wheel)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    site = Path(sysconfig.get_path("purelib", vars={"base": folder, "platbase": folder}))
    assert site.is_dir(), site
    (site / "repository-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    # dbt's console script, as pip writes it when it installs dbt-core into an environment.
    script = (BIN / "dbt").read_text().split("\n", 1)[1]
    (bin_dir / "dbt").write_text(f"#!{bin_dir / 'python'}\n{script}")
    (bin_dir / "dbt").chmod(0o755)
    return bin_dir, site


def test_the_installed_wheel_runs_outside_the_repository(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist")
    bin_dir, site = fresh_venv(tmp_path / "venv", wheel)
    assert REPO_ROOT not in bin_dir.parents
    package = site / "trainflow"
    package_files = files_under(package)
    repo_target = files_under(REPO_ROOT / "dbt_project" / "target")
    assert "bundled/dbt_project/target/manifest.json" in package_files

    elsewhere, home = tmp_path / "elsewhere", tmp_path / "home"
    elsewhere.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRAINFLOW_", "DAGSTER_", "DBT_", "MLFLOW_", "PYTHON", "VIRTUAL_"))
    }
    env |= {
        "TRAINFLOW_HOME": str(home),
        "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONWARNINGS": "ignore",
    }

    def run(*args: str | Path) -> str:
        done = subprocess.run(
            args, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"{args}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    assert "land" in run(bin_dir / "trainflow", "--help")
    assert "landed 3 day(s) 2013-01-01..2013-01-03" in run(
        bin_dir / "trainflow", "land", "--through", "2013-01-03"
    )
    status = run(bin_dir / "trainflow", "status")
    assert "(3 days landed, 2013-01-01..2013-01-03, scale 1)" in status
    assert "dagster dev -m trainflow.definitions" in status
    facts = json.loads(run(bin_dir / "python", "-c", LOAD_AND_BUILD).splitlines()[-1])

    assert Path(facts["package"]).parent == package
    assert str(REPO_ROOT / "src") not in facts["sys_path"]
    assert facts["source_checkout"] is False
    assert Path(facts["dbt_project"]) == package / "bundled" / "dbt_project"
    config = Path(facts["config"])
    assert config == package / "bundled" / "configs" / "experiment.yaml"
    assert config.read_bytes() == (REPO_ROOT / "configs" / "experiment.yaml").read_bytes()
    assert Path(facts["lock"]) == package / "bundled" / "requirements.lock"
    assert sha256(Path(facts["lock"])) == sha256(REPO_ROOT / "requirements.lock")
    # A clean checkout's wheel names its commit; one built with uncommitted changes none.
    assert facts["git_commit"] == build_commit(REPO_ROOT)
    assert set(DBT_MODELS) <= set(facts["assets"])
    assert facts["success"] and facts["built"] == sorted(DBT_MODELS)
    # dbt wrote its run artifacts under TRAINFLOW_HOME; nothing in the package or repository.
    assert list((home / "dbt" / "target").glob("*/run_results.json"))
    assert files_under(package) == package_files
    assert files_under(REPO_ROOT / "dbt_project" / "target") == repo_target


def test_a_checkout_reads_the_repository_files_not_a_bundled_copy() -> None:
    """Editing configs/, dbt_project/ or the lock in a checkout counts at once."""
    assert settings.SOURCE_CHECKOUT
    assert settings.REPO_ROOT == REPO_ROOT
    assert settings.DBT_PROJECT_DIR == REPO_ROOT / "dbt_project"
    assert settings.DEFAULT_CONFIG == REPO_ROOT / "configs" / "experiment.yaml"
    assert settings.LOCK_FILE == REPO_ROOT / "requirements.lock"
    # dbt run artifacts go under TRAINFLOW_HOME, never into the source tree.
    assert settings.DBT_PROJECT_DIR not in settings.Settings.from_env({}).dbt_target_dir.parents
    assert not settings.BUNDLE_DIR.exists()


def test_an_installed_package_never_asks_git(tmp_path: Path) -> None:
    """Without a checkout the commit is the baked one, even inside another repository."""
    assert git_state(None, "abc123") == {"commit": "abc123", "dirty": False, "source": "image"}
    assert git_state(None) == {"commit": "unknown", "dirty": None, "source": "none"}
    assert git_state(REPO_ROOT)["source"] == "git"


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    return done.stdout.strip()


def test_commit_option_names_the_commit_only_where_git_cannot(tmp_path: Path) -> None:
    """`--commit` (an image's GIT_COMMIT) is what a copy without .git bakes; in a checkout
    git decides, and a `--commit` contradicting a clean HEAD is refused. No wheel is built."""
    copy = tmp_path / "context"
    copy.mkdir()
    assert build_commit(copy, "ABCDEF1234") == "abcdef1234"
    assert build_commit(copy, None) is None
    with pytest.raises(PackagingError, match="not a git commit"):
        build_commit(copy, "dirty")

    checkout = tmp_path / "checkout"
    checkout.mkdir()
    git(checkout, "init", "-q")
    (checkout / "f.txt").write_text("one\n")
    git(checkout, "add", "f.txt")
    git(checkout, "commit", "-q", "-m", "one")
    head = git(checkout, "rev-parse", "HEAD")
    assert build_commit(checkout, None) == head
    assert build_commit(checkout, head) == head
    assert build_commit(checkout, head[:12]) == head
    with pytest.raises(PackagingError, match="disagrees"):
        build_commit(checkout, "0" * 40)
    # Uncommitted changes: the code is no commit's, whatever --commit says.
    (checkout / "f.txt").write_text("two\n")
    assert build_commit(checkout, head) is None
