"""The web UI: server-rendered pages over the same stores and the same access rules as the API.

Every page is declared like an API route (``protected(action, scope)``, ``authenticated()`` or
``public()``) and lists only what the caller may see. Templates autoescape everything; chart data
reaches the page's script as JSON in a ``<script type="application/json">`` block. Forms post
to ``/login`` and ``/logout`` only; ``server/sessions.py`` checks their CSRF token and origin.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Iterator
from functools import cache
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from loopml.artifacts.digests import verified_chunks
from loopml.artifacts.paths import clean_relpath
from loopml.errors import (
    IntegrityError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    TooManyAttempts,
)
from loopml.governance.audit import AuditEvent
from loopml.server.access import Caller, authenticated, caller_of, protected, public
from loopml.server.identity import client_address, login_throttle_of
from loopml.server.routes.audit import auditable
from loopml.server.scopes import (
    experiment_scope,
    index_of,
    project_scope,
    run_scope,
    stack_of,
)
from loopml.server.sessions import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    Session,
    clear_cookie_header,
    cookie_header,
    is_secure,
    new_csrf_token,
    parse_form,
    session_of_request,
    sessions_of,
)
from loopml.tracking.artifacts import RunArtifacts
from loopml.tracking.entities import Run, ViewType
from loopml.ui import pages, render, static_files, views

router = APIRouter(include_in_schema=False)
log = logging.getLogger("loopml.server")
PAGE_SIZES = (25, 50, 100)
AUDIT_PAGE = 100
VERIFIED_INLINE_BYTES = 32 * 2**20  # artifacts up to this size are digest-checked when served
Text = Annotated[str, Query(max_length=10_000)]
Short = Annotated[str, Query(max_length=300)]


# rendering -----------------------------------------------------------------------------------


def _login_enabled(request: Request) -> bool:
    store = sessions_of(request.app.state)
    return store is not None and store.login_enabled and stack_of(request).identity is not None


def _page(
    request: Request,
    template: str,
    *,
    caller: Caller | None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    session = session_of_request(request)
    csrf, new_cookie = _csrf_token(request, session)
    html = render(
        template,
        user=caller.name if caller else None,
        can_audit=bool(caller and caller.may("audit.read", None)),
        session=session is not None,
        csrf_token=csrf,
        **context,
    )
    response = HTMLResponse(html, status_code=status)
    response.headers["cache-control"] = "no-store"
    if new_cookie:
        response.headers.append(
            "set-cookie",
            cookie_header(CSRF_COOKIE, csrf, secure=is_secure(request.scope), same_site="Strict"),
        )
    return response


def _csrf_token(request: Request, session: Session | None) -> tuple[str, bool]:
    """The token forms on this page carry: the session's, or the double-submit cookie's."""
    if session is not None:
        return session.csrf_token, False
    existing = request.cookies.get(CSRF_COOKIE)
    if (
        existing
        and 20 <= len(existing) <= 100
        and existing.replace("-", "").replace("_", "").isalnum()
    ):
        return existing, False
    return new_csrf_token(), True


def _url(path: str, **params: Any) -> str:
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return f"{path}?{query}" if query else path


def _redirect(location: str) -> RedirectResponse:
    return RedirectResponse(location, status_code=303, headers={"cache-control": "no-store"})


# login / logout ------------------------------------------------------------------------------
@router.get("/login", **public())
def login_form(request: Request, next: Annotated[str, Query(max_length=2000)] = "/") -> Response:
    if not _login_enabled(request):
        return _redirect("/")
    return _page(
        request,
        "login.html",
        caller=None,
        title="Log in",
        next=views.safe_next(next),
        error=None,
        username="",
    )


@router.post("/login", **public())
async def login(request: Request) -> Response:
    """Username and password (the CSRF guard has checked token and origin already)."""
    if not _login_enabled(request):
        return _redirect("/")
    form = parse_form(await request.body())
    username, password = form.get("username", "")[:256], form.get("password", "")
    target = views.safe_next(form.get("next"))
    throttle, store = login_throttle_of(request), sessions_of(request.app.state)
    if throttle is None or store is None:  # not reached: _login_enabled checked both
        return _redirect("/")
    address = client_address(request)
    try:  # throttled: a locked account or address is refused before its password is checked
        user = await run_in_threadpool(throttle.sign_in, username, password, address)
    except TooManyAttempts as e:
        wait = e.retry_after_seconds
        message = f"Too many failed sign-ins. Try again in {wait} seconds."
        page = _login_refused(request, target, username, 429, message)
        page.headers["retry-after"] = str(wait)
        return page
    except (PermissionDenied, InvalidArgument, NotFound):
        return _login_refused(request, target, username, 401, "Invalid username or password.")
    store.drop(request.cookies.get(SESSION_COOKIE))  # a fresh id at every login (no fixation)
    session_id, _ = store.create(user.user_id, user.username)
    response = _redirect(target)
    response.headers.append(
        "set-cookie", cookie_header(SESSION_COOKIE, session_id, secure=is_secure(request.scope))
    )
    return response


def _login_refused(
    request: Request, target: str, username: str, status: int, error: str
) -> HTMLResponse:
    return _page(request, "login.html", caller=None, status=status, title="Log in",
                 next=target, error=error, username=username)  # fmt: skip


@router.post("/logout", **public())
def logout(request: Request) -> Response:
    store = sessions_of(request.app.state)
    if store is not None:
        store.drop(request.cookies.get(SESSION_COOKIE))
    response = _redirect("/login" if _login_enabled(request) else "/")
    response.headers.append(
        "set-cookie", clear_cookie_header(SESSION_COOKIE, secure=is_secure(request.scope))
    )
    return response


# projects ------------------------------------------------------------------------------------
@router.get("/", **authenticated())
def projects_page(request: Request) -> HTMLResponse:
    caller, stack = caller_of(request), stack_of(request)
    projects = [
        p for p in stack.projects.list_projects() if caller.may("project.read", p.project_id)
    ]
    counts: dict[str, int] = {}
    for exp in stack.tracking.list_experiments():
        counts[exp.project_id] = counts.get(exp.project_id, 0) + 1
    return _page(
        request,
        "projects.html",
        caller=caller,
        title="Projects",
        nav="projects",
        projects=projects,
        counts=counts,
    )


@router.get("/projects/{project}", **protected("project.read", project_scope))
def project_page(request: Request, project: str) -> HTMLResponse:
    caller, stack = caller_of(request), stack_of(request)
    proj = stack.projects.get_project(project)
    experiments = []
    if caller.may("experiment.read", proj.project_id):
        experiments = stack.tracking.list_experiments(project=proj.project_id)
    best = {}
    if caller.may("run.read", proj.project_id):
        best = pages.kpi_best(stack.tracking, proj, experiments)
    return _page(
        request,
        "project.html",
        caller=caller,
        title=proj.name,
        nav="projects",
        project=proj,
        experiments=experiments,
        best=best,
    )


# runs table ----------------------------------------------------------------------------------
@router.get("/experiments/{experiment_id}", **protected("experiment.read", experiment_scope))
def experiment_page(
    request: Request,
    experiment_id: str,
    filter: Text = "",
    order_by: Short = "",
    page_token: Text = "",
    page: Annotated[int, Query(ge=1, le=10**9)] = 1,
    size: Annotated[int, Query(ge=1, le=100)] = 50,
    view: Annotated[str, Query(max_length=20)] = "active_only",
) -> HTMLResponse:
    """One keyset page of runs (never OFFSET): the store's search, at most 100 rows."""
    caller, stack = caller_of(request), stack_of(request)
    experiment = stack.tracking.get_experiment(experiment_id)
    caller.require("run.read", experiment.project_id)
    project = stack.projects.get_project(experiment.project_id)
    try:
        view_type = ViewType(view)
    except ValueError:
        view_type = ViewType.ACTIVE_ONLY
    runs: list[Run] = []
    next_token, error = None, None
    try:
        result = stack.tracking.search_runs(
            [experiment_id],
            filter_string=filter or None,
            order_by=[order_by] if order_by else None,
            max_results=size,
            page_token=page_token or None,
            view=view_type,
        )
        runs, next_token = result.items, result.next_page_token
    except InvalidArgument as e:
        error = e.message
    current = views.current_order(order_by)
    kpi_metrics = [k.metric for k in project.kpis]
    columns = views.choose_columns(
        runs, preferred_metrics=kpi_metrics, pinned=views.pinned_column(current)
    )
    base = f"/experiments/{quote(experiment_id)}"
    keep = {
        "filter": filter,
        "size": size if size != 50 else None,
        "view": view_type.value if view_type is not ViewType.ACTIVE_ONLY else None,
    }

    def header(label: str, entity: str, key: str, cls: str = "") -> dict[str, Any]:
        link = views.sort_link(entity, key, current)
        href = _url(base, **keep, order_by=link.order_by) if link.order_by else None
        return {"label": label, "href": href, "arrow": link.arrow, "cls": cls}

    headers = [
        header("Run", "attribute", "run_name"),
        header("Status", "attribute", "status"),
        header("Started", "attribute", "start_time"),
        {"label": "Duration", "href": None, "arrow": "", "cls": ""},
        header("User", "attribute", "user"),
        *[header(k, "param", k, "param") for k in columns.params],
        *[header(k, "metric", k, "metric num") for k in columns.metrics],
    ]
    next_url = None
    if next_token:
        next_url = _url(base, **keep, order_by=order_by, page_token=next_token, page=page + 1)
    first_url = _url(base, **keep, order_by=order_by) if page_token else None
    return _page(
        request,
        "experiment.html",
        caller=caller,
        title=experiment.name,
        nav="projects",
        status=400 if error else 200,
        experiment=experiment,
        project=project,
        runs=runs,
        columns=columns,
        headers=headers,
        filter=filter,
        order_by=order_by,
        size=size,
        sizes=PAGE_SIZES,
        view=view_type.value,
        error=error,
        page=page,
        next_url=next_url,
        first_url=first_url,
    )


