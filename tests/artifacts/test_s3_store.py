"""FsspecArtifactStore on S3 against a real moto server on loopback: the contract, S3 details."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from loopml.artifacts.fsspec_store import FsspecArtifactStore
from loopml.artifacts.store import ArtifactInfo
from loopml.testing.artifact_contract import ArtifactStoreContract

from .conftest import BAIT, S3Server

pytestmark = pytest.mark.s3


@pytest.fixture
def s3_root(s3_server: S3Server, s3_sandbox: str) -> str:
    return f"s3://{s3_server.bucket}/{s3_sandbox}/a/root"


@pytest.fixture
def s3_store(s3_server: S3Server, s3_root: str) -> FsspecArtifactStore:
    return FsspecArtifactStore(s3_root, storage_options=s3_server.storage_options)


class TestS3StoreContract(ArtifactStoreContract):
    @pytest.fixture
    def artifact_store(self, s3_store: FsspecArtifactStore) -> FsspecArtifactStore:
        return s3_store

    @pytest.fixture
    def artifact_root_escape(self, s3_server: S3Server, s3_sandbox: str) -> Callable[[], object]:
        root = f"{s3_sandbox}/a/root/"
        return lambda: {k: v for k, v in s3_server.keys().items() if not k.startswith(root)}


def test_objects_land_under_the_prefix(
    s3_store: FsspecArtifactStore, s3_server: S3Server, s3_sandbox: str
) -> None:
    s3_store.put_bytes(b"hello", "run-1/model.bin")
    assert s3_server.keys(f"{s3_sandbox}/a/root/") == {
        f"{s3_sandbox}/a/root/run-1/model.bin": s3_server.keys()[
            f"{s3_sandbox}/a/root/run-1/model.bin"
        ]
    }
    assert s3_store.root_uri == f"s3://{s3_server.bucket}/{s3_sandbox}/a/root"


def test_foreign_keys_that_are_not_clean_paths_are_not_listed(
    s3_store: FsspecArtifactStore, s3_server: S3Server, s3_sandbox: str
) -> None:
    root = f"{s3_sandbox}/a/root"
    for key in (f"{root}/ok.bin", f"{root}/../x-sneaky", f"{root}/d//double", f"{root}/d/../x"):
        s3_server.client.put_object(Bucket=s3_server.bucket, Key=key, Body=BAIT)
    listed = [i.path for i in s3_store.list("", recursive=True)]
    assert "ok.bin" in listed
    assert all(".." not in p.split("/") and "//" not in p for p in listed)


def test_listing_is_not_cached_between_writers(
    s3_store: FsspecArtifactStore, s3_server: S3Server, s3_root: str
) -> None:
    assert s3_store.list() == []
    other = FsspecArtifactStore(s3_root, storage_options=s3_server.storage_options)
    other.put_bytes(b"abc", "new.bin")
    assert s3_store.list() == [ArtifactInfo("new.bin", False, 3)]
    other.delete("new.bin")
    assert s3_store.list() == []
    assert not s3_store.exists("new.bin")
