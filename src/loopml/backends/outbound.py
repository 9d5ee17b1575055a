"""Guarded outbound HTTP: the one choke point for server-side fetches (webhooks, URLs).

DESIGN.md 5: server-side fetches refuse loopback, private, link-local and metadata addresses,
re-checked at connect time and after redirects. How:

- ``parse_url`` accepts only ``http``/``https`` URLs with a host and without credentials.
- The host is resolved once with ``socket.getaddrinfo`` (which reads ``2130706433``, ``0x7f.1``,
  ``0177.0.0.1`` and ``127.1`` the way the OS would connect to them) and EVERY address is checked
  by an :class:`AddressPolicy`.
- The check runs inside the connection's network backend, and the socket is opened to the vetted
  IP itself (pinned), while the Host header and TLS SNI keep the original name: a DNS answer that
  changes between a registration check and the delivery (DNS rebinding) cannot slip through.
- Redirects are followed by hand (at most 3), each target going through the same checks.
- Environment proxies are never used; response bodies are read to at most 64 KiB, and each hop
  has a deadline of ``timeout`` seconds for all of its reads and writes together.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import certifi
import httpcore

from loopml.errors import InvalidArgument, PermissionDenied, Unavailable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_REDIRECTS = 3
MAX_RESPONSE_BYTES = 64 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DROPPED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_NETWORK_ERRORS = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,  # LocalProtocolError is caught before: it is our mistake
    httpcore.ConnectionNotAvailable,
    httpcore.UnsupportedProtocol,
    OSError,
)

# Cloud instance-metadata and platform endpoints: refused even when private addresses are allowed.
_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean …
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.170.23",  # AWS EKS pod identity
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd00:ec2::23",  # AWS EKS pod identity over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure WireServer
        "192.0.0.192",  # Oracle Cloud
    )
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_V4_COMPAT = ipaddress.ip_network("::/96")


def _views(ip: IPAddress) -> list[IPAddress]:
    """The address and the IPv4 addresses it embeds (mapped, compatible, NAT64, 6to4, Teredo)."""
    if isinstance(ip, ipaddress.IPv4Address):
        return [ip]
    if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d is a.b.c.d on a dual-stack socket
        return [ip.ipv4_mapped]
    if ip in _NAT64:  # DNS64 answers: judged by the IPv4 host behind the translator
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    views: list[IPAddress] = [ip]
    if ip in _V4_COMPAT and int(ip) > 1:
        views.append(ipaddress.IPv4Address(int(ip)))
    if ip.sixtofour is not None:
        views.append(ip.sixtofour)
    if ip.teredo is not None:
        views.extend(ip.teredo)
    return views


def _reason(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public unicast address, or None when it is."""
    checks: list[tuple[bool, str]] = [
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (ip in _CGNAT, "carrier-grade NAT"),
        (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local, "site-local"),
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
        (not ip.is_global, "not globally routable"),
    ]
    return next((why for hit, why in checks if hit), None)


@dataclass(frozen=True)
class AddressPolicy:
    """Which IP addresses outbound requests may reach.

    By default only public unicast addresses. ``allow_private`` lets everything else through
    (tests, on-premise receivers); ``allowed_networks`` lets specific CIDRs through. Cloud
    metadata addresses are refused whatever the settings.

    >>> AddressPolicy(allowed_networks=("10.1.0.0/16",)).check_ip(ipaddress.ip_address("10.1.2.3"))
    """

    allow_private: bool = False
    allowed_networks: tuple[str, ...] = ()
    _networks: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        try:
            nets = tuple(ipaddress.ip_network(n, strict=False) for n in self.allowed_networks)
        except ValueError as e:
            raise InvalidArgument(f"bad network in allowed_networks: {e}") from e
        object.__setattr__(self, "_networks", nets)

    def check_ip(self, ip: IPAddress) -> None:
        """Raise PermissionDenied, naming the address and why, unless ``ip`` may be reached."""
        views = _views(ip)
        for view in views:
            if view in _METADATA:
                kind = "link-local (cloud metadata)" if view.is_link_local else "cloud metadata"
                raise PermissionDenied(f"{_label(ip, view)} is {kind}", details={"ip": str(ip)})
        for view in views:
            if self.allow_private or any(view in net for net in self._networks):
                continue
            why = _reason(view)
            if why is not None:
                raise PermissionDenied(f"{_label(ip, view)} is {why}", details={"ip": str(ip)})


