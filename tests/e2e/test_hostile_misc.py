"""Smaller hostile cases (issue 9, item 8): huge JSON responses, integers beyond 64 bits,
requests nested too deep, and what a client sees when a stream breaks mid-way."""

from __future__ import annotations

import asyncio
import signal
import threading

import openai
import orjson
import pytest
from aiohttp import web

from tests.harness import Stack, free_port, load_bootstrap, wait_for

pytestmark = pytest.mark.e2e

USER = [{"role": "user", "content": "hello"}]
BIG = 10_000_000  # over the 8 MiB every buffer has in a default rendered bootstrap
FITS = 6_000_000


class ChunkedJSONProvider:
    """An OpenAI-style provider that sends its JSON answers chunked, without a
    content-length (as real providers often do), on 127.0.0.2 so the harness leaves it
    alone. The answer's text is `text`, or `size` characters long."""

    def __init__(self) -> None:
        self.port = free_port()
        self.size = 10
        self.text: str | None = None
        self.raw: bytes | None = None  # an answer written as is
        self.status = 200
        self.headers: dict[str, str] = {}  # added to the answer's
        self.requests = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.requests += 1
        body = self.raw or orjson.dumps(
            {
                "id": "chatcmpl-c",
                "object": "chat.completion",
                "created": 1,
                "model": "c",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": self.text or "c" * self.size},
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )
        if self.status != 200:  # a whole answer of that status, with `raw` as its body
            return web.Response(status=self.status, body=self.raw, headers=self.headers)
        resp = web.StreamResponse(headers={"content-type": "application/json"})
        await resp.prepare(request)
        for i in range(0, len(body), 1 << 16):
            await resp.write(body[i : i + (1 << 16)])
        await resp.write_eof()
        return resp

    async def _start(self) -> None:
        app = web.Application(client_max_size=1 << 26)
        app.router.add_post("/{tail:.*}", self._answer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.2", self.port).start()

    def start(self) -> ChunkedJSONProvider:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


GATEWAY = """\
backends:
- name: oai
  ai: {{provider: openai, model: m, auth: {{secretRef: {{inline: k}}}},
       endpoint: {{host: 127.0.0.1, port: 18601}}}}
- name: anth
  ai: {{provider: anthropic, model: m, auth: {{secretRef: {{inline: k}}}},
       endpoint: {{host: 127.0.0.1, port: 18602}}}}
- name: chunky
  ai: {{provider: openai, model: m, auth: {{secretRef: {{inline: k}}}},
       endpoint: {{host: 127.0.0.2, port: {chunky}}}}}
routes:
- name: guarded
  matches: [{{path: {{type: Exact, value: /guarded/v1/chat/completions}}}}]
  backendRefs: [{{name: oai}}]
  policies: {{promptGuard: {{response: {{regex: {{action: MASK, builtins: [EMAIL]}}}}}}}}
- name: plain
  matches: [{{path: {{type: Exact, value: /plain/v1/chat/completions}}}}]
  backendRefs: [{{name: oai}}]
- name: translated
  matches: [{{path: {{type: Exact, value: /translated/v1/chat/completions}}}}]
  backendRefs: [{{name: anth}}]
- name: chunked-guarded
  matches: [{{path: {{type: Exact, value: /chunked-guarded/v1/chat/completions}}}}]
  backendRefs: [{{name: chunky}}]
  policies: {{promptGuard: {{response: {{regex: {{action: MASK, builtins: [EMAIL]}}}}}}}}
- name: chunked
  matches: [{{path: {{type: Exact, value: /chunked/v1/chat/completions}}}}]
  backendRefs: [{{name: chunky}}]
"""


@pytest.fixture(scope="module")
def big_stack(tmp_path_factory):
    from extproc.render.loader import render_file

    chunky = ChunkedJSONProvider().start()
    cfg = tmp_path_factory.mktemp("big") / "gw.yaml"
    cfg.write_text(GATEWAY.format(chunky=chunky.port))
    stack = Stack(render_file(cfg)).start()
    yield stack, chunky
    stack.stop()
    chunky.stop()


def _answer_size(stack, chunky, size: int) -> None:
    for mock in stack.mocks.values():
        mock.behave(content="x" * size)
    chunky.size, chunky.text, chunky.raw = size, None, None


# ---- huge JSON responses --------------------------------------------------------------


@pytest.mark.parametrize("route", ["guarded", "plain", "translated", "chunked-guarded", "chunked"])
def test_a_response_too_large_to_read_is_a_clear_502(big_stack, route):
    """Every route reads JSON answers whole (usage, guards, translation), so an answer
    larger than Envoy's buffer is refused the same way on each: guarded or not, with or
    without a content-length, read by the route filter or by the upstream filter."""
    stack, chunky = big_stack
    _answer_size(stack, chunky, BIG)
    r = stack.post({"model": "x", "messages": USER}, path=f"/{route}/v1/chat/completions")
    assert r.status_code == 502, r.text[:300]
    err = r.json()["error"]
    assert err["code"] == "response_too_large" and err["type"] == "server_error"
    assert "larger than the 8388608 bytes the gateway reads" in err["message"]
    # No stall, nothing left half-read: the next ordinary answer comes through.
    _answer_size(stack, chunky, 10)
    r = stack.post({"model": "x", "messages": USER}, path=f"/{route}/v1/chat/completions")
    assert r.status_code == 200, r.text[:300]
    assert r.json()["choices"][0]["message"]["content"] in ("x" * 10, "c" * 10)


@pytest.mark.parametrize("route", ["plain", "translated", "chunked"])
def test_a_large_answer_that_fits_passes_whole(big_stack, route):
    stack, chunky = big_stack
    _answer_size(stack, chunky, FITS)
    r = stack.post({"model": "x", "messages": USER}, path=f"/{route}/v1/chat/completions", timeout=60)
    assert r.status_code == 200, r.text[:300]
    content = r.json()["choices"][0]["message"]["content"]
    assert len(content) == FITS and set(content) <= {"x", "c"}
    assert r.json()["usage"]["total_tokens"] > 0


def test_a_chunked_answer_is_still_guarded(big_stack):
    stack, chunky = big_stack
    chunky.text = "write to jane.doe@example.com"
    r = stack.post({"model": "x", "messages": USER}, path="/chunked-guarded/v1/chat/completions")
    assert r.status_code == 200, r.text[:300]
    content = r.json()["choices"][0]["message"]["content"]
    assert "jane.doe@example.com" not in content and content.startswith("write to <")


def test_an_answer_nested_too_deep_to_write_back_is_a_502_not_a_gateway_error(big_stack):
    """A guard masks the answer, so the gateway writes it back: orjson writes at most 254
    levels, and this answer has 300 (it used to end in a 500)."""
    stack, chunky = big_stack
    deep = '{"k":' * 300 + '"x"' + "}" * 300
    chunky.raw = (
        b'{"id":"c","object":"chat.completion","created":1,"model":"c","choices":[{"index":0,'
        b'"finish_reason":"stop","message":{"role":"assistant","content":"mail jane.doe@example.com"}}],'
        b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2},"extra":' + deep.encode() + b"}"
    )
    try:
        r = stack.post({"model": "x", "messages": USER}, path="/chunked-guarded/v1/chat/completions")
        assert r.status_code == 502, r.text[:300]
        assert r.json()["error"]["code"] == "upstream_invalid_response"
        assert "jane.doe" not in r.text
        # Unguarded, nothing is written back: the answer passes as the provider sent it.
        r = stack.post({"model": "x", "messages": USER}, path="/chunked/v1/chat/completions")
        assert r.status_code == 200 and r.content == chunky.raw
    finally:
        chunky.raw = None


@pytest.mark.parametrize("route", ["chunked", "chunked-guarded"])
@pytest.mark.parametrize(
    "status, headers, body",
    [
        (302, {"location": "https://elsewhere.example/v1/chat/completions"}, b""),
        (307, {"location": "/v2/chat", "content-type": "text/plain"}, b"moved: ask jane.doe@example.com"),
        (204, {}, None),
    ],
)
def test_a_redirect_or_an_empty_success_from_a_provider_is_a_502(big_stack, route, status, headers, body):
    """Neither is a chat completion. Passed on, a redirect sent the client where the
    provider pointed, its body unguarded even on a guarded route, and a 204 left the SDK
    an empty answer to parse."""
    stack, chunky = big_stack
    chunky.status, chunky.headers, chunky.raw = status, headers, body
    try:
        r = stack.post({"model": "x", "messages": USER}, path=f"/{route}/v1/chat/completions")
        assert r.status_code == 502, (r.status_code, r.text[:300])
        err = r.json()["error"]
        assert err["code"] == "upstream_invalid_response"
        assert f"answered with status {status}" in err["message"] or "empty response" in err["message"]
        assert "location" not in r.headers and "jane.doe" not in r.text
    finally:
        chunky.status, chunky.headers, chunky.raw = 200, {}, None
    r = stack.post({"model": "x", "messages": USER}, path=f"/{route}/v1/chat/completions")
    assert r.status_code == 200, r.text[:300]


def test_an_answer_without_usage_is_still_counted(big_stack):
    """A self-hosted server that reports no usage: the access log (and the metrics, and
    a token budget) get an estimate from the prompt and the answer, not zero."""
    stack, chunky = big_stack
    words = "word " * 40
    chunky.raw = orjson.dumps(
        {
            "id": "c",
            "object": "chat.completion",
            "created": 1,
            "model": "c",
            "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": words}}
            ],
        }
    )
    try:
        r = stack.post(
            {"model": "x", "messages": USER},
            path="/chunked/v1/chat/completions",
        )
        assert r.status_code == 200 and r.content == chunky.raw  # passed on as sent
    finally:
        chunky.raw = None
    line = stack.access_log(r.headers["x-request-id"])
    assert int(line["output_tokens"]) >= 40 and int(line["total_tokens"]) > int(line["output_tokens"]), line


