"""/api/v1/docs: Swagger UI served by this server (no CDN), started without an inline script, so
the page's own CSP (same-origin scripts only) lets it run, offline too. Checked in the HTML and
in a real browser (Debian's Chromium, headless, driven by Playwright)."""

from __future__ import annotations

import os
import re
import shutil
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from loopml.server.access import route_table
from loopml.server.app import create_app
from loopml.settings import Settings
from loopml.stack import Stack
from server_fixtures import uvicorn_server

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = Stack.from_settings(Settings(home=tmp_path_factory.mktemp("api-docs")))
    yield stack
    stack.close()


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline: list[str] = []
        self.links: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        found = dict(attrs)
        if tag == "script":
            self.scripts.append(found)
            self._in_script = True
        for name in ("src", "href"):
            if found.get(name):
                self.links.append(str(found[name]))

    def handle_endtag(self, tag):
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline.append(data)


def test_docs_page_needs_nothing_from_elsewhere(stack):
    http = TestClient(create_app(stack), base_url="http://localhost")
    page = http.get("/api/v1/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'self'
    tags = _Tags()
    tags.feed(page.text)
    assert tags.inline == []  # no inline script for the CSP to block
    assert tags.scripts and all(s["src"] for s in tags.scripts)
    assert tags.links and all(link.startswith("/static/") for link in tags.links), tags.links
    for link in tags.links:  # every asset is served, from the installed package
        asset = http.get(link)
        assert asset.status_code == 200 and len(asset.content) > 100, link
    bundle = next(link for link in tags.links if "swagger-ui-bundle.js" in link)
    assert "SwaggerUIBundle" in http.get(bundle).text
    assert http.get("/api/v1/redoc").status_code == 404
    routes = {path: access for path, _m, access, _g in route_table(http.app.routes)}
    assert routes["/api/v1/docs"] == "public" and routes["/static/{name:path}"] == "public"


playwright = pytest.importorskip("playwright.sync_api", reason="needs playwright (the dev extra)")


@pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and shutil.which(CHROMIUM)),
    reason=f"the browser test needs Debian's Chromium at {CHROMIUM} (apt-get install chromium)",
)
def test_docs_render_in_a_browser_without_leaving_the_server(stack):
    with uvicorn_server(create_app(stack)) as url, playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox"])  # fmt: skip
        try:
            page = browser.new_page()
            requests: list[str] = []
            problems: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(f"{url}/api/v1/docs")
            page.wait_for_selector(".opblock-summary-path")
            paths = page.locator(".opblock-summary-path").all_inner_texts()
            assert len(paths) > 30
            assert any(re.search(r"/api/v1/runs/search", p) for p in paths)
            page.locator(".opblock-summary", has_text="/api/v1/runs/search").first.click()
            page.wait_for_selector(".opblock-body")  # an operation opens, its schema shown
        finally:
            browser.close()
    outside = [r for r in requests if not r.startswith(("http://127.0.0.1:", "data:"))]
    assert outside == []
    assert any(r.endswith("/api/v1/openapi.json") for r in requests)
    csp = [p for p in problems if "Content Security Policy" in p or "Refused to" in p]
    assert csp == [] and problems == [], problems
