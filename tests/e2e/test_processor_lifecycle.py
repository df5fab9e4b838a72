"""The processor going away and coming back, and draining on SIGTERM."""

import signal
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.harness import Stack, load_bootstrap, wait_for

pytestmark = pytest.mark.e2e

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def stack():
    s = Stack(load_bootstrap("mock.yaml")).start()
    yield s
    s.stop()


def health(stack, service: str = "") -> int:
    with grpc.insecure_channel(f"unix:{stack.socket_path}") as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2).status


def test_health_service_reports_serving(stack):
    assert health(stack) == health_pb2.HealthCheckResponse.SERVING
    assert (
        health(stack, "envoy.service.ext_proc.v3.ExternalProcessor") == health_pb2.HealthCheckResponse.SERVING
    )


def test_processor_down_is_a_json_503_and_envoy_recovers(stack):
    assert stack.post(BODY).status_code == 200
    assert stack.processor.stop() == 0

    r = stack.post(BODY)
    assert r.status_code == 503
    err = r.json()["error"]
    assert err["code"] == "gateway_unavailable" and err["type"] == "server_error"
    assert "sock" not in r.text, "internal socket paths must not leak to clients"
    stack.mock.clear()
    # Fail closed: nothing reached the provider while the processor was away.
    assert stack.mock.requests == []

    stack.processor.start()
    wait_for(lambda: stack.post(BODY).status_code == 200, 15, "Envoy to reconnect")
    assert stack.mock.requests, "traffic flows again once the processor is back"


def test_sigterm_finishes_in_flight_requests(stack):
    results = {}

    def slow_request():
        # The provider takes 1.5 s to answer; the route-level stream stays open meanwhile.
        r = stack.post(BODY, headers={"x-mock-first-byte-delay-ms": "1500"})
        results["status"] = r.status_code
        results["body"] = r.json()

    t = threading.Thread(target=slow_request)
    t.start()
    wait_for(lambda: stack.mock.requests, 5, "the request to reach the provider")
    stack.processor.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    # Draining: new streams are refused while the in-flight one is finished.
    assert stack.post(BODY).status_code == 503
    t.join(10)
    assert results["status"] == 200
    assert results["body"]["choices"][0]["message"]["content"].startswith("Mock reply")
    assert stack.processor.proc.wait(10) == 0
    assert "processor stopped" in stack.processor.logs()
