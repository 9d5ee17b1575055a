"""The deployments' web pages: the list, one deployment's routing, traffic (from the prediction
log), latency and revisions; access, escaping, and one walk through them in a real browser."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
from fastapi.testclient import TestClient

from loopml.server.access import route_table
from loopml.server.app import create_app
from loopml.server.identity import token_authenticator
from loopml.serving.deployments import DeploymentSpec, Target
from loopml.serving.predlog import PredictionLogger, PredictionRecord
from loopml.settings import Settings
from loopml.stack import Stack
from loopml.testing.registry_contract import log_fake_package
from server_fixtures import uvicorn_server
from ui_fixtures import EVIL, ORIGIN, PASSWORD, login, page, populate, text_of

ESCAPED = html.escape(EVIL, quote=False)
CHROMIUM = "/usr/bin/chromium"
NAME = "fraud-api"
MODEL = "fraud-detector"
CHALLENGER = "fraud-detector-xgb"
BETA = "beta-scoring"
HOUR_MS = 3_600_000


@dataclass
class Traffic:
    """What :func:`seed` wrote to the prediction log in the last hour, per served version."""

    requests: dict[str, int] = field(default_factory=dict)  # "model:version[ shadow]" -> count
    errors: dict[str, int] = field(default_factory=dict)
    latency: dict[str, list[float]] = field(default_factory=dict)
    older: int = 0  # records 2 hours back (outside the default window)


def key(model: str, version: str, shadow: bool) -> str:
    return f"{model}:{version}" + (" (shadow)" if shadow else "")


def seed(stack: Stack) -> Traffic:
    """On top of :func:`populate`: two models with two versions each in *alpha*, ``fraud-api``
    (90/10 on fraud-detector v1/v2, the challenger alias of the second model as a shadow) taken
    to a 50/50 split and rolled back (3 revisions), 300 logged predictions in the last hour and
    a few older ones; and a deployment in *beta* without traffic."""
    populate(stack)
    registry, deployments = stack.registry, stack.deployments
    assert registry is not None and deployments is not None
    source = log_fake_package(stack, {"auc": 0.9})
    for model in (MODEL, CHALLENGER):
        registry.create_registered_model(model, project="alpha", actor="ada")
        for _ in range(2):
            registry.create_model_version(model, source, actor="ada")
    registry.set_alias(CHALLENGER, "challenger", 1, actor="ada")
    spec = DeploymentSpec(
        (
            Target(MODEL, version=1, weight=90),
            Target(MODEL, version=2, weight=10),
            Target(CHALLENGER, alias="challenger", shadow=True),
        ),
        shadow_share=0.25,
        sticky_key="X-Customer-Id",
        sample_rate=0.5,
        redact={"card_number": "drop", "email": "hash"},
    )
    deployments.create_deployment(NAME, spec, actor="ada", description=EVIL)
    deployments.set_traffic(NAME, {f"{MODEL}:1": 1, f"{MODEL}:2": 1}, actor="ada")
    deployments.rollback(NAME, actor="root")
    registry.create_registered_model("beta-model", project="beta", actor="setup")
    registry.create_model_version("beta-model", source, actor="setup")
    deployments.create_deployment(
        BETA, DeploymentSpec((Target("beta-model", version=1, weight=1),)), actor="setup"
    )

    traffic = Traffic()
    now = int(time.time() * 1000)
    log = PredictionLogger(stack.artifacts, flush_interval_s=60)
    for i in range(300):
        if i % 10 == 9:
            model, version, shadow, latency = CHALLENGER, "1", True, 40.0 + i % 7
        elif i % 10 == 4:
            model, version, shadow, latency = MODEL, "2", False, 20.0 + (i % 5) * 2
        else:
            model, version, shadow, latency = MODEL, "1", False, 5.0 + (i % 13)
        status = 500 if (model, version) == (MODEL, "1") and i % 17 == 0 else 200
        if (model, version) == (MODEL, "2") and i % 50 == 4:
            status = 503
        name = key(model, version, shadow)
        traffic.requests[name] = traffic.requests.get(name, 0) + 1
        traffic.errors[name] = traffic.errors.get(name, 0) + (status >= 400)
        traffic.latency.setdefault(name, []).append(latency)
        log.record(
            PredictionRecord(
                f"r{i}", NAME, model, version, now - 10_000 - i * 11_000, "/predict",
                {"amount": [float(i)]}, [0.1], latency_ms=latency, status=status, shadow=shadow,
            )
        )  # fmt: skip
    for i in range(7):  # two hours back: only in a wider window
        log.record(
            PredictionRecord(f"old{i}", NAME, MODEL, "1", now - 2 * HOUR_MS - i * 1000,
                             "/predict", {}, [], latency_ms=1.0)
        )  # fmt: skip
        traffic.older += 1
    log.close()
    assert log.written == 307 and log.dropped == 0
    return traffic


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    stack = Stack.from_settings(Settings(home=tmp_path_factory.mktemp("ui-deployments")))
    traffic = seed(stack)
    app = create_app(stack, authenticate=token_authenticator(stack))
    yield app, stack, traffic
    stack.close()


@pytest.fixture
def client(world):
    app, _stack, _traffic = world
    with TestClient(app, base_url=ORIGIN, raise_server_exceptions=False) as c:
        yield c


def section(body: str, ident: str) -> str:
    found = re.search(rf'<section[^>]*id="{ident}">.*?</section>', body, re.S)
    assert found, ident
    return found.group(0)


def traffic_table(body: str) -> dict[str, dict[str, str]]:
    """The traffic table's rows by version label: requests, errors and percentiles as shown."""
    rows = {}
    for row in re.findall(r'<tr class="(?:live|shadow)" data-version=.*?</tr>', body, re.S):
        shadow = row.startswith('<tr class="shadow"')
        version = re.search(r'data-version="([^"]+)"', row).group(1)
        cells = dict(re.findall(r'<td class="num (\w+)">([^<]*)</td>', row))
        rows[version + (" (shadow)" if shadow else "")] = cells
    return rows


