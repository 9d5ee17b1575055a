"""A small world for the web UI's tests: two projects, users with passwords and roles, runs with
metric curves, artifacts, and names that try to inject HTML."""

from __future__ import annotations

import html
import math
import re
import struct
import zlib
from dataclasses import dataclass, field

from fastapi.testclient import TestClient

from loopml.projects.entities import Direction, JudgedAt
from loopml.stack import Stack
from loopml.tracking.artifacts import RunArtifacts
from loopml.tracking.entities import Metric, Param, RunInput, RunStatus, RunTag

EVIL = "<img src=x onerror=alert(1)>"
PASSWORD = "correct horse battery staple"
ODD = [1.0, math.nan, math.inf, -math.inf, 0.5]  # values JSON cannot carry


def solid_png(width: int = 160, height: int = 90) -> bytes:
    """A valid RGB PNG (a blue rectangle), built by hand."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\x30\x60\xd0" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@dataclass
class UiWorld:
    """Ids of what :func:`populate` made. ``ada`` is a data scientist on *alpha* only."""

    alpha_id: str = ""
    beta_id: str = ""
    experiment: str = ""  # alpha's "fraud-models"
    evil_experiment: str = ""  # alpha's experiment named EVIL
    beta_experiment: str = ""
    runs: dict[str, str] = field(default_factory=dict)  # run name -> id, in "fraud-models"
    beta_run: str = ""


def populate(stack: Stack) -> UiWorld:
    identity = stack.identity
    assert identity is not None
    identity.create_first_admin("root", PASSWORD, actor="setup")
    ada = identity.create_user("ada", PASSWORD, display_name="Ada", actor="setup")
    bob = identity.create_user("bob", PASSWORD, actor="setup")
    projects, tracking = stack.projects, stack.tracking
    world = UiWorld()
    alpha = projects.create_project(
        "alpha",
        business_goal=f"Catch fraud {EVIL}",
        description="Card payments",
        owner="risk-team",
        actor="setup",
    )
    beta = projects.create_project(
        "beta", business_goal="Secret goal of beta", description="", owner="", actor="setup"
    )
    world.alpha_id, world.beta_id = alpha.project_id, beta.project_id
    projects.add_okr(
        "alpha", f"Stop fraud {EVIL}", ["recall above 0.9"], owner="cfo", actor="setup"
    )
    projects.add_kpi(
        "alpha",
        "fraud caught",
        metric="val_auc",
        target=0.9,
        direction=Direction.MAXIMIZE,
        judged_at=JudgedAt.VALIDATION,
        description=EVIL,
        owner="risk-team",
        actor="setup",
    )
    projects.add_kpi(
        "alpha",
        "loss ceiling",
        metric="val_loss",
        target=0.2,
        direction=Direction.MINIMIZE,
        judged_at=JudgedAt.VALIDATION,
        description="",
        owner="",
        actor="setup",
    )
    identity.grant(ada, "alpha", "data_scientist", actor="setup")
    identity.grant(bob, "beta", "viewer", actor="setup")

    exp = tracking.create_experiment("fraud-models", project="alpha", actor="setup")
    world.experiment = exp.experiment_id
    world.evil_experiment = tracking.create_experiment(
        EVIL, project="alpha", description=EVIL, actor="setup"
    ).experiment_id
    artifacts = RunArtifacts(tracking, stack.artifacts)
    specs = [("baseline", 0.01, 3, 0.0), ("tuned", 0.05, 6, 0.02), (EVIL, 0.1, 9, 0.04)]
    for i, (name, lr, depth, gain) in enumerate(specs):
        run = tracking.create_run(
            exp.experiment_id,
            run_name=name,
            user="ada",
            start_time=1_700_000_000_000 + i * 1000,
            tags={"note": EVIL, "model_family": "forest"},
            actor="setup",
        )
        curve = [
            Metric("val_loss", 1.0 / (step + 1) + 0.1 - gain, 1_700_000_000_000 + step, step)
            for step in range(20)
        ]
        tracking.log_batch(
            run.run_id,
            metrics=[
                *curve,
                Metric("val_auc", 0.85 + gain * 2, 1_700_000_000_100, 0),
                *[Metric("grad_norm", v, 1_700_000_000_000 + s, s) for s, v in enumerate(ODD)],
            ],
            params=[
                Param("lr", str(lr)),
                Param("depth", str(depth)),
                Param("model", "rf"),
                Param("comment", EVIL),
            ],
            tags=[RunTag("stage", "dev")],
            actor="setup",
        )
        tracking.log_inputs(
            run.run_id,
            [RunInput("transactions", "sha256:" + "ab" * 32, "train", EVIL)],
            actor="setup",
        )
        artifacts.log_bytes(run, f"notes for {name}\n{EVIL}\n".encode(), "notes.txt")
        artifacts.log_bytes(
            run, b'{"recall": 0.91, "html": "<script>alert(1)</script>"}', "eval/metrics.json"
        )
        artifacts.log_bytes(run, solid_png(), "plots/curve.png")
        artifacts.log_bytes(run, b"<svg onload=alert(1)></svg>", "plots/evil.svg")
        artifacts.log_bytes(run, b"<html><script>alert(1)</script></html>", "page.html")
        tracking.update_run(
            run.run_id,
            status=RunStatus.FINISHED,
            end_time=1_700_000_060_000 + i * 1000,
            cpu_seconds=12.5,
            peak_memory_bytes=300 * 2**20,
            actor="setup",
        )
        world.runs[name] = run.run_id
    failed = tracking.create_run(
        exp.experiment_id,
        run_name="crashed",
        user="ada",
        start_time=1_700_000_010_000,
        actor="setup",
    )
    tracking.update_run(
        failed.run_id, status=RunStatus.FAILED, end_time=1_700_000_011_000, actor="setup"
    )
    world.runs["crashed"] = failed.run_id

    beta_exp = tracking.create_experiment("beta-secret", project="beta", actor="setup")
    world.beta_experiment = beta_exp.experiment_id
    world.beta_run = tracking.create_run(
        beta_exp.experiment_id, run_name="beta-run", user="bob", start_time=1, actor="setup"
    ).run_id
    return world


ORIGIN = "http://testserver"


def csrf_of(page: str) -> str:
    """The session's CSRF token, from a login form or a page's meta tag."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', page) or re.search(
        r'name="csrf-token" content="([^"]*)"', page
    )
    assert found, "page has no CSRF token"
    return html.unescape(found.group(1))


def page(client: TestClient, path: str) -> str:
    """The HTML page at ``path`` (asserting a 200 HTML answer)."""
    response = client.get(path)
    assert response.status_code == 200, (path, response.text[:500])
    assert response.headers["content-type"].startswith("text/html")
    return response.text


def text_of(markup: str) -> str:
    """The page's visible text, roughly (tags dropped, entities kept escaped)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", markup))


def login(client: TestClient, username: str, password: str = PASSWORD, **extra: str) -> str:
    """Log in as a person would; returns the session's CSRF token."""
    token = csrf_of(client.get("/login").text)
    response = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token, **extra},
        headers={"Origin": ORIGIN},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return csrf_of(client.get("/").text)
