"""SEAM: artifact storage. One protocol, one fsspec implementation (file, memory, s3)."""

from loopml.artifacts.store import ArtifactInfo, ArtifactStore

__all__ = ["ArtifactInfo", "ArtifactStore"]
