"""The one choke point for pickle (DESIGN.md §5): nothing else in loopml may unpickle.

Unpickling runs whatever code the file names, so loopml does it only when *both* hold:

* the caller opted in (``trust=True``; at the edges, ``LOOPML_TRUST_PICKLED_MODELS=1``), and
* the package is one this platform recorded: the caller passes the manifest digest recorded at
  log time, and it equals the digest of the manifest on disk (which lists the pickle's sha256).

A test greps ``src/`` for other unpickling calls and fails on any outside this module.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.errors import IntegrityError, PermissionDenied

if TYPE_CHECKING:
    from loopml.models.package import Manifest

TRUST_HINT = (
    "pickle can run arbitrary code; loopml loads it only for a package whose digest it recorded "
    "and only with trust=True (or LOOPML_TRUST_PICKLED_MODELS=1)"
)


def unpickle(
    path: Path,
    *,
    trust: bool,
    recorded_digest: str | None,
    actual_digest: str,
    expected_sha256: str | None = None,
) -> Any:
    """Unpickle ``path`` if trusted, else raise :class:`~loopml.errors.PermissionDenied`.

    ``actual_digest`` is the digest of the package the file belongs to; ``expected_sha256``,
    when given, is the file's digest from that package's manifest, checked on the very bytes
    that are unpickled (so the file cannot change between the check and the load).
    """
    path = Path(path)
    if not trust:
        reason = "trust is off"
    elif recorded_digest is None:
        reason = "no digest was recorded for this package, so its origin is unknown"
    elif recorded_digest != actual_digest:
        reason = f"the package digest {actual_digest} differs from the recorded {recorded_digest}"
    else:
        reason = ""
    if reason:
        raise PermissionDenied(
            f"refusing to unpickle '{path.name}': {TRUST_HINT} ({reason})",
            details={"file": path.name},
        )
    data = path.read_bytes()
    if expected_sha256 is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected_sha256:
            raise IntegrityError(
                f"model package file '{path.name}' was changed after it was logged "
                f"(sha256 {actual}, recorded {expected_sha256})"
            )
    import pickle  # cloudpickle writes plain pickles; reading them needs only pickle

    return pickle.loads(data)  # noqa: S301 - the trust checks above are the point of this module


def load_pickled(
    directory: Path, manifest: Manifest, relpath: str, *, trust: bool, recorded_digest: str | None
) -> Any:
    """Unpickle the package file ``relpath`` through :func:`unpickle`, for a flavor's ``load``.

    The digest compared with ``recorded_digest`` is computed from the manifest on disk, and the
    file's expected sha256 is read from those same bytes, not from the ``manifest`` object.
    """
    from loopml.models.package import MANIFEST_NAME, _parse_manifest, _read_manifest_bytes

    directory = Path(directory)
    raw = _read_manifest_bytes(directory)
    on_disk = _parse_manifest(raw, directory)
    if relpath not in on_disk.files or on_disk.files != manifest.files:
        raise IntegrityError(
            f"model package file '{relpath}' is not the one listed in {MANIFEST_NAME}"
        )
    return unpickle(
        directory / relpath,
        trust=trust,
        recorded_digest=recorded_digest,
        actual_digest=hashlib.sha256(raw).hexdigest(),
        expected_sha256=on_disk.files[relpath],
    )