def chart_data(body: str) -> dict:
    found = re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', body, re.S)
    assert found, "no chart data block"
    return json.loads(found.group(1))


# pages -------------------------------------------------------------------------------------
def test_list_shows_the_deployments_the_caller_may_read(world, client):
    login(client, "ada")
    body = page(client, "/deployments")
    assert '<a href="/deployments" aria-current="page">Deployments</a>' in body
    assert f'<a class="deployment-name" href="/deployments/{NAME}">{NAME}</a>' in body
    assert BETA not in body
    row = re.search(rf'<tr>\s*<td><a class="deployment-name" href="/deployments/{NAME}".*?</tr>',
                    body, re.S).group(0)  # fmt: skip
    text = text_of(row)
    assert "alpha" in text and '<td class="num">3</td>' in row  # the revision after rollback
    assert f"{MODEL}:1 90 % , {MODEL}:2 10 %" in text
    assert f"{CHALLENGER}@challenger" in text
    assert "root" in text and "<time datetime=" in row  # rolled back by root
    assert ESCAPED not in body  # the list shows no description


def test_deployment_page_shows_the_routing_now(world, client):
    login(client, "ada")
    body = page(client, f"/deployments/{NAME}")
    assert '<a href="/deployments" aria-current="page">Deployments</a>' in body
    routing = section(body, "routing")
    rows = re.findall(r'<tr class="(live|shadow)">(.*?)</tr>', routing, re.S)
    assert [kind for kind, _ in rows] == ["live", "live", "shadow"]
    first, second, shadow = (text_of(r) for _, r in rows)
    assert f"{MODEL} v1 v1" in first and "90 %" in first and "live" in first
    assert f"{MODEL} v2 v2" in second and "10 %" in second
    assert f"{CHALLENGER} @challenger v1" in shadow and "shadow" in shadow
    assert f'<a class="model-link" href="/models/{MODEL}">{MODEL}</a>' in routing
    assert f'href="/models/{CHALLENGER}/versions/1">v1</a>' in routing  # the alias, resolved
    assert "badge-stage-candidate" in routing
    settings = text_of(re.search(r'<table class="kv settings">.*</table>', routing, re.S)[0])
    assert "25 % of requests mirrored to the shadows" in settings
    assert "X-Customer-Id" in settings and "50 % of predictions logged" in settings
    assert "card_number drop" in settings and "email hash" in settings
    assert "server default" in settings


def test_traffic_table_counts_each_served_version(world, client):
    _app, _stack, traffic = world
    login(client, "ada")
    body = page(client, f"/deployments/{NAME}")
    table = traffic_table(section(body, "traffic"))
    assert list(table) == [f"{MODEL}:1", f"{MODEL}:2", f"{CHALLENGER}:1 (shadow)"]
    assert sum(traffic.requests.values()) == 300
    for name, cells in table.items():
        assert int(cells["requests"]) == traffic.requests[name], name
        assert int(cells["errors"]) == traffic.errors[name], name
        for q in (50, 90, 99):
            expected = float(np.quantile(traffic.latency[name], q / 100))
            assert float(cells[f"p{q}"]) == pytest.approx(expected, abs=1e-3), (name, q)
    assert traffic.errors[f"{MODEL}:1"] > 0 and traffic.errors[f"{MODEL}:2"] > 0
    assert traffic.errors[f"{CHALLENGER}:1 (shadow)"] == 0
    live = traffic.requests[f"{MODEL}:1"] + traffic.requests[f"{MODEL}:2"]
    share = round(100 * traffic.requests[f"{MODEL}:2"] / live, 1)
    assert f"{share:g} %" in text_of(section(body, "traffic"))
    assert f'href="/models/{MODEL}/versions/2">{MODEL}:2</a>' in body
    assert "No traffic logged" not in body


