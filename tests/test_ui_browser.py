"""The web UI in a real browser (Debian's Chromium, headless, driven by Playwright) against the
real app on uvicorn with auth on: log in, search, look at a run's charts, compare, log out."""

from __future__ import annotations

import os
import re
import shutil

import pytest

from loopml.server.app import create_app
from loopml.server.identity import token_authenticator
from loopml.settings import Settings
from loopml.stack import Stack
from server_fixtures import uvicorn_server
from ui_fixtures import EVIL, PASSWORD, populate

CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = "/tmp/loopml-run-page.png"

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the browser tests need playwright (the dev extra)"
)
if not (os.path.exists(CHROMIUM) and shutil.which(CHROMIUM)):
    pytest.skip(
        f"the browser tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium)",
        allow_module_level=True,
    )
expect = sync_api.expect


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    stack = Stack.from_settings(Settings(home=tmp_path_factory.mktemp("ui-browser")))
    ids = populate(stack)
    app = create_app(stack, authenticate=token_authenticator(stack))
    with uvicorn_server(app) as url:
        yield url, ids
    stack.close()


@pytest.fixture(scope="module")
def chromium():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        yield browser
        browser.close()


@pytest.fixture
def page(chromium):
    """A fresh browser tab that records dialogs (an XSS would open one) and console errors
    (a CSP violation is one)."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.dialogs = []
    tab.problems = []

    def on_dialog(dialog):
        tab.dialogs.append(dialog.message)
        dialog.dismiss()

    tab.on("dialog", on_dialog)
    tab.on("console", lambda m: m.type == "error" and tab.problems.append(m.text))
    tab.on("pageerror", lambda e: tab.problems.append(str(e)))
    yield tab
    context.close()


def log_in(page, url: str, username: str = "ada") -> None:
    page.fill('input[name="username"]', username)
    page.fill('input[name="password"]', PASSWORD)
    page.click('form[action="/login"] button[type="submit"]')


def test_log_in_search_look_compare_and_log_out(server, page):
    url, ids = server
    # A protected page sends a stranger to the login form, and back after logging in.
    page.goto(f"{url}/projects/alpha")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fprojects%2Falpha$"))
    log_in(page, url)
    expect(page).to_have_url(f"{url}/projects/alpha")
    expect(page.locator(".kpi-card")).to_have_count(2)
    assert EVIL in page.inner_text("main")  # the business goal, shown as text

    # The runs table, searched with the filter language.
    page.click("text=fraud-models")
    expect(page.locator("table.runs tbody tr")).to_have_count(4)
    page.fill('input[name="filter"]', "metrics.val_auc > 0.86 and params.model = 'rf'")
    page.press('input[name="filter"]', "Enter")
    expect(page.locator("table.runs tbody tr")).to_have_count(2)
    assert EVIL in page.inner_text("table.runs") and "baseline" not in page.inner_text("table.runs")

    # A run: its chart is drawn by Plotly, served from this server.
    page.click(f'table.runs a[href="/runs/{ids.runs["tuned"]}"]')
    expect(page.locator("h1")).to_contain_text("tuned")
    page.wait_for_selector("#chart-c0 .main-svg")
    page.wait_for_selector("#chart-c0 svg .trace")
    page.select_option("#chart-x", "time")
    page.wait_for_selector("#chart-c0 svg .trace")
    page.select_option("#chart-x", "step")
    page.click('#artifacts a.folder:has-text("plots")')
    page.click('#artifacts a:has-text("curve.png")')
    image = page.locator(".preview img")
    expect(image).to_be_visible()
    assert page.evaluate("img => img.naturalWidth", image.element_handle()) == 160
    page.wait_for_selector("#chart-c0 svg .trace")
    page.evaluate("window.scrollTo(0, 0)")  # the sticky top bar at the top of the picture
    page.screenshot(path=SCREENSHOT, full_page=True)

    # The run with the evil name: its name is text, nothing runs.
    page.goto(f"{url}/runs/{ids.runs[EVIL]}")
    page.wait_for_selector("#chart-c0 svg .trace")
    assert EVIL in page.inner_text("h1")
    assert EVIL in page.inner_text("main")

    # Compare two runs: the overlaid chart has a trace for each.
    page.goto(f"{url}/experiments/{ids.experiment}")
    page.check(f'input[value="{ids.runs["baseline"]}"]')
    page.check(f'input[value="{ids.runs[EVIL]}"]')
    page.click("button.compare-button")
    expect(page).to_have_url(re.compile(r"/compare\?runs="))
    page.wait_for_selector("#chart-c0 svg .trace")
    val_loss = page.locator(".plot", has_text="val_loss")
    expect(val_loss.locator(".scatterlayer .trace")).to_have_count(2)
    assert EVIL in page.inner_text("main")
    expect(page.locator("table.diff tr.differs", has_text="depth")).to_have_count(1)

    # The experiment named like a tag is text too.
    page.goto(f"{url}/projects/alpha")
    page.click(f'a[href="/experiments/{ids.evil_experiment}"]')
    expect(page.locator("h1")).to_contain_text(EVIL)

    # Log out: protected pages go back to the login form.
    page.click("text=Log out")
    expect(page).to_have_url(f"{url}/login")
    page.goto(f"{url}/runs/{ids.runs['tuned']}")
    expect(page).to_have_url(re.compile(r"/login\?next="))

    assert page.dialogs == [], "a user string ran as script"
    assert page.problems == [], page.problems  # no script errors, no CSP violations


def test_wrong_password_is_refused_and_a_foreign_page_cannot_post(server, page):
    url, _ids = server
    page.goto(f"{url}/login")
    page.fill('input[name="username"]', "ada")
    page.fill('input[name="password"]', "not the password")
    page.click('form[action="/login"] button[type="submit"]')
    expect(page.locator(".error")).to_have_text("Invalid username or password.")
    log_in(page, url)
    expect(page.locator("header .user")).to_have_text("ada")
    # A page on another origin (localhost is not 127.0.0.1) posts the classic JSON-in-a-
    # text/plain-form to the API and a logout form, with the person's cookies.
    foreign = url.replace("127.0.0.1", "localhost")
    attack = f"""<!doctype html><html><body>
      <form id="api" method="post" action="{url}/api/v1/experiments" enctype="text/plain">
        <input name='{{"name": "drive-by", "project": "alpha", "x": "' value='"}}'></form>
      <form id="out" method="post" action="{url}/logout"></form></body></html>"""
    page.route(
        f"{foreign}/evil", lambda route: route.fulfill(body=attack, content_type="text/html")
    )
    for form in ("api", "out"):
        page.goto(f"{foreign}/evil")
        with page.expect_navigation():
            page.evaluate("(id) => document.getElementById(id).submit()", form)
        assert page.url.startswith(url) and "permission_denied" in page.content(), form
    page.goto(f"{url}/projects/alpha")
    expect(page.locator("header .user")).to_have_text("ada")  # still logged in here
    assert "drive-by" not in page.inner_text("main")
    assert page.dialogs == []
