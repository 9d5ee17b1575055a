"""One HTTP session to a loopml server: auth header, JSON errors back into loopml errors, retries.

Retries (exponential backoff with jitter, bounded) happen when the server answers 503 (it did not
apply the request), when the connection could not be made (nothing was sent), and — only for
requests safe to repeat (GET, PUT, DELETE, or anything carrying an ``Idempotency-Key``) — when the
connection dropped after sending.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson

from loopml import errors

_ERRORS: dict[str, type[errors.LoopmlError]] = {
    cls.code: cls
    for cls in (
        errors.NotFound, errors.AlreadyExists, errors.InvalidArgument, errors.Conflict,
        errors.PermissionDenied, errors.Unauthenticated, errors.ValidationFailed,
        errors.Unavailable, errors.IntegrityError, errors.TooLarge, errors.MissingDependency,
    )
}  # fmt: skip
_SAFE_METHODS = {"GET", "HEAD", "PUT", "DELETE"}


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body = response.json()["error"]
        code, message, details = body["code"], body["message"], body.get("details") or {}
    except (ValueError, KeyError, TypeError):
        code, message, details = "internal", response.text[:500] or response.reason_phrase, {}
    cls = _ERRORS.get(code, errors.LoopmlError)
    if cls is errors.LoopmlError and response.status_code == 404:
        cls = errors.NotFound
    raise cls(message, details=details)


class HttpTransport:
    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        client: httpx.Client | None = None,
        max_attempts: int = 6,
        timeout: float = 60.0,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = client or httpx.Client(base_url=base_url, timeout=timeout)
        self._client.headers.update(headers)
        self._max_attempts = max_attempts
        self.base_url = base_url

    def close(self) -> None:
        self._client.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send, retrying what is safe to retry; return the decoded JSON body.

        ``json=`` bodies are encoded with orjson (several times faster than the stdlib on the
        large metric batches this client sends)."""
        if "json" in kwargs:
            body = kwargs.pop("json")
            kwargs["content"] = orjson.dumps(body)
            kwargs["headers"] = {**(kwargs.get("headers") or {}),
                                 "Content-Type": "application/json"}  # fmt: skip
        response = self._send(method, path, **kwargs)
        return orjson.loads(response.content) if response.content else None

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = kwargs.get("headers") or {}
        repeatable = method in _SAFE_METHODS or "Idempotency-Key" in headers
        delay = 0.05
        for attempt in range(1, self._max_attempts + 1):
            try:
                response = self._client.request(method, path, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as e:
                if attempt == self._max_attempts:
                    raise errors.Unavailable(f"cannot reach {self.base_url}: {e}") from e
            except httpx.TransportError as e:
                if not repeatable or attempt == self._max_attempts:
                    raise errors.Unavailable(f"connection to {self.base_url} failed: {e}") from e
            else:
                if response.status_code != 503 or attempt == self._max_attempts:
                    _raise_for(response)
                    return response
                delay = max(delay, _retry_after(response))
            time.sleep(delay * (1 + random.random()))  # noqa: S311 - jitter, not crypto
            delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    @contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        with self._client.stream(method, path, **kwargs) as response:
            if response.status_code >= 400:
                response.read()
                _raise_for(response)
            yield response


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(float(response.headers.get("Retry-After", "0")), 30.0)
    except ValueError:
        return 0.0
