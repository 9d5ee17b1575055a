"""The HTTP side of load tests: one keep-alive httpx connection per worker.

:func:`http_sender_factory` builds the senders :func:`loopml.serving.loadtest.run_load` drives;
:func:`run_http_load` is the two together, for a URL and an optional payload.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping

import httpx

from loopml.serving.loadtest import LoadResult, Sender, SenderFactory, rows_in_payload, run_load


class HttpSender:
    """Sends the same request on one kept-alive connection; the outcome is its status class."""

    def __init__(
        self, url: str, *, method: str, payload: bytes | None, headers: Mapping[str, str],
        timeout_s: float,
    ) -> None:  # fmt: skip
        # TCP_NODELAY: a request whose headers and body are two writes must not wait for the
        # server's delayed ACK (Nagle), or every POST could measure ~40 ms of nothing.
        transport = httpx.HTTPTransport(
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )
        self._client = httpx.Client(transport=transport, timeout=timeout_s, follow_redirects=False)
        # Built once: the worker only sends it again, so request building is not measured.
        self._request = self._client.build_request(method, url, content=payload,
                                                   headers=dict(headers))  # fmt: skip

    def __call__(self) -> str:
        try:
            response = self._client.send(self._request)  # reads the body
        except httpx.TimeoutException:
            return "timeout"
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError,
                httpx.WriteError):  # fmt: skip
            return "connection"
        except httpx.HTTPError:
            return "other"
        status = response.status_code
        return "ok" if 200 <= status < 300 else f"http_{status // 100}xx"

    def close(self) -> None:
        self._client.close()


def http_sender_factory(
    url: str, *, method: str = "GET", payload: bytes | None = None,
    headers: Mapping[str, str] | None = None, timeout_s: float = 10.0,
) -> SenderFactory:  # fmt: skip
    """A factory of :class:`HttpSender` for ``run_load`` (JSON content type for a payload)."""
    if not url.startswith(("http://", "https://")):
        from loopml.errors import InvalidArgument

        raise InvalidArgument(f"load test URL must start with http:// or https://, got {url!r}")
    sent_headers = dict(headers or {})
    if payload is not None and not any(k.lower() == "content-type" for k in sent_headers):
        sent_headers["Content-Type"] = "application/json"

    def connect() -> Sender:
        return HttpSender(url, method=method, payload=payload, headers=sent_headers,
                          timeout_s=timeout_s)  # fmt: skip

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
    return run_load(connect, concurrency=concurrency, duration_s=duration_s, rate=rate,
                    warmup_s=warmup_s, rows_per_request=rows_in_payload(payload),
                    target=f"{method} {url}")  # fmt: skip
