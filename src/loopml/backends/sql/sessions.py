"""SqlSessionBackend: browser sessions in the metadata database, shared by all server workers."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopml.backends.sql.engine import Database
from loopml.backends.sql.schema import sessions
from loopml.governance.sessions import Session


class SqlSessionBackend:
    def __init__(self, db: Database) -> None:
        self._db = db

    def save(self, key: str, session: Session) -> None:
        row = {
            "key": key, "user_id": session.user_id, "username": session.username,
            "csrf_token": session.csrf_token, "created_time": session.created,
            "last_seen_time": session.last_seen,
        }  # fmt: skip
        self._db.write(lambda c: c.execute(sessions.insert().values(**row)))

    def load(self, key: str) -> Session | None:
        def work(conn: Connection) -> Session | None:
            row = conn.execute(sa.select(sessions).where(sessions.c.key == key)).first()
            if row is None:
                return None
            return Session(row.user_id, row.username, row.csrf_token, row.created_time,
                           row.last_seen_time)  # fmt: skip

        return self._db.read(work)

    def touch(self, key: str, last_seen: float) -> None:
        stmt = sessions.update().where(sessions.c.key == key).values(last_seen_time=last_seen)
        self._db.write(lambda c: c.execute(stmt))

    def delete(self, key: str) -> None:
        self._db.write(lambda c: c.execute(sessions.delete().where(sessions.c.key == key)))

    def prune(self, *, idle_before: float, created_before: float) -> int:
        stmt = sessions.delete().where(
            sa.or_(
                sessions.c.last_seen_time < idle_before, sessions.c.created_time < created_before
            )
        )
        return int(self._db.write(lambda c: c.execute(stmt).rowcount))
