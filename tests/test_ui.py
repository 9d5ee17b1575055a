"""The web UI through the ASGI app: pages, escaping, login, sessions, CSRF, access, pagination."""

from __future__ import annotations

import hashlib
import html
import json
import re
import time

import pytest
from fastapi.testclient import TestClient

from loopml.server.access import route_table
from loopml.server.app import create_app
from loopml.server.identity import token_authenticator
from loopml.server.sessions import SessionStore
from loopml.settings import Settings
from loopml.stack import Stack
from loopml.tracking.entities import Metric, Param
from ui_fixtures import EVIL, ORIGIN, PASSWORD, UiWorld, csrf_of, login, populate

ESCAPED = html.escape(EVIL, quote=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    stack = Stack.from_settings(Settings(home=tmp_path_factory.mktemp("ui")))
    ids = populate(stack)
    app = create_app(stack, authenticate=token_authenticator(stack))
    yield app, stack, ids
    stack.close()


@pytest.fixture
def browser(world):
    """A fresh cookie jar on the auth-on app (a browser nobody has logged in with yet)."""
    app, _stack, _ids = world
    with TestClient(app, base_url=ORIGIN, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def ada(browser) -> TestClient:
    login(browser, "ada")
    return browser


def _pages(ids: UiWorld) -> list[str]:
    a, b = ids.runs["baseline"], ids.runs[EVIL]
    return [
        "/",
        "/projects/alpha",
        f"/experiments/{ids.experiment}",
        f"/experiments/{ids.evil_experiment}",
        f"/runs/{b}",
        f"/runs/{b}?artifact=notes.txt",
        f"/runs/{b}?path=eval&artifact=eval/metrics.json",
        f"/runs/{a}?path=plots&artifact=plots/curve.png",
        f"/compare?runs={a},{b}",
    ]


# pages -------------------------------------------------------------------------------------
def test_every_page_renders_for_an_authorized_caller(world, ada):
    _app, _stack, ids = world
    expected = {
        "/": ["alpha", "Catch fraud"],
        "/projects/alpha": [
            "fraud caught",
            "val_auc",
            "maximize",
            "loss ceiling",
            "minimize",
            "fraud-models",
            "recall above 0.9",
            "Best run",
        ],
        f"/experiments/{ids.experiment}": [
            "baseline",
            "tuned",
            "crashed",
            "badge-failed",
            "badge-finished",
            "val_auc",
            "lr",
            "Compare selected",
        ],
        f"/runs/{ids.runs[EVIL]}": [
            "val_loss",
            "chart-data",
            "transactions",
            "?path=plots#artifacts",
            "Peak memory",
            "300.0 MiB",
            "model_family",
        ],
        f"/runs/{ids.runs[EVIL]}?artifact=notes.txt": ['<pre class="file">notes for'],
        f"/runs/{ids.runs['baseline']}?path=plots&artifact=plots/curve.png": [
            f'<img src="/runs/{ids.runs["baseline"]}/artifact?path=plots/curve.png"'
        ],
        f"/compare?runs={ids.runs['baseline']},{ids.runs['tuned']}": [
            'class="differs"',
            "depth",
            "chart-data",
            "baseline",
            "tuned",
        ],
    }
    for path, needles in expected.items():
        response = ada.get(path)
        assert response.status_code == 200, (path, response.text[:300])
        assert response.headers["content-type"].startswith("text/html")
        for needle in needles:
            assert needle in response.text, (path, needle)
    assert "ada" in ada.get("/").text  # the signed-in user in the navigation


def test_json_artifacts_are_pretty_and_escaped(world, ada):
    _app, _stack, ids = world
    page = ada.get(f"/runs/{ids.runs['tuned']}?path=eval&artifact=eval/metrics.json").text
    assert "&#34;recall&#34;: 0.91,\n" in page  # indented, one key a line
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_audit_page_for_admins_lists_and_filters_events(world, browser):
    _app, _stack, _ids = world
    login(browser, "root")
    page = browser.get("/audit").text
    assert "run.create" in page and "project.create" in page and 'aria-current="page">Audit' in page
    only_runs = browser.get("/audit", params={"object_type": "run"}).text
    assert "run.create" in only_runs and "project.create" not in only_runs
    verified = browser.get("/audit", params={"verify": "true"}).text
    assert "The hash chain is intact" in verified


def test_nan_and_infinity_reach_the_charts_as_gaps(world, ada):
    _app, _stack, ids = world
    page = ada.get(f"/runs/{ids.runs['tuned']}").text
    data = json.loads(re.search(r'id="chart-data">(.*?)</script>', page, re.S).group(1))
    grad = next(c for c in data["charts"] if c["title"] == "grad_norm")
    assert grad["traces"][0]["value"] == [1.0, None, None, None, 0.5]
    assert "NaN" not in page.split('id="chart-data">')[1].split("</script>")[0]


def test_user_strings_are_escaped_everywhere(world, ada):
    _app, _stack, ids = world
    for path in _pages(ids):
        page = ada.get(path).text
        assert EVIL not in page, path
        assert "<img src=x" not in page, path
    run_page = ada.get(f"/runs/{ids.runs[EVIL]}").text
    assert ESCAPED in run_page  # shown, as text
    assert "\\u003cimg src=x onerror=alert(1)\\u003e" in run_page  # chart JSON, escaped too
    assert ESCAPED in ada.get(f"/experiments/{ids.evil_experiment}").text


def test_search_box_takes_the_filter_language_and_errors_point_at_the_position(world, ada):
    _app, _stack, ids = world
    page = ada.get(
        f"/experiments/{ids.experiment}",
        params={"filter": "params.depth = '6' and attributes.status = 'FINISHED'"},
    )
    assert page.status_code == 200
    assert ids.runs["tuned"] in page.text and ids.runs["baseline"] not in page.text
    bad = ada.get(f"/experiments/{ids.experiment}", params={"filter": "metrics.val_auc >"})
    assert bad.status_code == 400 and 'class="error"' in bad.text and "position" in bad.text


def test_sortable_headers_order_the_runs(world, ada):
    _app, _stack, ids = world
    page = ada.get(f"/experiments/{ids.experiment}").text
    link = re.search(r'href="([^"]*order_by=metrics\.val_auc[^"]*)"', page)
    assert link, "the val_auc column header is a sort link"
    ordered = ada.get(html.unescape(link.group(1))).text
    positions = [ordered.index(f"/runs/{ids.runs[n]}") for n in (EVIL, "tuned", "baseline")]
    assert positions == sorted(positions)  # best val_auc first
    assert "▼" in ordered


# login, sessions, CSRF -----------------------------------------------------------------------
def test_wrong_password_and_unknown_user_get_the_same_generic_error(browser):
    token = csrf_of(browser.get("/login").text)
    answers = []
    for user, password in (("ada", "wrong password here"), ("nobody", "whatever password")):
        response = browser.post(
            "/login",
            data={"username": user, "password": password, "csrf_token": token},
            headers={"Origin": ORIGIN},
            follow_redirects=False,
        )
        assert response.status_code == 401 and "set-cookie" not in response.headers
        answers.append(re.findall(r'class="error" role="alert">([^<]*)<', response.text))
    assert answers[0] == answers[1] == ["Invalid username or password."]


def test_session_cookie_is_httponly_samesite_lax_and_secure_over_https(world):
    app, _stack, _ids = world
    for base, secure in ((ORIGIN, False), ("https://testserver", True)):
        with TestClient(app, base_url=base) as client:
            token = csrf_of(client.get("/login").text)
            response = client.post(
                "/login",
                data={"username": "ada", "password": PASSWORD, "csrf_token": token},
                headers={"Origin": base},
                follow_redirects=False,
            )
            cookie = next(
                c
                for c in response.headers.get_list("set-cookie")
                if c.startswith("loopml_session=")
            )
            flags = [f.strip() for f in cookie.split(";")]
            assert "HttpOnly" in flags and "SameSite=Lax" in flags and "Path=/" in flags
            assert ("Secure" in flags) is secure
            assert len(cookie.split(";")[0].split("=", 1)[1]) >= 43  # 32 random bytes


def test_logout_ends_the_session_on_the_server(world, ada):
    _app, _stack, ids = world
    stolen = ada.cookies.get("loopml_session")
    token = csrf_of(ada.get("/").text)
    out = ada.post(
        "/logout", data={"csrf_token": token}, headers={"Origin": ORIGIN}, follow_redirects=False
    )
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert any("Max-Age=0" in c for c in out.headers.get_list("set-cookie"))
    ada.cookies.set("loopml_session", stolen)  # replaying the old cookie gets nowhere
    again = ada.get(f"/experiments/{ids.experiment}", follow_redirects=False)
    assert again.status_code == 303
    assert again.headers["location"] == f"/login?next=%2Fexperiments%2F{ids.experiment}"
    assert ada.get("/api/v1/experiments").status_code == 401  # the API keeps its JSON 401


def test_login_refuses_missing_token_and_foreign_origin_with_json_403(browser):
    token = csrf_of(browser.get("/login").text)
    good = {"username": "ada", "password": PASSWORD, "csrf_token": token}
    attempts = [
        ({k: v for k, v in good.items() if k != "csrf_token"}, {"Origin": ORIGIN}),
        ({**good, "csrf_token": "forged-token-forged-token-forged"}, {"Origin": ORIGIN}),
        (good, {"Origin": "https://evil.example"}),
        (good, {"Origin": "null"}),
        (good, {"Referer": "https://evil.example/page"}),
        (good, {}),  # neither Origin nor Referer
    ]
    for data, headers in attempts:
        response = browser.post("/login", data=data, headers=headers, follow_redirects=False)
        assert response.status_code == 403, (data, headers)
        assert response.json()["error"]["code"] == "permission_denied"
        assert "loopml_session" not in response.headers.get("set-cookie", "")
    referer = browser.post(
        "/login", data=good, headers={"Referer": f"{ORIGIN}/login"}, follow_redirects=False
    )
    assert referer.status_code == 303


def test_next_after_login_stays_on_this_site(browser):
    token = csrf_of(browser.get("/login").text)
    for target, expected in (
        ("//evil.example/x", "/"),
        ("https://evil.example", "/"),
        ("/projects/alpha", "/projects/alpha"),
    ):
        response = browser.post(
            "/login",
            data={"username": "ada", "password": PASSWORD, "csrf_token": token, "next": target},
            headers={"Origin": ORIGIN},
            follow_redirects=False,
        )
        assert response.headers["location"] == expected
        token = csrf_of(browser.get("/").text)


def test_cookie_authenticated_api_calls_need_csrf_token_same_origin_and_json(world, ada):
    _app, stack, _ids = world
    token = csrf_of(ada.get("/").text)
    body = '{"name": "csrf-made-this", "project": "alpha"}'
    refused = [
        (
            {
                "Origin": "https://evil.example",
                "X-CSRF-Token": token,
                "Content-Type": "application/json",
            },
            403,
        ),
        ({"Origin": ORIGIN, "X-CSRF-Token": token, "Content-Type": "text/plain"}, 415),
        ({"Origin": ORIGIN, "Content-Type": "text/plain"}, 415),
        ({"Origin": ORIGIN, "Content-Type": "application/json"}, 403),
        ({"Origin": ORIGIN, "X-CSRF-Token": "wrong", "Content-Type": "application/json"}, 403),
        ({"X-CSRF-Token": token, "Content-Type": "application/json"}, 403),  # no Origin
    ]
    for headers, status in refused:
        response = ada.post("/api/v1/experiments", content=body, headers=headers)
        assert response.status_code == status, (headers, response.text)
        assert response.json()["error"]["code"] in ("permission_denied", "unsupported_media_type")
    assert stack.tracking.get_experiment_by_name("csrf-made-this") is None
    delete = ada.delete(f"/api/v1/runs/{_ids.runs['crashed']}", headers={"Origin": ORIGIN})
    assert delete.status_code == 403
    ok = ada.post(
        "/api/v1/experiments",
        content=body,
        headers={"Origin": ORIGIN, "X-CSRF-Token": token, "Content-Type": "application/json"},
    )
    assert ok.status_code == 201 and ok.json()["name"] == "csrf-made-this"
    assert ada.get("/api/v1/whoami").json()["name"] == "ada"  # reads need no token


def test_bearer_token_api_calls_are_not_subject_to_csrf(world):
    app, stack, _ids = world
    assert stack.identity is not None
    _record, secret = stack.identity.create_token("ada", "ci", actor="setup")
    with TestClient(app, base_url=ORIGIN) as client:
        response = client.post(
            "/api/v1/experiments",
            json={"name": "by-token", "project": "alpha"},
            headers={"Authorization": f"Bearer {secret}"},
        )
        assert response.status_code == 201


def test_a_disabled_users_session_stops_working(world):
    app, stack, _ids = world
    assert stack.identity is not None
    stack.identity.create_user("carl", PASSWORD, actor="setup")
    stack.identity.grant("carl", "alpha", "viewer", actor="setup")
    with TestClient(app, base_url=ORIGIN) as client:
        login(client, "carl")
        assert client.get("/projects/alpha").status_code == 200
        stack.identity.disable_user("carl", actor="setup")
        assert client.get("/projects/alpha", follow_redirects=False).status_code == 303


# access --------------------------------------------------------------------------------------
def test_other_projects_are_hidden_and_forbidden(world, ada):
    _app, _stack, ids = world
    home = ada.get("/").text
    assert "alpha" in home and "beta" not in home and "Secret goal" not in home
    forbidden = [
        "/projects/beta",
        f"/experiments/{ids.beta_experiment}",
        f"/runs/{ids.beta_run}",
        f"/runs/{ids.beta_run}/artifact?path=notes.txt",
        f"/compare?runs={ids.runs['baseline']},{ids.beta_run}",
        "/audit",  # a data scientist does not read the audit log
    ]
    for path in forbidden:
        response = ada.get(path, follow_redirects=False)
        assert response.status_code == 403, path
        assert response.json()["error"]["code"] == "permission_denied"
    assert 'href="/audit"' not in home


def test_a_user_without_projects_sees_an_empty_list(world, browser):
    login(browser, "bob")  # a viewer on beta only
    page = browser.get("/").text
    assert "beta" in page and "alpha" not in page


def test_ui_routes_are_declared_like_api_routes(world):
    app, _stack, _ids = world
    table = {path: access for path, _methods, access, _guarded in route_table(app.routes)}
    assert table["/"] == "authenticated"
    assert table["/login"] == "public" and table["/logout"] == "public"
    assert table["/projects/{project}"] == "project.read"
    assert table["/experiments/{experiment_id}"] == "experiment.read"
    assert table["/runs/{run_id}"] == "run.read"
    assert table["/runs/{run_id}/artifact"] == "artifact.read"
    assert table["/compare"] == "run.read" and table["/audit"] == "audit.read"
    spec = app.openapi()["paths"]
    assert not [p for p in spec if not p.startswith("/api/") and p not in ("/healthz", "/metrics")]


# artifacts and static files ------------------------------------------------------------------
def test_artifacts_serve_raster_images_inline_and_everything_else_as_attachments(world, ada):
    _app, _stack, ids = world
    base = f"/runs/{ids.runs['baseline']}/artifact"
    png = ada.get(base, params={"path": "plots/curve.png"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG") and png.headers["content-disposition"].startswith(
        "inline"
    )
    for path in ("plots/evil.svg", "page.html", "notes.txt", "eval/metrics.json"):
        response = ada.get(base, params={"path": path})
        assert response.status_code == 200, path
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.headers["content-disposition"].startswith("attachment")
        assert "sandbox" in response.headers["content-security-policy"]
    download = ada.get(base, params={"path": "plots/curve.png", "download": "true"})
    assert download.headers["content-disposition"].startswith("attachment")
    for evil in ("../../../etc/passwd", "%2e%2e/%2e%2e/x", "/etc/passwd", "a/../../b"):
        assert ada.get(base, params={"path": evil}).status_code == 400, evil
    assert ada.get(base, params={"path": "missing.txt"}).status_code == 404


def test_static_files_come_from_an_allow_list_with_long_caching(browser):
    page = browser.get("/login").text
    css = re.search(r'href="(/static/loopml\.css\?v=[0-9a-f]+)"', page)
    assert css
    response = browser.get(css.group(1))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/css")
    assert "immutable" in response.headers["cache-control"]
    for bad in ("/static/../app.py", "/static/%2e%2e/%2e%2e/pyproject.toml", "/static/nope.js"):
        assert browser.get(bad).status_code == 404, bad


def test_plotly_is_served_locally(world, ada):
    _app, _stack, ids = world
    page = ada.get(f"/runs/{ids.runs['baseline']}").text
    src = re.search(r'<script src="(/static/vendor/plotly-[0-9a-f]+\.min\.js\?v=[0-9a-f]+)">', page)
    assert src, "the run page loads Plotly from /static"
    bundle = ada.get(src.group(1))  # TestClient asks for gzip, and gets it
    assert bundle.status_code == 200 and b"plotly" in bundle.content[:2000].lower()
    assert bundle.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page


def test_pages_carry_security_headers_and_no_store(world, ada):
    _app, _stack, ids = world
    for path in ("/", "/login", f"/runs/{ids.runs['baseline']}"):
        headers = ada.get(path).headers
        csp = headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "script-src" not in csp or "'unsafe-inline'" not in csp.split("script-src")[1]
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["cache-control"] == "no-store"


# pagination ----------------------------------------------------------------------------------
def test_pagination_visits_each_of_250_runs_exactly_once(world, ada):
    _app, stack, _ids = world
    exp = stack.tracking.create_experiment("many", project="alpha", actor="setup")
    made = set()
    for i in range(250):
        run = stack.tracking.create_run(
            exp.experiment_id,
            run_name=f"r{i}",
            user="ada",
            start_time=1_000 + i // 3,
            actor="setup",
        )
        stack.tracking.log_batch(
            run.run_id,
            metrics=[Metric("score", float(i % 17), 1, 0)],
            params=[Param("fold", str(i % 5))],
            actor="setup",
        )
        made.add(run.run_id)
    for order in (None, "metrics.score DESC", "params.fold ASC"):
        seen: list[str] = []
        url: str | None = f"/experiments/{exp.experiment_id}?size=100" + (
            f"&order_by={order}" if order else ""
        )
        pages = 0
        while url:
            page = ada.get(url)
            assert page.status_code == 200, page.text[:500]
            seen += re.findall(r'name="runs" value="([0-9a-f]{32})"', page.text)
            found = re.search(r'<a href="([^"]+)" rel="next"', page.text)
            url = html.unescape(found.group(1)) if found else None
            pages += 1
        assert pages == 3, order
        assert len(seen) == 250 and set(seen) == made, order
        assert "OFFSET" not in url if url else True


def test_runs_table_shows_kpi_metric_columns_first(world, ada):
    _app, _stack, ids = world
    page = ada.get(f"/experiments/{ids.experiment}").text
    heads = re.findall(r'<th class="metric num" scope="col"><a [^>]*>([^<]+)</a>', page)
    assert heads[:2] == ["val_auc", "val_loss"]


# auth off ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local(tmp_path_factory):
    stack = Stack.from_settings(Settings(home=tmp_path_factory.mktemp("ui-local"), user="me"))
    exp = stack.tracking.create_experiment(EVIL, actor="me")
    with TestClient(create_app(stack), base_url=ORIGIN) as client:
        yield client, exp.experiment_id
    stack.close()


def test_without_auth_the_ui_needs_no_login_and_shows_the_local_user(local):
    client, exp = local
    home = client.get("/")
    assert home.status_code == 200 and ">me<" in home.text and "Log out" not in home.text
    assert client.get("/login", follow_redirects=False).headers["location"] == "/"
    page = client.get(f"/experiments/{exp}")
    assert page.status_code == 200 and EVIL not in page.text and ESCAPED in page.text


def test_without_auth_foreign_pages_cannot_drive_the_api(local):
    client, _exp = local
    body = '{"name": "drive-by"}'
    text_plain = client.post(
        "/api/v1/experiments", content=body, headers={"Content-Type": "text/plain"}
    )
    assert text_plain.status_code == 415
    form = client.post("/api/v1/experiments", data={"name": "drive-by"})
    assert form.status_code == 415
    foreign = client.post(
        "/api/v1/experiments",
        content=body,
        headers={"Content-Type": "application/json", "Origin": "https://evil.example"},
    )
    assert foreign.status_code == 403
    assert client.get("/api/v1/experiments/by-name/drive-by").status_code == 404
    tool = client.post("/api/v1/experiments", json={"name": "from-a-script"})  # no Origin
    assert tool.status_code == 201


# the session store -----------------------------------------------------------------------------
def test_sessions_expire_when_idle_or_old_and_the_store_is_bounded():
    now = [0.0]
    store = SessionStore(
        idle_seconds=10, absolute_seconds=100, max_sessions=3, clock=lambda: now[0]
    )
    sid, session = store.create("u1", "ada")
    assert store.get(sid) is session and len(session.csrf_token) >= 43
    now[0] = 9
    assert store.get(sid) is session  # used: the idle clock restarts
    now[0] = 20
    assert store.get(sid) is None  # idle for 11 s
    sid = store.create("u1", "ada")[0]
    for t in range(21, 130, 9):
        now[0] = t
        found = store.get(sid)
    assert found is None  # older than 100 s, however busy
    ids = [store.create(f"u{i}", f"n{i}")[0] for i in range(5)]
    assert len(store) == 3 and store.get(ids[0]) is None and store.get(ids[-1]) is not None
    assert store.get("") is None and store.get("x" * 1000) is None


def test_auditors_see_only_their_projects_events(world, browser):
    _app, stack, ids = world
    assert stack.identity is not None
    stack.identity.create_user("rita", PASSWORD, actor="setup")
    stack.identity.grant("rita", "alpha", "risk_manager", actor="setup")
    login(browser, "rita")
    page = browser.get("/audit").text
    k = page.find(ids.beta_run[:12])
    assert k < 0, page[k - 800 : k + 100]
    mine = browser.get("/audit", params={"object_id": ids.runs["baseline"]}).text
    assert "<code>run.create</code>" in mine and 'href="/audit"' in mine
    theirs = browser.get("/audit", params={"object_id": ids.beta_run}).text
    assert "<code>run.create</code>" not in theirs and "No events." in theirs
    assert "user.create" not in page  # users and tokens are for admins


def test_a_missing_artifact_is_a_message_not_an_error(world, ada):
    _app, _stack, ids = world
    page = ada.get(f"/runs/{ids.runs['baseline']}", params={"artifact": "nope.txt"})
    assert page.status_code == 200 and "There is no such file in this run." in page.text
    assert ada.get(f"/runs/{ids.runs['baseline']}", params={"artifact": "../x"}).status_code == 400


@pytest.mark.parametrize("module", ["loopml.ui.views", "loopml.ui.formatting",
                                    "loopml.server.sessions"])  # fmt: skip
def test_doctests(module):
    import doctest
    import importlib

    assert doctest.testmod(importlib.import_module(module)).failed == 0


def test_a_login_holds_in_every_worker_and_a_logout_ends_it_everywhere(world):
    """Two apps over one database stand for two uvicorn workers."""
    app, stack, _ids = world
    other_worker = create_app(stack, authenticate=token_authenticator(stack))
    with (
        TestClient(app, base_url=ORIGIN) as first,
        TestClient(other_worker, base_url=ORIGIN) as second,
    ):
        csrf = login(first, "ada")
        second.cookies.set("loopml_session", first.cookies.get("loopml_session"))
        assert second.get("/api/v1/whoami").json()["name"] == "ada"
        key = hashlib.sha256(first.cookies["loopml_session"].encode()).hexdigest()
        row = stack.sessions.load(key)  # the database holds the hash, never the id
        assert row is not None and row.username == "ada"
        first.post("/logout", data={"csrf_token": csrf}, headers={"Origin": ORIGIN})
        time.sleep(2.1)  # a worker trusts its cached session for at most RECHECK_SECONDS
        assert second.get("/api/v1/whoami").status_code == 401
