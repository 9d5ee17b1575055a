"""Browser sessions for the web UI, and the one CSRF guard for every state-changing request.

**Sessions.** Logging in at ``/login`` creates a server-side session: a random 32-byte id sent in
an ``HttpOnly; SameSite=Lax; Path=/`` cookie (``Secure`` over https). The store keeps only the
SHA-256 of the id, in memory, bounded in size (least recently used sessions go first), with an
idle timeout (12 h) and an absolute lifetime (7 days). Each session carries its own CSRF token.
The token authenticator (``server/identity.py``) accepts a valid session cookie as well as a
bearer token. With a database behind the server, sessions are also kept there (by the hash of
their id), so a login holds in every uvicorn worker and across restarts.

**CSRF** (:class:`CsrfGuard`, ASGI middleware, the only place this is decided). For POST, PUT,
PATCH and DELETE:

* requests with an ``Authorization: Bearer`` header are API-token calls: a browser cannot
  attach one cross-site (no CORS here), so they pass untouched;
* a foreign ``Origin`` (or, without one, ``Referer``) is refused (403), whoever calls;
* a request carrying a valid session cookie (cookie-authenticated) must also name our own
  origin, and carry the session's token: the ``X-CSRF-Token`` header, or for the UI's forms a
  ``csrf_token`` field; API calls must not use the content types a cross-site form can send
  (``text/plain``, form encodings: 415);
* without a session, the UI's forms (``/login`` and any other page form) carry the token of the
  ``loopml_csrf`` cookie (double submit), and the API refuses those content types too, so a
  loopback server without auth cannot be driven by a foreign page either.

It also sends people to ``/login`` instead of showing them a JSON 401 when a page (not the API)
needs a login.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from loopml.governance.sessions import Session, SessionBackend
from loopml.server.errors import error_body

SESSION_COOKIE = "loopml_session"
CSRF_COOKIE = "loopml_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# What a cross-site <form> may send without a CORS preflight: never accepted by the API from a
# browser (no Authorization header).
SIMPLE_CONTENT_TYPES = frozenset(
    {"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"}
)
MAX_FORM_BYTES = 64 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}
RECHECK_SECONDS = 2.0  # how stale a worker's cached session may be (a logout elsewhere)


class SessionStore:
    """Server-side sessions: bounded in memory, with idle and absolute expiry, and (with a
    ``backend``) kept in the database too, so a login holds in every worker.

    >>> store = SessionStore(max_sessions=2)
    >>> sid, session = store.create("u1", "ada")
    >>> store.get(sid).username, store.get("forged") is None
    ('ada', True)
    >>> store.drop(sid); store.get(sid) is None
    True
    """

    def __init__(
        self,
        *,
        idle_seconds: float = 12 * 3600,
        absolute_seconds: float = 7 * 24 * 3600,
        max_sessions: int = 10_000,
        login_enabled: bool = True,
        clock: Callable[[], float] = time.time,
        backend: SessionBackend | None = None,
    ) -> None:
        self.idle_seconds = idle_seconds
        self.absolute_seconds = absolute_seconds
        self.max_sessions = max_sessions
        self.login_enabled = login_enabled
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, Session] = OrderedDict()  # sha256(id) -> session
        self._backend = backend
        self._persisted_seen: dict[str, float] = {}
        self._checked: dict[str, float] = {}  # when the backend last confirmed a session

    @staticmethod
    def _key(session_id: str) -> str:
        return hashlib.sha256(session_id.encode("utf-8", "replace")).hexdigest()

    def create(self, user_id: str, username: str) -> tuple[str, Session]:
        """A new session for the user; returns its id (the cookie value), shown only here."""
        session_id = secrets.token_urlsafe(32)
        now = self._clock()
        session = Session(user_id, username, secrets.token_urlsafe(32), now, now)
        key = self._key(session_id)
        if self._backend is not None:
            self._backend.prune(idle_before=now - self.idle_seconds,
                                created_before=now - self.absolute_seconds)  # fmt: skip
            self._backend.save(key, session)
        with self._lock:
            self._sessions[key] = session
            while len(self._sessions) > self.max_sessions:
                self._evict_oldest()
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id (and mark it used), or None."""
        if not session_id or len(session_id) > 256:
            return None
        key = self._key(session_id)
        now = self._clock()
        with self._lock:
            session = self._sessions.get(key)
        if self._backend is not None and (
            session is None or now - self._checked.get(key, 0) > RECHECK_SECONDS
        ):
            # Made by another worker, or ended there (logout): the database decides.
            stored = self._backend.load(key)
            self._checked[key] = now
            if stored is None:
                self._forget(key, everywhere=False)
                return None
            if session is None:
                session = stored
        if session is None:
            return None
        expired = (
            now - session.last_seen > self.idle_seconds
            or now - session.created > self.absolute_seconds
        )
        if expired:
            self._forget(key, everywhere=True)
            return None
        session.last_seen = now
        with self._lock:
            self._sessions[key] = session
            self._sessions.move_to_end(key)
            while len(self._sessions) > self.max_sessions:
                self._evict_oldest()
        if self._backend is not None and now - self._persisted_seen.get(key, 0) > 60:
            self._backend.touch(key, now)  # at most once a minute per session and process
            self._persisted_seen[key] = now
        return session

    def _evict_oldest(self) -> None:  # caller holds the lock
        key, _ = self._sessions.popitem(last=False)
        self._checked.pop(key, None)
        self._persisted_seen.pop(key, None)

    def drop(self, session_id: str | None) -> None:
        if session_id:
            self._forget(self._key(session_id), everywhere=True)

    def _forget(self, key: str, *, everywhere: bool) -> None:
        with self._lock:
            self._sessions.pop(key, None)
            self._persisted_seen.pop(key, None)
            self._checked.pop(key, None)
        if everywhere and self._backend is not None:
            self._backend.delete(key)

    def __len__(self) -> int:
        return len(self._sessions)


