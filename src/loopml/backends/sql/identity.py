"""SqlIdentityStore: users, API tokens and project memberships (governance).

Passwords are hashed with Argon2id before a transaction opens (the hash is slow on purpose and
must not hold the write lock); API tokens are stored as the SHA-256 of their secret. Every
mutation appends an audit event in its own transaction, and no event carries a secret or a hash.
"""

from __future__ import annotations

import uuid
from types import MappingProxyType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopml.backends.sql.apitokens import ApiTokenMethods
from loopml.backends.sql.audit import append_event
from loopml.backends.sql.engine import Database
from loopml.backends.sql.identity_rows import (
    memberships_of,
    user_from_row,
    user_from_values,
    user_row,
)
from loopml.backends.sql.loginfailures import LoginFailureMethods
from loopml.backends.sql.projects import resolve_project_id
from loopml.backends.sql.rows import execute_unique, insert_for, now_ms
from loopml.backends.sql.schema import memberships, users
from loopml.errors import Conflict, InvalidArgument, NotFound, PermissionDenied
from loopml.governance.identity import (
    BAD_CREDENTIALS,
    Membership,
    Principal,
    User,
    UserRef,
    normalise_username,
    validate_display_name,
    validate_password,
)
from loopml.governance.password_rules import MAX_PASSWORD_LENGTH
from loopml.governance.passwords import Passwords
from loopml.governance.roles import Role, parse_role


