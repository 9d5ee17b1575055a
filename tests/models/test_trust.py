"""Pickle is loaded only through loopml.models.trust, only with trust and a recorded digest."""

from __future__ import annotations

import hashlib
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

import loopml
from loopml.errors import IntegrityError, PermissionDenied
from loopml.models.package import MANIFEST_NAME, load_package, manifest_digest, save_package
from loopml.models.trust import unpickle
from model_fixtures import Evil

MARKER_NAME = "pwned.txt"


class Benign:
    def predict(self, data: object) -> np.ndarray:
        return np.asarray(data, dtype=float) + 1


def _resign(directory: Path) -> None:
    """What an attacker who controls the whole package does: fix up the manifest digests."""
    doc = yaml.safe_load((directory / MANIFEST_NAME).read_text())
    for rel in doc["files"]:
        doc["files"][rel] = hashlib.sha256((directory / rel).read_bytes()).hexdigest()
    (directory / MANIFEST_NAME).write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / MARKER_NAME


@pytest.fixture
def evil_python_package(tmp_path: Path, marker: Path) -> Path:
    save_package(Evil(marker), tmp_path / "evil")
    assert not marker.exists()
    return tmp_path / "evil"


@pytest.fixture
def evil_sklearn_package(tmp_path: Path, marker: Path) -> Path:
    """A cloudpickle-backed sklearn package whose pickle was swapped for an evil one."""
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X = np.arange(8, dtype=float).reshape(4, 2)
    model = make_pipeline(FunctionTransformer(lambda x: x * 2), LinearRegression())
    manifest = save_package(model.fit(X, X[:, 0]), tmp_path / "sk")
    assert manifest.metadata["serialization"] == "cloudpickle"
    (tmp_path / "sk" / "model.pkl").write_bytes(pickle.dumps(Evil(marker)))
    _resign(tmp_path / "sk")
    return tmp_path / "sk"


@pytest.mark.parametrize("which", ["evil_python_package", "evil_sklearn_package"])
def test_untrusted_pickle_never_runs(request: pytest.FixtureRequest, which: str, marker: Path):
    package = request.getfixturevalue(which)
    digest = manifest_digest(package)
    with pytest.raises(PermissionDenied, match=r"refusing to unpickle 'model.pkl'.*trust is off"):
        load_package(package)
    with pytest.raises(PermissionDenied, match="trust is off"):
        load_package(package, recorded_digest=digest)  # recorded, but trust not given
    with pytest.raises(PermissionDenied, match="no digest was recorded"):
        load_package(package, trust=True)  # trusted, but of unknown origin
    with pytest.raises(IntegrityError, match="not the one that was logged"):
        load_package(package, trust=True, recorded_digest="0" * 64)
    assert not marker.exists()
    assert sorted(p.name for p in package.parent.iterdir()) == [package.name]


def test_trusted_recorded_benign_model_loads(tmp_path: Path) -> None:
    save_package(Benign(), tmp_path / "ok")
    predictor = load_package(
        tmp_path / "ok", trust=True, recorded_digest=manifest_digest(tmp_path / "ok")
    )
    np.testing.assert_allclose(predictor.predict([[1.0, 2.0]]), [[2.0, 3.0]])


def test_unpickle_itself_checks_trust_digest_and_bytes(tmp_path: Path, marker: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(Evil(marker)))
    refusals = [
        {"trust": False, "recorded_digest": "a", "actual_digest": "a"},
        {"trust": True, "recorded_digest": None, "actual_digest": "a"},
        {"trust": True, "recorded_digest": "b", "actual_digest": "a"},
    ]
    for kwargs in refusals:
        with pytest.raises(PermissionDenied, match="pickle can run arbitrary code") as info:
            unpickle(path, **kwargs)
        assert "LOOPML_TRUST_PICKLED_MODELS=1" in info.value.message
    with pytest.raises(IntegrityError, match=r"'model.pkl' was changed after it was logged"):
        unpickle(path, trust=True, recorded_digest="a", actual_digest="a", expected_sha256="0" * 64)
    assert not marker.exists()
    good = tmp_path / "good.pkl"
    good.write_bytes(pickle.dumps({"x": 1}))
    assert unpickle(good, trust=True, recorded_digest="a", actual_digest="a") == {"x": 1}


def test_skops_file_needing_untrusted_types_is_refused(tmp_path: Path, marker: Path) -> None:
    """A skops file that names a callable (here os.system) is refused before skops loads it."""
    import os

    import skops.io as sio
    from sklearn.linear_model import LinearRegression
    from sklearn.preprocessing import FunctionTransformer

    X = np.arange(8, dtype=float).reshape(4, 2)
    save_package(LinearRegression().fit(X, X[:, 0]), tmp_path / "sk")
    sio.dump(FunctionTransformer(func=os.system), tmp_path / "sk" / "model.skops")
    _resign(tmp_path / "sk")
    with pytest.raises(PermissionDenied, match=r"refusing to load 'model.skops'.*system"):
        load_package(tmp_path / "sk", trust=True, recorded_digest=manifest_digest(tmp_path / "sk"))


def test_trust_setting_exists() -> None:
    from loopml.settings import Settings

    assert Settings().trust_pickled_models is False


# -- the one choke point -----------------------------------------------------------------------

SRC = Path(loopml.__file__).parent
ALLOWED = SRC / "models" / "trust.py"
UNSAFE_LOADS = re.compile(
    r"""\b(?:c?pickle|cloudpickle|dill|joblib)\s*\.\s*(?:loads?|Unpickler)\b"""
    r"""|\btorch\s*\.\s*load\b|\bread_pickle\b|allow_pickle\s*=\s*True"""
    r"""|trusted\s*=\s*True"""
    r"""|\bfrom\s+(?:c?pickle|cloudpickle|dill|joblib)\s+import\s+[^\n]*\b(?:loads?|Unpickler)\b"""
)


def test_nothing_else_unpickles() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path == ALLOWED:
            continue
        text = path.read_text("utf-8")
        for match in UNSAFE_LOADS.finditer(text):  # on the whole text: calls may span lines
            number = text.count("\n", 0, match.start()) + 1
            offenders.append(f"{path.relative_to(SRC)}:{number}: {match.group(0)}")
    assert offenders == [], "unpickling outside loopml/models/trust.py:\n" + "\n".join(offenders)
    assert UNSAFE_LOADS.search(ALLOWED.read_text("utf-8"))  # the pattern does match the real one


@pytest.mark.parametrize(
    "line",
    [
        "obj = pickle.load(f)",
        "obj = pickle.loads(b)",
        "obj = cloudpickle.load(f)",
        "m = joblib.load(path)",
        "m = sio.load(path, trusted=True)",
        "from pickle import loads",
        "np.load(p, allow_pickle=True)",
        "pd.read_pickle(p)",
        "m = sio.load(\n    path,\n    trusted=True,\n)",
        "pickle.Unpickler(f).load()",
    ],
)
def test_the_grep_catches(line: str) -> None:
    assert UNSAFE_LOADS.search(line)
