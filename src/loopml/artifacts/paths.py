"""The one choke point for artifact paths (DESIGN.md §5).

Every path handed to an artifact store goes through :func:`clean_relpath` before it reaches a
filesystem; local paths also through :func:`resolve_local`, at write *and* at read.

Rules of :func:`clean_relpath` (each violation raises :class:`~loopml.errors.InvalidArgument`):

* Backslashes are separators (``a\\b`` is ``a/b``); empty and ``.`` segments are dropped, so the
  result is ``'/'``-separated with no leading, trailing or doubled slashes.
* Percent-encoding is decoded repeatedly, up to :data:`MAX_DECODE_ROUNDS` levels, and *every*
  level, plus its NFKC form (fullwidth dots and solidus), must pass the rules: ``%2e%2e%2f``,
  ``%252e%252e%252f`` and the like are refused, and so is anything encoded deeper. This is done
  for the raw path and for the normalised one. The path is returned *undecoded*: ``a%20b`` names
  the file ``a%20b``.
* Refused: ``..`` segments (also ``.. `` and ``. ``, which Windows trims to dot segments);
  absolute paths (``/x``, ``\\\\server\\share``, ``//server/share``); a first segment
  containing ``:`` (drive letters ``C:/x``, drive-relative ``c:x``, URL schemes ``s3:``) and a
  later segment that is a bare drive (``a/C:/x``, a drive path glued below a folder); a first
  segment starting with ``~`` (no backend home-expands, but a path that would under a shell or
  ``os.path.expanduser`` is refused rather than trusted); NUL (raw or ``%00``), control characters
  and lone surrogates; the glob characters ``* ? [ ]`` (fsspec expands them in deletes); segments
  over 255 UTF-8 bytes and paths over 1024.
* ``....`` and other runs of three or more dots are ordinary names: no backend treats them as a
  parent reference, so ``....//x`` is simply ``..../x``.
* The empty path (``""``, ``.``, ``./``) is refused unless ``allow_empty=True``, which listing uses
  for "the root".

Two stricter entry points build on it. :func:`join_relpath` joins a folder and a name the caller
gave (``artifact_path``, ``artifact_file``, a model's name), checking each part on its own, so
``artifact_path="/etc"`` is refused rather than stored under ``etc/``. :func:`canonical_relpath`
is for paths that arrive whole from outside (REST routes, multipart uploads, artifact records,
stored or incoming): they must already be in the form a store keeps, so ``a//b`` or ``a/./b``
(what a careless join of an absolute part produces) is refused instead of being tidied up.

>>> clean_relpath("run-1\\\\artifacts/./model//model.skops")
'run-1/artifacts/model/model.skops'
>>> clean_relpath("%2e%2e%2fsecret")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
loopml.errors.InvalidArgument: artifact path '%2e%2e%2fsecret' is not allowed: '..' segment; ...
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path
from typing import NoReturn
from urllib.parse import unquote

from loopml.errors import InvalidArgument

MAX_DECODE_ROUNDS = 4
"""Layers of percent-encoding decoded and checked; a path encoded deeper is refused."""

MAX_SEGMENT_BYTES = 255
MAX_PATH_BYTES = 1024

_DRIVE_OR_SCHEME = re.compile(r"^[^/]*:")
_DRIVE = re.compile(r"^[A-Za-z]:$")
_GLOB_CHARS = frozenset("*?[]")
_BAD_CATEGORIES = frozenset({"Cc", "Cs"})  # control characters, lone surrogates


def clean_relpath(path: str, *, allow_empty: bool = False) -> str:
    """Return ``path`` as a safe, normalised ``'/'``-separated relative path, or raise.

    The result is idempotent: ``clean_relpath(clean_relpath(p)) == clean_relpath(p)``.
    """
    if not isinstance(path, str):
        raise InvalidArgument(f"artifact path must be a string, got {type(path).__name__}")
    _check_every_decoding(path, path)
    cleaned = "/".join(_segments(path))
    if cleaned != path:  # dropping '.' segments can change what the rest decodes to
        _check_every_decoding(path, cleaned)
    if not cleaned and not allow_empty:
        _refuse(path, "the path is empty")
    if len(cleaned.encode("utf-8")) > MAX_PATH_BYTES:
        _refuse(path, f"longer than {MAX_PATH_BYTES} bytes")
    return cleaned


def join_relpath(*parts: str) -> str:
    """Join ``parts`` below one another; each is checked by :func:`clean_relpath` on its own.

    Empty parts (``""``, ``"./"``) are skipped; an absolute, drive or UNC part is refused.

    >>> join_relpath("", "plots/", "loss.png")
    'plots/loss.png'
    >>> join_relpath("/etc", "passwd")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    loopml.errors.InvalidArgument: artifact path '/etc' is not allowed: absolute or UNC path; ...
    """
    cleaned = [c for c in (clean_relpath(p, allow_empty=True) for p in parts) if c]
    return clean_relpath("/".join(cleaned))


def canonical_relpath(path: str, *, allow_empty: bool = False) -> str:
    """Return ``path`` if it is exactly what :func:`clean_relpath` makes of it, or raise.

    A trailing ``/`` is allowed (folder prefixes); doubled slashes, ``.`` segments and
    backslashes are refused, in the path and in every percent-decoding of it (``a/%2Fetc``), so a
    path that was glued to an absolute one cannot pass as relative.
    """
    cleaned = clean_relpath(path, allow_empty=allow_empty)
    level = path.removesuffix("/")
    while True:  # clean_relpath bounded the decoding depth
        if clean_relpath(level, allow_empty=True) != level:
            _refuse(path, "not in normal form (doubled '/', a '.' segment or a backslash)")
        if (decoded := unquote(level).removesuffix("/")) == level:
            return cleaned
        level = decoded


def resolve_local(root: Path, rel: str) -> Path:
    """Join ``rel`` to ``root`` and return the real path, refusing anything outside ``root``.

    ``rel`` goes through :func:`clean_relpath` again (``""`` means the root itself). The join is
    resolved with :func:`os.path.realpath`, so a symlink inside the root that points outside it is
    refused; the caller must do its I/O on the returned path, at write and at read.
    """
    real_root = os.path.realpath(root)
    clean = clean_relpath(rel, allow_empty=True)
    real = os.path.realpath(os.path.join(real_root, *clean.split("/")) if clean else real_root)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise InvalidArgument(
            f"artifact path {rel!r} resolves outside the artifact root (through a symlink?)",
            details={"path": rel},
        )
    return Path(real)


def _check_every_decoding(original: str, path: str) -> None:
    rounds = [path]
    while (decoded := unquote(rounds[-1])) != rounds[-1]:
        if len(rounds) > MAX_DECODE_ROUNDS:
            _refuse(original, f"percent-encoded more than {MAX_DECODE_ROUNDS} levels deep")
        rounds.append(decoded)
    for candidate in rounds:
        _check_characters(original, candidate)
        _check_structure(original, candidate)
        _check_structure(original, unicodedata.normalize("NFKC", candidate))


def _segments(path: str) -> list[str]:
    return [s for s in path.replace("\\", "/").split("/") if s not in ("", ".")]


def _check_characters(original: str, candidate: str) -> None:
    for ch in candidate:
        if ch == "\x00":
            _refuse(original, "NUL byte")
        if unicodedata.category(ch) in _BAD_CATEGORIES:
            _refuse(original, f"control or surrogate character U+{ord(ch):04X}")
        if ch in _GLOB_CHARS:
            _refuse(original, f"glob character {ch!r}")


def _check_structure(original: str, candidate: str) -> None:
    unified = candidate.replace("\\", "/")
    if unified.startswith("/"):
        _refuse(original, "absolute or UNC path")
    if _DRIVE_OR_SCHEME.match(unified):
        _refuse(original, "drive letter or URL scheme ':' in the first segment")
    segments = _segments(unified)
    if segments and segments[0].startswith("~"):
        _refuse(original, "home-directory '~' prefix")
    for segment in segments:
        if _DRIVE.match(segment):  # "a/C:/x" is a drive path glued below a folder
            _refuse(original, f"drive {segment!r} as a segment")
        if segment.rstrip(" ") in (".", ".."):
            _refuse(original, f"{segment.rstrip(' ')!r} segment")
        if len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES:
            _refuse(original, f"a segment is longer than {MAX_SEGMENT_BYTES} bytes")


def _refuse(path: str, reason: str) -> NoReturn:
    shown = path if len(path) <= 200 else path[:200] + "..."
    raise InvalidArgument(
        f"artifact path {shown!r} is not allowed: {reason}; use a relative path below the "
        "artifact root",
        details={"path": shown, "reason": reason},
    )
