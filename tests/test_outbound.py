"""The SSRF choke point: address policy, URL parsing, pinned connects, manual redirects."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from loopml.backends.outbound import AddressPolicy, GuardedHttp, check_url, parse_url
from loopml.errors import InvalidArgument, PermissionDenied, Unavailable


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """A threaded HTTP server on 127.0.0.1 that records requests and plays scripted replies."""

    def __init__(self, replies: list[Reply] | None = None) -> None:
        self.replies = list(replies or [])
        self.seen: list[Seen] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                owner.seen.append(Seen(self.path, dict(self.headers.items()), body))
                reply = owner.replies.pop(0) if owner.replies else Reply()
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def guarded(policy: AddressPolicy, timeout: float = 5.0) -> GuardedHttp:
    return GuardedHttp(policy, timeout)


def fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[list[str]]]) -> None:
    """Answer getaddrinfo for the given names from successive answer lists (last one repeats)."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in answers:
            return real(host, port, *args, **kwargs)
        seq = answers[host]
        ips = seq.pop(0) if len(seq) > 1 else seq[0]
        return [
            (
                socket.AF_INET6 if ":" in ip else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (ip, port),
            )
            for ip in ips
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


REFUSED_IPS = {
    "127.0.0.1": "loopback",
    "127.255.0.9": "loopback",
    "::1": "loopback",
    "10.0.0.1": "private",
    "172.16.5.4": "private",
    "192.168.1.1": "private",
    "fc00::1": "private",
    "fd12:3456::1": "private",
    "169.254.1.1": "link-local",
    "fe80::1": "link-local",
    "169.254.169.254": "link-local (cloud metadata)",
    "fd00:ec2::254": "cloud metadata",
    "100.100.100.200": "cloud metadata",
    "100.64.0.1": "carrier-grade NAT",
    "0.0.0.0": "unspecified",
    "::": "unspecified",
    "224.0.0.1": "multicast",
    "ff02::1": "multicast",
    "240.0.0.1": "private",
    "255.255.255.255": "private",
    "fec0::1": "site-local",
    "::ffff:127.0.0.1": "embedding 127.0.0.1) is loopback",
    "::ffff:169.254.169.254": "cloud metadata",
    "::127.0.0.1": "reserved",  # IPv4-compatible (deprecated)
    "64:ff9b::a00:1": "embedding 10.0.0.1) is private",
    "2002:7f00:1::1": "embedding 127.0.0.1) is loopback",
    "2002:c0a8:101::1": "embedding 192.168.1.1) is private",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2": "private",  # Teredo
}


@pytest.mark.parametrize(("ip", "why"), sorted(REFUSED_IPS.items()))
def test_default_policy_refuses(ip: str, why: str) -> None:
    address = ipaddress.ip_address(ip)
    with pytest.raises(PermissionDenied) as e:
        AddressPolicy().check_ip(address)
    assert e.value.message.startswith(f"{address} ")
    assert why in e.value.message


def test_message_names_the_metadata_address() -> None:
    with pytest.raises(PermissionDenied) as e:
        AddressPolicy().check_ip(ipaddress.ip_address("169.254.169.254"))
    assert e.value.message == "169.254.169.254 is link-local (cloud metadata)"


@pytest.mark.parametrize(
    "ip", ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_public_addresses_pass(ip: str) -> None:
    AddressPolicy().check_ip(ipaddress.ip_address(ip))


@pytest.mark.parametrize("ip", ["127.0.0.1", "::1", "10.0.0.1", "169.254.1.1", "100.64.0.1"])
def test_allow_private_lets_private_through(ip: str) -> None:
    AddressPolicy(allow_private=True).check_ip(ipaddress.ip_address(ip))


@pytest.mark.parametrize(
    "ip",
    ["169.254.169.254", "::ffff:169.254.169.254", "fd00:ec2::254", "100.100.100.200"],
)
def test_metadata_refused_even_with_allow_private(ip: str) -> None:
    with pytest.raises(PermissionDenied, match="metadata"):
        AddressPolicy(allow_private=True).check_ip(ipaddress.ip_address(ip))
    with pytest.raises(PermissionDenied, match="metadata"):
        AddressPolicy(allowed_networks=("0.0.0.0/0", "::/0")).check_ip(ipaddress.ip_address(ip))


def test_allowed_networks_whitelist_only_those() -> None:
    policy = AddressPolicy(allowed_networks=("127.0.0.1/32", "10.1.0.0/16"))
    policy.check_ip(ipaddress.ip_address("127.0.0.1"))
    policy.check_ip(ipaddress.ip_address("::ffff:127.0.0.1"))
    policy.check_ip(ipaddress.ip_address("10.1.200.3"))
    for ip in ("127.0.0.2", "10.2.0.1", "::1"):
        with pytest.raises(PermissionDenied):
            policy.check_ip(ipaddress.ip_address(ip))
    with pytest.raises(InvalidArgument):
        AddressPolicy(allowed_networks=("not-a-net",))


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "file:///etc/passwd",
        "gopher://example.com/",
        "example.com/hook",
        "http://user@example.com/",
        "http://user:pw@example.com/",
        "http:///path",
        "http://",
        "http://example.com:99999/",
        "http://example.com:0/",
        "http://exa mple.com/",
        "http://example.com\\@evil.com/",
        "http://[127.0.0.1]/",
        "http://[fe80::1%25eth0]/",
        "http://bad..name/",
    ],
)
def test_bad_urls_are_invalid(url: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_url(url)


def test_parse_url_normalises() -> None:
    p = parse_url("HTTPS://Example.COM/a/b?x=1#frag")
    assert (p.scheme, p.host, p.port, p.target, p.authority) == (
        "https",
        "example.com",
        443,
        "/a/b?x=1",
        "example.com",
    )
    mapped = ipaddress.ip_address("::ffff:127.0.0.1")
    assert parse_url("http://[::FFFF:7F00:1]:8080").url == f"http://[{mapped}]:8080/"
    assert parse_url("http://bücher.example/").host == "xn--bcher-kva.example"


def loopback_forms(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/",
        f"http://[::1]:{port}/",
        f"http://2130706433:{port}/",
        f"http://0x7f000001:{port}/",
        f"http://0x7f.1:{port}/",
        f"http://0177.0.0.1:{port}/",
        f"http://127.1:{port}/",
        f"http://localhost:{port}/",
        f"http://LOCALHOST:{port}/",
        f"http://[::ffff:127.0.0.1]:{port}/",
        f"http://0.0.0.0:{port}/",
    ]


def test_refused_by_default_at_check_and_at_send(receiver: Receiver) -> None:
    urls = [
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/",
        "http://0x7f000001/",
        *loopback_forms(receiver.port),
    ]
    with guarded(AddressPolicy()) as http:
        for url in urls:
            with pytest.raises(PermissionDenied):
                check_url(url, AddressPolicy())
            with pytest.raises(PermissionDenied):
                http.post(url, b"{}", {})
    assert receiver.seen == []


def test_localhost_message_names_the_resolution() -> None:
    with pytest.raises(PermissionDenied, match=r"^localhost resolves to 127\.0\.0\.1 is loopback"):
        check_url("http://localhost/", AddressPolicy())


@pytest.mark.parametrize("form", ["2130706433", "0x7f000001", "0177.0.0.1", "127.1", "localhost"])
def test_numeric_forms_mean_loopback(receiver: Receiver, form: str) -> None:
    # with private addresses allowed, the odd forms do reach 127.0.0.1: they were read right
    with guarded(AddressPolicy(allow_private=True)) as http:
        assert http.post(f"http://{form}:{receiver.port}/x", b"hi", {}) == 200
    assert receiver.seen[0].body == b"hi"
    assert receiver.seen[0].headers["Host"] == f"{form}:{receiver.port}"


def test_every_resolved_address_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"mixed.example": [["93.184.216.34", "127.0.0.1"]]})
    with pytest.raises(PermissionDenied, match=r"mixed\.example resolves to 127\.0\.0\.1"):
        check_url("http://mixed.example/", AddressPolicy())


