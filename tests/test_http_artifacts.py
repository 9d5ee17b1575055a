"""Artifacts through the server: streamed and multipart uploads, digests on both ends, listing,
resumable downloads, and uploads that cannot be hijacked or half-published."""

from __future__ import annotations

import hashlib
import os

import httpx
import pytest
from fastapi.testclient import TestClient

from loopml.backends.http.artifacts import HttpArtifactStore
from loopml.backends.http.transport import HttpTransport
from loopml.errors import IntegrityError, InvalidArgument, NotFound
from loopml.server.app import create_app
from loopml.settings import Settings
from loopml.stack import Stack


@pytest.fixture
def server(tmp_path):
    stack = Stack.from_settings(Settings(home=tmp_path / "srv"))
    exp = stack.tracking.create_experiment("art", actor="t")
    run = stack.tracking.create_run(exp.experiment_id, run_name="r", user="u", start_time=1,
                                    actor="t")  # fmt: skip
    client = TestClient(create_app(stack), base_url="http://testserver")
    yield stack, client, run.artifact_path
    client.close()
    stack.close()


@pytest.fixture
def store(server):
    _, client, _ = server
    transport = HttpTransport("http://testserver", client=client)
    return HttpArtifactStore(transport, multipart_threshold=1 << 20, part_size=256 << 10)


def test_small_and_multipart_uploads_round_trip(server, store, tmp_path):
    stack, _client, base = server
    small, large = tmp_path / "small.txt", tmp_path / "large.bin"
    small.write_text("hello")
    large.write_bytes(os.urandom(3 * (1 << 20) + 12345))  # 13 parts of 256 KiB
    moved: list[int] = []
    for local in (small, large):
        info = store.put_file(local, f"{base}/{local.name}", progress=moved.append)
        assert info.sha256 == hashlib.sha256(local.read_bytes()).hexdigest()
        assert info.size == local.stat().st_size
    assert sum(moved) == small.stat().st_size + large.stat().st_size
    assert stack.artifacts.get_bytes(f"{base}/large.bin") == large.read_bytes()
    expected = hashlib.sha256(large.read_bytes()).hexdigest()
    out = store.get_file(f"{base}/large.bin", tmp_path / "dl" / "l.bin", expected_sha256=expected)
    assert out.read_bytes() == large.read_bytes()
    names = {i.path.rsplit("/", 1)[-1] for i in store.list(base)}
    assert names == {"small.txt", "large.bin"} and store.exists(f"{base}/small.txt")
    assert not list((stack.settings.home / "uploads").glob("*/part-*"))  # cleaned up
    store.delete(f"{base}/small.txt")
    assert not store.exists(f"{base}/small.txt")


def test_download_verifies_the_expected_digest(server, store, tmp_path):
    _, _, base = server
    store.put_bytes(b"model bytes", f"{base}/m.bin")
    with pytest.raises(IntegrityError):
        store.get_file(f"{base}/m.bin", tmp_path / "m.bin", expected_sha256="0" * 64)
    assert not (tmp_path / "m.bin").exists()
    with pytest.raises(NotFound):
        store.get_bytes(f"{base}/missing.bin")


def test_corrupt_part_and_wrong_total_publish_nothing(server):
    stack, client, base = server
    upload = client.post("/api/v1/artifact-uploads", json={"path": f"{base}/x.bin"}).json()
    url = f"/api/v1/artifact-uploads/{upload['upload_id']}"
    bad = client.put(f"{url}/parts/1", content=b"abc", headers={"X-Content-SHA256": "0" * 64})
    assert bad.status_code == 409 and bad.json()["error"]["code"] == "integrity"
    good = client.put(f"{url}/parts/1", content=b"abc",
                      headers={"X-Content-SHA256": hashlib.sha256(b"abc").hexdigest()})  # fmt: skip
    assert good.status_code == 200
    assert client.get(url).json()["parts"] == {"1": hashlib.sha256(b"abc").hexdigest()}
    missing = client.post(f"{url}/complete", json={"parts": [1, 2], "sha256": "0" * 64})
    assert missing.status_code == 409
    wrong = client.post(f"{url}/complete", json={"parts": [1], "sha256": "0" * 64})
    assert wrong.status_code == 409 and not stack.artifacts.exists(f"{base}/x.bin")
    total = hashlib.sha256(b"abc").hexdigest()
    done = client.post(f"{url}/complete", json={"parts": [1], "sha256": total})
    assert done.status_code == 200 and stack.artifacts.get_bytes(f"{base}/x.bin") == b"abc"
    assert client.get(url).status_code == 404  # gone once completed