# one run -------------------------------------------------------------------------------------
@router.get("/runs/{run_id}", **protected("run.read", run_scope))
def run_page(
    request: Request,
    run_id: str,
    path: Annotated[str, Query(max_length=1024)] = "",
    artifact: Annotated[str, Query(max_length=1024)] = "",
) -> HTMLResponse:
    caller, stack = caller_of(request), stack_of(request)
    run = stack.tracking.get_run(run_id)
    experiment = stack.tracking.get_experiment(run.experiment_id)
    project = stack.projects.get_project(experiment.project_id)
    kpi_metrics = [k.metric for k in project.kpis]
    charts = pages.curves(
        stack.tracking, [run], kpi_metrics, limit=views.MAX_CHARTS, label=lambda r: r.run_name
    )
    children = stack.tracking.search_runs(
        [run.experiment_id],
        filter_string=f"attributes.parent_run_id = '{run.run_id}'",
        max_results=50,
    ).items
    browser = None
    if caller.may("artifact.read", project.project_id):
        browser = pages.artifact_browser(stack.tracking, stack.artifacts, run, path, artifact)
    return _page(
        request,
        "run.html",
        caller=caller,
        title=run.run_name,
        nav="projects",
        run=run,
        experiment=experiment,
        project=project,
        charts={"charts": charts},
        children=children,
        browser=browser,
        kpi_metrics=set(kpi_metrics),
    )


