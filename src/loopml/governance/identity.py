"""Who is calling: users, API tokens, project memberships, and the principal that is checked.

A :class:`Principal` is a user with their role on each project. ``can(action, project_id)`` is
the one authorization question:

* a platform admin (``is_admin``) may do everything, everywhere;
* on a project, the user's role on that project decides, through
  :data:`~loopml.governance.roles.PERMISSIONS`; no role there means no access;
* with ``project_id=None`` ("anywhere", for listings and for actions that are not about one
  project) the answer is yes when some role the user holds on any project allows the action.
  A listing must then still filter each item with ``can(action, item_project_id)``.
  Platform actions (``user.manage``: creating and disabling users) are for admins only;
* a disabled user may do nothing, and unknown actions are denied.

>>> u = User("u1", "ada", "Ada", False, False, False, 0)
>>> p = Principal(u, {"7": Role.DATA_SCIENTIST}, is_admin=False)
>>> p.can(Action.RUN_WRITE, "7"), p.can(Action.RUN_WRITE, "8"), p.can("run.write", None)
(True, False, True)
>>> p.can(Action.USER_MANAGE, None), p.can("no.such.action", "7")
(False, False)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from loopml.errors import InvalidArgument
from loopml.governance.password_rules import check_password
from loopml.governance.roles import PLATFORM_ACTIONS, Action, Role, allowed

USERNAME_RULE = (
    "1-64 characters: lower-case letters, digits, '_', '.' or '-', starting with a letter or digit"
)
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_MAX_EXPIRY_SECONDS = 10 * 365 * 24 * 3600


@dataclass(frozen=True, slots=True)
class User:
    """A person or a service account. Times are milliseconds since the epoch."""

    user_id: str
    username: str
    display_name: str
    is_admin: bool
    is_service_account: bool
    disabled: bool
    created_time: int


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A token's record; the secret itself is shown once at creation and never stored."""

    token_id: str
    user_id: str
    name: str
    created_time: int
    expires_time: int | None
    revoked_time: int | None
    last_used_time: int | None

    def status(self, now_ms: int) -> str:
        """``active``, ``revoked`` or ``expired`` at ``now_ms``.

        >>> ApiToken("t", "u", "ci", 0, 100, None, None).status(200)
        'expired'
        """
        if self.revoked_time is not None:
            return "revoked"
        if self.expires_time is not None and self.expires_time <= now_ms:
            return "expired"
        return "active"


@dataclass(frozen=True, slots=True)
class LoginFailures:
    """A throttling subject's failed sign-ins in a window: how many, and when the latest was
    (seconds since the epoch); see :mod:`loopml.governance.throttle`."""

    count: int
    last: float


