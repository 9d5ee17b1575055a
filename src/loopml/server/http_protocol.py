"""The HTTP protocol both servers run on: uvicorn's, with two changes to how it uses the socket.

* **TCP_NODELAY on every connection.** With several workers uvicorn binds its shared socket as
  ``socket.socket(family)`` (protocol 0), and asyncio only sets TCP_NODELAY on IPPROTO_TCP
  sockets: every response on a kept-alive connection then waits for the peer's delayed ACK,
  44 ms here (measured in benchmarks/RESULTS.md). Setting the option ourselves keeps one and
  many workers alike.
* **One write per small response.** uvicorn writes a response's head and its body with two
  ``send`` calls: two system calls, two packets, and on loopback two wake-ups of the caller.
  :class:`CoalescingTransport` holds a write that arrives first in an event-loop step and sends
  it together with the next one (the body right behind its head); a write with no follower is
  sent at the end of the step. Nothing waits longer than the step that wrote it, and the order
  of bytes never changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any


class CoalescingTransport:
    """Wraps an asyncio transport: joins a held write with the write that follows it."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        held = self._held
        if held is None:
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
        else:
            self._held = None
            self._transport.write(held + bytes(data))

    def writelines(self, chunks: Any) -> None:
        self.write(b"".join(chunks))

    def flush(self) -> None:
        """Send what is held (the end of a step, or before the connection changes state)."""
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def set_protocol(self, protocol: Any) -> None:  # an upgrade: the new protocol writes alone
        self.flush()
        self._transport.set_protocol(protocol)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, pause_reading, …
        return getattr(self._transport, name)


def tuned_protocol(base: type) -> type:
    """``base`` (a uvicorn HTTP protocol) with TCP_NODELAY and coalesced writes."""

    class Tuned(base):
        def connection_made(self, transport: Any) -> None:
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().connection_made(CoalescingTransport(transport, asyncio.get_running_loop()))

    Tuned.__name__ = Tuned.__qualname__ = f"Tuned{base.__name__}"
    return Tuned


def _uvicorn_protocol() -> type:
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        return HttpToolsProtocol
    except ImportError:  # httptools is optional; h11 is pure Python
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol


HttpProtocol = tuned_protocol(_uvicorn_protocol())
HttpProtocol.__module__ = __name__
HttpProtocol.__qualname__ = HttpProtocol.__name__ = "HttpProtocol"
