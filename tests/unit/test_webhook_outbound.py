"""One outbound webhook attempt (connectors/outbound.py) over real sockets on loopback:
what came back, in words, and the SSRF guard at send time (local development off, as
deployed): a DNS answer that changes after the check cannot redirect the connection, a
redirect is not followed, and every spelling of loopback and the metadata address is
refused before any socket is opened."""
from __future__ import annotations

import socket

import pytest

from common import net
from connectors import outbound
from tests.webhook_receiver import Receiver

PUBLIC = "93.184.216.34"  # what the fake DNS answers for a public host (never really reached)
SPELLINGS = ["2130706433", "0177.0.0.1", "0x7f.1", "[::ffff:127.0.0.1]", "[::1]",
             "2852039166", "0251.0376.0251.0376", "[::ffff:a9fe:a9fe]"]
BODY = '{"type":"webhook.ping"}'
HEADERS = {"content-type": "application/json", "webhook-id": "msg_1"}


@pytest.fixture()
def receiver():
    with Receiver() as r:
        yield r


@pytest.fixture()
def deployed(monkeypatch):
    monkeypatch.delenv(net.LOCAL_DEV_ENV, raising=False)


class Network:
    """Fake DNS (each name: a list of answers, one per lookup, the last repeated) and a
    socket layer that records where each connection goes; a connection to PUBLIC is
    carried to the loopback receiver, so the request still arrives."""

    def __init__(self, monkeypatch, receiver: Receiver) -> None:
        self.answers: dict[str, list[str]] = {}
        self.lookups: list[str] = []
        self.connects: list[tuple[str, int]] = []
        real_dns, real_connect = socket.getaddrinfo, socket.create_connection

        def getaddrinfo(host, port, *args, **kwargs):
            if host in self.answers:
                self.lookups.append(host)
                queue = self.answers[host]
                address = queue.pop(0) if len(queue) > 1 else queue[0]
                return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
            return real_dns(host, port, *args, **kwargs)

        def create_connection(address, *args, **kwargs):
            self.connects.append((address[0], address[1]))
            if address[0] == PUBLIC:
                address = ("127.0.0.1", receiver.port)
            return real_connect(address, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        monkeypatch.setattr(socket, "create_connection", create_connection)


@pytest.fixture()
def network(monkeypatch, receiver):
    return Network(monkeypatch, receiver)


def test_dns_rebinding_the_checked_address_is_the_one_connected_and_the_rebound_one_refused(
        deployed, receiver, network):
    network.answers["hooks.rebind.example"] = [PUBLIC, "127.0.0.1"]
    url = f"http://hooks.rebind.example:{receiver.port}/in"
    first = outbound.post(url, HEADERS, BODY)
    assert first.ok and first.error is None, first
    assert network.connects == [(PUBLIC, receiver.port)]  # the checked address, not a second lookup's
    assert receiver.requests[0]["headers"]["host"] == f"hooks.rebind.example:{receiver.port}"  # the name kept
    second = outbound.post(url, HEADERS, BODY)  # the name now answers 127.0.0.1
    assert second.status is None and second.error.startswith("refused by the SSRF guard"), second
    assert "loopback" in second.error
    assert len(receiver.requests) == 1 and network.connects == [(PUBLIC, receiver.port)]


def test_a_redirect_to_a_private_address_is_a_failed_attempt_not_followed(deployed, receiver, network):
    receiver.status, receiver.headers = 302, {"Location": "http://169.254.169.254/latest/meta-data/"}
    network.answers["hooks.example"] = [PUBLIC]
    attempt = outbound.post(f"http://hooks.example:{receiver.port}/in", HEADERS, BODY)
    assert attempt.status == 302 and not attempt.ok and "redirect" in attempt.error
    assert len(receiver.requests) == 1
    assert all(host != "169.254.169.254" for host, _ in network.connects)


@pytest.mark.parametrize("host", SPELLINGS)
def test_every_spelling_of_loopback_and_the_metadata_address_is_refused_at_send(deployed, network, host):
    attempt = outbound.post(f"https://{host}/hooks", HEADERS, BODY)
    assert attempt.status is None and attempt.error.startswith("refused by the SSRF guard"), attempt
    assert network.connects == [] and network.lookups == []


def test_a_name_resolving_to_any_private_address_is_refused(deployed, network):
    network.answers["meta.example"] = ["169.254.169.254"]
    attempt = outbound.post("https://meta.example/x", HEADERS, BODY)
    assert attempt.error.startswith("refused by the SSRF guard") and network.connects == []


def test_an_answer_is_reported_with_its_excerpt_status_and_latency(receiver):
    receiver.body = ("é" * 150 + "x" * 300).encode()
    attempt = outbound.post(f"{receiver.url}/in", {**HEADERS, "webhook-signature": "v1,secret-ish"}, BODY)
    assert attempt.ok and attempt.status == 200 and attempt.error is None and attempt.retry_after is None
    assert attempt.excerpt == "é" * 150 + "x" * 50 and attempt.latency_ms >= 0
    got = receiver.requests[0]
    assert got["body"] == BODY and got["headers"]["webhook-id"] == "msg_1"
    assert "secret-ish" not in attempt.excerpt


def test_throttles_and_errors_carry_retry_after_and_the_status(receiver):
    receiver.status, receiver.headers, receiver.body = 429, {"Retry-After": "7"}, b"slow down"
    attempt = outbound.post(receiver.url, HEADERS, BODY)
    assert attempt.status == 429 and attempt.retry_after == 7.0 and not attempt.ok and attempt.excerpt == "slow down"
    receiver.status, receiver.headers = 503, {}
    attempt = outbound.post(receiver.url, HEADERS, BODY)
    assert attempt.status == 503 and attempt.retry_after is None and attempt.error is None


def test_a_slow_endpoint_is_a_timeout(receiver):
    receiver.delay = 1.5
    attempt = outbound.post(receiver.url, HEADERS, BODY, timeout=0.3)
    assert attempt.status is None and attempt.error.startswith("timeout"), attempt
    assert attempt.latency_ms < 1400


def test_a_closed_port_is_connection_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once closed
    attempt = outbound.post(f"http://127.0.0.1:{port}/", HEADERS, BODY)
    assert attempt.status is None and attempt.error == "connection refused", attempt


def test_tls_to_an_endpoint_that_speaks_no_tls_is_a_tls_error(receiver):
    attempt = outbound.post(f"https://127.0.0.1:{receiver.port}/", HEADERS, BODY, timeout=3)
    assert attempt.status is None and attempt.error.startswith("TLS"), attempt


def test_one_tls_context_is_shared_and_clients_are_per_origin(receiver):
    from connectors.sdk.http import tls_context

    outbound.post(f"{receiver.url}/a", HEADERS, BODY)
    outbound.post(f"{receiver.url}/b", HEADERS, BODY)
    assert outbound._client(f"{receiver.url}/x") is outbound._client(f"{receiver.url}/y")
    assert outbound._client(f"{receiver.url}/x") is not outbound._client(f"http://localhost:{receiver.port}/x")
    assert tls_context() is tls_context()
