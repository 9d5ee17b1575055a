"""Contract suite for identity stores: users, passwords, API tokens, memberships, principals.

Subclass it in a test module and provide the fixtures ``identity_store`` (an
:class:`~loopml.governance.identity.IdentityStore` over a fresh, empty metadata store),
``project_store`` and ``audit_store`` over the same store::

    class TestSqlIdentityStore(IdentityStoreContract):
        pass  # the fixtures come from conftest.py

Expiry and ``last_used_time`` are tested by shifting ``time.time`` (the stores' clock) forward.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from loopml.errors import (
    AlreadyExists,
    Conflict,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    TooManyAttempts,
)
from loopml.governance.identity import BAD_CREDENTIALS, BAD_TOKEN, LoginFailures
from loopml.governance.roles import Action, Role
from loopml.governance.throttle import LoginThrottle, ThrottlePolicy
from loopml.governance.tokens import hash_token

ACTOR = "identity-contract"
PASSWORD = "correct horse battery staple"  # noqa: S105 - a test password


def shift_clock(monkeypatch, seconds: float) -> None:
    """Move ``time.time`` forward by ``seconds`` for the rest of the test."""
    current = time.time
    monkeypatch.setattr(time, "time", lambda: current() + seconds)


def _name(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class IdentityStoreContract:
    # helpers -------------------------------------------------------------------------------
    def new_user(self, store, password: str | None = PASSWORD, **kw):
        return store.create_user(_name(), password, actor=ACTOR, **kw)

    def new_project(self, project_store) -> str:
        name = _name("proj")
        project_store.create_project(name, business_goal="", description="", owner="", actor=ACTOR)
        return project_store.get_project(name).project_id

    # users ---------------------------------------------------------------------------------
    def test_a_new_store_has_no_users(self, identity_store):
        assert identity_store.count_users() == 0 and identity_store.list_users() == []
        with pytest.raises(PermissionDenied):
            identity_store.authenticate_password("admin", "admin")

    def test_create_and_get_user(self, identity_store):
        user = identity_store.create_user("Ada.Lovelace", PASSWORD, display_name="Ada", actor=ACTOR)
        assert user.username == "ada.lovelace" and user.display_name == "Ada"
        assert not (user.is_admin or user.is_service_account or user.disabled)
        assert user.created_time > 0
        assert identity_store.get_user(user.user_id) == user
        assert identity_store.get_user_by_name("ADA.LOVELACE") == user
        assert identity_store.list_users() == [user] and identity_store.count_users() == 1

    def test_duplicate_username_is_refused_whatever_the_case(self, identity_store):
        identity_store.create_user("grace", PASSWORD, actor=ACTOR)
        with pytest.raises(AlreadyExists, match="grace"):
            identity_store.create_user("Grace", PASSWORD, actor=ACTOR)
        assert identity_store.count_users() == 1

    @pytest.mark.parametrize(
        "bad", ["", " ", "a" * 65, "bad name", "émile", "-dash", ".dot", "a/b", "x\x00", "o'r 1=1"]
    )
    def test_invalid_usernames_are_refused(self, identity_store, bad):
        with pytest.raises(InvalidArgument, match="username"):
            identity_store.create_user(bad, PASSWORD, actor=ACTOR)
        assert identity_store.count_users() == 0

    @pytest.mark.parametrize("bad", ["", "short", "elevenchars", "x" * 1025])
    def test_weak_passwords_are_refused(self, identity_store, bad):
        with pytest.raises(InvalidArgument, match="password"):
            identity_store.create_user("weak", bad, actor=ACTOR)
        assert identity_store.count_users() == 0

    def test_missing_users(self, identity_store):
        with pytest.raises(NotFound):
            identity_store.get_user(uuid.uuid4().hex)
        with pytest.raises(NotFound):
            identity_store.get_user_by_name("nobody")
        with pytest.raises(NotFound):
            identity_store.create_token("nobody", "ci", actor=ACTOR)

    def test_service_accounts_have_no_password(self, identity_store):
        with pytest.raises(InvalidArgument, match="service account"):
            identity_store.create_user("bot", PASSWORD, is_service_account=True, actor=ACTOR)
        bot = identity_store.create_user("bot", None, is_service_account=True, actor=ACTOR)
        assert bot.is_service_account
        with pytest.raises(InvalidArgument, match="service account"):
            identity_store.set_password("bot", PASSWORD, actor=ACTOR)
        with pytest.raises(PermissionDenied):
            identity_store.authenticate_password("bot", "")
        _, secret = identity_store.create_token("bot", "ci", actor=ACTOR)
        assert identity_store.authenticate_token(secret) == bot

    # passwords -----------------------------------------------------------------------------
    def test_password_authentication(self, identity_store):
        user = self.new_user(identity_store)
        assert identity_store.authenticate_password(user.username.upper(), PASSWORD) == user

    def test_every_password_failure_says_the_same(self, identity_store):
        user = self.new_user(identity_store)
        off = self.new_user(identity_store)
        identity_store.disable_user(off.username, actor=ACTOR)
        identity_store.create_user("svc", None, is_service_account=True, actor=ACTOR)
        attempts = [
            (user.username, PASSWORD + "x"),  # wrong password
            ("no-such-user", PASSWORD),  # unknown user
            (off.username, PASSWORD),  # disabled user, right password
            ("svc", PASSWORD),  # service account
            ("Not A Username!", PASSWORD),  # not even a valid name
            (user.username, "x" * 5000),  # absurdly long
        ]
        messages = set()
        for username, password in attempts:
            with pytest.raises(PermissionDenied) as caught:
                identity_store.authenticate_password(username, password)
            messages.add(str(caught.value))
        assert messages == {BAD_CREDENTIALS}

    def test_set_password(self, identity_store):
        user = self.new_user(identity_store)
        new = "a much better passphrase"
        with pytest.raises(InvalidArgument):
            identity_store.set_password(user.username, "short", actor=ACTOR)
        identity_store.set_password(user, new, actor=ACTOR)
        with pytest.raises(PermissionDenied):
            identity_store.authenticate_password(user.username, PASSWORD)
        assert identity_store.authenticate_password(user.username, new) == user

    def test_disable_and_enable(self, identity_store):
        user = self.new_user(identity_store)
        off = identity_store.disable_user(user.username, actor=ACTOR)
        assert off.disabled and identity_store.get_user(user.user_id).disabled
        assert identity_store.disable_user(user.username, actor=ACTOR) == off  # no change
        with pytest.raises(PermissionDenied):
            identity_store.authenticate_password(user.username, PASSWORD)
        on = identity_store.enable_user(user.username, actor=ACTOR)
        assert not on.disabled
        assert identity_store.authenticate_password(user.username, PASSWORD) == on

    def test_the_last_enabled_admin_cannot_be_disabled(self, identity_store):
        first = self.new_user(identity_store, is_admin=True)
        with pytest.raises(Conflict, match="last enabled admin"):
            identity_store.disable_user(first.username, actor=ACTOR)
        second = self.new_user(identity_store, is_admin=True)
        identity_store.disable_user(first.username, actor=ACTOR)
        with pytest.raises(Conflict):
            identity_store.disable_user(second.username, actor=ACTOR)

    # first admin ---------------------------------------------------------------------------
    def test_first_admin_only_once(self, identity_store):
        admin = identity_store.create_first_admin("root", PASSWORD, actor=ACTOR)
        assert admin.is_admin and admin.username == "root"
        with pytest.raises(Conflict, match="already has users"):
            identity_store.create_first_admin("root2", PASSWORD, actor=ACTOR)
        assert identity_store.count_users() == 1

    def test_first_admin_refused_once_any_user_exists(self, identity_store):
        self.new_user(identity_store)
        with pytest.raises(Conflict):
            identity_store.create_first_admin("root", PASSWORD, actor=ACTOR)

    def test_concurrent_first_admins_make_exactly_one(self, identity_store):
        outcomes: list[str] = []

        def attempt(i: int) -> None:
            try:
                identity_store.create_first_admin(f"root{i}", PASSWORD, actor=ACTOR)
                outcomes.append("created")
            except Conflict:
                outcomes.append("refused")

        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["created", "refused", "refused", "refused"]
        assert identity_store.count_users() == 1

    # tokens --------------------------------------------------------------------------------
    def test_token_round_trip(self, identity_store):
        user = self.new_user(identity_store)
        token, secret = identity_store.create_token(user.username, "laptop", actor=ACTOR)
        assert secret.startswith(f"lml_{token.token_id}_") and len(secret) >= 4 + 16 + 1 + 43
        assert token.user_id == user.user_id and token.name == "laptop"
        assert token.expires_time is None and token.revoked_time is None
        assert identity_store.authenticate_token(secret) == user
        assert identity_store.get_token(token.token_id).token_id == token.token_id
        assert [t.token_id for t in identity_store.list_tokens(user)] == [token.token_id]
        for shown in (repr(token), repr(identity_store.list_tokens(user))):
            assert secret not in shown and hash_token(secret) not in shown

    def test_each_token_is_unique(self, identity_store):
        user = self.new_user(identity_store)
        made = [identity_store.create_token(user, "t", actor=ACTOR) for _ in range(5)]
        assert len({s for _, s in made}) == 5 and len({t.token_id for t, _ in made}) == 5

    def test_forged_and_malformed_tokens_are_refused(self, identity_store):
        user = self.new_user(identity_store)
        token, secret = identity_store.create_token(user, "ci", actor=ACTOR)
        other_id = "0" * 16 if token.token_id != "0" * 16 else "1" * 16
        forged = [
            "",
            "lml_",
            secret[:-1],
            secret + "A",
            secret.replace(token.token_id, other_id),
            secret.upper(),
            f"Bearer {secret}",
            hash_token(secret),
            "lml_" + "0" * 16 + "_" + "A" * 43,
            secret + "\x00",
        ]
        for bad in forged:
            with pytest.raises(PermissionDenied) as caught:
                identity_store.authenticate_token(bad)
            assert str(caught.value) == BAD_TOKEN

    def test_revoked_tokens_are_refused(self, identity_store):
        user = self.new_user(identity_store)
        token, secret = identity_store.create_token(user, "ci", actor=ACTOR)
        _, keep_secret = identity_store.create_token(user, "keep", actor=ACTOR)
        revoked = identity_store.revoke_token(token.token_id, actor=ACTOR)
        assert revoked.revoked_time is not None
        with pytest.raises(PermissionDenied, match="revoked"):
            identity_store.authenticate_token(secret)
        assert identity_store.revoke_token(token.token_id, actor=ACTOR) == revoked
        assert identity_store.authenticate_token(keep_secret) == user
        listed = {t.token_id: t for t in identity_store.list_tokens(user)}
        assert listed[token.token_id].status(int(time.time() * 1000)) == "revoked"
        with pytest.raises(NotFound):
            identity_store.revoke_token("0" * 16, actor=ACTOR)

    def test_expired_tokens_are_refused(self, identity_store, monkeypatch):
        user = self.new_user(identity_store)
        token, secret = identity_store.create_token(
            user, "short-lived", expires_in_seconds=3600, actor=ACTOR
        )
        assert token.expires_time == token.created_time + 3_600_000
        assert identity_store.authenticate_token(secret) == user
        shift_clock(monkeypatch, 3601)
        with pytest.raises(PermissionDenied, match="expired"):
            identity_store.authenticate_token(secret)

    @pytest.mark.parametrize("bad", [0, -5, 1.5, True, 10 * 365 * 24 * 3600 + 1])
    def test_invalid_token_lifetimes(self, identity_store, bad):
        user = self.new_user(identity_store)
        with pytest.raises(InvalidArgument, match="lifetime"):
            identity_store.create_token(user, "t", expires_in_seconds=bad, actor=ACTOR)
        assert identity_store.list_tokens(user) == []

    @pytest.mark.parametrize("bad", ["", "   ", "x" * 129, "tab\there"])
    def test_invalid_token_names(self, identity_store, bad):
        user = self.new_user(identity_store)
        with pytest.raises(InvalidArgument, match="token name"):
            identity_store.create_token(user, bad, actor=ACTOR)

    def test_a_disabled_users_tokens_are_refused(self, identity_store):
        user = self.new_user(identity_store)
        _, secret = identity_store.create_token(user, "ci", actor=ACTOR)
        identity_store.disable_user(user, actor=ACTOR)
        with pytest.raises(PermissionDenied):
            identity_store.authenticate_token(secret)
        with pytest.raises(Conflict, match="disabled"):
            identity_store.create_token(user, "new", actor=ACTOR)
        identity_store.enable_user(user, actor=ACTOR)
        assert identity_store.authenticate_token(secret).user_id == user.user_id

    def test_last_used_time_is_kept_to_the_minute(self, identity_store, monkeypatch):
        user = self.new_user(identity_store)
        token, secret = identity_store.create_token(user, "ci", actor=ACTOR)
        assert identity_store.get_token(token.token_id).last_used_time is None
        identity_store.authenticate_token(secret)
        first = identity_store.get_token(token.token_id).last_used_time
        assert first is not None and first >= token.created_time
        shift_clock(monkeypatch, 30)
        identity_store.authenticate_token(secret)
        assert identity_store.get_token(token.token_id).last_used_time == first
        shift_clock(monkeypatch, 31)
        identity_store.authenticate_token(secret)
        assert identity_store.get_token(token.token_id).last_used_time >= first + 60_000

    # memberships and principals -------------------------------------------------------------
    def test_roles_are_per_project(self, identity_store, project_store):
        p, q = self.new_project(project_store), self.new_project(project_store)
        user = self.new_user(identity_store)
        assert identity_store.memberships(user) == []
        assert not identity_store.principal(user).can(Action.PROJECT_READ, None)
        m = identity_store.grant(user.username, p, "data_scientist", actor=ACTOR)
        assert (m.user_id, m.project_id, m.role) == (user.user_id, p, Role.DATA_SCIENTIST)
        principal = identity_store.principal(user.username)
        assert principal.user == user and not principal.is_admin
        assert dict(principal.roles_by_project) == {p: Role.DATA_SCIENTIST}
        assert principal.can(Action.RUN_WRITE, p) and not principal.can(Action.RUN_WRITE, q)
        assert not principal.can(Action.MODEL_APPROVE, p)
        assert principal.projects_allowing(Action.RUN_READ) == {p}

    def test_grant_by_project_name_replaces_the_role(self, identity_store, project_store):
        user = self.new_user(identity_store)
        identity_store.grant(user, "default", Role.VIEWER, actor=ACTOR)
        identity_store.grant(user, "default", "RISK_MANAGER", actor=ACTOR)
        default_id = project_store.get_project("default").project_id
        assert [(m.project_id, m.role) for m in identity_store.memberships(user)] == [
            (default_id, Role.RISK_MANAGER)
        ]
        principal = identity_store.principal(user)
        assert principal.can(Action.MODEL_APPROVE, default_id)
        assert not principal.can(Action.RUN_WRITE, default_id)

    def test_revoke_membership(self, identity_store, project_store):
        p = self.new_project(project_store)
        user = self.new_user(identity_store)
        identity_store.grant(user, p, Role.DEVOPS, actor=ACTOR)
        identity_store.revoke(user, p, actor=ACTOR)
        assert identity_store.memberships(user) == []
        assert not identity_store.principal(user).can(Action.RUN_READ, p)
        with pytest.raises(NotFound, match="no role"):
            identity_store.revoke(user, p, actor=ACTOR)

    def test_bad_grants_change_nothing(self, identity_store, project_store):
        user = self.new_user(identity_store)
        with pytest.raises(InvalidArgument, match="unknown role"):
            identity_store.grant(user, "default", "superuser", actor=ACTOR)
        with pytest.raises(NotFound):
            identity_store.grant(user, "no-such-project", Role.VIEWER, actor=ACTOR)
        with pytest.raises(NotFound):
            identity_store.grant("ghost", "default", Role.VIEWER, actor=ACTOR)
        assert identity_store.memberships(user) == []

    def test_admins_may_do_everything_and_disabled_users_nothing(self, identity_store):
        admin = self.new_user(identity_store, is_admin=True)
        principal = identity_store.principal(admin)
        assert principal.is_admin
        assert all(principal.can(a, "12345") and principal.can(a, None) for a in Action)
        user = self.new_user(identity_store)
        identity_store.grant(user, "default", Role.ADMIN, actor=ACTOR)
        identity_store.disable_user(user, actor=ACTOR)
        off = identity_store.principal(user)
        assert not any(off.can(a, p) for a in Action for p in (*off.roles_by_project, None))

    # audit ---------------------------------------------------------------------------------
    def test_every_change_is_audited_without_secrets(self, identity_store, audit_store):
        user = identity_store.create_user("audited", PASSWORD, actor="root")
        identity_store.set_password(user, PASSWORD + "!", actor="root")
        token, secret = identity_store.create_token(user, "ci", actor="root")
        identity_store.authenticate_token(secret)
        identity_store.revoke_token(token.token_id, actor="root")
        identity_store.grant(user, "default", Role.VIEWER, actor="root")
        identity_store.revoke(user, "default", actor="root")
        identity_store.disable_user(user, actor="root")
        identity_store.enable_user(user, actor="root")
        events = audit_store.list_events(actor="root")
        assert [e.action for e in events] == [
            "user.create", "user.set_password", "token.create", "token.revoke",
            "membership.grant", "membership.revoke", "user.disable", "user.enable",
        ]  # fmt: skip
        text = repr([e.change for e in events])
        for leaked in (PASSWORD, secret, secret.split("_", 2)[2], hash_token(secret), "$argon2"):
            assert leaked not in text
        assert audit_store.verify().ok

    # failed sign-ins (the login throttle's counters) ------------------------------------------
    def test_failures_are_counted_per_subject_within_the_window(self, identity_store):
        a, b = "user:" + _name(), "addr:192.0.2.7"
        assert identity_store.login_failures([a, b], since=0) == {}
        identity_store.record_login_failure([a, b], at=100.0, since=0)
        counts = identity_store.record_login_failure([a, b], at=160.0, since=0)
        assert counts[a] == LoginFailures(2, 160.0) and counts[b] == LoginFailures(2, 160.0)
        identity_store.record_login_failure([a], at=170.0, since=0)
        assert identity_store.login_failures([a, b, "user:other"], since=0) == {
            a: LoginFailures(3, 170.0), b: LoginFailures(2, 160.0)
        }  # fmt: skip
        assert identity_store.login_failures([a], since=150.0) == {a: LoginFailures(2, 170.0)}
        assert identity_store.login_failures([a], since=171.0) == {}

    def test_recording_forgets_the_subjects_old_failures(self, identity_store):
        a, other = "user:" + _name(), "user:" + _name()
        for t in (1.0, 2.0, 3.0):
            identity_store.record_login_failure([a, other], at=t, since=0)
        counts = identity_store.record_login_failure([a], at=1000.0, since=500.0)
        assert counts == {a: LoginFailures(1, 1000.0)}
        assert identity_store.login_failures([a], since=0) == {a: LoginFailures(1, 1000.0)}
        assert identity_store.login_failures([other], since=0)[other].count == 3  # untouched
        assert identity_store.prune_login_failures(before=500.0) == 3
        assert identity_store.login_failures([a, other], since=0) == {a: LoginFailures(1, 1000.0)}

    def test_clearing_failures(self, identity_store):
        a, b = "user:" + _name(), "addr:198.51.100.1"
        identity_store.record_login_failure([a, b], at=1.0, since=0)
        assert identity_store.clear_login_failures([a]) == 1
        assert set(identity_store.login_failures([a, b], since=0)) == {b}
        assert identity_store.clear_login_failures([]) == 0

    def test_concurrent_failures_are_all_counted(self, identity_store):
        subject = "user:" + _name()

        def fail() -> None:
            for _ in range(5):
                identity_store.record_login_failure([subject], at=time.time(), since=0)

        threads = [threading.Thread(target=fail) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert identity_store.login_failures([subject], since=0)[subject].count == 20

    def test_an_admin_unlock_clears_the_account_and_is_audited(self, identity_store, audit_store):
        user = self.new_user(identity_store)
        account, address = f"user:{user.username}", "addr:203.0.113.9"
        identity_store.record_login_failure([account, address, "addr:10.9.9.9"], at=5.0, since=0)
        identity_store.record_lockout(account, failures=5, retry_after_s=60)
        cleared = identity_store.unlock_user(
            user.username.upper(), actor="root", addresses=["203.0.113.9"]
        )
        assert cleared == 2
        assert set(identity_store.login_failures([account, address, "addr:10.9.9.9"], since=0)) == {
            "addr:10.9.9.9"
        }  # fmt: skip
        lockout, unlock = audit_store.list_events()[-2:]
        assert (lockout.action, lockout.object_type, lockout.object_id) == (
            "login.lockout", "login", account
        )  # fmt: skip
        assert lockout.change == {"failures": 5, "retry_after_seconds": 60}
        assert (unlock.action, unlock.actor, unlock.object_id) == (
            "user.unlock", "root", user.user_id
        )  # fmt: skip
        assert unlock.change["failures"] == 2 and account in unlock.change["subjects"]
        with pytest.raises(NotFound):
            identity_store.unlock_user("nobody", actor="root")
        assert audit_store.verify().ok

    # the login throttle over this store ----------------------------------------------------
    def test_the_throttle_locks_after_the_budget_for_known_and_unknown_alike(
        self, identity_store, audit_store
    ):
        user = self.new_user(identity_store)
        clock = FakeClock()
        throttle = LoginThrottle(identity_store, ThrottlePolicy(max_failures=3), clock=clock)
        outcomes = {}
        for name in (user.username, "no-such-user"):
            seen: list[tuple[str, object]] = []
            for _ in range(6):
                try:
                    throttle.sign_in(name, PASSWORD + "?", "192.0.2.1")
                except PermissionDenied as e:
                    seen.append(("denied", str(e)))
                except TooManyAttempts as e:
                    seen.append(("throttled", e.retry_after_seconds))
            outcomes[name] = seen
        assert outcomes[user.username] == outcomes["no-such-user"]
        assert outcomes[user.username] == [("denied", BAD_CREDENTIALS)] * 3 + [
            ("throttled", 60)
        ] * 3  # fmt: skip
        with pytest.raises(TooManyAttempts):  # the right password too, while locked
            throttle.sign_in(user.username, PASSWORD, "192.0.2.1")
        clock.now += 61
        with pytest.raises(PermissionDenied):  # one more try after the wait ...
            throttle.sign_in(user.username, PASSWORD + "?", "192.0.2.1")
        with pytest.raises(TooManyAttempts) as caught:  # ... doubles it
            throttle.sign_in(user.username, PASSWORD, "192.0.2.1")
        assert caught.value.retry_after_seconds == 120
        clock.now += 121
        assert throttle.sign_in(user.username, PASSWORD, "192.0.2.1") == user
        assert identity_store.login_failures([f"user:{user.username}"], since=0) == {}
        lockouts = [e.object_id for e in audit_store.list_events() if e.action == "login.lockout"]
        assert lockouts == [f"user:{user.username}", "user:no-such-user"]

    def test_the_address_budget_stops_a_spray_across_accounts(self, identity_store):
        users = [self.new_user(identity_store) for _ in range(3)]
        throttle = LoginThrottle(
            identity_store, ThrottlePolicy(max_failures=5, max_address_failures=4),
            clock=FakeClock(),
        )  # fmt: skip
        for i in range(4):
            with pytest.raises(PermissionDenied):
                throttle.sign_in(users[i % 3].username, "Spring-2026-spray", "2001:db8::1")
        with pytest.raises(TooManyAttempts):  # another address in the same /64: still locked
            throttle.sign_in(users[0].username, PASSWORD, "2001:db8::ffff")
        assert throttle.sign_in(users[0].username, PASSWORD, "2001:db8:1::1") == users[0]


class FakeClock:
    """A clock the throttle tests move by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
