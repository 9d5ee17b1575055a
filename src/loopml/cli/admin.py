"""``loopml admin``: the first admin, users, API tokens and project roles.

These commands work on the metadata database itself (``LOOPML_URI`` or the embedded store under
``LOOPML_HOME``): whoever can run them can already read and write that database. Secrets (API
tokens) go to stdout alone, once, so ``TOKEN=$(loopml admin tokens create …)`` works; everything
said around them goes to stderr.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

from loopml.cli.output import command, err_console, fmt_time, print_json, print_table
from loopml.errors import InvalidArgument
from loopml.governance.identity import ApiToken
from loopml.governance.roles import Role

if TYPE_CHECKING:
    from loopml.backends.sql.identity import SqlIdentityStore

app = typer.Typer(
    help="Users, API tokens and project roles (on the metadata database).", no_args_is_help=True
)
users_app = typer.Typer(help="People and service accounts.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens: shown once, revocable.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")

ROLES = ", ".join(r.value for r in Role)


@contextmanager
def identity_store() -> Iterator[SqlIdentityStore]:
    """The identity store of the configured metadata database, migrated, closed afterwards."""
    from loopml.backends.sql.engine import Database, make_engine
    from loopml.backends.sql.identity import SqlIdentityStore
    from loopml.backends.sql.migrate import ensure_schema
    from loopml.settings import Settings

    uri = Settings().resolved_uri()
    if uri.startswith(("http://", "https://")):
        raise InvalidArgument(
            "`loopml admin` works on the metadata database itself: set LOOPML_URI to its "
            "sqlite:///… or postgresql://… URI, not to the server's URL"
        )
    engine = make_engine(uri)
    try:
        ensure_schema(engine)
        yield SqlIdentityStore(Database(engine))
    finally:
        engine.dispose()


def _actor() -> str:
    from loopml.settings import Settings

    return Settings().resolved_user()


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = typer.get_text_stream("stdin").readline().rstrip("\r\n")
        if not password:
            raise InvalidArgument("--password-stdin: no password on standard input")
        return password
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


def _say(message: str) -> None:
    err_console.print(message, highlight=False)


PASSWORD_STDIN = typer.Option(
    False, "--password-stdin", help="Read the password from the first line of standard input."
)


@app.command()
@command
def init(
    username: str = typer.Option("admin", "--username", "-u", help="The first admin's name."),
    display_name: str = typer.Option("", "--display-name"),
    password_stdin: bool = PASSWORD_STDIN,
) -> None:
    """Create the first admin and print their first API token; refused once any user exists."""
    with identity_store() as store:
        if store.count_users():
            raise InvalidArgument(
                "loopml already has users: `init` runs once; an admin adds others with "
                "`loopml admin users add`"
            )
        password = _read_password(password_stdin)
        actor = _actor()
        admin = store.create_first_admin(username, password, display_name=display_name, actor=actor)
        _, secret = store.create_token(admin, "init", actor=actor)
    _say(f"admin {admin.username!r} created. Their first API token (shown once, store it now):")
    typer.echo(secret)


@users_app.command("ls")
@command
def users_ls(as_json: bool = typer.Option(False, "--json")) -> None:
    """List users."""
    with identity_store() as store:
        users = store.list_users()
    if as_json:
        print_json(users)
        return
    rows = [[u.username, u.display_name, _yes(u.is_admin), _yes(u.is_service_account),
             _yes(u.disabled), fmt_time(u.created_time)] for u in users]  # fmt: skip
    print_table("Users", ["username", "name", "admin", "service", "disabled", "created"], rows)


@users_app.command("add")
@command
def users_add(
    name: str,
    admin: bool = typer.Option(False, "--admin", help="A platform admin: may do everything."),
    service_account: bool = typer.Option(
        False, "--service-account", help="For automation: no password, API tokens only."
    ),
    display_name: str = typer.Option("", "--display-name"),
    password_stdin: bool = PASSWORD_STDIN,
) -> None:
    """Add a person (asks for their password) or a service account."""
    password = None if service_account else _read_password(password_stdin)
    with identity_store() as store:
        user = store.create_user(
            name, password, display_name=display_name, is_admin=admin,
            is_service_account=service_account, actor=_actor(),
        )  # fmt: skip
    kind = "service account" if user.is_service_account else "admin" if user.is_admin else "user"
    typer.echo(f"{kind} {user.username!r} added")


@users_app.command("disable")
@command
def users_disable(name: str) -> None:
    """Disable a user: their password and tokens stop working (until enabled again)."""
    with identity_store() as store:
        user = store.disable_user(name, actor=_actor())
    typer.echo(f"user {user.username!r} disabled")


@users_app.command("enable")
@command
def users_enable(name: str) -> None:
    """Enable a disabled user again."""
    with identity_store() as store:
        user = store.enable_user(name, actor=_actor())
    typer.echo(f"user {user.username!r} enabled")


@users_app.command("unlock")
@command
def users_unlock(
    name: str,
    address: list[str] = typer.Option(
        [], "--address", help="Also clear the failed sign-ins of this client address (repeatable)."
    ),
) -> None:
    """End a login lockout now: forget the user's failed sign-ins (audited)."""
    with identity_store() as store:
        cleared = store.unlock_user(name, actor=_actor(), addresses=address)
    typer.echo(f"user {name.lower()!r} unlocked ({cleared} failed sign-ins forgotten)")


