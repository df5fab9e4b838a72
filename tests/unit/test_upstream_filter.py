"""UpstreamStream (extproc/upstream_filter.py) driven with ProcessingRequest sequences, as
Envoy's upstream ext_proc filter sends them for one attempt: no Envoy, no gRPC."""

from __future__ import annotations

import copy

import orjson
import pytest
from envoy.extensions.filters.http.ext_proc.v3.processing_mode_pb2 import ProcessingMode

from extproc import messages as msg
from extproc.settings import ProcessorSettings
from extproc.upstream_filter import UpstreamStream
from tests import filter_fakes as F

SETTINGS = ProcessorSettings()
BUFFERED_PARTIAL = ProcessingMode.BUFFERED_PARTIAL
OPENAI_HOST = F.host_metadata({"name": "mock-openai", "provider": "openai"})
ANTHROPIC_HOST = F.host_metadata({"name": "ant", "provider": "anthropic"})


@pytest.fixture(scope="module")
def gw():
    return F.gateway()


async def attempt(gw, host: str, headers: dict[str, str] | None = None):
    """A new attempt: its stream, and its reply to the request headers."""
    stream = UpstreamStream(gw, SETTINGS)
    reply = await stream.request_headers(
        F.request_headers(headers or F.client_headers(), upstream_host_metadata=host, route_name="chat")
    )
    return stream, reply


# ---- request headers ------------------------------------------------------------------
async def test_request_headers_drop_client_headers_the_backend_does_not_allow(gw):
    hdrs = F.client_headers(
        anthropic_beta="prompt-caching-2024-07-31", x_forwarded_for="6.6.6.6", user_agent="OpenAI/Python 1.99"
    )
    _, reply = await attempt(gw, ANTHROPIC_HOST, hdrs)
    assert reply.WhichOneof("response") == "request_headers"
    dropped = set(F.removed(reply))
    assert {"anthropic-beta", "x-forwarded-for"} <= dropped
    assert not {"content-type", "user-agent", "x-request-id", ":path"} & dropped


async def test_unknown_host_metadata_is_refused_not_forwarded(gw):
    # Same name, another provider: a look-alike, not the configured backend.
    stream, reply = await attempt(gw, F.host_metadata({"name": "ant", "provider": "openai"}))
    status, body, _ = F.immediate(reply)
    assert status == 500 and body["error"]["code"] == "backend_not_configured"
    assert stream.backend is None


async def test_empty_request_body_is_a_400(gw):
    stream = UpstreamStream(gw, SETTINGS)
    reply = await stream.request_headers(
        F.request_headers(F.client_headers(), end_of_stream=True, upstream_host_metadata=ANTHROPIC_HOST)
    )
    status, body, _ = F.immediate(reply)
    assert status == 400 and body["error"]["code"] == "invalid_json"


# ---- request body ---------------------------------------------------------------------
async def test_request_body_translated_for_anthropic_with_path_and_credential(gw):
    stream, _ = await attempt(gw, ANTHROPIC_HOST)
    reply = await stream.request_body(
        F.request_body({**F.CANONICAL, "max_tokens": 50, "temperature": 0.5, "stop": "END"})
    )
    assert reply.WhichOneof("response") == "request_body"
    sent = F.set_headers(reply)
    assert sent[":path"] == "/v1/messages"
    assert sent["x-api-key"] == F.ANTHROPIC_KEY
    assert sent["anthropic-version"] == "2023-06-01"
    assert sent[":authority"] == "api.anthropic.com"
    assert sent["content-type"] == "application/json"
    body = F.new_body(reply)
    assert sent["content-length"] == str(len(F.common(reply).body_mutation.body))
    # The backend's configured model wins over the client's.
    assert body == {
        "model": "claude-3-5-haiku-latest",
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "max_tokens": 50,
        "temperature": 0.5,
        "stop_sequences": ["END"],
    }
    removed = F.removed(reply)
    assert "authorization" in removed and "cookie" in removed
    assert "x-api-key" not in removed  # it is set, not removed


async def test_request_body_for_openai_keeps_the_canonical_body_and_swaps_the_bearer(gw):
    stream, _ = await attempt(gw, OPENAI_HOST)
    reply = await stream.request_body(F.request_body(F.CANONICAL))
    sent = F.set_headers(reply)
    assert sent[":path"] == "/v1/chat/completions"
    assert sent["authorization"] == f"Bearer {F.OPENAI_KEY}"
    assert "authorization" not in F.removed(reply)
    assert F.new_body(reply)["messages"] == F.CANONICAL["messages"]


@pytest.mark.parametrize(
    "raw, code",
    [
        (b"{not json", "invalid_json"),
        (b'{"model": "m", "messages": "hi"}', "invalid_type"),
    ],
)
async def test_bad_request_body_is_a_400_in_openai_shape(gw, raw, code):
    stream, _ = await attempt(gw, ANTHROPIC_HOST)
    status, body, headers = F.immediate(await stream.request_body(F.request_body(raw)))
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["message"]
    assert body["error"]["code"] == code


