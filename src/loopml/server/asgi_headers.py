"""Reading one request header straight from an ASGI scope, for the code that answers before
Starlette builds a ``Request`` (the inference fast lane, the Host and auth guards, the body limit).

>>> header({"headers": [(b"host", b"localhost:5100")]}, b"host"), header({}, b"host")
(b'localhost:5100', None)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def header(scope: Mapping[str, Any], name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower case, as ASGI servers give names), or None."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None