class SqlIdentityStore(ApiTokenMethods, LoginFailureMethods):
    """The :class:`~loopml.governance.identity.IdentityStore` on SQLite or PostgreSQL.

    ``passwords`` sets the Argon2 cost (the default is argon2-cffi's recommended profile).
    """

    def __init__(self, db: Database, *, passwords: Passwords | None = None) -> None:
        self._db = db
        self._passwords = passwords or Passwords()

    # users ---------------------------------------------------------------------------------
    def count_users(self) -> int:
        q = sa.select(sa.func.count()).select_from(users)
        return int(self._db.read(lambda c: c.execute(q).scalar_one()))

    def create_user(
        self,
        username: str,
        password: str | None,
        *,
        display_name: str = "",
        is_admin: bool = False,
        is_service_account: bool = False,
        actor: str,
    ) -> User:
        values = self._new_user(username, password, display_name, is_admin, is_service_account)
        return self._db.write(lambda conn: self._insert_user(conn, values, actor))

    def create_first_admin(
        self, username: str, password: str, *, display_name: str = "", actor: str
    ) -> User:
        if password is None:
            raise InvalidArgument("the first admin needs a password")
        values = self._new_user(username, password, display_name, True, False)

        def work(conn: Connection) -> User:
            if conn.dialect.name == "postgresql":  # SQLite's BEGIN IMMEDIATE already serialises
                conn.execute(sa.text("LOCK TABLE users IN EXCLUSIVE MODE"))
            if conn.execute(sa.select(sa.func.count()).select_from(users)).scalar_one():
                raise Conflict(
                    "loopml already has users: the first admin is created only once; "
                    "an admin adds others with `loopml admin users add`"
                )
            return self._insert_user(conn, values, actor)

        return self._db.write(work)

    def _new_user(
        self,
        username: str,
        password: str | None,
        display_name: str,
        is_admin: bool,
        is_service_account: bool,
    ) -> dict[str, Any]:
        name = normalise_username(username)
        if is_service_account and password is not None:
            raise InvalidArgument(
                "a service account has no password: create an API token for it instead"
            )
        return {
            "user_id": uuid.uuid4().hex,
            "username": name,
            "display_name": validate_display_name(display_name),
            "password_hash": (
                None
                if password is None
                else self._passwords.hash(validate_password(password, name))
            ),
            "is_admin": bool(is_admin),
            "is_service_account": bool(is_service_account),
            "disabled": False,
            "created_time": now_ms(),
        }

    @staticmethod
    def _insert_user(conn: Connection, values: dict[str, Any], actor: str) -> User:
        execute_unique(
            conn, users.insert().values(**values), f"user {values['username']!r} already exists"
        )
        append_event(
            conn,
            actor=actor,
            action="user.create",
            object_type="user",
            object_id=values["user_id"],
            change={
                "username": values["username"],
                "display_name": values["display_name"],
                "is_admin": values["is_admin"],
                "is_service_account": values["is_service_account"],
                "has_password": values["password_hash"] is not None,
            },
        )
        return user_from_values(values)

    def get_user(self, user_id: str) -> User:
        row = self._db.read(
            lambda c: c.execute(sa.select(users).where(users.c.user_id == str(user_id))).first()
        )
        if row is None:
            raise NotFound(f"user id {user_id!r} not found")
        return user_from_row(row)

    def get_user_by_name(self, username: str) -> User:
        return user_from_row(self._db.read(lambda c: user_row(c, username)))

    def list_users(self) -> list[User]:
        rows = self._db.read(lambda c: c.execute(sa.select(users).order_by(users.c.username)).all())
        return [user_from_row(r) for r in rows]

    def set_password(self, user: UserRef, new_password: str, *, actor: str) -> None:
        name = user.username if isinstance(user, User) else normalise_username(user)
        new_hash = self._passwords.hash(validate_password(new_password, name))

        def work(conn: Connection) -> None:
            row = user_row(conn, user)
            if row.is_service_account:
                raise InvalidArgument(
                    f"{row.username!r} is a service account: it signs in with API tokens only"
                )
            conn.execute(
                users.update().where(users.c.user_id == row.user_id).values(password_hash=new_hash)
            )
            append_event(conn, actor=actor, action="user.set_password", object_type="user",
                         object_id=row.user_id, change={"username": row.username})  # fmt: skip

        self._db.write(work)

    def disable_user(self, user: UserRef, *, actor: str) -> User:
        def work(conn: Connection) -> User:
            row = user_row(conn, user)
            if row.disabled:
                return user_from_row(row)
            if row.is_admin:
                # Lock the enabled admins' rows so two concurrent disables cannot both pass.
                q = sa.select(users.c.user_id).where(users.c.is_admin, sa.not_(users.c.disabled))
                if len(conn.execute(q.with_for_update()).all()) <= 1:
                    raise Conflict(
                        f"{row.username!r} is the last enabled admin; make another admin first"
                    )
            return self._set_disabled(conn, row, True, actor)

        return self._db.write(work)

    def enable_user(self, user: UserRef, *, actor: str) -> User:
        def work(conn: Connection) -> User:
            row = user_row(conn, user)
            return (
                self._set_disabled(conn, row, False, actor) if row.disabled else user_from_row(row)
            )

        return self._db.write(work)

    @staticmethod
    def _set_disabled(conn: Connection, row: Any, disabled: bool, actor: str) -> User:
        conn.execute(users.update().where(users.c.user_id == row.user_id).values(disabled=disabled))
        append_event(
            conn,
            actor=actor,
            action="user.disable" if disabled else "user.enable",
            object_type="user",
            object_id=row.user_id,
            change={"username": row.username},
        )
        return user_from_values({**row._mapping, "disabled": disabled})

    def authenticate_password(self, username: str, password: str) -> User:
        if not isinstance(password, str) or len(password) > MAX_PASSWORD_LENGTH:
            self._passwords.verify_dummy("")
            raise PermissionDenied(BAD_CREDENTIALS)
        try:
            row = self._db.read(lambda c: user_row(c, username))
        except (NotFound, InvalidArgument):
            row = None
        if row is None or row.password_hash is None:
            self._passwords.verify_dummy(password)  # as slow as a real check
            raise PermissionDenied(BAD_CREDENTIALS)
        if not self._passwords.verify(row.password_hash, password) or row.disabled:
            raise PermissionDenied(BAD_CREDENTIALS)
        return user_from_row(row)

    # memberships ---------------------------------------------------------------------------
    def grant(self, user: UserRef, project: str, role: Role | str, *, actor: str) -> Membership:
        new_role = parse_role(role)

        def work(conn: Connection) -> Membership:
            row = user_row(conn, user)
            pid = resolve_project_id(conn, str(project))
            key = (memberships.c.user_id == row.user_id, memberships.c.project_id == pid)
            previous = conn.execute(sa.select(memberships.c.role).where(*key)).scalar()
            if previous != new_role.value:
                stmt = insert_for(conn, memberships).values(
                    user_id=row.user_id, project_id=pid, role=new_role.value
                )
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["user_id", "project_id"], set_={"role": new_role.value}
                    )
                )
                append_event(
                    conn, actor=actor, action="membership.grant", object_type="project",
                    object_id=str(pid),
                    change={"user_id": row.user_id, "username": row.username,
                            "role": new_role.value, "previous_role": previous},
                )  # fmt: skip
            return Membership(row.user_id, str(pid), new_role)

        return self._db.write(work)

    def revoke(self, user: UserRef, project: str, *, actor: str) -> None:
        def work(conn: Connection) -> None:
            row = user_row(conn, user)
            pid = resolve_project_id(conn, str(project))
            key = (memberships.c.user_id == row.user_id, memberships.c.project_id == pid)
            role = conn.execute(sa.select(memberships.c.role).where(*key)).scalar()
            if role is None:
                raise NotFound(f"user {row.username!r} has no role on project {project!r}")
            conn.execute(memberships.delete().where(*key))
            append_event(
                conn, actor=actor, action="membership.revoke", object_type="project",
                object_id=str(pid),
                change={"user_id": row.user_id, "username": row.username, "role": role},
            )  # fmt: skip

        self._db.write(work)

    def memberships(self, user: UserRef) -> list[Membership]:
        def work(conn: Connection) -> list[Membership]:
            row = user_row(conn, user)
            return memberships_of(conn, row.user_id)

        return self._db.read(work)

    def principal(self, user: UserRef) -> Principal:
        def work(conn: Connection) -> Principal:
            row = user_row(conn, user)
            roles = {m.project_id: m.role for m in memberships_of(conn, row.user_id)}
            return Principal(user_from_row(row), MappingProxyType(roles), bool(row.is_admin))

        return self._db.read(work)
