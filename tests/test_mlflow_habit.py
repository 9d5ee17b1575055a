"""The MLflow habit on the Client: pages that are lists, ``search_runs`` as a DataFrame, and
MLflow's registry verbs (names, argument order, return types), embedded and over HTTP."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import loopml
from loopml.errors import InvalidArgument, NotFound
from loopml.registry.search import parse_registry_filter
from loopml.server.app import create_app
from loopml.server.identity import token_authenticator
from loopml.settings import Settings
from loopml.stack import Stack
from loopml.tracking.entities import Page, RunStatus, ViewType
from server_fixtures import uvicorn_server


@pytest.fixture
def fluent_home(tmp_path):
    loopml.configure(home=tmp_path / "home", user="alice")
    yield loopml.get_client()
    loopml.configure(home=tmp_path / "unused")


def _runs(n: int, experiment: str = "habit") -> list[str]:
    loopml.set_experiment(experiment)
    ids = []
    for i in range(n):
        with loopml.start_run(run_name=f"r{i}") as run:
            loopml.log_param("i", i)
            loopml.log_metric("acc", i / 10)
            if i % 2 == 0:
                loopml.log_metric("even", 1.0)
            loopml.set_tag("team", "risk")
        ids.append(run.run_id)
    return ids


# -- Client.search_runs: a list with a next_page_token -----------------------------------------


def test_search_runs_pages_are_lists_with_a_token(fluent_home):
    client = fluent_home
    ids = _runs(5)
    exp = client.get_experiment_by_name("habit").experiment_id
    page = client.search_runs(exp, order_by=["metrics.acc DESC"], max_results=2)
    assert isinstance(page, list) and len(page) == 2
    assert [run.run_id for run in page] == [ids[4], ids[3]]
    assert page[0].run_id == ids[4] and page[-1].run_id == ids[3]
    assert page.items == page and page.next_page_token is not None
    seen = list(page)
    while page.next_page_token:
        page = client.search_runs(exp, order_by=["metrics.acc DESC"], max_results=2,
                                  page_token=page.next_page_token)  # fmt: skip
        seen += page
    assert [r.run_id for r in seen] == ids[::-1] and page.next_page_token is None
    again = pickle.loads(pickle.dumps(Page(seen[:2], "t")))
    assert again == seen[:2] and again.next_page_token == "t"


# -- loopml.search_runs: a DataFrame with MLflow's columns ----------------------------------------


def test_fluent_search_runs_returns_mlflows_dataframe(fluent_home):
    ids = _runs(3)
    frame = loopml.search_runs(order_by=["metrics.acc DESC"])
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == [
        "run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time",
        "metrics.acc", "metrics.even", "params.i", "tags.team",
    ]  # fmt: skip
    assert list(frame["run_id"]) == ids[::-1]
    assert set(frame["status"]) == {"FINISHED"}
    assert str(frame["start_time"].dt.tz) == "UTC" and str(frame["end_time"].dt.tz) == "UTC"
    run = fluent_home.get_run(ids[0])
    last = frame.iloc[-1]
    assert last["start_time"] == pd.Timestamp(run.start_time, unit="ms", tz="UTC")
    assert last["artifact_uri"].endswith(run.artifact_path)
    assert list(frame["metrics.acc"]) == [0.2, 0.1, 0.0]
    assert frame["metrics.even"].isna().tolist() == [False, True, False]
    assert list(frame["params.i"]) == ["2", "1", "0"] and set(frame["tags.team"]) == {"risk"}


def test_fluent_search_runs_speaks_mlflows_signature(fluent_home):
    ids = _runs(2, "one")
    other = _runs(1, "two")
    runs = loopml.search_runs(output_format="list", experiment_names=["one"])
    assert sorted(r.run_id for r in runs) == sorted(ids)
    assert len(loopml.search_runs(experiment_names=["one", "missing"])) == 2
    assert len(loopml.search_runs(experiment_names=["missing"])) == 0
    assert len(loopml.search_runs(search_all_experiments=True)) == 3
    assert len(loopml.search_runs(search_all_experiments=True, max_results=2)) == 2
    only = loopml.search_runs(search_all_experiments=True, filter_string="params.i = '0'")
    assert sorted(only["run_id"]) == sorted([ids[0], other[0]])
    fluent_home.delete_run(ids[1])
    assert len(loopml.search_runs(experiment_names=["one"])) == 1
    assert len(loopml.search_runs(experiment_names=["one"], run_view_type=3)) == 2
    deleted = loopml.search_runs(experiment_names=["one"], run_view_type=ViewType.DELETED_ONLY)
    assert list(deleted["run_id"]) == [ids[1]]
    exp = fluent_home.get_experiment_by_name("one").experiment_id
    assert len(loopml.search_runs([exp], output_format="list")) == 1
    assert len(loopml.search_runs(experiment_ids=[], filter_string="")) == 1  # the current one
    empty = loopml.search_runs(filter_string="metrics.acc > 5")
    assert len(empty) == 0 and "run_id" in empty.columns


@pytest.mark.parametrize(
    "kwargs",
    [
        {"output_format": "json"},
        {"experiment_ids": ["0"], "experiment_names": ["one"]},
        {"experiment_names": "one"},
        {"run_view_type": 7},
        {"max_results": 0},
        {"filter_string": "metrics.acc >"},
    ],
)
def test_fluent_search_runs_refuses_what_mlflow_refuses(fluent_home, kwargs):
    with pytest.raises(InvalidArgument):
        loopml.search_runs(**kwargs)


# -- MLflow's documented registry workflow ---------------------------------------------------


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    """A platform server with auth on and an admin token (the token's user is the actor)."""
    stack = Stack.from_settings(Settings(home=tmp_path_factory.mktemp("habit-server")))
    assert stack.identity is not None
    admin = stack.identity.create_first_admin("root", "correct horse battery", actor="setup")
    token = stack.identity.create_token(admin, "t", actor="setup")[1]
    with uvicorn_server(create_app(stack, authenticate=token_authenticator(stack))) as url:
        yield url, token, stack
    stack.close()


@pytest.fixture(params=["embedded", "http"])
def mlflow_like(request, tmp_path):
    """The fluent API and a Client on one store; the actor the store records for changes."""
    if request.param == "embedded":
        settings = Settings(home=tmp_path / "home", user="alice")
        stack, actor = None, "alice"
    else:
        url, token, stack = request.getfixturevalue("live_server")
        # The settings name another user: over HTTP only the token decides who acts.
        settings = Settings(uri=url, token=token, user="mallory", home=tmp_path / "client")
        actor = "root"
    loopml.configure(settings)
    client = loopml.Client(settings)
    yield client, actor, stack or client.stack
    client.close()
    loopml.configure(home=tmp_path / "unused")


def test_mlflows_registry_workflow_runs_with_only_the_import_changed(mlflow_like, tmp_path):
    """MLflow's "Model Registry" client workflow: the calls as its documentation writes them,
    with ``MlflowClient`` imported from loopml (models are logged with ``loopml.log_model``,
    where MLflow has one module per flavor)."""
    import loopml as mlflow
    from loopml import Client as MlflowClient

    client, actor, store = mlflow_like
    assert isinstance(client, MlflowClient)
    name = f"sk-learn-random-forest-reg-model-{tmp_path.name[-8:]}"
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    with mlflow.start_run() as run:
        model = LogisticRegression().fit(x, [0, 0, 1, 1])
        info = mlflow.log_model(model, "sklearn-model", input_example=x[:2])
    run_id = run.info.run_id

    created = client.create_registered_model(name)
    assert created.name == name and created.latest_versions == () and created.description == ""
    result = client.create_model_version(
        name=name, source=f"runs:/{run_id}/sklearn-model", run_id=run_id
    )
    assert (result.name, result.version, result.run_id) == (name, 1, run_id)
    assert result.source == info.model_uri and result.current_stage == "candidate"
    assert result.creation_timestamp > 0 and result.aliases == ()
    # MLflow's other source form: the run's artifact location of the model.
    second = client.create_model_version(
        name, f"mlruns/0/{run_id}/artifacts/sklearn-model", run_id, tags={"k": "v"},
        description="same package, again",
    )  # fmt: skip
    assert second.version == 2 and second.tags == {"k": "v"} and second.source == info.model_uri

    updated = client.update_registered_model(
        name=name, description="This sentiment analysis model classifies the tone."
    )
    assert updated.description == "This sentiment analysis model classifies the tone."
    version = client.update_model_version(
        name=name, version=1, description="A scikit-learn model of 100 decision trees"
    )
    assert version.description == "A scikit-learn model of 100 decision trees"
    assert client.get_model_version(name, "1").description == version.description

    client.set_registered_model_alias(name, "champion", 1)
    champion = client.get_model_version_by_alias(name, "champion")
    assert champion.version == 1 and champion.aliases == ("champion",)
    assert client.get_registered_model(name).aliases == {"champion": 1}
    predictor = mlflow.load_model(f"models:/{name}@champion")
    assert list(predictor.predict(x)) == list(model.predict(x))

    client.set_registered_model_tag(name, "task", "classification")
    client.set_model_version_tag(name, "1", "validation_status", "approved")
    assert client.get_registered_model(name).tags == {"task": "classification"}
    assert client.get_model_version(name, 1).tags == {"validation_status": "approved"}

    found = [rm.name for rm in client.search_registered_models(f"name = '{name}'")]
    assert found == [name]
    assert name in [rm.name for rm in client.search_registered_models("name LIKE 'sk-learn%'")]
    versions = client.search_model_versions(f"name='{name}'")
    assert [mv.version for mv in versions] == [2, 1]
    assert [mv.aliases for mv in versions] == [(), ("champion",)]
    by_run = client.search_model_versions(f"run_id = '{run_id}'")
    assert sorted(mv.version for mv in by_run) == [1, 2]

    latest = client.get_latest_versions(name, stages=["None"])
    assert [(mv.version, mv.current_stage) for mv in latest] == [(2, "candidate")]
    model_record = client.get_registered_model(name)
    assert [mv.version for mv in model_record.latest_versions] == [2]
    assert model_record.creation_timestamp > 0

    client.delete_registered_model_alias(name, "champion")
    with pytest.raises(NotFound):
        client.get_model_version_by_alias(name, "champion")
    assert client.get_model_version(name, 1).aliases == ()

    # The actor is the caller's: the settings' user embedded, the token's user over HTTP.
    events = store.audit.list_events(object_type="model", object_id=name)
    assert {e.actor for e in events} == {actor}
    assert "model_version.update" in {e.action for e in events}


def test_registry_verbs_refuse_bad_input_and_change_nothing(mlflow_like, tmp_path):
    client, _, _ = mlflow_like
    name = f"refusals-{tmp_path.name[-8:]}"
    with loopml.start_run() as run:
        loopml.log_model(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), "model")
    client.create_registered_model(name, tags={"a": "1"}, description="d")
    with loopml.start_run() as unrelated:  # a run whose id is not the source's
        pass
    for args in [
        (name, f"runs:/{run.info.run_id}/model", unrelated.info.run_id),
        (name, "s3://bucket/model", run.info.run_id),
        (name, "models:/elsewhere/1", None),
    ]:
        with pytest.raises(InvalidArgument):
            client.create_model_version(*args)
    with pytest.raises(NotFound):
        client.create_model_version(f"{name}-missing", f"runs:/{run.info.run_id}/model")
    for bad in ("0", "-1", "one", 1.5, True):
        with pytest.raises(InvalidArgument):
            client.get_model_version(name, bad)
    with pytest.raises(InvalidArgument):
        client.get_latest_versions(name, stages="None")
    with pytest.raises(InvalidArgument):
        client.get_latest_versions(name, stages=["Staging"])
    with pytest.raises(NotFound):
        client.delete_registered_model_tag(name, "nope")
    for bad_filter in ("name = 'x' OR name = 'y'", "name IN ('x')", "owner = 'me'", "name = x"):
        with pytest.raises(InvalidArgument):
            client.search_registered_models(bad_filter)
        with pytest.raises(InvalidArgument):
            client.search_model_versions(bad_filter)
    for bad_order in (["nme"], ["name SIDEWAYS"], "name"):
        with pytest.raises(InvalidArgument):
            client.search_registered_models(order_by=bad_order)
    with pytest.raises(InvalidArgument):
        client.search_registered_models(page_token="not-a-token")
    model = client.get_registered_model(name)
    assert (model.tags, model.description, model.latest_version) == ({"a": "1"}, "d", 0)


