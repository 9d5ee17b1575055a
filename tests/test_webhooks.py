"""Webhooks: signatures, delivery through the guarded client, retries, refusals, the queue."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import orjson
import pytest

from loopml.backends.outbound import AddressPolicy, GuardedHttp
from loopml.backends.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    Delivery,
    WebhookDispatcher,
    WebhookTarget,
    check_target_url,
    sign,
    verify,
)
from loopml.errors import InvalidArgument, PermissionDenied
from test_outbound import Receiver, Reply, fake_dns, loopback_forms

SECRET = "whsec_test_0123456789"
LOCAL_ONLY = AddressPolicy(allowed_networks=("127.0.0.1/32",))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


class World:
    """A dispatcher with recorded results and recorded (not slept) backoffs."""

    def __init__(self, policy: AddressPolicy, **kwargs: object) -> None:
        self.results: list[Delivery] = []
        self.sleeps: list[float] = []
        self.http = GuardedHttp(policy, timeout=5.0)
        self.dispatcher = WebhookDispatcher(
            self.http,
            on_result=self.results.append,
            sleep=self.sleeps.append,
            **kwargs,  # type: ignore[arg-type]
        )

    def run(self, targets: list[WebhookTarget], event: str = "alias.moved") -> list[Delivery]:
        self.dispatcher.start()
        self.dispatcher.publish(targets, event, {"model": "fraud", "alias": "champion"})
        assert self.dispatcher.flush(timeout=30)
        return self.results

    def close(self) -> None:
        self.dispatcher.stop(timeout=5)
        self.http.close()


@pytest.fixture
def world() -> Iterator[World]:
    w = World(AddressPolicy(allow_private=True), max_attempts=3)
    yield w
    w.close()


def target(url: str, events: frozenset[str] = frozenset()) -> WebhookTarget:
    return WebhookTarget(id="t1", url=url, secret=SECRET, events=events)


# -- signatures --------------------------------------------------------------------------------


def test_sign_format_and_verify() -> None:
    header = sign(SECRET, b'{"a":1}', 1_700_000_000)
    assert header.startswith("t=1700000000,v1=") and len(header.split("v1=")[1]) == 64
    assert verify(SECRET, b'{"a":1}', header, now=1_700_000_000)
    assert verify(SECRET, b'{"a":1}', header, now=1_700_000_300)
    assert not verify(SECRET, b'{"a":1}', header, now=1_700_000_301)  # stale
    assert not verify(SECRET, b'{"a":1}', header, now=1_699_999_000)  # from the future
    assert not verify(SECRET, b'{"a":2}', header, now=1_700_000_000)  # tampered body
    assert not verify("other-secret", b'{"a":1}', header, now=1_700_000_000)


def test_verify_accepts_any_of_several_signatures() -> None:
    good = sign(SECRET, b"x", 100).split(",")[1]
    assert verify(SECRET, b"x", f"t=100,v1={'0' * 64},{good}", now=100)


@pytest.mark.parametrize(
    "header",
    ["", "garbage", "t=100", "v1=abc", "t=abc,v1=00", "t=100,t=100,v1=00", "t=-1,v1=00", "t=1e3"],
)
def test_verify_rejects_malformed_headers(header: str) -> None:
    assert not verify(SECRET, b"x", header, now=100)


def test_forged_timestamp_fails() -> None:
    sig = sign(SECRET, b"x", 100).split("v1=")[1]
    assert not verify(SECRET, b"x", f"t=101,v1={sig}", now=101)


# -- delivery ----------------------------------------------------------------------------------


def test_delivery_is_signed_and_verifies(world: World, receiver: Receiver) -> None:
    [result] = world.run([target(receiver.url)], "model_version.created")
    assert (result.status, result.attempts, result.last_status, result.error) == (
        "delivered",
        1,
        200,
        "",
    )
    [seen] = receiver.seen
    headers = {k.lower(): v for k, v in seen.headers.items()}
    assert headers["content-type"] == "application/json"
    assert headers[EVENT_HEADER.lower()] == "model_version.created"
    assert headers[DELIVERY_HEADER.lower()] == result.delivery_id
    assert len(result.delivery_id) == 32
    signature = headers[SIGNATURE_HEADER.lower()]
    now = int(time.time())
    assert verify(SECRET, seen.body, signature, now=now)
    assert not verify(SECRET, seen.body + b" ", signature, now=now)
    assert not verify("wrong-secret", seen.body, signature, now=now)
    body = orjson.loads(seen.body)
    assert body["event"] == "model_version.created"
    assert body["delivery_id"] == result.delivery_id
    assert body["data"] == {"model": "fraud", "alias": "champion"}
    assert abs(body["timestamp"] - now) < 3600


def test_only_subscribed_events_are_sent(world: World, receiver: Receiver) -> None:
    targets = [
        WebhookTarget("a", receiver.url, SECRET, frozenset({"alias.moved"})),
        WebhookTarget("b", receiver.url, SECRET, frozenset({"approval.granted"})),
        WebhookTarget("c", receiver.url, SECRET),
    ]
    results = world.run(targets, "alias.moved")
    assert sorted(r.target_id for r in results) == ["a", "c"]
    assert len(receiver.seen) == 2


def refused_urls(port: int) -> list[str]:
    return ["http://169.254.169.254/latest/meta-data", "http://10.0.0.1/", *loopback_forms(port)]


def test_refused_at_registration_and_at_delivery(receiver: Receiver) -> None:
    for url in refused_urls(receiver.port):
        with pytest.raises(PermissionDenied):
            check_target_url(url, AddressPolicy())
    w = World(AddressPolicy(), max_attempts=3)
    try:
        targets = [
            WebhookTarget(f"t{i}", u, SECRET) for i, u in enumerate(refused_urls(receiver.port))
        ]
        results = w.run(targets)
    finally:
        w.close()
    assert len(results) == len(targets)
    assert {(r.status, r.attempts) for r in results} == {("refused", 1)}
    assert w.sleeps == []
    assert receiver.seen == []


def test_metadata_refused_even_when_private_allowed() -> None:
    with pytest.raises(PermissionDenied, match="cloud metadata"):
        check_target_url(
            "http://169.254.169.254/latest/meta-data", AddressPolicy(allow_private=True)
        )
    with pytest.raises(PermissionDenied, match="cloud metadata"):
        check_target_url("http://[fd00:ec2::254]/", AddressPolicy(allow_private=True))


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "http://user:pw@example.com/hook"])
def test_bad_schemes_and_userinfo_are_invalid(world: World, url: str) -> None:
    with pytest.raises(InvalidArgument):
        check_target_url(url, AddressPolicy())
    [result] = world.run([target(url)])
    assert (result.status, result.attempts) == ("failed", 1)


def test_check_target_url_returns_normalised_url(receiver: Receiver) -> None:
    assert check_target_url(receiver.url + "#x", LOCAL_ONLY) == receiver.url


def test_unresolvable_host_is_invalid_at_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> object:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(InvalidArgument, match="cannot resolve"):
        check_target_url("https://hooks.nowhere.example/", AddressPolicy())


def test_redirect_to_private_address_is_refused(receiver: Receiver) -> None:
    receiver.replies = [Reply(302, {"Location": "http://10.0.0.1/"})]
    assert check_target_url(receiver.url, LOCAL_ONLY) == receiver.url
    w = World(LOCAL_ONLY)
    try:
        [result] = w.run([target(receiver.url)])
    finally:
        w.close()
    assert result.status == "refused"
    assert "10.0.0.1 is private" in result.error
    assert len(receiver.seen) == 1


def test_dns_rebinding_is_refused_at_delivery(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, {"hooks.example": [["93.184.216.34"], ["127.0.0.1"]]})
    url = f"http://hooks.example:{receiver.port}/hook"
    assert check_target_url(url, AddressPolicy()) == url
    w = World(AddressPolicy())
    try:
        [result] = w.run([target(url)])
    finally:
        w.close()
    assert result.status == "refused"
    assert "127.0.0.1 is loopback" in result.error
    assert receiver.seen == []


# -- retries -----------------------------------------------------------------------------------


def test_503_twice_then_200_is_delivered_on_the_third_attempt(
    world: World, receiver: Receiver
) -> None:
    receiver.replies = [Reply(503), Reply(503), Reply(200)]
    [result] = world.run([target(receiver.url)])
    assert (result.status, result.attempts, result.last_status) == ("delivered", 3, 200)
    assert len(receiver.seen) == 3
    assert len({s.headers[DELIVERY_HEADER] for s in receiver.seen}) == 1  # same id on retries
    assert len(world.sleeps) == 2
    assert 0.25 <= world.sleeps[0] <= 0.5 and 0.5 <= world.sleeps[1] <= 1.0


@pytest.mark.parametrize("status", [408, 429, 500])
def test_retryable_statuses_are_retried_until_max_attempts(
    world: World, receiver: Receiver, status: int
) -> None:
    receiver.replies = [Reply(status)] * 5
    [result] = world.run([target(receiver.url)])
    assert (result.status, result.attempts, result.last_status) == ("failed", 3, status)
    assert result.error == f"HTTP {status}"


@pytest.mark.parametrize("status", [400, 401, 404, 410])
def test_client_errors_fail_at_once(world: World, receiver: Receiver, status: int) -> None:
    receiver.replies = [Reply(status)]
    [result] = world.run([target(receiver.url)])
    assert (result.status, result.attempts, result.last_status) == ("failed", 1, status)
    assert world.sleeps == []


def test_endless_redirects_fail_without_retry(world: World, receiver: Receiver) -> None:
    receiver.replies = [Reply(302, {"Location": "/again"})] * 10
    [result] = world.run([target(receiver.url)])
    assert (result.status, result.attempts, result.last_status) == ("failed", 1, 302)


def test_receiver_down_fails_after_max_attempts(world: World) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    [result] = world.run([target(f"http://127.0.0.1:{port}/hook")])
    assert (result.status, result.attempts, result.last_status) == ("failed", 3, None)
    assert "failed" in result.error and str(port) in result.error
    assert len(world.sleeps) == 2


def test_backoff_is_capped() -> None:
    w = World(AddressPolicy(), backoff=1.0, max_backoff=4.0)
    try:
        delays = [w.dispatcher._delay(n) for n in range(1, 10)]
    finally:
        w.close()
    assert all(0.5 <= d <= 4.0 for d in delays)
    assert all(d >= 2.0 for d in delays[3:])


# -- the queue ---------------------------------------------------------------------------------


def test_full_queue_reports_failure_without_blocking(receiver: Receiver) -> None:
    w = World(AddressPolicy(allow_private=True), max_queue=2)
    try:
        targets = [WebhookTarget(f"t{i}", receiver.url, SECRET) for i in range(3)]
        w.dispatcher.publish(targets, "approval.requested", {"n": 1})  # not started: nothing drains
        assert [(r.target_id, r.status, r.attempts, r.error) for r in w.results] == [
            ("t2", "failed", 0, "queue full")
        ]
        w.dispatcher.start()
        assert w.dispatcher.flush(timeout=30)
        assert sorted((r.target_id, r.status) for r in w.results[1:]) == [
            ("t0", "delivered"),
            ("t1", "delivered"),
        ]
    finally:
        w.close()


def test_stop_drains_then_refuses_new_work(receiver: Receiver) -> None:
    w = World(AddressPolicy(allow_private=True))
    w.dispatcher.start()
    w.dispatcher.publish([target(receiver.url)] * 3, "alias.moved", {})
    w.dispatcher.stop(timeout=30)
    assert [r.status for r in w.results] == ["delivered"] * 3
    w.dispatcher.publish([target(receiver.url)], "alias.moved", {})
    assert (w.results[-1].status, w.results[-1].error) == ("failed", "dispatcher stopped")
    with pytest.raises(InvalidArgument):
        w.dispatcher.start()
    w.http.close()


def test_stop_without_worker_reports_leftovers(receiver: Receiver) -> None:
    w = World(AddressPolicy(allow_private=True))
    w.dispatcher.publish([target(receiver.url)], "alias.moved", {})
    w.dispatcher.stop(timeout=0)
    assert [(r.status, r.error) for r in w.results] == [("failed", "dispatcher stopped")]
    assert receiver.seen == []
    w.http.close()


def test_callback_errors_do_not_kill_the_worker(receiver: Receiver) -> None:
    seen: list[Delivery] = []

    def flaky(d: Delivery) -> None:
        seen.append(d)
        if len(seen) == 1:
            raise RuntimeError("boom")

    with GuardedHttp(AddressPolicy(allow_private=True), 5.0) as http:
        d = WebhookDispatcher(http, on_result=flaky)
        d.start()
        d.publish([target(receiver.url)], "alias.moved", {})
        assert d.flush(30)
        d.publish([target(receiver.url)], "alias.moved", {})
        assert d.flush(30)
        d.stop(5)
    assert [r.status for r in seen] == ["delivered", "delivered"]


def test_publish_is_thread_safe(receiver: Receiver) -> None:
    w = World(AddressPolicy(allow_private=True))
    try:
        w.dispatcher.start()
        threads = [
            threading.Thread(
                target=w.dispatcher.publish, args=([target(receiver.url)], "alias.moved", {"i": i})
            )
            for i in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert w.dispatcher.flush(timeout=30)
    finally:
        w.close()
    assert len(w.results) == 8 and {r.status for r in w.results} == {"delivered"}
    assert len({r.delivery_id for r in w.results}) == 8


def test_payload_must_be_json(world: World) -> None:
    with pytest.raises(InvalidArgument):
        world.dispatcher.publish([target("http://example.com/")], "alias.moved", {"x": object()})


def test_target_needs_id_and_secret() -> None:
    with pytest.raises(InvalidArgument):
        WebhookTarget("t", "http://example.com/", "")
