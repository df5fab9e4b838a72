"""RouteStream (extproc/route_filter.py) driven with ProcessingRequest sequences, as Envoy's
route-level ext_proc filter sends them for one request: no Envoy, no gRPC. Includes the
direct mode, where RouteStream also runs the attempt for a one-endpoint cluster."""

from __future__ import annotations

import threading

import orjson
import pytest
from envoy.extensions.filters.http.ext_proc.v3.processing_mode_pb2 import ProcessingMode

from extproc import messages as msg
from extproc import tokens
from extproc.route_filter import RouteStream, closes_finished
from extproc.settings import ProcessorSettings
from tests import filter_fakes as F

SETTINGS = ProcessorSettings()


@pytest.fixture(scope="module")
def gw():
    return F.gateway()


@pytest.fixture(scope="module")
def direct_gw():
    return F.gateway(direct=True)


async def start(
    gw,
    headers: dict[str, str] | None = None,
    end_of_stream: bool = False,
    settings: ProcessorSettings = SETTINGS,
    **attrs: str,
):
    stream = RouteStream(gw, settings)
    attrs.setdefault("route_name", "chat")
    reply = await stream.request_headers(
        F.request_headers(headers or F.client_headers(), end_of_stream=end_of_stream, **attrs)
    )
    return stream, reply


# ---- request headers ------------------------------------------------------------------
async def test_client_x_aigw_headers_are_removed(gw):
    stream, reply = await start(gw, F.client_headers(x_aigw_backend="spoof", x_aigw_attempt="9"))
    assert reply.WhichOneof("response") == "request_headers"
    assert sorted(F.removed(reply)) == ["x-aigw-attempt", "x-aigw-backend"]
    assert stream.route.name == "chat" and stream.attempt is None


@pytest.mark.parametrize(
    "change, status, code",
    [
        ({":method": "GET"}, 405, "method_not_allowed"),
        ({":path": "/v1/embeddings"}, 404, "unknown_url"),
        ({"content-length": str(4 * 1024 * 1024 + 1)}, 413, "request_too_large"),
        ({"content-type": "text/plain"}, 415, "unsupported_media_type"),
    ],
)
async def test_bad_request_headers_get_an_immediate_openai_error(gw, change, status, code):
    stream, reply = await start(gw, {**F.client_headers(), **change})
    got, body, headers = F.immediate(reply)
    assert got == status
    assert set(body["error"]) >= {"message", "type", "param", "code"}
    assert body["error"]["code"] == code
    assert headers["content-type"] == "application/json"
    assert reply.immediate_response.details.startswith("aigw")
    if status == 405:
        assert headers["allow"] == "POST"
    assert stream.done and stream.rejected is not None and stream.acct.status == status


async def test_empty_body_is_a_400(gw):
    _, reply = await start(gw, end_of_stream=True)
    status, body, _ = F.immediate(reply)
    assert status == 400 and body["error"]["code"] == "invalid_json"


async def test_body_over_the_limit_is_a_413(gw):
    # Route `anthropic` sets no maxRequestBytes: the processor's setting applies.
    stream, _ = await start(
        gw,
        F.client_headers(F.ANTHROPIC_PATH),
        route_name="anthropic",
        settings=ProcessorSettings(max_request_bytes=100),
    )
    assert stream.route.name == "anthropic" and stream.limit == 100
    status, body, _ = F.immediate(
        await stream.request_body(F.request_body({**F.CANONICAL, "user": "x" * 200}))
    )
    assert status == 413 and body["error"]["code"] == "request_too_large"
    assert stream.done


# ---- request body ---------------------------------------------------------------------
async def test_bad_json_body_is_a_400_in_openai_shape(gw):
    stream, _ = await start(gw)
    status, body, headers = F.immediate(await stream.request_body(F.request_body(b'{"model": ')))
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["code"] == "invalid_json"
    assert headers["content-type"] == "application/json"
    assert stream.rejected.code == "invalid_json"


async def test_plain_request_passes_unchanged(gw):
    stream, _ = await start(gw)
    reply = await stream.request_body(F.request_body(F.CANONICAL))
    assert reply.WhichOneof("response") == "request_body"
    assert not F.common(reply).HasField("body_mutation")
    assert stream.acct.request_model == "gpt-4o-mini" and not stream.acct.stream


