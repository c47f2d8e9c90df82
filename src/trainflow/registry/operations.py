"""Registry operations in one place: register, promote, roll back, read the history.

The `registry_entry` asset (registration and the gate's promotion) and the CLI
(`trainflow promote`, `rollback`, `history`, `status`) both call these, so the champion
alias moves the same way whoever moves it: under `registry_lock`, with one audit event.

The audit trail is one registered-model tag per event, `trainflow.audit.<sequence>`, whose
value is the event as JSON (action, from, to, who, when, why, forced, via). Why this shape:
- one tag per event is one MLflow call that adds and never rewrites: no read-modify-write
  of a growing list that a crash or a race could lose, and no value that outgrows MLflow's
  tag length limit;
- on the registered model, not a version, because an event concerns two versions (from
  and to), and the whole history is then one `get_registered_model` call, on the local
  store and on a tracking server alike;
- MLflow itself holds the state (the `champion` alias) and the version tags the gate set
  (`rejected`, `promotion`); the audit tags only say how the alias got where it is.
The sequence number is taken under `registry_lock`, like the alias move it records.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from trainflow.promotion import PromotionDecision
from trainflow.registry import CHAMPION, RegistryError
from trainflow.registry.runs import os_user
from trainflow.registry.versions import current_champion, move_aliases, register_once, registry_lock

AUDIT_TAG_PREFIX = "trainflow.audit."
PROMOTE, ROLLBACK = "promote", "rollback"
# A reason is for people; MLflow allows 100,000 characters per registry tag value.
MAX_REASON_CHARS = 2000


@dataclass(frozen=True)
class AuditEvent:
    """One move of the `champion` alias: who moved it from which version to which, when
    and why, and whether a rejected version was forced through."""

    sequence: int
    action: str  # PROMOTE or ROLLBACK
    from_version: str | None  # None: there was no champion
    to_version: str
    who: str  # the login name of the process (never a credential)
    when: str  # UTC, ISO 8601
    reason: str
    forced: bool = False
    via: str = "cli"  # or "dagster run <id>" for the gate's promotions

    @property
    def tag(self) -> str:
        return f"{AUDIT_TAG_PREFIX}{self.sequence:06d}"

    def line(self) -> str:
        came_from = f"v{self.from_version}" if self.from_version else "no champion"
        forced = " (forced)" if self.forced else ""
        return (
            f"#{self.sequence} {self.when} {self.action}{forced} {came_from} -> "
            f"v{self.to_version} by {self.who} via {self.via}: {self.reason or '(no reason given)'}"
        )


@dataclass(frozen=True)
class Outcome:
    """What a promote or rollback did: the event it recorded, or None when nothing moved."""

    event: AuditEvent | None
    message: str


class OperationRefused(RegistryError):
    """A promotion or rollback that would be wrong as asked (the message says why)."""


def _utc_now() -> str:
    # Wall clock on purpose: this stamps when an operator (or the gate) moved an alias. It
    # is a record of an action, not an input to any computation, hash or cache key.
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def history(client: MlflowClient, name: str) -> list[AuditEvent]:
    """Every recorded move of the champion alias, newest first (none for an unknown model)."""
    try:
        tags = client.get_registered_model(name).tags
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return []
        raise
    events = []
    for key, value in tags.items():
        if not key.startswith(AUDIT_TAG_PREFIX):
            continue
        try:
            events.append(AuditEvent(**json.loads(value)))
        except (ValueError, TypeError) as exc:  # edited by hand, or by another tool
            raise RegistryError(f"{name}'s audit tag {key} is not an audit event: {exc}") from exc
    return sorted(events, key=lambda e: e.sequence, reverse=True)


def previous_champion(events: list[AuditEvent], current: str | None) -> str | None:
    """The champion before `current`, replaying the history as a stack: a promotion puts
    its version on top, a rollback to a version in the stack undoes what came after it.
    So rolling back twice goes two champions back, never back and forth."""
    stack: list[str] = []
    for event in reversed(events):  # oldest first
        if event.action == ROLLBACK and event.to_version in stack:
            del stack[stack.index(event.to_version) + 1 :]
            continue
        if event.from_version and (not stack or stack[-1] != event.from_version):
            stack.append(event.from_version)  # a champion set before the trail began
        stack.append(event.to_version)
    while stack and stack[-1] == current:
        stack.pop()
    return stack[-1] if stack else None


def model_version(client: MlflowClient, name: str, version: str) -> ModelVersion:
    """The version, or an error naming it (and the model) when it does not exist."""
    try:
        return client.get_model_version(name, version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise RegistryError(f"{name} has no version {version}") from exc
        raise


def _record(
    client: MlflowClient,
    name: str,
    *,
    action: str,
    from_version: str | None,
    to_version: str,
    reason: str,
    forced: bool = False,
    via: str = "cli",
) -> AuditEvent:
    """Append one event to the trail. Call under `registry_lock`."""
    events = history(client, name)
    event = AuditEvent(
        sequence=(events[0].sequence + 1) if events else 1,
        action=action,
        from_version=from_version,
        to_version=to_version,
        who=os_user(),
        when=_utc_now(),
        reason=reason[:MAX_REASON_CHARS],
        forced=forced,
        via=via,
    )
    client.set_registered_model_tag(name, event.tag, json.dumps(asdict(event), sort_keys=True))
    return event


def _refuse_if_rejected(version: ModelVersion, name: str, force: bool, reason: str | None) -> None:
    """A version the gate rejected becomes champion only with --force and a reason."""
    if version.tags.get("rejected") != "true":
        return
    why = version.tags.get("rejected_reason") or version.tags.get("promotion", "")
    if not force:
        raise OperationRefused(
            f"{name} v{version.version} was rejected by the gate ({why}); refusing to make it "
            "champion. Pass --force with --reason to do it anyway (the audit trail records it)"
        )
    if not (reason or "").strip():
        raise OperationRefused(
            f"{name} v{version.version} was rejected by the gate: --force needs --reason"
        )


def promote(
    client: MlflowClient,
    name: str,
    version: str,
    *,
    lock_dir: Path,
    reason: str | None = None,
    force: bool = False,
) -> Outcome:
    """Make `version` the champion and record it. Promoting the current champion is a
    no-op (no event); a rejected version needs `force` and a reason."""
    target = model_version(client, name, version)
    with registry_lock(lock_dir, name):
        current = current_champion(client, name)
        if current == str(target.version):
            return Outcome(None, f"{name} v{current} is already champion: nothing to do")
        return _move_champion(client, name, PROMOTE, current, target, reason, force)


def rollback(
    client: MlflowClient,
    name: str,
    *,
    lock_dir: Path,
    to: str | None = None,
    reason: str | None = None,
    force: bool = False,
) -> Outcome:
    """Move the champion back to `to`, by default the champion before the current one
    (`previous_champion`), and record it."""
    with registry_lock(lock_dir, name):
        current = current_champion(client, name)
        if current is None:
            raise OperationRefused(f"{name} has no champion: nothing to roll back")
        if to is None:
            to = previous_champion(history(client, name), current)
            if to is None:
                raise OperationRefused(
                    f"{name} has no previous champion to roll back to (none before v{current} "
                    "in the audit trail); name a version with --to VERSION"
                )
        target = model_version(client, name, to)
        if str(target.version) == current:
            return Outcome(None, f"{name} v{current} is already champion: nothing to do")
        return _move_champion(client, name, ROLLBACK, current, target, reason, force)


def _move_champion(
    client: MlflowClient,
    name: str,
    action: str,
    current: str | None,
    target: ModelVersion,
    reason: str | None,
    force: bool,
) -> Outcome:
    """Point the champion alias at `target` and record the move (the caller holds the
    registry lock); a rejected version moves only with `force` and a reason."""
    _refuse_if_rejected(target, name, force, reason)
    client.set_registered_model_alias(name, CHAMPION, str(target.version))
    event = _record(
        client, name, action=action, from_version=current, to_version=str(target.version),
        reason=reason or "", forced=force and target.tags.get("rejected") == "true",
    )  # fmt: skip
    return Outcome(event, f"{name}@{CHAMPION}: {event.line()}")


GATE_VERDICT_TAG, GATE_REASON_TAG_PREFIX = "gate.verdict", "gate.reason."


def gate_tags(decision: PromotionDecision) -> dict[str, str]:
    """The gate's verdict and each of its reasons as its own version tag
    (`gate.reason.01`, ...), in the order the gate checked them."""
    tags = {GATE_VERDICT_TAG: decision.verdict}
    for number, reason in enumerate(decision.reasons, start=1):
        tags[f"{GATE_REASON_TAG_PREFIX}{number:02d}"] = reason[:MAX_REASON_CHARS]
    return tags


@dataclass(frozen=True)
class Registration:
    version: ModelVersion
    created: bool  # False: an earlier attempt registered it (same cache key)
    aliases: list[str]
    decision: PromotionDecision  # as applied: held back if the champion moved meanwhile


def register_candidate(
    client: MlflowClient,
    name: str,
    *,
    lock_dir: Path,
    source: str,
    run_id: str,
    cache_key: str,
    tags: Mapping[str, str],
    decision: PromotionDecision,
    compared_champion: str | None,
    via: str,
) -> Registration:
    """Register a trained model once per cache key and apply the gate's decision, in one
    critical section: aliases (`versions.move_aliases`), the verdict tags (`promotion`,
    `gate.verdict`, one `gate.reason.NN` per reason, and `rejected` with its reason), and
    an audit event when it became champion."""
    with registry_lock(lock_dir, name):
        version, created = register_once(
            client, name, source=source, run_id=run_id, cache_key=cache_key, tags=tags
        )
        number = str(version.version)
        moved = move_aliases(
            client,
            name,
            number,
            passed_gate=decision.passed_gate,
            promote=decision.promote,
            compared_champion=compared_champion,
        )
        if moved.held_back:
            decision = decision.held_back(moved.held_back)
        verdict_tags = {"promotion": decision.summary(), **gate_tags(decision)}
        if not decision.passed_gate:
            verdict_tags.update(rejected="true", rejected_reason=decision.summary())
        for tag, value in verdict_tags.items():
            client.set_model_version_tag(name, number, tag, value)
        events = history(client, name)
        # Recorded unless an earlier attempt of this step recorded it already.
        if moved.promoted and (not events or events[0].to_version != number):
            _record(
                client, name, action=PROMOTE, from_version=compared_champion,
                to_version=number, reason=decision.summary(), via=via,
            )  # fmt: skip
    return Registration(version, created, moved.aliases, decision)
