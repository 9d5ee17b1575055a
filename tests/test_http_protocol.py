"""The servers' HTTP protocol: TCP_NODELAY (tests/test_server.py) and one write per response."""

from __future__ import annotations

import asyncio
import socket

import pytest
from starlette.responses import Response, StreamingResponse

from loopml.server.http_protocol import CoalescingTransport
from server_fixtures import uvicorn_server


class Recorder:
    """A transport that records what reaches the socket."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def test_a_head_and_its_body_written_in_one_step_leave_as_one_write():
    async def main() -> Recorder:
        raw = Recorder()
        t = CoalescingTransport(raw, asyncio.get_running_loop())
        t.write(b"HTTP/1.1 200 OK\r\n\r\n")
        assert raw.writes == []  # held for its follower
        t.write(b"body")
        assert raw.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]  # sent at once, not deferred
        t.write(b"")  # h11's end of message: nothing to send
        await asyncio.sleep(0)
        return raw

    assert asyncio.run(main()).writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]


def test_a_lone_write_leaves_at_the_end_of_its_step_and_order_is_kept():
    async def main() -> Recorder:
        raw = Recorder()
        t = CoalescingTransport(raw, asyncio.get_running_loop())
        for part in (b"a", b"b", b"c"):
            t.write(part)
        assert raw.writes == [b"ab"]
        await asyncio.sleep(0)
        assert raw.writes == [b"ab", b"c"]
        t.writelines([b"d", b"e"])
        assert t.get_write_buffer_size() == 2
        await asyncio.sleep(0)
        return raw

    raw = asyncio.run(main())
    assert b"".join(raw.writes) == b"abcde" and raw.writes[-1] == b"de"


def test_close_sends_what_is_held_first_and_abort_drops_it():
    async def main() -> tuple[Recorder, Recorder]:
        loop = asyncio.get_running_loop()
        closing, aborting = Recorder(), Recorder()
        t = CoalescingTransport(closing, loop)
        t.write(b"last words")
        t.close()
        u = CoalescingTransport(aborting, loop)
        u.write(b"never sent")
        u.abort()
        await asyncio.sleep(0)  # the scheduled flushes find nothing, or a closed transport
        assert t.get_extra_info("peername") == "info:peername"  # everything else passes through
        return closing, aborting

    closing, aborting = asyncio.run(main())
    assert closing.writes == [b"last words"] and closing.closed
    assert aborting.writes == [] and aborting.aborted


async def _app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/stream":

        async def chunks():
            for i in range(200):
                yield f"{i:04d}".encode()

        response: Response = StreamingResponse(chunks(), media_type="text/plain")
    elif scope["path"] == "/big":
        response = Response(b"x" * (3 * 2**20), media_type="application/octet-stream")
    else:
        response = Response(b'{"ok":true}', media_type="application/json")
    await response(scope, receive, send)


@pytest.fixture(scope="module")
def live():
    with uvicorn_server(_app) as url:  # type: ignore[arg-type]
        yield int(url.rsplit(":", 1)[1])


def _exchange(sock: socket.socket, path: str) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        while not body.endswith(b"0\r\n\r\n"):
            body += sock.recv(65536)
        out, rest = b"", body
        while True:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                return out
            out, rest = out + rest[:n], rest[n + 2 :]
    length = int(next(ln.split(b":")[1] for ln in head.split(b"\r\n")
                      if ln.lower().startswith(b"content-length")))  # fmt: skip
    while len(body) < length:
        body += sock.recv(2**20)
    return body


def test_small_streamed_and_large_answers_arrive_whole_on_one_kept_alive_connection(live):
    with socket.create_connection(("127.0.0.1", live)) as sock:
        for _ in range(3):
            assert _exchange(sock, "/small") == b'{"ok":true}'
            assert _exchange(sock, "/stream") == b"".join(f"{i:04d}".encode() for i in range(200))
            assert _exchange(sock, "/big") == b"x" * (3 * 2**20)