async def test_stream_request_asks_for_usage_and_remembers_to_strip_it(gw):
    stream, _ = await start(gw)
    reply = await stream.request_body(F.request_body({**F.CANONICAL, "stream": True}))
    body = F.new_body(reply)
    assert body["stream_options"] == {"include_usage": True}
    assert F.set_headers(reply)["content-length"] == str(len(F.common(reply).body_mutation.body))
    assert stream.strip_usage and stream.acct.stream


# ---- response -------------------------------------------------------------------------
async def answered(gw, headers: dict[str, str], request: dict | None = None, end_of_stream=False):
    stream, _ = await start(gw)
    await stream.request_body(F.request_body(request or F.CANONICAL))
    reply = await stream.response_headers(F.response_headers(headers, end_of_stream))
    return stream, reply


async def fed_in_pieces(stream, raw: bytes, size: int) -> bytes:
    """`raw` sent as response body messages of `size` bytes; what the client gets."""
    out = b""
    for i in range(0, len(raw), size):
        r = await stream.response_body(F.response_body(raw[i : i + size], end_of_stream=i + size >= len(raw)))
        out += F.common(r).body_mutation.body
    return out


UPSTREAM_REPORT = {"x-aigw-backend": "mock-openai", "x-aigw-provider": "openai", "x-aigw-attempt": "2"}


async def test_sse_answer_is_streamed_and_internal_headers_removed(gw):
    stream, reply = await answered(
        gw,
        {":status": "200", "content-type": "text/event-stream", "content-length": "99", **UPSTREAM_REPORT},
        {**F.CANONICAL, "stream": True},
    )
    assert reply.mode_override.response_body_mode == msg.STREAMED
    assert set(F.removed(reply)) == {*UPSTREAM_REPORT, "content-length"}
    assert (stream.acct.backend, stream.acct.provider, stream.attempts) == ("mock-openai", "openai", 2)


@pytest.mark.parametrize(
    "length, mode", [("120", ProcessingMode.BUFFERED), (None, ProcessingMode.BUFFERED_PARTIAL)]
)
async def test_json_answer_is_read_whole(gw, length, mode):
    headers = {":status": "200", "content-type": "application/json", **UPSTREAM_REPORT}
    if length:
        headers["content-length"] = length
    stream, reply = await answered(gw, headers)
    assert reply.mode_override.response_body_mode == mode
    assert set(F.removed(reply)) == set(UPSTREAM_REPORT)
    assert stream.read_json


async def test_error_answer_is_read_to_put_it_in_the_openai_shape(gw):
    stream, reply = await answered(gw, {":status": "503", "content-type": "text/plain", **UPSTREAM_REPORT})
    assert reply.HasField("mode_override") and not stream.done
    reply = await stream.response_body(F.response_body(b"upstream overloaded"))
    err = F.new_body(reply)["error"]
    assert err["type"] == "server_error" and "upstream overloaded" in err["message"]
    assert stream.done and stream.acct.status == 503


async def test_envoys_own_error_reply_is_not_read(gw):
    """No upstream filter reported a backend: Envoy answered itself (no healthy host)."""
    stream, reply = await answered(gw, {":status": "503", "content-type": "text/plain"})
    assert not reply.HasField("mode_override")
    assert stream.done and stream.acct.status == 503 and stream.translation is None


ANTHROPIC_REPORT = {"x-aigw-backend": "ant", "x-aigw-provider": "anthropic", "x-aigw-attempt": "2"}


async def test_the_last_attempts_anthropic_answer_is_translated_here(gw):
    """Two filter positions: the upstream filter translated the request for the host it
    got and reports which backend answered; this filter translates that answer."""
    stream, reply = await answered(
        gw,
        {":status": "200", "content-type": "application/json", "content-length": "200", **ANTHROPIC_REPORT},
    )
    assert reply.mode_override.response_body_mode == ProcessingMode.BUFFERED
    assert set(F.removed(reply)) == set(ANTHROPIC_REPORT)
    assert stream.translation is not None and stream.translation.model == "claude-3-5-haiku-latest"
    reply = await stream.response_body(
        F.response_body(F.anthropic_message("Salut", id="msg_r", tokens=(6, 1)))
    )
    out = F.new_body(reply)
    assert out["object"] == "chat.completion" and out["choices"][0]["message"]["content"] == "Salut"
    assert F.set_headers(reply)["content-length"] == str(len(F.common(reply).body_mutation.body))
    assert (stream.acct.input_tokens, stream.acct.output_tokens) == (6, 1)
    assert (stream.acct.backend, stream.acct.provider, stream.attempts) == ("ant", "anthropic", 2)


