"""The model package: a directory of model files plus a manifest that lists each file's sha256.

The manifest (``loopml-model.yaml``) names the flavor, framework versions, signature, lineage and
the digest of every other file; the sha256 of the manifest's own bytes (:func:`manifest_digest`)
is therefore the package's identity, and what the platform records when a model is logged.
:func:`load_package` verifies every file first and, given the recorded digest, that the package
is the one that was logged. Pickle-based packages load only through :mod:`loopml.models.trust`.

>>> import tempfile, numpy as np
>>> from pathlib import Path
>>> from sklearn.linear_model import LinearRegression
>>> model = LinearRegression().fit(np.array([[0.0], [1.0]]), np.array([0.0, 2.0]))
>>> folder = Path(tempfile.mkdtemp()) / "model"
>>> save_package(model, folder, input_example=np.array([[3.0]])).flavor
'sklearn'
>>> load_package(folder).predict(np.array([[3.0]])).round(6).tolist()
[6.0]
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import stat
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.errors import IntegrityError, InvalidArgument, NotFound
from loopml.models.signature import Signature, infer_signature

if TYPE_CHECKING:
    from loopml.models.predictor import Predictor

MANIFEST_NAME = "loopml-model.yaml"
FORMAT_VERSION = 1
INPUT_EXAMPLE_NAME = "input_example.json"
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Lineage:
    """Where the model came from: the run that logged it and the datasets it used.

    Each dataset is ``{"name": ..., "version": ... or "digest": ..., "role": "train"|...}``.
    """

    run_id: str | None = None
    datasets: tuple[dict[str, str], ...] = ()

    def __post_init__(self) -> None:
        datasets = []
        for entry in self.datasets:
            ok = isinstance(entry, Mapping) and all(
                isinstance(k, str) and isinstance(v, str | int) and not isinstance(v, bool)
                for k, v in entry.items()
            )
            if not ok:
                raise InvalidArgument(
                    f"lineage dataset entries map strings to strings: {entry!r:.80}"
                )
            d = {k: str(v) for k, v in entry.items()}
            if "name" not in d:
                raise InvalidArgument(f"lineage dataset entry needs a 'name': {d!r:.80}")
            datasets.append(d)
        object.__setattr__(self, "datasets", tuple(datasets))

    def to_dict(self) -> dict[str, Any]:
        """This lineage as plain data."""
        return {"run_id": self.run_id, "datasets": [dict(d) for d in self.datasets]}

    @classmethod
    def from_dict(cls, d: Any) -> Lineage:
        """Read a lineage written by :meth:`to_dict`."""
        if not isinstance(d, Mapping):
            raise InvalidArgument("manifest lineage must be a mapping")
        return cls(run_id=d.get("run_id"), datasets=tuple(d.get("datasets") or ()))


@dataclass(frozen=True)
class Manifest:
    """The contents of ``loopml-model.yaml``; ``files`` maps every other file to its sha256."""

    format_version: int
    flavor: str
    framework: str
    framework_version: str
    python_version: str
    loopml_version: str
    requirements: tuple[str, ...]
    signature: Signature | None
    input_example: str | None
    files: dict[str, str]
    lineage: Lineage = field(default_factory=Lineage)
    created_time: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """This manifest as plain data (what is written as YAML)."""
        return {
            "format_version": self.format_version,
            "flavor": self.flavor,
            "framework": self.framework,
            "framework_version": self.framework_version,
            "python_version": self.python_version,
            "loopml_version": self.loopml_version,
            "requirements": list(self.requirements),
            "signature": self.signature.to_dict() if self.signature else None,
            "input_example": self.input_example,
            "files": dict(sorted(self.files.items())),
            "lineage": self.lineage.to_dict(),
            "created_time": self.created_time,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, d: Any) -> Manifest:
        """Read and check a manifest written by :meth:`to_dict`."""
        if not isinstance(d, Mapping):
            raise InvalidArgument("the model manifest must be a mapping")
        version = d.get("format_version")
        if not isinstance(version, int) or version < 1:
            raise InvalidArgument(f"model manifest has no valid format_version: {version!r}")
        if version > FORMAT_VERSION:
            raise InvalidArgument(
                f"model package format {version} is newer than this loopml reads "
                f"({FORMAT_VERSION}); upgrade loopml"
            )
        texts = ("flavor", "framework", "framework_version", "python_version", "loopml_version")
        for key in texts:
            if not isinstance(d.get(key), str):
                raise InvalidArgument(f"model manifest field {key!r} must be a string")
        requirements, metadata = d.get("requirements") or [], d.get("metadata") or {}
        if not isinstance(requirements, list) or not all(isinstance(r, str) for r in requirements):
            raise InvalidArgument("model manifest 'requirements' must be a list of strings")
        if not isinstance(metadata, Mapping):
            raise InvalidArgument("model manifest 'metadata' must be a mapping")
        created = d.get("created_time", 0)
        if not isinstance(created, int):
            raise InvalidArgument("model manifest 'created_time' must be an integer (ms)")
        example = d.get("input_example")
        signature = d.get("signature")
        return cls(
            format_version=version,
            flavor=d["flavor"],
            framework=d["framework"],
            framework_version=d["framework_version"],
            python_version=d["python_version"],
            loopml_version=d["loopml_version"],
            requirements=tuple(requirements),
            signature=Signature.from_dict(signature) if signature is not None else None,
            input_example=_listed_path(example) if example is not None else None,
            files=_checked_files(d.get("files")),
            lineage=Lineage.from_dict(d.get("lineage") or {}),
            created_time=created,
            metadata=dict(metadata),
        )


def save_package(
    model: Any,
    directory: Path,
    *,
    flavor: str | None = None,
    signature: Signature | None = None,
    input_example: Any = None,
    lineage: Lineage = Lineage(),  # frozen, so sharing the default is safe
    requirements: Sequence[str] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Manifest:
    """Write ``model`` as a package into ``directory`` (which must not exist or be empty).

    The flavor is detected from the model's type unless given; the signature is inferred from
    ``input_example`` (and the model's prediction on it) unless given. The package is built in
    a temporary sibling directory and renamed into place, so a failure leaves nothing behind.
    """
    from loopml.models.flavors import detect_flavor, get_flavor

    directory = Path(directory)
    if directory.is_symlink() or (directory.exists() and not directory.is_dir()):
        raise InvalidArgument(f"model package path '{directory}' exists and is not a directory")
    if directory.exists() and any(directory.iterdir()):
        raise InvalidArgument(f"model package directory '{directory}' is not empty")
    name = flavor or detect_flavor(model)
    module = get_flavor(name)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".loopml-package-", dir=directory.parent))
    try:
        saved = module.save(model, staging)
        example_file = None
        if input_example is not None:
            example_file = _write_input_example(staging / INPUT_EXAMPLE_NAME, input_example)
            if signature is None:
                signature = _infer(module, model, input_example, saved.metadata)
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            flavor=name,
            framework=saved.framework,
            framework_version=saved.framework_version,
            python_version=platform.python_version(),
            loopml_version=_loopml_version(),
            requirements=tuple(requirements) if requirements is not None else saved.requirements,
            signature=signature,
            input_example=example_file,
            files=_digest_tree(staging),
            lineage=lineage,
            created_time=int(time.time() * 1000),
            metadata={**saved.metadata, **(metadata or {})},
        )
        (staging / MANIFEST_NAME).write_bytes(_manifest_bytes(manifest))
        if directory.exists():
            directory.rmdir()
        os.rename(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def manifest_digest(directory: Path) -> str:
    """The sha256 (hex) of the package's manifest bytes: the package's identity."""
    return hashlib.sha256(_read_manifest_bytes(Path(directory))).hexdigest()


def read_manifest(directory: Path) -> Manifest:
    """Parse the package's manifest without verifying the files (see :func:`verify_package`)."""
    return _parse_manifest(_read_manifest_bytes(Path(directory)), Path(directory))


def verify_package(directory: Path) -> Manifest:
    """Check that the package holds exactly the files its manifest lists, unchanged.

    Raises :class:`~loopml.errors.IntegrityError` naming the file for a changed, missing or
    unlisted file, a symlink or any other non-regular entry.
    """
    directory = Path(directory)
    return _verify(directory, _read_manifest_bytes(directory))


def _verify(directory: Path, raw_manifest: bytes) -> Manifest:
    manifest = _parse_manifest(raw_manifest, directory)
    present: set[str] = set()
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for entry in sorted(dirs + files):
            path = Path(root) / entry
            rel = path.relative_to(directory).as_posix()
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                raise IntegrityError(f"model package entry '{rel}' is a symlink; not allowed")
            if stat.S_ISDIR(mode) or rel == MANIFEST_NAME:
                continue
            if not stat.S_ISREG(mode):
                raise IntegrityError(f"model package entry '{rel}' is not a regular file")
            if rel not in manifest.files:
                raise IntegrityError(
                    f"model package file '{rel}' is not listed in the manifest "
                    "(added after the package was logged)"
                )
            present.add(rel)
    for rel, recorded in sorted(manifest.files.items()):
        if rel not in present:
            raise IntegrityError(f"model package file '{rel}' listed in the manifest is missing")
        actual = file_sha256(directory / rel)
        if actual != recorded:
            raise IntegrityError(
                f"model package file '{rel}' was changed after it was logged "
                f"(sha256 {actual}, recorded {recorded})"
            )
    return manifest


def load_package(
    directory: Path, *, trust: bool = False, recorded_digest: str | None = None
) -> Predictor:
    """Verify the package, then load its model behind a :class:`Predictor`.

    ``recorded_digest``, when given, must equal :func:`manifest_digest`. Pickle-based packages
    also need ``trust=True`` *and* the recorded digest (see :mod:`loopml.models.trust`).
    """
    from loopml.models.flavors import get_flavor
    from loopml.models.predictor import Predictor

    directory = Path(directory)
    raw = _read_manifest_bytes(directory)  # digest and verify the very same bytes
    manifest = _verify(directory, raw)
    if recorded_digest is not None:
        actual = hashlib.sha256(raw).hexdigest()
        if actual != recorded_digest:
            raise IntegrityError(
                f"model package '{directory}' is not the one that was logged: manifest sha256 "
                f"{actual}, recorded {recorded_digest}"
            )
    module = get_flavor(manifest.flavor)
    model = module.load(directory, manifest, trust=trust, recorded_digest=recorded_digest)
    return Predictor(manifest, model)


def load_input_example(directory: Path, manifest: Manifest | None = None) -> Any:
    """The package's input example as a DataFrame or numpy array (``None`` if it has none)."""
    import numpy as np
    import pandas as pd

    manifest = manifest or read_manifest(directory)
    if manifest.input_example is None:
        return None
    doc = json.loads((Path(directory) / manifest.input_example).read_text("utf-8"))
    if doc.get("format") == "tensor":
        return np.array(doc["data"], dtype=doc["dtype"])
    return pd.DataFrame(doc["columns"])


def file_sha256(path: Path) -> str:
    """The sha256 (hex) of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _infer(module: Any, model: Any, example: Any, metadata: Mapping[str, Any]) -> Signature:
    signature = infer_signature(example)
    try:
        output = module.predict(model, signature.validate(example), metadata)
    except Exception as e:
        raise InvalidArgument(f"the model failed to predict on input_example: {e}") from e
    try:
        return infer_signature(example, output)
    except InvalidArgument:  # an output we cannot describe still leaves the inputs
        return signature


def _write_input_example(path: Path, example: Any) -> str:
    import numpy as np
    import pandas as pd

    from loopml.models.signature import _describe, _to_frame

    kind, _ = _describe(example, what="input_example")
    if kind == "tensor" and not isinstance(example, pd.Series):
        arr = np.asarray(example)
        doc: dict[str, Any] = {"format": "tensor", "dtype": arr.dtype.str, "data": arr.tolist()}
    else:
        frame = example.to_frame() if isinstance(example, pd.Series) else _to_frame(example)
        columns = {str(c): frame[c].astype(object).tolist() for c in frame.columns}
        doc = {"format": "columns", "columns": columns}
    path.write_text(json.dumps(_jsonable(doc), allow_nan=False), "utf-8")
    return path.name


def _jsonable(value: Any) -> Any:
    import datetime as dt
    import math

    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()  # numpy scalar
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if str(value) in ("NaT", "<NA>"):
        return None
    raise InvalidArgument(f"input_example holds a {type(value).__name__}, which JSON cannot hold")


def _digest_tree(root: Path) -> dict[str, str]:
    files: dict[str, str] = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            files[path.relative_to(root).as_posix()] = file_sha256(path)
    return dict(sorted(files.items()))


def _manifest_bytes(manifest: Manifest) -> bytes:
    import yaml

    return yaml.safe_dump(manifest.to_dict(), sort_keys=False, allow_unicode=True).encode()


def _read_manifest_bytes(directory: Path) -> bytes:
    path = directory / MANIFEST_NAME
    if path.is_symlink():
        raise IntegrityError(f"model package manifest '{path}' is a symlink; not allowed")
    if not path.is_file():
        raise NotFound(f"'{directory}' is not a loopml model package: {MANIFEST_NAME} is missing")
    return path.read_bytes()


def _parse_manifest(data: bytes, directory: Path) -> Manifest:
    import yaml

    try:
        doc = yaml.safe_load(data)
    except yaml.YAMLError as e:
        raise InvalidArgument(f"'{directory / MANIFEST_NAME}' is not valid YAML: {e}") from e
    return Manifest.from_dict(doc)


def _listed_path(rel: Any) -> str:
    from loopml.artifacts.paths import clean_relpath

    problem = "" if isinstance(rel, str) and rel != MANIFEST_NAME else "not a package file"
    if not problem:
        try:
            problem = "" if clean_relpath(rel) == rel else "not in normal form"
        except InvalidArgument as e:
            problem = e.message
    if problem:
        raise InvalidArgument(f"model manifest lists an invalid file path {rel!r}: {problem}")
    return str(rel)


def _checked_files(files: Any) -> dict[str, str]:
    if not isinstance(files, Mapping):
        raise InvalidArgument("model manifest 'files' must map paths to sha256 digests")
    out: dict[str, str] = {}
    for rel, digest in files.items():
        if not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= _HEX:
            raise InvalidArgument(f"model manifest: file {rel!r} has no valid sha256 digest")
        out[_listed_path(rel)] = digest
    return out


def _loopml_version() -> str:
    import loopml

    return str(loopml.__version__)
