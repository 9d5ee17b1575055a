"""Authentication with API tokens (``Authorization: Bearer lml_…``) against the identity store."""

from __future__ import annotations

from fastapi import Request

from loopml.errors import InvalidArgument, PermissionDenied, Unauthenticated
from loopml.server.access import Authenticator, Caller
from loopml.stack import Stack


def token_authenticator(stack: Stack) -> Authenticator:
    identity = stack.identity
    if identity is None:
        raise InvalidArgument("authentication needs the database (users live there)")

    def authenticate(request: Request) -> Caller:
        header = request.headers.get("authorization", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret:
            raise Unauthenticated("authentication required: send 'Authorization: Bearer <token>'")
        try:
            user = identity.authenticate_token(secret.strip())
        except (PermissionDenied, InvalidArgument) as e:
            raise Unauthenticated(e.message) from None
        principal = identity.principal(user)
        return Caller(name=user.username, may=principal.can, is_admin=principal.is_admin)

    return authenticate