async def test_the_last_attempts_anthropic_stream_is_translated_here(gw):
    stream, reply = await answered(
        gw,
        {":status": "200", "content-type": "text/event-stream", **ANTHROPIC_REPORT},
        {**F.CANONICAL, "stream": True},
    )
    assert reply.mode_override.response_body_mode == msg.STREAMED
    chunks = F.sse_chunks(await fed_in_pieces(stream, F.ANTHROPIC_SSE, 50))
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "Hello world"
    assert (stream.acct.input_tokens, stream.acct.output_tokens) == (9, 4) and stream.done


@pytest.mark.parametrize(
    "report",
    [
        {"x-aigw-backend": "elsewhere", "x-aigw-provider": "openai"},
        # A known backend under another provider's name: a look-alike, as for host metadata.
        {"x-aigw-backend": "ant", "x-aigw-provider": "openai"},
        {"x-aigw-backend": "ant"},
    ],
)
async def test_an_answer_from_a_backend_this_processor_does_not_know_is_refused(gw, report):
    stream, reply = await answered(gw, {":status": "200", "content-type": "application/json", **report})
    status, body, _ = F.immediate(reply)
    assert status == 500 and body["error"]["code"] == "backend_not_configured"
    assert stream.done and stream.acct.status == 500 and stream.acct.backend == report["x-aigw-backend"]


async def test_an_answer_that_cannot_be_translated_is_a_502_for_the_client_and_the_log(gw):
    stream, _ = await answered(gw, {":status": "200", "content-type": "application/json", **ANTHROPIC_REPORT})
    reply = await stream.response_body(F.response_body({"not": "an anthropic message"}))
    assert F.set_headers(reply)[":status"] == "502"
    assert F.new_body(reply)["error"]["code"] == "upstream_invalid_response"
    assert stream.acct.status == 502 and stream.rejected.code == "upstream_invalid_response"
    assert stream.acct.input_tokens is None  # no usage read from the error
    assert not reply.HasField("dynamic_metadata")


async def test_a_bodiless_529_from_the_last_attempt_is_an_openai_style_503(gw):
    stream, reply = await answered(gw, {":status": "529", **ANTHROPIC_REPORT}, end_of_stream=True)
    assert F.common(reply).status == F.pb.CommonResponse.CONTINUE_AND_REPLACE
    assert F.set_headers(reply)[":status"] == "503"
    assert set(ANTHROPIC_REPORT) <= set(F.removed(reply))
    assert F.new_body(reply)["error"]["type"] == "server_error"
    assert stream.done and stream.acct.status == 503 and stream.attempts == 2


async def test_provider_headers_quoting_the_credential_are_redacted_and_internal_ones_only_removed(gw):
    stream, reply = await answered(
        gw,
        {
            ":status": "401",
            "content-type": "application/json",
            "www-authenticate": f"Bearer {F.ANTHROPIC_KEY}",
            "x-aigw-debug": F.ANTHROPIC_KEY,
            **ANTHROPIC_REPORT,
        },
    )
    sent = F.set_headers(reply)
    assert F.ANTHROPIC_KEY not in sent["www-authenticate"] and "[REDACTED]" in sent["www-authenticate"]
    assert not any(k.startswith("x-aigw-") for k in sent)  # a set would bring it back
    assert {"x-aigw-debug", *ANTHROPIC_REPORT} <= set(F.removed(reply))
    reply = await stream.response_body(
        F.response_body(
            {"type": "error", "error": {"type": "authentication_error", "message": F.ANTHROPIC_KEY}}
        )
    )
    assert F.ANTHROPIC_KEY not in F.common(reply).body_mutation.body.decode()
    assert stream.acct.status == 401


async def test_a_reported_429_is_not_cooled_down_again_here():
    gw = F.gateway()  # its own: a cooldown cannot be taken back
    recorded = []
    gw.health.listen(lambda name, seconds: recorded.append(name))
    await answered(
        gw, {":status": "429", "retry-after": "9", "content-type": "application/json", **ANTHROPIC_REPORT}
    )
    assert recorded == [] and gw.health.remaining("ant") == 0  # the upstream filter's job