@router.get("/runs/{run_id}/artifact", **protected("artifact.read", run_scope))
def run_artifact(
    request: Request,
    run_id: str,
    path: Annotated[str, Query(min_length=1, max_length=1024)],
    download: bool = False,
) -> Response:
    """An artifact's bytes: raster images inline (same origin, for previews); everything else
    as an attachment, so nothing a run uploaded ever renders as a page of this site."""
    stack = stack_of(request)
    run = stack.tracking.get_run(run_id)
    rel = clean_relpath(path)
    media = None if download else views.image_media_type(rel)
    name = rel.rsplit("/", 1)[-1]
    headers = {
        "content-security-policy": "default-src 'none'; sandbox",
        "cache-control": "private, no-cache",
        "content-disposition": (
            f"inline; filename*=UTF-8''{quote(name)}"
            if media
            else f"attachment; filename*=UTF-8''{quote(name)}"
        ),
    }
    records = {r.path: r for r in stack.tracking.list_artifact_records(run_id)}
    record = records.get(rel)
    if record is not None and record.size <= VERIFIED_INLINE_BYTES:
        data = RunArtifacts(stack.tracking, stack.artifacts).read_bytes(run, rel)
        return Response(data, media_type=media or "application/octet-stream", headers=headers)
    chunks: Iterator[bytes] = stack.artifacts.open_read(f"{run.artifact_path}/{rel}")
    if record is not None:  # too big to check first: checked as it streams, aborted on mismatch
        chunks = _digest_checked(chunks, record.sha256, run_id, rel)
    return StreamingResponse(
        chunks, media_type=media or "application/octet-stream", headers=headers
    )


def _digest_checked(chunks: Iterator[bytes], sha256: str, run_id: str, rel: str) -> Iterator[bytes]:
    """The stream, its last chunk withheld on a digest mismatch: the error raised inside the
    response makes the server drop the connection, so the browser sees a failed download."""
    try:
        yield from verified_chunks(chunks, sha256, rel)
    except IntegrityError as e:
        log.error("artifact %r of run %s aborted while streaming: %s", rel, run_id, e.message)
        raise


# compare -------------------------------------------------------------------------------------
@router.get("/compare", **protected("run.read"))
def compare_page(
    request: Request, runs: Annotated[list[str], Query(max_length=20)]
) -> HTMLResponse:
    caller, stack, index = caller_of(request), stack_of(request), index_of(request)
    ids = views.compare_ids(r[:1000] for r in runs)
    for run_id in ids:
        caller.require("run.read", index.of_run(run_id))
    chosen = [stack.tracking.get_run(run_id) for run_id in ids]
    params = views.diff_rows(chosen, lambda r: r.params)
    metrics = views.diff_rows(chosen, lambda r: r.metrics)
    tags = views.diff_rows(chosen, lambda r: r.tags)
    charts = pages.curves(
        stack.tracking,
        chosen,
        (),
        limit=8,
        points=1000,
        label=lambda r: f"{r.run_name} ({r.run_id[:8]})",
    )
    experiments = {r.experiment_id: stack.tracking.get_experiment(r.experiment_id) for r in chosen}
    return _page(
        request,
        "compare.html",
        caller=caller,
        title="Compare runs",
        nav="projects",
        runs=chosen,
        params=params,
        metrics=metrics,
        tags=tags,
        charts={"charts": charts, "legend": True},
        experiments=experiments,
    )


# audit ---------------------------------------------------------------------------------------
AUDIT_TYPES = ("project", "experiment", "run", "user", "token", "membership")


@router.get("/audit", **protected("audit.read"))
def audit_page(
    request: Request,
    object_type: Annotated[str, Query(max_length=64)] = "",
    object_id: Annotated[str, Query(max_length=256)] = "",
    actor: Annotated[str, Query(max_length=256)] = "",
    action: Annotated[str, Query(max_length=64)] = "",
    until: int | None = None,
    before: int | None = None,
    verify: bool = False,
) -> HTMLResponse:
    """The newest events first, a page at a time (``before`` walks back in time); the store
    filters by the caller's projects, so every page but the last is full."""
    caller, stack = caller_of(request), stack_of(request)
    fetched = stack.audit.list_events(
        object_type=object_type or None,
        object_id=object_id or None,
        actor=actor or None,
        action=action or None,
        until=until,
        before=before,
        projects=auditable(request),
        limit=AUDIT_PAGE,
    )
    page = list(reversed(fetched))
    oldest = page[-1] if len(page) == AUDIT_PAGE else None
    keep = {"object_type": object_type, "object_id": object_id, "actor": actor, "action": action}
    older_url = _url("/audit", **keep, until=until, before=oldest.seq) if oldest else None
    report = stack.audit.verify() if verify else None
    return _page(
        request,
        "audit.html",
        caller=caller,
        title="Audit log",
        nav="audit",
        events=[_event_view(e) for e in page],
        filters=keep,
        types=AUDIT_TYPES,
        older_url=older_url,
        newest_url=_url("/audit", **keep) if until or before else None,
        report=report,
        verify_url=_url("/audit", **keep, verify="true"),
    )


def _event_view(event: AuditEvent) -> dict[str, Any]:
    href = {"run": "/runs/", "experiment": "/experiments/", "project": "/projects/"}.get(
        event.object_type
    )
    return {
        "event": event,
        "href": f"{href}{quote(event.object_id, safe='')}" if href else None,
        "change": views.compact_json(event.change),
    }


# static files --------------------------------------------------------------------------------
@cache
def _gzipped(name: str) -> bytes:
    return gzip.compress(static_files()[name].path.read_bytes(), compresslevel=6)


@router.get("/static/{name:path}", **public())
def static(request: Request, name: str) -> Response:
    """The UI's own CSS and JS, and Plotly's bundle, from an allow-list (no path reaches disk)."""
    file = static_files().get(name)
    if file is None:
        raise NotFound(f"no static file {name[:100]!r}")
    headers = {"cache-control": "public, max-age=31536000, immutable", "vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", "") and file.path.stat().st_size > 4096:
        headers["content-encoding"] = "gzip"
        return Response(_gzipped(name), media_type=file.media_type, headers=headers)
    return Response(file.path.read_bytes(), media_type=file.media_type, headers=headers)
