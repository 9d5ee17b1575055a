"""Servers for tests: the app in-process (ASGI) or on a real uvicorn bound to loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from loopml.server.app import create_app
from loopml.server.http_protocol import HttpProtocol
from loopml.settings import Settings
from loopml.stack import Stack


def in_process_stack(server_stack: Stack, **settings) -> tuple[Stack, TestClient]:
    """A client-side Stack whose HTTP requests go straight into the ASGI app (no sockets)."""
    app = create_app(server_stack)
    client = TestClient(app, base_url="http://testserver")
    remote = Stack.remote(Settings(uri="http://testserver", **settings), http_client=client)
    return remote, client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def uvicorn_server(app: FastAPI) -> Iterator[str]:
    """Run ``app`` on 127.0.0.1 in a thread; yield its base URL; stop it afterwards."""
    port = free_port()
    # HttpProtocol: what `loopml server` and `loopml serve` run
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
                            http=HttpProtocol)  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
