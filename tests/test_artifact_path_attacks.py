"""Absolute, drive and UNC artifact paths, and poisoned artifact records, are refused at every
entry point (fluent, Client, REST, multipart uploads), embedded and over HTTP, and nothing is
stored (DESIGN.md §5: one path choke point, at write and at read)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa

import loopml
from loopml.client import Client
from loopml.errors import IntegrityError, InvalidArgument
from loopml.server.app import create_app
from loopml.settings import Settings
from loopml.stack import Stack
from server_fixtures import uvicorn_server

ABSOLUTE = [
    "/etc",
    "C:/Windows",
    "C:\\Windows",
    "c:",
    "\\\\host\\share",
    "//host/share",
    "%2Fetc",
    "%252Fetc",
    "C%3A%5CWindows",
    "%5C%5Chost%5Cshare",
    "%2F%2Fhost%2Fshare",
]
REFUSED = "is not allowed"


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[tuple[str, Stack]]:
    server = Stack.from_settings(Settings(home=tmp_path_factory.mktemp("path-attacks")))
    with uvicorn_server(create_app(server)) as url:
        yield url, server
    server.close()


@pytest.fixture(params=["embedded", "http"])
def where(request, tmp_path, monkeypatch) -> Iterator[Stack]:
    """The fluent API configured embedded or against a live server; yields the server's stack."""
    monkeypatch.chdir(tmp_path)
    if request.param == "embedded":
        loopml.configure(home=tmp_path / "home")
        stack = loopml.get_client().stack
    else:
        url, stack = request.getfixturevalue("live")
        loopml.configure(uri=url)
    yield stack
    while loopml.active_run():
        loopml.end_run()
    loopml.configure(home=tmp_path / "unused")


def _stored(stack: Stack, run_id: str) -> tuple[list[str], list[str]]:
    """What the metadata records and what the artifact store holds for the run."""
    run = stack.tracking.get_run(run_id)
    records = [r.path for r in stack.tracking.list_artifact_records(run_id)]
    files = [i.path for i in stack.artifacts.list(run.artifact_path, recursive=True)]
    return records, files


@pytest.fixture
def files(tmp_path) -> tuple[Path, Path]:
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "passwd").write_text("root:x:0:0")
    return folder / "passwd", folder


@pytest.mark.parametrize("evil", ABSOLUTE)
def test_fluent_refuses_absolute_artifact_paths(where, files, evil):
    file, folder = files
    with loopml.start_run() as active:
        calls = [
            lambda: loopml.log_artifact(file, artifact_path=evil),
            lambda: loopml.log_artifacts(folder, artifact_path=evil),
            lambda: loopml.log_text("x", f"{evil}/x.txt"),
            lambda: loopml.log_dict({"a": 1}, f"{evil}/cfg.json"),
            lambda: loopml.log_model(object(), evil),
            lambda: loopml.log_model(object(), f"{evil}/model"),
        ]
        for call in calls:
            with pytest.raises(InvalidArgument, match=REFUSED):
                call()
    assert _stored(where, active.run_id) == ([], [])


@pytest.mark.parametrize("evil", ["/etc", "C:\\Windows", "\\\\host\\share", "%2Fetc"])
def test_log_figure_refuses_absolute_artifact_files(where, evil):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2])
    try:
        with loopml.start_run() as active, pytest.raises(InvalidArgument, match=REFUSED):
            loopml.log_figure(fig, f"{evil}/plot.png")
    finally:
        plt.close(fig)
    assert _stored(where, active.run_id) == ([], [])


@pytest.mark.parametrize("evil", ABSOLUTE)
def test_client_refuses_absolute_artifact_paths(where, files, evil):
    file, folder = files
    client: Client = loopml.get_client()
    exp = client.create_experiment(f"client-{uuid.uuid4().hex}")
    run = client.create_run(exp.experiment_id)
    for call in (
        lambda: client.log_artifact(run.run_id, file, evil),
        lambda: client.log_artifacts(run.run_id, folder, evil),
        lambda: client.log_text(run.run_id, "x", f"{evil}/x.txt"),
        lambda: client.log_dict(run.run_id, {"a": 1}, f"{evil}/x.yaml"),
    ):
        with pytest.raises(InvalidArgument, match=REFUSED):
            call()
    assert _stored(where, run.run_id) == ([], [])


def test_relative_paths_still_work(where, files):
    file, folder = files
    with loopml.start_run() as active:
        loopml.log_artifact(file, artifact_path="etc/")
        loopml.log_artifacts(folder, artifact_path="./tree")
        loopml.log_text("x", "notes/x.txt")
    records, stored = _stored(where, active.run_id)
    assert records == ["etc/passwd", "notes/x.txt", "tree/passwd"]
    assert [p.split("/artifacts/", 1)[1] for p in stored] == records


# REST and multipart uploads, by hand -----------------------------------------------------------
@pytest.fixture
def target(live) -> tuple[str, Stack, str, str]:
    url, stack = live
    exp = stack.tracking.create_experiment(f"rest-{uuid.uuid4().hex}", actor="t")
    run = stack.tracking.create_run(exp.experiment_id, run_name="r", user="u", start_time=1,
                                    actor="t")  # fmt: skip
    return url, stack, run.artifact_path, run.run_id