def test_charts_carry_requests_and_latency_per_minute_per_version(world, client):
    _app, _stack, traffic = world
    login(client, "ada")
    body = page(client, f"/deployments/{NAME}")
    data = chart_data(body)
    assert data["legend"] is True
    charts = {c["id"]: c for c in data["charts"]}
    assert list(charts) == ["requests", "latency"]
    assert charts["requests"]["title"] == "Requests per minute"
    for chart in charts.values():
        names = [t["name"] for t in chart["traces"]]
        assert names == [f"{MODEL}:1", f"{MODEL}:2", f"{CHALLENGER}:1 (shadow)"]
        assert f'<div id="chart-{chart["id"]}" class="plot"' in body
        for trace in chart["traces"]:
            assert 60 <= len(trace["value"]) <= 61  # one point a minute over the hour
            assert len(trace["time"]) == len(trace["step"]) == len(trace["value"])
    for trace in charts["requests"]["traces"]:
        assert sum(trace["value"]) == traffic.requests[trace["name"]]  # per-minute rates
    for trace in charts["latency"]["traces"]:
        known = [v for v in trace["value"] if v is not None]
        lo, hi = min(traffic.latency[trace["name"]]), max(traffic.latency[trace["name"]])
        assert known and all(lo <= v <= hi for v in known)
        assert None in trace["value"]  # minutes without requests are gaps, not zeros
    # the local Plotly bundle and the page's script; no inline script
    assert re.search(r'<script src="/static/vendor/plotly-[0-9a-f]+\.min\.js\?v=', body)
    scripts = re.findall(r"<script(?![^>]*\bsrc=)([^>]*)>", body)
    assert scripts == [' type="application/json" id="chart-data"']
    assert '<select id="chart-x">' in body


def test_a_wider_window_counts_older_traffic(world, client):
    _app, _stack, traffic = world
    login(client, "ada")
    body = page(client, f"/deployments/{NAME}?hours=3")
    assert "the last 3 hours" in body
    table = traffic_table(section(body, "traffic"))
    assert int(table[f"{MODEL}:1"]["requests"]) == traffic.requests[f"{MODEL}:1"] + traffic.older
    wide = chart_data(page(client, f"/deployments/{NAME}?hours=168"))
    trace = wide["charts"][0]["traces"][0]
    assert len(trace["value"]) in (336, 337)  # 30-minute points over the week
    total = traffic.requests[f"{MODEL}:1"] + traffic.older
    assert sum(trace["value"]) * 30 == pytest.approx(total, abs=0.5)
    assert wide["charts"][1]["title"] == "p50 latency (ms) per 30 minutes"
    for bad in ("0", "169", "x"):
        assert client.get(f"/deployments/{NAME}?hours={bad}").status_code == 400, bad


def test_revision_history_newest_first(world, client):
    login(client, "ada")
    body = page(client, f"/deployments/{NAME}")
    history = section(body, "history")
    rows = re.findall(r"<tr(?: class=\"current\")?>\s*<td class=\"num\">(\d+).*?</tr>",
                      history, re.S)  # fmt: skip
    assert rows == ["3", "2", "1"]
    reasons = re.findall(r'<td class="reason">([^<]*)</td>', history)
    assert reasons == ["rollback to 1", "traffic", "create"]
    text = text_of(history)
    assert f"{MODEL}:1 50 % , {MODEL}:2 50 %" in text  # revision 2's split
    assert text.count(f"{MODEL}:1 90 % , {MODEL}:2 10 %") == 2  # revisions 1 and 3
    assert text.count(f"{CHALLENGER}@challenger") == 3
    assert "current" in re.search(r'<tr class="current">.*?</tr>', history, re.S).group(0)
    assert "root" in text and "ada" in text


def test_an_empty_log_says_so(world, client):
    login(client, "bob")  # a viewer on beta
    body = page(client, f"/deployments/{BETA}")
    assert "No traffic logged in the last hour." in body
    assert 'id="chart-data"' not in body and "plotly" not in body
    assert '<span class="muted">no shadows</span>' in body
    assert "None: inputs are logged as sent." in body
    assert "none: each request is drawn by weight" in body
    assert "No traffic logged in the last 6 hours." in page(client, f"/deployments/{BETA}?hours=6")


