"""Contract suite of deployments: every backend (SQL embedded, HTTP) must pass it.

Subclass in a test module and provide a ``deployment_stack`` fixture: a
:class:`loopml.stack.Stack` whose ``deployments``, ``registry``, ``tracking``, ``projects``,
``artifacts`` and ``audit`` work together.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from loopml.artifacts.store import ArtifactStore
from loopml.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from loopml.serving.deployments import DeploymentSpec, Target
from loopml.serving.predlog import HOUR_MS, PredictionLogger, PredictionRecord
from loopml.serving.predlog_reader import read_predictions
from loopml.testing.registry_contract import log_fake_package

ACTOR = "deployment-tester"


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def registered_model(
    stack: Any, *, versions: int = 2, aliases: dict[str, int] | None = None,
    project: str | None = None,
) -> str:  # fmt: skip
    """A registered model with ``versions`` versions and ``aliases``; its name."""
    name = _name("model")
    stack.registry.create_registered_model(name, actor=ACTOR, project=project)
    source = log_fake_package(stack, {"auc": 0.9})
    for _ in range(versions):
        stack.registry.create_model_version(name, source, actor=ACTOR)
    for alias, version in (aliases or {}).items():
        stack.registry.set_alias(name, alias, version, actor=ACTOR)
    return name


def single(model: str, version: int = 1) -> DeploymentSpec:
    return DeploymentSpec((Target(model, version=version, weight=1.0),))


def log_hour(
    artifacts: ArtifactStore, deployment: str, hour_ms: int, *, segments: int, rows: int
) -> list[str]:
    """Write ``segments`` segments of ``rows`` predictions (and one feedback each) into the hour
    starting at ``hour_ms``; the request ids."""
    ids = []
    with PredictionLogger(artifacts, flush_interval_s=3600) as log:
        for s in range(segments):
            for r in range(rows):
                rid = f"{deployment}-{hour_ms}-{s}-{r}"
                ids.append(rid)
                log.record(
                    PredictionRecord(
                        rid,
                        deployment,
                        "m",
                        "1",
                        hour_ms + s * 1000 + r,
                        "/predict",
                        {"x": [r]},
                        [r % 2],
                        latency_ms=1.0,
                    )
                )
            log.record_feedback(
                f"{deployment}-{hour_ms}-{s}-0",
                deployment,
                [1],
                timestamp_ms=hour_ms + s * 1000 + 999,
            )
            log.flush()
    return ids


class DeploymentContract:
    def log_artifacts(self, stack: Any) -> ArtifactStore:
        """The artifact store the deployments' server keeps prediction logs in."""
        return stack.artifacts

    def test_create_get_list_and_update_make_revisions(self, deployment_stack):
        deployments = deployment_stack.deployments
        model = registered_model(deployment_stack)
        name = _name("dep")
        made = deployments.create_deployment(name, single(model), actor=ACTOR, description="d")
        assert (made.name, made.revision, made.description) == (name, 1, "d")
        assert made.spec == single(model)
        assert made.project_id == deployment_stack.registry.get_registered_model(model).project_id
        assert deployments.get_deployment(name) == made
        assert name in [d.name for d in deployments.list_deployments()]
        with pytest.raises(AlreadyExists):
            deployments.create_deployment(name, single(model), actor=ACTOR)

        canary = DeploymentSpec(
            (Target(model, version=1, weight=9), Target(model, version=2, weight=1)),
            sticky_key="X-Customer-Id", max_batch_size=32, max_wait_ms=5, sample_rate=0.5,
            redact={"email": "hash", "name": "drop"},
        )  # fmt: skip
        updated = deployments.update_deployment(name, canary, actor="someone", expected_revision=1)
        assert updated.revision == 2 and updated.spec == canary
        assert [t.weight for t in updated.spec.live] == pytest.approx([0.9, 0.1])
        assert (updated.updated_by, updated.created_by) == (
            self.recorded_actor("someone"),
            self.recorded_actor(ACTOR),
        )
        assert deployments.get_deployment(name).spec.redact == {"email": "hash", "name": "drop"}
        same = deployments.update_deployment(name, canary, actor=ACTOR)  # a repeat: no revision
        assert same.revision == 2
        assert [r.revision for r in deployments.history(name)] == [1, 2]
        with pytest.raises(NotFound):
            deployments.get_deployment(_name("dep"))

    def recorded_actor(self, actor: str) -> str:
        """The actor a change is recorded under (a server records its caller instead)."""
        return actor

    def test_a_stale_expected_revision_is_a_conflict(self, deployment_stack):
        deployments = deployment_stack.deployments
        model = registered_model(deployment_stack)
        name = _name("dep")
        deployments.create_deployment(name, single(model), actor=ACTOR)
        deployments.update_deployment(name, single(model, 2), actor=ACTOR, expected_revision=1)
        with pytest.raises(Conflict, match="revision 2"):
            deployments.update_deployment(name, single(model, 1), actor=ACTOR,
                                          expected_revision=1)  # fmt: skip
        assert deployments.get_deployment(name).spec == single(model, 2)
        assert len(deployments.history(name)) == 2
        with pytest.raises(NotFound):
            deployments.update_deployment(_name("dep"), single(model), actor=ACTOR)

    def test_rollback_restores_the_previous_spec_as_a_new_revision(self, deployment_stack):
        deployments = deployment_stack.deployments
        model = registered_model(deployment_stack, versions=3)
        name = _name("dep")
        deployments.create_deployment(name, single(model, 1), actor="alice")
        with pytest.raises(Conflict, match="nothing to roll back"):
            deployments.rollback(name, actor=ACTOR)
        deployments.update_deployment(name, single(model, 2), actor="bob")
        deployments.update_deployment(name, single(model, 3), actor="bob", reason="hotfix")
        back = deployments.rollback(name, actor="carol")
        assert (back.revision, back.spec) == (4, single(model, 2))
        again = deployments.rollback(name, actor="carol", to_revision=1)
        assert (again.revision, again.spec) == (5, single(model, 1))
        history = deployments.history(name)
        assert [(r.revision, r.reason) for r in history] == [
            (1, "create"), (2, "update"), (3, "hotfix"), (4, "rollback to 2"), (5, "rollback to 1")
        ]  # fmt: skip
        assert [r.actor for r in history] == [
            self.recorded_actor(a) for a in ("alice", "bob", "bob", "carol", "carol")
        ]
        assert [r.spec for r in history] == [single(model, v) for v in (1, 2, 3, 2, 1)]
        with pytest.raises(InvalidArgument):
            deployments.rollback(name, actor=ACTOR, to_revision=5)  # the current one
        with pytest.raises(InvalidArgument):
            deployments.rollback(name, actor=ACTOR, to_revision=9)
        with pytest.raises(InvalidArgument):
            deployments.rollback(name, actor=ACTOR, to_revision=0)
        with pytest.raises(NotFound):
            deployments.rollback(_name("dep"), actor=ACTOR)
        assert deployments.get_deployment(name).revision == 5

    def test_traffic_splits_promote_shadows_and_keep_the_rest(self, deployment_stack):
        deployments = deployment_stack.deployments
        model = registered_model(deployment_stack, versions=3, aliases={"challenger": 3})
        name = _name("dep")
        spec = DeploymentSpec(
            (Target(model, version=1, weight=1.0), Target(model, alias="challenger", shadow=True),
             Target(model, version=2, shadow=True)),
            shadow_share=0.25, sticky_key="user_id",
        )  # fmt: skip
        deployments.create_deployment(name, spec, actor=ACTOR)
        moved = deployments.set_traffic(
            name, {f"{model}:1": 0.8, f"{model}@challenger": 0.2}, actor=ACTOR
        )
        assert moved.revision == 2
        assert [(t.ref, t.weight) for t in moved.spec.live] == [
            (f"{model}:1", pytest.approx(0.8)), (f"{model}@challenger", pytest.approx(0.2))
        ]  # fmt: skip
        assert [t.ref for t in moved.spec.shadows] == [f"{model}:2"]
        assert (moved.spec.shadow_share, moved.spec.sticky_key) == (0.25, "user_id")
        assert deployments.history(name)[-1].reason == "traffic"
        for bad in ({f"{model}:9": 1.0}, {f"{_name('model')}:1": 1.0}):
            with pytest.raises(NotFound):
                deployments.set_traffic(name, bad, actor=ACTOR)
        for bad in ({model: 1.0}, {f"{model}:1": -1.0}, {f"{model}:1": 0.0}, {}):
            with pytest.raises(InvalidArgument):
                deployments.set_traffic(name, bad, actor=ACTOR)
        assert deployments.get_deployment(name).revision == 2

    def test_aliases_must_exist(self, deployment_stack):
        deployments = deployment_stack.deployments
        model = registered_model(deployment_stack, aliases={"champion": 2})
        name = _name("dep")
        spec = DeploymentSpec((Target(model, alias="champion", weight=1.0),))
        assert deployments.create_deployment(name, spec, actor=ACTOR).spec == spec
        missing = DeploymentSpec((Target(model, alias="nobody", weight=1.0),))
        with pytest.raises(NotFound, match="nobody"):
            deployments.create_deployment(_name("dep"), missing, actor=ACTOR)
        with pytest.raises(NotFound, match="nobody"):
            deployments.update_deployment(name, missing, actor=ACTOR)
        deployments.update_deployment(name, single(model), actor=ACTOR)
        deployment_stack.registry.delete_alias(model, "champion", actor=ACTOR)
        with pytest.raises(NotFound, match="champion"):  # serving the old spec would fail
            deployments.rollback(name, actor=ACTOR)
        assert deployments.get_deployment(name).revision == 2

    def test_bad_specs_and_unknown_targets_store_nothing(self, deployment_stack):
        deployments, audit = deployment_stack.deployments, deployment_stack.audit
        model = registered_model(deployment_stack)
        before = [d.name for d in deployments.list_deployments()]
        events = len(audit.list_events(object_type="deployment", limit=100_000))
        name = _name("dep")
        invalid: list[Any] = [
            {"targets": []},
            {"targets": [{"model": model, "version": 1, "shadow": True}]},  # no live target
            {"targets": [{"model": model, "version": 1, "weight": -1}]},
            {"targets": [{"model": model, "version": 1, "weight": 0}]},
            {"targets": [{"model": model, "version": 1, "weight": 1},
                         {"model": model, "version": 1, "weight": 1}]},  # duplicate
            {"targets": [{"model": "bad name", "version": 1, "weight": 1}]},
            {"targets": [{"model": model, "alias": "1x", "weight": 1}]},
            {"targets": [{"model": model, "weight": 1}]},  # neither version nor alias
            {"targets": [{"model": model, "version": 1, "alias": "a", "weight": 1}]},
            {"targets": [{"model": model, "version": 1, "weight": 1}], "shadow_share": 1.5},
            {"targets": [{"model": model, "version": 1, "weight": 1}], "sample_rate": -0.1},
            {"targets": [{"model": model, "version": 1, "weight": 1}], "redact": {"a": "x"}},
            {"targets": [{"model": model, "version": 1, "weight": 1}], "sticky_key": "a b"},
            {"targets": [{"model": model, "version": 1, "weight": 1}], "max_batch_size": 0},
        ]  # fmt: skip
        for spec in invalid:
            with pytest.raises(InvalidArgument):
                deployments.create_deployment(name, spec, actor=ACTOR)
        for bad_name in ("", "a b", "../x", "x" * 200, "-x", "x\n"):
            with pytest.raises(InvalidArgument):
                deployments.create_deployment(bad_name, single(model), actor=ACTOR)
        for spec in (single(model, 3), single(_name("model"))):
            with pytest.raises(NotFound):
                deployments.create_deployment(name, spec, actor=ACTOR)
        with pytest.raises(NotFound):
            deployments.create_deployment(name, single(model), actor=ACTOR, project="nowhere")
        assert [d.name for d in deployments.list_deployments()] == before
        assert len(audit.list_events(object_type="deployment", limit=100_000)) == events

        deployments.create_deployment(name, single(model), actor=ACTOR)
        for spec in (single(model, 3), {"targets": []}):
            with pytest.raises((InvalidArgument, NotFound)):
                deployments.update_deployment(name, spec, actor=ACTOR)
        with pytest.raises(InvalidArgument):
            deployments.update_deployment(name, single(model, 2), actor=ACTOR, reason="")
        assert [r.revision for r in deployments.history(name)] == [1]

    def test_project_defaults_to_the_first_models(self, deployment_stack):
        projects = deployment_stack.projects
        project = projects.create_project(
            _name("proj"), business_goal="", description="", owner="", actor=ACTOR
        )
        model = registered_model(deployment_stack, project=project.name)
        other = registered_model(deployment_stack)
        name = _name("dep")
        spec = DeploymentSpec(
            (Target(model, version=1, weight=1), Target(other, version=1, weight=1))
        )
        deployments = deployment_stack.deployments
        made = deployments.create_deployment(name, spec, actor=ACTOR)
        assert made.project_id == project.project_id
        explicit = deployments.create_deployment(_name("dep"), spec, actor=ACTOR, project="default")
        assert explicit.project_id == projects.get_project("default").project_id

    def test_delete_then_recreate_starts_a_new_history(self, deployment_stack):
        deployments = deployment_stack.deployments
        model = registered_model(deployment_stack)
        name = _name("dep")
        deployments.create_deployment(name, single(model), actor=ACTOR)
        deployments.update_deployment(name, single(model, 2), actor=ACTOR)
        deployments.delete_deployment(name, actor=ACTOR)
        with pytest.raises(NotFound):
            deployments.get_deployment(name)
        with pytest.raises(NotFound):
            deployments.history(name)
        with pytest.raises(NotFound):
            deployments.delete_deployment(name, actor=ACTOR)
        assert name not in [d.name for d in deployments.list_deployments()]
        again = deployments.create_deployment(name, single(model, 2), actor=ACTOR)
        assert again.revision == 1 and len(deployments.history(name)) == 1

    def test_every_change_is_in_the_audit_chain(self, deployment_stack):
        deployments, audit = deployment_stack.deployments, deployment_stack.audit
        model = registered_model(deployment_stack)
        name = _name("dep")
        deployments.create_deployment(name, single(model), actor=ACTOR)
        deployments.set_traffic(name, {f"{model}:1": 0.9, f"{model}:2": 0.1}, actor=ACTOR)
        deployments.rollback(name, actor=ACTOR)
        deployments.delete_deployment(name, actor=ACTOR)
        events = audit.list_events(object_type="deployment", object_id=name)
        assert [e.action for e in events] == [
            "deployment.create", "deployment.update", "deployment.rollback", "deployment.delete"
        ]  # fmt: skip
        assert {e.actor for e in events} == {self.recorded_actor(ACTOR)}
        traffic = events[1].change
        assert traffic["reason"] == "traffic" and traffic["revision"] == 2
        assert [t["version"] for t in traffic["diff"]["targets_added"]] == [2]
        assert traffic["diff"]["targets_changed"][f"{model}:1"]["weight"] == {
            "from": 1.0, "to": pytest.approx(0.9)
        }  # fmt: skip
        assert events[2].change["reason"] == "rollback to 1"
        assert audit.verify().ok

    def test_log_policy_defaults_floor_hold_and_audit(self, deployment_stack):
        deployments, audit = deployment_stack.deployments, deployment_stack.audit
        model = registered_model(deployment_stack)
        name = _name("dep")
        deployments.create_deployment(name, single(model), actor=ACTOR)
        status = deployments.log_status(name)
        floor, default = status.floor_days, status.default_retention_days
        assert (status.retention_days, status.legal_hold, status.hours) == (None, False, 0)
        assert status.effective_retention_days == default and floor <= default
        longer = deployments.set_log_policy(name, actor=ACTOR, retention_days=default + 30)
        assert (longer.retention_days, longer.effective_retention_days) == (default + 30,) * 2
        with pytest.raises(InvalidArgument, match="floor"):
            deployments.set_log_policy(name, actor=ACTOR, retention_days=floor - 1)
        for bad in (0, -5, 10**9):
            with pytest.raises(InvalidArgument):
                deployments.set_log_policy(name, actor=ACTOR, retention_days=bad)
        assert deployments.log_status(name).retention_days == default + 30
        held = deployments.set_log_policy(name, actor=ACTOR, legal_hold=True)
        assert held.legal_hold and held.retention_days == default + 30
        deployments.update_deployment(name, single(model, 2), actor=ACTOR)
        deployments.rollback(name, actor=ACTOR)  # a rollback restores the spec, not the policy
        assert deployments.log_status(name).legal_hold
        with pytest.raises(Conflict, match="legal hold"):
            deployments.delete_deployment(name, actor=ACTOR)
        assert deployments.prune_log(name, actor=ACTOR)[0].legal_hold
        back = deployments.set_log_policy(name, actor=ACTOR, default_retention=True,
                                          legal_hold=False)  # fmt: skip
        assert (back.retention_days, back.legal_hold) == (None, False)
        deployments.set_log_policy(name, actor=ACTOR, legal_hold=False)  # unchanged: no event
        events = audit.list_events(object_type="deployment", object_id=name)
        policy = [e for e in events if e.action == "deployment.log_policy"]
        changes = [(e.change["retention_days"]["to"], e.change["legal_hold"]["to"]) for e in policy]
        assert changes == [(default + 30, False), (default + 30, True), (None, False)]
        assert {e.actor for e in policy} == {self.recorded_actor(ACTOR)}
        deployments.delete_deployment(name, actor=ACTOR)
        with pytest.raises(NotFound):
            deployments.log_status(name)
        with pytest.raises(NotFound):
            deployments.set_log_policy(name, actor=ACTOR, legal_hold=True)
        assert audit.verify().ok

    def test_log_prune_and_compaction_keep_every_recent_row_once(self, deployment_stack):
        deployments, audit = deployment_stack.deployments, deployment_stack.audit
        artifacts = self.log_artifacts(deployment_stack)
        model = registered_model(deployment_stack)
        name = _name("dep")
        deployments.create_deployment(name, single(model), actor=ACTOR)
        days = deployments.log_status(name).effective_retention_days
        now_hour = int(time.time() * 1000) // HOUR_MS * HOUR_MS
        old = now_hour - (days + 2) * 24 * HOUR_MS
        recent = now_hour - 3 * HOUR_MS
        old_ids = log_hour(artifacts, name, old, segments=2, rows=3)
        recent_ids = log_hour(artifacts, name, recent, segments=3, rows=4)
        status = deployments.log_status(name)
        assert (status.hours, status.files) == (2, 10) and recent in status.compactable_hours

        deployments.set_log_policy(name, actor=ACTOR, legal_hold=True)
        assert deployments.prune_log(name, actor=ACTOR)[0].hours == []
        assert deployments.log_status(name).hours == 2  # the hold kept the old hour
        deployments.set_log_policy(name, actor=ACTOR, legal_hold=False)
        [pruned] = deployments.prune_log(name, actor=ACTOR)
        assert (pruned.files, pruned.rows) == (4, {"predictions": len(old_ids), "feedback": 2})
        assert len(pruned.hours) == 1 and not pruned.legal_hold
        assert deployments.prune_log(name, actor=ACTOR) == []  # nothing left to prune
        [event] = [e for e in audit.list_events(object_type="deployment", object_id=name)
                   if e.action == "deployment.log_prune"]  # fmt: skip
        assert event.actor == self.recorded_actor(ACTOR)
        assert event.change["rows"] == pruned.rows and event.change["hours"] == pruned.hours

        assert deployments.compact_log(name, actor=ACTOR, hour_ms=recent + 1) == []  # no hour
        done = deployments.compact_log(name, actor=ACTOR, hour_ms=recent)  # one hour, as the CLI
        assert sorted((c.kind, c.files_before, c.rows) for c in done) == [
            ("feedback", 3, 3), ("predictions", 3, len(recent_ids))
        ]  # fmt: skip
        assert deployments.log_status(name).files == 2
        assert deployments.compact_log(name, actor=ACTOR) == []  # already one file per kind
        frame = read_predictions(artifacts, name, recent, recent + HOUR_MS)
        assert sorted(frame["request_id"]) == sorted(recent_ids)
        assert frame["ground_truth"].notna().sum() == 3
        with pytest.raises(NotFound):
            deployments.compact_log(_name("dep"), actor=ACTOR)
        with pytest.raises(NotFound):
            deployments.prune_log(_name("dep"), actor=ACTOR)
        assert audit.verify().ok
