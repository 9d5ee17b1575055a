"""The permission matrix: every cell checked through ``allowed`` and through a Principal, the
policy's invariants stated independently of the table, and the docs rendered from it."""

from __future__ import annotations

import re
from pathlib import Path
from types import MappingProxyType

import pytest

from loopml.errors import InvalidArgument
from loopml.governance.identity import Principal, User
from loopml.governance.roles import (
    PERMISSIONS,
    Action,
    Role,
    allowed,
    parse_role,
    permission_matrix_markdown,
)

DOC = Path(__file__).parents[1] / "docs" / "permissions.md"
P, Q = "7", "8"
CELLS = [(role, action) for role in Role for action in Action]
READS = {a for a in Action if a.value.endswith(".read")} - {Action.AUDIT_READ}


def principal(roles: dict[str, Role], *, is_admin: bool = False, disabled: bool = False):
    user = User("u1", "ada", "Ada", is_admin, False, disabled, 0)
    return Principal(user, MappingProxyType(roles), is_admin=is_admin)


@pytest.mark.parametrize(("role", "action"), CELLS, ids=[f"{r}-{a}" for r, a in CELLS])
def test_every_cell(role, action):
    expected = action in PERMISSIONS[role]
    assert allowed(role, action) is expected
    assert allowed(role.value, action.value) is expected
    who = principal({P: role})
    assert who.can(action, P) is expected
    assert who.can(action.value, int(P)) is expected  # ids may arrive as numbers
    assert who.can(action, Q) is False
    assert principal({Q: role}).can(action, P) is False
    assert principal({P: role}, disabled=True).can(action, P) is False


def test_the_matrix_covers_every_role():
    assert set(PERMISSIONS) == set(Role)


def test_unknown_roles_and_actions_are_denied():
    assert not allowed("superuser", Action.RUN_READ)
    assert not allowed(Role.ADMIN, "run.obliterate")
    assert not principal({P: Role.ADMIN}).can("run.obliterate", P)


PEOPLE = [r for r in Role if r is not Role.APPLICATION]


@pytest.mark.parametrize("role", PEOPLE)
def test_everyone_reads_and_manages_their_own_tokens(role):
    assert READS | {Action.TOKEN_MANAGE_OWN} <= PERMISSIONS[role]


def test_an_application_only_calls_models():
    assert PERMISSIONS[Role.APPLICATION] == {Action.DEPLOYMENT_INVOKE, Action.TOKEN_MANAGE_OWN}
    assert {r for r in Role if allowed(r, Action.DEPLOYMENT_INVOKE)} == {
        Role.DATA_SCIENTIST, Role.DEVOPS, Role.ML_ARCHITECT, Role.ADMIN, Role.APPLICATION,
    }  # fmt: skip


def test_viewer_only_reads():
    assert PERMISSIONS[Role.VIEWER] == READS | {Action.TOKEN_MANAGE_OWN}


def test_risk_manager_approves_and_audits_but_never_produces():
    rm = PERMISSIONS[Role.RISK_MANAGER]
    assert {Action.MODEL_APPROVE, Action.AUDIT_READ} <= rm
    assert not {a for a in rm if a.value.endswith((".write", ".delete"))}


def test_only_risk_managers_and_admins_approve_models():
    assert {r for r in Role if allowed(r, Action.MODEL_APPROVE)} == {Role.RISK_MANAGER, Role.ADMIN}


def test_only_admins_manage_users():
    assert {r for r in Role if allowed(r, Action.USER_MANAGE)} == {Role.ADMIN}


def test_ml_architect_is_admin_without_users_and_approvals():
    assert PERMISSIONS[Role.ML_ARCHITECT] == set(Action) - {
        Action.USER_MANAGE,
        Action.MODEL_APPROVE,
    }
    assert PERMISSIONS[Role.ADMIN] == set(Action)


def test_writers():
    assert allowed(Role.SUBJECT_MATTER_EXPERT, Action.KPI_WRITE)
    assert not allowed(Role.SUBJECT_MATTER_EXPERT, Action.RUN_WRITE)
    assert allowed(Role.DATA_SCIENTIST, Action.MODEL_WRITE)
    assert not allowed(Role.DATA_SCIENTIST, Action.DEPLOYMENT_WRITE)
    assert allowed(Role.DATA_ENGINEER, Action.DATA_WRITE)
    assert not allowed(Role.DATA_ENGINEER, Action.MODEL_WRITE)
    assert allowed(Role.DEVOPS, Action.DEPLOYMENT_WRITE)
    assert not allowed(Role.DEVOPS, Action.MODEL_WRITE)


def test_actions_without_a_project():
    ds = principal({P: Role.DATA_SCIENTIST})
    assert ds.can(Action.RUN_WRITE, None) and not ds.can(Action.AUDIT_READ, None)
    assert not principal({}).can(Action.PROJECT_READ, None)  # no role anywhere, no access
    # user.manage without a project is platform-wide: even a project admin may not.
    project_admin = principal({P: Role.ADMIN})
    assert project_admin.can(Action.USER_MANAGE, P)
    assert not project_admin.can(Action.USER_MANAGE, None)
    assert principal({}, is_admin=True).can(Action.USER_MANAGE, None)
    assert not principal({}, is_admin=True, disabled=True).can(Action.PROJECT_READ, None)


def test_projects_allowing_filters_listings():
    who = principal({P: Role.VIEWER, Q: Role.DATA_SCIENTIST})
    assert who.projects_allowing(Action.RUN_READ) == {P, Q}
    assert who.projects_allowing(Action.RUN_WRITE) == {Q}
    assert who.projects_allowing("nonsense") == frozenset()


def test_parse_role():
    assert parse_role(" ML_Architect ") is Role.ML_ARCHITECT
    with pytest.raises(InvalidArgument, match="data_scientist"):
        parse_role("wizard")


def test_docs_show_the_matrix_the_code_enforces():
    text = DOC.read_text(encoding="utf-8")
    found = re.search(
        r"<!-- BEGIN permission matrix -->\n(.*?)<!-- END permission matrix -->", text, re.S
    )
    assert found, f"{DOC} lost its permission matrix markers"
    assert found.group(1) == permission_matrix_markdown(), (
        "docs/permissions.md is out of date; paste in the output of: python -c "
        "'from loopml.governance.roles import permission_matrix_markdown as m; print(m())'"
    )