def _label(ip: IPAddress, view: IPAddress) -> str:
    return str(ip) if view == ip else f"{ip} (embedding {view})"


@dataclass(frozen=True)
class ParsedUrl:
    """An accepted http(s) URL: ``host`` is an IP literal or an ASCII (IDNA) name."""

    scheme: str
    host: str
    port: int
    target: str  # path and query, what goes on the request line
    authority: str  # the Host header

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.authority}{self.target}"


def parse_url(url: str) -> ParsedUrl:
    """Parse an outbound URL or raise InvalidArgument (scheme, credentials, host, port)."""
    if not isinstance(url, str) or not url or len(url) > 4096:
        raise InvalidArgument("URL must be a non-empty string of at most 4096 characters")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 or c == "\\" for c in url):
        raise InvalidArgument("URL must not contain spaces, control characters or backslashes")
    try:
        parts = urlsplit(url)
        explicit_port = parts.port
    except ValueError as e:
        raise InvalidArgument(f"bad URL {url!r}: {e}") from e
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidArgument(f"only http and https URLs are allowed, not {scheme or 'none'!r}")
    if "@" in parts.netloc:
        raise InvalidArgument("URLs with credentials (user@host) are not allowed")
    host = parts.hostname or ""
    if not host:
        raise InvalidArgument(f"URL {url!r} has no host")
    if "%" in host:
        raise InvalidArgument("IPv6 zone ids are not allowed in URLs")
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    bracketed = parts.netloc.rpartition("@")[2].startswith("[")
    if bracketed != isinstance(literal, ipaddress.IPv6Address):
        raise InvalidArgument(f"bad host in URL {url!r}")
    if literal is None:
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as e:
            raise InvalidArgument(f"bad host name in URL {url!r}") from e
    else:
        host = str(literal)
    if explicit_port == 0:
        raise InvalidArgument("port 0 is not allowed")
    default = 443 if scheme == "https" else 80
    port = explicit_port or default
    name = f"[{host}]" if bracketed else host
    authority = name if port == default else f"{name}:{port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return ParsedUrl(scheme, host, port, target, authority)


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to, in the resolver's order; Unavailable if none."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        raise Unavailable(f"cannot resolve {host}: {e}") from e
    ips: list[IPAddress] = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if ip not in ips:
            ips.append(ip)
    if not ips:
        raise Unavailable(f"cannot resolve {host}: no addresses")
    return ips


def vet(host: str, port: int, policy: AddressPolicy) -> list[IPAddress]:
    """Resolve ``host`` and check every address; PermissionDenied if any one is refused."""
    ips = resolve(host, port)
    for ip in ips:
        try:
            policy.check_ip(ip)
        except PermissionDenied as e:
            if host == str(ip):
                raise
            raise PermissionDenied(f"{host} resolves to {e.message}", details=e.details) from None
    return ips


def check_url(url: str, policy: AddressPolicy) -> ParsedUrl:
    """Parse, resolve and check ``url`` now (InvalidArgument, PermissionDenied, Unavailable)."""
    parsed = parse_url(url)
    vet(parsed.host, parsed.port, policy)
    return parsed


