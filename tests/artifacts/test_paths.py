"""clean_relpath and resolve_local: the one choke point for artifact paths."""

from __future__ import annotations

import doctest
import ntpath
import posixpath
from pathlib import Path
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopml.artifacts import paths
from loopml.artifacts.paths import MAX_DECODE_ROUNDS, clean_relpath, resolve_local
from loopml.errors import InvalidArgument
from loopml.testing.artifact_contract import EVIL_PATHS, LEGAL_ODD_PATHS

GOOD = {
    "model.skops": "model.skops",
    "run-1/artifacts/model/model.skops": "run-1/artifacts/model/model.skops",
    "a\\b\\c": "a/b/c",
    "a//b///c/": "a/b/c",
    "./a/./b": "a/b",
    "a/b/.": "a/b",
    "....//x": "..../x",
    "...": "...",
    "x..": "x..",
    ".hidden/.env": ".hidden/.env",
    "a%20b": "a%20b",
    "a%2fb": "a%2fb",  # decodes to a/b, which is fine; stored undecoded
    "100%": "100%",
    "a/~b/c~": "a/~b/c~",
    "a/b:c": "a/b:c",
    "données/模型 🚀.bin": "données/模型 🚀.bin",
    "\uff41\uff0f\uff42": "\uff41\uff0f\uff42",  # fullwidth a/b: its NFKC form is harmless
}

BAD = [
    *EVIL_PATHS,
    "..",
    "a/..",
    "a/../b",
    "../",
    "..\\",
    "a/..\\..\\x",
    ".. /x",
    "a/. /x",
    "%2e%2e",
    "%2e%2e%5c",
    "%2e%2e%5cx",
    ".%2e/x",
    "%2e./x",
    "%252E%252E%252F",
    "%2fetc/passwd",
    "./%2F",  # only after dropping "." does the rest decode to an absolute path
    "./%252f",
    "%5c%5cserver%5cshare",
    "\\x",
    "\\\\?\\C:\\x",
    "D:",
    "z:\\",
    "s3://bucket/key",
    "file:///etc/passwd",
    "~",
    "~/x",
    "~root/.ssh/id_rsa",
    "%7e/x",
    "x\x00",
    "\x00",
    "%00",
    "%2500",
    "a\nb",
    "a\rb",
    "a\tb",
    "a\x1bb",
    "a\x7fb",
    "a\x85b",  # C1 control
    "a*",
    "a?b",
    "a[0]",
    "%2a",
    "a\ud800b",  # lone surrogate
    "x" * 256,
    "/".join(["y" * 200] * 6),
    "%2525252e%2525252e%2525252fx",  # four levels: decodes to ../x
    "%2525252525252e%2525252525252e/x",  # deeper than MAX_DECODE_ROUNDS
]


@pytest.mark.parametrize(("raw", "clean"), sorted(GOOD.items()))
def test_good_paths_are_normalised(raw: str, clean: str) -> None:
    assert clean_relpath(raw) == clean
    assert clean_relpath(clean) == clean


@pytest.mark.parametrize("raw", sorted(LEGAL_ODD_PATHS))
def test_contract_odd_paths_agree(raw: str) -> None:
    assert clean_relpath(raw) == LEGAL_ODD_PATHS[raw]


@pytest.mark.parametrize("raw", BAD)
def test_bad_paths_are_refused(raw: str) -> None:
    with pytest.raises(InvalidArgument, match="is not allowed") as info:
        clean_relpath(raw)
    assert info.value.details["reason"]


@pytest.mark.parametrize("raw", ["", ".", "./", "a/..", "//", "\\"])
def test_empty_only_for_listing(raw: str) -> None:
    with pytest.raises(InvalidArgument):
        clean_relpath(raw)
    if raw in ("", ".", "./"):
        assert clean_relpath(raw, allow_empty=True) == ""


def test_decoding_depth_limit() -> None:
    name = "a"
    for _ in range(MAX_DECODE_ROUNDS):
        name = name.replace("%", "%25") if "%" in name else "%61"
    assert clean_relpath(name) == name  # exactly MAX_DECODE_ROUNDS levels is accepted
    with pytest.raises(InvalidArgument, match="levels deep"):
        clean_relpath(name.replace("%", "%25"))


def test_non_string_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="must be a string"):
        clean_relpath(b"../x")  # type: ignore[arg-type]


def test_long_paths_are_shortened_in_messages() -> None:
    with pytest.raises(InvalidArgument) as info:
        clean_relpath("../" + "y" * 5000)
    assert len(info.value.message) < 400


def test_doctests() -> None:
    assert doctest.testmod(paths, raise_on_error=False).failed == 0


# -- properties ------------------------------------------------------------------------------

_PIECES = st.sampled_from(
    [".", "..", "...", "/", "\\", "%", "%2e", "%2E", "%2f", "%5c", "%25", "%00", "%7e", "a",
     "b c", "~", ":", "C:", "\x00", "\n", "\uff0e", "\uff0f", "\uff3c", " ", "é", "*"]
)  # fmt: skip
_TRICKY = st.lists(_PIECES, max_size=12).map("".join)


