"""safe_extract: every bad member is refused before anything is written."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from loopml.errors import InvalidArgument
from loopml.models.archive import safe_extract

Entry = tuple[str, str, str]  # (kind, name, content or link target)


def _tar(path: Path, entries: list[Entry], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tf:
        for kind, name, value in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                data = value.encode()
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
                continue
            info.type = {
                "dir": tarfile.DIRTYPE,
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
                "device": tarfile.CHRTYPE,
                "fifo": tarfile.FIFOTYPE,
            }[kind]
            info.linkname = value
            tf.addfile(info)
    return path


def _zip(path: Path, entries: list[Entry]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for kind, name, value in entries:
            info = zipfile.ZipInfo(name)
            if kind == "symlink":
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            elif kind == "device":
                info.external_attr = (stat.S_IFCHR | 0o600) << 16
            zf.writestr(info, value)
    return path


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


GOOD: list[Entry] = [
    ("file", "model/MLmodel", "flavor: x"),
    ("dir", "model/data", ""),
    ("file", "model/data/weights.bin", "0123"),
    ("symlink", "model/latest", "data/weights.bin"),
    ("symlink", "model/alias", "../model/data"),
]

BAD: dict[str, tuple[list[Entry], str]] = {
    "dotdot": ([("file", "../../escaped.txt", "x")], "'..' segment"),
    "nested dotdot": ([("file", "model/../../escaped.txt", "x")], "'..' segment"),
    "absolute": ([("file", "/tmp/loopml-absolute-member.txt", "x")], "absolute path"),
    "drive": ([("file", "C:/escaped.txt", "x")], "absolute path"),
    "backslash dotdot": ([("file", "..\\escaped.txt", "x")], "'..' segment"),
    "symlink escaping": ([("symlink", "link", "../../outside")], "escapes the target"),
    "symlink absolute": ([("symlink", "link", "/etc")], "absolute path"),
    "symlink chain": (
        [("symlink", "here", "."), ("symlink", "up", "here/../..")],
        "escapes the target",
    ),
    "write through symlink": (
        [("symlink", "sub", "."), ("symlink", "sub/up", "../x")],
        "escapes the target",
    ),
    "symlink loop": (
        [("symlink", "a", "b/x"), ("symlink", "b", "a/y"), ("file", "a/z", "x")],
        "too many levels",
    ),
}
TAR_ONLY: dict[str, tuple[list[Entry], str]] = {
    "hardlink escaping": ([("hardlink", "h", "../../../etc/passwd")], "points outside"),
    "hardlink absolute": ([("hardlink", "h", "/etc/passwd")], "absolute path"),
    "device": ([("device", "dev", "")], "device file or FIFO"),
    "fifo": ([("fifo", "pipe", "")], "device file or FIFO"),
}


@pytest.mark.parametrize("compression", ["", "gz", "bz2", "xz"])
def test_good_tar_extracts(tmp_path: Path, compression: str) -> None:
    mode = f"w:{compression}" if compression else "w"
    archive = _tar(tmp_path / "a.tar", GOOD, mode)
    paths = safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "model" / "latest").read_text() == "0123"
    assert os.path.islink(tmp_path / "out" / "model" / "alias")
    assert len(paths) == len(GOOD)
    assert all(p.is_relative_to((tmp_path / "out").resolve()) for p in paths)


def test_good_zip_extracts(tmp_path: Path) -> None:
    entries = [e for e in GOOD if e[0] == "file"]
    paths = safe_extract(_zip(tmp_path / "a.zip", entries), tmp_path / "out")
    assert (tmp_path / "out" / "model" / "data" / "weights.bin").read_text() == "0123"
    assert len(paths) == len(entries)


@pytest.mark.parametrize("case", [*BAD, *TAR_ONLY])
def test_bad_tar_extracts_nothing(tmp_path: Path, case: str) -> None:
    entries, message = {**BAD, **TAR_ONLY}[case]
    work = tmp_path / "work"
    work.mkdir()
    archive = _tar(tmp_path / "a.tar.gz", [*GOOD, *entries], "w:gz")
    with pytest.raises(InvalidArgument, match=message):
        safe_extract(archive, work / "deep" / "out")
    assert _listing(tmp_path) == ["a.tar.gz", "work"]
    assert not Path("/tmp/loopml-absolute-member.txt").exists()


@pytest.mark.parametrize("case", [*BAD, "device"])
def test_bad_zip_extracts_nothing(tmp_path: Path, case: str) -> None:
    entries, message = {**BAD, **TAR_ONLY}[case]
    if case == "device":
        entries, message = [("device", "dev", "")], "device file or FIFO"
    work = tmp_path / "work"
    work.mkdir()
    archive = _zip(tmp_path / "a.zip", [*[e for e in GOOD if e[0] == "file"], *entries])
    with pytest.raises(InvalidArgument, match=message):
        safe_extract(archive, work / "deep" / "out")
    assert _listing(tmp_path) == ["a.zip", "work"]


def test_existing_symlink_in_target_is_not_followed_outside(tmp_path: Path) -> None:
    outside, target = tmp_path / "outside", tmp_path / "out"
    outside.mkdir()
    target.mkdir()
    os.symlink(outside, target / "sub")
    archive = _tar(tmp_path / "a.tar", [("file", "sub/evil.txt", "x")])
    with pytest.raises(InvalidArgument, match="would be written outside the target"):
        safe_extract(archive, target)
    assert list(outside.iterdir()) == []


def test_not_an_archive(tmp_path: Path) -> None:
    (tmp_path / "x.bin").write_bytes(b"\x00" * 10)
    with pytest.raises(InvalidArgument, match=r"'x.bin' is not a tar or zip archive"):
        safe_extract(tmp_path / "x.bin", tmp_path / "out")
    assert not (tmp_path / "out").exists()