class _Deadline(threading.local):
    """The monotonic deadline of the request running on this thread (None: no request)."""

    at: float | None = None

    def budget(self, timeout: float | None, error: type[Exception]) -> float | None:
        if self.at is None:
            return timeout
        remaining = self.at - time.monotonic()
        if remaining <= 0:
            raise error("request deadline exceeded")
        return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    """A network stream whose reads and writes never outlive the request's deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: _Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.budget(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.budget(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        budget = self._deadline.budget(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(
            self._inner.start_tls(ssl_context, server_hostname, budget), self._deadline
        )

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _PinnedBackend(httpcore.SyncBackend):
    """Resolves and checks at connect time, then connects to the vetted IP (pinned)."""

    def __init__(self, policy: AddressPolicy, deadline: _Deadline) -> None:
        self._policy = policy
        self._deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        last: Exception | None = None
        for ip in vet(host, port, self._policy):
            budget = self._deadline.budget(timeout, httpcore.ConnectTimeout)
            try:
                stream = super().connect_tcp(str(ip), port, budget, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                last = e
                continue
            return _DeadlineStream(stream, self._deadline)
        raise last or httpcore.ConnectError(f"cannot connect to {host}")


class GuardedHttp:
    """A small HTTP client for server-side requests that only reaches what the policy allows."""

    def __init__(self, policy: AddressPolicy, timeout: float) -> None:
        if not timeout > 0:
            raise InvalidArgument("timeout must be positive")
        self.policy = policy
        self.timeout = float(timeout)
        self._deadline = _Deadline()
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl.create_default_context(cafile=certifi.where()),
            max_connections=32,
            max_keepalive_connections=8,
            keepalive_expiry=30.0,
            retries=0,
            network_backend=_PinnedBackend(policy, self._deadline),
        )

    def post(self, url: str, content: bytes, headers: dict[str, str]) -> int:
        """POST ``content`` and return the final status code (redirects followed by hand).

        Raises InvalidArgument for a bad URL, PermissionDenied when the policy refuses an address
        (first hop or redirect), Unavailable for connection errors and timeouts.
        """
        target = parse_url(url)
        for hop in range(MAX_REDIRECTS + 1):
            status, location = self._send(target, content, headers)
            if status not in _REDIRECTS or location is None or hop == MAX_REDIRECTS:
                return status
            try:
                target = parse_url(urljoin(target.url, location))
            except InvalidArgument as e:
                raise PermissionDenied(f"redirect to {location!r} refused: {e.message}") from e
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(
        self, target: ParsedUrl, content: bytes, headers: dict[str, str]
    ) -> tuple[int, str | None]:
        sent = [("Host", target.authority)]
        sent += [(k, v) for k, v in headers.items() if k.lower() not in _DROPPED_HEADERS]
        sent.append(("Content-Length", str(len(content))))
        request = httpcore.Request(
            "POST",
            httpcore.URL(
                scheme=target.scheme, host=target.host, port=target.port, target=target.target
            ),
            headers=sent,
            content=content,
            extensions={
                "timeout": dict.fromkeys(("connect", "read", "write", "pool"), self.timeout)
            },
        )
        self._deadline.at = time.monotonic() + self.timeout
        try:
            response = self._pool.handle_request(request)
            try:
                location = next(
                    (v.decode("latin-1") for k, v in response.headers if k.lower() == b"location"),
                    None,
                )
                received = 0
                for chunk in response.iter_stream():  # drain a little, never more than 64 KiB
                    received += len(chunk)
                    if received >= MAX_RESPONSE_BYTES:
                        break
            finally:
                response.close()
            return response.status, location
        except httpcore.LocalProtocolError as e:
            raise InvalidArgument(f"cannot send request to {target.url}: {e}") from e
        except _NETWORK_ERRORS as e:
            kind = "timed out" if isinstance(e, httpcore.TimeoutException) else "failed"
            raise Unavailable(
                f"request to {target.url} {kind}: {str(e) or type(e).__name__}"
            ) from e
        finally:
            self._deadline.at = None

    def close(self) -> None:
        """Close pooled connections."""
        self._pool.close()

    def __enter__(self) -> GuardedHttp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
