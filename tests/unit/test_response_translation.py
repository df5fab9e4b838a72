"""ResponseTranslation (extproc/response_translation.py): one attempt's answer turned
canonical for the client, driven with the response messages Envoy sends to the
route-level filter: no Envoy, no gRPC."""

from __future__ import annotations

import pytest
from envoy.extensions.filters.http.ext_proc.v3.processing_mode_pb2 import ProcessingMode

from extproc import messages as msg
from extproc.response_translation import ResponseTranslation
from tests import filter_fakes as F

BUFFERED_PARTIAL = ProcessingMode.BUFFERED_PARTIAL


@pytest.fixture(scope="module")
def gw():
    return F.gateway()


def translation(gw, backend: str = "ant", model: str = "claude-3-5-haiku-latest") -> ResponseTranslation:
    found = gw.backend_named(backend)
    assert found is not None
    return ResponseTranslation(found, model, "req-1", gw.max_response_bytes)


def headers(t: ResponseTranslation, hdrs: dict[str, str], end_of_stream: bool = False):
    req = F.response_headers(hdrs, end_of_stream)
    return t.headers(req, msg.headers_of(req.response_headers.headers))


def test_openai_json_answer_passes_untouched(gw):
    t = translation(gw, "mock-openai", "gpt-4o-mini")
    reply = headers(t, {":status": "200", "content-type": "application/json", "content-length": "10"})
    assert not reply.HasField("mode_override")  # canonical already: the body is not read
    assert not F.set_headers(reply) and not F.removed(reply) and t.done


@pytest.mark.parametrize(
    "hdrs, mode",
    [
        ({"content-type": "application/json", "content-length": "300"}, msg.BUFFERED),
        ({"content-type": "application/json"}, BUFFERED_PARTIAL),  # no declared length
        ({"content-type": "text/event-stream", "content-length": "300"}, msg.STREAMED),
    ],
)
def test_anthropic_answer_body_mode(gw, hdrs, mode):
    reply = headers(translation(gw), {":status": "200", **hdrs})
    assert reply.mode_override.response_body_mode == mode
    if mode == msg.STREAMED:
        assert "content-length" in F.removed(reply)  # the translated stream is another length


def test_openai_error_is_read_to_normalise_it(gw):
    t = translation(gw, "mock-openai", "gpt-4o-mini")
    reply = headers(t, {":status": "503", "content-type": "text/plain"})
    assert reply.HasField("mode_override") and not t.done
    err = F.new_body(t.body(F.response_body(b"upstream connect error")))["error"]
    assert err["type"] == "server_error" and "upstream connect error" in err["message"]


def test_oversize_declared_answer_is_refused_unread(gw):
    too_big = str(gw.max_response_bytes + 1)
    status, body, _ = F.immediate(
        headers(
            translation(gw), {":status": "200", "content-type": "application/json", "content-length": too_big}
        )
    )
    assert status == 502 and body["error"]["code"] == "response_too_large"


def test_anthropic_json_answer_translated_to_a_chat_completion(gw):
    t = translation(gw)
    headers(t, {":status": "200", "content-type": "application/json"})
    reply = t.body(F.response_body(F.anthropic_message("Hello!")))
    out = F.new_body(reply)
    assert out["object"] == "chat.completion" and out["id"] == "msg_1"
    assert out["choices"][0]["message"]["content"] == "Hello!"
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["usage"]["prompt_tokens"] == 12 and out["usage"]["completion_tokens"] == 3
    assert F.set_headers(reply)["content-length"] == str(len(F.common(reply).body_mutation.body))


def test_anthropic_error_translated_and_secret_redacted(gw):
    t = translation(gw)
    reply = headers(t, {":status": "401", "content-type": "application/json"})
    assert reply.HasField("mode_override")  # an error body is read to translate it
    reply = t.body(
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


def test_a_header_quoting_the_credential_is_redacted(gw):
    reply = headers(
        translation(gw),
        {":status": "401", "content-type": "application/json", "www-authenticate": f"key {F.ANTHROPIC_KEY}"},
    )
    sent = F.set_headers(reply)
    assert F.ANTHROPIC_KEY not in sent["www-authenticate"] and "[REDACTED]" in sent["www-authenticate"]


def test_html_error_page_keeps_its_text_without_the_credential(gw):
    t = translation(gw)
    headers(t, {":status": "503", "content-type": "text/html"})
    page = (
        b"<html><head><title>503</title><style>p {color: red}</style></head><body>"
        b"<h1>Service Unavailable</h1>\n<p>upstream overloaded; key "
        + F.ANTHROPIC_KEY.encode()
        + b"</p></body></html>"
    )
    err = F.new_body(t.body(F.response_body(page)))["error"]
    assert err["message"].startswith(
        "anthropic returned HTTP 503: 503 Service Unavailable upstream overloaded"
    )
    assert F.ANTHROPIC_KEY not in err["message"] and "[REDACTED]" in err["message"]
    assert (err["type"], err["code"]) == ("server_error", "upstream_error")


def test_bodiless_provider_error_gets_an_openai_error_body(gw):
    t = translation(gw)
    reply = headers(t, {":status": "500", "content-length": "0"}, end_of_stream=True)
    assert F.common(reply).status == F.pb.CommonResponse.CONTINUE_AND_REPLACE
    err = F.new_body(reply)["error"]
    assert err["type"] == "server_error" and "anthropic" in err["message"]
    sent = F.set_headers(reply)
    assert sent["content-type"] == "application/json"
    assert sent["content-length"] == str(len(F.common(reply).body_mutation.body))
    assert t.done


@pytest.mark.parametrize("cut", [7, 50, len(F.ANTHROPIC_SSE) // 2])
def test_anthropic_stream_split_mid_event_comes_out_as_chat_completion_chunks(gw, cut):
    t = translation(gw)
    reply = headers(t, {":status": "200", "content-type": "text/event-stream"})
    assert reply.mode_override.response_body_mode == msg.STREAMED
    pieces = [F.ANTHROPIC_SSE[:cut], F.ANTHROPIC_SSE[cut : cut + 33], F.ANTHROPIC_SSE[cut + 33 :]]
    out = b""
    for i, piece in enumerate(pieces):
        r = t.body(F.response_body(piece, end_of_stream=i == len(pieces) - 1))
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
    assert t.done


def test_bodiless_provider_error_gets_the_translated_status(gw):
    """Anthropic's 529 (overloaded) is an OpenAI-style 503, with or without a body."""
    t = translation(gw)
    reply = headers(t, {":status": "529", "content-length": "0"}, end_of_stream=True)
    assert F.set_headers(reply)[":status"] == "503"
    assert t.status == 503