def test_registry_searches_page_and_order(mlflow_like, tmp_path):
    client, _, _ = mlflow_like
    prefix = f"paged-{tmp_path.name[-8:]}"
    names = [f"{prefix}-{i}" for i in range(5)]
    for n in names:
        client.create_registered_model(n, tags={"team": "risk" if n[-1] in "02" else "ops"})
    pages, token = [], None
    while True:
        page = client.search_registered_models(
            f"name LIKE '{prefix}-%'", max_results=2, order_by=["name DESC"], page_token=token
        )
        pages.append([m.name for m in page])
        token = page.next_page_token
        if token is None:
            break
    assert pages == [names[4:2:-1], names[2:0:-1], names[:1]]
    risk = client.search_registered_models(f"name LIKE '{prefix}%' AND tags.team = 'risk'")
    assert [m.name for m in risk] == [names[0], names[2]]
    shouty = client.search_registered_models(f"name ILIKE '{prefix.upper()}-_'")
    assert len(shouty) == 5
    assert len(client.search_model_versions(f"name = '{prefix}-0'")) == 0


# -- the filter parser ------------------------------------------------------------------------


def test_registry_filters_read_mlflows_forms():
    (c,) = parse_registry_filter("name='it''s'", ("name",))
    assert (c.key, c.op, c.value) == ("name", "=", "it's")
    clauses = parse_registry_filter(
        'name like "fraud%" and run_id != \'abc\' AND tags.`my tag` = "x"', ("name", "run_id")
    )
    assert [(c.key, c.op, c.value) for c in clauses] == [
        ("name", "LIKE", "fraud%"), ("run_id", "!=", "abc"), ("tags.my tag", "=", "x"),
    ]  # fmt: skip
    assert parse_registry_filter("  ", ("name",)) == () == parse_registry_filter(None, ("name",))
    for bad in ("name = 'x' and", "name == 'x'", "(name = 'x')", "name = 'x' name = 'y'"):
        with pytest.raises(InvalidArgument):
            parse_registry_filter(bad, ("name",))
    with pytest.raises(InvalidArgument):
        parse_registry_filter(3, ("name",))  # type: ignore[arg-type]


def test_finished_runs_say_so_in_the_frame(fluent_home):
    loopml.set_experiment("statuses")
    with pytest.raises(RuntimeError), loopml.start_run(run_name="a-failed"):
        raise RuntimeError("boom")
    active = loopml.start_run(run_name="b-running")
    try:
        frame = loopml.search_runs(order_by=["attributes.run_name ASC"])
        assert list(frame["status"]) == [RunStatus.FAILED.value, RunStatus.RUNNING.value]
        assert frame["end_time"].isna().tolist() == [False, True]
    finally:
        loopml.end_run()
    assert active.run_id in set(loopml.search_runs()["run_id"])