def sessions_of(app_state: Any) -> SessionStore | None:
    store = getattr(app_state, "sessions", None)
    return store if isinstance(store, SessionStore) else None


def session_of_request(request: Any) -> Session | None:
    """The live session named by the request's cookie, or None (used by the authenticator)."""
    store = sessions_of(request.app.state)
    if store is None:
        return None
    return store.get(request.cookies.get(SESSION_COOKIE))


# cookies -----------------------------------------------------------------------------------
def cookie_header(name: str, value: str, *, secure: bool, same_site: str = "Lax") -> str:
    """A ``Set-Cookie`` value: HttpOnly, Path=/, SameSite, Secure over https."""
    parts = [f"{name}={value}", "Path=/", "HttpOnly", f"SameSite={same_site}"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def clear_cookie_header(name: str, *, secure: bool) -> str:
    return cookie_header(name, "", secure=secure) + "; Max-Age=0"


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


# origins -----------------------------------------------------------------------------------
def _normal_origin(scheme: str, host: str) -> str:
    scheme, host = scheme.lower(), host.strip().lower()
    name, sep, port = host.rpartition(":")
    bracketed_or_plain = not name.startswith("[") or name.endswith("]")
    if sep and port.isdigit() and bracketed_or_plain and int(port) == _DEFAULT_PORTS.get(scheme):
        host = name
    return f"{scheme}://{host}"


def origin_of_url(url: str) -> str | None:
    """``scheme://host[:port]`` of an absolute URL (default port dropped), or None."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
        return None
    return _normal_origin(parts.scheme, parts.netloc)


def own_origin(scope: dict[str, Any], headers: dict[str, str]) -> str:
    """The origin this request was sent to: its scheme and its Host header."""
    host = headers.get("host") or ""
    if not host:
        server = scope.get("server") or ("localhost", None)
        host = f"{server[0]}:{server[1]}" if server[1] else str(server[0])
    return _normal_origin(str(scope.get("scheme", "http")), host)


def is_secure(scope: Mapping[str, Any]) -> bool:
    return scope.get("scheme") == "https"


# the guard ---------------------------------------------------------------------------------
class Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        if name in out:
            value = out[name] + ("; " if name == "cookie" else ", ") + value
        out[name] = value
    return out


def _cookies(headers: dict[str, str]) -> dict[str, str]:
    jar = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except CookieError:
        return {}
    return {k: m.value for k, m in jar.items()}


def _media_type(headers: dict[str, str]) -> str:
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _is_api(path: str) -> bool:
    return path.startswith("/api/")


def _same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


class CsrfGuard:
    """ASGI middleware: CSRF and Origin checks for unsafe methods; login redirects for pages."""

    def __init__(self, app: Any, *, sessions: SessionStore) -> None:
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        if method not in UNSAFE_METHODS:
            await self.app(scope, receive, self._redirect_to_login(scope, send))
            return
        headers = _headers(scope)
        try:
            receive = await self._check(scope, headers, receive)
        except Refused as e:
            await _refuse(send, e)
            return
        await self.app(scope, receive, send)

    async def _check(self, scope: dict[str, Any], headers: dict[str, str], receive: Any) -> Any:
        if headers.get("authorization", "").lower().startswith("bearer "):
            return receive  # an API token: nothing a browser attaches by itself
        path: str = scope.get("path", "")
        claimed = headers.get("origin")
        if claimed is None and "referer" in headers:
            claimed = origin_of_url(headers["referer"]) or "null"
        ours = own_origin(scope, headers)
        if claimed is not None and claimed.lower() != ours:
            raise Refused(403, "permission_denied", "cross-site request refused (origin)")
        cookies = _cookies(headers)
        session = self.sessions.get(cookies.get(SESSION_COOKIE))
        api = _is_api(path)
        if api and _media_type(headers) in SIMPLE_CONTENT_TYPES:
            raise Refused(
                415,
                "unsupported_media_type",
                "the API takes JSON (or raw bytes for artifacts), not form or text bodies",
            )
        if api and session is None:
            return receive  # no ambient credential: the authenticator decides
        if claimed is None:
            raise Refused(403, "permission_denied", "request refused: no Origin or Referer")
        if session is None and path == "/logout":
            return receive  # nothing to log out of; the route only clears the cookie
        expected = session.csrf_token if session is not None else cookies.get(CSRF_COOKIE)
        token = headers.get(CSRF_HEADER)
        if token is None and not api and _media_type(headers) in SIMPLE_CONTENT_TYPES:
            body, receive = await _buffer(receive)
            token = _form_field(body, headers, CSRF_FIELD)
        if not _same(token, expected):
            raise Refused(403, "permission_denied", "missing or invalid CSRF token")
        return receive

    def _redirect_to_login(self, scope: dict[str, Any], send: Any) -> Any:
        """Pages answer 401 by sending the person to /login (the API keeps its JSON 401)."""
        path: str = scope.get("path", "")
        if _is_api(path) or not self.sessions.login_enabled:
            return send
        state = {"redirected": False}

        async def wrapped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                state["redirected"] = True
                query = scope.get("query_string", b"").decode("latin-1")
                target = path + (f"?{query}" if query else "")
                location = "/login" + (f"?next={quote(target, safe='')}" if path != "/" else "")
                headers = [
                    (b"location", location.encode("latin-1")),
                    (b"content-length", b"0"),
                    (b"cache-control", b"no-store"),
                    (
                        b"set-cookie",
                        clear_cookie_header(SESSION_COOKIE, secure=is_secure(scope)).encode(),
                    ),
                ]
                await send({"type": "http.response.start", "status": 303, "headers": headers})
                return
            if state["redirected"]:
                if message["type"] == "http.response.body" and not message.get("more_body"):
                    await send({"type": "http.response.body", "body": b""})
                return
            await send(message)

        return wrapped


async def _buffer(receive: Any) -> tuple[bytes, Any]:
    """Read the whole (small) body, and a ``receive`` that replays it to the app."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Refused(400, "invalid_argument", "the client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            raise Refused(413, "too_large", f"form bodies are limited to {MAX_FORM_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    body = b"".join(chunks)
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        message: dict[str, Any] = await receive()
        return message

    return body, replay


def _form_field(body: bytes, headers: dict[str, str], name: str) -> str | None:
    if _media_type(headers) != "application/x-www-form-urlencoded":
        return None
    return parse_form(body).get(name)


def parse_form(body: bytes) -> dict[str, str]:
    """An urlencoded form body as ``{field: first value}`` (what the UI's forms post)."""
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {k: v[0] for k, v in parsed.items() if v}


async def _refuse(send: Any, refused: Refused) -> None:
    body = json.dumps(error_body(refused.code, refused.message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": refused.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def install(
    app: Any, *, login_enabled: bool, backend: SessionBackend | None = None
) -> SessionStore:
    """Give ``app`` a session store (``app.state.sessions``) and the CSRF guard."""
    store = SessionStore(login_enabled=login_enabled, backend=backend)
    app.state.sessions = store
    app.add_middleware(CsrfGuard, sessions=store)
    return store
