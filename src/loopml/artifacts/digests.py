"""Digest checks for bytes that are streamed on rather than collected first.

:func:`verified_chunks` hashes chunks as they pass and holds back the last one until the digest
is known: a consumer that forwards what it gets (an HTTP response) never delivers a complete copy
of a file that differs from its recorded sha256, it gets an :class:`~loopml.errors.IntegrityError`
instead of the final chunk.

>>> import hashlib
>>> good = hashlib.sha256(b"abcdef").hexdigest()
>>> b"".join(verified_chunks(iter([b"abc", b"def"]), good, "x"))
b'abcdef'
>>> list(verified_chunks(iter([b"abc", b"dex"]), good, "x"))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
loopml.errors.IntegrityError: artifact 'x' has sha256 ..., expected ...
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

from loopml.errors import IntegrityError


def verified_chunks(chunks: Iterable[bytes], expected_sha256: str, path: str) -> Iterator[bytes]:
    """Yield ``chunks`` unchanged, the last one only once the whole stream matched its digest."""
    digest = hashlib.sha256()
    held: bytes | None = None
    for chunk in chunks:
        digest.update(chunk)
        if held is not None:
            yield held
        held = chunk
    actual = digest.hexdigest()
    if actual != expected_sha256.lower():
        raise IntegrityError(
            f"artifact {path!r} has sha256 {actual}, expected {expected_sha256}",
            details={"path": path, "expected": expected_sha256, "actual": actual},
        )
    if held is not None:
        yield held
