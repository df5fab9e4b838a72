"""Anthropic provider: settings, request and response mapping, stream usage and edge cases,
and the mock. Golden files, stream chunking and the error table: tests/unit/test_goldens.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from extproc.mock import engine
from extproc.mock.dialects.anthropic import AnthropicDialect
from extproc.mock.dialects.base import BadRequest
from extproc.mock.server import MockState, build_app
from extproc.providers._anthropic_response import FINISH_REASONS
from extproc.providers.anthropic import DROPPED_FIELDS, Anthropic
from extproc.providers.base import ProviderError, UnsupportedRequest
from tests.provider_helpers import (
    assert_valid_openai_stream,
    chunks_of,
    golden,
    make_provider,
    normalise,
    transcode,
)

P = "anthropic"
AUTH = {"secretRef": {"inline": "k"}}


def provider(**extra: Any) -> Anthropic:
    return make_provider({"provider": "anthropic", "model": "claude-3-5-haiku-latest", "auth": AUTH, **extra})  # type: ignore[return-value]


def translate(req: dict[str, Any], model: str = "claude-3-5-haiku-latest", **extra: Any) -> dict:
    return provider(**extra).translate_request(req, model)


def req(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": list(messages) or [{"role": "user", "content": "hi"}], **fields}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def sse(kind: str, **data: Any) -> bytes:
    return f"event: {kind}\ndata: ".encode() + orjson.dumps({"type": kind, **data}) + b"\n\n"


def stream_chunks(stream: bytes, cuts: list[int] | None = None) -> list[Any]:
    return normalise(chunks_of(transcode(provider(), "claude-x", stream, cuts)))


def message_start(usage: dict[str, int], msg_id: str = "msg_1") -> bytes:
    return sse(
        "message_start",
        message={
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": "claude-x",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        },
    )


def text_delta(text: str, index: int = 0) -> bytes:
    return sse("content_block_delta", index=index, delta={"type": "text_delta", "text": text})


def usage_chunk(chunks: list[Any]) -> dict[str, Any]:
    [u] = [c["usage"] for c in chunks if isinstance(c, dict) and "usage" in c]
    return u


# ---- settings ----------------------------------------------------------------------------


def test_settings_defaults_and_headers() -> None:
    p = provider()
    assert p.settings.anthropic_version == "2023-06-01"
    assert p.settings.default_max_tokens == 4096
    assert p.extra_headers() == {"anthropic-version": "2023-06-01"}
    assert p.request_path("claude-x", True) == p.request_path("claude-x", False) == "/v1/messages"
    assert (p.auth_header, p.auth_prefix) == ("x-api-key", "")
    assert p.default_authority == "api.anthropic.com"


def test_settings_camel_case_aliases() -> None:
    p = provider(anthropicVersion="2024-01-01", defaultMaxTokens=1024)
    assert p.extra_headers() == {"anthropic-version": "2024-01-01"}
    body = translate(req(), anthropicVersion="2024-01-01", defaultMaxTokens=1024)
    assert body["max_tokens"] == 1024


def test_settings_reject_unknown_keys() -> None:
    with pytest.raises(Exception, match="maxTokensDefault"):
        provider(maxTokensDefault=5)


# ---- requests (the goldens: test_goldens.py) ---------------------------------------------


def test_dropped_fields_change_nothing() -> None:
    base = req(user("hi"))
    noisy = {**base, **{f: {"x": 1} for f in DROPPED_FIELDS}}
    assert translate(noisy) == translate(base)
    assert not set(DROPPED_FIELDS) & set(translate(noisy))


def test_docs_list_every_dropped_field() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "providers" / "anthropic.md").read_text()
    assert [f for f in DROPPED_FIELDS if f"`{f}`" not in doc] == []


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, {"max_tokens": 4096}),
        ({"max_tokens": 50}, {"max_tokens": 50}),
        ({"max_tokens": 50, "max_completion_tokens": 70}, {"max_tokens": 70}),
        ({"temperature": 0}, {"temperature": 0}),
        ({"temperature": 0.3}, {"temperature": 0.3}),
        ({"temperature": 2}, {"temperature": 1.0}),  # clamped, not scaled
        ({"top_p": 0.5}, {"top_p": 0.5}),
        ({"stop": ["a", "b"]}, {"stop_sequences": ["a", "b"]}),
        ({"stream": True}, {"stream": True}),
        ({"user": "u1"}, {"metadata": {"user_id": "u1"}}),
        ({"safety_identifier": "s1", "user": "u1"}, {"metadata": {"user_id": "s1"}}),
        ({"n": 1}, {}),
    ],
)
def test_request_fields(fields: dict, expected: dict) -> None:
    body = translate(req(**fields))
    for key, value in expected.items():
        assert body[key] == value and type(body[key]) is type(value)
    if not fields.get("stream"):
        assert "stream" not in body


TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, None),
        ({"tool_choice": "auto"}, {"type": "auto"}),
        ({"tool_choice": "required"}, {"type": "any"}),
        ({"tool_choice": "none"}, {"type": "none"}),
        ({"tool_choice": {"type": "function", "function": {"name": "f"}}}, {"type": "tool", "name": "f"}),
        ({"parallel_tool_calls": False}, {"type": "auto", "disable_parallel_tool_use": True}),
        ({"parallel_tool_calls": True}, None),
        (
            {"tool_choice": "required", "parallel_tool_calls": False},
            {"type": "any", "disable_parallel_tool_use": True},
        ),
        ({"tool_choice": "none", "parallel_tool_calls": False}, {"type": "none"}),
    ],
)
def test_tool_choice(fields: dict, expected: dict | None) -> None:
    body = translate(req(tools=TOOLS, **fields))
    assert body.get("tool_choice") == expected
    assert body["tools"] == [{"name": "f", "input_schema": {"type": "object"}}]


def test_tool_choice_without_tools_is_not_sent() -> None:
    body = translate(req(tool_choice="required", parallel_tool_calls=False))
    assert "tool_choice" not in body and "tools" not in body


def test_system_only_string_and_cache_control() -> None:
    body = translate(req({"role": "developer", "content": "be nice"}, user("hi")))
    assert body["system"] == "be nice"
    part = {"type": "text", "text": "long doc", "cache_control": {"type": "ephemeral"}}
    body = translate(req({"role": "system", "content": [part]}, user([part])))
    assert body["system"] == [{"type": "text", "text": "long doc", "cache_control": {"type": "ephemeral"}}]
    assert body["messages"][0]["content"] == body["system"]


def test_empty_turns_are_skipped_and_neighbours_merged() -> None:
    body = translate(
        req(user("a"), {"role": "assistant", "content": ""}, user([{"type": "text", "text": ""}]), user("b"))
    )
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]


def test_replayed_refusal_becomes_text_and_empty_one_is_skipped() -> None:
    refusal = {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't."}]}
    empty = {"role": "assistant", "content": [{"type": "refusal", "refusal": ""}]}
    assert translate(req(user("q"), refusal, user("ok")))["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "I can't."}],
    }
    assert [m["role"] for m in translate(req(user("q"), empty, user("ok")))["messages"]] == ["user"]


def test_tool_result_without_content_and_single_tool_turn() -> None:
    body = translate(
        req(
            user("q"),
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": ""},
        )
    )
    assert body["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "c1", "name": "f", "input": {}}],
    }
    assert body["messages"][2] == {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1"}]}


def _call(arguments: str) -> dict[str, Any]:
    return {
        "role": "assistant",
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}],
    }


@pytest.mark.parametrize(
    ("canonical", "match"),
    [
        (req(n=2), "'n'"),
        (req(user("q"), _call("{not json")), "not valid JSON"),
        (req(user("q"), _call("[1, 2]")), "JSON object"),
        (req(user([{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}])), "input_audio"),
        (req(user([{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}])), "image_url"),
        (req(user([{"type": "image_url", "image_url": {"url": "data:image/png,raw"}}])), "image_url"),
        (req({"role": "function", "name": "f", "content": "x"}), "role 'function'"),
        (req(functions=[{"name": "f"}]), "functions"),
        (req(tools=[{"type": "custom", "function": {"name": "f"}}]), "custom"),
        (req(tools=TOOLS, tool_choice={"type": "allowed_tools"}), "tool_choice"),
    ],
)
def test_unsupported_requests_are_rejected(canonical: dict, match: str) -> None:
    with pytest.raises(UnsupportedRequest, match=match):
        translate(canonical)


# ---- responses (the goldens: test_goldens.py) --------------------------------------------


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
def test_finish_reason_mapping(stop_reason: str, finish: str) -> None:
    body = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [],
        "stop_reason": stop_reason,
        "usage": {"input_tokens": 1, "output_tokens": 0},
    }
    out = provider().translate_response(body, "m")
    assert out["choices"][0]["finish_reason"] == finish
    assert out["choices"][0]["message"]["content"] is None
    assert stop_reason in FINISH_REASONS


def test_response_that_is_not_a_message_is_refused() -> None:
    with pytest.raises(ProviderError):
        provider().translate_response({"type": "error", "error": {}}, "m")


# ---- stream usage: cumulative, never summed ----------------------------------------------


def test_usage_takes_last_values_not_sums() -> None:
    stream = (
        message_start({"input_tokens": 10, "output_tokens": 1})
        + text_delta("x")
        + sse("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 30})
        + sse("message_stop")
    )
    assert usage_chunk(stream_chunks(stream)) == {
        "prompt_tokens": 10,
        "completion_tokens": 30,
        "total_tokens": 40,
    }


def test_usage_repeated_input_counts_are_not_double_counted() -> None:
    start = {
        "input_tokens": 10,
        "cache_creation_input_tokens": 3,
        "cache_read_input_tokens": 4,
        "output_tokens": 2,
    }
    final = {**start, "output_tokens": 25}
    stream = (
        message_start(start)
        + text_delta("x")
        + sse("message_delta", delta={"stop_reason": "end_turn"}, usage=final)
        + sse("message_stop")
    )
    assert usage_chunk(stream_chunks(stream)) == {
        "prompt_tokens": 17,
        "completion_tokens": 25,
        "total_tokens": 42,
        "prompt_tokens_details": {"cached_tokens": 4},
    }


def test_usage_null_fields_in_message_delta_keep_earlier_counts() -> None:
    stream = (
        message_start({"input_tokens": 9, "cache_read_input_tokens": 2, "output_tokens": 1})
        + sse(
            "message_delta",
            delta={"stop_reason": "end_turn"},
            usage={"input_tokens": None, "cache_read_input_tokens": None, "output_tokens": 4},
        )
        + sse("message_stop")
    )
    assert usage_chunk(stream_chunks(stream)) == {
        "prompt_tokens": 11,
        "completion_tokens": 4,
        "total_tokens": 15,
        "prompt_tokens_details": {"cached_tokens": 2},
    }


def test_usage_several_message_deltas_last_wins() -> None:
    stream = (
        message_start({"input_tokens": 5, "output_tokens": 1})
        + sse("message_delta", delta={"stop_reason": None}, usage={"output_tokens": 7})
        + sse("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 12})
        + sse("message_stop")
    )
    chunks = stream_chunks(stream)
    assert usage_chunk(chunks)["completion_tokens"] == 12
    finishes = [c["choices"][0]["finish_reason"] for c in chunks[:-1] if c["choices"]]
    assert [f for f in finishes if f] == ["stop"]


# ---- stream edge cases -------------------------------------------------------------------


def test_stream_cut_after_message_delta_still_reports_usage() -> None:
    stream = (
        message_start({"input_tokens": 5, "output_tokens": 1})
        + text_delta("done")
        + sse("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 3})
    )
    chunks = stream_chunks(stream)
    assert_valid_openai_stream(chunks)
    assert not any("error" in c for c in chunks[:-1])
    assert usage_chunk(chunks) == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


def test_stream_cut_mid_answer_ends_with_error() -> None:
    chunks = stream_chunks(message_start({"input_tokens": 5, "output_tokens": 1}) + text_delta("Once"))
    assert_valid_openai_stream(chunks)
    assert chunks[-2]["error"]["code"] == "upstream_stream_truncated"
    assert not any(c["choices"][0]["finish_reason"] for c in chunks[:-2] if c.get("choices"))


def test_empty_stream_ends_with_error() -> None:
    chunks = stream_chunks(b"")
    assert chunks[0]["error"]["code"] == "upstream_stream_truncated" and chunks[1:] == ["[DONE]"]


def test_message_stop_without_message_delta_finishes() -> None:
    chunks = stream_chunks(
        message_start({"input_tokens": 1, "output_tokens": 1}) + text_delta("a") + sse("message_stop")
    )
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-2]] == [None, None, "stop"]
    assert chunks[-2]["choices"] == [] and chunks[-1] == "[DONE]"


def test_unknown_events_and_server_tool_input_are_ignored() -> None:
    stream = (
        message_start({"input_tokens": 1, "output_tokens": 1})
        + sse(
            "content_block_start",
            index=0,
            content_block={"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
        )
        + sse(
            "content_block_delta",
            index=0,
            delta={"type": "input_json_delta", "partial_json": '{"query": "x"}'},
        )
        + sse("content_block_stop", index=0)
        + sse("some_future_event", x=1)
        + b": keep-alive comment\n\n"
        + sse("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 2})
        + sse("message_stop")
    )
    chunks = stream_chunks(stream)
    assert_valid_openai_stream(chunks)
    assert not any("tool_calls" in c["choices"][0]["delta"] for c in chunks[:-1] if c["choices"])
    assert len(chunks) == 4  # role, finish, usage, [DONE]


def test_malformed_event_data_becomes_502_error() -> None:
    chunks = stream_chunks(
        message_start({"input_tokens": 1, "output_tokens": 1})
        + b"event: content_block_delta\ndata: {not json\n\n"
    )
    assert chunks[-2]["error"]["code"] == "upstream_invalid_stream"
    assert_valid_openai_stream(chunks)


# ---- the mock dialect --------------------------------------------------------------------

DIALECT = AnthropicDialect()


def mock_body(**fields: Any) -> dict[str, Any]:
    return {"model": "claude-x", "max_tokens": 100, "messages": [user("hi")], **fields}


def test_mock_matches_and_reads_x_api_key() -> None:
    assert DIALECT.match("POST", "/v1/messages") == {}
    assert DIALECT.match("GET", "/v1/messages") is None
    assert DIALECT.match("POST", "/v1/chat/completions") is None
    assert DIALECT.credential({"x-api-key": "sk-ant"}, {}) == "sk-ant"
    assert DIALECT.credential({"authorization": "Bearer sk-ant"}, {}) is None


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"model": "claude-x", "messages": [user("hi")]}, "max_tokens: Field required"),
        (mock_body(messages=[{"role": "system", "content": "s"}, user("hi")]), 'Unexpected role "system"'),
        (mock_body(messages=[{"role": "assistant", "content": "a"}, user("hi")]), "first message"),
        (mock_body(messages=[user("a"), user("b")]), "must alternate"),
        (mock_body(temperature=1.5), "temperature"),
        (mock_body(messages=[user("")]), "non-empty"),
        (
            mock_body(messages=[user([{"type": "tool_result", "tool_use_id": "t1", "content": "x"}])]),
            "unexpected `tool_use_id`",
        ),
        (
            mock_body(
                messages=[
                    user("q"),
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}],
                    },
                    user("no result"),
                ]
            ),
            "without `tool_result`",
        ),
        (mock_body(tools=[{"name": "f", "parameters": {"type": "object"}}]), "input_schema"),
    ],
)
def test_mock_rejects_what_the_api_rejects(body: dict, match: str) -> None:
    with pytest.raises(BadRequest, match=match):
        DIALECT.parse(body, {}, {})


def test_mock_rejects_untranslated_openai_body() -> None:
    # The mock is not the translator: an OpenAI body sent as is fails like the real API.
    with pytest.raises(BadRequest):
        DIALECT.parse(golden(P, "request_chat.in.json"), {}, {})


ROUND_TRIPS = {
    "text": req({"role": "system", "content": "be brief"}, user("hello there")),
    "length": req(user("one two three four five six"), max_tokens=3),
    "tool_call": req(
        user("weather?"),
        tool_choice="required",
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "parameters": {
                        "type": "object",
                        "required": ["city", "days"],
                        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                    },
                },
            }
        ],
    ),
    "after_tool": golden(P, "request_tools.in.json"),
}


def mock_round(canonical: dict[str, Any], stream: bool) -> tuple[engine.Plan, engine.MockRequest, Any]:
    body = translate({**canonical, "stream": stream})
    mreq = DIALECT.parse(body, {}, {})
    plan = engine.plan(mreq)
    if stream:
        return plan, mreq, b"".join(DIALECT.render_stream(plan, mreq))
    return plan, mreq, DIALECT.render_json(plan, mreq)


@pytest.mark.parametrize("case", ROUND_TRIPS)
def test_mock_stream_round_trip(case: str) -> None:
    plan, mreq, stream = mock_round(ROUND_TRIPS[case], stream=True)
    assert mreq.stream
    chunks = chunks_of(transcode(provider(), "claude-3-5-haiku-latest", stream))
    assert_valid_openai_stream(chunks)
    body = [c for c in chunks[:-1] if c["choices"]]
    assert body[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in body)
    assert text == plan.text
    calls: dict[int, dict[str, str]] = {}
    for c in body:
        for tc in c["choices"][0]["delta"].get("tool_calls") or ():
            slot = calls.setdefault(tc["index"], {"id": "", "name": "", "arguments": ""})
            slot["id"] += tc.get("id") or ""
            slot["name"] += tc.get("function", {}).get("name") or ""
            slot["arguments"] += tc["function"].get("arguments") or ""
    assert [(c["name"], orjson.loads(c["arguments"])) for c in calls.values()] == [
        (t.name, orjson.loads(t.arguments)) for t in plan.tool_calls
    ]
    assert all(c["id"].startswith("toolu_") for c in calls.values())
    assert [c["choices"][0]["finish_reason"] for c in body if c["choices"][0]["finish_reason"]] == [
        plan.finish_reason
    ]
    assert usage_chunk(chunks[:-1]) == {
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": plan.completion_tokens,
        "total_tokens": plan.prompt_tokens + plan.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


@pytest.mark.parametrize("case", ROUND_TRIPS)
def test_mock_json_round_trip(case: str) -> None:
    plan, _, body = mock_round(ROUND_TRIPS[case], stream=False)
    out = provider().translate_response(body, "claude-3-5-haiku-latest")
    message = out["choices"][0]["message"]
    assert message["content"] == (plan.text or None)
    assert [
        (c["function"]["name"], orjson.loads(c["function"]["arguments"]))
        for c in message.get("tool_calls", [])
    ] == [(t.name, orjson.loads(t.arguments)) for t in plan.tool_calls]
    assert out["choices"][0]["finish_reason"] == plan.finish_reason
    assert out["usage"]["prompt_tokens"] == plan.prompt_tokens
    assert out["usage"]["completion_tokens"] == plan.completion_tokens


@pytest.mark.parametrize(
    ("status", "out_status", "out_type"),
    [
        (400, 400, "invalid_request_error"),
        (401, 401, "authentication_error"),
        (429, 429, "rate_limit_error"),
        (500, 500, "server_error"),
        (529, 503, "server_error"),
    ],
)
def test_mock_errors_translate(status: int, out_status: int, out_type: str) -> None:
    body = DIALECT.render_error(status, "mock failure")
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    got_status, doc = provider().translate_error(status, orjson.dumps(body))
    assert (got_status, doc["error"]["type"], doc["error"]["message"]) == (
        out_status,
        out_type,
        "mock failure",
    )


async def test_mock_server_speaks_anthropic() -> None:
    async with TestClient(TestServer(build_app(MockState()))) as client:
        body = translate(req(user("hello"), stream=True))
        resp = await client.post("/v1/messages", json=body)
        assert resp.status == 401
        assert (await resp.json())["error"]["type"] == "authentication_error"

        resp = await client.post(
            "/v1/messages",
            json={**body, "max_tokens": None},
            headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
        )
        assert resp.status == 400 and "max_tokens" in (await resp.json())["error"]["message"]

        resp = await client.post(
            "/v1/messages",
            json=body,
            headers={"x-api-key": "k", "anthropic-version": "2023-06-01", "x-mock-chunk-bytes": "5"},
        )
        assert resp.status == 200 and resp.headers["content-type"].startswith("text/event-stream")
        raw = await resp.read()
    assert b"event: message_start" in raw and b"event: ping" in raw
    chunks = chunks_of(transcode(provider(), "claude-3-5-haiku-latest", raw, list(range(3, len(raw), 5))))
    assert_valid_openai_stream(chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1] if c["choices"])
    assert text == "Mock reply from claude-3-5-haiku-latest: hello"