def _assert_safe(result: str) -> None:
    assert result == clean_relpath(result)  # idempotent
    assert result and not result.startswith("/") and "\\" not in result and "\x00" not in result
    candidate = result
    while True:  # no decoding of the result can introduce traversal either
        segments = candidate.replace("\\", "/").split("/")
        assert ".." not in segments and not candidate.startswith(("/", "\\"))
        if (decoded := unquote(candidate)) == candidate:
            break
        candidate = decoded
    joined = posixpath.normpath(posixpath.join("/srv/root", result))
    assert joined.startswith("/srv/root/") and ".." not in joined.split("/")
    win = ntpath.normpath(ntpath.join("C:\\srv\\root", result))
    assert win.startswith("C:\\srv\\root\\") and ".." not in win.split("\\")


@given(st.one_of(st.text(), _TRICKY))
def test_any_text_is_refused_or_safe(raw: str) -> None:
    try:
        result = clean_relpath(raw)
    except InvalidArgument:
        return
    _assert_safe(result)


@given(st.lists(st.text(min_size=1), min_size=1, max_size=5))
def test_resolve_local_stays_inside(parts: list[str]) -> None:
    root = Path("/srv/loopml-never-created/root")
    try:
        resolved = resolve_local(root, "/".join(parts))
    except InvalidArgument:
        return
    assert resolved == root or root in resolved.parents


# -- resolve_local ---------------------------------------------------------------------------


def test_resolve_local_joins_inside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    assert resolve_local(root, "a\\b/c") == root.resolve() / "a" / "b" / "c"
    assert resolve_local(root, "") == root.resolve()


def test_resolve_local_refuses_symlink_escape(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d" / "out").symlink_to(tmp_path, target_is_directory=True)
    (root / "d" / "ok").symlink_to(root / "d", target_is_directory=True)
    with pytest.raises(InvalidArgument, match="outside the artifact root"):
        resolve_local(root, "d/out/secret")
    with pytest.raises(InvalidArgument, match="outside the artifact root"):
        resolve_local(root, "d/out")
    assert resolve_local(root, "d/ok/file") == root.resolve() / "d" / "file"


def test_resolve_local_through_a_symlinked_root(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    assert resolve_local(tmp_path / "link", "a") == (tmp_path / "real" / "a").resolve()


def test_resolve_local_refuses_sibling_with_common_prefix(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "rootx").mkdir()
    (root / "s").symlink_to(tmp_path / "rootx", target_is_directory=True)
    with pytest.raises(InvalidArgument):
        resolve_local(root, "s/f")


@pytest.mark.parametrize("raw", EVIL_PATHS)
def test_resolve_local_applies_clean_relpath(tmp_path: Path, raw: str) -> None:
    with pytest.raises(InvalidArgument):
        resolve_local(tmp_path, raw)


# -- join_relpath and canonical_relpath ---------------------------------------------------------
ABSOLUTE_PARTS = ["/etc", "C:/Windows", "C:\\Windows", "c:", "\\\\host\\share", "//host/share",
                  "%2Fetc", "%252Fetc", "C%3A%5Cx", "%5C%5Chost%5Cshare"]  # fmt: skip


@pytest.mark.parametrize("part", ABSOLUTE_PARTS)
def test_join_refuses_an_absolute_part_instead_of_gluing_it(part: str) -> None:
    with pytest.raises(InvalidArgument, match="is not allowed"):
        paths.join_relpath(part, "passwd")
    with pytest.raises(InvalidArgument, match="is not allowed"):
        paths.join_relpath("run/artifacts", part)


def test_join_skips_empty_parts() -> None:
    assert paths.join_relpath("", "./", "a/", "b") == "a/b"
    with pytest.raises(InvalidArgument, match="empty"):
        paths.join_relpath("", ".")


NOT_NORMAL = ["a//b", "a/./b", "./a", "a\\b", "a/%2Fetc", "a%2F%2Fb", "a/%252Fetc", "a%5Cb",
              "a/%2e/b", "a/C:/x", "a/c:\\x"]  # fmt: skip


@pytest.mark.parametrize("raw", NOT_NORMAL)
def test_canonical_refuses_what_clean_would_tidy_up(raw: str) -> None:
    with pytest.raises(InvalidArgument, match="is not allowed"):
        paths.canonical_relpath(raw)


def test_canonical_keeps_normal_paths() -> None:
    assert (
        paths.canonical_relpath("1/run/artifacts/model/MLmodel") == "1/run/artifacts/model/MLmodel"
    )
    assert paths.canonical_relpath("a/b/") == "a/b"  # a folder prefix
    assert paths.canonical_relpath("a%20b/c") == "a%20b/c"
    assert paths.canonical_relpath("", allow_empty=True) == ""
