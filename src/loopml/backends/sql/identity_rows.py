"""Reading identity rows: users, tokens and memberships as frozen governance records."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopml.backends.sql.schema import memberships, users
from loopml.errors import NotFound
from loopml.governance.identity import ApiToken, Membership, User, UserRef, normalise_username
from loopml.governance.roles import Role


def user_from_values(values: Mapping[str, Any]) -> User:
    return User(
        user_id=values["user_id"],
        username=values["username"],
        display_name=values["display_name"],
        is_admin=bool(values["is_admin"]),
        is_service_account=bool(values["is_service_account"]),
        disabled=bool(values["disabled"]),
        created_time=values["created_time"],
    )


def user_from_row(row: Any) -> User:
    return user_from_values(row._mapping)


def token_from_row(row: Any) -> ApiToken:
    return ApiToken(
        token_id=row.token_id,
        user_id=row.user_id,
        name=row.name,
        created_time=row.created_time,
        expires_time=row.expires_time,
        revoked_time=row.revoked_time,
        last_used_time=row.last_used_time,
    )


def user_row(conn: Connection, user: UserRef) -> Any:
    """The row of a user given by record or username; NotFound when there is none."""
    if isinstance(user, User):
        cond, label = users.c.user_id == user.user_id, user.username
    else:
        label = normalise_username(user)
        cond = users.c.username == label
    row = conn.execute(sa.select(users).where(cond)).one_or_none()
    if row is None:
        raise NotFound(f"user {label!r} not found")
    return row


def memberships_of(conn: Connection, user_id: str) -> list[Membership]:
    q = sa.select(memberships).where(memberships.c.user_id == user_id)
    out = []
    for r in conn.execute(q.order_by(memberships.c.project_id)):
        try:
            out.append(Membership(r.user_id, str(r.project_id), Role(r.role)))
        except ValueError:  # a role this loopml does not know grants nothing
            continue
    return out
