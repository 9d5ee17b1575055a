"""Contract suite of the model registry: every backend (SQL embedded, HTTP) must pass it.

Subclass in a test module and provide a ``registry_stack`` fixture: a :class:`loopml.stack.Stack`
whose ``registry``, ``tracking``, ``projects``, ``artifacts`` and ``audit`` work together.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import yaml

from loopml.errors import AlreadyExists, Conflict, InvalidArgument, NotFound, ValidationFailed
from loopml.projects.entities import Direction, JudgedAt
from loopml.registry.entities import (
    ChampionGate,
    MetricGate,
    PromotionPolicy,
    Stage,
)
from loopml.tracking.artifacts import RunArtifacts
from loopml.tracking.entities import Metric

ACTOR = "registry-tester"


def _name(prefix: str = "model") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def log_fake_package(
    stack: Any, metrics: dict[str, float], *, path: str = "model", project: str | None = None,
    actor: str = ACTOR,
) -> str:  # fmt: skip
    """A run (in ``project``) with ``metrics`` and a (manifest-only) model package at ``path``;
    its source."""
    tracking = stack.tracking
    experiment = tracking.create_experiment(_name("exp"), project=project, actor=actor)
    now = int(time.time() * 1000)
    run = tracking.create_run(
        experiment.experiment_id, run_name="r", user=actor, start_time=now, actor=actor
    )
    tracking.log_batch(
        run.run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()], actor=actor
    )
    manifest = {
        "format_version": 1,
        "flavor": "sklearn",
        "signature": {"kind": "columns", "inputs": [{"name": "x", "dtype": "float64"}]},
        "lineage": {"run_id": run.run_id, "datasets": [{"name": "tx", "version": "1"}]},
        "files": {},
    }
    RunArtifacts(tracking, stack.artifacts).log_bytes(
        run, yaml.safe_dump(manifest).encode(), f"{path}/loopml-model.yaml"
    )
    return f"runs:/{run.run_id}/{path}"


class RegistryContract:
    def registered(self, stack: Any, **policy: Any) -> str:
        name = _name()
        stack.registry.create_registered_model(name, actor=ACTOR, description="d")
        if policy:
            stack.registry.set_policy(name, PromotionPolicy(**policy), actor=ACTOR)
        return name

    def test_models_are_created_once_with_valid_names(self, registry_stack):
        registry = registry_stack.registry
        name = _name()
        model = registry.create_registered_model(
            name, actor=ACTOR, description="fraud", risk_tier="high", intended_use="scoring"
        )
        assert (model.name, model.risk_tier.value, model.latest_version) == (name, "high", 0)
        assert registry.get_registered_model(name).intended_use == "scoring"
        assert name in [m.name for m in registry.list_registered_models()]
        with pytest.raises(AlreadyExists):
            registry.create_registered_model(name, actor=ACTOR)
        for bad in ("", "a b", "../x", "x" * 200, "fraud\n"):
            with pytest.raises(InvalidArgument):
                registry.create_registered_model(bad, actor=ACTOR)
        with pytest.raises(InvalidArgument):
            registry.create_registered_model(_name(), actor=ACTOR, risk_tier="extreme")
        with pytest.raises(NotFound):
            registry.get_registered_model(_name())

    def test_versions_keep_the_recorded_digest_and_lineage(self, registry_stack):
        registry = registry_stack.registry
        name = self.registered(registry_stack)
        source = log_fake_package(registry_stack, {"auc": 0.9})
        v1 = registry.create_model_version(name, source, actor=ACTOR)
        v2 = registry.create_model_version(name, source, actor=ACTOR)
        assert (v1.version, v2.version, v1.stage) == (1, 2, Stage.CANDIDATE)
        run_id = source.split("/")[1]
        record = next(r for r in registry_stack.tracking.list_artifact_records(run_id)
                      if r.path == "model/loopml-model.yaml")  # fmt: skip
        assert v1.digest == record.sha256 and v1.run_id == run_id and v1.flavor == "sklearn"
        assert v1.datasets == ({"name": "tx", "version": "1"},)
        assert v1.signature is not None and v1.signature["inputs"][0]["name"] == "x"
        assert [v.version for v in registry.list_model_versions(name)] == [1, 2]
        assert registry.get_registered_model(name).latest_version == 2
        with pytest.raises(NotFound):
            registry.create_model_version(name, source.replace("/model", "/nothing"), actor=ACTOR)
        with pytest.raises(NotFound):
            registry.create_model_version(_name(), source, actor=ACTOR)
        for bad in ("models:/x/1", "runs:/", "runs:/abc", "runs:/abc/../../etc"):
            with pytest.raises(InvalidArgument):
                registry.create_model_version(name, bad, actor=ACTOR)
        with pytest.raises(NotFound):
            registry.get_model_version(name, 3)

    def test_a_versions_description_and_tags_change_but_not_its_package(self, registry_stack):
        registry = registry_stack.registry
        name = self.registered(registry_stack)
        created = registry.create_model_version(
            name, log_fake_package(registry_stack, {"auc": 0.9}), actor=ACTOR,
            description="first", tags={"a": "1"},
        )  # fmt: skip
        changed = registry.update_model_version(name, 1, actor=ACTOR, description="second")
        assert (changed.description, changed.tags) == ("second", {"a": "1"})
        retagged = registry.update_model_version(name, 1, actor=ACTOR, tags={"b": "2"})
        assert (retagged.description, retagged.tags) == ("second", {"b": "2"})
        assert (retagged.digest, retagged.source) == (created.digest, created.source)
        assert registry.get_model_version(name, 1) == retagged
        assert retagged.updated_time >= created.updated_time
        with pytest.raises(NotFound):
            registry.update_model_version(name, 2, actor=ACTOR, description="x")
        with pytest.raises(NotFound):
            registry.update_model_version(_name(), 1, actor=ACTOR, description="x")
        events = registry_stack.audit.list_events(object_type="model", object_id=name)
        assert [e.action for e in events].count("model_version.update") == 2

    def test_aliases_move_and_resolve(self, registry_stack):
        registry = registry_stack.registry
        name = self.registered(registry_stack)
        source = log_fake_package(registry_stack, {"auc": 0.9})
        for _ in range(2):
            registry.create_model_version(name, source, actor=ACTOR)
        registry.set_alias(name, "staging", 1, actor=ACTOR)
        assert registry.get_version_by_alias(name, "staging").version == 1
        registry.set_alias(name, "staging", 2, actor=ACTOR)
        assert registry.get_version_by_alias(name, "staging").version == 2
        assert registry.get_registered_model(name).aliases == {"staging": 2}
        with pytest.raises(NotFound):
            registry.set_alias(name, "staging", 9, actor=ACTOR)
        for bad in ("1", "", "a/b", "x" * 70, "prod\n"):
            with pytest.raises(InvalidArgument):
                registry.set_alias(name, bad, 1, actor=ACTOR)
        registry.delete_alias(name, "staging", actor=ACTOR)
        with pytest.raises(NotFound):
            registry.get_version_by_alias(name, "staging")

    def test_a_metric_gate_blocks_until_met(self, registry_stack):
        registry = registry_stack.registry
        name = self.registered(registry_stack, metric_gates=(MetricGate("auc", 0.95),),
                               require_kpis=False)  # fmt: skip
        weak = registry.create_model_version(
            name, log_fake_package(registry_stack, {"auc": 0.9}), actor=ACTOR
        )
        with pytest.raises(ValidationFailed, match=r"auc is 0\.9, needs >= 0\.95"):
            registry.promote(name, weak.version, to="validated", actor=ACTOR)
        assert registry.get_model_version(name, weak.version).stage is Stage.CANDIDATE
        [report] = registry.list_gate_reports(name, weak.version)
        assert not report.passed and report.target is Stage.VALIDATED
        strong = registry.create_model_version(
            name, log_fake_package(registry_stack, {"auc": 0.97}), actor=ACTOR
        )
        moved = registry.promote(name, strong.version, to="validated", actor=ACTOR)
        assert moved.stage is Stage.VALIDATED
        with pytest.raises(Conflict, match="is candidate; it cannot go to production"):
            registry.promote(name, weak.version, to="production", actor=ACTOR)
        with pytest.raises(InvalidArgument, match="validated"):  # names the stages there are
            registry.promote(name, weak.version, to="shipped", actor=ACTOR)

    def test_a_challenger_worse_than_the_champion_is_blocked(self, registry_stack):
        registry = registry_stack.registry
        name = self.registered(
            registry_stack, champion_gates=(ChampionGate("auc", min_improvement=0.01),),
            require_kpis=False,
        )  # fmt: skip
        champion = registry.create_model_version(
            name, log_fake_package(registry_stack, {"auc": 0.92}), actor=ACTOR
        )
        registry.promote(name, champion.version, to="validated", actor=ACTOR)
        registry.promote(name, champion.version, to="production", actor=ACTOR)
        model = registry.get_registered_model(name)
        assert model.aliases == {"champion": 1, "production": 1}
        worse = registry.create_model_version(
            name, log_fake_package(registry_stack, {"auc": 0.925}), actor=ACTOR
        )
        with pytest.raises(ValidationFailed, match="champion v1"):
            registry.promote(name, worse.version, to="validated", actor=ACTOR)
        better = registry.create_model_version(
            name, log_fake_package(registry_stack, {"auc": 0.95}), actor=ACTOR
        )
        registry.promote(name, better.version, to="validated", actor=ACTOR)
        registry.promote(name, better.version, to="production", actor=ACTOR)
        assert registry.get_registered_model(name).aliases == {"champion": 3, "production": 3}
        assert registry.get_model_version(name, 1).stage is Stage.ARCHIVED

    def test_a_kpi_miss_blocks(self, registry_stack):
        registry, projects = registry_stack.registry, registry_stack.projects
        project = projects.create_project(
            _name("proj"), business_goal="", description="", owner="", actor=ACTOR
        )
        projects.add_kpi(
            project.name, "fraud caught", metric="recall", target=0.9,
            direction=Direction.MAXIMIZE, judged_at=JudgedAt.VALIDATION, description="",
            owner="", actor=ACTOR,
        )  # fmt: skip
        name = _name()
        registry.create_registered_model(name, actor=ACTOR, project=project.name)
        miss = registry.create_model_version(
            name, log_fake_package(registry_stack, {"recall": 0.8}), actor=ACTOR
        )
        with pytest.raises(ValidationFailed, match=r"recall is 0\.8, the KPI needs >= 0\.9"):
            registry.promote(name, miss.version, to="validated", actor=ACTOR)
        hit = registry.create_model_version(
            name, log_fake_package(registry_stack, {"recall": 0.93}), actor=ACTOR
        )
        assert registry.promote(name, hit.version, to="validated", actor=ACTOR).stage.value == (
            "validated"
        )

    def test_every_step_is_in_the_audit_chain(self, registry_stack):
        registry = registry_stack.registry
        name = self.registered(registry_stack, require_kpis=False)
        version = registry.create_model_version(
            name, log_fake_package(registry_stack, {"auc": 0.9}), actor=ACTOR
        )
        registry.set_alias(name, "staging", version.version, actor=ACTOR)
        registry.promote(name, version.version, to="validated", actor=ACTOR)
        actions = [e.action for e in registry_stack.audit.list_events(object_type="model")]
        for expected in ("model.create", "model.policy", "model_version.create", "model.alias",
                         "model_version.gates", "model_version.transition"):  # fmt: skip
            assert expected in actions, (expected, actions)
        assert registry_stack.audit.verify().ok
