"""artifact_store_from_uri and the root URIs FsspecArtifactStore accepts."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

from loopml.artifacts import factory, fsspec_store
from loopml.artifacts.factory import artifact_store_from_uri
from loopml.artifacts.fsspec_store import FsspecArtifactStore
from loopml.artifacts.store import ArtifactStore
from loopml.errors import InvalidArgument, MissingDependency

from .conftest import S3Server


def test_local_uris(tmp_path: Path) -> None:
    for uri in (str(tmp_path / "r"), (tmp_path / "r").as_uri(), f"local://{tmp_path / 'r'}"):
        store = artifact_store_from_uri(uri)
        assert isinstance(store, ArtifactStore)
        assert store.root_uri == f"file://{(tmp_path / 'r').as_posix()}"
    artifact_store_from_uri(str(tmp_path / "r")).put_bytes(b"1", "f")
    assert artifact_store_from_uri((tmp_path / "r").as_uri()).get_bytes("f") == b"1"


def test_endpoint_is_ignored_for_non_s3(tmp_path: Path) -> None:
    store = artifact_store_from_uri(str(tmp_path), s3_endpoint_url="http://127.0.0.1:1")
    assert store.root_uri.startswith("file://")


@pytest.mark.parametrize(
    "uri",
    ["", "   ", "http://example.com/a", "gs://bucket/x", "ftp://h/x", "simplecache::s3://b/x"],
)
def test_unsupported_uris(uri: str) -> None:
    with pytest.raises(InvalidArgument):
        artifact_store_from_uri(uri)


@pytest.mark.parametrize("uri", ["memory://a/../b", "memory://a/%2e%2e/b", "s3://bucket/a/../b"])
def test_roots_must_be_normalised(uri: str) -> None:
    with pytest.raises(InvalidArgument, match=r"not allowed|normalised"):
        FsspecArtifactStore(uri)


def test_missing_s3fs_gives_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_s3fs(module: str, extra: str) -> None:
        raise MissingDependency(f"{module!r} is not installed; pip install 'loopml[{extra}]'")

    monkeypatch.setattr(fsspec_store.errors, "require", no_s3fs)
    with pytest.raises(MissingDependency, match=r"loopml\[s3\]"):
        FsspecArtifactStore("s3://bucket/prefix")


@pytest.mark.s3
def test_s3_with_endpoint(s3_server: S3Server, s3_sandbox: str) -> None:
    store = artifact_store_from_uri(
        f"s3://{s3_server.bucket}/{s3_sandbox}/root", s3_endpoint_url=s3_server.endpoint_url
    )
    assert store.root_uri == f"s3://{s3_server.bucket}/{s3_sandbox}/root"
    store.put_bytes(b"via factory", "f.txt")
    assert f"{s3_sandbox}/root/f.txt" in s3_server.keys(s3_sandbox)
    assert store.get_bytes("f.txt") == b"via factory"


def test_doctests() -> None:
    for module in (factory, fsspec_store):
        assert doctest.testmod(module, raise_on_error=False).failed == 0