# ---- integers beyond 64 bits ------------------------------------------------------------


def test_an_integer_beyond_64_bits_is_refused_not_rounded(mock_stack):
    body = b'{"model": "x", "messages": [{"role": "user", "content": "hi"}], "seed": %d}' % 2**70
    r = mock_stack.post(raw=body)
    assert r.status_code == 400
    err = r.json()["error"]
    assert (err["code"], err["param"]) == ("invalid_value", "seed")
    assert mock_stack.mock.requests == [], "nothing was sent on"


def test_a_64_bit_integer_reaches_the_provider_exactly(mock_stack):
    body = b'{"model": "x", "messages": [{"role": "user", "content": "hi"}], "seed": %d}' % (2**64 - 1)
    r = mock_stack.post(raw=body)
    assert r.status_code == 200, r.text
    assert mock_stack.mock.requests[0]["body"]["seed"] == 2**64 - 1


# ---- nesting deeper than the gateway can write -------------------------------------------


def nested_metadata(depth: int) -> bytes:
    inner = '{"k":' * depth + '"x"' + "}" * depth
    return (
        b'{"model": "x", "messages": [{"role": "user", "content": "hi"}], "metadata": '
        + inner.encode()
        + b"}"
    )


def test_a_request_nested_too_deep_is_a_400_not_a_gateway_error(mock_stack):
    """orjson reads 1024 levels but writes 254: this request used to end in a 500."""
    r = mock_stack.post(raw=nested_metadata(300))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_request_body"
    assert mock_stack.mock.requests == [], "nothing was sent on"


