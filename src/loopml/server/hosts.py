"""The Host allow-list of both servers: a request must name this server in its ``Host`` header.

A page on another site can point its own name at 127.0.0.1 (DNS rebinding) and then talk to a
loopback server as if it were same-origin; its requests still say ``Host: evil.example``. So a
request is answered only when its ``Host`` (any port) is ``localhost``, ``127.0.0.1``,
``[::1]``, the address the server is bound to, or a name configured in ``LOOPML_ALLOWED_HOSTS``;
anything else (a missing ``Host`` too) gets 421 and a JSON error before any route runs.

>>> hosts = AllowedHosts.of("10.0.0.5", ["ml.example.com"])
>>> [hosts.allows(h) for h in (b"localhost:5100", b"[::1]:5101", b"ML.example.com", b"10.0.0.5")]
[True, True, True, True]
>>> hosts.allows(b"evil.example"), hosts.allows(b"127.0.0.1.evil.example"), hosts.allows(None)
(False, False, False)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from loopml.server import asgi_headers
from loopml.server.errors import error_body

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
_UNSPECIFIED = frozenset({"0.0.0.0", "[::]"})  # noqa: S104 - a bind address, not a Host anyone names
REFUSED_STATUS = 421  # Misdirected Request: this server is not the one the name points at


def host_name(value: str) -> str | None:
    """The name part of a ``Host`` header or a configured name, normalised, or None if it is
    not one: lower case, without the port or a trailing dot, IPv6 literals in brackets.

    >>> host_name("LocalHost.:5100"), host_name("::1"), host_name("[::1]:80"), host_name("a b")
    ('localhost', '[::1]', '[::1]', None)
    """
    text = value.strip().lower()
    if text.startswith("["):
        name, bracket, rest = text.partition("]")
        name += bracket
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
    elif text.count(":") > 1:  # a bare IPv6 address (configured names only)
        name = f"[{text}]"
    else:
        name, colon, port = text.partition(":")
        if colon and not port.isdigit():
            return None
    if name.startswith("["):
        try:
            ipaddress.IPv6Address(name[1:-1])
        except ValueError:
            return None
        return name
    name = name.rstrip(".")
    if not name or not name.isascii() or any(not (c.isalnum() or c in "-._") for c in name):
        return None
    return name


class AllowedHosts:
    """The names a server answers to: a frozen set, so the check is one lookup."""

    __slots__ = ("names",)

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(names)

    @classmethod
    def of(cls, bind_host: str | None, extra: Iterable[str] = ()) -> AllowedHosts:
        """Loopback names, the bind address (unless it is 0.0.0.0 or ::) and ``extra``."""
        names = set(LOOPBACK_NAMES)
        for value in (bind_host or "", *extra):
            name = host_name(value) if value else None
            if name is not None and name not in _UNSPECIFIED:
                names.add(name)
        return cls(names)

    def allows(self, header: bytes | None) -> bool:
        if header is None:
            return False
        try:
            text = header.decode("ascii")
        except UnicodeDecodeError:
            return False
        name = host_name(text)
        return name is not None and name in self.names


def host_header(scope: Mapping[str, Any]) -> bytes | None:
    return asgi_headers.header(scope, b"host")


def refusal_message(header: bytes | None) -> str:
    if header is None:
        return "a Host header is required"
    shown = header.decode("latin-1")[:100]
    return (
        f"this server does not answer to Host {shown!r}: use localhost or 127.0.0.1, or add the "
        "name to LOOPML_ALLOWED_HOSTS"
    )


async def refuse(
    send: Any, body: dict[str, Any], headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """Answer 421 with ``body`` as JSON (the caller picks the error shape of its API)."""
    data = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": REFUSED_STATUS,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                (b"cache-control", b"no-store"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


class HostGuard:
    """ASGI middleware of the platform server: refuses a request whose Host is not allowed."""

    def __init__(self, app: Any, *, hosts: AllowedHosts) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            header = host_header(scope)
            if not self.hosts.allows(header):
                await refuse(send, error_body("misdirected_request", refusal_message(header)))
                return
        await self.app(scope, receive, send)
