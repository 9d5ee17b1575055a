"""Authentication with API tokens (``Authorization: Bearer lml_…``) or a browser session cookie
(``server/sessions.py``, created by logging in to the web UI), against the identity store."""

from __future__ import annotations

from fastapi import Request

from loopml.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from loopml.governance.identity import User
from loopml.governance.roles import Role
from loopml.governance.throttle import LoginThrottle, ThrottlePolicy
from loopml.server.access import Authenticator, Caller
from loopml.server.sessions import session_of_request
from loopml.settings import Settings
from loopml.stack import Stack


def token_authenticator(stack: Stack) -> Authenticator:
    identity = stack.identity
    if identity is None:
        raise InvalidArgument("authentication needs the database (users live there)")

    def caller(user: User) -> Caller:
        principal = identity.principal(user)

        def roles(project_id: str) -> frozenset[str]:
            if principal.is_admin:  # an admin may act in any role (and is audited as such)
                return frozenset(r.value for r in Role)
            role = principal.roles_by_project.get(str(project_id))
            return frozenset() if role is None else frozenset({role.value})

        return Caller(name=user.username, may=principal.can, is_admin=principal.is_admin,
                      roles=roles)  # fmt: skip

    def authenticate(request: Request) -> Caller:
        header = request.headers.get("authorization", "")
        if not header:  # a browser: its session cookie, if it has a live one
            session = session_of_request(request)
            if session is not None:
                try:
                    user = identity.get_user(session.user_id)
                except NotFound:
                    user = None
                if user is not None and not user.disabled:
                    return caller(user)
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret:
            raise Unauthenticated("authentication required: send 'Authorization: Bearer <token>'")
        try:
            user = identity.authenticate_token(secret.strip())
        except (PermissionDenied, InvalidArgument) as e:
            raise Unauthenticated(e.message) from None
        return caller(user)

    return authenticate


def login_throttle(stack: Stack) -> LoginThrottle | None:
    """The throttle every password check and token creation goes through (with a database)."""
    if stack.identity is None:
        return None
    return LoginThrottle(stack.identity, throttle_policy(stack.settings))


def throttle_policy(settings: Settings) -> ThrottlePolicy:
    return ThrottlePolicy(
        max_failures=settings.login_max_failures,
        max_address_failures=settings.login_max_address_failures,
        window_s=settings.login_failure_window_s,
    )


def login_throttle_of(request: Request) -> LoginThrottle | None:
    throttle = getattr(request.app.state, "login_throttle", None)
    return throttle if isinstance(throttle, LoginThrottle) else None


def client_address(request: Request) -> str | None:
    """The address the request came from (uvicorn's view: a trusted proxy's header included)."""
    return request.client.host if request.client is not None else None
