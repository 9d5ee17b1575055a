"""Password rules: common passwords, ones built from the user name, and patterns are refused
wherever a password is set (the store, `loopml admin init|users add|users passwd`)."""

from __future__ import annotations

import doctest
import gzip
import tomllib
from importlib.resources import files
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loopml.cli.admin import app
from loopml.errors import InvalidArgument
from loopml.governance import password_rules
from loopml.governance.password_rules import check_password, common_passwords

ROOT = Path(__file__).resolve().parents[1]
GOOD = "correct horse battery staple"

REFUSED = [
    # (password, user name, why)
    ("password1234", "ada", "common"),
    ("1q2w3e4r5t6y", "ada", "common"),
    ("QWERTY123456", "ada", "common"),  # case does not help
    ("Sunshine12345!", "ada", "common password with digits"),
    ("!!dragon2026##", "ada", "common password with digits"),
    ("ada.lovelace", "ada.lovelace", "user name"),
    ("ADA.LOVELACE", "ada.lovelace", "user name"),
    ("my name is ada.lovelace", "ada.lovelace", "user name"),
    ("ecalevol.ada", "ada.lovelace", "user name"),  # reversed
    ("ada.lovelace2024", "ada.lovelace", "user name"),  # digits appended
    ("xx-Grace-Hopper-xx", "grace-hopper", "user name"),
    ("aaaaaaaaaaaa", "ada", "one character repeated"),
    ("############", "ada", "one character repeated"),
    ("abcabcabcabc", "ada", "repeated"),
    ("xyxyxyxyxyxyxy", "ada", "repeated"),
    ("abcdefghijkl", "ada", "sequence"),
    ("zyxwvutsrqpo", "ada", "sequence"),
    ("123456789012", "ada", "sequence"),
    ("0987654321098", "ada", "sequence"),
    ("zxcvbnm,./zx", "ada", "sequence"),  # a keyboard row, wrapping round
    ("1qaz2wsx3edc4rfv", "ada", "sequence"),  # keyboard columns
    ("qwertyuiop[]", "ada", "common"),
    ("short", "ada", "too short"),
    ("x" * 1025, "ada", "too long"),
]


@pytest.mark.parametrize(("password", "username", "why"), REFUSED)
def test_weak_passwords_are_refused_saying_why(password, username, why):
    with pytest.raises(InvalidArgument, match=why) as caught:
        check_password(password, username=username)
    assert str(caught.value).startswith("the password is")


@pytest.mark.parametrize(
    "password",
    [GOOD, "a long enough passphrase", "a much better passphrase", "Tr4in-the-model-tw1ce",
     GOOD + "!", "ab" + "c" * 11 + "d"],
)  # fmt: skip
def test_ordinary_passphrases_pass(password):
    assert check_password(password, username="ada") == password
    assert check_password(password, username="al") == password  # short names: whole only


def test_a_short_user_name_may_appear_in_a_password():
    assert check_password("al pacino is great", username="al")
    with pytest.raises(InvalidArgument, match="user name"):
        check_password("sal pacino is great", username="sal")


def test_the_list_ships_with_the_package_with_its_licence():
    package = files("loopml.governance")
    listed = gzip.decompress(package.joinpath("common-passwords.txt.gz").read_bytes()).decode()
    lines = listed.splitlines()
    assert len(lines) == 10_000 and lines[:4] == ["123456", "123456789", "qwerty", "password"]
    assert common_passwords() == frozenset(lines)
    licence = package.joinpath("common-passwords.LICENSE").read_text()
    assert "Django" in licence and "Redistribution and use" in licence
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "governance/common-passwords.*" in data["package-data"]["loopml"]


def test_doctests():
    assert doctest.testmod(password_rules).failed == 0


# every place a password is set -------------------------------------------------------------
def test_the_store_refuses_weak_passwords_everywhere(identity_store):
    for weak in ("password1234", "aaaaaaaaaaaa", "grace.hopper1"):
        with pytest.raises(InvalidArgument, match="refused"):
            identity_store.create_first_admin("grace.hopper", weak, actor="t")
    assert identity_store.count_users() == 0
    admin = identity_store.create_first_admin("grace.hopper", GOOD, actor="t")
    with pytest.raises(InvalidArgument, match="user name"):
        identity_store.create_user("alan.turing", "Alan.Turing!!", actor="t")
    for weak in ("password1234", "xx-reppoh.ecarg-xx", "Grace.Hopper.2026"):
        with pytest.raises(InvalidArgument, match="refused"):
            identity_store.set_password(admin, weak, actor="t")
        with pytest.raises(InvalidArgument, match="refused"):
            identity_store.set_password("grace.hopper", weak, actor="t")
    assert identity_store.authenticate_password("grace.hopper", GOOD) == admin
    assert [u.username for u in identity_store.list_users()] == ["grace.hopper"]


@pytest.fixture
def cli_env(metadata_url, tmp_path, monkeypatch):
    monkeypatch.setenv("LOOPML_URI", metadata_url)
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LOOPML_USER", "ops")


def _admin(*args: str, password: str):
    return CliRunner().invoke(app, [*args, "--password-stdin"], input=password + "\n")


@pytest.mark.parametrize(
    ("password", "why"),
    [("password1234", "most common passwords"), ("aaaaaaaaaaaa", "one character repeated"),
     ("bobbobbobbob", "user name"), ("bob", "too short")],
)  # fmt: skip
def test_admin_cli_refuses_weak_passwords(cli_env, identity_store, password, why):
    refused = _admin("init", "-u", "bobbobbobbob", password=password)
    assert refused.exit_code == 1 and why in refused.stderr and "Traceback" not in refused.output
    assert identity_store.count_users() == 0
    assert _admin("init", "-u", "root", password=GOOD).exit_code == 0
    added = _admin("users", "add", "bobbobbobbob", password=password)
    assert added.exit_code == 1 and why in added.stderr
    assert _admin("users", "add", "bob", password=GOOD).exit_code == 0
    changed = _admin("users", "passwd", "bob", password=password)  # "bobbobbobbob" holds "bob"
    assert changed.exit_code == 1 and why in changed.stderr
    assert identity_store.authenticate_password("bob", GOOD).username == "bob"
