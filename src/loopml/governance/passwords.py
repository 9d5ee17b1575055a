"""Password hashing with Argon2id (argon2-cffi), the one place a password is ever looked at.

Passwords are low-entropy, so they get a slow, memory-hard hash; API tokens are high-entropy and
use a fast SHA-256 instead (see :mod:`loopml.governance.tokens`).

>>> pw = Passwords(time_cost=1, memory_cost=1024, parallelism=1)  # cheap, for the example
>>> stored = pw.hash("correct horse battery")
>>> stored.startswith("$argon2id$"), pw.verify(stored, "correct horse battery")
(True, True)
>>> pw.verify(stored, "wrong password!")
False
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_DUMMY_PASSWORD = "loopml-dummy-password-for-unknown-users"  # noqa: S105 - never a credential


class Passwords:
    """Hash and verify passwords; defaults are argon2-cffi's (RFC 9106 low-memory profile)."""

    def __init__(
        self,
        *,
        time_cost: int | None = None,
        memory_cost: int | None = None,
        parallelism: int | None = None,
    ) -> None:
        default = PasswordHasher()
        self._hasher = PasswordHasher(
            time_cost=default.time_cost if time_cost is None else time_cost,
            memory_cost=default.memory_cost if memory_cost is None else memory_cost,
            parallelism=default.parallelism if parallelism is None else parallelism,
        )
        self._dummy: str | None = None

    def hash(self, password: str) -> str:
        """A salted Argon2id hash in PHC string format (parameters included)."""
        return self._hasher.hash(password)

    def verify(self, stored_hash: str, password: str) -> bool:
        """True if ``password`` matches; False on a mismatch or an unreadable hash."""
        try:
            return self._hasher.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def verify_dummy(self, password: str) -> None:
        """Spend the time a real check takes, so an unknown user is not told apart by timing."""
        if self._dummy is None:
            self._dummy = self.hash(_DUMMY_PASSWORD)
        self.verify(self._dummy, password)
