"""Roles from real ML teams, the actions they may take, and the one table that joins them.

:data:`PERMISSIONS` is the permission matrix: every authorization decision in loopml reads it
through :func:`allowed`, and ``docs/permissions.md`` is rendered from it
(:func:`permission_matrix_markdown`; a test keeps the two equal). Anything not in the table is
denied.

>>> allowed(Role.VIEWER, Action.RUN_READ), allowed(Role.VIEWER, Action.RUN_WRITE)
(True, False)
>>> allowed(Role.RISK_MANAGER, "model.approve"), allowed(Role.RISK_MANAGER, "run.write")
(True, False)
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

from loopml.errors import InvalidArgument


class Role(enum.StrEnum):
    """A member's role on a project (a user may hold a different role on each project)."""

    VIEWER = "viewer"
    SUBJECT_MATTER_EXPERT = "subject_matter_expert"
    DATA_SCIENTIST = "data_scientist"
    DATA_ENGINEER = "data_engineer"
    DEVOPS = "devops"
    RISK_MANAGER = "risk_manager"  # model risk manager: approver and auditor
    ML_ARCHITECT = "ml_architect"
    ADMIN = "admin"
    APPLICATION = "application"  # an application's service account: calls models, nothing else


class Action(enum.StrEnum):
    """Something a caller may do; the server checks one action per route."""

    PROJECT_READ = "project.read"
    PROJECT_WRITE = "project.write"
    KPI_WRITE = "kpi.write"
    EXPERIMENT_READ = "experiment.read"
    EXPERIMENT_WRITE = "experiment.write"
    EXPERIMENT_DELETE = "experiment.delete"
    RUN_READ = "run.read"
    RUN_WRITE = "run.write"
    RUN_DELETE = "run.delete"
    ARTIFACT_READ = "artifact.read"
    ARTIFACT_WRITE = "artifact.write"
    AUDIT_READ = "audit.read"
    USER_MANAGE = "user.manage"
    TOKEN_MANAGE_OWN = "token.manage_own"  # noqa: S105 - not a secret
    MODEL_READ = "model.read"
    MODEL_WRITE = "model.write"
    MODEL_APPROVE = "model.approve"
    DEPLOYMENT_WRITE = "deployment.write"
    DEPLOYMENT_INVOKE = "deployment.invoke"
    DATA_WRITE = "data.write"


ACTION_SUMMARY: Mapping[Action, str] = MappingProxyType(
    {
        Action.PROJECT_READ: "see projects, their goal, OKRs and KPIs",
        Action.PROJECT_WRITE: "change a project's goal, description, owner and OKRs",
        Action.KPI_WRITE: "add and change KPIs",
        Action.EXPERIMENT_READ: "see experiments",
        Action.EXPERIMENT_WRITE: "create, rename and tag experiments",
        Action.EXPERIMENT_DELETE: "delete and restore experiments",
        Action.RUN_READ: "see and search runs, params, metrics, tags",
        Action.RUN_WRITE: "create runs, log to them, end them",
        Action.RUN_DELETE: "delete and restore runs",
        Action.ARTIFACT_READ: "list and download artifacts",
        Action.ARTIFACT_WRITE: "upload artifacts",
        Action.AUDIT_READ: "read and verify the audit log",
        Action.USER_MANAGE: "manage members and their roles (platform-wide: admins only)",
        Action.TOKEN_MANAGE_OWN: "create, list and revoke one's own API tokens",
        Action.MODEL_READ: "see registered models and versions",
        Action.MODEL_WRITE: "register models, versions and aliases",
        Action.MODEL_APPROVE: "approve or reject a model version",
        Action.DEPLOYMENT_WRITE: "deploy, roll out and roll back models",
        Action.DEPLOYMENT_INVOKE: "call the project's models on `loopml serve --auth`",
        Action.DATA_WRITE: "register datasets and versions",
    }
)

_READ = frozenset(
    {
        Action.PROJECT_READ,
        Action.EXPERIMENT_READ,
        Action.RUN_READ,
        Action.ARTIFACT_READ,
        Action.MODEL_READ,
        Action.TOKEN_MANAGE_OWN,
    }
)
_ALL = frozenset(Action)

PERMISSIONS: Mapping[Role, frozenset[Action]] = MappingProxyType(
    {
        Role.VIEWER: _READ,
        Role.SUBJECT_MATTER_EXPERT: _READ | {Action.PROJECT_WRITE, Action.KPI_WRITE},
        Role.DATA_SCIENTIST: _READ
        | {
            Action.EXPERIMENT_WRITE,
            Action.EXPERIMENT_DELETE,
            Action.RUN_WRITE,
            Action.RUN_DELETE,
            Action.ARTIFACT_WRITE,
            Action.MODEL_WRITE,
            Action.DATA_WRITE,
            Action.DEPLOYMENT_INVOKE,  # try what they built on the real server
        },
        # Pipelines that build datasets are tracked runs, so engineers write runs and artifacts,
        # but do not register models or delete others' work.
        Role.DATA_ENGINEER: _READ
        | {Action.EXPERIMENT_WRITE, Action.RUN_WRITE, Action.ARTIFACT_WRITE, Action.DATA_WRITE},
        # Load tests and batch scoring are tracked as runs.
        Role.DEVOPS: _READ | {Action.DEPLOYMENT_WRITE, Action.DEPLOYMENT_INVOKE, Action.RUN_WRITE},
        # Separation of duties: the approver and auditor never produces what they judge.
        Role.RISK_MANAGER: _READ | {Action.AUDIT_READ, Action.MODEL_APPROVE},
        Role.ML_ARCHITECT: _ALL - {Action.USER_MANAGE, Action.MODEL_APPROVE},
        Role.ADMIN: _ALL,
        # Least privilege for the software that consumes predictions: its token can call the
        # project's models on `loopml serve --auth`, rotate its own tokens, and read nothing.
        Role.APPLICATION: frozenset({Action.DEPLOYMENT_INVOKE, Action.TOKEN_MANAGE_OWN}),
    }
)

# Not about one project: asked with project_id=None, only platform admins may do these.
PLATFORM_ACTIONS: frozenset[Action] = frozenset({Action.USER_MANAGE})


def allowed(role: Role | str, action: Action | str) -> bool:
    """Whether ``role`` may take ``action``; unknown roles and actions are denied."""
    try:
        return Action(action) in PERMISSIONS.get(Role(role), frozenset())
    except ValueError:
        return False


def parse_role(value: str | Role) -> Role:
    """A role from its name (case-insensitive), or a clear InvalidArgument.

    >>> parse_role("Data_Scientist")
    <Role.DATA_SCIENTIST: 'data_scientist'>
    """
    try:
        return Role(value.strip().lower() if isinstance(value, str) else value)
    except ValueError:
        names = ", ".join(r.value for r in Role)
        raise InvalidArgument(f"unknown role {value!r}: use one of {names}") from None


def permission_matrix_markdown() -> str:
    """The permission matrix as a Markdown table: one row per action, one column per role.

    >>> permission_matrix_markdown().splitlines()[2].startswith("| `project.read` |")
    True
    """
    header = "| action | what it covers | " + " | ".join(r.value for r in Role) + " |"
    rule = "|---|---|" + ":-:|" * len(Role)
    rows = [
        f"| `{a.value}` | {ACTION_SUMMARY[a]} | "
        + " | ".join("✓" if a in PERMISSIONS[r] else "·" for r in Role)
        + " |"
        for a in Action
    ]
    return "\n".join([header, rule, *rows]) + "\n"
