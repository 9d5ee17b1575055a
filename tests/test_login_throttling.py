"""Attack: 200 wrong passwords in a row at the web UI's login (and the same for a user name that
does not exist). After the budget every answer is 429 with Retry-After, the right password is
refused too while locked, nothing is a 500, the lockout is in the audit chain, and
`loopml admin users unlock` restores the login."""

from __future__ import annotations

import re
import time

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from loopml.backends.sql.identity import SqlIdentityStore
from loopml.cli.admin import app as admin_cli
from loopml.errors import PermissionDenied, TooManyAttempts
from loopml.governance.passwords import Passwords
from loopml.governance.throttle import LoginThrottle, ThrottlePolicy
from loopml.server.app import create_app
from loopml.server.identity import throttle_policy, token_authenticator
from loopml.settings import Settings
from loopml.stack import Stack
from ui_fixtures import ORIGIN, PASSWORD, csrf_of, login

ATTEMPTS = 200
BUDGET = 5  # the default login_max_failures


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path))  # what `loopml admin` opens
    monkeypatch.delenv("LOOPML_URI", raising=False)
    monkeypatch.setenv("LOOPML_USER", "ops")
    stack = Stack.from_settings(Settings(home=tmp_path))
    assert stack.identity is not None
    stack.identity.create_first_admin("root", PASSWORD, actor="setup")
    stack.identity.create_user("ada", PASSWORD, actor="setup")
    yield stack, _app(stack)
    stack.close()


def _app(stack: Stack):
    app = create_app(stack, authenticate=token_authenticator(stack))
    wired = app.state.login_throttle  # what the app signs in with, from the settings
    assert isinstance(wired, LoginThrottle) and wired.policy == throttle_policy(stack.settings)
    # a stopped clock: however slow the machine, no lock runs out during an attack
    frozen = time.time()
    app.state.login_throttle = LoginThrottle(
        stack.identity, throttle_policy(stack.settings), clock=lambda: frozen
    )
    return app


def _attempt(client: TestClient, username: str, password: str):
    token = client.cookies.get("loopml_csrf") or csrf_of(client.get("/login").text)
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token},
        headers={"Origin": ORIGIN},
        follow_redirects=False,
    )


def _hammer(client: TestClient, username: str) -> list[tuple[int, str | None, str]]:
    answers = []
    for i in range(ATTEMPTS):
        r = _attempt(client, username, f"wrong password number {i}")
        body = r.text.replace(f'value="{username}"', 'value="NAME"')
        answers.append((r.status_code, r.headers.get("retry-after"), re.sub(r"\d+", "N", body)))
    return answers


def _unlock(name: str) -> str:
    result = CliRunner().invoke(admin_cli, ["users", "unlock", name])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_two_hundred_wrong_passwords(server):
    stack, app = server
    with (
        TestClient(app, base_url=ORIGIN, raise_server_exceptions=False) as attacker,
        TestClient(app, base_url=ORIGIN, raise_server_exceptions=False) as ada,
    ):
        csrf = login(ada, "ada")  # a session opened before the attack
        _, bearer = stack.identity.create_token("ada", "ci", actor="setup")

        answers = _hammer(attacker, "ada")
        statuses = [status for status, _, _ in answers]
        assert statuses == [401] * BUDGET + [429] * (ATTEMPTS - BUDGET)  # never a 500
        for _, retry_after, body in answers[BUDGET:]:
            assert retry_after == "60"
            assert "Too many failed sign-ins" in body
        assert "Invalid username or password" in answers[0][2]

        right = _attempt(attacker, "ada", PASSWORD)  # the right password, while locked
        assert right.status_code == 429
        assert "loopml_session" not in right.headers.get("set-cookie", "")
        assert "loopml_session" not in attacker.cookies

        # no new credentials for the locked account either, by session or by token
        made = ada.post("/api/v1/tokens", json={"name": "during"},
                        headers={"X-CSRF-Token": csrf, "Origin": ORIGIN})  # fmt: skip
        assert made.status_code == 429 and int(made.headers["retry-after"]) >= 1
        assert made.json()["error"]["code"] == "too_many_requests"
        by_token = attacker.post("/api/v1/tokens", json={"name": "during"},
                                 headers={"Authorization": f"Bearer {bearer}"})  # fmt: skip
        assert by_token.status_code == 429
        assert [t.name for t in stack.identity.list_tokens("ada")] == ["ci"]

        lockouts = stack.audit.list_events(object_type="login")
        assert [(e.action, e.object_id) for e in lockouts] == [("login.lockout", "user:ada")]
        assert lockouts[0].change["failures"] == BUDGET
        assert stack.audit.verify().ok

        assert "unlocked" in _unlock("ada")
        assert _attempt(attacker, "ada", PASSWORD).status_code == 303  # login restored
        unlock = stack.audit.list_events(actor="ops")[-1]
        assert unlock.action == "user.unlock" and unlock.change["username"] == "ada"
        after = ada.post("/api/v1/tokens", json={"name": "after"},
                         headers={"X-CSRF-Token": csrf, "Origin": ORIGIN})  # fmt: skip
        assert after.status_code == 201