@pytest.mark.parametrize("evil", ["../x", "0/../../x", "/etc/passwd", "C:/x", "0/a%00b"])
def test_upload_paths_pass_the_choke_point(server, evil):
    _, client, _ = server
    response = client.post("/api/v1/artifact-uploads", json={"path": evil})
    assert response.status_code == 400


def test_upload_ids_are_not_guessable_or_shared(server, tmp_path):
    stack, client, base = server
    for bogus in ("../../etc", "0" * 32, "x" * 32):
        assert client.get(f"/api/v1/artifact-uploads/{bogus}").status_code == 404
    ident = stack.identity
    assert ident is not None
    admin = ident.create_first_admin("root", "correct horse battery", actor="t")
    other = ident.create_user("mallory", None, is_service_account=True, actor="t")
    ident.grant(other, "default", "data_scientist", actor="t")
    from loopml.server.identity import token_authenticator

    authed = TestClient(create_app(stack, authenticate=token_authenticator(stack)),
                        base_url="http://testserver")  # fmt: skip
    root = {"Authorization": f"Bearer {ident.create_token(admin, 't', actor='t')[1]}"}
    mallory = {"Authorization": f"Bearer {ident.create_token(other, 't', actor='t')[1]}"}
    upload = authed.post("/api/v1/artifact-uploads", json={"path": f"{base}/y"}, headers=root)
    url = f"/api/v1/artifact-uploads/{upload.json()['upload_id']}"
    assert authed.get(url, headers=mallory).status_code == 404
    assert authed.delete(url, headers=mallory).status_code == 404
    assert authed.get(url, headers=root).status_code == 200
    authed.close()


def test_client_refuses_evil_paths_before_sending(store):
    for evil in ("../x", "/abs", "a/../../b"):
        with pytest.raises(InvalidArgument):
            store.put_bytes(b"x", evil)


class _CutOnce(httpx.BaseTransport):
    """The first download breaks off after ``cut`` bytes, as a dropped connection would."""

    def __init__(self, inner: httpx.BaseTransport, cut: int) -> None:
        self.inner, self.cut, self.ranges = inner, cut, []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method != "GET" or "/api/v1/artifacts/" not in request.url.path:
            return response
        self.ranges.append(request.headers.get("Range"))
        if len(self.ranges) > 1:
            return response
        body = response.read()
        cut = self.cut

        class Broken(httpx.SyncByteStream):
            def __iter__(self):
                yield body[:cut]
                raise httpx.ReadError("connection reset by peer")

        return httpx.Response(response.status_code, headers=response.headers, stream=Broken())


def test_interrupted_download_resumes_where_it_broke_off(server, tmp_path):
    stack, client, base = server
    data = os.urandom(300_000)
    stack.artifacts.put_bytes(data, f"{base}/big.bin")
    cutter = _CutOnce(client._transport, cut=100_000)
    http = httpx.Client(transport=cutter, base_url="http://testserver")
    transport = HttpTransport("http://testserver", client=http)
    store = HttpArtifactStore(transport)
    out = store.get_file(f"{base}/big.bin", tmp_path / "big.bin",
                         expected_sha256=hashlib.sha256(data).hexdigest())  # fmt: skip
    assert out.read_bytes() == data
    assert cutter.ranges == [None, "bytes=100000-"]
