"""``loopml admin`` on SQLite and PostgreSQL: the first admin, users, tokens and roles."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from loopml.backends.sql import apitokens
from loopml.cli.admin import app
from loopml.errors import PermissionDenied
from loopml.governance.roles import Action

PASSWORD = "a long enough passphrase"
DAY_MS = 86_400_000


@pytest.fixture
def cli_env(metadata_url, tmp_path, monkeypatch):
    """The CLI pointed at a fresh metadata store of each backend."""
    monkeypatch.setenv("LOOPML_URI", metadata_url)
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LOOPML_USER", "ops")
    return metadata_url


@pytest.fixture
def store(cli_env, identity_store):
    """The identity store the CLI writes to, for checking what it did."""
    return identity_store


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(app, list(args), input=input)


def ok(*args: str, input: str | None = None):
    result = invoke(*args, input=input)
    assert result.exit_code == 0, result.output
    return result


def fails(*args: str, input: str | None = None) -> str:
    result = invoke(*args, input=input)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error:") and "Traceback" not in result.output
    return result.stderr


@pytest.fixture
def admin_token(store) -> str:
    result = ok("init", "--password-stdin", input=PASSWORD + "\n")
    return result.stdout.strip()


def test_init_creates_the_first_admin_and_prints_a_working_token(store, admin_token):
    assert admin_token.startswith("lml_") and "\n" not in admin_token
    user = store.authenticate_token(admin_token)
    assert user.username == "admin" and user.is_admin
    assert store.principal(user).can(Action.USER_MANAGE, None)
    assert store.authenticate_password("admin", PASSWORD) == user


def test_init_refuses_the_second_time(store, admin_token):
    message = fails("init", "-u", "root", "--password-stdin", input=PASSWORD + "\n")
    assert "already has users" in message
    assert [u.username for u in store.list_users()] == ["admin"]


def test_init_prompts_twice_without_echo(store):
    result = ok("init", "-u", "Root", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert PASSWORD not in result.output
    assert result.output.count("Password") == 1 and "Repeat" in result.output
    assert store.authenticate_token(result.stdout.strip().splitlines()[-1]).username == "root"


def test_init_with_a_weak_password_creates_nothing(store):
    assert "at least 12 characters" in fails("init", "--password-stdin", input="short\n")
    assert "no password" in fails("init", "--password-stdin", input="\n")
    assert store.count_users() == 0


def test_wrong_password_and_unknown_user_look_the_same(store, admin_token):
    messages = set()
    for username, password in (("admin", PASSWORD + "!"), ("nobody", PASSWORD)):
        with pytest.raises(PermissionDenied) as caught:
            store.authenticate_password(username, password)
        messages.add(str(caught.value))
    assert len(messages) == 1


def test_users_add_ls_and_disable(store, admin_token):
    ok("users", "add", "Bob", "--password-stdin", input=PASSWORD + "\n")
    ok("users", "add", "ci-bot", "--service-account")
    listed = json.loads(ok("users", "ls", "--json").stdout)
    assert [(u["username"], u["is_service_account"]) for u in listed] == [
        ("admin", False), ("bob", False), ("ci-bot", True)
    ]  # fmt: skip
    assert "password" not in json.dumps(listed).lower()
    assert "bob" in ok("users", "ls").stdout
    token = ok("tokens", "create", "bob", "--name", "laptop").stdout.strip()
    assert store.authenticate_token(token).username == "bob"
    ok("users", "disable", "bob")
    with pytest.raises(PermissionDenied):
        store.authenticate_token(token)
    with pytest.raises(PermissionDenied):
        store.authenticate_password("bob", PASSWORD)
    ok("users", "enable", "bob")
    assert store.authenticate_token(token).username == "bob"
    assert "last enabled admin" in fails("users", "disable", "admin")


def test_service_account_tokens(store, admin_token):
    ok("users", "add", "scorer", "--service-account")
    created = json.loads(ok("tokens", "create", "scorer", "--name", "batch", "--json").stdout)
    assert created["token"]["name"] == "batch" and created["secret"].startswith("lml_")
    assert store.authenticate_token(created["secret"]).is_service_account


def test_revoked_token_is_refused(store, admin_token):
    secret = ok("tokens", "create", "admin", "--name", "ci").stdout.strip()
    listed = json.loads(ok("tokens", "ls", "admin", "--json").stdout)
    assert [t["name"] for t in listed] == ["init", "ci"]
    assert secret not in json.dumps(listed) and "sha256" not in json.dumps(listed)
    ci_id = listed[1]["token_id"]
    assert ci_id in ok("tokens", "revoke", ci_id).stdout
    with pytest.raises(PermissionDenied):
        store.authenticate_token(secret)
    assert store.authenticate_token(admin_token).username == "admin"
    assert "revoked" in ok("tokens", "ls", "admin").stdout
    assert "not found" in fails("tokens", "revoke", "0" * 16)


def test_expired_token_is_refused(store, admin_token, monkeypatch):
    secret = ok("tokens", "create", "admin", "--name", "tmp", "--expires-days", "1").stdout
    assert store.authenticate_token(secret.strip()).username == "admin"
    real_now = apitokens.now_ms
    monkeypatch.setattr(apitokens, "now_ms", lambda: real_now() + DAY_MS + 1000)
    with pytest.raises(PermissionDenied, match="expired"):
        store.authenticate_token(secret.strip())
    assert "at least 1" in fails("tokens", "create", "admin", "--name", "x", "--expires-days", "0")


def test_grant_and_revoke_roles(store, admin_token):
    ok("users", "add", "sme", "--password-stdin", input=PASSWORD + "\n")
    ok("grant", "sme", "default", "subject_matter_expert")
    default_id = store.memberships("sme")[0].project_id
    principal = store.principal("sme")
    assert principal.can(Action.KPI_WRITE, default_id)
    assert not principal.can(Action.RUN_WRITE, default_id)
    assert "unknown role" in fails("grant", "sme", "default", "wizard")
    assert "not found" in fails("grant", "sme", "no-such-project", "viewer")
    ok("revoke", "sme", "default")
    assert store.memberships("sme") == []
    assert "no role" in fails("revoke", "sme", "default")


def test_admin_changes_are_audited_without_secrets(store, admin_token, audit_store):
    secret = ok("tokens", "create", "admin", "--name", "ci").stdout.strip()
    events = audit_store.list_events(actor="ops")
    assert [e.action for e in events] == ["user.create", "token.create", "token.create"]
    text = json.dumps([e.change for e in events])
    for leaked in (PASSWORD, admin_token, secret, "argon2"):
        assert leaked not in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["users", "add", "Bad Name", "--service-account"], "invalid username"),
        (["users", "disable", "ghost"], "not found"),
        (["tokens", "ls", "ghost"], "not found"),
        (["tokens", "create", "admin", "--name", " "], "token name"),
    ],
)
def test_errors_are_one_clean_line(store, admin_token, args, message):
    assert message in fails(*args)


def test_admin_needs_the_database_not_a_server(monkeypatch):
    monkeypatch.setenv("LOOPML_URI", "http://127.0.0.1:5100")
    assert "not to the server's URL" in fails("users", "ls")