def test_every_user_string_is_escaped(world, client):
    login(client, "ada")
    for path in ("/deployments", f"/deployments/{NAME}", f"/deployments/{NAME}?hours=24"):
        assert EVIL not in page(client, path), path
    body = page(client, f"/deployments/{NAME}")
    assert f'<p class="description">{ESCAPED}</p>' in body


def test_other_projects_deployments_are_hidden_and_forbidden(world, client):
    login(client, "bob")  # a viewer on beta only
    body = page(client, "/deployments")
    assert BETA in body and NAME not in body
    for path in (f"/deployments/{NAME}", f"/deployments/{NAME}?hours=24"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 403, path
        assert response.json()["error"]["code"] == "permission_denied"
        assert MODEL not in response.text and "X-Customer-Id" not in response.text
    assert client.get("/deployments/no-such-deployment").status_code == 404
    login(client, "ada")
    assert client.get(f"/deployments/{BETA}").status_code == 403
    login(client, "root")  # an admin sees both
    listing = page(client, "/deployments")
    assert NAME in listing and BETA in listing


def test_pages_need_a_login(client):
    for path, quoted in (("/deployments", "%2Fdeployments"),
                         (f"/deployments/{NAME}", f"%2Fdeployments%2F{NAME}")):  # fmt: skip
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == f"/login?next={quoted}"


def test_routes_are_declared_and_kept_out_of_the_api_schema(world):
    app, _stack, _traffic = world
    table = {(p, tuple(sorted(m))): a for p, m, a, _g in route_table(app.routes)}
    assert table[("/deployments", ("GET",))] == "authenticated"
    assert table[("/deployments/{name}", ("GET",))] == "model.read"
    assert not [p for p in app.openapi()["paths"] if p.startswith("/deployments")]


# a real browser ----------------------------------------------------------------------------
@pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and shutil.which(CHROMIUM)),
    reason=f"the browser test needs Debian's Chromium at {CHROMIUM} (apt-get install chromium)",
)
def test_browse_deployments_to_the_traffic_charts(tmp_path):
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the browser test needs playwright (the dev extra)"
    )
    expect = sync_api.expect
    stack = Stack.from_settings(Settings(home=tmp_path))
    try:
        seed(stack)
        app = create_app(stack, authenticate=token_authenticator(stack))
        with uvicorn_server(app) as url, sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
            )
            try:
                tab = browser.new_page(viewport={"width": 1400, "height": 1000})
                dialogs: list[str] = []
                problems: list[str] = []
                tab.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
                tab.on("console", lambda m: m.type == "error" and problems.append(m.text))
                tab.on("pageerror", lambda e: problems.append(str(e)))
                tab.goto(f"{url}/deployments")
                expect(tab).to_have_url(re.compile(r"/login\?next=%2Fdeployments$"))
                tab.fill('input[name="username"]', "ada")
                tab.fill('input[name="password"]', PASSWORD)
                tab.click('form[action="/login"] button[type="submit"]')
                expect(tab).to_have_url(f"{url}/deployments")
                expect(tab.locator("table.deployments tbody tr")).to_have_count(1)
                tab.click(f'table.deployments a.deployment-name:has-text("{NAME}")')
                expect(tab.locator("h1")).to_contain_text(NAME)
                assert EVIL in tab.inner_text("p.description")  # shown as text
                for chart in ("requests", "latency"):
                    plot = tab.locator(f"#chart-{chart}")
                    expect(plot).to_have_class(re.compile(r"\bjs-plotly-plot\b"))
                    expect(plot.locator("svg.main-svg").first).to_be_visible()
                expect(tab.locator("#chart-requests .legend")).to_contain_text(f"{MODEL}:2")
                tab.select_option("#chart-x", "step")  # redraws against minutes
                expect(tab.locator("#chart-requests .xtitle")).to_contain_text("step")
                expect(tab.locator("table.traffic tbody tr")).to_have_count(3)
                expect(tab.locator("table.revisions tbody tr")).to_have_count(3)
                tab.click(f'table.routing a.model-link:has-text("{CHALLENGER}")')
                expect(tab.locator("h1")).to_contain_text(CHALLENGER)
                assert dialogs == [], "a user string ran as script"
                assert problems == [], problems
            finally:
                browser.close()
    finally:
        stack.close()


def test_doctests():
    import doctest

    from loopml.server.routes import ui_deployments

    result = doctest.testmod(ui_deployments)
    assert result.attempted > 0 and result.failed == 0
