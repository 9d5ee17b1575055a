"""The loopml CLI: listings with --json, clean one-line errors, every command group."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import loopml
from loopml.cli.context import reset_client
from loopml.cli.main import app


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LOOPML_URI", raising=False)
    monkeypatch.delenv("LOOPML_ARTIFACTS", raising=False)
    reset_client()
    yield tmp_path / "home"
    reset_client()


@pytest.fixture
def seeded(home, tmp_path):
    """Three finished runs with params, metrics, a tag and an artifact."""
    client = loopml.Client(loopml.Settings(home=home))
    exp = client.create_experiment("cli-exp")
    run_ids = []
    for i in range(3):
        run = client.create_run(exp.experiment_id, run_name=f"run-{i}")
        client.log_params(run.run_id, {"model": "rf" if i else "gbm", "depth": i})
        client.log_metric(run.run_id, "acc", 0.5 + i / 10)
        client.set_tag(run.run_id, "team", "risk")
        client.log_text(run.run_id, f"report {i}", "reports/summary.txt")
        client.set_terminated(run.run_id)
        run_ids.append(run.run_id)
    client.close()
    return run_ids


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def json_out(*args: str):
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_runs_ls_search_show_compare(seeded):
    listed = json_out("runs", "ls", "--experiment", "cli-exp")
    assert [r["run_name"] for r in listed["runs"]] == ["run-2", "run-1", "run-0"]
    found = json_out(
        "runs", "search", "params.model = 'rf' and metrics.acc > 0.55", "-e", "cli-exp"
    )
    assert [r["run_name"] for r in found["runs"]] == ["run-2", "run-1"]
    ordered = json_out("runs", "ls", "-e", "cli-exp", "--order-by", "metrics.acc ASC", "-n", "2")
    assert [r["run_name"] for r in ordered["runs"]] == ["run-0", "run-1"]
    assert ordered["next_page_token"]
    shown = json_out("runs", "show", seeded[0][:8])  # a unique prefix is enough
    assert shown["run"]["params"] == {"model": "gbm", "depth": "0"}
    assert shown["artifacts"][0]["path"] == "reports/summary.txt"
    compared = json_out("runs", "compare", seeded[0], seeded[1])
    assert compared[seeded[1]]["metrics"] == {"acc": 0.6}
    table = invoke("runs", "compare", seeded[0], seeded[1])
    assert table.exit_code == 0 and "params.model" in table.stdout


def test_runs_delete_and_restore(seeded):
    assert invoke("runs", "delete", seeded[0]).exit_code == 0
    assert len(json_out("runs", "ls", "-e", "cli-exp")["runs"]) == 2
    assert len(json_out("runs", "ls", "-e", "cli-exp", "--deleted")["runs"]) == 1
    assert invoke("runs", "restore", seeded[0]).exit_code == 0
    assert len(json_out("runs", "ls", "-e", "cli-exp")["runs"]) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["runs", "search", "metrics.acc >", "-e", "cli-exp"], "position"),
        (["runs", "show", "0" * 32], "not found"),
        (["runs", "compare", "a"], "2 to 10"),
        (["runs", "show", "ffff0000"], "no run id starts with"),
        (["experiments", "show", "missing"], "not found"),
        (["projects", "add-kpi", "default", "k", "--metric", "m", "--target", "1",
          "--direction", "sideways"], "maximize"),
        (["artifacts", "get", "0" * 32, "x"], "not found"),
        (["audit", "ls", "--since", "yesterday"], "ISO"),
    ],
)  # fmt: skip
def test_errors_are_one_clean_line(seeded, args, message):
    result = invoke(*args)
    assert result.exit_code == 1
    assert message in result.stderr and "Traceback" not in result.output + result.stderr
    assert result.stderr.strip().startswith("error:")


def test_projects_and_kpis(home):
    assert invoke("projects", "create", "fraud", "--goal", "Stop fraud").exit_code == 0
    assert invoke("projects", "add-okr", "fraud", "Cut losses", "-k", "-20 %").exit_code == 0
    result = invoke(
        "projects", "add-kpi", "fraud", "caught", "--metric", "recall", "--target", "0.9"
    )
    assert result.exit_code == 0, result.output
    assert invoke("projects", "update-kpi", "fraud", "caught", "--target", "0.95").exit_code == 0
    project = json_out("projects", "show", "fraud")
    assert project["business_goal"] == "Stop fraud"
    assert project["kpis"][0]["target"] == 0.95 and project["okrs"][0]["key_results"] == ["-20 %"]
    assert [p["name"] for p in json_out("projects", "ls")] == ["default", "fraud"]
    assert invoke("experiments", "create", "e1", "--project", "fraud").exit_code == 0
    assert [e["name"] for e in json_out("experiments", "ls", "--project", "fraud")] == ["e1"]


def test_experiments_group(home):
    assert invoke("experiments", "create", "a").exit_code == 0
    assert invoke("experiments", "rename", "a", "b").exit_code == 0
    assert invoke("experiments", "delete", "b").exit_code == 0
    assert [e["name"] for e in json_out("experiments", "ls", "--deleted")] == ["b"]
    assert invoke("experiments", "restore", "b").exit_code == 0
    assert json_out("experiments", "show", "b")["lifecycle_stage"] == "active"


def test_artifacts_ls_and_get_verify_digests(seeded, tmp_path):
    entries = json_out("artifacts", "ls", seeded[1], "--recursive")
    assert entries[0]["path"] == "reports/summary.txt" and len(entries[0]["sha256"]) == 64
    out = tmp_path / "dl"
    result = invoke("artifacts", "get", seeded[1], "reports", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert (out / "reports" / "summary.txt").read_text() == "report 1"


def test_audit_ls_and_verify_catches_tampering(seeded, home):
    events = json_out("audit", "ls", "--type", "run", "--object", seeded[0])
    assert [e["action"] for e in events][:2] == ["run.create", "run.set_tags"]
    ok = invoke("audit", "verify")
    assert ok.exit_code == 0 and "intact" in ok.stdout
    with sqlite3.connect(home / "loopml.db") as db:
        db.execute("UPDATE audit_events SET actor = 'mallory' WHERE seq = 2")
    bad = invoke("audit", "verify")
    assert bad.exit_code == 1 and "event 2" in bad.stderr


def test_db_current_and_upgrade(home):
    from loopml.backends.sql.migrate import HEAD_REVISION

    empty = invoke("db", "current")
    assert empty.exit_code == 0 and "database: empty" in empty.stdout
    up = invoke("db", "upgrade")
    assert up.exit_code == 0 and HEAD_REVISION in up.stdout
    assert "up to date" in invoke("db", "current").stdout


def test_entry_point_runs_as_a_program(home):
    exe = Path(sys.executable).with_name("loopml")
    result = subprocess.run([str(exe), "version"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"loopml {loopml.__version__}"
    bad = subprocess.run([str(exe), "runs", "show", "nope"], capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr
