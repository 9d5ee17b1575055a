"""Governance of the registry: gates against the champion and the project's KPIs, admin overrides
with reasons, approvals with separation of duties, each step in the audit chain — in the service
(SQLite and PostgreSQL) and over HTTP with authentication on."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from loopml.errors import (
    Conflict,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from loopml.governance.roles import Role
from loopml.projects.entities import Direction, JudgedAt
from loopml.registry.entities import (
    ApprovalStatus,
    ChampionGate,
    MetricGate,
    PromotionPolicy,
    Stage,
)
from loopml.server.app import create_app
from loopml.server.identity import token_authenticator
from loopml.settings import Settings
from loopml.stack import Stack
from loopml.testing.registry_contract import log_fake_package

DANA = "dana"  # data scientist: builds, registers, asks for approval
RITA = "rita"  # risk manager: approves
ROOT = "root"  # platform admin: may override gates
APPROVERS = PromotionPolicy(production_approvers=("risk_manager",), require_kpis=False)


def log_package(stack: Stack, metrics: dict[str, float], *, project: str | None = None) -> str:
    """A run in ``project`` with ``metrics`` and a (manifest-only) model package; its source."""
    return log_fake_package(stack, metrics, project=project, actor=DANA)


def _model(stack: Stack, policy: PromotionPolicy, *, project: str | None = None) -> str:
    assert stack.registry is not None
    name = f"fraud-{uuid.uuid4().hex[:8]}"
    stack.registry.create_registered_model(name, actor=DANA, project=project, risk_tier="high")
    stack.registry.set_policy(name, policy, actor=DANA)
    return name


def _version(stack: Stack, name: str, metrics: dict[str, float]) -> int:
    assert stack.registry is not None
    source = log_package(stack, metrics)
    return stack.registry.create_model_version(name, source, actor=DANA).version


def _actions(stack: Stack) -> list[tuple[str, str, str, dict[str, Any]]]:
    """The model events of the audit chain, in order: (action, actor, object id, change)."""
    events = sorted(stack.audit.list_events(object_type="model", limit=10_000), key=lambda e: e.seq)
    return [(e.action, e.actor, e.object_id, e.change) for e in events]


@pytest.fixture
def stack(metadata_url: str, tmp_path: Path) -> Iterator[Stack]:
    s = Stack.from_settings(
        Settings(home=tmp_path / "home", uri=metadata_url, artifacts=(tmp_path / "a").as_uri())
    )
    yield s
    s.close()


# -- gates -------------------------------------------------------------------------------------


def test_a_challenger_worse_than_the_champion_is_blocked(stack):
    registry = stack.registry
    policy = PromotionPolicy(
        champion_gates=(ChampionGate("auc", min_improvement=0.01),), require_kpis=False
    )
    name = _model(stack, policy)
    champion = _version(stack, name, {"auc": 0.92})
    registry.promote(name, champion, to="validated", actor=DANA)
    registry.promote(name, champion, to="production", actor=DANA)

    challenger = _version(stack, name, {"auc": 0.925})  # better, but not by 0.01
    with pytest.raises(ValidationFailed, match=r"auc 0\.925 vs champion v1 0\.92") as e:
        registry.promote(name, challenger, to="validated", actor=DANA)
    assert registry.get_model_version(name, challenger).stage is Stage.CANDIDATE
    assert registry.get_model_version(name, champion).stage is Stage.PRODUCTION
    assert registry.get_registered_model(name).aliases == {"champion": 1, "production": 1}
    [report] = registry.list_gate_reports(name, challenger)
    assert e.value.details == {"report_id": report.report_id}
    assert (report.passed, report.allowed, report.target) == (False, False, Stage.VALIDATED)
    assert [(c.name, c.passed) for c in report.checks] == [("beats champion on auc", False)]
    gates = [a for a in _actions(stack) if a[0] == "model_version.gates"]
    assert gates[-1][2:] == (f"{name}/{challenger}", {
        "report_id": report.report_id, "target": "validated", "passed": False,
        "failed": ["beats champion on auc"],
    })  # fmt: skip
    assert stack.audit.verify().ok


def test_a_kpi_miss_blocks(stack):
    registry, projects = stack.registry, stack.projects
    projects.create_project("payments", business_goal="stop fraud", description="", owner="",
                            actor=DANA)  # fmt: skip
    projects.add_kpi(
        "payments", "fraud caught", metric="recall", target=0.9, direction=Direction.MAXIMIZE,
        judged_at=JudgedAt.VALIDATION, description="", owner="", actor=DANA,
    )  # fmt: skip
    name = _model(stack, PromotionPolicy(), project="payments")  # require_kpis by default
    miss = _version(stack, name, {"recall": 0.8})
    with pytest.raises(ValidationFailed, match=r"recall is 0\.8, the KPI needs >= 0\.9"):
        registry.promote(name, miss, to="validated", actor=DANA)
    assert registry.get_model_version(name, miss).stage is Stage.CANDIDATE
    [report] = registry.list_gate_reports(name, miss)
    assert not report.passed
    assert [(c.name, c.passed) for c in report.checks] == [("kpi fraud caught", False)]

    hit = _version(stack, name, {"recall": 0.93})
    assert registry.promote(name, hit, to="validated", actor=DANA).stage is Stage.VALIDATED


def test_an_override_needs_an_admin_and_a_reason(stack):
    registry = stack.registry
    policy = PromotionPolicy(metric_gates=(MetricGate("auc", 0.95),), require_kpis=False)
    name = _model(stack, policy)
    version = _version(stack, name, {"auc": 0.9})
    with pytest.raises(ValidationFailed) as e:
        registry.promote(name, version, to="validated", actor=DANA)
    report_id = e.value.details["report_id"]

    with pytest.raises(PermissionDenied, match="only an admin"):
        registry.override(report_id, actor=DANA, is_admin=False, reason="trust me")
    for empty in ("", "   "):
        with pytest.raises(InvalidArgument, match="needs a reason"):
            registry.override(report_id, actor=ROOT, is_admin=True, reason=empty)
    with pytest.raises(NotFound):
        registry.override("no-such-report", actor=ROOT, is_admin=True, reason="x")
    assert registry.list_gate_reports(name, version)[0].override_by == ""  # still failed
    with pytest.raises(ValidationFailed):
        registry.promote(name, version, to="validated", actor=DANA, report_id=report_id)

    reason = "auc 0.90 accepted for the pilot region (ticket RISK-42)"
    overridden = registry.override(report_id, actor=ROOT, is_admin=True, reason=f"  {reason} ")
    assert (overridden.passed, overridden.allowed) == (False, True)
    assert (overridden.override_by, overridden.override_reason) == (ROOT, reason)
    with pytest.raises(Conflict, match="needs no override"):
        registry.override(report_id, actor=ROOT, is_admin=True, reason="again")
    # The report is for validation: it does not open the way to production.
    moved = registry.promote(name, version, to="validated", actor=DANA, report_id=report_id)
    assert moved.stage is Stage.VALIDATED
    with pytest.raises(InvalidArgument, match=r"not .* production"):
        registry.promote(name, version, to="production", actor=DANA, report_id=report_id)

    actions = _actions(stack)
    [override] = [a for a in actions if a[0] == "model_version.override"]
    assert override[1:3] == (ROOT, f"{name}/{version}")
    assert override[3] == {
        "report_id": report_id,
        "reason": reason,
        "failed": ["metric auc >= 0.95"],
    }
    [transition] = [a for a in actions if a[0] == "model_version.transition"]
    assert transition[3]["gate_report"] == report_id
    assert stack.audit.verify().ok


# -- approvals ---------------------------------------------------------------------------------


def test_production_needs_an_approval_by_someone_else_in_the_role(stack):
    registry = stack.registry
    name = _model(stack, APPROVERS)
    v1 = _version(stack, name, {"auc": 0.9})
    registry.promote(name, v1, to="validated", actor=DANA)
    with pytest.raises(PermissionDenied, match="needs an approved request from risk_manager"):
        registry.promote(name, v1, to="production", actor=DANA)
    with pytest.raises(Conflict, match="only a validated version"):  # candidates are not judged
        registry.request_approval(name, _version(stack, name, {"auc": 0.9}), actor=DANA)

    request = registry.request_approval(name, v1, actor=DANA, comment="ready for Q3")
    assert (request.status, request.required_roles, request.requested_by) == (
        ApprovalStatus.PENDING, ("risk_manager",), DANA,
    )  # fmt: skip
    with pytest.raises(Conflict, match="already has a pending request"):
        registry.request_approval(name, v1, actor=DANA)
    with pytest.raises(PermissionDenied, match="separation of duties"):  # even holding the role
        registry.decide(request.request_id, actor=DANA, roles={"risk_manager"}, approve=True)
    with pytest.raises(PermissionDenied, match="holds none of the roles"):
        registry.decide(request.request_id, actor="eve", roles={"data_scientist", "viewer"},
                        approve=True)  # fmt: skip
    assert registry.get_approval_request(request.request_id).status is ApprovalStatus.PENDING
    assert registry.get_model_version(name, v1).stage is Stage.VALIDATED

    approved = registry.decide(request.request_id, actor=RITA, roles={"risk_manager"},
                               approve=True, comment="model card reviewed")  # fmt: skip
    assert approved.status is ApprovalStatus.APPROVED and approved.missing_roles == ()
    [decision] = approved.decisions
    assert (decision.role, decision.user, decision.approved) == ("risk_manager", RITA, True)
    assert registry.get_model_version(name, v1).stage is Stage.APPROVED
    with pytest.raises(Conflict, match="already decided"):
        registry.decide(request.request_id, actor=RITA, roles={"risk_manager"}, approve=False)

    assert registry.promote(name, v1, to="production", actor=DANA).stage is Stage.PRODUCTION
    assert registry.get_registered_model(name).aliases == {"champion": v1, "production": v1}

    # The next version: approved, promoted; the one it replaces is archived.
    v2 = _version(stack, name, {"auc": 0.93})
    registry.promote(name, v2, to="validated", actor=DANA)
    second = registry.request_approval(name, v2, actor=DANA)
    registry.decide(second.request_id, actor=RITA, roles={"risk_manager"}, approve=True)
    registry.promote(name, v2, to="production", actor=DANA)
    assert registry.get_registered_model(name).aliases == {"champion": v2, "production": v2}
    assert registry.get_model_version(name, v1).stage is Stage.ARCHIVED
    assert registry.get_model_version(name, v2).stage is Stage.PRODUCTION
    transition = [a for a in _actions(stack) if a[0] == "model_version.transition"][-1]
    assert transition[3]["archived"] == [v1]
    assert transition[3]["approval_request"] == second.request_id
    assert stack.audit.verify().ok


def test_a_rejection_stops_the_request(stack):
    registry = stack.registry
    name = _model(stack, APPROVERS)
    version = _version(stack, name, {"auc": 0.9})
    registry.promote(name, version, to="validated", actor=DANA)
    request = registry.request_approval(name, version, actor=DANA)
    rejected = registry.decide(request.request_id, actor=RITA, roles={"risk_manager"},
                               approve=False, comment="no bias report")  # fmt: skip
    assert rejected.status is ApprovalStatus.REJECTED
    assert registry.get_approval_request(request.request_id).status is ApprovalStatus.REJECTED
    assert registry.get_model_version(name, version).stage is Stage.VALIDATED
    with pytest.raises(PermissionDenied):
        registry.promote(name, version, to="production", actor=DANA)
    with pytest.raises(Conflict, match="rejected"):
        registry.decide(request.request_id, actor="rob", roles={"risk_manager"}, approve=True)
    assert registry.list_approval_requests(name, version, ApprovalStatus.REJECTED) == [rejected]
    # A fresh request may be filed after the rework.
    again = registry.request_approval(name, version, actor=DANA, comment="bias report added")
    assert again.status is ApprovalStatus.PENDING
    assert [a[0] for a in _actions(stack)].count("approval.reject") == 1


def test_the_audit_chain_tells_the_whole_story(stack):
    registry = stack.registry
    policy = PromotionPolicy(metric_gates=(MetricGate("auc", 0.95),), require_kpis=False,
                             production_approvers=("risk_manager",))  # fmt: skip
    name = _model(stack, policy)
    version = _version(stack, name, {"auc": 0.9})
    with pytest.raises(ValidationFailed) as e:
        registry.promote(name, version, to="validated", actor=DANA)
    registry.override(e.value.details["report_id"], actor=ROOT, is_admin=True,
                      reason="pilot only")  # fmt: skip
    registry.promote(name, version, to="validated", actor=DANA,
                     report_id=e.value.details["report_id"])  # fmt: skip
    request = registry.request_approval(name, version, actor=DANA)
    registry.decide(request.request_id, actor=RITA, roles={"risk_manager"}, approve=True)
    # Production runs the gates again: they still fail, so it takes a second override.
    with pytest.raises(ValidationFailed) as e:
        registry.promote(name, version, to="production", actor=DANA)
    registry.override(e.value.details["report_id"], actor=ROOT, is_admin=True,
                      reason="pilot only, production")  # fmt: skip
    registry.promote(name, version, to="production", actor=DANA,
                     report_id=e.value.details["report_id"])  # fmt: skip

    story = [(action, actor) for action, actor, _oid, _change in _actions(stack)]
    assert story == [
        ("model.create", DANA),
        ("model.policy", DANA),
        ("model_version.create", DANA),
        ("model_version.gates", DANA),  # failed
        ("model_version.override", ROOT),
        ("model_version.transition", DANA),  # → validated
        ("approval.request", DANA),
        ("approval.grant", RITA),
        ("model_version.transition", RITA),  # → approved, by the approval
        ("model_version.gates", DANA),  # failed again, for production
        ("model_version.override", ROOT),
        ("model_version.transition", DANA),  # → production
        ("model.alias", DANA),  # production
        ("model.alias", DANA),  # champion
    ]
    changes = [change for _a, _u, _o, change in _actions(stack)]
    assert [c["to"] for c in changes if "to" in c and "from" in c and "gate_report" in c] == [
        "validated", "approved", "production",
    ]  # fmt: skip
    assert [c["alias"] for c in changes if "alias" in c] == ["production", "champion"]
    assert [c["reason"] for c in changes if "reason" in c] == [
        "pilot only",
        "pilot only, production",
    ]
    report = stack.audit.verify()
    assert report.ok, report


# -- over HTTP, with authentication on ---------------------------------------------------------


class Team:
    """A server with token auth; remote stacks and raw clients for each member of the team."""

    def __init__(self, home: Path) -> None:
        self.server = Stack.from_settings(Settings(home=home))
        ident = self.server.identity
        assert ident is not None
        self.server.projects.create_project("payments", business_goal="", description="",
                                            owner="", actor="setup")  # fmt: skip
        self.app = create_app(self.server, authenticate=token_authenticator(self.server))
        self.tokens: dict[str, str] = {}
        members = {DANA: Role.DATA_SCIENTIST, RITA: Role.RISK_MANAGER, "vic": Role.VIEWER}
        for username, role in members.items():
            user = ident.create_user(username, None, is_service_account=True, actor="setup")
            ident.grant(user, "payments", role, actor="setup")
            self.tokens[username] = ident.create_token(user, "t", actor="setup")[1]
        admin = ident.create_user(ROOT, None, is_admin=True, is_service_account=True,
                                  actor="setup")  # fmt: skip
        self.tokens[ROOT] = ident.create_token(admin, "t", actor="setup")[1]
        self.stacks: dict[str, Stack] = {}
        self.http = TestClient(self.app, base_url="http://testserver",
                               raise_server_exceptions=False)  # fmt: skip

    def stack(self, who: str) -> Stack:
        """``who``'s client-side stack (its own HTTP client: the token is a client header)."""
        if who not in self.stacks:
            client = TestClient(self.app, base_url="http://testserver")
            self.stacks[who] = Stack.remote(
                Settings(uri="http://testserver", token=self.tokens[who]), http_client=client
            )
        return self.stacks[who]

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def close(self) -> None:
        for s in self.stacks.values():
            s.close()
        self.http.close()
        self.server.close()


@pytest.fixture
def team(tmp_path: Path) -> Iterator[Team]:
    t = Team(tmp_path / "home")
    yield t
    t.close()


def test_the_approval_flow_over_http(team):
    dana, rita, root = team.stack(DANA), team.stack(RITA), team.stack(ROOT)
    http = team.http
    source = log_package(dana, {"auc": 0.9}, project="payments")  # logged over HTTP by dana
    name = "fraud-detector"
    dana.registry.create_registered_model(name, actor="ignored", project="payments")
    dana.registry.set_policy(name, APPROVERS, actor="ignored")
    v1 = dana.registry.create_model_version(name, source, actor="ignored")
    assert v1.created_by == DANA  # the server decides who the actor is

    # Risk managers judge models; they do not make them.
    path = f"/api/v1/models/{name}"
    denied = http.post(f"{path}/versions", json={"source": source}, headers=team.as_(RITA))
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "permission_denied"
    with pytest.raises(PermissionDenied):
        rita.registry.create_model_version(name, source, actor=RITA)
    assert http.post("/api/v1/models", json={"name": "rita-model", "project": "payments"},
                     headers=team.as_(RITA)).status_code == 403  # fmt: skip

    dana.registry.promote(name, v1.version, to="validated", actor="ignored")
    promote = f"{path}/versions/{v1.version}/promote"
    to_production = http.post(promote, json={"to": "production"}, headers=team.as_(DANA))
    assert to_production.status_code == 403
    assert "needs an approved request" in to_production.json()["error"]["message"]

    request = dana.registry.request_approval(name, v1.version, actor="ignored", comment="go")
    assert request.requested_by == DANA
    decision = f"/api/v1/approval-requests/{request.request_id}/decision"
    # The requester may not decide (she lacks model.approve anyway); neither may a viewer.
    for who in (DANA, "vic"):
        response = http.post(decision, json={"approve": True}, headers=team.as_(who))
        assert response.status_code == 403, who
    # A viewer cannot promote either.
    assert http.post(promote, json={"to": "production"}, headers=team.as_("vic")).status_code == (
        403
    )
    assert dana.registry.get_approval_request(request.request_id).status is ApprovalStatus.PENDING

    approved = rita.registry.decide(request.request_id, actor="ignored", roles=(), approve=True)
    assert approved.status is ApprovalStatus.APPROVED
    assert approved.decisions[0].user == RITA and approved.decisions[0].role == "risk_manager"
    assert dana.registry.get_model_version(name, v1.version).stage is Stage.APPROVED
    moved = dana.registry.promote(name, v1.version, to="production", actor="ignored")
    assert moved.stage is Stage.PRODUCTION
    assert dana.registry.get_registered_model(name).aliases == {"champion": 1, "production": 1}

    # An admin holds every role, yet may not approve what they asked for themselves.
    v2 = dana.registry.create_model_version(name, source, actor="ignored").version
    dana.registry.promote(name, v2, to="validated", actor="ignored")
    own = root.registry.request_approval(name, v2, actor="ignored")
    self_approval = http.post(f"/api/v1/approval-requests/{own.request_id}/decision",
                              json={"approve": True}, headers=team.as_(ROOT))  # fmt: skip
    assert self_approval.status_code == 403
    assert "separation of duties" in self_approval.json()["error"]["message"]
    with pytest.raises(PermissionDenied, match="separation of duties"):
        root.registry.decide(own.request_id, actor=ROOT, roles=(), approve=True)
    rejected = rita.registry.decide(own.request_id, actor="ignored", roles=(), approve=False,
                                    comment="needs a bias report")  # fmt: skip
    assert rejected.status is ApprovalStatus.REJECTED
    with pytest.raises(PermissionDenied):
        dana.registry.promote(name, v2, to="production", actor="ignored")

    actions = [(e.action, e.actor) for e in root.audit.list_events(object_type="model")]
    for step in [("approval.request", DANA), ("approval.grant", RITA), ("approval.request", ROOT),
                 ("approval.reject", RITA), ("model.alias", DANA)]:  # fmt: skip
        assert step in actions, step
    assert root.audit.verify().ok
    # The risk manager audits the project: the model's history is theirs to read; a viewer's not.
    seen_by_rita = [(e.action, e.actor) for e in rita.audit.list_events(object_type="model")]
    assert ("approval.grant", RITA) in seen_by_rita and ("model.create", DANA) in seen_by_rita
    viewer = team.http.get("/api/v1/audit/events", headers=team.as_("vic"))
    assert viewer.status_code == 403


def test_overrides_over_http_are_for_admins_with_a_reason(team):
    dana, root = team.stack(DANA), team.stack(ROOT)
    source = log_package(dana, {"auc": 0.9}, project="payments")
    name = "fraud-detector"
    dana.registry.create_registered_model(name, actor="ignored", project="payments")
    dana.registry.set_policy(
        name, PromotionPolicy(metric_gates=(MetricGate("auc", 0.95),), require_kpis=False),
        actor="ignored",
    )  # fmt: skip
    version = dana.registry.create_model_version(name, source, actor="ignored").version
    with pytest.raises(ValidationFailed) as e:
        dana.registry.promote(name, version, to="validated", actor="ignored")
    report_id = e.value.details["report_id"]
    url = f"/api/v1/gate-reports/{report_id}/override"
    assert team.http.post(url, json={"reason": "please"}, headers=team.as_(DANA)).status_code == (
        403
    )
    with pytest.raises(InvalidArgument, match="needs a reason"):
        root.registry.override(report_id, actor="ignored", is_admin=False, reason=" ")
    overridden = root.registry.override(report_id, actor="ignored", is_admin=False,
                                        reason="pilot")  # fmt: skip
    assert (overridden.override_by, overridden.override_reason) == (ROOT, "pilot")
    moved = dana.registry.promote(name, version, to="validated", actor="ignored",
                                  report_id=report_id)  # fmt: skip
    assert moved.stage is Stage.VALIDATED
    [event] = [e for e in root.audit.list_events(object_type="model")
               if e.action == "model_version.override"]  # fmt: skip
    assert (event.actor, event.change["reason"]) == (ROOT, "pilot")


