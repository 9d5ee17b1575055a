"""Login throttling: failed sign-ins are counted per account and per client address, in the
metadata database (so every server worker counts the same), and past a small budget further
attempts are refused for a while, the wait doubling with each failure after that.

The policy is pure (:class:`ThrottlePolicy`); :class:`LoginThrottle` applies it around the
identity store's password check. A locked subject is refused *before* its password is looked
at, so while locked even the right password gets :class:`~loopml.errors.TooManyAttempts`, and
an unknown user name is answered exactly like a known one (the same counting, the same refusal,
and outside a lockout the store's dummy Argon2 check). A success clears the account's count
(not the address's: one good password must not wipe a spray of bad ones from that address).
The failure that starts a lockout is an audit event (``login.lockout``); ``loopml admin users
unlock NAME`` clears an account early (audited as ``user.unlock``).

>>> policy = ThrottlePolicy(max_failures=5, first_lock_s=60)
>>> [policy.lock_seconds(account_subject("ada"), n) for n in (4, 5, 6, 7)]
[0.0, 60.0, 120.0, 240.0]
>>> policy.retry_after(account_subject("ada"), LoginFailures(5, last=1000.0), now=1030.0)
30
>>> account_subject(" Ada "), address_subject("2001:db8:1:2:3:4:5:6")
('user:ada', 'addr:2001:db8:1:2::/64')
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from loopml.errors import PermissionDenied, TooManyAttempts
from loopml.governance.identity import IdentityStore, LoginFailures, User

ACCOUNT = "user:"
ADDRESS = "addr:"
_MAX_NAME = 256  # what a subject keeps of an attempted user name


def account_subject(username: str) -> str:
    """The counter of an account, known or not (the name as the store would look it up)."""
    name = username.strip().lower() if isinstance(username, str) else ""
    return ACCOUNT + name[:_MAX_NAME]


def address_subject(address: str) -> str:
    """The counter of a client address; an IPv6 client counts by its /64, the block one
    machine or home is given, so it cannot dodge the count by changing the last bits."""
    text = address.strip().lower()
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return ADDRESS + text[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ADDRESS + str(ip.ipv4_mapped)
        return ADDRESS + str(ipaddress.IPv6Network((ip, 64), strict=False))
    return ADDRESS + str(ip)


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """``max_failures`` per account and ``max_address_failures`` per address within
    ``window_s``; reaching the budget locks the subject for ``first_lock_s`` after its latest
    failure, and each further failure doubles that, up to the window."""

    max_failures: int = 5
    max_address_failures: int = 20
    window_s: float = 900.0
    first_lock_s: float = 60.0

    def __post_init__(self) -> None:
        if min(self.max_failures, self.max_address_failures) < 1 or self.window_s <= 0:
            raise ValueError("a throttle needs budgets of at least 1 and a positive window")

    def budget(self, subject: str) -> int:
        return self.max_address_failures if subject.startswith(ADDRESS) else self.max_failures

    def lock_seconds(self, subject: str, failures: int) -> float:
        """How long after its latest failure a subject with ``failures`` stays locked."""
        extra = failures - self.budget(subject)
        if extra < 0:
            return 0.0
        return float(min(self.window_s, self.first_lock_s * 2 ** min(extra, 32)))

    def retry_after(self, subject: str, failures: LoginFailures, now: float) -> int:
        """Whole seconds until the subject may try again (0: now)."""
        until = failures.last + self.lock_seconds(subject, failures.count)
        return max(0, math.ceil(until - now))

    def starts_lockout(self, subject: str, failures: int) -> bool:
        """Whether the failure that brought the count to ``failures`` is the one that locks."""
        return failures == self.budget(subject)


class LoginThrottle:
    """Password sign-ins through the throttle: ``sign_in`` is what a login route calls."""

    def __init__(
        self,
        store: IdentityStore,
        policy: ThrottlePolicy,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.policy = policy
        self._clock = clock

    def _subjects(self, username: str, address: str | None) -> list[str]:
        subjects = [account_subject(username)]
        if address:
            subjects.append(address_subject(address))
        return subjects

    def check(self, username: str, address: str | None) -> dict[str, LoginFailures]:
        """The subjects' recent failures, or TooManyAttempts while any of them is locked."""
        now = self._clock()
        subjects = self._subjects(username, address)
        failures = self.store.login_failures(subjects, since=now - self.policy.window_s)
        wait = max(
            (self.policy.retry_after(s, f, now) for s, f in failures.items()),
            default=0,
        )
        if wait > 0:
            raise TooManyAttempts(
                f"too many failed sign-ins: try again in {wait} seconds",
                retry_after_seconds=wait,
            )
        return failures

    def sign_in(self, username: str, password: str, address: str | None) -> User:
        """The user, PermissionDenied for a wrong sign-in (counted), or TooManyAttempts."""
        before = self.check(username, address)
        try:
            user = self.store.authenticate_password(username, password)
        except PermissionDenied:
            self.failed(username, address)
            raise
        account = account_subject(username)
        if before.get(account, LoginFailures(0, 0.0)).count:
            self.store.clear_login_failures([account])
        return user

    def failed(self, username: str, address: str | None) -> None:
        """Count a failed sign-in; audit the lockout it starts, if it starts one."""
        now = self._clock()
        subjects = self._subjects(username, address)
        counts = self.store.record_login_failure(subjects, at=now, since=now - self.policy.window_s)
        for subject, failures in counts.items():
            if self.policy.starts_lockout(subject, failures.count):
                wait = self.policy.retry_after(subject, failures, now)
                self.store.record_lockout(subject, failures=failures.count, retry_after_s=wait)