async def test_the_translation_asks_for_the_request_model_when_the_backend_has_none(gw):
    stream, _ = await answered(gw, {":status": "200", "content-type": "application/json", **UPSTREAM_REPORT})
    assert gw.backend_named("mock-openai").settings.model is None
    assert stream.translation.model == F.CANONICAL["model"]


async def test_json_answer_usage_becomes_dynamic_metadata(gw):
    stream, _ = await answered(gw, {":status": "200", "content-type": "application/json"})
    reply = await stream.response_body(
        F.response_body(
            {
                "id": "c1",
                "object": "chat.completion",
                "model": "gpt-4o-mini-2024",
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
            }
        )
    )
    assert not F.common(reply).HasField("body_mutation")  # nothing to change
    meta = reply.dynamic_metadata.fields["aigw"].struct_value.fields
    assert meta["input_tokens"].number_value == 7 and meta["output_tokens"].number_value == 2
    assert stream.acct.response_model == "gpt-4o-mini-2024" and stream.done


ANSWER_WITHOUT_USAGE = {
    "id": "c1",
    "object": "chat.completion",
    "model": "local-model",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "The quick brown fox jumps over the lazy dog.",
                "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
            },
            "finish_reason": "stop",
        },
        {"index": 1, "message": "odd"},  # odd shapes count as no text, never as an error
    ],
}


@pytest.mark.parametrize("usage", [None, {"prompt_tokens": "7"}, {"total_tokens": 9}])
async def test_a_json_answer_without_usage_is_counted_from_its_prompt_and_text(gw, usage):
    """As a stream without a usage chunk is: a self-hosted server that reports no usage
    used to count as zero tokens, in the metrics and against a token budget."""
    stream, _ = await answered(gw, {":status": "200", "content-type": "application/json"})
    answer = ANSWER_WITHOUT_USAGE if usage is None else {**ANSWER_WITHOUT_USAGE, "usage": usage}
    reply = await stream.response_body(F.response_body(answer))
    acct = stream.acct
    assert acct.estimated and acct.input_tokens is not None and acct.output_tokens is not None
    assert acct.input_tokens >= 10 and 10 <= acct.output_tokens <= 16  # 10 words, a name and "{}"
    meta = reply.dynamic_metadata.fields["aigw"].struct_value.fields
    assert meta["tokens_estimated"].bool_value and meta["total_tokens"].number_value == acct.total_tokens


async def test_an_error_without_usage_is_not_estimated(gw):
    stream, _ = await answered(gw, {":status": "400", "content-type": "application/json"})
    await stream.response_body(
        F.response_body({"error": {"message": "bad", "type": "invalid_request_error"}})
    )
    assert stream.acct.total_tokens is None and not stream.acct.estimated


async def test_streamed_usage_chunk_the_client_did_not_ask_for_is_dropped(gw):
    stream, _ = await answered(
        gw, {":status": "200", "content-type": "text/event-stream"}, {**F.CANONICAL, "stream": True}
    )
    chunk = {"id": "c", "object": "chat.completion.chunk", "model": "m", "created": 1}
    events = [
        {**chunk, "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]},
        {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**chunk, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}},
    ]
    raw = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    out = b""
    for i in range(0, len(raw), 40):
        r = await stream.response_body(F.response_body(raw[i : i + 40], end_of_stream=i + 40 >= len(raw)))
        out += F.common(r).body_mutation.body
    assert b'"usage"' not in out and b"data: [DONE]" in out and b'"Hi"' in out
    assert (stream.acct.input_tokens, stream.acct.output_tokens) == (5, 1)


