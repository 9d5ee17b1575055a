"""Contract suites for the metadata stores: every backend (SQLite, PostgreSQL, HTTP …) must pass.

Subclass in a test module and provide the fixtures ``tracking_store``, ``project_store`` and
``audit_store`` (all three over the same fresh, empty store)::

    class TestSqlite(TrackingStoreContract):
        @pytest.fixture
        def tracking_store(self, ...): ...
"""

from __future__ import annotations

import math
import time
import uuid

import pytest

from loopml.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from loopml.projects.entities import Direction, JudgedAt
from loopml.tracking.entities import (
    ArtifactRecord,
    Lifecycle,
    Metric,
    MetricColumns,
    Param,
    RunInput,
    RunStatus,
    RunTag,
    ViewType,
)

ACTOR = "contract-tester"


def _now() -> int:
    return int(time.time() * 1000)


def _name(prefix: str = "exp") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class TrackingStoreContract:
    # helpers -------------------------------------------------------------------------------
    def recorded_actor(self, actor: str) -> str:
        """The actor a store records for a call made as ``actor`` (a server records its caller)."""
        return actor

    def new_run(self, store, experiment_id: str | None = None, **kw):
        if experiment_id is None:
            experiment_id = store.create_experiment(_name(), actor=ACTOR).experiment_id
        kw.setdefault("run_name", None)
        kw.setdefault("user", "alice")
        kw.setdefault("start_time", _now())
        return store.create_run(experiment_id, actor=ACTOR, **kw)

    # experiments ---------------------------------------------------------------------------
    def test_default_experiment_exists(self, tracking_store):
        exp = tracking_store.get_experiment("0")
        assert exp.name == "Default"
        assert exp.lifecycle_stage is Lifecycle.ACTIVE

    def test_create_and_get_experiment(self, tracking_store):
        name = _name()
        exp = tracking_store.create_experiment(
            name, description="d", tags={"team": "risk"}, actor=ACTOR
        )
        assert exp.name == name and exp.description == "d" and exp.tags == {"team": "risk"}
        assert tracking_store.get_experiment(exp.experiment_id) == exp
        assert tracking_store.get_experiment_by_name(name) == exp
        assert tracking_store.get_experiment_by_name(_name()) is None

    def test_duplicate_experiment_name_is_refused(self, tracking_store):
        name = _name()
        tracking_store.create_experiment(name, actor=ACTOR)
        before = tracking_store.list_experiments(view=ViewType.ALL)
        with pytest.raises(AlreadyExists, match=name):
            tracking_store.create_experiment(name, actor=ACTOR)
        assert tracking_store.list_experiments(view=ViewType.ALL) == before

    @pytest.mark.parametrize("bad", ["", "   ", "x" * 300, "a\x00b"])
    def test_invalid_experiment_name(self, tracking_store, bad):
        with pytest.raises(InvalidArgument):
            tracking_store.create_experiment(bad, actor=ACTOR)

    def test_missing_experiment(self, tracking_store):
        with pytest.raises(NotFound):
            tracking_store.get_experiment("987654")
        with pytest.raises(NotFound):
            tracking_store.get_experiment("not-a-number")

    def test_delete_and_restore_experiment(self, tracking_store):
        exp = tracking_store.create_experiment(_name(), actor=ACTOR)
        tracking_store.delete_experiment(exp.experiment_id, actor=ACTOR)
        active = [e.experiment_id for e in tracking_store.list_experiments()]
        deleted = [
            e.experiment_id for e in tracking_store.list_experiments(view=ViewType.DELETED_ONLY)
        ]
        assert exp.experiment_id not in active and exp.experiment_id in deleted
        with pytest.raises(Conflict):
            tracking_store.delete_experiment(exp.experiment_id, actor=ACTOR)
        with pytest.raises(Conflict):
            self.new_run(tracking_store, exp.experiment_id)
        tracking_store.restore_experiment(exp.experiment_id, actor=ACTOR)
        assert tracking_store.get_experiment(exp.experiment_id).lifecycle_stage is Lifecycle.ACTIVE

    def test_default_experiment_cannot_be_deleted(self, tracking_store):
        with pytest.raises(InvalidArgument):
            tracking_store.delete_experiment("0", actor=ACTOR)

    def test_rename_and_tag_experiment(self, tracking_store):
        exp = tracking_store.create_experiment(_name(), actor=ACTOR)
        other = tracking_store.create_experiment(_name(), actor=ACTOR)
        new = _name("renamed")
        assert (
            tracking_store.update_experiment(exp.experiment_id, name=new, actor=ACTOR).name == new
        )
        with pytest.raises(AlreadyExists):
            tracking_store.update_experiment(exp.experiment_id, name=other.name, actor=ACTOR)
        tracking_store.set_experiment_tag(exp.experiment_id, "k", "v1", actor=ACTOR)
        tracking_store.set_experiment_tag(exp.experiment_id, "k", "v2", actor=ACTOR)
        assert tracking_store.get_experiment(exp.experiment_id).tags == {"k": "v2"}

    # runs ----------------------------------------------------------------------------------
    def test_create_run_records_its_context(self, tracking_store):
        t0 = _now()
        run = self.new_run(
            tracking_store,
            run_name="first",
            tags={"a": "1"},
            start_time=t0,
            source="/x/train.py",
            git_commit="abc123",
            git_dirty=True,
        )
        got = tracking_store.get_run(run.run_id)
        assert got.run_name == "first" and got.status is RunStatus.RUNNING
        assert got.start_time == t0 and got.end_time is None and got.user == "alice"
        assert got.tags == {"a": "1"} and got.source == "/x/train.py"
        assert got.git_commit == "abc123" and got.git_dirty is True
        assert got.artifact_path == f"{got.experiment_id}/{got.run_id}/artifacts"

    def test_run_gets_a_generated_name(self, tracking_store):
        assert self.new_run(tracking_store).run_name.count("-") == 2

    def test_nested_run_and_missing_parent(self, tracking_store):
        parent = self.new_run(tracking_store)
        child = self.new_run(tracking_store, parent.experiment_id, parent_run_id=parent.run_id)
        assert tracking_store.get_run(child.run_id).parent_run_id == parent.run_id
        with pytest.raises(NotFound):
            self.new_run(tracking_store, parent.experiment_id, parent_run_id="f" * 32)

    def test_update_run_status_and_usage(self, tracking_store):
        run = self.new_run(tracking_store)
        tracking_store.update_run(
            run.run_id,
            status=RunStatus.FAILED,
            end_time=run.start_time + 1500,
            cpu_seconds=1.25,
            peak_memory_bytes=123456,
            metrics=[Metric("final", 0.5, 1, 0)],
            actor=ACTOR,
        )
        ended = tracking_store.get_run(run.run_id)
        assert ended.metrics == {"final": 0.5}
        assert ended.status is RunStatus.FAILED and ended.wall_seconds == 1.5
        assert ended.cpu_seconds == 1.25 and ended.peak_memory_bytes == 123456

    def test_missing_run(self, tracking_store):
        with pytest.raises(NotFound):
            tracking_store.get_run("0" * 32)
        with pytest.raises(NotFound):
            tracking_store.log_batch("0" * 32, params=[Param("a", "1")], actor=ACTOR)

    def test_delete_and_restore_run(self, tracking_store):
        run = self.new_run(tracking_store)
        tracking_store.delete_run(run.run_id, actor=ACTOR)
        assert tracking_store.get_run(run.run_id).lifecycle_stage is Lifecycle.DELETED
        with pytest.raises(Conflict):
            tracking_store.log_batch(run.run_id, params=[Param("a", "1")], actor=ACTOR)
        page = tracking_store.search_runs([run.experiment_id])
        assert run.run_id not in [r.run_id for r in page.items]
        page = tracking_store.search_runs([run.experiment_id], view=ViewType.DELETED_ONLY)
        assert [r.run_id for r in page.items] == [run.run_id]
        tracking_store.restore_run(run.run_id, actor=ACTOR)
        assert tracking_store.get_run(run.run_id).lifecycle_stage is Lifecycle.ACTIVE

    # logging -------------------------------------------------------------------------------
    def test_params_are_immutable_and_batches_atomic(self, tracking_store):
        run = self.new_run(tracking_store)
        tracking_store.log_batch(run.run_id, params=[Param("lr", "0.1")], actor=ACTOR)
        tracking_store.log_batch(run.run_id, params=[Param("lr", "0.1")], actor=ACTOR)  # same ok
        with pytest.raises(Conflict, match="lr"):
            tracking_store.log_batch(
                run.run_id,
                metrics=[Metric("m", 1.0, _now(), 0)],
                params=[Param("depth", "3"), Param("lr", "0.2")],
                tags=[RunTag("t", "x")],
                actor=ACTOR,
            )
        got = tracking_store.get_run(run.run_id)
        assert got.params == {"lr": "0.1"} and got.metrics == {} and got.tags == {}

    def test_conflicting_params_in_one_batch(self, tracking_store):
        run = self.new_run(tracking_store)
        with pytest.raises(InvalidArgument):
            tracking_store.log_batch(
                run.run_id, params=[Param("a", "1"), Param("a", "2")], actor=ACTOR
            )

    @pytest.mark.parametrize("key", ["", "a" * 251, "bad\nkey", "../x", "/abs", "a$b"])
    def test_invalid_keys_are_refused(self, tracking_store, key):
        run = self.new_run(tracking_store)
        with pytest.raises(InvalidArgument):
            tracking_store.log_batch(run.run_id, params=[Param(key, "1")], actor=ACTOR)
        with pytest.raises(InvalidArgument):
            tracking_store.log_batch(run.run_id, tags=[RunTag(key, "1")], actor=ACTOR)

    def test_metric_history_and_latest_value(self, tracking_store):
        run = self.new_run(tracking_store)
        t = _now()
        batch = [Metric("loss", 0.5, t, 2), Metric("loss", 0.9, t, 0), Metric("loss", 0.7, t, 1)]
        tracking_store.log_batch(run.run_id, metrics=batch, actor=ACTOR)
        tracking_store.log_batch(run.run_id, metrics=[Metric("loss", 9.0, t, 1)], actor=ACTOR)
        history = tracking_store.get_metric_history(run.run_id, "loss")
        assert [(m.step, m.value) for m in history] == [(0, 0.9), (1, 0.7), (1, 9.0), (2, 0.5)]
        assert tracking_store.get_run(run.run_id).metrics == {"loss": 0.5}
        tracking_store.log_batch(run.run_id, metrics=[Metric("loss", 0.4, t + 1, 2)], actor=ACTOR)
        assert tracking_store.get_run(run.run_id).metrics == {"loss": 0.4}

    def test_columnar_batches_write_what_records_write(self, tracking_store):
        run = self.new_run(tracking_store)
        t = _now()
        keys, values = ["loss", "loss", "acc", "loss"], [0.5, math.nan, 0.8, 0.9]
        columns = MetricColumns(keys, values, [t, t, t, t + 1], [2, 0, 0, 2])
        tracking_store.log_batch(run.run_id, metrics=columns, actor=ACTOR)
        tracking_store.log_metrics_multi({run.run_id: columns[:1]})
        history = tracking_store.get_metric_history(run.run_id, "loss")
        assert [(m.step, m.timestamp) for m in history] == [(0, t), (2, t), (2, t), (2, t + 1)]
        assert math.isnan(history[0].value)
        assert tracking_store.get_run(run.run_id).metrics == {"loss": 0.9, "acc": 0.8}

    def test_nan_and_infinity_round_trip(self, tracking_store):
        run = self.new_run(tracking_store)
        t = _now()
        vals = [
            Metric("a", math.nan, t, 0),
            Metric("b", math.inf, t, 0),
            Metric("c", -math.inf, t, 0),
        ]
        tracking_store.log_batch(run.run_id, metrics=vals, actor=ACTOR)
        got = tracking_store.get_run(run.run_id).metrics
        assert math.isnan(got["a"]) and got["b"] == math.inf and got["c"] == -math.inf
        assert math.isnan(tracking_store.get_metric_history(run.run_id, "a")[0].value)

    def test_log_metrics_multi_writes_several_runs(self, tracking_store):
        r1, r2 = self.new_run(tracking_store), self.new_run(tracking_store)
        t = _now()
        tracking_store.log_metrics_multi(
            {
                r1.run_id: [Metric("m", float(i), t, i) for i in range(50)],
                r2.run_id: [Metric("m", 1.0, t, 0)],
            }
        )
        assert len(tracking_store.get_metric_history(r1.run_id, "m")) == 50
        assert tracking_store.get_run(r1.run_id).metrics == {"m": 49.0}
        assert tracking_store.get_run(r2.run_id).metrics == {"m": 1.0}

    def test_tags_overwrite_and_delete(self, tracking_store):
        run = self.new_run(tracking_store)
        tracking_store.log_batch(run.run_id, tags=[RunTag("a", "1")], actor=ACTOR)
        tracking_store.log_batch(run.run_id, tags=[RunTag("a", "2"), RunTag("b", "3")], actor=ACTOR)
        assert tracking_store.get_run(run.run_id).tags == {"a": "2", "b": "3"}
        tracking_store.delete_tag(run.run_id, "a", actor=ACTOR)
        assert tracking_store.get_run(run.run_id).tags == {"b": "3"}
        with pytest.raises(NotFound):
            tracking_store.delete_tag(run.run_id, "a", actor=ACTOR)

    def test_inputs(self, tracking_store):
        run = self.new_run(tracking_store)
        inputs = [
            RunInput("transactions", "d" * 64, "train"),
            RunInput("holdout", "e" * 64, "test"),
        ]
        tracking_store.log_inputs(run.run_id, inputs, actor=ACTOR)
        tracking_store.log_inputs(run.run_id, inputs[:1], actor=ACTOR)  # idempotent
        got = tracking_store.get_run(run.run_id).inputs
        assert sorted(got, key=lambda i: i.name) == sorted(inputs, key=lambda i: i.name)

    def test_artifact_records(self, tracking_store):
        run = self.new_run(tracking_store)
        recs = [ArtifactRecord("model/m.bin", 10, "a" * 64), ArtifactRecord("x.txt", 2, "b" * 64)]
        tracking_store.record_artifacts(run.run_id, recs)
        tracking_store.record_artifacts(run.run_id, [ArtifactRecord("x.txt", 3, "c" * 64)])
        got = tracking_store.list_artifact_records(run.run_id)
        assert got == [recs[0], ArtifactRecord("x.txt", 3, "c" * 64)]

    # search --------------------------------------------------------------------------------
    def _search_fixture(self, store):
        exp = store.create_experiment(_name("search"), actor=ACTOR).experiment_id
        runs = []
        for i in range(12):
            run = self.new_run(store, exp, run_name=f"run-{i:02d}", start_time=1_000_000 + i)
            metrics = [Metric("acc", i / 10, 1, 0)] if i != 5 else []
            if i % 4 == 0:
                metrics.append(Metric("loss", 1.0 - i / 20, 1, 0))
            store.log_batch(
                run.run_id,
                metrics=metrics,
                params=[Param("model", "rf" if i % 2 else "gbm"), Param("seed", str(i))],
                tags=[RunTag("team", "Risk" if i < 6 else "growth")],
                actor=ACTOR,
            )
            if i == 11:
                store.update_run(run.run_id, status=RunStatus.FAILED, actor=ACTOR)
            runs.append(run.run_id)
        return exp, runs

    def _names(self, page):
        return [r.run_name for r in page.items]

    def test_search_filters(self, tracking_store):
        exp, _ = self._search_fixture(tracking_store)

        def names(f, **kw):
            return sorted(self._names(tracking_store.search_runs([exp], filter_string=f, **kw)))

        assert names("metrics.acc > 0.85") == ["run-09", "run-10", "run-11"]
        assert names("metrics.acc >= 0.9 and params.model = 'rf'") == ["run-09", "run-11"]
        assert names("params.model = 'gbm' and tags.team != 'growth'") == [
            "run-00", "run-02", "run-04",
        ]  # fmt: skip
        assert names("attributes.status = 'FAILED'") == ["run-11"]
        assert names("metrics.acc IS NULL") == ["run-05"]
        assert names("metrics.loss IS NOT NULL") == ["run-00", "run-04", "run-08"]
        assert names("params.seed IN ('1', '2')") == ["run-01", "run-02"]
        assert names("tags.team LIKE 'R%'") == [f"run-{i:02d}" for i in range(6)]
        assert names("tags.team LIKE 'r%'") == []
        assert names("tags.team ILIKE 'r%'") == [f"run-{i:02d}" for i in range(6)]
        assert names("attributes.run_name LIKE 'run-0%' and metrics.acc < 0.3") == [
            "run-00", "run-01", "run-02",
        ]  # fmt: skip
        assert names("metrics.acc < 0.1 or params.seed = '7'") == ["run-00", "run-07"]
        assert names("not params.model = 'rf' and metrics.acc > 0.7") == ["run-08", "run-10"]

    def test_search_order_and_missing_values_last(self, tracking_store):
        exp, _ = self._search_fixture(tracking_store)
        page = tracking_store.search_runs([exp], order_by=["metrics.acc DESC"])
        assert self._names(page) == [f"run-{i:02d}" for i in (11, 10, 9, 8, 7, 6, 4, 3, 2, 1, 0, 5)]
        page = tracking_store.search_runs([exp], order_by=["metrics.acc ASC"])
        assert self._names(page)[:2] == ["run-00", "run-01"] and self._names(page)[-1] == "run-05"
        page = tracking_store.search_runs([exp])  # default: newest first
        assert self._names(page)[0] == "run-11" and self._names(page)[-1] == "run-00"
        page = tracking_store.search_runs([exp], order_by=["params.seed ASC"])
        assert self._names(page)[:3] == ["run-00", "run-01", "run-10"]  # string order
        page = tracking_store.search_runs([exp], order_by=["tags.team", "attributes.run_name DESC"])
        assert self._names(page)[:2] == ["run-05", "run-04"]

    def test_filter_and_order_on_metrics_together(self, tracking_store):
        exp, _ = self._search_fixture(tracking_store)
        page = tracking_store.search_runs(
            [exp],
            filter_string="metrics.acc > 0.25 and params.model = 'rf' and metrics.loss IS NULL",
            order_by=["metrics.acc DESC"],
        )
        assert self._names(page) == ["run-11", "run-09", "run-07", "run-03"]

    @pytest.mark.parametrize(
        ("order", "flt"),
        [(None, None), (["metrics.acc DESC"], None), (["metrics.loss ASC"], None),
         (["params.model", "metrics.acc DESC"], None), (["attributes.run_name"], None),
         (["tags.team DESC", "metrics.loss"], None),
         (["metrics.acc DESC"], "metrics.acc > 0.15 or metrics.acc IS NULL"),
         (["metrics.loss DESC"], "metrics.acc >= 0")],
    )  # fmt: skip
    def test_pagination_visits_every_run_once_in_order(self, tracking_store, order, flt):
        exp, run_ids = self._search_fixture(tracking_store)
        whole = tracking_store.search_runs(
            [exp], filter_string=flt, order_by=order, max_results=100
        )
        assert whole.next_page_token is None
        assert len(whole.items) == (len(run_ids) if flt is None else len(whole.items))
        assert whole.items
        seen, token = [], None
        for _ in range(20):
            page = tracking_store.search_runs(
                [exp], filter_string=flt, order_by=order, max_results=5, page_token=token
            )
            seen += [r.run_id for r in page.items]
            token = page.next_page_token
            if token is None:
                break
        assert seen == [r.run_id for r in whole.items]

    def test_page_token_of_another_search_is_refused(self, tracking_store):
        exp, _ = self._search_fixture(tracking_store)
        page = tracking_store.search_runs([exp], max_results=2)
        with pytest.raises(InvalidArgument, match="different search"):
            tracking_store.search_runs(
                [exp], filter_string="metrics.acc > 0", page_token=page.next_page_token
            )
        with pytest.raises(InvalidArgument):
            tracking_store.search_runs([exp], page_token="garbage!")  # noqa: S106

    @pytest.mark.parametrize(
        "bad",
        [
            "metrics.acc >",
            "metrics.acc = 'x'",
            "params.a > 1",
            "foo.bar = 1",
            "metrics.acc > 1 and",
        ],
    )
    def test_search_syntax_errors(self, tracking_store, bad):
        with pytest.raises(InvalidArgument):
            tracking_store.search_runs(["0"], filter_string=bad)

    def test_search_input_that_looks_like_sql_is_data(self, tracking_store):
        exp, _ = self._search_fixture(tracking_store)
        page = tracking_store.search_runs([exp], filter_string="params.model = 'rf'' OR ''1''=''1'")
        assert page.items == []
        assert len(tracking_store.search_runs([exp]).items) == 12

    def test_max_results_bounds(self, tracking_store):
        for bad in (0, -1, 50_001):
            with pytest.raises(InvalidArgument):
                tracking_store.search_runs(["0"], max_results=bad)

    # audit ---------------------------------------------------------------------------------
    def test_mutations_are_audited_in_a_valid_chain(self, tracking_store, audit_store):
        exp = tracking_store.create_experiment(_name(), actor="bob")
        run = self.new_run(tracking_store, exp.experiment_id)
        tracking_store.log_batch(run.run_id, tags=[RunTag("a", "1")], actor="bob")
        tracking_store.log_batch(run.run_id, metrics=[Metric("m", 1.0, 1, 0)], actor="bob")
        tracking_store.update_run(run.run_id, status=RunStatus.FINISHED, actor="bob")
        tracking_store.delete_run(run.run_id, actor="bob")
        actions = [e.action for e in audit_store.list_events(object_id=run.run_id)]
        assert actions == ["run.create", "run.set_tags", "run.update", "run.delete"]
        bobs = audit_store.list_events(actor=self.recorded_actor("bob"))
        assert exp.experiment_id in [e.object_id for e in bobs if e.action == "experiment.create"]
        report = audit_store.verify()
        assert report.ok, report.problems
        assert report.events_checked >= 5


