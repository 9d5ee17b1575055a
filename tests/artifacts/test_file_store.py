"""FsspecArtifactStore on the local filesystem: the contract, symlinks and atomic publishing."""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from loopml.artifacts import fsspec_store
from loopml.artifacts.fsspec_store import TMP_PREFIX, FsspecArtifactStore
from loopml.artifacts.store import ArtifactInfo
from loopml.errors import InvalidArgument, NotFound, Unavailable
from loopml.testing.artifact_contract import ArtifactStoreContract

from .conftest import BAIT, local_escape_snapshot


@pytest.fixture
def root(local_sandbox: Path) -> Path:
    path = local_sandbox / "a" / "root"
    path.mkdir()
    return path


@pytest.fixture
def store(root: Path) -> FsspecArtifactStore:
    return FsspecArtifactStore(root.as_uri())


class TestFileStoreContract(ArtifactStoreContract):
    @pytest.fixture
    def artifact_store(self, store: FsspecArtifactStore) -> FsspecArtifactStore:
        return store

    @pytest.fixture
    def artifact_root_escape(self, local_sandbox: Path, root: Path) -> Callable[[], object]:
        return local_escape_snapshot(local_sandbox, root)


class TestPlainPathRootContract(ArtifactStoreContract):
    """A plain path (no ``file://``) gives the same store; also checks the root is made lazily."""

    @pytest.fixture
    def artifact_store(self, local_sandbox: Path) -> FsspecArtifactStore:
        return FsspecArtifactStore(str(local_sandbox / "a" / "root"))

    @pytest.fixture
    def artifact_root_escape(self, local_sandbox: Path) -> Callable[[], object]:
        return local_escape_snapshot(local_sandbox, local_sandbox / "a" / "root")


# -- symlinks ----------------------------------------------------------------------------------


@pytest.fixture
def escape_links(store: FsspecArtifactStore, root: Path, local_sandbox: Path) -> Path:
    """``root/out-dir`` -> the sandbox (outside) and ``root/out-file`` -> ``sandbox/x``."""
    (root / "out-dir").symlink_to(local_sandbox, target_is_directory=True)
    (root / "out-file").symlink_to(local_sandbox / "x")
    (root / "inner").mkdir()
    (root / "inner" / "up").symlink_to("../..", target_is_directory=True)
    return local_sandbox


@pytest.mark.parametrize("path", ["out-dir/x", "out-dir/a/x", "out-file", "inner/up/x"])
def test_reading_through_escaping_symlink_is_refused(
    store: FsspecArtifactStore, escape_links: Path, tmp_path: Path, path: str
) -> None:
    with pytest.raises(InvalidArgument, match="outside the artifact root"):
        store.get_bytes(path)
    with pytest.raises(InvalidArgument):
        store.open_read(path)
    with pytest.raises(InvalidArgument):
        store.get_file(path, tmp_path / "copy")
    with pytest.raises(InvalidArgument):
        store.exists(path)
    assert not (tmp_path / "copy").exists()


@pytest.mark.parametrize("path", ["out-dir/x", "out-dir/new.bin", "out-file", "inner/up/new"])
def test_writing_through_escaping_symlink_is_refused(
    store: FsspecArtifactStore, escape_links: Path, root: Path, tmp_path: Path, path: str
) -> None:
    snapshot = local_escape_snapshot(escape_links, root)
    before = snapshot()
    source = tmp_path / "src.bin"
    source.write_bytes(b"evil")
    for write in (
        lambda: store.put_bytes(b"evil", path),
        lambda: store.put_file(source, path),
        lambda: store.put_stream(io.BytesIO(b"evil"), path),
        lambda: store.delete(path),
    ):
        with pytest.raises(InvalidArgument):
            write()
    assert snapshot() == before
    assert (escape_links / "x").read_bytes() == BAIT


def test_listing_never_follows_symlinks_out_of_root(
    store: FsspecArtifactStore, escape_links: Path
) -> None:
    store.put_bytes(b"1", "inner/file.txt")
    assert store.list() == [ArtifactInfo("inner", True)]
    assert store.list("", recursive=True) == [ArtifactInfo("inner/file.txt", False, 1)]
    with pytest.raises(InvalidArgument):
        store.list("out-dir")
    with pytest.raises(InvalidArgument):
        store.list("inner/up", recursive=True)


def test_symlinks_inside_the_root_work(store: FsspecArtifactStore, root: Path) -> None:
    store.put_bytes(b"target", "real/file.bin")
    (root / "alias.bin").symlink_to(root / "real" / "file.bin")
    (root / "alias-dir").symlink_to("real", target_is_directory=True)
    assert store.get_bytes("alias.bin") == b"target"
    assert store.get_bytes("alias-dir/file.bin") == b"target"
    assert store.list() == [
        ArtifactInfo("alias-dir", True),
        ArtifactInfo("alias.bin", False, 6),
        ArtifactInfo("real", True),
    ]
    assert [i.path for i in store.list("", recursive=True)] == ["alias.bin", "real/file.bin"]
    store.delete("alias-dir")  # removes the link, not what it points to
    store.delete("alias.bin")
    assert store.get_bytes("real/file.bin") == b"target"
    assert [i.path for i in store.list()] == ["real"]


def test_broken_symlink_is_not_listed(store: FsspecArtifactStore, root: Path) -> None:
    (root / "dangling").symlink_to(root / "nowhere")
    assert store.list() == []
    with pytest.raises(NotFound):
        store.get_bytes("dangling")


# -- atomic publishing -------------------------------------------------------------------------


def test_failed_rename_leaves_old_version_and_no_temp(
    store: FsspecArtifactStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.put_bytes(b"v1", "m/model.bin")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(5, "I/O error (simulated crash)")

    monkeypatch.setattr(fsspec_store.os, "replace", broken_replace)
    with pytest.raises(Unavailable, match="storage error"):
        store.put_bytes(b"v2", "m/model.bin")
    monkeypatch.undo()
    assert store.get_bytes("m/model.bin") == b"v1"
    assert os.listdir(root / "m") == ["model.bin"]


def test_temp_files_are_hidden_and_reserved(store: FsspecArtifactStore, root: Path) -> None:
    (root / "d").mkdir()
    (root / "d" / f"{TMP_PREFIX}abc").write_bytes(b"in flight")
    assert store.list("d") == []
    with pytest.raises(InvalidArgument, match="reserved"):
        store.put_bytes(b"x", f"d/{TMP_PREFIX}mine")


def test_published_files_are_readable_by_the_team(store: FsspecArtifactStore, root: Path) -> None:
    store.put_bytes(b"x", "f.bin")
    assert stat.S_IMODE((root / "f.bin").stat().st_mode) == 0o644


def test_root_uri_and_lazy_root(tmp_path: Path) -> None:
    store = FsspecArtifactStore(str(tmp_path / "later"))
    assert store.root_uri == f"file://{(tmp_path / 'later').as_posix()}"
    assert store.list() == []
    assert not (tmp_path / "later").exists()
    store.put_bytes(b"x", "a/b")
    assert (tmp_path / "later" / "a" / "b").read_bytes() == b"x"


def test_get_file_into_a_folder_is_refused(store: FsspecArtifactStore, tmp_path: Path) -> None:
    store.put_bytes(b"x", "f.bin")
    with pytest.raises(InvalidArgument, match="is a folder"):
        store.get_file("f.bin", tmp_path)


def test_put_file_missing_source(store: FsspecArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="local file"):
        store.put_file(tmp_path / "nope.bin", "f.bin")
    assert store.list() == []
