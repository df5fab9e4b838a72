"""What a misbehaving provider or an odd client request could do to the processor, and
what it does now: a stream that never ends a line is cut at a bound instead of growing
memory; unreadable Retry-After dates, odd `model` values and empty translated answers are
clear errors, not tracebacks or empty 200s; request shapes the translators did not expect
are 400s, not 500s."""

from __future__ import annotations

import copy

import orjson
import pytest

from extproc import messages as msg
from extproc.accounting import Accounting
from extproc.backend_health import retry_after_seconds
from extproc.guarded_stream import response_stream
from extproc.providers.base import UnsupportedRequest
from extproc.response_translation import ResponseTranslation
from extproc.settings import ProcessorSettings
from extproc.sse import MAX_EVENT_CHARS, EventTooLarge, SSEParser
from extproc.stream_transcoder import StreamTranscoder
from extproc.upstream_filter import UpstreamStream
from tests import filter_fakes as F
from tests.provider_helpers import make_provider

PIECE = b"x" * 65536


@pytest.fixture(scope="module")
def gw():
    return F.gateway()


# ---- a stream event without an end ------------------------------------------------------
def test_an_event_that_never_ends_a_line_is_refused_at_the_bound_and_dropped():
    parser = SSEParser()
    parser.feed(b'data: {"x":"')
    with pytest.raises(EventTooLarge):
        for _ in range(MAX_EVENT_CHARS // len(PIECE) + 2):
            parser.feed(PIECE)
    assert not parser._parts and not parser._data_lines  # nothing held any more
    assert parser.feed(PIECE + b"\n\n") == [] and parser.close() == []  # the rest is dropped


def test_an_event_of_endless_data_lines_is_refused_too():
    parser = SSEParser()
    with pytest.raises(EventTooLarge):
        for _ in range(MAX_EVENT_CHARS // len(PIECE) + 2):
            parser.feed(b"data: " + PIECE + b"\n")


def test_a_large_event_under_the_bound_still_parses():
    parser = SSEParser()
    events = [ev for i in range(0, 40) for ev in parser.feed(b"data: " + PIECE if i == 0 else PIECE)]
    events += parser.feed(b"\n\n")
    assert len(events) == 1 and len(events[0].data) == 40 * len(PIECE)


@pytest.mark.parametrize("guarded", [False, True])
async def test_a_client_stream_ends_with_an_error_when_an_event_never_ends(guarded):
    guards = None
    if guarded:
        from extproc.guards.config import ResponseGuardConfig
        from extproc.guards.pipeline import ResponseGuards

        guards = ResponseGuards(
            ResponseGuardConfig.model_validate({"regex": {"action": "MASK", "builtins": ["EMAIL"]}}), "r"
        )
    rs = response_stream("r", guards, False, {})
    out = await rs.feed(b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\ndata: {"x":"', False)
    for _ in range(MAX_EVENT_CHARS // len(PIECE) + 2):
        out += await rs.feed(PIECE, False)
    out += await rs.feed(PIECE, True)
    events = [e for e in out.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    error = orjson.loads(events[-2].removeprefix(b"data: "))["error"]
    assert error["code"] == "upstream_invalid_stream"
    assert rs.terminated and not rs.parser._parts


def test_a_translated_stream_ends_with_an_error_when_an_event_never_ends():
    tc = StreamTranscoder(make_provider({"name": "a", "provider": "anthropic"}).stream_translator("m"))
    out = tc.feed(b'event: message_start\ndata: {"type":"mess', False)
    for _ in range(MAX_EVENT_CHARS // len(PIECE) + 2):
        out += tc.feed(PIECE, False)
    events = [e for e in out.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    assert orjson.loads(events[-2].removeprefix(b"data: "))["error"]["code"] == "upstream_invalid_stream"


# An oversized event in the same chunk as whole events: those still reach the client.
OVERSIZED_TAIL = b"data: " + b"x" * (MAX_EVENT_CHARS + 16)


def test_the_parser_keeps_the_whole_events_before_an_oversized_one():
    parser = SSEParser()
    with pytest.raises(EventTooLarge) as raised:
        parser.feed(b"data: one\n\ndata: two\n\n" + OVERSIZED_TAIL)
    assert [ev.data for ev in raised.value.events] == ["one", "two"]
    events, error = SSEParser().read(b"data: one\r\n\r\n" + OVERSIZED_TAIL, True)
    assert [ev.data for ev in events] == ["one"] and isinstance(error, EventTooLarge)


@pytest.mark.parametrize("guarded", [False, True])
async def test_text_before_an_oversized_event_in_the_same_chunk_is_delivered(guarded):
    guards = None
    if guarded:
        from extproc.guards.config import ResponseGuardConfig
        from extproc.guards.pipeline import ResponseGuards

        guards = ResponseGuards(
            ResponseGuardConfig.model_validate({"regex": {"action": "MASK", "builtins": ["EMAIL"]}}), "r"
        )
    rs = response_stream("r", guards, False, {})
    first = b'data: {"choices":[{"index":0,"delta":{"content":"Hello, mail a@b.io"}}]}\n\n'
    out = await rs.feed(first + OVERSIZED_TAIL, False)
    events = [e for e in out.split(b"\n\n") if e]
    text = "".join(
        orjson.loads(e.removeprefix(b"data: "))["choices"][0]["delta"].get("content", "") for e in events[:-2]
    )
    assert text == ("Hello, mail <EMAIL>" if guarded else "Hello, mail a@b.io")
    assert orjson.loads(events[-2].removeprefix(b"data: "))["error"]["code"] == "upstream_invalid_stream"
    assert events[-1] == b"data: [DONE]" and rs.terminated
    assert await rs.feed(b"data: more\n\n", True) == b""


async def test_an_oversized_event_after_done_adds_nothing_to_a_finished_stream():
    rs = response_stream("r", None, False, {})
    first = b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\ndata: [DONE]\n\n'
    out = await rs.feed(first + OVERSIZED_TAIL, False)
    assert out == first  # one [DONE], no error after it


def test_a_translated_stream_delivers_the_text_before_an_oversized_event():
    tc = StreamTranscoder(make_provider({"name": "a", "provider": "anthropic"}).stream_translator("m"))
    head = (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"m1","model":"m",'
        b'"usage":{"input_tokens":3,"output_tokens":0}}}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        b'"content_block":{"type":"text","text":""}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"Hello"}}\n\n'
    )
    out = tc.feed(head + OVERSIZED_TAIL, False)
    events = [
        orjson.loads(e.removeprefix(b"data: ")) for e in out.split(b"\n\n") if e and e != b"data: [DONE]"
    ]
    assert (
        "".join(c["choices"][0]["delta"].get("content") or "" for c in events if c.get("choices")) == "Hello"
    )
    assert events[-1]["error"]["code"] == "upstream_invalid_stream"
    assert out.endswith(b"data: [DONE]\n\n") and tc.done


# ---- Retry-After ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value", ["Mon, 01 Jan 99999999999 00:00:00 GMT", "01 Jan 1000000000000000000000 00:00:00 GMT"]
)
def test_a_retry_after_date_no_clock_reaches_is_unreadable_not_a_crash(value):
    assert retry_after_seconds({"retry-after": value}) is None


async def test_a_429_with_such_a_date_still_reaches_the_client_and_cools_the_backend(gw):
    stream = UpstreamStream(gw, ProcessorSettings())
    host = F.host_metadata({"name": "ant", "provider": "anthropic"})
    await stream.request_headers(F.request_headers(F.client_headers(), upstream_host_metadata=host))
    await stream.request_body(F.request_body(F.CANONICAL))
    reply = await stream.response_headers(
        F.response_headers({":status": "429", "retry-after": "Mon, 01 Jan 99999999999 00:00:00 GMT"})
    )
    assert reply.WhichOneof("response") == "response_headers"
    assert gw.health.remaining("ant") > 0  # the default cooldown


# ---- odd values from a provider ---------------------------------------------------------------
def test_a_streamed_model_that_is_not_a_string_is_not_recorded_and_breaks_nothing():
    class Seen:
        def __init__(self) -> None:
            self.model = {"a": 1}
            self.first_token_at = self.last_token_at = None
            self.usage = {"prompt_tokens": 3, "completion_tokens": 2}
            self.text_parts: list[str] = []

    acct = Accounting("chat")
    acct.stream = True
    acct.take_stream(Seen(), None)  # type: ignore[arg-type]  # only what take_stream reads
    acct.record()  # used to raise: unhashable type 'dict'
    assert acct.response_model == "" and acct.total_tokens == 5


@pytest.mark.parametrize(
    "backend, model", [("ant", "claude-3-5-haiku-latest"), ("mock-openai", "gpt-4o-mini")]
)
@pytest.mark.parametrize("status", ["200", "204"])
def test_a_success_without_a_body_is_a_502_not_an_empty_answer(gw, backend, model, status):
    """Translated or not: an OpenAI-dialect backend's empty 200 used to pass as is."""
    found = gw.backend_named(backend)
    assert found is not None
    t = ResponseTranslation(found, model, "req-1", gw.max_response_bytes)
    req = F.response_headers({":status": status, "content-type": "application/json"}, end_of_stream=True)
    status_, body, _ = F.immediate(t.headers(req, msg.headers_of(req.response_headers.headers)))
    assert status_ == 502 and body["error"]["code"] == "upstream_invalid_response"
    assert t.failure == "upstream_invalid_response"


@pytest.mark.parametrize(
    "backend, model", [("ant", "claude-3-5-haiku-latest"), ("mock-openai", "gpt-4o-mini")]
)
@pytest.mark.parametrize("status, end", [("302", True), ("301", False), ("307", False), ("101", True)])
def test_a_redirect_from_a_provider_is_a_502_and_its_location_never_reaches_the_client(
    gw, backend, model, status, end
):
    found = gw.backend_named(backend)
    assert found is not None
    t = ResponseTranslation(found, model, "req-1", gw.max_response_bytes)
    req = F.response_headers(
        {":status": status, "location": "https://elsewhere.example/", "content-type": "text/html"},
        end_of_stream=end,
    )
    reply = t.headers(req, msg.headers_of(req.response_headers.headers))
    status_, body, headers = F.immediate(reply)
    assert status_ == 502 and body["error"]["code"] == "upstream_invalid_response"
    assert f"status {status}" in body["error"]["message"]
    assert "location" not in headers and t.failure == "upstream_invalid_response" and t.done


# ---- request shapes the translators did not expect --------------------------------------------
ASSISTANT_CALL = {"role": "assistant", "content": None}
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def with_schema(schema: dict) -> dict:
    return {**F.CANONICAL, "tools": [{**TOOL, "function": {"name": "f", "parameters": schema}}]}


BAD_FOR: dict[str, list[dict]] = {
    "mistral": [
        {**F.CANONICAL, "modalities": True},
        {
            **F.CANONICAL,
            "messages": [
                *F.CANONICAL["messages"],
                {
                    **ASSISTANT_CALL,
                    "tool_calls": [{"id": ["x"], "type": "function", "function": {"name": "f"}}],
                },
                {"role": "tool", "tool_call_id": "x", "content": "r"},
            ],
        },
    ],
    "gemini": [
        {**F.CANONICAL, "messages": [*F.CANONICAL["messages"], {**ASSISTANT_CALL, "function_call": {}}]},
        with_schema({"type": "object", "properties": {"a": {"type": "string"}}, "required": [{}]}),
        with_schema({"type": "object", "$defs": ["x"]}),
        with_schema({"type": "object", "$defs": {"A": 5}, "properties": {"a": {"$ref": "#/$defs/A"}}}),
        {**F.CANONICAL, "response_format": {"type": "json_schema", "json_schema": 5}},
        with_schema({"type": "object", "properties": 5, "required": ["a"]}),
    ],
}


@pytest.mark.parametrize(
    "provider, body", [(p, b) for p, bodies in BAD_FOR.items() for b in bodies], ids=lambda v: str(v)[:40]
)
def test_a_value_of_an_unexpected_shape_is_a_named_400_not_a_crash(provider, body):
    translator = make_provider({"name": "x", "provider": provider, "model": "m"})
    try:
        translator.translate_request(copy.deepcopy(body), "m")
    except UnsupportedRequest:
        pass  # the translator names what it cannot send (a 400 untranslatable_request)
    # (or it sends the value on as the provider's own API takes it: also no crash)


async def test_any_other_translator_failure_is_a_400_not_a_500(gw, monkeypatch, caplog):
    stream = UpstreamStream(gw, ProcessorSettings())
    host = F.host_metadata({"name": "ant", "provider": "anthropic"})
    await stream.request_headers(F.request_headers(F.client_headers(), upstream_host_metadata=host))
    backend = gw.backend_named("ant")
    assert backend is not None
    provider = backend.provider

    def broken(req, model):
        raise KeyError("name")

    monkeypatch.setattr(provider, "translate_request", broken)
    with caplog.at_level("WARNING", logger="aigw.upstream"):
        status, body, _ = F.immediate(await stream.request_body(F.request_body(F.CANONICAL)))
    assert status == 400 and body["error"]["code"] == "untranslatable_request"
    assert any(r.getMessage() == "request a translator could not read" for r in caplog.records)