def test_an_approval_lapses_when_the_version_is_sent_back(stack):
    registry = stack.registry
    name = _model(stack, APPROVERS)
    version = _version(stack, name, {"auc": 0.9})
    registry.promote(name, version, to="validated", actor=DANA)
    request = registry.request_approval(name, version, actor=DANA)
    registry.decide(request.request_id, actor=RITA, roles={"risk_manager"}, approve=True)
    assert registry.get_model_version(name, version).stage is Stage.APPROVED
    registry.promote(name, version, to="candidate", actor=DANA)  # reworked
    assert registry.get_approval_request(request.request_id).status is ApprovalStatus.CANCELLED
    registry.promote(name, version, to="validated", actor=DANA)
    with pytest.raises(PermissionDenied, match="needs an approved request"):
        registry.promote(name, version, to="production", actor=DANA)


def test_two_simultaneous_requests_leave_one_pending(stack):
    registry = stack.registry
    name = _model(stack, APPROVERS)
    version = _version(stack, name, {"auc": 0.9})
    registry.promote(name, version, to="validated", actor=DANA)
    outcomes: list[str] = []

    def ask() -> None:
        try:
            registry.request_approval(name, version, actor=DANA)
            outcomes.append("created")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict"] * 7 + ["created"]
    assert len(registry.list_approval_requests(name, version, ApprovalStatus.PENDING)) == 1
