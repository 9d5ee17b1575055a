"""Registry events reach webhooks, signed; targets the address policy refuses are never stored."""

from __future__ import annotations

import gc
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from loopml.backends.webhooks import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, verify
from loopml.errors import InvalidArgument, PermissionDenied
from loopml.registry.entities import PromotionPolicy
from loopml.settings import Settings
from loopml.stack import Stack
from loopml.testing.registry_contract import log_fake_package
from test_outbound import Receiver, Seen

SECRET = "whsec_registry_0123456789"
OTHER_SECRET = "whsec_elsewhere_9876543210"
MODEL = "fraud-detector"
ADMIN = "root"
SUBSCRIBED = ["model_version.created", "alias.moved", "approval.requested", "approval.granted"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _stack(tmp_path: Path, uri: str | None = None, **settings: Any) -> Stack:
    return Stack.from_settings(
        Settings(home=tmp_path / "home", uri=uri, artifacts=(tmp_path / "a").as_uri(), **settings)
    )


@pytest.fixture
def stack(metadata_url: str, tmp_path: Path) -> Iterator[Stack]:
    """A stack whose webhooks may reach loopback (where the test's receiver listens)."""
    s = _stack(tmp_path, metadata_url, webhook_allow_private=True)
    assert s.registry is not None and s.webhooks is not None
    s.registry.create_registered_model(MODEL, actor=ADMIN)
    s.registry.set_policy(
        MODEL, PromotionPolicy(production_approvers=("risk_manager",), require_kpis=False),
        actor=ADMIN,
    )  # fmt: skip
    s.registry.create_registered_model("other-model", actor=ADMIN)
    yield s
    s.close()


def _received(seen: list[Seen], query: str) -> list[tuple[str, dict[str, Any], Seen]]:
    """(event, decoded body, request) of what reached ``/hook?<query>``, in arrival order."""
    out = []
    for request in seen:
        if request.path == f"/hook?{query}":
            body = orjson.loads(request.body)
            out.append((body["event"], body, request))
    return out


def test_registry_events_are_delivered_signed(stack, receiver):
    registry, webhooks = stack.registry, stack.webhooks
    url = receiver.url
    hook = registry.create_webhook(f"{url}?to=main", secret=SECRET, events=SUBSCRIBED,
                                   model=MODEL, actor=ADMIN)  # fmt: skip
    assert (hook.url, hook.events, hook.model) == (f"{url}?to=main", tuple(SUBSCRIBED), MODEL)
    assert not hasattr(hook, "secret")  # the secret is stored, never handed back
    registry.create_webhook(f"{url}?to=everything", secret=SECRET, model=MODEL, actor=ADMIN)
    registry.create_webhook(f"{url}?to=granted", secret=SECRET, events=["approval.granted"],
                            actor=ADMIN)  # fmt: skip
    registry.create_webhook(f"{url}?to=other", secret=OTHER_SECRET, model="other-model",
                            actor=ADMIN)  # fmt: skip
    assert len(registry.list_webhooks()) == 4

    version = registry.create_model_version(
        MODEL, log_fake_package(stack, {"auc": 0.9}), actor="dana"
    ).version
    registry.set_alias(MODEL, "staging", version, actor="dana")
    registry.promote(MODEL, version, to="validated", actor="dana")
    request = registry.request_approval(MODEL, version, actor="dana")
    registry.decide(request.request_id, actor="rita", roles={"risk_manager"}, approve=True)
    assert webhooks.flush(timeout=30)

    main = _received(receiver.seen, "to=main")
    assert [event for event, _body, _req in main] == SUBSCRIBED
    now = int(time.time())
    for event, body, seen in main:
        headers = {k.lower(): v for k, v in seen.headers.items()}
        assert verify(SECRET, seen.body, headers[SIGNATURE_HEADER.lower()], now=now), event
        assert not verify(OTHER_SECRET, seen.body, headers[SIGNATURE_HEADER.lower()], now=now)
        assert not verify(SECRET, seen.body + b" ", headers[SIGNATURE_HEADER.lower()], now=now)
        assert headers[EVENT_HEADER.lower()] == event
        assert headers[DELIVERY_HEADER.lower()] == body["delivery_id"]
        assert headers["content-type"] == "application/json"
        assert body["data"]["name"] == MODEL and body["data"]["version"] == version
    data = {event: body["data"] for event, body, _req in main}
    assert data["model_version.created"]["actor"] == "dana"
    assert data["alias.moved"]["alias"] == "staging"
    assert data["approval.requested"]["request_id"] == request.request_id
    assert data["approval.requested"]["required_roles"] == ["risk_manager"]
    assert (data["approval.granted"]["by"], data["approval.granted"]["status"]) == (
        "rita", "approved",
    )  # fmt: skip
    assert len({body["delivery_id"] for _e, body, _r in main}) == len(main)

    # No filter: every event of the model, stage changes included (the approval's one too).
    everything = _received(receiver.seen, "to=everything")
    assert [event for event, _body, _req in everything] == [
        "model_version.created", "alias.moved", "model_version.stage", "approval.requested",
        "approval.granted", "model_version.stage",
    ]  # fmt: skip
    stages = [(b["data"]["from"], b["data"]["to"]) for e, b, _r in everything
              if e == "model_version.stage"]  # fmt: skip
    assert stages == [("candidate", "validated"), ("validated", "approved")]
    assert [event for event, _b, _r in _received(receiver.seen, "to=granted")] == [
        "approval.granted"
    ]
    assert _received(receiver.seen, "to=other") == []  # another model's hook hears nothing

    # Promotion moves two aliases: two deliveries.
    registry.promote(MODEL, version, to="production", actor="dana")
    assert webhooks.flush(timeout=30)
    moved = [b["data"] for e, b, _r in _received(receiver.seen, "to=main") if e == "alias.moved"]
    assert [(m["alias"], m["version"]) for m in moved] == [
        ("staging", version), ("production", version), ("champion", version),
    ]  # fmt: skip


def test_deleted_webhooks_hear_nothing_more(stack, receiver):
    registry = stack.registry
    hook = registry.create_webhook(f"{receiver.url}?to=main", secret=SECRET, model=MODEL,
                                   actor=ADMIN)  # fmt: skip
    source = log_fake_package(stack, {"auc": 0.9})
    registry.create_model_version(MODEL, source, actor="dana")
    assert stack.webhooks.flush(timeout=30)
    registry.delete_webhook(hook.webhook_id, actor=ADMIN)
    registry.create_model_version(MODEL, source, actor="dana")
    assert stack.webhooks.flush(timeout=30)
    assert [e for e, _b, _r in _received(receiver.seen, "to=main")] == ["model_version.created"]
    actions = [e.action for e in stack.audit.list_events(object_type="webhook")]
    assert actions == ["webhook.create", "webhook.delete"]


REFUSED = [
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://10.0.0.1/hook",  # private
    "http://[::1]:1234/hook",  # loopback, IPv6
    "http://2130706433/hook",  # 127.0.0.1 written as one decimal number
    "http://127.0.0.1:8080/hook",
    "http://localhost/hook",
]


def test_private_targets_are_refused_by_default_and_nothing_is_stored(tmp_path, receiver):
    stack = _stack(tmp_path)  # default settings: webhook_allow_private=False
    try:
        registry = stack.registry
        assert registry is not None
        registry.create_registered_model(MODEL, actor=ADMIN)
        for url in [*REFUSED, receiver.url]:
            with pytest.raises(PermissionDenied):
                registry.create_webhook(url, secret=SECRET, events=SUBSCRIBED, model=MODEL,
                                        actor=ADMIN)  # fmt: skip
        with pytest.raises(InvalidArgument, match="16 characters"):
            registry.create_webhook("https://hooks.example/x", secret="short", actor=ADMIN)
        with pytest.raises(InvalidArgument, match="unknown webhook events"):
            registry.create_webhook("https://hooks.example/x", secret=SECRET,
                                    events=["model.deleted"], actor=ADMIN)  # fmt: skip
        for url in ("ftp://hooks.example/x", "http://user:pw@hooks.example/"):
            with pytest.raises(InvalidArgument):
                registry.create_webhook(url, secret=SECRET, actor=ADMIN)
        assert registry.list_webhooks() == []
        assert stack.audit.list_events(object_type="webhook") == []
        registry.create_model_version(MODEL, log_fake_package(stack, {"auc": 0.9}), actor="d")
        assert stack.webhooks is not None and stack.webhooks.flush(timeout=30)
        assert receiver.seen == []
    finally:
        stack.close()


def test_metadata_addresses_stay_refused_even_when_private_ones_are_allowed(stack):
    with pytest.raises(PermissionDenied, match="metadata"):
        stack.registry.create_webhook("http://169.254.169.254/latest/meta-data/", secret=SECRET,
                                      actor=ADMIN)  # fmt: skip
    assert stack.registry.list_webhooks() == []


def test_closing_the_stack_closes_kept_alive_connections(tmp_path, receiver):
    receiver.server.RequestHandlerClass.protocol_version = "HTTP/1.1"  # keep connections open
    stack = _stack(tmp_path, webhook_allow_private=True)
    registry = stack.registry
    registry.create_registered_model(MODEL, actor=ADMIN)
    registry.create_webhook(receiver.url, secret=SECRET, model=MODEL, actor=ADMIN)
    source = log_fake_package(stack, {"auc": 0.9})
    for _ in range(3):
        registry.create_model_version(MODEL, source, actor="dana")
    assert stack.webhooks.flush(timeout=30)
    assert len(receiver.seen) == 3
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        stack.close()
        del stack, registry
        gc.collect()
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []
