"""Entry points that build the app from the settings (what uvicorn workers import)."""

from __future__ import annotations

import gc
import ipaddress
import logging
import time

from fastapi import FastAPI

from loopml.errors import InvalidArgument, NotFound
from loopml.server.app import create_app
from loopml.server.jobs import JobRunner
from loopml.server.routes.uploads import prune_stale_uploads
from loopml.serving.deployment_store import DeploymentRegistry
from loopml.settings import Settings
from loopml.stack import Stack


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, auth: bool) -> None:
    """No open door: binding beyond loopback requires authentication."""
    if not auth and not is_loopback(host):
        raise InvalidArgument(
            f"refusing to serve on {host} without authentication: use --auth (after "
            "`loopml admin init`), or bind to 127.0.0.1"
        )


def app_from_settings(settings: Settings | None = None) -> FastAPI:
    """The platform app for ``settings`` (default: the environment). uvicorn's factory."""
    settings = settings or Settings()
    if settings.resolved_uri().startswith(("http://", "https://")):
        raise InvalidArgument("the server needs a database URI (sqlite or postgresql), not http")
    check_bind(settings.host, settings.auth)
    stack = Stack.from_settings(settings)
    authenticate = None
    if settings.auth:
        from loopml.server.identity import token_authenticator

        authenticate = token_authenticator(stack)
    app = create_app(stack, authenticate=authenticate, jobs=background_jobs(stack))
    # What exists now (routes, schemas, the stack) lives as long as the server process: keep it
    # out of the collector's full passes, which would otherwise walk it during requests.
    gc.collect()
    gc.freeze()
    return app


def background_jobs(stack: Stack) -> JobRunner | None:
    """The periodic work `loopml up` runs beside the server; later stages add their monitors."""
    if not stack.settings.background_jobs:
        return None
    runner = JobRunner()
    uploads = stack.settings.home / "uploads"
    runner.add("prune stale uploads", 3600, lambda: prune_stale_uploads(uploads))
    if stack.identity is not None:
        identity, window = stack.identity, stack.settings.login_failure_window_s
        runner.add("prune login failures", 600,
                   lambda: identity.prune_login_failures(before=time.time() - window))  # fmt: skip
    if stack.deployments is not None:
        deployments = stack.deployments
        runner.add(
            "prediction log retention and compaction",
            stack.settings.predlog_jobs_interval_s,
            lambda: maintain_prediction_logs(deployments),
        )
    return runner


JOBS_ACTOR = "loopml:jobs"
"""The actor of what the background jobs do (no username can contain ':')."""


def maintain_prediction_logs(deployments: DeploymentRegistry, actor: str = JOBS_ACTOR) -> int:
    """Prune every deployment's log past its retention, then compact its finished hours; the
    number of deployments done. One deployment's failure does not stop the others."""
    failed: list[str] = []
    done = 0
    for deployment in deployments.list_deployments():
        try:
            deployments.prune_log(deployment.name, actor=actor)
            deployments.compact_log(deployment.name, actor=actor)
            done += 1
        except NotFound:  # deleted meanwhile
            continue
        except Exception:
            logging.getLogger("loopml.jobs").exception(
                "prediction log upkeep of %s failed", deployment.name
            )
            failed.append(deployment.name)
    if failed:
        raise RuntimeError(f"prediction log upkeep failed for {', '.join(failed)}")
    return done
