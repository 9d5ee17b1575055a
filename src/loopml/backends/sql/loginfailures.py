"""Failed sign-ins of :class:`~loopml.backends.sql.identity.SqlIdentityStore`, for the login
throttle (:mod:`loopml.governance.throttle`).

One row per failure and subject in ``login_failures``; every query is a range on the index
``(subject, time)``. Recording a failure also forgets that subject's rows older than the window,
and a background job forgets everyone's (``prune_login_failures``), so the table holds about one
window of failures.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopml.backends.sql.audit import append_event
from loopml.backends.sql.engine import Database
from loopml.backends.sql.identity_rows import user_row
from loopml.backends.sql.schema import login_failures
from loopml.governance.identity import LoginFailures, UserRef
from loopml.governance.throttle import account_subject, address_subject

THROTTLE_ACTOR = "loopml:login-throttle"  # who records a lockout (no username has a ":")
_MAX_SUBJECT = 320  # the column's width


def _subjects(subjects: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(str(s)[:_MAX_SUBJECT] for s in subjects))


def _counts(conn: Connection, subjects: list[str], since: float) -> dict[str, LoginFailures]:
    t = login_failures
    q = (
        sa.select(t.c.subject, sa.func.count(), sa.func.max(t.c.time))
        .where(t.c.subject.in_(subjects), t.c.time >= since)
        .group_by(t.c.subject)
    )
    return {row[0]: LoginFailures(int(row[1]), float(row[2])) for row in conn.execute(q)}


class LoginFailureMethods:
    """Failure counting shared by the SQL identity store (it sets ``_db``)."""

    _db: Database

    def login_failures(self, subjects: Sequence[str], *, since: float) -> dict[str, LoginFailures]:
        wanted = _subjects(subjects)
        if not wanted:
            return {}
        return self._db.read(lambda conn: _counts(conn, wanted, since))

    def record_login_failure(
        self, subjects: Sequence[str], *, at: float, since: float
    ) -> dict[str, LoginFailures]:
        wanted = _subjects(subjects)
        if not wanted:
            return {}
        t = login_failures

        def work(conn: Connection) -> dict[str, LoginFailures]:
            conn.execute(t.delete().where(t.c.subject.in_(wanted), t.c.time < since))
            conn.execute(t.insert(), [{"subject": s, "time": float(at)} for s in wanted])
            return _counts(conn, wanted, since)

        return self._db.write(work)

    def record_lockout(self, subject: str, *, failures: int, retry_after_s: int) -> None:
        def work(conn: Connection) -> None:
            append_event(
                conn, actor=THROTTLE_ACTOR, action="login.lockout", object_type="login",
                object_id=str(subject)[:_MAX_SUBJECT],
                change={"failures": int(failures), "retry_after_seconds": int(retry_after_s)},
            )  # fmt: skip

        self._db.write(work)

    def clear_login_failures(self, subjects: Sequence[str]) -> int:
        wanted = _subjects(subjects)
        if not wanted:
            return 0
        stmt = login_failures.delete().where(login_failures.c.subject.in_(wanted))
        return int(self._db.write(lambda conn: conn.execute(stmt).rowcount))

    def unlock_user(self, user: UserRef, *, actor: str, addresses: Sequence[str] = ()) -> int:
        def work(conn: Connection) -> int:
            row = user_row(conn, user)
            wanted = _subjects([account_subject(row.username), *map(address_subject, addresses)])
            stmt = login_failures.delete().where(login_failures.c.subject.in_(wanted))
            cleared = int(conn.execute(stmt).rowcount)
            append_event(
                conn, actor=actor, action="user.unlock", object_type="user",
                object_id=row.user_id,
                change={"username": row.username, "subjects": wanted, "failures": cleared},
            )  # fmt: skip
            return cleared

        return self._db.write(work)

    def prune_login_failures(self, *, before: float) -> int:
        stmt = login_failures.delete().where(login_failures.c.time < float(before))
        return int(self._db.write(lambda conn: conn.execute(stmt).rowcount))