def test_dns_rebinding_is_caught_at_connect(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, {"rebind.example": [["93.184.216.34"], ["127.0.0.1"]]})
    url = f"http://rebind.example:{receiver.port}/hook"
    assert check_url(url, AddressPolicy()).host == "rebind.example"
    with guarded(AddressPolicy()) as http, pytest.raises(PermissionDenied, match="loopback"):
        http.post(url, b"{}", {})
    assert receiver.seen == []


def test_connect_is_pinned_and_keeps_the_host_header(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, {"hooks.example": [["127.0.0.1"]]})
    policy = AddressPolicy(allowed_networks=("127.0.0.1/32",))
    with guarded(policy) as http:
        status = http.post(
            f"http://hooks.example:{receiver.port}/in?a=1",
            b'{"x":1}',
            {"Content-Type": "application/json", "Host": "evil.example", "Content-Length": "1"},
        )
    assert status == 200
    seen = receiver.seen[0]
    assert (seen.path, seen.body) == ("/in?a=1", b'{"x":1}')
    assert seen.headers["Host"] == f"hooks.example:{receiver.port}"
    assert seen.headers["Content-Length"] == "7"


def test_redirect_to_refused_address_is_refused(receiver: Receiver) -> None:
    receiver.replies = [Reply(302, {"Location": "http://10.0.0.1/"})]
    policy = AddressPolicy(allowed_networks=("127.0.0.1/32",))
    with guarded(policy) as http, pytest.raises(PermissionDenied, match=r"10\.0\.0\.1 is private"):
        http.post(receiver.url, b"{}", {})
    assert len(receiver.seen) == 1