@users_app.command("passwd")
@command
def users_passwd(name: str, password_stdin: bool = PASSWORD_STDIN) -> None:
    """Set a user's password."""
    password = _read_password(password_stdin)
    with identity_store() as store:
        store.set_password(name, password, actor=_actor())
    typer.echo(f"password of {name.lower()!r} changed")


@tokens_app.command("create")
@command
def tokens_create(
    user: str,
    name: str = typer.Option(..., "--name", help="What the token is for, e.g. ci or laptop."),
    expires_days: int | None = typer.Option(
        None, "--expires-days", help="Days until it expires (default: never)."
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Create an API token and print its secret, once."""
    if expires_days is not None and expires_days < 1:
        raise InvalidArgument("--expires-days must be at least 1")
    ttl = None if expires_days is None else expires_days * 86_400
    with identity_store() as store:
        token, secret = store.create_token(user, name, expires_in_seconds=ttl, actor=_actor())
    if as_json:
        print_json({"token": token, "secret": secret})
        return
    until = (
        "never expires"
        if token.expires_time is None
        else f"expires {fmt_time(token.expires_time)} UTC"
    )
    _say(f"token {token.token_id} for {user.lower()!r} ({until}); shown once, store it now:")
    typer.echo(secret)


@tokens_app.command("ls")
@command
def tokens_ls(user: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """A user's tokens (never their secrets)."""
    with identity_store() as store:
        tokens = store.list_tokens(user)
    if as_json:
        print_json(tokens)
        return
    print_table(
        f"API tokens of {user.lower()}",
        ["token id", "name", "status", "created", "expires", "last used"],
        [_token_row(t) for t in tokens],
    )


@tokens_app.command("revoke")
@command
def tokens_revoke(token_id: str) -> None:
    """Revoke a token at once."""
    with identity_store() as store:
        token = store.revoke_token(token_id, actor=_actor())
    typer.echo(f"token {token.token_id} ({token.name}) revoked")


@app.command()
@command
def grant(
    user: str,
    project: str = typer.Argument(..., help="Project name or id."),
    role: str = typer.Argument(..., help=f"One of: {ROLES}."),
) -> None:
    """Give a user a role on a project (replacing any role they had there)."""
    with identity_store() as store:
        m = store.grant(user, project, role, actor=_actor())
    typer.echo(f"{user.lower()!r} is {m.role.value} on project {project!r}")


@app.command()
@command
def revoke(user: str, project: str = typer.Argument(..., help="Project name or id.")) -> None:
    """Remove a user's role on a project."""
    with identity_store() as store:
        store.revoke(user, project, actor=_actor())
    typer.echo(f"{user.lower()!r} has no role on project {project!r} any more")


def _yes(flag: bool) -> str:
    return "yes" if flag else ""


def _token_row(t: ApiToken) -> list[object]:
    return [t.token_id, t.name, t.status(int(time.time() * 1000)), fmt_time(t.created_time),
            fmt_time(t.expires_time), fmt_time(t.last_used_time)]  # fmt: skip
