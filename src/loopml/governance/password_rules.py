"""What a password must not be: short, common, built from the user's name, or a pattern.

Every place a password is set (``loopml admin init``, ``admin users add``, ``admin users
passwd``, the identity store underneath them) goes through :func:`check_password`. A refused
password gets an :class:`~loopml.errors.InvalidArgument` that says why. The rules:

* 12 to 1024 characters;
* not one of the 10,000 most common passwords (``common-passwords.txt.gz``, shipped with the
  package; see ``common-passwords.LICENSE``), compared case-insensitively, nor one of them with
  only digits or symbols around it (``Password1234!``);
* not the user name, nor containing it (or it reversed), whatever the case;
* not one character repeated, a short group repeated (``abcabcabcabc``), or a run of the
  alphabet, the digits or a keyboard row (``abcdefghijkl``, ``123456789012``, ``qwertyuiop[]``).

>>> check_password("correct horse battery staple", username="ada")
'correct horse battery staple'
>>> for weak in ("Sunshine12345!", "aaaaaaaaaaaa", "ada.lovelace", "zyxwvutsrqpo"):
...     try:
...         check_password(weak, username="ada.lovelace")
...     except InvalidArgument as e:
...         print(e)
the password is refused: it is a common password with digits or symbols added
the password is refused: it is one character repeated
the password is refused: it is the user name, or contains it
the password is refused: it is a simple sequence (like abcdef, 123456 or qwerty)
"""

from __future__ import annotations

import gzip
import re
from functools import cache
from importlib.resources import files

from loopml.errors import InvalidArgument

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
MIN_NAME_IN_PASSWORD = 3  # shorter names ("al") are only refused as the whole password
_AROUND = re.compile(r"^[\W\d_]*(.*?)[\W\d_]*$", re.DOTALL)  # digits and symbols at the ends
_REPEATED_GROUP = re.compile(r"^(.{1,4})\1+$", re.DOTALL)
_SEQUENCES = (
    "abcdefghijklmnopqrstuvwxyz",
    "0123456789",
    "qwertyuiop[]",
    "asdfghjkl;'",
    "zxcvbnm,./",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik,9ol.0p;/",
    "`1234567890-=",
)


@cache
def common_passwords() -> frozenset[str]:
    """The shipped list, lower-cased (read once, on first use)."""
    data = files("loopml.governance").joinpath("common-passwords.txt.gz").read_bytes()
    return frozenset(line.strip() for line in gzip.decompress(data).decode().splitlines())


def _refuse(reason: str) -> InvalidArgument:
    return InvalidArgument(f"the password is refused: {reason}")


def _is_sequence(text: str) -> bool:
    for run in _SEQUENCES:
        # long enough to hold the password however it wraps around, forwards or backwards
        cycle = run * (len(text) // len(run) + 2)
        if text in cycle or text in cycle[::-1]:
            return True
    return False


def check_password(password: str, *, username: str | None = None) -> str:
    """``password`` if it may be used by ``username``, else InvalidArgument saying why."""
    if not isinstance(password, str):
        raise InvalidArgument("the password must be a string")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidArgument(
            f"the password is too short: use at least {MIN_PASSWORD_LENGTH} characters"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidArgument(f"the password is too long: at most {MAX_PASSWORD_LENGTH} characters")
    lowered = password.lower()
    common = common_passwords()
    if lowered in common:
        raise _refuse("it is one of the 10,000 most common passwords")
    core = _AROUND.match(lowered)
    if core is not None and core.group(1) and core.group(1) in common:
        raise _refuse("it is a common password with digits or symbols added")
    name = (username or "").strip().lower()
    if name and (
        lowered in (name, name[::-1])
        or (len(name) >= MIN_NAME_IN_PASSWORD and (name in lowered or name[::-1] in lowered))
    ):
        raise _refuse("it is the user name, or contains it")
    if len(set(lowered)) == 1:
        raise _refuse("it is one character repeated")
    if _REPEATED_GROUP.match(lowered):
        raise _refuse("it is a few characters repeated")
    if _is_sequence(lowered):
        raise _refuse("it is a simple sequence (like abcdef, 123456 or qwerty)")
    return password
