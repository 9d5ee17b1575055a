"""Who may call the inference server (``loopml serve --auth``): the platform's API tokens.

A caller sends ``Authorization: Bearer lml_…``, the token the platform issued. The token is looked
up by its hash in the metadata store (through the identity store, the same check the platform
server makes) and its user must hold ``deployment.invoke`` on the project of what is served (the
deployment's project, or the registered model's, or the run's). The answer is cached per token
for ``cache_s`` seconds (5 by default): a hit is one dict lookup, and a revoked token, a disabled
user or a withdrawn role stops working within ``cache_s``. A miss goes to the store in a thread,
never on the event loop.

The health probes (:data:`PUBLIC_PATHS`) answer anyone; every other route, an unknown path too,
needs the token. With auth off none of this runs.

>>> import asyncio
>>> from loopml.governance.identity import Principal, User
>>> from loopml.governance.roles import Role
>>> ada = User("u1", "ada", "", False, False, False, 0)
>>> def lookup(secret):
...     return Principal(ada, {"7": Role.DEVOPS}, is_admin=False)
>>> auth = InferenceAuth(lookup, project_id="7")
>>> token = "lml_0123456789abcdef_" + "x" * 43
>>> scope = {"headers": [(b"authorization", f"Bearer {token}".encode())]}
>>> asyncio.run(auth.refusal(scope)) is None, asyncio.run(auth.refusal({"headers": []})).code
(True, 'unauthenticated')
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from loopml.errors import InvalidArgument, LoopmlError, PermissionDenied, Unauthenticated
from loopml.governance.identity import BAD_TOKEN, IdentityStore, Principal
from loopml.governance.roles import Action
from loopml.governance.tokens import token_id_of
from loopml.server import asgi_headers
from loopml.server.inference_runtime import error_response
from loopml.serving.admission import Overloaded

PUBLIC_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/ping", "/metrics"})
"""Liveness and readiness probes and the Prometheus scrape: what orchestrators call without a
token (the same as the platform server's ``/healthz`` and ``/metrics``)."""

TokenLookup = Callable[[str], Principal]
"""A token's secret to its user's principal; PermissionDenied (or InvalidArgument) when the token
is unknown, revoked, expired or its user disabled. Blocking: it reads the store."""


def store_lookup(identity: IdentityStore) -> TokenLookup:
    """The :data:`TokenLookup` of an identity store: the token by its hash, then its user's
    roles (what the platform server checks a bearer token with)."""

    def lookup(secret: str) -> Principal:
        return identity.principal(identity.authenticate_token(secret))

    return lookup


NO_TOKEN = "authentication required: send 'Authorization: Bearer <token>'"  # noqa: S105
_MAX_ENTRIES = 4096
_MAX_LOOKUPS = 32  # token look-ups in the store at once; beyond, 503 (a flood of made-up tokens)


class InferenceAuth:
    """The check in front of every protected route of the inference app (see the module doc)."""

    def __init__(
        self, lookup: TokenLookup, project_id: str, *, cache_s: float = 5.0,
        max_entries: int = _MAX_ENTRIES,
    ) -> None:  # fmt: skip
        if cache_s < 0 or max_entries < 1:
            raise InvalidArgument("need cache_s >= 0 and max_entries >= 1")
        self.lookup = lookup
        self.project_id = str(project_id)
        self.cache_s = cache_s
        self.max_entries = max_entries
        # raw header value -> (valid until, monotonic; the refusal, None when allowed)
        self._cache: dict[bytes, tuple[float, LoopmlError | None]] = {}
        self._lookups = 0

    async def refusal(self, scope: Mapping[str, Any]) -> LoopmlError | None:
        """Why the request in ``scope`` may not go on (Unauthenticated: 401, PermissionDenied:
        403, Overloaded or the store's Unavailable: 503), or None when its token allows
        ``deployment.invoke``."""
        header = asgi_headers.header(scope, b"authorization")
        if header is None:
            return Unauthenticated(NO_TOKEN)
        hit = self._cache.get(header)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        scheme, _, secret = header.decode("latin-1").partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            return Unauthenticated(NO_TOKEN)
        if token_id_of(secret) is None:  # not one of ours: no need to ask the store
            return Unauthenticated(BAD_TOKEN)
        if self._lookups >= _MAX_LOOKUPS:
            return Overloaded("too many token checks at once; retry shortly")
        self._lookups += 1
        try:
            loop = asyncio.get_running_loop()
            principal = await loop.run_in_executor(None, self.lookup, secret)
        except (PermissionDenied, InvalidArgument):
            return Unauthenticated(BAD_TOKEN)  # not cached: nothing to remember about junk
        except LoopmlError as e:  # the store cannot answer (Unavailable: 503), not a 500
            return e
        finally:
            self._lookups -= 1
        refusal: LoopmlError | None = None
        if not principal.can(Action.DEPLOYMENT_INVOKE, self.project_id):
            refusal = PermissionDenied(
                f"{principal.name} may not {Action.DEPLOYMENT_INVOKE.value} in project "
                f"{self.project_id}"
            )
        self._remember(header, refusal)
        return refusal

    def _remember(self, header: bytes, refusal: LoopmlError | None) -> None:
        cache = self._cache
        if len(cache) >= self.max_entries:
            now = time.monotonic()
            for key in [k for k, (until, _) in cache.items() if until <= now]:
                del cache[key]
            while len(cache) >= self.max_entries:  # all live: drop the oldest
                del cache[next(iter(cache))]
        cache[header] = (time.monotonic() + self.cache_s, refusal)


class AuthGuard:
    """ASGI middleware: the same check for the routes outside the fast lane (metadata,
    ``/feedback``, unknown paths); :data:`PUBLIC_PATHS` pass. Added only with auth on."""

    def __init__(self, app: Any, auth: InferenceAuth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] not in PUBLIC_PATHS:
            denied = await self.auth.refusal(scope)
            if denied is not None:
                await error_response(denied)(scope, receive, send)
                return
        await self.app(scope, receive, send)
