"""The HTTP side of load tests: one kept-alive HTTP/1.1 connection per worker, on asyncio.

:func:`http_sender_factory` builds the senders :func:`loopml.serving.loadtest.run_load` drives;
:func:`run_http_load` is the two together, for a URL and an optional payload. Each sender sends
the same request bytes, built once, and reads the answer with just enough HTTP to find its end
(``Content-Length``, chunked, or the connection closing): an HTTP client library would spend
more time per request than the server under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

from loopml.errors import InvalidArgument
from loopml.serving.loadtest import LoadResult, Sender, SenderFactory, rows_in_payload, run_load

MAX_HEAD = 64 * 1024  # bytes of status line and headers
BINARY_HEADER = "inference-header-content-length"  # OIP's binary tensor data extension


class BadAnswer(Exception):
    """The server's bytes are not an HTTP/1.1 answer we can find the end of."""


class HttpSender:
    """Sends the same request on one kept-alive connection; the outcome is its status class."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None, request: bytes,
                 timeout_s: float) -> None:  # fmt: skip
        self._host, self._port, self._tls = host, port, tls
        self._request = request
        self._timeout = timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __call__(self) -> str:
        try:
            async with asyncio.timeout(self._timeout):
                if self._writer is None:
                    await self._connect()
                assert self._reader is not None and self._writer is not None
                self._writer.write(self._request)
                status, keep_alive = await _read_answer(self._reader)
        except TimeoutError:
            await self._drop()  # mid-answer: the connection is unusable
            return "timeout"
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, BadAnswer):
            await self._drop()
            return "connection"
        if not keep_alive:
            await self._drop()
        return "ok" if 200 <= status < 300 else f"http_{status // 100}xx"

    async def _connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(
            self._host,
            self._port,
            ssl=self._tls,
            limit=MAX_HEAD,
            server_hostname=self._host if self._tls else None,
        )  # fmt: skip  (asyncio sets TCP_NODELAY on TCP connections)

    async def _drop(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                async with asyncio.timeout(1.0):  # a peer that never reads must not stall us
                    await writer.wait_closed()

    async def close(self) -> None:
        await self._drop()


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one answer whole; its status and whether the connection stays open."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise BadAnswer(f"not an HTTP status line: {lines[0][:80]!r}")
        status = int(parts[1])
        if not 100 <= status < 200:
            break  # an interim 1xx answer is followed by the real one
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip().lower()
    keep_alive = headers.get("connection") != "close" and parts[0] != "HTTP/1.0"
    if status in (204, 304):
        return status, keep_alive
    if "chunked" in headers.get("transfer-encoding", ""):
        while True:
            size_line = await reader.readuntil(b"\r\n")
            try:
                size = int(size_line.split(b";", 1)[0], 16)
            except ValueError:
                raise BadAnswer(f"bad chunk size {size_line[:40]!r}") from None
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
                return status, keep_alive
            await reader.readexactly(size + 2)
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise BadAnswer(f"bad Content-Length {length[:40]!r}")
        await reader.readexactly(int(length))
        return status, keep_alive
    while await reader.read(65536):  # the body ends with the connection
        pass
    return status, False


def http_sender_factory(
    url: str, *, method: str = "GET", payload: bytes | None = None,
    headers: Mapping[str, str] | None = None, timeout_s: float = 10.0,
) -> SenderFactory:  # fmt: skip
    """A factory of :class:`HttpSender` for ``run_load`` (JSON content type for a payload)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument(f"load test URL must start with http:// or https://, got {url!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as e:
        raise InvalidArgument(f"bad port in {url!r}: {e}") from None
    tls = ssl.create_default_context() if parts.scheme == "https" else None
    sent = dict(headers or {})
    for name, value in sent.items():
        if not name.strip() or any(c in name for c in "\r\n:") or any(c in value for c in "\r\n"):
            raise InvalidArgument(f"bad header {name!r}: {value!r}")
    lower = {k.lower() for k in sent}
    if payload is not None and "content-type" not in lower:
        binary = BINARY_HEADER in lower  # OIP with binary tensors
        sent["Content-Type"] = "application/octet-stream" if binary else "application/json"
    if "host" not in lower:
        default_port = parts.port is None
        sent = {"Host": parts.hostname if default_port else parts.netloc.rpartition("@")[2],
                **sent}  # fmt: skip
    body = payload or b""
    if payload is not None or method.upper() not in ("GET", "HEAD", "DELETE"):
        sent["Content-Length"] = str(len(body))
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    head = f"{method.upper()} {target} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in sent.items()
    )
    request = head.encode("latin-1") + b"\r\n" + body

    async def connect() -> Sender:
        return HttpSender(parts.hostname or "", port, tls, request, timeout_s)

    return connect


def run_http_load(
    url: str, *, concurrency: int, duration_s: float, rate: float | None = None,
    payload: bytes | None = None, method: str | None = None,
    headers: Mapping[str, str] | None = None, warmup_s: float = 0.0, timeout_s: float = 10.0,
) -> LoadResult:  # fmt: skip
    """Load-test ``url``: a GET without a payload, a POST with one unless ``method`` says."""
    method = (method or ("POST" if payload is not None else "GET")).upper()
    connect = http_sender_factory(url, method=method, payload=payload, headers=headers,
                                  timeout_s=timeout_s)  # fmt: skip
    rows = rows_in_payload(payload, json_length(payload or b"", headers or {}))
    return run_load(connect, concurrency=concurrency, duration_s=duration_s, rate=rate,
                    warmup_s=warmup_s, rows_per_request=rows,
                    target=f"{method} {url}")  # fmt: skip


def json_length(payload: bytes, headers: Mapping[str, str]) -> int | None:
    """The length of the JSON part of an OIP payload with binary tensors (its
    ``Inference-Header-Content-Length`` header), ``None`` when the payload is all JSON."""
    value = next((v for k, v in headers.items() if k.strip().lower() == BINARY_HEADER), None)
    if value is None:
        return None
    if not value.strip().isdecimal() or int(value) > len(payload):
        raise InvalidArgument(
            f"Inference-Header-Content-Length must be a byte count within the payload "
            f"({len(payload)} bytes), got {value!r:.40}"
        )
    return int(value)
