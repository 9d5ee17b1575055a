"""LOOPML_URI=http://… makes the fluent API, the Client and the CLI work against a server,
unchanged; artifact locations cannot be chosen by a client."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import loopml
from loopml.cli.context import reset_client
from loopml.cli.main import app as cli
from loopml.server.app import create_app
from loopml.settings import Settings
from loopml.stack import Stack
from server_fixtures import uvicorn_server


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = Stack.from_settings(Settings(home=tmp_path_factory.mktemp("remote-server")))
    with uvicorn_server(create_app(server)) as url:
        yield url, server
    server.close()


def test_fluent_api_against_a_server(live, tmp_path, monkeypatch):
    url, server = live
    monkeypatch.chdir(tmp_path)
    loopml.configure(uri=url)
    try:
        loopml.set_experiment("remote-fluent")
        with loopml.start_run(run_name="over-http") as active:
            loopml.log_params({"lr": 0.1})
            for step in range(500):
                loopml.log_metric("loss", 1 / (step + 1), step=step)
            loopml.set_tag("where", "remote")
            loopml.log_text("hello over http", "notes/hello.txt")
            loopml.log_dict({"a": 1}, "cfg.json")
    finally:
        loopml.configure(home=tmp_path / "unused")
    # What the server's own store holds:
    run = server.tracking.get_run(active.run_id)
    assert run.status.value == "FINISHED" and run.params == {"lr": "0.1"}
    assert run.tags["where"] == "remote" and run.metrics["loss"] == pytest.approx(1 / 500)
    assert len(server.tracking.get_metric_history(active.run_id, "loss")) == 500
    records = {r.path: r for r in server.tracking.list_artifact_records(active.run_id)}
    assert set(records) == {"notes/hello.txt", "cfg.json"}
    digest = records["notes/hello.txt"].sha256
    path = f"{run.artifact_path}/notes/hello.txt"
    assert server.artifacts.get_bytes(path, expected_sha256=digest) == b"hello over http"


def test_cli_against_a_server(live, monkeypatch):
    url, server = live
    exp = server.tracking.create_experiment("remote-cli", actor="t")
    server.tracking.create_run(exp.experiment_id, run_name="seen-by-cli", user="u", start_time=1,
                               actor="t")  # fmt: skip
    monkeypatch.setenv("LOOPML_URI", url)
    reset_client()
    try:
        result = CliRunner().invoke(cli, ["runs", "ls", "-e", "remote-cli", "--json"])
    finally:
        reset_client()
    assert result.exit_code == 0, result.output
    assert [r["run_name"] for r in json.loads(result.stdout)["runs"]] == ["seen-by-cli"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/experiments", {"name": "x", "artifact_location": "file:///etc"}),
        ("/api/v1/experiments", {"name": "y", "artifact_path": "/etc"}),
        ("/api/v1/runs", {"experiment_id": "0", "artifact_uri": "file:///etc/passwd"}),
        ("/api/v1/runs", {"experiment_id": "0", "artifact_path": "../../.."}),
    ],
)
def test_clients_cannot_choose_artifact_locations(live, path, body):
    import httpx

    url, _ = live
    response = httpx.post(url + path, json=body)
    assert response.status_code == 400
    assert "extra" in response.json()["error"]["message"].lower()
