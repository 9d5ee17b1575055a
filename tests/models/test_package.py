"""Model packages: save -> load round trips for every flavor, and tamper detection."""

from __future__ import annotations

import doctest
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from loopml.errors import IntegrityError, InvalidArgument, NotFound
from loopml.models import package as package_module
from loopml.models.flavors import detect_flavor
from loopml.models.package import (
    MANIFEST_NAME,
    Lineage,
    Manifest,
    load_input_example,
    load_package,
    manifest_digest,
    read_manifest,
    save_package,
    verify_package,
)
from loopml.models.signature import ColumnSpec, Signature
from model_fixtures import Doubler


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "amount": rng.random(120) * 100,
            "age": rng.integers(18, 90, 120),
            "country": rng.choice(["fr", "de", "es"], 120),
        }
    )


@pytest.fixture(scope="module")
def labels(frame: pd.DataFrame) -> np.ndarray:
    return ((frame["amount"] > 50) ^ (frame["age"] > 60)).astype(int).to_numpy()


@pytest.fixture(scope="module")
def numeric(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[["amount", "age"]].astype("float64")


def test_sklearn_pipeline_round_trip(tmp_path: Path, frame: pd.DataFrame, labels: np.ndarray):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    columns = ColumnTransformer(
        [("num", StandardScaler(), ["amount", "age"]), ("cat", OneHotEncoder(), ["country"])]
    )
    model = make_pipeline(columns, RandomForestClassifier(n_estimators=5, random_state=0))
    model.fit(frame, labels)
    lineage = Lineage(run_id="r1", datasets=({"name": "tx", "version": "3", "role": "train"},))
    manifest = save_package(model, tmp_path / "m", input_example=frame.head(3), lineage=lineage)

    assert manifest.flavor == "sklearn"
    assert manifest.metadata["serialization"] == "skops"
    assert set(manifest.files) == {"model.skops", "input_example.json"}
    assert manifest.lineage == lineage
    assert any(r.startswith("scikit-learn==") for r in manifest.requirements)
    assert [c.name for c in manifest.signature.inputs] == ["amount", "age", "country"]
    assert manifest.signature.outputs == (ColumnSpec(None, "int64", shape=(-1,)),)

    predictor = load_package(tmp_path / "m")
    np.testing.assert_allclose(predictor.predict(frame), model.predict(frame))
    np.testing.assert_allclose(predictor.predict_proba(frame), model.predict_proba(frame))
    records = frame.head(2).to_dict(orient="records")
    np.testing.assert_allclose(predictor.predict(records), model.predict(frame.head(2)))
    with pytest.raises(InvalidArgument, match="column 'age': expected int64"):
        predictor.predict({"amount": [1.0], "age": ["x"], "country": ["fr"]})
    pd.testing.assert_frame_equal(load_input_example(tmp_path / "m"), frame.head(3))


def test_sklearn_model_skops_cannot_hold_uses_cloudpickle(
    tmp_path: Path, numeric: pd.DataFrame, labels: np.ndarray
) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    model = make_pipeline(FunctionTransformer(lambda x: x / 100.0), LogisticRegression())
    model.fit(numeric, labels)
    manifest = save_package(model, tmp_path / "m", input_example=numeric.head(2))
    assert manifest.metadata["serialization"] == "cloudpickle"
    assert set(manifest.files) == {"model.pkl", "input_example.json"}

    digest = manifest_digest(tmp_path / "m")
    predictor = load_package(tmp_path / "m", trust=True, recorded_digest=digest)
    np.testing.assert_allclose(predictor.predict_proba(numeric), model.predict_proba(numeric))


def test_xgboost_classifier_round_trip(
    tmp_path: Path, numeric: pd.DataFrame, labels: np.ndarray
) -> None:
    import xgboost as xgb

    model = xgb.XGBClassifier(n_estimators=8, max_depth=3, n_jobs=1).fit(numeric, labels)
    manifest = save_package(model, tmp_path / "m", input_example=numeric.head(2))
    assert (manifest.flavor, manifest.metadata["model_class"]) == ("xgboost", "XGBClassifier")
    assert set(manifest.files) == {"model.ubj", "input_example.json"}

    predictor = load_package(tmp_path / "m")
    assert isinstance(predictor.model, xgb.XGBClassifier)
    np.testing.assert_allclose(predictor.predict(numeric), model.predict(numeric))
    np.testing.assert_allclose(predictor.predict_proba(numeric), model.predict_proba(numeric))


def test_xgboost_booster_round_trip(
    tmp_path: Path, numeric: pd.DataFrame, labels: np.ndarray
) -> None:
    import xgboost as xgb

    params = {"objective": "binary:logistic", "max_depth": 2, "nthread": 1}
    booster = xgb.train(params, xgb.DMatrix(numeric, label=labels), num_boost_round=4)
    save_package(booster, tmp_path / "m")
    predictor = load_package(tmp_path / "m")
    expected = booster.predict(xgb.DMatrix(numeric))
    np.testing.assert_allclose(predictor.predict(numeric), expected)
    np.testing.assert_allclose(predictor.predict_proba(numeric)[:, 1], expected)


def test_lightgbm_classifier_round_trip(
    tmp_path: Path, numeric: pd.DataFrame, labels: np.ndarray
) -> None:
    import lightgbm as lgb

    names = np.where(labels == 1, "fraud", "ok")
    model = lgb.LGBMClassifier(n_estimators=8, num_leaves=7, verbose=-1, n_jobs=1)
    model.fit(numeric, names)
    manifest = save_package(model, tmp_path / "m", input_example=numeric.head(2))
    assert manifest.flavor == "lightgbm"
    assert manifest.metadata["classes"] == ["fraud", "ok"]
    assert manifest.signature.outputs[0].dtype == "string"

    predictor = load_package(tmp_path / "m")
    assert isinstance(predictor.model, lgb.Booster)
    np.testing.assert_array_equal(predictor.predict(numeric), model.predict(numeric))
    np.testing.assert_allclose(predictor.predict_proba(numeric), model.predict_proba(numeric))


def test_lightgbm_multiclass_round_trip(tmp_path: Path, numeric: pd.DataFrame) -> None:
    import lightgbm as lgb

    classes = np.array([3, 5, 7])[np.arange(len(numeric)) % 3]
    model = lgb.LGBMClassifier(n_estimators=4, verbose=-1, n_jobs=1).fit(numeric, classes)
    save_package(model, tmp_path / "m")
    predictor = load_package(tmp_path / "m")
    np.testing.assert_array_equal(predictor.predict(numeric), model.predict(numeric))
    np.testing.assert_allclose(predictor.predict_proba(numeric), model.predict_proba(numeric))


def test_onnx_round_trip(tmp_path: Path, numeric: pd.DataFrame, labels: np.ndarray) -> None:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    features = numeric.to_numpy(dtype=np.float32)
    model = LogisticRegression().fit(features, labels)
    proto = to_onnx(model, features[:1], options={"zipmap": False}, target_opset=17)
    manifest = save_package(proto, tmp_path / "m", input_example=features[:3])
    assert manifest.flavor == "onnx"
    assert manifest.signature.inputs == (ColumnSpec(None, "float32", shape=(-1, 2)),)

    predictor = load_package(tmp_path / "m")
    np.testing.assert_array_equal(predictor.predict(features), model.predict(features))
    np.testing.assert_allclose(
        predictor.predict_proba(features), model.predict_proba(features), rtol=1e-4, atol=1e-6
    )
    # JSON callers send float64 lists; the signature casts them to the model's float32
    np.testing.assert_array_equal(
        predictor.predict(features[:2].astype(float).tolist()), model.predict(features[:2])
    )


def test_onnx_from_bytes_and_invalid_bytes(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="not a valid ONNX model"):
        save_package(b"not onnx at all", tmp_path / "bad", flavor="onnx")
    assert list(tmp_path.iterdir()) == []


def test_python_flavor_round_trip(tmp_path: Path) -> None:
    data = np.arange(6, dtype=float).reshape(3, 2)
    manifest = save_package(Doubler(), tmp_path / "m", input_example=data)
    assert manifest.flavor == "python"
    predictor = load_package(
        tmp_path / "m", trust=True, recorded_digest=manifest_digest(tmp_path / "m")
    )
    np.testing.assert_allclose(predictor.predict(data), data * 2)
    with pytest.raises(InvalidArgument, match="does not predict probabilities"):
        predictor.predict_proba(data)


def test_detect_flavor() -> None:
    from sklearn.linear_model import LinearRegression

    assert detect_flavor(LinearRegression()) == "sklearn"
    assert detect_flavor(Doubler()) == "python"
    assert detect_flavor(b"\x08") == "onnx"
    with pytest.raises(InvalidArgument, match="cannot tell the flavor of a object"):
        detect_flavor(object())


def test_save_refuses_non_empty_directory_and_leaves_nothing_on_failure(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(InvalidArgument, match="is not empty"):
        save_package(Doubler(), tmp_path / "full")
    with pytest.raises(InvalidArgument, match="unknown model flavor 'torch'"):
        save_package(Doubler(), tmp_path / "new", flavor="torch")
    with pytest.raises(InvalidArgument, match="failed to predict on input_example"):
        save_package(Doubler(), tmp_path / "new", input_example={"a": ["text"]})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]
    (tmp_path / "empty").mkdir()
    save_package(Doubler(), tmp_path / "empty")
    assert (tmp_path / "empty" / MANIFEST_NAME).is_file()


def test_explicit_signature_requirements_metadata(tmp_path: Path) -> None:
    sig = Signature(inputs=(ColumnSpec(None, "float64", shape=(-1, 2)),), kind="tensor")
    manifest = save_package(
        Doubler(), tmp_path / "m", signature=sig, requirements=["numpy"], metadata={"team": "risk"}
    )
    loaded = read_manifest(tmp_path / "m")
    assert loaded == manifest
    assert loaded.signature == sig and loaded.requirements == ("numpy",)
    assert loaded.metadata == {
        "serialization": "cloudpickle",
        "model_class": "Doubler",
        "team": "risk",
    }
    assert Manifest.from_dict(manifest.to_dict()) == manifest


# -- tampering ----------------------------------------------------------------------------------


@pytest.fixture
def package(tmp_path: Path, numeric: pd.DataFrame, labels: np.ndarray) -> Path:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(numeric, labels)
    save_package(model, tmp_path / "pkg", input_example=numeric.head(2))
    (tmp_path / "pkg" / "extra").mkdir()  # subfolders are fine, listed files are what count
    return tmp_path / "pkg"


@pytest.mark.parametrize("name", ["model.skops", "input_example.json"])
def test_one_changed_byte_is_caught(package: Path, name: str) -> None:
    path = package / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    message = f"model package file '{name}' was changed after it was logged"
    with pytest.raises(IntegrityError, match=message):
        verify_package(package)
    with pytest.raises(IntegrityError, match=message):
        load_package(package)


def test_changed_manifest_is_caught_by_the_recorded_digest(package: Path) -> None:
    recorded = manifest_digest(package)
    path = package / MANIFEST_NAME
    path.write_text(path.read_text().replace("created_time: ", "created_time: 1"))
    verify_package(package)  # still self-consistent...
    with pytest.raises(IntegrityError, match="not the one that was logged"):
        load_package(package, recorded_digest=recorded)  # ...but not what was recorded


def test_added_file_is_caught(package: Path) -> None:
    (package / "extra" / "payload.py").write_text("print('hi')")
    with pytest.raises(IntegrityError, match=r"'extra/payload.py' is not listed in the manifest"):
        load_package(package)


def test_removed_file_is_caught(package: Path) -> None:
    (package / "input_example.json").unlink()
    with pytest.raises(
        IntegrityError, match=r"'input_example.json' listed in the manifest is missing"
    ):
        verify_package(package)


def test_symlinks_are_caught(package: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.skops"
    (package / "model.skops").rename(outside)
    os.symlink(outside, package / "model.skops")
    with pytest.raises(IntegrityError, match=r"'model.skops' is a symlink"):
        verify_package(package)


def test_symlinked_folder_is_caught(package: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", package / "linked")
    with pytest.raises(IntegrityError, match="'linked' is a symlink"):
        verify_package(package)


def test_manifest_cannot_list_paths_outside_the_package(package: Path) -> None:
    doc = yaml.safe_load((package / MANIFEST_NAME).read_text())
    doc["files"]["../outside"] = "0" * 64
    (package / MANIFEST_NAME).write_text(yaml.safe_dump(doc))
    with pytest.raises(InvalidArgument, match=r"invalid file path '../outside'"):
        verify_package(package)


def test_not_a_package(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="not a loopml model package"):
        load_package(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("format_version: 99\n")
    with pytest.raises(InvalidArgument, match="newer than this loopml reads"):
        load_package(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{ not yaml")
    with pytest.raises(InvalidArgument, match="is not valid YAML"):
        load_package(tmp_path)


def test_doctests() -> None:
    assert doctest.testmod(package_module).failed == 0


def test_flavor_doctests() -> None:
    from loopml.models import flavors

    assert doctest.testmod(flavors).failed == 0


def test_importing_the_models_package_stays_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, loopml.models.package, loopml.models.signature, loopml.models.predictor, "
        "loopml.models.trust, loopml.models.archive, loopml.models.refs, loopml.models.flavors\n"
        "heavy = ('numpy', 'pandas', 'sklearn', 'skops', 'cloudpickle', 'xgboost', 'lightgbm',"
        " 'onnx', 'onnxruntime', 'sqlalchemy', 'fastapi', 'httpx')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_lineage_entries() -> None:
    lineage = Lineage(run_id="r", datasets=({"name": "tx", "version": 3, "role": "train"},))
    assert lineage.datasets == ({"name": "tx", "version": "3", "role": "train"},)
    assert Lineage.from_dict(lineage.to_dict()) == lineage
    with pytest.raises(InvalidArgument, match="needs a 'name'"):
        Lineage(datasets=({"version": "1"},))
    with pytest.raises(InvalidArgument, match="map strings to strings"):
        Lineage(datasets=({"name": ["x"]},))
