"""Who is calling, and may they? Every route declares itself public or protected by an action.

``protected(action, scope)`` adds a dependency that authenticates the caller and checks the action
on the project the request touches (``scope`` finds it from the path); ``public()`` marks the few
routes anyone may call. ``tests/test_server_routes.py`` walks the route table and fails on any route
that says neither.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request

from loopml.errors import PermissionDenied, Unauthenticated
from loopml.governance.roles import Role

ACCESS_KEY = "x-loopml-access"


@dataclass(frozen=True)
class Caller:
    """The authenticated caller: the name recorded as actor, and what they may do."""

    name: str
    may: Callable[[str, str | None], bool]  # (action, project_id or None) -> allowed
    is_admin: bool = False
    roles: Callable[[str], frozenset[str]] = lambda _project_id: frozenset()  # held on a project

    def require(self, action: str, project_id: str | None) -> None:
        if not self.may(action, project_id):
            where = f" in project {project_id}" if project_id is not None else ""
            raise PermissionDenied(f"{self.name} may not {action}{where}")


Authenticator = Callable[[Request], Caller]
"""Returns the caller of a request, or raises Unauthenticated."""


def local_authenticator(user: str) -> Authenticator:
    """Auth off (loopback only): every request is the local user, allowed everything."""
    every_role = frozenset(r.value for r in Role)
    caller = Caller(
        name=user, may=lambda _action, _project: True, is_admin=True,
        roles=lambda _project: every_role,
    )  # fmt: skip

    def authenticate(_request: Request) -> Caller:
        return caller

    return authenticate


ProjectScope = Callable[[Request], str | None]


def caller_of(request: Request) -> Caller:
    caller = getattr(request.state, "caller", None)
    if caller is None:
        authenticate: Authenticator = request.app.state.authenticate
        caller = authenticate(request)
        if caller is None:
            raise Unauthenticated("authentication required")
        request.state.caller = caller
    return caller


def protected(action: str, scope: ProjectScope | None = None) -> dict[str, Any]:
    """Route keyword arguments: authenticate, then require ``action`` on the scoped project."""

    def check(request: Request) -> Caller:
        caller = caller_of(request)
        caller.require(action, scope(request) if scope is not None else None)
        return caller

    return {"dependencies": [Depends(check)], "openapi_extra": {ACCESS_KEY: action}}


def authenticated() -> dict[str, Any]:
    """Route keyword arguments: any authenticated caller, no particular permission."""
    return {"dependencies": [Depends(caller_of)], "openapi_extra": {ACCESS_KEY: "authenticated"}}


def public() -> dict[str, Any]:
    return {"openapi_extra": {ACCESS_KEY: "public"}}


def route_table(routes: Any) -> list[tuple[str, frozenset[str], str | None, bool]]:
    """Every route as (path, methods, declared access, has a dependency), nested routers too.

    For the test that walks the table: a route that declares nothing is a bug.
    """
    from fastapi.routing import APIRoute

    table: list[tuple[str, frozenset[str], str | None, bool]] = []
    for route in routes:
        nested = getattr(route, "original_router", None)
        if nested is not None:  # an included router (FastAPI wraps them)
            table += route_table(nested.routes)
        elif isinstance(route, APIRoute):
            access = (route.openapi_extra or {}).get(ACCESS_KEY)
            guarded = bool(route.dependant.dependencies)
            table.append((route.path, frozenset(route.methods or ()), access, guarded))
        else:
            path = getattr(route, "path", repr(route))
            methods = frozenset(getattr(route, "methods", None) or ())
            access = "public" if path in FRAMEWORK_PUBLIC_PATHS else None
            table.append((path, methods, access, False))
    return table


FRAMEWORK_PUBLIC_PATHS = frozenset({"/api/v1/openapi.json"})
"""FastAPI's own route (the spec), public on purpose; the docs page is a declared route."""
