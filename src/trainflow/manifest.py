"""The run manifest: everything needed to prove a model can be rebuilt (docs/reproducibility.md).

A manifest records the code (git commit, dirty flag, lockfile hash, code versions), the
full config and its hash, every seed, the Delta version, data version and content hash of
every input partition, library versions, Python, OS and hardware, and the Dagster run.
`trainflow reproduce` reads it back; nothing in it is needed to *run* the pipeline.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import polars as pl

MANIFEST_VERSION = 1
MANIFEST_ARTIFACT = "manifest.json"
LIBRARIES = (
    "dagster",
    "dagster-dbt",
    "dbt-core",
    "deltalake",
    "duckdb",
    "lightgbm",
    "mlflow",
    "numpy",
    "pandera",
    "polars",
    "pyarrow",
    "scikit-learn",
)


def content_hash(frame: pl.DataFrame) -> str:
    """sha256 of the frame's CSV form: independent of Arrow/Parquet encoding details,
    sensitive to every value, column name and row order (callers sort by a stable key).
    Nested columns (lists, structs) are hashed through their JSON encoding."""
    nested = [name for name, dtype in frame.schema.items() if dtype.is_nested()]
    flat = frame.with_columns(
        pl.struct(pl.col(name)).struct.json_encode().alias(name) for name in nested
    )
    # The CSV text is hashed a slice at a time (the same bytes as `flat.write_csv()`): a
    # training set at scale would otherwise be a gigabyte of text, twice.
    digest = hashlib.sha256()
    for start in range(0, max(flat.height, 1), CSV_HASH_SLICE_ROWS):
        part = flat.slice(start, CSV_HASH_SLICE_ROWS)
        digest.update(part.write_csv(include_header=start == 0).encode())
    return digest.hexdigest()


CSV_HASH_SLICE_ROWS = 100_000


# Determinism note: the manifest itself is environment capture (git, platform, versions),
# read once per model; none of it feeds a computation or a cache key.
def git_state(repo: Path | None, baked_commit: str | None = None) -> dict[str, Any]:
    """Commit and dirty flag of the code that runs: from git when `repo` is a checkout, else
    the commit baked into an image or wheel (clean by construction), else "unknown".

    `repo` is None for an installed package: git is not asked, since the folder the package
    is installed in may sit inside some other repository."""
    if repo is not None:
        try:
            commit = subprocess.run(
                ["git", "-C", str(repo), "rev-parse", "HEAD"],
                capture_output=True, text=True, check=True, timeout=10,
            ).stdout.strip()  # fmt: skip
            changes = subprocess.run(
                ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True, text=True, check=True, timeout=10,
            ).stdout.strip()  # fmt: skip
            return {"commit": commit, "dirty": bool(changes), "source": "git"}
        except (OSError, subprocess.SubprocessError):
            pass
    if baked_commit:
        return {"commit": baked_commit, "dirty": False, "source": "image"}
    return {"commit": "unknown", "dirty": None, "source": "none"}


def file_sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def environment(extra_libraries: Sequence[str] = ()) -> dict[str, Any]:
    libraries: dict[str, str | None] = {}
    for name in (*LIBRARIES, *extra_libraries):
        try:
            libraries[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libraries[name] = None
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "libraries": libraries,
    }


def build_manifest(
    *,
    repo: Path | None,
    lock_file: Path,
    baked_commit: str | None,
    model: Mapping[str, Any],
    config: Mapping[str, Any],
    config_hash: str,
    seeds: Mapping[str, Any],
    inputs: Mapping[str, Any],
    code_versions: Mapping[str, str],
    cache_keys: Mapping[str, str],
    dagster_run_id: str,
    extra_libraries: Sequence[str] = (),
) -> dict[str, Any]:
    return {
        "manifest_version": MANIFEST_VERSION,
        "model": dict(model),
        "code": {
            "git": git_state(repo, baked_commit),
            "lockfile_sha256": file_sha256(lock_file),
            "code_versions": dict(code_versions),
        },
        "config": dict(config),
        "config_hash": config_hash,
        "seeds": dict(seeds),
        "inputs": dict(inputs),
        "cache_keys": dict(cache_keys),
        "environment": environment(extra_libraries),
        "dagster_run_id": dagster_run_id,
    }


def dumps(manifest: Mapping[str, Any]) -> str:
    return json.dumps(manifest, indent=2, sort_keys=True, default=str)