@pytest.mark.parametrize("location", ["ftp://example.com/", "http://u@127.0.0.1/"])
def test_redirect_to_bad_url_is_refused(receiver: Receiver, location: str) -> None:
    receiver.replies = [Reply(307, {"Location": location})]
    with guarded(AddressPolicy(allow_private=True)) as http, pytest.raises(PermissionDenied):
        http.post(receiver.url, b"{}", {})


def test_redirects_are_followed_up_to_three(receiver: Receiver) -> None:
    receiver.replies = [Reply(307, {"Location": "/second"}), Reply(308, {"Location": "/third"})]
    with guarded(AddressPolicy(allowed_networks=("127.0.0.1/32",))) as http:
        assert http.post(receiver.url, b"body", {}) == 200
        assert [s.path for s in receiver.seen] == ["/hook", "/second", "/third"]
        assert all(s.body == b"body" for s in receiver.seen)
        receiver.seen.clear()
        receiver.replies = [Reply(302, {"Location": f"/r{i}"}) for i in range(10)]
        assert http.post(receiver.url, b"body", {}) == 302
    assert len(receiver.seen) == 4


def test_large_response_bodies_are_not_read_whole(receiver: Receiver) -> None:
    receiver.replies = [Reply(200, body=b"x" * (4 * 2**20)), Reply(201)]
    with guarded(AddressPolicy(allow_private=True)) as http:
        assert http.post(receiver.url, b"", {}) == 200
        assert http.post(receiver.url, b"", {}) == 201


def test_connection_refused_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with guarded(AddressPolicy(allow_private=True)) as http, pytest.raises(Unavailable):
        http.post(f"http://127.0.0.1:{port}/", b"", {})


def test_silent_server_times_out() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts in the kernel, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        http = guarded(AddressPolicy(allow_private=True), timeout=0.2)
        with http, pytest.raises(Unavailable, match="timed out"):
            http.post(url, b"", {})


def test_unresolvable_host_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(Unavailable, match="cannot resolve"):
        check_url("http://nowhere.example/", AddressPolicy())
