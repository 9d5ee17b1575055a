"""Browser sessions as records, and where they are kept between processes.

The server (``server/sessions.py``) caches sessions in memory; a :class:`SessionBackend` keeps
them in the database, so a login holds in every worker of a multi-process server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(slots=True)
class Session:
    user_id: str
    username: str
    csrf_token: str
    created: float  # seconds since the epoch
    last_seen: float


class SessionBackend(Protocol):
    """Sessions by the SHA-256 of their id (the id itself is never stored)."""

    def save(self, key: str, session: Session) -> None: ...

    def load(self, key: str) -> Session | None: ...

    def touch(self, key: str, last_seen: float) -> None: ...

    def delete(self, key: str) -> None: ...

    def prune(self, *, idle_before: float, created_before: float) -> int:
        """Forget sessions idle since ``idle_before`` or created before ``created_before``."""
        ...