REST_PATHS = [
    "/etc/passwd",
    "C:/Windows/x",
    "C:\\Windows\\x",
    "\\\\host\\share\\x",
    "//host/share/x",
    "{base}//etc/passwd",
    "{base}/./etc/passwd",
    "{base}\\etc\\passwd",
    "{base}/%2Fetc/passwd",
    "{base}/%252Fetc/passwd",
    "{base}/C:/x",
]


@pytest.mark.parametrize("evil", REST_PATHS)
def test_rest_upload_refuses_absolute_paths(target, evil):
    url, stack, base, run_id = target
    path = evil.format(base=base)
    response = httpx.put(f"{url}/api/v1/artifacts/{quote(path, safe='')}", content=b"evil")
    assert response.status_code == 400, response.text
    assert REFUSED in response.json()["error"]["message"] or "experiment id" in response.text
    assert _stored(stack, run_id) == ([], [])


@pytest.mark.parametrize("evil", REST_PATHS)
def test_multipart_upload_refuses_absolute_paths(target, evil):
    url, stack, base, run_id = target
    response = httpx.post(f"{url}/api/v1/artifact-uploads", json={"path": evil.format(base=base)})
    assert response.status_code == 400, response.text
    assert not list((stack.settings.home / "uploads").glob("*/meta.json"))
    assert _stored(stack, run_id) == ([], [])


# artifact records (item 8a) ---------------------------------------------------------------------
POISON = [
    "../../etc/passwd",
    "a/../../x",
    "/etc/passwd",
    "C:/Windows/win.ini",
    "C:\\Windows\\win.ini",
    "\\\\host\\share\\x",
    "//host/share/x",
    "a\x00b",
    "a%00b",
    "%2e%2e/%2e%2e/etc/passwd",
    "%252e%252e%252fetc",
    "%25252e%25252e%25252fetc",
    "..%2f..%2fetc",
    "..%5c..%5cwindows",
    "ok/./x",
    "ok//x",
    "\uff0e\uff0e/x",
]


@pytest.mark.parametrize("evil", POISON)
def test_artifact_records_refuse_bad_paths(target, evil):
    url, stack, _base, run_id = target
    good = {"path": "model/MLmodel", "size": 1, "sha256": "a" * 64}
    body = {"records": [good, {"path": evil, "size": 1, "sha256": "b" * 64}]}
    response = httpx.post(f"{url}/api/v1/runs/{run_id}/artifact-records", json=body)
    assert response.status_code == 400, response.text
    assert REFUSED in response.json()["error"]["message"]
    assert stack.tracking.list_artifact_records(run_id) == []  # not even the good one


def _poison_record(stack: Stack, run_id: str, path: str, data: bytes) -> None:
    """What an attacker with the database (or an old bug) could leave behind."""
    from loopml.backends.sql.schema import run_artifacts

    digest = hashlib.sha256(data).hexdigest()
    row = {"run_id": run_id, "path": path, "size": len(data), "sha256": digest, "created_time": 1}
    engine = sa.create_engine(stack.settings.resolved_uri())
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(run_artifacts).values(**row))
    finally:
        engine.dispose()


@pytest.mark.parametrize("evil", ["../../secret.txt", "/etc/passwd", "C:/x", "a%00b"])
def test_a_poisoned_record_is_never_used_to_open_a_file(target, tmp_path, evil):
    url, stack, _base, run_id = target
    secret = b"the secret"
    outside = Path(stack.artifacts.root_uri.removeprefix("file://")).parent / "secret.txt"
    outside.write_bytes(secret)
    _poison_record(stack, run_id, evil, secret)
    # embedded: the store refuses to hand the record out
    with pytest.raises(IntegrityError, match="refuse"):
        stack.tracking.list_artifact_records(run_id)
    # over HTTP: listing the records and downloading through the UI say why, and serve nothing
    response = httpx.get(f"{url}/api/v1/runs/{run_id}/artifact-records")
    assert response.status_code == 409 and "refuse" in response.json()["error"]["message"]
    ui = httpx.get(f"{url}/runs/{run_id}/artifact", params={"path": evil})
    assert ui.status_code in (400, 409) and secret not in ui.content
    # the remote client
    loopml.configure(uri=url)
    try:
        client = loopml.get_client()
        with pytest.raises(IntegrityError):
            client.artifacts.download(client.get_run(run_id), "secret.txt", tmp_path / "dl")
    finally:
        loopml.configure(home=tmp_path / "unused")
    assert not (tmp_path / "dl").exists()


@pytest.mark.parametrize("evil", POISON)
def test_no_artifact_record_with_a_bad_path_can_be_built(evil):
    from loopml.tracking.entities import ArtifactRecord

    with pytest.raises(InvalidArgument, match=REFUSED):
        ArtifactRecord(evil, 1, "a" * 64)