def test_a_deeply_nested_request_within_the_limit_reaches_the_provider_whole(mock_stack):
    r = mock_stack.post(raw=nested_metadata(150))
    assert r.status_code == 200, r.text
    sent = mock_stack.mock.requests[0]["body"]["metadata"]
    for _ in range(150):
        sent = sent["k"]
    assert sent == "x"


# ---- streams that break mid-way ---------------------------------------------------------
# Envoy gives an ext_proc filter no call when the upstream resets after the response
# headers were sent (nor when the processor dies): the router resets the client's stream
# and the filters are torn down. These tests pin down what clients see (README,
# "Operations notes").


def _stream_until_broken(client, **headers):
    stream = client.chat.completions.create(
        model="x",
        stream=True,
        messages=[{"role": "user", "content": "one two three four five six"}],
        extra_headers=headers,
    )
    chunks = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in stream:
            chunks.append(chunk)
    return stream.response, chunks


def test_a_provider_reset_mid_stream_is_a_connection_error_for_the_client(mock_stack):
    response, chunks = _stream_until_broken(
        mock_stack.client(), **{"x-mock-reset": "mid", "x-mock-chunk-delay-ms": "20"}
    )
    assert response.status_code == 200
    assert chunks, "part of the answer arrived before the reset"
    request_id = response.headers["x-request-id"]
    line = mock_stack.access_log(request_id)
    assert line["flags"] == "UPE"
    assert line["details"].startswith("upstream_reset_after_response_started")
    # The gateway's own record says the stream was cut, and still counts what was seen.
    record = mock_stack.processor.wait_log(request_id=request_id, msg="request", timeout=10)
    assert record["outcome"] == "cut_short"
    assert record["output_tokens"] > 0


def test_a_processor_crash_mid_stream_is_a_connection_error_then_recovers():
    stack = Stack(load_bootstrap("mock.yaml")).start()
    try:
        client = stack.client()
        stream = client.chat.completions.create(
            model="x",
            stream=True,
            messages=[{"role": "user", "content": "one two three four five six"}],
            extra_headers={"x-mock-chunk-delay-ms": "300"},
        )
        proc = stack.processor.proc
        assert proc is not None
        chunks = []
        with pytest.raises(openai.APIConnectionError):
            for chunk in stream:
                chunks.append(chunk)
                if len(chunks) == 2:
                    proc.send_signal(signal.SIGKILL)
        assert stream.response.status_code == 200 and len(chunks) >= 2
        line = stack.access_log(stream.response.headers["x-request-id"])
        assert line["details"].startswith("ext_proc_error")
        # Envoy reconnects by itself once a processor serves the socket again.
        proc.wait(5)
        stack.processor.start()
        wait_for(
            lambda: stack.post({"model": "x", "messages": USER}).status_code == 200,
            15,
            "the gateway to serve again",
        )
    finally:
        stack.stop()
