"""Self-service API tokens: every user lists, creates and revokes their own (admins: anyone's).

Creating one is refused (429) while the caller's account or address is locked out by the login
throttle (:mod:`loopml.governance.throttle`), like a sign-in."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import Field

from loopml.errors import InvalidArgument, NotFound
from loopml.governance.identity import ApiToken, IdentityStore, User
from loopml.server.access import Caller, authenticated, caller_of
from loopml.server.fastjson import OrjsonRoute
from loopml.server.identity import client_address, login_throttle_of
from loopml.server.schemas import ERROR_RESPONSES, In, Out
from loopml.server.scopes import stack_of

router = APIRouter(
    prefix="/api/v1/tokens", tags=["tokens"], responses=ERROR_RESPONSES, route_class=OrjsonRoute
)


class TokenCreate(In):
    name: Annotated[str, Field(min_length=1, max_length=128)]
    expires_in_days: Annotated[int, Field(ge=1, le=3650)] | None = None


class NewToken(Out):
    token: ApiToken
    secret: str  # shown this once; only its hash is stored


def _identity(request: Request) -> IdentityStore:
    stack = stack_of(request)
    if stack.identity is None or not request.app.state.auth_enabled:
        raise InvalidArgument("API tokens need a server started with --auth")
    return stack.identity


def _subject(identity: IdentityStore, caller: Caller, username: str | None) -> User:
    """Whose tokens: the caller's own, or (admins only) another user's."""
    if username is not None and username != caller.name:
        if not caller.is_admin:
            raise NotFound(f"user {username!r} not found")
        return identity.get_user_by_name(username)
    return identity.get_user_by_name(caller.name)


@router.get("", **authenticated())
def list_tokens(
    request: Request, user: Annotated[str | None, Query(max_length=64)] = None
) -> list[ApiToken]:
    identity = _identity(request)
    return identity.list_tokens(_subject(identity, caller_of(request), user))


@router.post("", status_code=201, **authenticated())
def create_token(request: Request, body: TokenCreate) -> NewToken:
    identity, caller = _identity(request), caller_of(request)
    throttle = login_throttle_of(request)
    if throttle is not None:  # no new credentials for an account or address under lockout
        throttle.check(caller.name, client_address(request))
    days = body.expires_in_days
    token, secret = identity.create_token(
        _subject(identity, caller, None), body.name,
        expires_in_seconds=days * 86400 if days else None, actor=caller.name,
    )  # fmt: skip
    return NewToken(token=token, secret=secret)


@router.delete("/{token_id}", **authenticated())
def revoke_token(request: Request, token_id: str) -> ApiToken:
    identity, caller = _identity(request), caller_of(request)
    token = identity.get_token(token_id)
    owner = identity.get_user(token.user_id)
    if owner.username != caller.name and not caller.is_admin:
        raise NotFound(f"token {token_id!r} not found")  # others' tokens do not exist for you
    return identity.revoke_token(token_id, actor=caller.name)
