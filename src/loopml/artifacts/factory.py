"""Build the artifact store named by a URI (the composition root calls this with Settings)."""

from __future__ import annotations

from typing import Any

from fsspec.core import split_protocol

from loopml.artifacts.fsspec_store import FsspecArtifactStore
from loopml.artifacts.store import ArtifactStore
from loopml.errors import InvalidArgument


def artifact_store_from_uri(uri: str, *, s3_endpoint_url: str | None = None) -> ArtifactStore:
    """Return the store for ``uri``: ``file:///dir`` or a plain path, ``memory://x``, ``s3://b/p``.

    ``s3_endpoint_url`` points S3 at another endpoint (MinIO, moto, ...); it is ignored for other
    schemes. S3 credentials come from the usual AWS environment and config.

    >>> artifact_store_from_uri("memory://factory-doctest").root_uri
    'memory://factory-doctest'
    """
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidArgument("artifact store URI must be a non-empty string")
    options: dict[str, Any] = {}
    if s3_endpoint_url and split_protocol(uri)[0] in ("s3", "s3a"):
        options["client_kwargs"] = {"endpoint_url": s3_endpoint_url}
    return FsspecArtifactStore(uri, storage_options=options)