@dataclass(frozen=True, slots=True)
class Membership:
    """``user_id`` holds ``role`` on ``project_id``."""

    user_id: str
    project_id: str
    role: Role


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated user with their project roles: what authorization checks."""

    user: User
    roles_by_project: Mapping[str, Role]
    is_admin: bool

    @property
    def name(self) -> str:
        """The name recorded as the actor of what this principal does."""
        return self.user.username

    def can(self, action: Action | str, project_id: str | None = None) -> bool:
        """Whether this principal may take ``action`` on ``project_id`` (see the module doc)."""
        if self.user.disabled:
            return False
        try:
            act = Action(action)
        except ValueError:
            return False
        if self.is_admin:
            return True
        if project_id is None:
            if act in PLATFORM_ACTIONS:
                return False
            return any(allowed(role, act) for role in self.roles_by_project.values())
        role = self.roles_by_project.get(str(project_id))
        return role is not None and allowed(role, act)

    def projects_allowing(self, action: Action | str) -> frozenset[str]:
        """The ids of the projects where the principal's role allows ``action``.

        For filtering listings; platform admins may see every project, which this set (built
        from memberships) does not list, so check ``is_admin`` first.
        """
        if self.user.disabled:
            return frozenset()
        return frozenset(p for p, role in self.roles_by_project.items() if allowed(role, action))


def normalise_username(username: str) -> str:
    """The stored form of a username (lower-cased), or InvalidArgument.

    >>> normalise_username("Ada.Lovelace")
    'ada.lovelace'
    """
    name = username.strip().lower() if isinstance(username, str) else username
    if not isinstance(name, str) or not _USERNAME.match(name):
        raise InvalidArgument(f"invalid username {username!r}: use {USERNAME_RULE}")
    return name


def validate_password(password: str, username: str | None = None) -> str:
    """12 to 1024 characters, not common, not built from ``username``, not a pattern (see
    :mod:`loopml.governance.password_rules`)."""
    return check_password(password, username=username)


def validate_display_name(display_name: str) -> str:
    if not isinstance(display_name, str) or len(display_name) > 256 or "\x00" in display_name:
        raise InvalidArgument("a display name is text of at most 256 characters")
    return display_name.strip()


def validate_token_name(name: str) -> str:
    """Token names say what a token is for ("ci", "laptop"): 1-128 printable characters."""
    if not isinstance(name, str) or not name.strip() or len(name) > 128 or not name.isprintable():
        raise InvalidArgument(
            f"invalid token name {name!r}: use 1-128 printable characters, e.g. 'ci' or 'laptop'"
        )
    return name.strip()


def validate_expiry(expires_in_seconds: int | None) -> int | None:
    """``None`` (never expires) or a whole number of seconds, up to ten years."""
    if expires_in_seconds is None:
        return None
    if (
        isinstance(expires_in_seconds, bool)
        or not isinstance(expires_in_seconds, int)
        or not 0 < expires_in_seconds <= _MAX_EXPIRY_SECONDS
    ):
        raise InvalidArgument(
            f"invalid token lifetime {expires_in_seconds!r}: give whole seconds between 1 and "
            f"{_MAX_EXPIRY_SECONDS} (ten years), or none for a token that does not expire"
        )
    return expires_in_seconds


UserRef = str | User
"""A user given by username (case-insensitive) or by the :class:`User` record."""

BAD_CREDENTIALS = "invalid username or password"
BAD_TOKEN = "invalid, expired or revoked API token"  # noqa: S105 - not a secret


class IdentityStore(Protocol):
    """Users, API tokens and memberships. Every mutation is audited; no secret is ever stored
    in clear or written to the audit log. Nothing here creates a user unless asked."""

    def count_users(self) -> int: ...

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
        """AlreadyExists for a taken username; service accounts take no password."""
        ...

    def create_first_admin(
        self, username: str, password: str, *, display_name: str = "", actor: str
    ) -> User:
        """Create the first user, an admin, in one transaction; Conflict if any user exists."""
        ...

    def get_user(self, user_id: str) -> User: ...

    def get_user_by_name(self, username: str) -> User: ...

    def list_users(self) -> list[User]: ...

    def set_password(self, user: UserRef, new_password: str, *, actor: str) -> None: ...

    def disable_user(self, user: UserRef, *, actor: str) -> User:
        """Refuses (Conflict) to disable the last enabled admin."""
        ...

    def enable_user(self, user: UserRef, *, actor: str) -> User: ...

    def authenticate_password(self, username: str, password: str) -> User:
        """The user, or PermissionDenied(BAD_CREDENTIALS) for every kind of failure."""
        ...

    def create_token(
        self, user: UserRef, name: str, *, expires_in_seconds: int | None = None, actor: str
    ) -> tuple[ApiToken, str]:
        """The token's record and its secret, which is returned this once only."""
        ...

    def authenticate_token(self, secret: str) -> User:
        """The token's user, or PermissionDenied(BAD_TOKEN) if unknown/revoked/expired/disabled."""
        ...

    def get_token(self, token_id: str) -> ApiToken: ...

    def list_tokens(self, user: UserRef) -> list[ApiToken]: ...

    def revoke_token(self, token_id: str, *, actor: str) -> ApiToken:
        """Revoke now; revoking a revoked token changes nothing."""
        ...

    def grant(self, user: UserRef, project: str, role: Role | str, *, actor: str) -> Membership:
        """Give ``user`` the ``role`` on ``project`` (name or id), replacing any earlier role."""
        ...

    def revoke(self, user: UserRef, project: str, *, actor: str) -> None:
        """Remove the user's role on the project; NotFound if they had none."""
        ...

    def memberships(self, user: UserRef) -> list[Membership]: ...

    def principal(self, user: UserRef) -> Principal: ...

    # failed sign-ins, by subject ("user:<name>", "addr:<address>"), for the login throttle
    def login_failures(self, subjects: Sequence[str], *, since: float) -> dict[str, LoginFailures]:
        """Each subject's failures at or after ``since``; subjects without any are left out."""
        ...

    def record_login_failure(
        self, subjects: Sequence[str], *, at: float, since: float
    ) -> dict[str, LoginFailures]:
        """Count one failure for each subject at ``at`` and forget their failures before
        ``since``, in one transaction; returns each subject's failures since then (this one
        included)."""
        ...

    def record_lockout(self, subject: str, *, failures: int, retry_after_s: int) -> None:
        """Append the ``login.lockout`` audit event of ``subject``."""
        ...

    def clear_login_failures(self, subjects: Sequence[str]) -> int:
        """Forget the subjects' failures (a successful sign-in); returns how many went."""
        ...

    def unlock_user(self, user: UserRef, *, actor: str, addresses: Sequence[str] = ()) -> int:
        """An admin ends a lockout: forget the account's failures (and those of the given
        address subjects), audited as ``user.unlock``; NotFound for an unknown user."""
        ...

    def prune_login_failures(self, *, before: float) -> int:
        """Forget every failure older than ``before`` (a background job); returns how many."""
        ...
