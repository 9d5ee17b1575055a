"""The audit chain: every mutation leaves an event whose hash covers the one before it.

An event's hash is ``sha256(seq|ts|actor|action|object_type|object_id|change_digest|prev_hash)``,
and ``change_digest`` is the sha256 of the canonical JSON of the change. Editing, removing or
reordering any event breaks the chain, which :func:`verify_chain` finds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

GENESIS_HASH = "0" * 64


@dataclass(frozen=True, slots=True)
class AuditEvent:
    seq: int
    ts: int  # milliseconds since the epoch
    actor: str
    action: str  # e.g. "run.create", "experiment.delete"
    object_type: str
    object_id: str
    change: dict[str, Any]
    change_digest: str
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    events_checked: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def canonical_json(change: dict[str, Any]) -> str:
    return json.dumps(
        change, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )


def digest_change(change_json: str) -> str:
    return hashlib.sha256(change_json.encode()).hexdigest()


def event_hash(
    seq: int,
    ts: int,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    change_digest: str,
    prev_hash: str,
) -> str:
    material = "|".join(
        (str(seq), str(ts), actor, action, object_type, object_id, change_digest, prev_hash)
    )
    return hashlib.sha256(material.encode()).hexdigest()


def verify_chain(
    events: Iterable[AuditEvent], head: tuple[int, str] | None, *, max_problems: int = 100
) -> ChainReport:
    """Walk the events in ``seq`` order and report every break; ``head`` is the stored tip."""
    problems: list[str] = []
    expected_seq, prev = 1, GENESIS_HASH
    count = 0
    for ev in events:
        count += 1
        if ev.seq != expected_seq:
            problems.append(f"event {ev.seq}: expected sequence number {expected_seq} (missing?)")
        if ev.prev_hash != prev:
            problems.append(f"event {ev.seq}: does not follow the previous event (reordered?)")
        if digest_change(canonical_json(ev.change)) != ev.change_digest:
            problems.append(f"event {ev.seq}: change does not match its digest (edited?)")
        recomputed = event_hash(
            ev.seq, ev.ts, ev.actor, ev.action, ev.object_type, ev.object_id,
            ev.change_digest, ev.prev_hash,
        )  # fmt: skip
        if recomputed != ev.hash:
            problems.append(f"event {ev.seq}: hash mismatch (edited?)")
        expected_seq, prev = ev.seq + 1, ev.hash
        if len(problems) >= max_problems:
            break
    head_seq, head_hash = head if head is not None else (0, GENESIS_HASH)
    if len(problems) < max_problems and (head_seq != expected_seq - 1 or head_hash != prev):
        problems.append(
            f"chain tip is event {expected_seq - 1} but the head records event {head_seq} "
            "(events removed from the end?)"
        )
    return ChainReport(events_checked=count, problems=problems)


class AuditStore(Protocol):
    def list_events(
        self,
        *,
        object_type: str | None = None,
        object_id: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        since: int | None = None,
        until: int | None = None,
        before: int | None = None,
        projects: Collection[str] | None = None,
        limit: int = 1000,
    ) -> list[AuditEvent]:
        """The newest ``limit`` events that match, oldest first.

        ``before`` (a ``seq``) pages back in time: pass the oldest ``seq`` of a page to get the
        page before it. ``projects`` keeps the events of those projects' objects (runs,
        experiments, models, deployments, the projects themselves), filtered by the store, so a
        page of N holds N events whenever that many match.
        """
        ...

    def verify(self) -> ChainReport: ...
