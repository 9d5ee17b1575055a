"""The contract every :class:`~loopml.artifacts.store.ArtifactStore` implementation must pass.

Subclass :class:`ArtifactStoreContract` in a test module and provide two fixtures:

``artifact_store``
    A fresh, empty store whose root lies *inside* a sandbox the test owns.

``artifact_root_escape``
    A zero-argument callable returning a comparable snapshot (for example ``{name: sha256}``) of
    everything in the sandbox *outside* the store root. The fixture must plant bait there first (at
    least a file named ``x`` next to the root and one more level up, since the evil paths below aim
    at ``x``), so the snapshot is never empty. The traversal tests compare the snapshot before and
    after each refused call.

For example::

    class TestMemoryStore(ArtifactStoreContract):
        @pytest.fixture
        def artifact_store(self): ...

        @pytest.fixture
        def artifact_root_escape(self): ...
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, cast

import pytest

from loopml.artifacts.store import ArtifactInfo, ArtifactStore
from loopml.errors import Conflict, IntegrityError, InvalidArgument, NotFound

EscapeSnapshot = Callable[[], object]
"""The ``artifact_root_escape`` fixture: a comparable snapshot of what lies outside the root."""

EVIL_PATHS: tuple[str, ...] = (
    "../x",
    "..\\x",
    "a/../../x",
    "a/b/../../../x",
    "%2e%2e%2fx",
    "%2E%2E/x",
    "..%2fx",
    "%2e%2e%5cx",
    "%252e%252e%252fx",
    "%25252e%25252e%25252fx",
    "/etc/passwd",
    "/x",
    "C:/x",
    "C:\\x",
    "c:x",
    "\\\\server\\share\\x",
    "//server/share/x",
    "x\x00y",
    "x%00y",
    "x%2500y",
    "\uff0e\uff0e\uff0fx",  # fullwidth "../x", NFKC-equal to the real thing
    "a/\x07b",
)
"""Paths every operation must refuse with InvalidArgument, touching nothing."""

LEGAL_ODD_PATHS: dict[str, str] = {
    "....//x": "..../x",  # four dots is a name, not a parent reference
    "a/./b\\c": "a/b/c",
    "a%20b": "a%20b",  # stored undecoded
    "x..": "x..",
    "...": "...",
}
"""Odd but legal paths and the normalised path each one is stored at (inside the root)."""

MIB = 1 << 20


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _StreamBroke(Exception):
    """Raised by a source stream half-way through a write."""


class _BrokenStream(io.RawIOBase):
    def __init__(self, good: bytes) -> None:
        self._good: bytes | None = good

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if self._good is None:
            raise _StreamBroke("the source went away")
        good, self._good = self._good, None
        return good


def _op_put_file(store: ArtifactStore, path: str, tmp: Path) -> Any:
    local = tmp / "evil-source.bin"
    local.write_bytes(b"evil")
    return store.put_file(local, path)


def _op_get_file(store: ArtifactStore, path: str, tmp: Path) -> Any:
    target = tmp / "evil-target.bin"
    try:
        return store.get_file(path, target)
    finally:
        assert not target.exists(), "get_file created its target for a refused path"


OPERATIONS: dict[str, Callable[[ArtifactStore, str, Path], Any]] = {
    "put_file": _op_put_file,
    "put_bytes": lambda s, p, _: s.put_bytes(b"evil", p),
    "put_stream": lambda s, p, _: s.put_stream(io.BytesIO(b"evil"), p),
    "get_bytes": lambda s, p, _: s.get_bytes(p),
    "get_file": _op_get_file,
    "open_read": lambda s, p, _: s.open_read(p),  # must refuse before the first chunk
    "list": lambda s, p, _: s.list(p),
    "list_recursive": lambda s, p, _: s.list(p, recursive=True),
    "exists": lambda s, p, _: s.exists(p),
    "delete": lambda s, p, _: s.delete(p),
}


def _tree(store: ArtifactStore) -> dict[str, tuple[bool, int | None]]:
    return {i.path: (i.is_dir, i.size) for i in store.list("", recursive=True)}


class ArtifactStoreContract:
    """What every ArtifactStore must do. Needs ``artifact_store`` and ``artifact_root_escape``."""

    # -- round trips ----------------------------------------------------------------------------

    def test_is_an_artifact_store(self, artifact_store: ArtifactStore) -> None:
        assert isinstance(artifact_store, ArtifactStore)
        assert isinstance(artifact_store.root_uri, str) and artifact_store.root_uri

    def test_put_get_bytes(self, artifact_store: ArtifactStore) -> None:
        data = b"model bytes \x00\xff"
        info = artifact_store.put_bytes(data, "run-1/model.bin")
        assert info == ArtifactInfo("run-1/model.bin", False, len(data), _sha(data))
        assert artifact_store.get_bytes("run-1/model.bin") == data
        assert artifact_store.get_bytes("run-1/model.bin", expected_sha256=_sha(data)) == data

    def test_empty_file(self, artifact_store: ArtifactStore) -> None:
        info = artifact_store.put_bytes(b"", "empty")
        assert (info.size, info.sha256) == (0, _sha(b""))
        assert artifact_store.get_bytes("empty", expected_sha256=_sha(b"")) == b""

    def test_file_round_trip(self, artifact_store: ArtifactStore, tmp_path: Path) -> None:
        data = os.urandom(100_000)
        source = tmp_path / "source.bin"
        source.write_bytes(data)
        info = artifact_store.put_file(source, "run-1/artifacts/data.bin")
        assert (info.path, info.size, info.sha256) == (
            "run-1/artifacts/data.bin",
            len(data),
            _sha(data),
        )
        target = tmp_path / "new" / "folder" / "copy.bin"
        got = artifact_store.get_file(
            "run-1/artifacts/data.bin", target, expected_sha256=info.sha256
        )
        assert Path(got) == target and target.read_bytes() == data

    def test_streams(self, artifact_store: ArtifactStore) -> None:
        data = os.urandom(3 * MIB + 17)
        info = artifact_store.put_stream(io.BytesIO(data), "s/stream.bin")
        assert (info.size, info.sha256) == (len(data), _sha(data))
        chunks = list(artifact_store.open_read("s/stream.bin"))
        assert len(chunks) > 1 and all(chunks)
        assert b"".join(chunks) == data

    def test_digest_equals_hashlib(self, artifact_store: ArtifactStore, tmp_path: Path) -> None:
        for i, data in enumerate([b"a", os.urandom(MIB), os.urandom(MIB + 1)]):
            source = tmp_path / f"f{i}"
            source.write_bytes(data)
            assert artifact_store.put_bytes(data, f"b{i}").sha256 == _sha(data)
            assert artifact_store.put_file(source, f"f{i}").sha256 == _sha(data)
            assert artifact_store.put_stream(io.BytesIO(data), f"s{i}").sha256 == _sha(data)

    def test_overwrite_replaces(self, artifact_store: ArtifactStore) -> None:
        artifact_store.put_bytes(b"first version", "m/model.bin")
        info = artifact_store.put_bytes(b"second", "m/model.bin")
        assert info.sha256 == _sha(b"second")
        assert artifact_store.get_bytes("m/model.bin") == b"second"
        assert artifact_store.list("m") == [ArtifactInfo("m/model.bin", False, 6)]

    def test_unicode_names(self, artifact_store: ArtifactStore) -> None:
        path = "données/模型 🚀/naïve model.bin"
        artifact_store.put_bytes(b"u", path)
        assert artifact_store.get_bytes(path) == b"u"
        assert [i.path for i in artifact_store.list("", recursive=True)] == [path]
        assert artifact_store.list("données") == [ArtifactInfo("données/模型 🚀", True)]

    def test_large_file_with_progress(self, artifact_store: ArtifactStore, tmp_path: Path) -> None:
        data = os.urandom(5 * MIB + 3)
        source = tmp_path / "big.bin"
        source.write_bytes(data)
        sent: list[int] = []
        info = artifact_store.put_file(source, "big/big.bin", progress=sent.append)
        assert (info.size, info.sha256) == (len(data), _sha(data))
        assert sum(sent) == len(data) and all(n > 0 for n in sent)
        received: list[int] = []
        target = tmp_path / "big-copy.bin"
        artifact_store.get_file(
            "big/big.bin", target, expected_sha256=info.sha256, progress=received.append
        )
        assert sum(received) == len(data) and target.read_bytes() == data

    # -- listing, exists, delete ----------------------------------------------------------------

    def _populate(self, store: ArtifactStore) -> None:
        for path, data in [
            ("top.txt", b"1"),
            ("a/one.txt", b"22"),
            ("a/b/two.txt", b"333"),
            ("a/b/c/three.txt", b"4444"),
            ("ab/other.txt", b"55555"),
        ]:
            store.put_bytes(data, path)

    def test_list_non_recursive(self, artifact_store: ArtifactStore) -> None:
        self._populate(artifact_store)
        assert artifact_store.list() == [
            ArtifactInfo("a", True),
            ArtifactInfo("ab", True),
            ArtifactInfo("top.txt", False, 1),
        ]
        assert artifact_store.list("a") == [
            ArtifactInfo("a/b", True),
            ArtifactInfo("a/one.txt", False, 2),
        ]
        assert artifact_store.list("a/b/") == artifact_store.list("a\\b")

    def test_list_recursive(self, artifact_store: ArtifactStore) -> None:
        self._populate(artifact_store)
        assert artifact_store.list("a", recursive=True) == [
            ArtifactInfo("a/b/c/three.txt", False, 4),
            ArtifactInfo("a/b/two.txt", False, 3),
            ArtifactInfo("a/one.txt", False, 2),
        ]
        assert len(artifact_store.list("", recursive=True)) == 5

    def test_list_missing_or_file_prefix_is_empty(self, artifact_store: ArtifactStore) -> None:
        self._populate(artifact_store)
        assert artifact_store.list("nope") == []
        assert artifact_store.list("nope", recursive=True) == []
        assert artifact_store.list("top.txt") == []
        assert artifact_store.list("a/one.txt", recursive=True) == []

    def test_exists(self, artifact_store: ArtifactStore) -> None:
        self._populate(artifact_store)
        assert artifact_store.exists("top.txt")
        assert artifact_store.exists("a/b")
        assert not artifact_store.exists("a/missing.txt")
        assert not artifact_store.exists("a/b/two")  # no prefix matching

    def test_delete_file(self, artifact_store: ArtifactStore) -> None:
        self._populate(artifact_store)
        artifact_store.delete("a/one.txt")
        assert not artifact_store.exists("a/one.txt")
        assert artifact_store.exists("a/b/two.txt")

    def test_delete_folder_leaves_siblings(self, artifact_store: ArtifactStore) -> None:
        self._populate(artifact_store)
        artifact_store.delete("a")
        assert not artifact_store.exists("a")
        assert [i.path for i in artifact_store.list("", recursive=True)] == [
            "ab/other.txt",
            "top.txt",
        ]

    def test_delete_missing_and_root(self, artifact_store: ArtifactStore) -> None:
        self._populate(artifact_store)
        with pytest.raises(NotFound):
            artifact_store.delete("a/nope")
        with pytest.raises(InvalidArgument):
            artifact_store.delete("")
        assert len(artifact_store.list("", recursive=True)) == 5

    def test_not_found(self, artifact_store: ArtifactStore, tmp_path: Path) -> None:
        with pytest.raises(NotFound):
            artifact_store.get_bytes("missing.bin")
        with pytest.raises(NotFound):
            artifact_store.open_read("missing.bin")
        with pytest.raises(NotFound):
            artifact_store.get_file("missing.bin", tmp_path / "out.bin")
        assert not (tmp_path / "out.bin").exists()

    def test_folder_is_not_a_file(self, artifact_store: ArtifactStore) -> None:
        self._populate(artifact_store)
        with pytest.raises(NotFound):
            artifact_store.get_bytes("a")
        with pytest.raises(Conflict):
            artifact_store.put_bytes(b"x", "a/b")
        assert artifact_store.get_bytes("a/b/two.txt") == b"333"

    # -- integrity and atomicity ----------------------------------------------------------------

    def test_wrong_digest_get_bytes(self, artifact_store: ArtifactStore) -> None:
        artifact_store.put_bytes(b"payload", "p.bin")
        with pytest.raises(IntegrityError):
            artifact_store.get_bytes("p.bin", expected_sha256=_sha(b"other"))

    def test_wrong_digest_get_file_leaves_nothing(
        self, artifact_store: ArtifactStore, tmp_path: Path
    ) -> None:
        artifact_store.put_bytes(os.urandom(2 * MIB), "p.bin")
        out = tmp_path / "out"
        out.mkdir()
        (out / "kept.bin").write_bytes(b"old content")
        with pytest.raises(IntegrityError):
            artifact_store.get_file("p.bin", out / "new.bin", expected_sha256=_sha(b"other"))
        with pytest.raises(IntegrityError):
            artifact_store.get_file("p.bin", out / "kept.bin", expected_sha256=_sha(b"other"))
        assert sorted(os.listdir(out)) == ["kept.bin"]  # no partial file, no temp file
        assert (out / "kept.bin").read_bytes() == b"old content"

    def test_malformed_expected_digest(self, artifact_store: ArtifactStore) -> None:
        artifact_store.put_bytes(b"payload", "p.bin")
        with pytest.raises(InvalidArgument):
            artifact_store.get_bytes("p.bin", expected_sha256="not-a-digest")

    def test_failing_stream_publishes_nothing(self, artifact_store: ArtifactStore) -> None:
        with pytest.raises(_StreamBroke):
            artifact_store.put_stream(
                cast(BinaryIO, _BrokenStream(os.urandom(2 * MIB))), "x/new.bin"
            )
        assert not artifact_store.exists("x/new.bin")
        assert [i.path for i in artifact_store.list("", recursive=True)] == []
        artifact_store.put_bytes(b"old", "x/old.bin")
        with pytest.raises(_StreamBroke):
            artifact_store.put_stream(
                cast(BinaryIO, _BrokenStream(os.urandom(2 * MIB))), "x/old.bin"
            )
        assert artifact_store.get_bytes("x/old.bin") == b"old"
        assert artifact_store.list("x") == [ArtifactInfo("x/old.bin", False, 3)]

    # -- the traversal matrix -------------------------------------------------------------------

    @pytest.mark.parametrize("operation", sorted(OPERATIONS))
    @pytest.mark.parametrize("evil", EVIL_PATHS)
    def test_traversal_is_refused(
        self,
        artifact_store: ArtifactStore,
        artifact_root_escape: EscapeSnapshot,
        tmp_path: Path,
        operation: str,
        evil: str,
    ) -> None:
        artifact_store.put_bytes(b"inside", "x")  # a same-named file inside must not be hit either
        outside, inside = artifact_root_escape(), _tree(artifact_store)
        assert outside, "artifact_root_escape must plant bait outside the root"
        with pytest.raises(InvalidArgument):
            OPERATIONS[operation](artifact_store, evil, tmp_path)
        assert artifact_root_escape() == outside
        assert _tree(artifact_store) == inside
        assert artifact_store.get_bytes("x") == b"inside"

    @pytest.mark.parametrize("odd", sorted(LEGAL_ODD_PATHS))
    def test_odd_but_legal_paths_stay_inside(
        self, artifact_store: ArtifactStore, artifact_root_escape: EscapeSnapshot, odd: str
    ) -> None:
        outside = artifact_root_escape()
        info = artifact_store.put_bytes(b"odd", odd)
        assert info.path == LEGAL_ODD_PATHS[odd]
        assert artifact_store.get_bytes(odd) == artifact_store.get_bytes(info.path) == b"odd"
        assert [i.path for i in artifact_store.list("", recursive=True)] == [info.path]
        assert artifact_root_escape() == outside
        artifact_store.delete(odd)
        assert artifact_store.list("", recursive=True) == []

    def test_empty_path_is_refused_for_writes(self, artifact_store: ArtifactStore) -> None:
        for path in ("", ".", "/", "./"):
            with pytest.raises(InvalidArgument):
                artifact_store.put_bytes(b"x", path)
        assert artifact_store.list("") == []