def test_an_unknown_user_name_gets_the_same_answers(server):
    stack, app = server
    with TestClient(app, base_url=ORIGIN, raise_server_exceptions=False) as attacker:
        known = _hammer(attacker, "ada")
        unknown = _hammer(attacker, "nobody-here")
    assert [s for s, _, _ in unknown] == [s for s, _, _ in known]
    assert [b for _, _, b in unknown] == [b for _, _, b in known]  # the same pages, word for word
    assert all(r is not None for _, r, _ in unknown[BUDGET:])
    objects = [e.object_id for e in stack.audit.list_events(object_type="login")]
    assert objects == ["user:ada", "user:nobody-here"]
    assert stack.audit.verify().ok


def test_the_address_is_counted_across_user_names(tmp_path):
    stack = Stack.from_settings(Settings(home=tmp_path, login_max_address_failures=3))
    stack.identity.create_first_admin("root", PASSWORD, actor="setup")
    with TestClient(_app(stack), base_url=ORIGIN, raise_server_exceptions=False) as sprayer:
        statuses = [_attempt(sprayer, f"user{i}", "Winter-2026-spray").status_code
                    for i in range(6)]  # fmt: skip
        assert statuses == [401] * 3 + [429] * 3
        assert _attempt(sprayer, "root", PASSWORD).status_code == 429  # from this address
    stack.close()


class CountingPasswords(Passwords):
    """Argon2 at a test cost, counting how often a password is really checked."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.checks = 0

    def verify(self, stored_hash: str, password: str) -> bool:
        self.checks += 1
        return super().verify(stored_hash, password)


def test_known_and_unknown_names_cost_the_same_argon2_work(database):
    passwords = CountingPasswords()
    store = SqlIdentityStore(database, passwords=passwords)
    store.create_user("ada", PASSWORD, actor="setup")
    throttle = LoginThrottle(store, ThrottlePolicy(max_failures=3), clock=lambda: 1000.0)
    work = {}
    for name in ("ada", "nobody"):
        passwords.checks = 0
        for _ in range(10):
            with pytest.raises((PermissionDenied, TooManyAttempts)):
                throttle.sign_in(name, PASSWORD + "!", "192.0.2.1")
        work[name] = passwords.checks
    assert work == {"ada": 3, "nobody": 3}  # one Argon2 check per counted try, none when locked


def test_loopml_up_prunes_old_failures_in_the_background(tmp_path):
    from loopml.server.main import background_jobs

    stack = Stack.from_settings(Settings(home=tmp_path, background_jobs=True))
    old, recent = "user:gone", "user:recent"
    stack.identity.record_login_failure([old], at=1.0, since=0)
    stack.identity.record_login_failure([recent], at=time.time(), since=0)
    jobs = background_jobs(stack)
    assert jobs is not None
    (prune,) = [j for j in jobs.jobs if j.name == "prune login failures"]
    prune.run()
    assert set(stack.identity.login_failures([old, recent], since=0)) == {recent}
    stack.close()


def test_doctests():
    import doctest

    from loopml.governance import throttle

    assert doctest.testmod(throttle).failed == 0