async def test_request_anthropic_cannot_serve_is_a_400_naming_the_provider(gw):
    stream, _ = await attempt(gw, ANTHROPIC_HOST)
    status, body, _ = F.immediate(await stream.request_body(F.request_body({**F.CANONICAL, "n": 2})))
    assert status == 400
    assert body["error"]["code"] == "untranslatable_request"
    assert "anthropic" in body["error"]["message"]


async def test_retry_attempts_translate_the_same_canonical_body_independently(gw):
    """Envoy retries on another host: a new stream per attempt, each translating the
    canonical body the route filter left for its own host."""
    canonical = {**F.CANONICAL, "max_tokens": 20}
    raw = orjson.dumps(canonical)
    first, _ = await attempt(gw, OPENAI_HOST, F.client_headers(x_envoy_attempt_count="1"))
    second, _ = await attempt(gw, ANTHROPIC_HOST, F.client_headers(x_envoy_attempt_count="2"))
    one = await first.request_body(F.request_body(raw))
    two = await second.request_body(F.request_body(raw))
    assert F.set_headers(one)[":path"] == "/v1/chat/completions"
    assert F.set_headers(one)["authorization"] == f"Bearer {F.OPENAI_KEY}"
    assert "x-api-key" not in F.set_headers(one)
    assert F.new_body(one)["model"] == "gpt-4o-mini"
    assert F.set_headers(two)[":path"] == "/v1/messages"
    assert F.set_headers(two)["x-api-key"] == F.ANTHROPIC_KEY
    assert "authorization" in F.removed(two)
    assert F.new_body(two)["model"] == "claude-3-5-haiku-latest"
    assert F.new_body(two)["system"] == "Be brief."
    assert (first.attempt, second.attempt) == ("1", "2")
    # The routes' answers report the backend that answered, and which attempt it was.
    hdrs = {":status": "200", "content-type": "application/json"}
    report = F.set_headers(await second.response_headers(F.response_headers(hdrs)))
    assert report["x-aigw-backend"] == "ant" and report["x-aigw-provider"] == "anthropic"
    assert report["x-aigw-attempt"] == "2"


async def test_translation_does_not_change_the_canonical_request(gw):
    stream, _ = await attempt(gw, ANTHROPIC_HOST)
    canonical = copy.deepcopy(F.CANONICAL)
    stream.translate(canonical)
    assert canonical == F.CANONICAL


# ---- response -------------------------------------------------------------------------
async def test_openai_json_answer_passes_untouched(gw):
    stream, _ = await attempt(gw, OPENAI_HOST)
    await stream.request_body(F.request_body(F.CANONICAL))
    reply = await stream.response_headers(
        F.response_headers({":status": "200", "content-type": "application/json", "content-length": "10"})
    )
    assert not reply.HasField("mode_override")  # canonical already: the body is not read
    assert F.set_headers(reply)["x-aigw-provider"] == "openai"


@pytest.mark.parametrize(
    "headers, mode",
    [
        ({"content-type": "application/json", "content-length": "300"}, msg.BUFFERED),
        ({"content-type": "application/json"}, BUFFERED_PARTIAL),  # no declared length
        ({"content-type": "text/event-stream", "content-length": "300"}, msg.STREAMED),
    ],
)
async def test_anthropic_answer_body_mode(gw, headers, mode):
    stream, _ = await attempt(gw, ANTHROPIC_HOST)
    await stream.request_body(F.request_body(F.CANONICAL))
    reply = await stream.response_headers(F.response_headers({":status": "200", **headers}))
    assert reply.mode_override.response_body_mode == mode
    if mode == msg.STREAMED:
        assert "content-length" in F.removed(reply)  # the translated stream is another length


async def test_oversize_declared_answer_is_refused_unread(gw):
    stream, _ = await attempt(gw, ANTHROPIC_HOST)
    await stream.request_body(F.request_body(F.CANONICAL))
    too_big = str(gw.max_response_bytes + 1)
    status, body, _ = F.immediate(
        await stream.response_headers(
            F.response_headers(
                {":status": "200", "content-type": "application/json", "content-length": too_big}
            )
        )
    )
    assert status == 502 and body["error"]["code"] == "response_too_large"


async def test_anthropic_json_answer_translated_to_a_chat_completion(gw):
    stream, _ = await attempt(gw, ANTHROPIC_HOST)
    await stream.request_body(F.request_body(F.CANONICAL))
    await stream.response_headers(F.response_headers({":status": "200", "content-type": "application/json"}))
    reply = await stream.response_body(
        F.response_body(
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-3-5-haiku-latest",
                "content": [{"type": "text", "text": "Hello!"}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 12, "output_tokens": 3},
            }
        )
    )
    out = F.new_body(reply)
    assert out["object"] == "chat.completion" and out["id"] == "msg_1"
    assert out["choices"][0]["message"]["content"] == "Hello!"
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["usage"]["prompt_tokens"] == 12 and out["usage"]["completion_tokens"] == 3
    assert F.set_headers(reply)["content-length"] == str(len(F.common(reply).body_mutation.body))


