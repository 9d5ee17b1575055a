"""Safe extraction of tar and zip archives (DESIGN.md §5): every member is checked first.

Refused, naming the member, before anything is written: absolute names, drive letters, ``..``
segments, NUL, device files and FIFOs, and symlinks or hardlinks whose target would land
outside the target directory, also through other links in the same archive or links already
on disk. tarfile's ``data`` filter runs too, but is not relied on (Python 3.11's had bypasses).
Zip members marked as symlinks are checked the same way and written as zipfile writes them: a
small file holding the link text.
"""

from __future__ import annotations

import os
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from loopml.errors import InvalidArgument

_MAX_LINK_HOPS = 40


@dataclass(frozen=True)
class _Member:
    name: str
    kind: str  # "file", "dir", "symlink", "hardlink"
    link: str = ""


def safe_extract(archive: Path, target: Path) -> list[Path]:
    """Extract ``archive`` (tar with any compression, or zip) into ``target``; return the paths.

    On any bad member raise :class:`~loopml.errors.InvalidArgument` and write nothing (not even
    ``target``).
    """
    archive, target = Path(archive), Path(target)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            members = [_zip_member(zf, info) for info in zf.infolist()]
            paths = _check_all(members, target)
            target.mkdir(parents=True, exist_ok=True)
            zf.extractall(target)  # noqa: S202 - every member was checked above
        return paths
    try:
        tf = tarfile.open(archive, "r:*")  # noqa: SIM115 - closed by the with below
    except (tarfile.TarError, OSError) as e:
        raise InvalidArgument(f"'{archive.name}' is not a tar or zip archive: {e}") from e
    with tf:
        infos = tf.getmembers()
        paths = _check_all([_tar_member(info) for info in infos], target)
        target.mkdir(parents=True, exist_ok=True)
        try:
            tf.extractall(target, members=infos, filter="data")
        except tarfile.FilterError as e:  # our checks are stricter; kept as a second line
            raise InvalidArgument(f"archive member refused while extracting: {e}") from e
    return paths


def _tar_member(info: tarfile.TarInfo) -> _Member:
    if info.isreg():
        return _Member(info.name, "file")
    if info.isdir():
        return _Member(info.name, "dir")
    if info.issym():
        return _Member(info.name, "symlink", info.linkname)
    if info.islnk():
        return _Member(info.name, "hardlink", info.linkname)
    raise InvalidArgument(f"archive member {info.name!r} is a device file or FIFO; not allowed")


def _zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> _Member:
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        link = zf.read(info).decode("utf-8", "replace")
        return _Member(info.filename, "symlink", link)
    kind = stat.S_IFMT(mode)  # 0 when the writer recorded permission bits only
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        raise InvalidArgument(f"archive member {info.filename!r} is a device file or FIFO")
    return _Member(info.filename, "dir" if info.is_dir() else "file")


def _parts(name: str, what: str) -> list[str]:
    """Check a member name or link target and split it into segments."""
    if not name or "\x00" in name:
        raise InvalidArgument(f"archive {what} {name!r} is empty or holds NUL")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise InvalidArgument(f"archive {what} {name!r} is an absolute path; not allowed")
    return [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]


def _check_all(members: list[_Member], target: Path) -> list[Path]:
    links = {}
    for m in members:
        parts = _parts(m.name, "member")
        if ".." in parts:
            raise InvalidArgument(f"archive member {m.name!r} has a '..' segment; not allowed")
        if m.kind == "symlink":
            links["/".join(parts)] = m.link
    root = os.path.realpath(target)
    paths = []
    for m in members:
        parts = _parts(m.name, "member")
        # the member's folder, with every link of the archive followed, must stay inside
        parent = _resolve(parts[:-1], links, m.name)
        if m.kind == "symlink":
            _resolve([*parent, *_parts(m.link, f"link target of {m.name!r}")], links, m.name)
        elif m.kind == "hardlink":
            link_parts = _parts(m.link, f"hardlink target of {m.name!r}")
            if ".." in link_parts:
                raise InvalidArgument(f"archive hardlink {m.name!r} points outside the target")
            _resolve(link_parts, links, m.name)
        # links already on disk under the target count too
        dest = os.path.realpath(os.path.join(root, *parent))
        if dest != root and not dest.startswith(root.rstrip(os.sep) + os.sep):
            raise InvalidArgument(f"archive member {m.name!r} would be written outside the target")
        paths.append(Path(root, *parts))
    return paths


def _resolve(parts: list[str], links: dict[str, str], member: str, hops: int = 0) -> list[str]:
    """Resolve ``parts`` inside the archive, following its symlinks; refuse leaving the root."""
    if hops > _MAX_LINK_HOPS:
        raise InvalidArgument(f"archive member {member!r}: too many levels of symbolic links")
    out: list[str] = []
    for part in parts:
        if part == "..":
            if not out:
                raise InvalidArgument(
                    f"archive member {member!r} is a link whose target escapes the target folder"
                )
            out.pop()
            continue
        out.append(part)
        link = links.get("/".join(out))
        if link is not None:
            link_parts = _parts(link, f"link target of {member!r}")
            out = _resolve([*out[:-1], *link_parts], links, member, hops + 1)
    return out
