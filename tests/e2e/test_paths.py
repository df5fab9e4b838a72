"""Path tricks against a rendered gateway: a guarded Exact route /v1/chat/completions next to
an unguarded PathPrefix /v1 route to the same backend. No spelling of the path may bring the
planted secret to the provider unmasked, and only chat completions are ever translated."""

from __future__ import annotations

import json
import socket
import textwrap

import pytest

from extproc.render.loader import render_file
from tests.harness import Stack

pytestmark = pytest.mark.e2e

GATEWAY = """\
backends:
- name: openai
  ai: {provider: openai, model: gpt-4o-mini, auth: {secretRef: {inline: sk-mock}},
       endpoint: {host: 127.0.0.1, port: 18091}}
routes:
- name: guarded
  matches: [{path: {type: Exact, value: /v1/chat/completions}}]
  backendRefs: [{name: openai}]
  policies:
    promptGuard:
      request:
        regex: {action: MASK, matches: [{pattern: "SECRET-[0-9]+", name: SECRET}]}
- name: open
  matches: [{path: {type: PathPrefix, value: /v1}}]
  backendRefs: [{name: openai}]
"""
PLANTED = "SECRET-12345"
BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": f"my key is {PLANTED}"}]}).encode()

GUARDED = ("guarded", 200, None)  # normalised onto the guarded route, masked
NOT_CHAT = ("-", 404, "unknown_url")  # the processor's (or Envoy's catch-all) 404
BAD_PATH = ("-", 400, "invalid_path")  # refused by Envoy's normalisation

VARIANTS = {
    "/v1/chat/completions": GUARDED,
    "/v1/chat/completions?x=1": GUARDED,
    "//v1/chat/completions": GUARDED,
    "/v1//chat/completions": GUARDED,
    "/v1/chat//completions": GUARDED,
    "/v1/./chat/completions": GUARDED,
    "/v1/x/../chat/completions": GUARDED,
    "/v1/chat/%63ompletions": GUARDED,
    "/%76%31/%63%68%61%74/completions": GUARDED,
    "/v1\\chat\\completions": GUARDED,
    "/v1%2Fchat%2Fcompletions": BAD_PATH,
    "/v1/chat%2fcompletions": BAD_PATH,
    "/v1/chat/completions%2F": BAD_PATH,
    "/v1%5Cchat%5Ccompletions": BAD_PATH,
    "/v1/chat/completions%00": BAD_PATH,
    "/v1/chat/completions#x": BAD_PATH,
    "/v1/chat/completions/": NOT_CHAT,
    "/v1/chat/completions/.": NOT_CHAT,
    "/v1/chat/completions;x=1": NOT_CHAT,
    "/v1/chat;x/completions": NOT_CHAT,
    "/v1/chat/completions%20": NOT_CHAT,
    "/v1/Chat/Completions": NOT_CHAT,
    "/V1/chat/completions": NOT_CHAT,
    "/v1/embeddings": NOT_CHAT,
    "/v1/models": NOT_CHAT,
    "/v1/completions": NOT_CHAT,
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    path = tmp_path_factory.mktemp("gw") / "gw.yaml"
    path.write_text(textwrap.dedent(GATEWAY))
    s = Stack(render_file(path)).start()
    yield s
    s.stop()


def raw_post(port: int, path: str, method: str = "POST") -> tuple[int, dict]:
    """Exactly this request line: HTTP clients would clean the path up first."""
    head = (
        f"{method} {path} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
        f"authorization: Bearer k\r\ncontent-length: {len(BODY)}\r\nconnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(head.encode() + BODY)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in headers.lower(), data[:500]
    return int(status_line.split()[1]), json.loads(body)


@pytest.mark.parametrize("path", list(VARIANTS))
def test_no_path_variant_reaches_the_provider_unguarded(stack, path):
    _route, status, code = VARIANTS[path]
    got, body = raw_post(stack.port, path)
    received = stack.mock.requests
    assert PLANTED not in json.dumps(received), f"{path} reached the provider unmasked"
    assert got == status, body
    if status == 200:
        assert body["object"] == "chat.completion"
        assert len(received) == 1 and received[0]["path"] == "/v1/chat/completions"
        assert "<SECRET>" in received[0]["body"]["messages"][0]["content"]
    else:
        assert received == [], f"{path} was forwarded"
        err = body["error"]
        assert set(err) == {"message", "type", "param", "code"}
        assert err["code"] == code and err["type"] == "invalid_request_error"


def test_other_methods_on_other_paths_are_404_too(stack):
    got, body = raw_post(stack.port, "/v1/models", method="GET")
    assert (got, body["error"]["code"]) == (404, "unknown_url")
    got, body = raw_post(stack.port, "/v1/chat/completions", method="GET")
    assert (got, body["error"]["code"]) == (405, "method_not_allowed")
    assert stack.mock.requests == []
