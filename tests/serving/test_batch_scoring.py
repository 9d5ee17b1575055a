"""Batch scoring: Parquet and CSV through the local executor and a local Ray, in order, equal
to the model on the whole frame; a failing chunk leaves no output; the CLI end to end."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import loopml
from loopml.cli.context import reset_client
from loopml.cli.main import app
from loopml.errors import InvalidArgument, NotFound
from loopml.execution import LocalExecutor
from loopml.serving.batch import (
    ChunkFailed,
    PackagePredictor,
    count_rows,
    prediction_columns,
    score_file,
)
from loopml.settings import Settings

ROWS = 30_000
CHUNK = 4_000
HAVE_RAY = importlib.util.find_spec("ray") is not None
NO_RAY = "'ray' is not installed (pip install 'loopml[ray]'); Ray tests skipped"
EXECUTORS = ["local", pytest.param("ray", marks=pytest.mark.skipif(not HAVE_RAY, reason=NO_RAY))]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A logged sklearn model and a 30,000-row frame (an id column the model does not use)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    tmp = tmp_path_factory.mktemp("batch")
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"id": np.arange(ROWS), "amount": rng.random(ROWS) * 100,
                          "age": rng.integers(18, 90, ROWS).astype("float64")})  # fmt: skip
    features = frame[["amount", "age"]]
    labels = ((frame["amount"] > 50) ^ (frame["age"] > 60)).astype(int)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(features, labels)
    client = loopml.Client(Settings(home=tmp / "home"))
    run = client.create_run(client.create_experiment("batch").experiment_id)
    info = client.log_model(run.run_id, model, "model", input_example=features.head())
    predictor = client.load_model(info.source)  # fills the model cache
    client.close()
    frame.to_parquet(tmp / "in.parquet", index=False)
    frame.to_csv(tmp / "in.csv", index=False)
    folder = tmp / "home" / "model-cache" / info.digest
    return {"tmp": tmp, "frame": frame, "expected": model.predict(features), "info": info,
            "predictor": predictor, "folder": folder}  # fmt: skip


@pytest.fixture(scope="module")
def ray_executor():
    from loopml.execution.ray_executor import RayExecutor

    ex = RayExecutor(num_cpus=2)
    yield ex
    ex.close()


def _setup(kind: str, world, request):
    if kind == "ray":
        ex = request.getfixturevalue("ray_executor")
        return PackagePredictor(str(world["folder"]), world["info"].digest), ex
    predictor = world["predictor"]
    return (lambda: predictor), LocalExecutor()


def _read(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


@pytest.mark.parametrize("kind", EXECUTORS)
@pytest.mark.parametrize(("source", "target"), [("in.parquet", "out.parquet"),
                                                ("in.csv", "out.csv"),
                                                ("in.csv", "out.parquet")])  # fmt: skip
def test_every_row_scored_in_order(kind, source, target, world, request, tmp_path):
    factory, ex = _setup(kind, world, request)
    done: list[int] = []
    out = tmp_path / target
    result = score_file(factory, world["tmp"] / source, out, chunk_rows=CHUNK, executor=ex,
                        progress=done.append)  # fmt: skip
    assert (result.rows, result.chunks) == (ROWS, 8) and sum(done) == ROWS
    scored = _read(out)
    assert list(scored.columns) == ["id", "amount", "age", "prediction"]
    assert scored["id"].tolist() == list(range(ROWS))
    np.testing.assert_array_equal(scored["prediction"].to_numpy(), world["expected"])
    np.testing.assert_allclose(scored["amount"].to_numpy(), world["frame"]["amount"].to_numpy())
    assert sorted(p.name for p in tmp_path.iterdir()) == [target]  # no temporary file left


@pytest.mark.parametrize("kind", EXECUTORS)
def test_a_poisoned_row_fails_its_chunk_and_writes_nothing(kind, world, request, tmp_path):
    factory, ex = _setup(kind, world, request)
    poisoned = world["frame"].astype({"amount": object})
    poisoned.loc[25_000, "amount"] = "lots"
    source = tmp_path / "poisoned.csv"
    poisoned.to_csv(source, index=False)
    out = tmp_path / "out.parquet"
    with pytest.raises(ChunkFailed) as caught:
        score_file(factory, source, out, chunk_rows=CHUNK, executor=ex)
    message = caught.value.message
    assert "chunk 6 (rows 24000-27999)" in message and "amount" in message, message
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["poisoned.csv"]


def test_a_failure_keeps_an_earlier_output_intact(world, tmp_path):
    out = tmp_path / "out.csv"
    out.write_text("previous,complete\n1,2\n")
    with pytest.raises(ChunkFailed):
        score_file(_boom, world["tmp"] / "in.parquet", out, chunk_rows=CHUNK,
                   executor=LocalExecutor())  # fmt: skip
    assert out.read_text() == "previous,complete\n1,2\n"


def _boom():
    raise ValueError("model would not load")


def test_memory_holds_at_most_the_in_flight_chunks(world, tmp_path):
    class Watched(LocalExecutor):
        """Counts chunks read but not yet handed back."""

        peak = 0

        def map(self, fn, items):
            pulled = 0

            def counted():
                nonlocal pulled
                for item in items:
                    pulled += 1
                    yield item

            for done, result in enumerate(super().map(fn, counted()), start=1):
                Watched.peak = max(Watched.peak, pulled - done + 1)
                yield result

    predictor = world["predictor"]
    with Watched(workers=2, max_in_flight=2) as ex:
        score_file(lambda: predictor, world["tmp"] / "in.parquet", tmp_path / "o.parquet",
                   chunk_rows=1_000, executor=ex)  # fmt: skip
    assert 1 <= Watched.peak <= 2


def test_features_and_output_column(world, tmp_path):
    predictor = world["predictor"]
    out = tmp_path / "o.csv"
    score_file(lambda: predictor, world["tmp"] / "in.parquet", out, chunk_rows=10_000,
               executor=LocalExecutor(), columns=["amount", "age"],
               output_column="label")  # fmt: skip
    assert list(pd.read_csv(out, nrows=1).columns) == ["id", "amount", "age", "label"]
    with pytest.raises(ChunkFailed, match="already has"):
        score_file(lambda: predictor, world["tmp"] / "in.parquet", out, chunk_rows=10_000,
                   executor=LocalExecutor(), output_column="age")  # fmt: skip
    with pytest.raises(ChunkFailed, match=r"columns \['nope'\] are not in the input"):
        score_file(lambda: predictor, world["tmp"] / "in.parquet", out, chunk_rows=10_000,
                   executor=LocalExecutor(), columns=["nope"])  # fmt: skip


def test_an_empty_input_gives_an_empty_output(world, tmp_path):
    source = tmp_path / "empty.parquet"
    world["frame"].head(0).to_parquet(source, index=False)
    predictor = world["predictor"]
    result = score_file(lambda: predictor, source, tmp_path / "o.csv", chunk_rows=100,
                        executor=LocalExecutor())  # fmt: skip
    assert (result.rows, result.chunks) == (0, 0)
    assert list(pd.read_csv(tmp_path / "o.csv").columns) == ["id", "amount", "age", "prediction"]
    assert count_rows(source) == 0 and count_rows(tmp_path / "o.csv") is None


def test_prediction_columns_for_multiple_outputs():
    names = lambda p: [n for n, _ in prediction_columns(p, 3, "y")]  # noqa: E731
    assert names(np.zeros(3)) == ["y"]
    assert names(np.zeros((3, 1))) == ["y"]
    assert names(np.zeros((3, 2))) == ["y_0", "y_1"]
    assert names(pd.DataFrame({"lo": [1, 2, 3], "hi": [4, 5, 6]})) == ["y_lo", "y_hi"]
    assert names({"score": np.zeros(3), "label": np.ones(3)}) == ["y_score", "y_label"]
    with pytest.raises(InvalidArgument, match="2 values for 3 rows"):
        prediction_columns(np.zeros(2), 3, "y")


def test_bad_paths_are_clear_errors(world, tmp_path):
    ex = LocalExecutor()
    with pytest.raises(InvalidArgument, match=r"use \.parquet or \.csv"):
        score_file(_boom, tmp_path / "in.json", tmp_path / "o.csv", executor=ex)
    with pytest.raises(NotFound, match="does not exist"):
        score_file(_boom, tmp_path / "missing.csv", tmp_path / "o.csv", executor=ex)
    with pytest.raises(NotFound, match="output folder"):
        score_file(_boom, world["tmp"] / "in.csv", tmp_path / "no" / "o.csv", executor=ex)
    with pytest.raises(InvalidArgument, match="overwrite the input"):
        score_file(_boom, world["tmp"] / "in.csv", world["tmp"] / "in.csv", executor=ex)


runner = CliRunner()


@pytest.fixture
def cli_home(world, monkeypatch):
    monkeypatch.chdir(world["tmp"])
    monkeypatch.setenv("LOOPML_HOME", str(world["tmp"] / "home"))
    reset_client()
    yield world
    reset_client()


@pytest.mark.parametrize("kind", EXECUTORS)
def test_cli_predict_end_to_end(kind, cli_home, request, tmp_path):
    if kind == "ray":
        request.getfixturevalue("ray_executor")  # share the module's cluster (not shut down)
    out = tmp_path / "scored.parquet"
    res = runner.invoke(app, ["predict", cli_home["info"].source, "in.csv", "-o", str(out),
                              "--chunk-rows", "7000", "--executor", kind])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert f"scored {ROWS:,} rows in 5 chunks" in res.output
    scored = pd.read_parquet(out)
    np.testing.assert_array_equal(scored["prediction"].to_numpy(), cli_home["expected"])


def test_cli_predict_errors_are_one_line(cli_home, tmp_path):
    source = cli_home["info"].source
    poisoned = cli_home["frame"].astype({"age": object})
    poisoned.loc[9_000, "age"] = "old"
    poisoned.to_csv(tmp_path / "bad.csv", index=False)
    cases = [
        ([source, "missing.parquet", "-o", str(tmp_path / "o.csv")], "does not exist"),
        ([source, "in.csv", "-o", str(tmp_path / "o.txt")], "use .parquet or .csv"),
        ([source, "in.xlsx", "-o", str(tmp_path / "o.csv")], "use .parquet or .csv"),
        ([source, "in.csv", "-o", str(tmp_path / "o.csv"), "--executor", "dask"], "dask"),
        (["models:/nothing/1", "in.csv", "-o", str(tmp_path / "o.csv")], "nothing"),
        ([source, str(tmp_path / "bad.csv"), "-o", str(tmp_path / "o.csv"), "--chunk-rows",
          "4000"], "chunk 2 (rows 8000-11999)"),
    ]  # fmt: skip
    for args, needle in cases:
        res = runner.invoke(app, ["predict", *args])
        assert res.exit_code == 1, (args, res.output)
        assert res.output.startswith("error:") and needle in res.output, res.output
        assert "Traceback" not in res.output
    assert not (tmp_path / "o.csv").exists()
