"""``loopml models`` gates, promotion, overrides, approvals and webhooks.

The commands are registered on the ``models`` group by :mod:`loopml.cli.models`.

Who the caller is: against a server (``LOOPML_URI=http…``) the server knows, from the token, and
decides. Embedded (the database is local), the user named by ``LOOPML_USER`` (or the login name)
acts with the roles the identity store gives them on the model's project, every role if they are
an admin; when the store has no such user, the local user is the single person using this
store and holds every role. Separation of duties still holds either way: whoever asked for an
approval may not give it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from loopml.cli.context import get_client
from loopml.cli.output import command, console, err_console, fmt_time, print_json, print_table
from loopml.errors import InvalidArgument, NotFound, ValidationFailed
from loopml.registry.entities import ApprovalRequest, ApprovalStatus, Stage, parse_stage

if TYPE_CHECKING:
    from loopml.client import Client
    from loopml.governance.identity import Principal


# Help texts (one paragraph each: the help printer keeps a docstring's line breaks).
WHO_DECIDES = (
    "Embedded (no server), your roles come from the identity store if it has a user named as you "
    "(LOOPML_USER); if it has none, you are the single local user and hold every role. Against a "
    "server, the server decides from your token."
)
APPROVE_HELP = (
    f"Approve a request as one of the roles it still needs (not your own request).\n\n{WHO_DECIDES}"
)
REJECT_HELP = (
    f"Reject a request as one of the roles it still needs (not your own request).\n\n{WHO_DECIDES}"
)
OVERRIDE_HELP = (
    "Let a failed gate report through: admins only, with a reason.\n\nEmbedded, an admin of the "
    "identity store may, or the single local user when the store has no user named as you "
    "(LOOPML_USER). Against a server, the server decides from your token."
)


def parse_version(text: str) -> int:
    """A version number (1, 2, …, or v2) from the command line, or a one-line error."""
    digits = text.strip().removeprefix("v")
    if not re.fullmatch(r"[0-9]{1,9}", digits) or int(digits) < 1:
        raise InvalidArgument(f"a version is a number from 1 up, got {text!r}")
    return int(digits)


# who is acting ---------------------------------------------------------------------------------
def _remote(client: Client) -> bool:
    return client.settings.resolved_uri().startswith(("http://", "https://"))


def _principal(client: Client) -> Principal | None:
    """The identity-store principal of the acting user; None if there is no such user."""
    identity = client.stack.identity
    if identity is None:
        return None
    try:
        return identity.principal(identity.get_user_by_name(client.actor))
    except (NotFound, InvalidArgument):
        return None


def local_roles(client: Client, project_id: str) -> frozenset[str]:
    """The roles the acting user holds on ``project_id`` (empty against a server: it decides)."""
    from loopml.governance.roles import Role

    if _remote(client):
        return frozenset()
    principal = _principal(client)
    if principal is None:
        return frozenset(r.value for r in Role)
    if principal.user.disabled:
        return frozenset()
    if principal.is_admin:
        return frozenset(r.value for r in Role)
    role = principal.roles_by_project.get(str(project_id))
    return frozenset() if role is None else frozenset({role.value})


def local_is_admin(client: Client) -> bool:
    """Whether the acting user is an admin (False against a server: it decides)."""
    if _remote(client):
        return False
    principal = _principal(client)
    return principal is None or (principal.is_admin and not principal.user.disabled)


# gates and promotion ---------------------------------------------------------------------------
@command
def gates(
    name: str,
    version: str = typer.Argument(..., metavar="VERSION"),
    target: str = typer.Option("validated", help="validated or production."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Run the promotion gates of a version; exit code 1 if they do not pass."""
    stage = parse_stage(target)
    if stage not in (Stage.VALIDATED, Stage.PRODUCTION):
        raise InvalidArgument(f"gates guard validated and production, not {stage.value}")
    client = get_client()
    number = parse_version(version)
    report = client.registry.check_gates(name, number, target=stage, actor=client.actor)
    if as_json:
        print_json(report)
    else:
        for c in report.checks:
            mark = "[green]✓[/green]" if c.passed else "[red]✗[/red]"
            line = f"{mark} {escape(c.name)}: {escape(c.detail)}"
            console.print(line, highlight=False, soft_wrap=True)
        if not report.checks:
            console.print("the policy asks for no checks", highlight=False)
        verdict = "[green]passed[/green]" if report.passed else "[red]failed[/red]"
        console.print(
            f"{escape(name)} v{number} → {stage.value}: gates {verdict} "
            f"(report {report.report_id})",
            highlight=False,
            soft_wrap=True,
        )
        if not report.passed:
            console.print(
                f"an admin may let it through: loopml models override {report.report_id} "
                "--reason …",
                highlight=False,
                soft_wrap=True,
            )
    if not report.passed:
        raise typer.Exit(1)


@command
def promote(
    name: str,
    version: str = typer.Argument(..., metavar="VERSION"),
    to: str = typer.Option(
        ..., "--to", help="validated, approved, production, archived, candidate."
    ),
    report: str | None = typer.Option(
        None, "--report", help="An overridden gate report to use instead of running the gates."
    ),
) -> None:
    """Move a version to another stage (through the gates and approvals the policy asks for)."""
    client = get_client()
    number = parse_version(version)
    stage = parse_stage(to)
    try:
        moved = client.registry.promote(name, number, to=stage, actor=client.actor,
                                        report_id=report)  # fmt: skip
    except ValidationFailed as e:
        report_id = e.details.get("report_id")
        if not report_id:
            raise
        raise ValidationFailed(
            f"{e.message} (gate report {report_id})", details=e.details
        ) from None
    typer.echo(f"{moved.name} version {moved.version} is now {moved.stage.value}")


@command
def override(
    report_id: str,
    reason: str | None = typer.Option(
        None, "--reason", help="Why the failed gates may be let through (required; audited)."
    ),
) -> None:
    """Let a failed gate report through: admins only, with a reason."""
    if reason is None or not reason.strip():
        raise InvalidArgument("an override needs --reason: say why the failed gates may be ignored")
    client = get_client()
    done = client.registry.override(
        report_id, actor=client.actor, is_admin=local_is_admin(client), reason=reason
    )
    typer.echo(
        f"gate report {done.report_id} overridden by {done.override_by}: promote {done.name} "
        f"version {done.version} --to {done.target.value} --report {done.report_id}"
    )


# approvals -------------------------------------------------------------------------------------
@command
def request_approval(
    name: str,
    version: str = typer.Argument(..., metavar="VERSION"),
    comment: str = typer.Option("", help="A note for the approvers."),
) -> None:
    """Ask the policy's approvers to approve a validated version for production."""
    client = get_client()
    request = client.registry.request_approval(
        name, parse_version(version), actor=client.actor, comment=comment
    )
    typer.echo(request.request_id)
    err_console.print(
        f"approval requested for {name} v{request.version} from "
        f"{', '.join(request.required_roles)}",
        highlight=False,
    )


@command
def approvals(
    name: str | None = typer.Option(None, "--name", help="Only this model's requests."),
    status: str | None = typer.Option(None, help="pending, approved, rejected or cancelled."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List approval requests."""
    wanted = None if status is None else _status(status)
    found = get_client().registry.list_approval_requests(name, None, wanted)
    if as_json:
        print_json([{**_as_dict(r), "missing_roles": list(r.missing_roles)} for r in found])
        return
    rows = [[r.request_id, r.name, r.version, r.status.value, r.requested_by,
             ", ".join(r.missing_roles) or "-",
             "; ".join(f"{d.user} ({d.role}) {'yes' if d.approved else 'no'}"
                       for d in r.decisions) or "-",
             fmt_time(r.created_time)] for r in found]  # fmt: skip
    columns = ["id", "model", "version", "status", "requested by", "still needs", "decisions",
               "created (UTC)"]  # fmt: skip
    print_table("Approval requests", columns, rows)


def _as_dict(r: ApprovalRequest) -> dict[str, object]:
    import dataclasses

    return {f.name: getattr(r, f.name) for f in dataclasses.fields(r)}


def _status(text: str) -> ApprovalStatus:
    try:
        return ApprovalStatus(text.strip().lower())
    except ValueError:
        names = ", ".join(s.value for s in ApprovalStatus)
        raise InvalidArgument(f"unknown status {text!r}: use one of {names}") from None


def _decide(request_id: str, comment: str, approve: bool) -> None:
    client = get_client()
    registry = client.registry
    roles: frozenset[str] = frozenset()
    if not _remote(client):
        request = registry.get_approval_request(request_id)
        roles = local_roles(client, registry.get_registered_model(request.name).project_id)
    decided = registry.decide(request_id, actor=client.actor, roles=roles, approve=approve,
                              comment=comment)  # fmt: skip
    role = next((d.role for d in reversed(decided.decisions) if d.user == client.actor), "")
    line = (f"{'approved' if approve else 'rejected'} {decided.name} v{decided.version} "
            f"as {role or 'approver'}: request is {decided.status.value}")  # fmt: skip
    if decided.status is ApprovalStatus.PENDING and decided.missing_roles:
        line += f", still needs {', '.join(decided.missing_roles)}"
    typer.echo(line)


@command
def approve(request_id: str, comment: str = typer.Option("", help="Why, for the record.")) -> None:
    """Approve a request as one of the roles it still needs (not your own request)."""
    _decide(request_id, comment, True)


@command
def reject(request_id: str, comment: str = typer.Option("", help="Why, for the record.")) -> None:
    """Reject a request as one of the roles it still needs (not your own request)."""
    _decide(request_id, comment, False)


# webhooks --------------------------------------------------------------------------------------
webhooks_app = typer.Typer(help="Webhooks: signed POSTs on registry events.", no_args_is_help=True)


@webhooks_app.command("list")
@command
def webhooks_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List webhooks (their secrets are never shown)."""
    hooks = get_client().registry.list_webhooks()
    if as_json:
        print_json(hooks)
        return
    rows = [[w.webhook_id, w.url, ", ".join(w.events) or "every event", w.model or "every model",
             w.created_by, fmt_time(w.created_time)] for w in hooks]  # fmt: skip
    print_table("Webhooks", ["id", "url", "events", "model", "created by", "created (UTC)"], rows)


@webhooks_app.command("add")
@command
def webhooks_add(
    url: str,
    secret: str = typer.Option(
        ..., "--secret", envvar="LOOPML_WEBHOOK_SECRET", help="HMAC signing secret, 16+ characters."
    ),
    event: list[str] | None = typer.Option(
        None, "--event", help="An event to send. Repeatable; default every event."
    ),
    model: str | None = typer.Option(None, "--model", help="Only this model's events."),
) -> None:
    """Add a webhook."""
    client = get_client()
    hook = client.registry.create_webhook(url, secret=secret, events=tuple(event or ()),
                                          model=model, actor=client.actor)  # fmt: skip
    typer.echo(f"webhook {hook.webhook_id} added: {hook.url}")


@webhooks_app.command("delete")
@command
def webhooks_delete(webhook_id: str) -> None:
    """Delete a webhook."""
    client = get_client()
    client.registry.delete_webhook(webhook_id, actor=client.actor)
    typer.echo(f"webhook {webhook_id} deleted")
