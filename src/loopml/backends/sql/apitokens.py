"""API tokens of :class:`~loopml.backends.sql.identity.SqlIdentityStore`.

The secret is returned once by ``create_token``; the table keeps its SHA-256 (unique, so a
presented token is found by one index probe). Authentication is a read; ``last_used_time`` is
written at most once a minute per token, by a single conditional UPDATE, and is bookkeeping rather
than a change, so it is not audited.
"""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopml.backends.sql.audit import append_event
from loopml.backends.sql.engine import Database
from loopml.backends.sql.identity_rows import token_from_row, user_from_row, user_row
from loopml.backends.sql.rows import execute_unique, now_ms
from loopml.backends.sql.schema import api_tokens, users
from loopml.errors import Conflict, NotFound, PermissionDenied
from loopml.governance.identity import (
    BAD_TOKEN,
    ApiToken,
    User,
    UserRef,
    validate_expiry,
    validate_token_name,
)
from loopml.governance.tokens import hash_token, new_token_id, new_token_secret, token_id_of

LAST_USED_RESOLUTION_MS = 60_000


class ApiTokenMethods:
    """Token methods shared by the SQL identity store (it sets ``_db``)."""

    _db: Database

    def create_token(
        self, user: UserRef, name: str, *, expires_in_seconds: int | None = None, actor: str
    ) -> tuple[ApiToken, str]:
        """A new token for ``user`` and its secret, which is never retrievable again."""
        token_name = validate_token_name(name)
        ttl = validate_expiry(expires_in_seconds)
        token_id = new_token_id()
        secret = new_token_secret(token_id)

        def work(conn: Connection) -> ApiToken:
            row = user_row(conn, user)
            if row.disabled:
                raise Conflict(f"user {row.username!r} is disabled; enable them first")
            now = now_ms()
            token = ApiToken(
                token_id=token_id,
                user_id=row.user_id,
                name=token_name,
                created_time=now,
                expires_time=None if ttl is None else now + ttl * 1000,
                revoked_time=None,
                last_used_time=None,
            )
            execute_unique(
                conn,
                api_tokens.insert().values(
                    token_id=token.token_id,
                    user_id=token.user_id,
                    name=token.name,
                    secret_sha256=hash_token(secret),
                    created_time=token.created_time,
                    expires_time=token.expires_time,
                ),
                "token id clash; try again",
            )
            append_event(
                conn,
                actor=actor,
                action="token.create",
                object_type="api_token",
                object_id=token_id,
                change={"user_id": row.user_id, "username": row.username, "name": token_name,
                        "expires_time": token.expires_time},
            )  # fmt: skip
            return token

        return self._db.write(work), secret

    def authenticate_token(self, secret: str) -> User:
        """The user a valid token belongs to; one generic PermissionDenied otherwise."""
        token_id = token_id_of(secret)
        if token_id is None:
            raise PermissionDenied(BAD_TOKEN)
        digest = hash_token(secret)

        def read(conn: Connection) -> tuple[ApiToken, User] | None:
            q = sa.select(api_tokens).where(api_tokens.c.secret_sha256 == digest)
            row = conn.execute(q).one_or_none()
            if row is None or row.token_id != token_id:
                return None
            owner = conn.execute(sa.select(users).where(users.c.user_id == row.user_id)).one()
            return token_from_row(row), user_from_row(owner)

        found = self._db.read(read)
        now = now_ms()
        if found is None or found[0].status(now) != "active" or found[1].disabled:
            raise PermissionDenied(BAD_TOKEN)
        token, owner = found
        if token.last_used_time is None or now - token.last_used_time >= LAST_USED_RESOLUTION_MS:
            self._touch(token.token_id, now)
        return owner

    def _touch(self, token_id: str, now: int) -> None:
        stale = sa.or_(
            api_tokens.c.last_used_time.is_(None),
            api_tokens.c.last_used_time <= now - LAST_USED_RESOLUTION_MS,
        )
        stmt = (
            api_tokens.update()
            .where(api_tokens.c.token_id == token_id, stale)
            .values(last_used_time=now)
        )
        self._db.write(lambda conn: conn.execute(stmt))

    def get_token(self, token_id: str) -> ApiToken:
        q = sa.select(api_tokens).where(api_tokens.c.token_id == str(token_id))
        row = self._db.read(lambda conn: conn.execute(q).one_or_none())
        if row is None:
            raise NotFound(f"API token {token_id!r} not found")
        return token_from_row(row)

    def list_tokens(self, user: UserRef) -> list[ApiToken]:
        """All of a user's tokens, revoked and expired ones included, oldest first."""

        def work(conn: Connection) -> list[ApiToken]:
            owner = user_row(conn, user)
            q = (
                sa.select(api_tokens)
                .where(api_tokens.c.user_id == owner.user_id)
                .order_by(api_tokens.c.created_time, api_tokens.c.token_id)
            )
            return [token_from_row(r) for r in conn.execute(q)]

        return self._db.read(work)

    def revoke_token(self, token_id: str, *, actor: str) -> ApiToken:
        """Revoke a token now; revoking it again changes nothing."""

        def work(conn: Connection) -> ApiToken:
            q = sa.select(api_tokens).where(api_tokens.c.token_id == str(token_id))
            row = conn.execute(q).one_or_none()
            if row is None:
                raise NotFound(f"API token {token_id!r} not found")
            token = token_from_row(row)
            if token.revoked_time is not None:
                return token
            now = now_ms()
            conn.execute(
                api_tokens.update()
                .where(api_tokens.c.token_id == token.token_id)
                .values(revoked_time=now)
            )
            append_event(
                conn,
                actor=actor,
                action="token.revoke",
                object_type="api_token",
                object_id=token.token_id,
                change={"user_id": token.user_id, "name": token.name},
            )
            return dataclasses.replace(token, revoked_time=now)

        return self._db.write(work)