async def test_anthropic_error_translated_and_secret_redacted(gw):
    stream, _ = await attempt(gw, ANTHROPIC_HOST)
    await stream.request_body(F.request_body(F.CANONICAL))
    reply = await stream.response_headers(
        F.response_headers({":status": "401", "content-type": "application/json"})
    )
    assert reply.HasField("mode_override")  # an error body is read to translate it
    reply = await stream.response_body(
        F.response_body(
            {
                "type": "error",
                "error": {"type": "authentication_error", "message": f"invalid x-api-key {F.ANTHROPIC_KEY}"},
            }
        )
    )
    err = F.new_body(reply)["error"]
    assert err["type"] == "authentication_error" and err["code"] == "invalid_api_key"
    assert F.ANTHROPIC_KEY not in err["message"] and "[REDACTED]" in err["message"]
    assert ":status" not in F.set_headers(reply)  # 401 stays 401


async def test_html_error_page_keeps_its_text_without_the_credential(gw):
    stream, _ = await attempt(gw, ANTHROPIC_HOST)
    await stream.request_body(F.request_body(F.CANONICAL))
    await stream.response_headers(F.response_headers({":status": "503", "content-type": "text/html"}))
    page = (
        b"<html><head><title>503</title><style>p {color: red}</style></head><body>"
        b"<h1>Service Unavailable</h1>\n<p>upstream overloaded; key "
        + F.ANTHROPIC_KEY.encode()
        + b"</p></body></html>"
    )
    reply = await stream.response_body(F.response_body(page))
    err = F.new_body(reply)["error"]
    assert err["message"].startswith(
        "anthropic returned HTTP 503: 503 Service Unavailable upstream overloaded"
    )
    assert F.ANTHROPIC_KEY not in err["message"] and "[REDACTED]" in err["message"]
    assert (err["type"], err["code"]) == ("server_error", "upstream_error")


async def test_bodiless_provider_error_gets_an_openai_error_body(gw):
    stream, _ = await attempt(gw, ANTHROPIC_HOST)
    await stream.request_body(F.request_body(F.CANONICAL))
    reply = await stream.response_headers(
        F.response_headers({":status": "500", "content-length": "0"}, end_of_stream=True)
    )
    assert F.common(reply).status == F.pb.CommonResponse.CONTINUE_AND_REPLACE
    err = F.new_body(reply)["error"]
    assert err["type"] == "server_error" and "anthropic" in err["message"]
    sent = F.set_headers(reply)
    assert sent["content-type"] == "application/json"
    assert sent["content-length"] == str(len(F.common(reply).body_mutation.body))
    assert sent["x-aigw-backend"] == "ant" and stream.done


@pytest.mark.parametrize("cut", [7, 50, len(F.ANTHROPIC_SSE) // 2])
async def test_anthropic_stream_split_mid_event_comes_out_as_chat_completion_chunks(gw, cut):
    stream, _ = await attempt(gw, ANTHROPIC_HOST)
    await stream.request_body(F.request_body({**F.CANONICAL, "stream": True}))
    reply = await stream.response_headers(
        F.response_headers({":status": "200", "content-type": "text/event-stream"})
    )
    assert reply.mode_override.response_body_mode == msg.STREAMED
    pieces = [F.ANTHROPIC_SSE[:cut], F.ANTHROPIC_SSE[cut : cut + 33], F.ANTHROPIC_SSE[cut + 33 :]]
    out = b""
    for i, piece in enumerate(pieces):
        r = await stream.response_body(F.response_body(piece, end_of_stream=i == len(pieces) - 1))
        out += F.common(r).body_mutation.body
    chunks = F.sse_chunks(out)
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["id"] for c in chunks} == {"msg_s"}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    assert text == "Hello world"
    finishes = [
        c["choices"][0]["finish_reason"]
        for c in chunks
        if c.get("choices") and c["choices"][0].get("finish_reason")
    ]
    assert finishes == ["stop"]
    assert stream.done


async def test_bodiless_provider_error_gets_the_translated_status(gw):
    """Anthropic's 529 (overloaded) is an OpenAI-style 503, with or without a body."""
    stream, _ = await attempt(gw, ANTHROPIC_HOST)
    await stream.request_body(F.request_body(F.CANONICAL))
    reply = await stream.response_headers(
        F.response_headers({":status": "529", "content-length": "0"}, end_of_stream=True)
    )
    assert F.set_headers(reply)[":status"] == "503"
    assert stream.status == 503
