"""Ordinary traffic that crashed Envoy 1.40 (SIGSEGV in its HTTP/2 client to the processor),
and the stack still serving afterwards. Without the runtime flag the bootstraps now carry
(README, "Operations notes") both tests killed Envoy within a second or two."""

from __future__ import annotations

import copy
import json
import os
import socket
import threading
import time
import urllib.request

import httpx
import pytest
import yaml

from tests.harness import Stack, load_bootstrap

pytestmark = pytest.mark.e2e

FLAG = "envoy.reloadable_features.grpc_side_stream_flow_control"
SMALL = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


# For checking a new Envoy: run Envoy without the workaround (the processor, which refuses
# such a bootstrap, still reads the normal one). Once these tests pass so, it can go.
WITHOUT_WORKAROUND = os.environ.get("AIGW_ENVOY_WITHOUT_WORKAROUND") == "1"


def start(name: str) -> Stack:
    stack = Stack(load_bootstrap(name))
    if WITHOUT_WORKAROUND:
        doc = copy.deepcopy(stack.doc)
        doc.pop("layered_runtime")
        path = stack.tmp / "envoy-without-workaround.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        stack.envoy.argv[stack.envoy.argv.index("-c") + 1] = str(path)
    return stack.start()


def assert_still_serving(stack: Stack) -> None:
    assert stack.envoy.alive()
    # The workaround is in effect in the running Envoy, not only written in the file.
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.admin_port}/runtime", timeout=5) as r:
        entries = json.loads(r.read())["entries"]
    assert entries.get(FLAG, {}).get("final_value") == (None if WITHOUT_WORKAROUND else "false")
    # Serving again once the backlog the trigger left is worked off (on a loaded machine a
    # small request may first time out behind it: a 503, not a crash).
    deadline = time.monotonic() + 45
    while True:
        r = stack.post(SMALL, timeout=30)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        assert stack.envoy.alive()
        time.sleep(1)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"]


@pytest.fixture
def mock_stack_own():
    stack = start("mock.yaml")
    yield stack
    stack.stop()


@pytest.fixture
def policies_stack():
    stack = start("policies.yaml")
    yield stack
    stack.stop()


def test_a_large_request_among_small_ones_does_not_kill_envoy(mock_stack_own):
    """Trigger 1: a ~3 MB chat request (under the 4 MiB limit) while small ones are in
    flight. The big body fills the HTTP/2 connection to the processor past its 1 MiB
    buffer; a small request's upstream filter opening its stream then crashed Envoy."""
    stack = mock_stack_own
    words = " ".join(f"word{i}" for i in range(280_000))  # ~3 MB, echoed back by the mock
    big = {"model": "m", "messages": [{"role": "user", "content": words}]}
    assert 2_900_000 < len(words) < 3_200_000
    stop = threading.Event()
    small_status: list[int | str] = []

    def small_traffic() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                try:
                    small_status.append(
                        client.post(
                            f"{stack.url}/v1/chat/completions",
                            json=SMALL,
                            headers={"authorization": "Bearer k"},
                        ).status_code
                    )
                except httpx.HTTPError as exc:
                    small_status.append(type(exc).__name__)

    workers = [threading.Thread(target=small_traffic) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        big_status = []
        for _ in range(5):
            try:
                big_status.append(stack.post(big, timeout=60).status_code)
            except httpx.HTTPError as exc:
                big_status.append(type(exc).__name__)
            assert stack.envoy.alive()
    finally:
        stop.set()
        for w in workers:
            w.join()
    assert big_status == [200] * 5
    assert small_status and set(small_status) == {200}
    assert_still_serving(stack)


def _slow_stream(port: int, body: bytes) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a client that reads slowly
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
        b"authorization: Bearer k\r\ncontent-length: %d\r\n\r\n" % len(body) + body
    )
    sock.setblocking(False)
    return sock


def test_a_hundred_slow_streaming_clients_on_a_guarded_route_do_not_kill_envoy(policies_stack):
    """Trigger 2: 100 streaming clients reading slowly, on a route with response guards
    (envoy/policies.yaml's `chat`). Their prompts together back up the connection to the
    processor the same way."""
    stack = policies_stack
    prompt = " ".join(f"word{i}" for i in range(3000))  # ~17 KB each, ~1.7 MB together
    body = json.dumps(
        {"model": "m", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    ).encode()
    socks = [_slow_stream(stack.port, body) for _ in range(100)]
    received = 0
    try:
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            for s in socks:
                try:
                    received += len(s.recv(256))
                except (BlockingIOError, ConnectionError):
                    pass
            assert stack.envoy.alive()
            time.sleep(0.25)
    finally:
        for s in socks:
            s.close()
    assert received > 0, "the streams were answered"
    assert_still_serving(stack)
