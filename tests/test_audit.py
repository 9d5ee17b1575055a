"""The audit chain catches edited, removed and reordered events."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from loopml.tracking.entities import RunStatus, RunTag

ACTOR = "auditor-test"


@pytest.fixture
def chain(tracking_store, database):
    exp = tracking_store.create_experiment("audited", actor="alice")
    run = tracking_store.create_run(
        exp.experiment_id, run_name="r", user="alice", start_time=1, actor="alice"
    )
    tracking_store.log_batch(run.run_id, tags=[RunTag("a", "1")], actor="bob")
    tracking_store.update_run(run.run_id, status=RunStatus.FINISHED, actor="bob")
    tracking_store.delete_run(run.run_id, actor="carol")
    return database


def _exec(database, sql: str) -> None:
    with database.engine.begin() as c:
        c.execute(sa.text(sql))


def test_intact_chain_verifies(chain, audit_store):
    report = audit_store.verify()
    assert report.ok and report.events_checked == 5


def test_edited_change_is_caught(chain, audit_store):
    _exec(chain, 'UPDATE audit_events SET change = \'{"tags":{"a":"2"}}\' WHERE seq = 3')
    report = audit_store.verify()
    assert not report.ok and any("event 3" in p and "edited" in p for p in report.problems)


def test_edited_actor_is_caught(chain, audit_store):
    _exec(chain, "UPDATE audit_events SET actor = 'mallory' WHERE seq = 2")
    assert any("event 2: hash mismatch" in p for p in audit_store.verify().problems)


def test_removed_event_is_caught(chain, audit_store):
    _exec(chain, "DELETE FROM audit_events WHERE seq = 2")
    problems = audit_store.verify().problems
    assert any("expected sequence number 2" in p for p in problems)


def test_removed_last_event_is_caught(chain, audit_store):
    _exec(chain, "DELETE FROM audit_events WHERE seq = 5")
    assert any("head records event 5" in p for p in audit_store.verify().problems)


def test_reordered_events_are_caught(chain, audit_store):
    _exec(chain, "UPDATE audit_events SET seq = 100 WHERE seq = 3")
    _exec(chain, "UPDATE audit_events SET seq = 3 WHERE seq = 4")
    _exec(chain, "UPDATE audit_events SET seq = 4 WHERE seq = 100")
    assert any("reordered" in p for p in audit_store.verify().problems)


def test_filters(chain, audit_store):
    assert [e.actor for e in audit_store.list_events(actor="bob")] == ["bob", "bob"]
    assert [e.action for e in audit_store.list_events(object_type="experiment")] == [
        "experiment.create"
    ]
    events = audit_store.list_events()
    assert audit_store.list_events(since=events[-1].ts, until=events[-1].ts)[-1] == events[-1]
    assert len(audit_store.list_events(limit=2)) == 2
