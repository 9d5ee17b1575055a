"""Identity on SQLite and PostgreSQL: the contract suite, and attacks on what is stored."""

from __future__ import annotations

import doctest
import hashlib
from pathlib import Path

import pytest
import sqlalchemy as sa

from loopml.backends.sql.identity import SqlIdentityStore
from loopml.backends.sql.schema import api_tokens, audit_events, metadata, users
from loopml.errors import PermissionDenied
from loopml.governance import identity, passwords, roles, tokens
from loopml.governance.passwords import Passwords
from loopml.testing.identity_contract import PASSWORD, IdentityStoreContract


class TestSqlIdentityStore(IdentityStoreContract):
    pass


def _all_stored_text(database) -> str:
    """Every value of every table, as one string: what a stolen database dump would show."""
    parts = []
    with database.engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                parts.extend(str(v) for v in row)
    return "\n".join(parts)


@pytest.fixture
def leaked(identity_store):
    """A user with a password and a token, plus the secrets a thief would want."""
    user = identity_store.create_user("victim", PASSWORD, actor="root")
    token, secret = identity_store.create_token(user, "ci", actor="root")
    identity_store.authenticate_token(secret)
    identity_store.revoke_token(token.token_id, actor="root")
    _, live = identity_store.create_token(user, "live", actor="root")
    return {"user": user, "token": token, "secret": secret, "live": live}


def test_token_secrets_are_never_stored_in_clear(leaked, database):
    with database.engine.connect() as conn:
        rows = conn.execute(sa.select(api_tokens)).all()
    digests = {r.secret_sha256 for r in rows}
    for secret in (leaked["secret"], leaked["live"]):
        assert hashlib.sha256(secret.encode()).hexdigest() in digests
    stored = _all_stored_text(database)
    for secret in (leaked["secret"], leaked["live"]):
        assert secret not in stored and secret.split("_", 2)[2] not in stored


def test_passwords_are_argon2id_hashes(leaked, database):
    with database.engine.connect() as conn:
        stored_hash = conn.execute(sa.select(users.c.password_hash)).scalar_one()
    assert stored_hash.startswith("$argon2id$")
    assert PASSWORD not in _all_stored_text(database)


@pytest.mark.parametrize("metadata_url", ["sqlite"], indirect=True)  # scans the database file
def test_sqlite_file_holds_no_secret(leaked, database):
    assert database.dialect == "sqlite"
    path = Path(database.engine.url.database or "")
    raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*") if p.is_file())
    for secret in (PASSWORD, leaked["secret"], leaked["live"]):
        assert secret.encode() not in raw


def test_audit_changes_hold_no_secret_or_hash(leaked, database):
    with database.engine.connect() as conn:
        stored_hash = conn.execute(sa.select(users.c.password_hash)).scalar_one()
        digests = list(conn.execute(sa.select(api_tokens.c.secret_sha256)).scalars())
        changes = "\n".join(conn.execute(sa.select(audit_events.c.change)).scalars())
    for needle in (PASSWORD, leaked["secret"], leaked["live"], stored_hash, "argon2", *digests):
        assert needle not in changes


def test_a_stolen_token_digest_does_not_authenticate(leaked, identity_store):
    digest = hashlib.sha256(leaked["live"].encode()).hexdigest()
    with pytest.raises(PermissionDenied):
        identity_store.authenticate_token(digest)
    with pytest.raises(PermissionDenied):
        identity_store.authenticate_token(f"lml_{leaked['token'].token_id}_{digest}")


class CountingPasswords(Passwords):
    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.verifications = 0

    def verify(self, stored_hash: str, password: str) -> bool:
        self.verifications += 1
        return super().verify(stored_hash, password)


def test_unknown_users_cost_a_password_check_too(database):
    counting = CountingPasswords()
    store = SqlIdentityStore(database, passwords=counting)
    store.create_user("known", PASSWORD, actor="root")
    store.create_user("bot", None, is_service_account=True, actor="root")
    for username in ("known", "unknown", "bot", "Not Valid!"):
        before = counting.verifications
        with pytest.raises(PermissionDenied):
            store.authenticate_password(username, PASSWORD + "?")
        assert counting.verifications == before + 1, username


def test_default_password_hashing_is_argon2id_at_recommended_cost():
    stored = Passwords().hash(PASSWORD)
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert Passwords().verify(stored, PASSWORD)


def test_token_ids_and_secrets_are_random():
    secrets_ = {tokens.new_token_secret(tokens.new_token_id()) for _ in range(1000)}
    assert len(secrets_) == 1000
    assert all(tokens.token_id_of(s) is not None for s in secrets_)


@pytest.mark.parametrize("module", [identity, passwords, roles, tokens])
def test_doctests(module):
    assert doctest.testmod(module, raise_on_error=False).failed == 0
