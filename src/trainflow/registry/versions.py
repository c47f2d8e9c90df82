"""Model versions and aliases: registered once per cache key, moved under a lock.

Promotion reads the champion alias and moves it in one critical section (`registry_lock`):
two runs racing can never both become champion against the same old one. The one that
comes second finds the champion changed since its evaluation and stays challenger, saying
so. The lock is a file lock beside the tracking store (the SQLite file of the local
profile), shared by every process on the machine; Dagster's `model_registry` pool (one
step at a time, `dagster.yaml`) serialises registrations across machines too.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from trainflow.registry import CACHE_KEY_TAG, CHALLENGER, CHAMPION

LOCK_TIMEOUT_SECONDS = 300


def current_champion(client: MlflowClient, name: str) -> str | None:
    """The version number holding `champion`; None when the model or the alias does not
    exist yet. Any other error (the registry unreachable, ...) propagates: "cannot tell"
    must never read as "no champion"."""
    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    champion = model.aliases.get(CHAMPION)
    return None if champion is None else str(champion)


def version_with_key(client: MlflowClient, name: str, cache_key: str) -> ModelVersion | None:
    """The version registered for this cache key by an earlier attempt, if any."""
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    found = [v for v in versions if v.tags.get(CACHE_KEY_TAG) == cache_key]
    return min(found, key=lambda v: int(v.version)) if found else None


def register_once(
    client: MlflowClient,
    name: str,
    *,
    source: str,
    run_id: str,
    cache_key: str,
    tags: Mapping[str, str],
) -> tuple[ModelVersion, bool]:
    """The model version for this cache key: the existing one (tags refreshed), or a new
    one. Returns it and whether it was created now. Call under `registry_lock`."""
    existing = version_with_key(client, name, cache_key)
    if existing is not None:
        for key, value in tags.items():
            if existing.tags.get(key) != value:
                client.set_model_version_tag(name, existing.version, key, value)
        return client.get_model_version(name, existing.version), False
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    created = client.create_model_version(
        name,
        source,
        run_id=run_id,
        tags={**tags, CACHE_KEY_TAG: cache_key},
        model_id=logged_model_id(source),
    )
    return created, True


# `models:/<model id>`: what MLflow 3's log_model returns (a logged model, not a run path).
_LOGGED_MODEL_URI = re.compile(r"^models:/(?P<model_id>m-[0-9a-f]+)$")


def logged_model_id(source: str) -> str | None:
    """The logged model a `models:/m-...` source names. A tracking server refuses a version
    from such a source without it ("the model_id request parameter must identify the
    resource that contains the source"); a local store accepts either."""
    found = _LOGGED_MODEL_URI.match(source)
    return found.group("model_id") if found else None


@dataclass(frozen=True)
class AliasOutcome:
    aliases: list[str]
    promoted: bool
    # Why a promotion the decision wanted did not happen (None when nothing stood in the way).
    held_back: str | None = None


def move_aliases(
    client: MlflowClient,
    name: str,
    version: str,
    *,
    passed_gate: bool,
    promote: bool,
    compared_champion: str | None,
) -> AliasOutcome:
    """`challenger` for a version that passed the gate; `champion` only if the champion is
    still the one the evaluation compared against. Call under `registry_lock`."""
    aliases = []
    if passed_gate:
        client.set_registered_model_alias(name, CHALLENGER, version)
        aliases.append(CHALLENGER)
    if not promote:
        return AliasOutcome(aliases, promoted=False)
    current = current_champion(client, name)
    if current == version:  # promoted by an earlier attempt of this step
        return AliasOutcome([*aliases, CHAMPION], promoted=True)
    if current != compared_champion:
        compared = f"v{compared_champion}" if compared_champion else "no champion"
        return AliasOutcome(
            aliases,
            promoted=False,
            held_back=(
                f"champion changed since evaluation (compared with {compared}, now v{current}): "
                "evaluate again to compare with it"
            ),
        )
    client.set_registered_model_alias(name, CHAMPION, version)
    return AliasOutcome([*aliases, CHAMPION], promoted=True)


def lock_file(lock_dir: Path, name: str) -> Path:
    return lock_dir / f"registry-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.lock"


@contextlib.contextmanager
def registry_lock(
    lock_dir: Path, name: str, timeout: float = LOCK_TIMEOUT_SECONDS
) -> Iterator[None]:
    """Exclusive access to a registered model's versions and aliases for this machine's
    processes. Waiting longer than `timeout` raises TimeoutError (retried as I/O)."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    with lock_file(lock_dir, name).open("a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"registry lock for {name} held for more than {timeout:.0f} s"
                    ) from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
