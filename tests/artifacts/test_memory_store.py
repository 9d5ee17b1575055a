"""FsspecArtifactStore on fsspec's in-memory filesystem: the contract."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import fsspec
import pytest

from loopml.artifacts.fsspec_store import FsspecArtifactStore
from loopml.testing.artifact_contract import ArtifactStoreContract

from .conftest import BAIT


@pytest.fixture
def memory_sandbox() -> Iterator[str]:
    """A unique ``/t-<uuid>`` folder in the (process-wide) memory filesystem, removed afterwards."""
    fs = fsspec.filesystem("memory")
    sandbox = f"/t-{uuid.uuid4().hex}"
    for bait in ("x", "a/x", "a/rootx"):
        fs.pipe_file(f"{sandbox}/{bait}", BAIT)
    yield sandbox
    for name in [n for n in list(fs.store) if n.startswith(f"{sandbox}/")]:
        del fs.store[name]
    fs.pseudo_dirs[:] = [
        d for d in fs.pseudo_dirs if d != sandbox and not d.startswith(f"{sandbox}/")
    ]


class TestMemoryStoreContract(ArtifactStoreContract):
    @pytest.fixture
    def artifact_store(self, memory_sandbox: str) -> FsspecArtifactStore:
        return FsspecArtifactStore(f"memory:/{memory_sandbox}/a/root")

    @pytest.fixture
    def artifact_root_escape(self, memory_sandbox: str) -> Callable[[], object]:
        fs = fsspec.filesystem("memory")
        root = f"{memory_sandbox}/a/root"

        def snapshot() -> dict[str, bytes]:
            return {
                name: bytes(f.getvalue())
                for name, f in list(fs.store.items())
                if name != root and not name.startswith(f"{root}/")
            }

        return snapshot


def test_root_uri(memory_sandbox: str) -> None:
    store = FsspecArtifactStore(f"memory://{memory_sandbox.lstrip('/')}/a/root/")
    assert store.root_uri == f"memory://{memory_sandbox.lstrip('/')}/a/root"
    store.put_bytes(b"x", "f")
    assert fsspec.filesystem("memory").cat_file(f"{memory_sandbox}/a/root/f") == b"x"
