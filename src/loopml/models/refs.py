"""Model references: ``runs:/<run_id>/<path>``, ``models:/<name>/<version>``,
``models:/<name>@<alias>``.

>>> parse_model_ref("runs:/0123abcd/model")
RunRef(run_id='0123abcd', path='model')
>>> parse_model_ref("models:/fraud-detector/3")
VersionRef(name='fraud-detector', version=3)
>>> parse_model_ref("models:/fraud-detector@champion")
AliasRef(name='fraud-detector', alias='champion')
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from loopml.errors import InvalidArgument

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,255}")
_ALIAS = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
_VERSION = re.compile(r"[1-9][0-9]{0,9}")
_FORMS = "'runs:/<run_id>/<path>', 'models:/<name>/<version>' or 'models:/<name>@<alias>'"


@dataclass(frozen=True)
class RunRef:
    """A model logged by a run, at ``path`` under the run's artifacts."""

    run_id: str
    path: str


@dataclass(frozen=True)
class VersionRef:
    """A registered model's version number."""

    name: str
    version: int


@dataclass(frozen=True)
class AliasRef:
    """A registered model's version named by an alias (``champion``, ``staging``)."""

    name: str
    alias: str


def parse_model_ref(ref: str) -> RunRef | VersionRef | AliasRef:
    """Parse a model reference, or raise :class:`~loopml.errors.InvalidArgument` saying why not."""
    from loopml.artifacts.paths import clean_relpath

    if not isinstance(ref, str):
        raise InvalidArgument(f"a model reference must be a string, got {type(ref).__name__}")
    if ref.startswith("runs:/"):
        run_id, _, path = ref[len("runs:/") :].partition("/")
        if not _RUN_ID.fullmatch(run_id):
            raise InvalidArgument(f"model reference {ref!r}: invalid run id {run_id!r}")
        if not path.strip("/"):
            raise InvalidArgument(f"model reference {ref!r}: the path inside the run is empty")
        return RunRef(run_id, clean_relpath(path))
    if ref.startswith("models:/"):
        rest = ref[len("models:/") :]
        if "@" in rest:
            name, _, alias = rest.partition("@")
            _check_name(ref, name)
            if not _ALIAS.fullmatch(alias):
                raise InvalidArgument(
                    f"model reference {ref!r}: invalid alias {alias!r} (letters, digits, '_' "
                    "and '-', starting with a letter or '_')"
                )
            return AliasRef(name, alias)
        name, sep, version = rest.partition("/")
        _check_name(ref, name)
        if not sep or not version:
            raise InvalidArgument(f"model reference {ref!r}: give a version or an alias; {_FORMS}")
        if not _VERSION.fullmatch(version):
            raise InvalidArgument(
                f"model reference {ref!r}: version {version!r} is not a positive integer"
            )
        return VersionRef(name, int(version))
    raise InvalidArgument(f"model reference {ref!r:.100} is not one of {_FORMS}")


def _check_name(ref: str, name: str) -> None:
    if not _NAME.fullmatch(name):
        raise InvalidArgument(
            f"model reference {ref!r}: invalid model name {name!r} (letters, digits, '_', '.' "
            "and '-', at most 256)"
        )