class ProjectStoreContract:
    def test_default_project_exists(self, project_store):
        assert project_store.get_project("default").name == "default"

    def test_project_with_okrs_and_kpis(self, project_store, tracking_store):
        name = _name("fraud")
        p = project_store.create_project(
            name, business_goal="Stop fraud", description="", owner="sme", actor=ACTOR
        )
        assert p.business_goal == "Stop fraud" and p.kpis == () and p.okrs == ()
        okr = project_store.add_okr(
            name, "Cut fraud losses", ["losses -20%", "alerts < 1%"], owner="cfo", actor=ACTOR
        )
        assert okr.key_results == ("losses -20%", "alerts < 1%")
        kpi = project_store.add_kpi(
            name, "fraud caught", metric="recall", target=0.9, direction=Direction.MAXIMIZE,
            judged_at=JudgedAt.VALIDATION, description="", owner="sme", actor=ACTOR,
        )  # fmt: skip
        assert kpi.is_met(0.95) and not kpi.is_met(0.5)
        with pytest.raises(AlreadyExists):
            project_store.add_kpi(
                name, "fraud caught", metric="recall", target=0.8, direction=Direction.MAXIMIZE,
                judged_at=JudgedAt.VALIDATION, description="", owner="", actor=ACTOR,
            )  # fmt: skip
        updated = project_store.update_kpi(name, "fraud caught", target=0.92, actor=ACTOR)
        assert updated.target == 0.92
        got = project_store.get_project(p.project_id)
        assert got.name == name and [k.name for k in got.kpis] == ["fraud caught"]
        assert got.okrs == (okr,)
        exp = tracking_store.create_experiment(_name(), project=name, actor=ACTOR)
        assert exp.project_id == p.project_id
        assert [e.experiment_id for e in tracking_store.list_experiments(project=name)] == [
            exp.experiment_id
        ]

    def test_update_project(self, project_store):
        name = _name("p")
        project_store.create_project(name, business_goal="", description="", owner="", actor=ACTOR)
        p = project_store.update_project(name, business_goal="More revenue", actor=ACTOR)
        assert p.business_goal == "More revenue"
        with pytest.raises(InvalidArgument):
            project_store.update_project(name, actor=ACTOR)

    def test_bad_project_input_changes_nothing(self, project_store, tracking_store):
        before = project_store.list_projects()
        for bad in ("", "-x", "a" * 200, "12345", "x/../y"):
            with pytest.raises(InvalidArgument):
                project_store.create_project(
                    bad, business_goal="", description="", owner="", actor=ACTOR
                )
        with pytest.raises(NotFound):
            project_store.get_project("nope-" + uuid.uuid4().hex)
        with pytest.raises(NotFound):
            tracking_store.create_experiment(_name(), project="nope-x", actor=ACTOR)
        with pytest.raises(AlreadyExists):
            project_store.create_project(
                "default", business_goal="", description="", owner="", actor=ACTOR
            )
        assert project_store.list_projects() == before


class IdempotencyContract:
    """A batch sent twice with the same key (a retry after a lost answer) lands once."""

    def test_repeated_batch_key_is_applied_once(self, tracking_store):
        exp = tracking_store.create_experiment(_name(), actor=ACTOR)
        run = tracking_store.create_run(
            exp.experiment_id, run_name=None, user="u", start_time=_now(), actor=ACTOR
        )
        batch = [Metric("m", float(i), 1, i) for i in range(10)]
        for _ in range(3):
            tracking_store.log_batch(run.run_id, metrics=batch, actor=ACTOR, idempotency_key="k1")
        tracking_store.log_batch(run.run_id, metrics=batch, actor=ACTOR, idempotency_key="k2")
        assert len(tracking_store.get_metric_history(run.run_id, "m")) == 20
        multi = {run.run_id: [Metric("n", 1.0, 1, 0)]}
        tracking_store.log_metrics_multi(multi, idempotency_key="k3")
        tracking_store.log_metrics_multi(multi, idempotency_key="k3")
        assert len(tracking_store.get_metric_history(run.run_id, "n")) == 1