@pytest.mark.parametrize(
    "ended, outcome",
    [
        ("complete", "cut_short"),  # grpc.aio: Envoy's reset reads as the stream's end
        ("cancelled", "cut_short"),  # grpclib: Envoy's reset cancels the handler
    ],
)
async def test_a_stream_closed_before_its_end_is_logged_cut_short(gw, caplog, ended, outcome):
    stream, _ = await answered(
        gw, {":status": "200", "content-type": "text/event-stream"}, {**F.CANONICAL, "stream": True}
    )
    chunk = {"id": "c", "object": "chat.completion.chunk", "model": "m", "created": 1}
    delta = {**chunk, "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]}
    await stream.response_body(
        F.response_body(b"data: " + orjson.dumps(delta) + b"\n\n", end_of_stream=False)
    )
    with caplog.at_level("INFO", logger="aigw.access"):
        stream.close(ended)
        await closes_finished()  # (counted on a thread while the vocabulary is not loaded)
    (record,) = [r for r in caplog.records if r.getMessage() == "request"]
    assert record.fields["outcome"] == outcome
    assert record.fields["output_tokens"] > 0  # what was seen still counts


async def test_a_cut_short_stream_with_a_large_prompt_is_counted_off_the_event_loop(gw, caplog, monkeypatch):
    # A client can send megabytes of prompt and leave at once: counting them on the loop
    # held every other stream for a second or more. The count runs on a thread, and the
    # request is logged when it is done, with the time it ended.
    tokens.encoding_for("m")  # loaded: only the size sends the count to a thread
    prompt = " ".join(f"word{i}" for i in range(40_000))  # ~290 KB
    request = {**F.CANONICAL, "stream": True, "messages": [{"role": "user", "content": prompt}]}
    stream, _ = await answered(gw, {":status": "200", "content-type": "text/event-stream"}, request)
    chunk = {"id": "c", "object": "chat.completion.chunk", "model": "m", "created": 1}
    delta = {**chunk, "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]}
    await stream.response_body(
        F.response_body(b"data: " + orjson.dumps(delta) + b"\n\n", end_of_stream=False)
    )
    threads = set()
    real = tokens.count_prompt

    def spy(prompt: tokens.Prompt) -> int:
        threads.add(threading.get_ident())
        return real(prompt)

    monkeypatch.setattr(tokens, "count_prompt", spy)
    with caplog.at_level("INFO", logger="aigw.access"):
        stream.close("complete")
        assert not [r for r in caplog.records if r.getMessage() == "request"]  # not yet
        await closes_finished()
    (record,) = [r for r in caplog.records if r.getMessage() == "request"]
    assert threads and threading.get_ident() not in threads
    assert record.fields["outcome"] == "cut_short"
    assert record.fields["input_tokens"] == real(tokens.prompt_of(request)) > 40_000
    assert record.fields["output_tokens"] == 1


# ---- direct mode: the route filter runs the attempt itself ----------------------------
async def direct_start(direct_gw, headers: dict[str, str] | None = None):
    return await start(
        direct_gw,
        headers or F.client_headers(F.ANTHROPIC_PATH),
        route_name="anthropic",
        cluster_name="anthropic",
    )


async def test_direct_request_translated_with_credential_swapped(direct_gw):
    hdrs = F.client_headers(F.ANTHROPIC_PATH, anthropic_beta="tools-2024", x_aigw_backend="x")
    stream, reply = await direct_start(direct_gw, hdrs)
    assert stream.attempt is not None and stream.acct.provider == "anthropic"
    assert {"x-aigw-backend", "anthropic-beta"} <= set(F.removed(reply))
    assert "content-type" not in F.removed(reply)
    reply = await stream.request_body(F.request_body({**F.CANONICAL, "max_tokens": 10}))
    sent = F.set_headers(reply)
    assert sent[":path"] == "/v1/messages"
    assert sent["x-api-key"] == F.ANTHROPIC_KEY
    assert "authorization" in F.removed(reply)
    body = F.new_body(reply)
    assert body["model"] == "claude-3-5-haiku-latest" and body["system"] == "Be brief."
    assert body["max_tokens"] == 10 and "choices" not in body


async def test_direct_json_answer_translated_back(direct_gw):
    stream, _ = await direct_start(direct_gw)
    await stream.request_body(F.request_body(F.CANONICAL))
    reply = await stream.response_headers(
        F.response_headers({":status": "200", "content-type": "application/json", "content-length": "200"})
    )
    assert reply.mode_override.response_body_mode == ProcessingMode.BUFFERED
    assert not any(k.startswith("x-aigw-") for k in F.set_headers(reply))
    reply = await stream.response_body(
        F.response_body(F.anthropic_message("Bonjour", id="msg_d", stop_reason="max_tokens", tokens=(4, 2)))
    )
    out = F.new_body(reply)
    assert out["object"] == "chat.completion"
    assert out["choices"][0]["message"]["content"] == "Bonjour"
    assert out["choices"][0]["finish_reason"] == "length"
    assert F.set_headers(reply)["content-length"] == str(len(F.common(reply).body_mutation.body))
    assert (stream.acct.input_tokens, stream.acct.output_tokens) == (4, 2)
    assert reply.dynamic_metadata.fields["aigw"].struct_value.fields["input_tokens"].number_value == 4


async def test_direct_provider_401_becomes_an_openai_error(direct_gw):
    stream, _ = await direct_start(direct_gw)
    await stream.request_body(F.request_body(F.CANONICAL))
    reply = await stream.response_headers(
        F.response_headers({":status": "401", "content-type": "application/json", "content-length": "120"})
    )
    assert reply.HasField("mode_override")  # read, to translate the error
    assert not stream.done
    reply = await stream.response_body(
        F.response_body(
            {
                "type": "error",
                "error": {"type": "authentication_error", "message": f"invalid x-api-key: {F.ANTHROPIC_KEY}"},
            }
        )
    )
    err = F.new_body(reply)["error"]
    assert err["type"] == "authentication_error" and err["code"] == "invalid_api_key"
    assert F.ANTHROPIC_KEY not in err["message"]
    assert set(err) >= {"message", "type", "param", "code"}
    assert stream.acct.status == 401 and stream.done


async def test_direct_untranslatable_request_is_a_400(direct_gw):
    stream, _ = await direct_start(direct_gw)
    reply = await stream.request_body(F.request_body({**F.CANONICAL, "n": 3}))
    status, body, _ = F.immediate(reply)
    assert status == 400 and body["error"]["code"] == "untranslatable_request"
    assert stream.done and stream.rejected.code == "untranslatable_request"


async def test_direct_429_cools_the_backend_down_once():
    gw = F.gateway(direct=True)
    recorded = []
    gw.health.listen(lambda name, seconds: recorded.append((name, seconds)))
    stream, _ = await direct_start(gw)
    await stream.request_body(F.request_body(F.CANONICAL))
    reply = await stream.response_headers(
        F.response_headers({":status": "429", "retry-after": "9", "content-type": "application/json"})
    )
    assert recorded == [("ant", 9)]
    assert "x-envoy-immediate-health-check-fail" not in F.set_headers(reply)  # no upstream filter


async def test_direct_untranslatable_answer_is_a_502_in_the_log(direct_gw):
    stream, _ = await direct_start(direct_gw)
    await stream.request_body(F.request_body(F.CANONICAL))
    await stream.response_headers(F.response_headers({":status": "200", "content-type": "application/json"}))
    reply = await stream.response_body(F.response_body(b"<html>oops</html>"))
    assert F.set_headers(reply)[":status"] == "502"
    assert stream.acct.status == 502 and stream.rejected.code == "upstream_invalid_response"


async def test_direct_anthropic_stream_comes_out_canonical(direct_gw):
    stream, _ = await direct_start(direct_gw)
    await stream.request_body(F.request_body({**F.CANONICAL, "stream": True}))
    reply = await stream.response_headers(
        F.response_headers({":status": "200", "content-type": "text/event-stream"})
    )
    assert reply.mode_override.response_body_mode == msg.STREAMED
    chunks = F.sse_chunks(await fed_in_pieces(stream, F.ANTHROPIC_SSE, 61))
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "Hello world"
    # The gateway asked for usage; the client did not, so it gets none, but it is counted.
    assert not any(c.get("usage") for c in chunks)
    assert (stream.acct.input_tokens, stream.acct.output_tokens) == (9, 4)


async def test_direct_bodiless_provider_error_keeps_internal_headers_from_the_client(direct_gw):
    """A provider's own `x-aigw-*` header on a bodiless error must not cross the edge in
    one-stream mode either (the attempt answers such an error with a replacement body)."""
    stream, _ = await direct_start(direct_gw)
    await stream.request_body(F.request_body(F.CANONICAL))
    reply = await stream.response_headers(
        F.response_headers(
            {":status": "500", "content-length": "0", "x-aigw-backend": "evil"}, end_of_stream=True
        )
    )
    assert F.common(reply).status == F.pb.CommonResponse.CONTINUE_AND_REPLACE
    assert "x-aigw-backend" in F.removed(reply)
    assert F.new_body(reply)["error"]["type"] == "server_error"


async def test_a_chunked_answer_with_no_bytes_is_a_502_not_an_empty_200(gw):
    """The headers did not say the answer was empty (chunked, or HTTP/2): its body did."""
    stream, _ = await answered(gw, {":status": "200", "content-type": "application/json"})
    reply = await stream.response_body(F.response_body(b"", end_of_stream=True))
    assert F.set_headers(reply)[":status"] == "502"
    assert F.new_body(reply)["error"]["code"] == "upstream_invalid_response"
    assert stream.acct.status == 502
