"""The audit listing filters by project in the database: a page of N for a project holds N of its
events, and paging back with ``before`` returns each of them exactly once (SQLite, PostgreSQL and
over HTTP, where an auditor sees only their projects' events)."""

from __future__ import annotations

import itertools

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from loopml.backends.sql.audit import append_event
from loopml.backends.sql.schema import deployments, registered_models
from loopml.governance.roles import Role
from loopml.server.app import create_app
from loopml.server.identity import token_authenticator
from loopml.settings import Settings
from loopml.stack import Stack
from loopml.tracking.entities import RunTag


def _event(database, object_type: str, object_id: str, action: str = "x.touch") -> None:
    def work(conn) -> None:
        append_event(conn, actor="setup", action=action, object_type=object_type,
                     object_id=object_id, change={})  # fmt: skip

    database.write(work)


def _row(database, table, **values) -> None:
    database.write(lambda conn: conn.execute(sa.insert(table).values(**values)))


def _fill(project_store, tracking_store, database) -> dict[str, set[int]]:
    """Events of projects a, b, c interleaved (with events of no project between them); returns
    the seqs that belong to each project, worked out from what was created, not by the store."""
    objects: dict[str, list[tuple[str, str]]] = {}
    for name in ("a", "b", "c"):
        pid = project_store.create_project(
            name, business_goal="", description="", owner="", actor="setup"
        ).project_id
        exp = tracking_store.create_experiment(f"exp-{name}", project=name, actor="setup")
        # model "m" in a and "m2" in b: "m2/1" must not pass as a version of "m"
        model = {"a": "m", "b": "m2", "c": "m-c"}[name]
        _row(database, registered_models, name=model, project_id=int(pid), created_time=1,
             updated_time=1)  # fmt: skip
        _row(database, deployments, name=f"d-{name}", project_id=int(pid), spec="{}", revision=1,
             created_by="s", created_time=1, updated_by="s", updated_time=1)  # fmt: skip
        objects[pid] = [("project", pid), ("experiment", exp.experiment_id), ("model", model),
                        ("model", f"{model}/1"), ("model", f"{model}/12"),
                        ("deployment", f"d-{name}")]  # fmt: skip
        for _ in range(6):
            run = tracking_store.create_run(exp.experiment_id, run_name=None, user="u",
                                            start_time=1, actor="setup")  # fmt: skip
            objects[pid].append(("run", run.run_id))
    owner = {obj: pid for pid, objs in objects.items() for obj in objs}
    rounds = itertools.zip_longest(*objects.values())
    for i, round_ in enumerate(itertools.chain.from_iterable(rounds)):
        if round_ is not None:
            _event(database, *round_)
            if i % 3 == 0:
                _event(database, "user", "42", action="user.create")  # belongs to no project
            if round_[0] == "run" and i % 2:
                tracking_store.log_batch(round_[1], tags=[RunTag("k", str(i))], actor="bob")
    expected: dict[str, set[int]] = {pid: set() for pid in objects}
    for event in _all(database):
        pid = owner.get((event.object_type, event.object_id))
        if pid is None and event.object_type == "project":
            pid = event.object_id  # the project's own creation
        if pid is not None:
            expected[pid].add(event.seq)
    return expected


def _all(database):
    from loopml.backends.sql.audit import SqlAuditStore

    return SqlAuditStore(database).list_events(limit=100_000)


def _walk(list_events, page_size: int, **filters) -> list[int]:
    """Page back from the newest event; every page but the last must be full."""
    seen: list[int] = []
    before = None
    while True:
        page = list_events(limit=page_size, before=before, **filters)
        assert [e.seq for e in page] == sorted(e.seq for e in page)  # oldest first
        seen.extend(e.seq for e in page)
        if len(page) < page_size:
            return seen
        before = page[0].seq


def test_a_page_for_a_project_is_full_and_paging_returns_each_event_once(
    project_store, tracking_store, audit_store, database
):
    expected = _fill(project_store, tracking_store, database)
    total = len(_all(database))
    a, b, _c = sorted(expected)
    assert len(expected[a]) > 20 and total > 3 * len(expected[a])
    page = audit_store.list_events(projects=[a], limit=7)
    assert len(page) == 7 and {e.seq for e in page} <= expected[a]
    assert page == audit_store.list_events(limit=7, projects=[a], before=None)
    for size in (1, 7, 10, 1000):
        seen = _walk(audit_store.list_events, size, projects=[a])
        assert sorted(seen) == sorted(expected[a]) and len(seen) == len(set(seen))
    both = _walk(audit_store.list_events, 5, projects=[a, b])
    assert sorted(both) == sorted(expected[a] | expected[b])
    assert audit_store.list_events(projects=[]) == []
    assert audit_store.list_events(projects=["no-such"]) == []
    model_events = audit_store.list_events(projects=[a], object_type="model")
    assert {e.object_id for e in model_events} == {"m", "m/1", "m/12"}
    runs_only = _walk(audit_store.list_events, 4, projects=[a], action="run.create")
    assert len(runs_only) == 6
    assert len(_walk(audit_store.list_events, 9)) == total  # no filter: everything, once


@pytest.fixture
def server(tmp_path):
    stack = Stack.from_settings(Settings(home=tmp_path / "srv"))
    assert stack.identity is not None
    ident = stack.identity
    admin = ident.create_first_admin("root", "correct horse battery", actor="setup")
    auditor = ident.create_user("rita", None, is_service_account=True, actor="setup")
    tokens = {"root": ident.create_token(admin, "t", actor="setup")[1]}
    tokens["rita"] = ident.create_token(auditor, "t", actor="setup")[1]
    from loopml.backends.sql.engine import Database, make_engine

    database = Database(make_engine(stack.settings.resolved_uri()))
    expected = _fill(stack.projects, stack.tracking, database)
    database.dispose()
    a = stack.projects.get_project("a").project_id
    b = stack.projects.get_project("b").project_id
    ident.grant(auditor, "a", Role.RISK_MANAGER, actor="setup")
    [grant] = stack.audit.list_events(action="membership.grant")
    expected[a].add(grant.seq)  # the grant is an event of project a too
    app = create_app(stack, authenticate=token_authenticator(stack))
    with TestClient(app, base_url="http://localhost") as http:
        yield http, tokens, expected, a, b
    stack.close()


def test_an_auditor_pages_through_only_their_projects_events(server):
    http, tokens, expected, a, b = server

    def as_(who):
        def list_events(**params):
            params = {k: v for k, v in params.items() if v is not None}
            response = http.get("/api/v1/audit/events", params=params,
                                headers={"Authorization": f"Bearer {tokens[who]}"})  # fmt: skip
            assert response.status_code == 200, response.text
            from loopml.backends.http.decode import audit_event

            return [audit_event(d) for d in response.json()]

        return list_events

    rita = as_("rita")
    page = rita(limit=10)
    assert len(page) == 10 and {e.seq for e in page} <= expected[a]
    seen = _walk(rita, 10)
    assert sorted(seen) == sorted(expected[a]) and len(seen) == len(set(seen))
    assert rita(project=b) == []  # asking for another project shows nothing of it
    assert {e.seq for e in rita(project="a", limit=1000)} == expected[a]
    root = as_("root")
    assert sorted(_walk(root, 8, project=b)) == sorted(expected[b])
    assert len(_walk(root, 50)) > len(expected[a]) + len(expected[b])
