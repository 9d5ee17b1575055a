"""UI downloads too big to check before sending (over 32 MiB) are checked while they stream: a
file tampered with on disk after upload never arrives whole, the server drops the connection
instead of sending the last chunk (a real HTTP client against a live uvicorn)."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import httpx
import pytest

from loopml.server.app import create_app
from loopml.server.routes.ui import VERIFIED_INLINE_BYTES
from loopml.settings import Settings
from loopml.stack import Stack
from loopml.tracking.artifacts import RunArtifacts
from server_fixtures import uvicorn_server

SIZE = VERIFIED_INLINE_BYTES + (1 << 20) + 12345  # 33 MiB and a bit: streamed, not read first


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    home = tmp_path_factory.mktemp("ui-stream")
    stack = Stack.from_settings(Settings(home=home))
    exp = stack.tracking.create_experiment("big", actor="t")
    run = stack.tracking.create_run(exp.experiment_id, run_name="r", user="u", start_time=1,
                                    actor="t")  # fmt: skip
    data = os.urandom(SIZE)
    local = home / "big.bin"
    local.write_bytes(data)
    artifacts = RunArtifacts(stack.tracking, stack.artifacts)
    artifacts.log_file(run, local, "")
    artifacts.log_file(run, local, "tampered")
    stored = Path(stack.artifacts.root_uri.removeprefix("file://")) / run.artifact_path
    with (stored / "tampered" / "big.bin").open("r+b") as f:  # one byte, mid-file
        f.seek(SIZE // 2)
        f.write(bytes([data[SIZE // 2] ^ 0xFF]))
    with uvicorn_server(create_app(stack)) as url:
        yield url, run.run_id, data
    stack.close()


def _download(url: str, run_id: str, path: str) -> bytes:
    received = bytearray()
    params = {"path": path, "download": "true"}
    with httpx.stream("GET", f"{url}/runs/{run_id}/artifact", params=params, timeout=60) as r:
        assert r.status_code == 200
        for chunk in r.iter_bytes():
            received.extend(chunk)
    return bytes(received)


def test_an_untampered_large_artifact_downloads_whole(live):
    url, run_id, data = live
    body = _download(url, run_id, "big.bin")
    assert len(body) == SIZE and hashlib.sha256(body).digest() == hashlib.sha256(data).digest()


def test_a_tampered_large_artifact_is_a_broken_transfer(live, caplog):
    url, run_id, _data = live
    broken = (httpx.RemoteProtocolError, httpx.ReadError)
    with caplog.at_level(logging.ERROR, logger="loopml.server"), pytest.raises(broken) as info:
        _download(url, run_id, "tampered/big.bin")
    assert "incomplete" in str(info.value).lower() or isinstance(info.value, httpx.ReadError)
    assert any("aborted while streaming" in r.getMessage() for r in caplog.records)


def test_verified_chunks_doctests():
    import doctest

    from loopml.artifacts import digests

    assert doctest.testmod(digests, raise_on_error=False).failed == 0
