"""Mistral provider: field mapping, tool call ids, content chunks, streams, the mock.
Golden files, stream chunking and the error table: tests/unit/test_goldens.py."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from extproc.mock import engine
from extproc.mock.dialects import discover
from extproc.mock.dialects.base import BadRequest
from extproc.mock.dialects.mistral import MistralDialect, Unprocessable
from extproc.mock.server import MockState, build_app
from extproc.providers._mistral_request import (
    DROPPED_FIELDS,
    REJECTED_FIELDS,
    RENAMED_FIELDS,
    mistral_tool_id,
)
from extproc.providers.base import ProviderError, UnsupportedRequest
from extproc.providers.mistral import Mistral
from tests.provider_helpers import (
    assert_valid_openai_stream,
    chunks_of,
    golden,
    make_provider,
    transcode,
)

P = "mistral"
MODEL = "mistral-large-latest"
DIALECT = MistralDialect()
ID9 = re.compile(r"^[a-zA-Z0-9]{9}$")


def provider() -> Mistral:
    return make_provider({"provider": P, "model": MODEL, "auth": {"secretRef": {"inline": "k"}}})  # type: ignore[return-value]


def translate(canonical: dict[str, Any]) -> dict[str, Any]:
    return provider().translate_request(canonical, MODEL)


def req(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": list(messages) or [{"role": "user", "content": "hi"}], **fields}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def sse(*docs: Any) -> bytes:
    return b"".join(b"data: " + (d if isinstance(d, bytes) else orjson.dumps(d)) + b"\n\n" for d in docs)


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "abc",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "mistral-small",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }


# ---- settings and path ------------------------------------------------------------------------


def test_settings_path_and_auth() -> None:
    p = provider()
    assert p.request_path(MODEL, True) == p.request_path(MODEL, False) == "/v1/chat/completions"
    assert (p.auth_header, p.auth_prefix, p.default_authority) == (
        "authorization",
        "Bearer ",
        "api.mistral.ai",
    )
    assert p.canonical_responses is False and p.extra_headers() == {}


# ---- request ------------------------------------------------------------------------------------


def test_field_lists_are_consistent() -> None:
    renamed_from = {old for old, _ in RENAMED_FIELDS}
    assert not (set(DROPPED_FIELDS) & renamed_from) and not (set(DROPPED_FIELDS) & set(REJECTED_FIELDS))
    for field in DROPPED_FIELDS:
        out = translate(req(**{field: "x"}))
        assert field not in out
        DIALECT.parse(out, {}, {})


def test_dropped_fields_change_nothing_else() -> None:
    base = req(user("hi"), temperature=0.5)
    noisy = {**base, **{f: "x" for f in DROPPED_FIELDS}}
    assert translate(noisy) == translate(base)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"max_completion_tokens": 9}, {"max_tokens": 9}),
        ({"max_tokens": 5}, {"max_tokens": 5}),
        ({"max_tokens": 5, "max_completion_tokens": 9}, {"max_tokens": 9}),
        ({"seed": 3}, {"random_seed": 3}),
        ({"stop": "END"}, {"stop": "END"}),
        ({"n": 2}, {"n": 2}),
        ({"parallel_tool_calls": False}, {"parallel_tool_calls": False}),
        ({"prompt_mode": "reasoning"}, {"prompt_mode": "reasoning"}),  # Mistral's own, passed on
    ],
)
def test_request_fields(fields: dict, expected: dict) -> None:
    out = translate(req(**fields))
    assert {k: out.get(k) for k in expected} == expected
    assert not {"max_completion_tokens", "seed"} & set(out)


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("required", "any"),
        ("auto", "auto"),
        ("none", "none"),
        ("any", "any"),
        ({"type": "function", "function": {"name": "f"}}, {"type": "function", "function": {"name": "f"}}),
    ],
)
def test_tool_choice(choice: Any, expected: Any) -> None:
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert translate(req(tools=tools, tool_choice=choice))["tool_choice"] == expected


def test_tool_ids_are_rewritten_consistently() -> None:
    long_id = "call_8kGp2XbT4m0Qx7dLwZc1vN3e"
    history = req(
        user("q"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": long_id, "type": "function", "function": {"name": "a", "arguments": "{}"}},
                {"id": "toolu_01A", "type": "function", "function": {"name": "b", "arguments": "{}"}},
                {"id": "Ok1234567", "type": "function", "function": {"name": "c", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01A", "content": "B"},
        {"role": "tool", "tool_call_id": long_id, "content": "A"},
        {"role": "tool", "tool_call_id": "Ok1234567", "content": "C"},
    )
    out = translate(history)
    calls = out["messages"][1]["tool_calls"]
    ids = [c["id"] for c in calls]
    assert all(ID9.match(i) for i in ids) and len(set(ids)) == 3
    assert ids[2] == "Ok1234567"  # a valid Mistral id is kept
    by_name = {c["function"]["name"]: c["id"] for c in calls}
    assert [(m["tool_call_id"], m["name"]) for m in out["messages"][2:]] == [
        (by_name["b"], "b"),
        (by_name["a"], "a"),
        (by_name["c"], "c"),
    ]
    assert translate(history) == out  # deterministic: a retry sends the same ids
    assert ids[0] == mistral_tool_id(long_id)
    DIALECT.parse(out, {}, {})


def test_tool_id_hash_that_collides_with_an_existing_id_is_redrawn() -> None:
    taken = mistral_tool_id("call_x")
    history = req(
        user("q"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": taken, "type": "function", "function": {"name": "a", "arguments": "{}"}},
                {"id": "call_x", "type": "function", "function": {"name": "b", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_x", "content": "B"},
    )
    out = translate(history)
    a, b = (c["id"] for c in out["messages"][1]["tool_calls"])
    assert a == taken and b != taken and ID9.match(b)
    assert out["messages"][2]["tool_call_id"] == b


def test_trailing_assistant_becomes_a_prefix() -> None:
    out = translate(req(user("Write a haiku"), {"role": "assistant", "content": "Autumn"}))
    assert out["messages"][-1] == {"role": "assistant", "content": "Autumn", "prefix": True}
    middle = translate(req(user("a"), {"role": "assistant", "content": "b"}, user("c")))
    assert "prefix" not in middle["messages"][1]
    DIALECT.parse(out, {}, {})


def test_message_fields_mistral_rejects_are_removed() -> None:
    out = translate(
        req(
            {"role": "system", "content": "s", "name": "x"},
            {"role": "user", "content": "u", "name": "ann"},
            {
                "role": "assistant",
                "content": "a",
                "refusal": None,
                "audio": None,
                "annotations": [],
                "reasoning_content": "r",
                "name": "bot",
            },
            user("again"),
        )
    )
    assert out["messages"] == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u"},
        {"role": "assistant", "content": "a"},
        {"role": "user", "content": "again"},
    ]


def test_content_parts() -> None:
    out = translate(
        req(
            user(
                [
                    {"type": "text", "text": "t"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}},
                ]
            )
        )
    )
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "t"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "input_audio", "input_audio": "UklGR"},
    ]


@pytest.mark.parametrize(
    ("canonical", "match"),
    [
        (req(functions=[{"name": "f"}]), "functions"),
        (req(function_call="auto"), "function_call"),
        (req(audio={"voice": "alloy", "format": "wav"}), "audio"),
        (req(modalities=["text", "audio"]), "audio"),
        (req({"role": "function", "name": "f", "content": "x"}, user("hi")), "role 'function'"),
        (req(user([{"type": "file", "file": {"file_id": "file-abc"}}])), "file ids"),
        (req(user([{"type": "input_video", "video": {}}])), "input_video"),
        (
            req(
                tools=[{"type": "function", "function": {"name": "f"}}],
                tool_choice={"type": "allowed_tools", "allowed_tools": {}},
            ),
            "tool_choice",
        ),
    ],
)
def test_unsupported_requests_are_rejected(canonical: dict, match: str) -> None:
    with pytest.raises(UnsupportedRequest, match=match):
        translate(canonical)


# ---- responses -----------------------------------------------------------------------------------


def test_response_finish_reason_error_is_not_passed_off_as_an_answer() -> None:
    body = golden(P, "response_text.in.json")
    body["choices"][0]["finish_reason"] = "error"
    with pytest.raises(ProviderError, match="error"):
        provider().translate_response(body, MODEL)


def test_response_fills_missing_envelope_and_call_ids() -> None:
    out = provider().translate_response(
        {
            "choices": [
                {
                    "message": {
                        "content": None,
                        "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}],
                    },
                    "finish_reason": "tool_calls",
                }
            ]
        },
        MODEL,
    )
    assert out["id"].startswith("chatcmpl-") and out["created"] > 0 and out["model"] == MODEL
    assert ID9.match(out["choices"][0]["message"]["tool_calls"][0]["id"])
    assert out["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    with pytest.raises(ProviderError):
        provider().translate_response({"object": "chat.completion"}, MODEL)


# ---- streams --------------------------------------------------------------------------------------


def test_stream_ids_are_kept_and_prefixed() -> None:
    chunks = chunks_of(transcode(provider(), MODEL, golden(P, "stream_incremental_tool_call.sse")))
    assert {c["id"] for c in chunks[:-1]} == {"chatcmpl-735e434874a24f68a2390b3cab149242"}
    assert chunks[0]["choices"][0]["delta"]["tool_calls"][0]["id"] == "chatcmpl-tool-9f149c74c42f265b"


def test_usage_comes_once_after_the_choices_even_without_done() -> None:
    stream = sse(
        chunk({"role": "assistant", "content": "hi"}),
        chunk({"content": ""}, "stop", usage={"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}),
    )
    chunks = chunks_of(transcode(provider(), MODEL, stream))
    assert [c["choices"] for c in chunks[1:-1]] == [
        [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}],
        [],
    ]
    assert chunks[2]["usage"] == {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    assert chunks[-1] == "[DONE]" and "usage" not in chunks[1]


def test_stream_cut_before_a_finish_reason_ends_with_error() -> None:
    chunks = chunks_of(transcode(provider(), MODEL, sse(chunk({"role": "assistant", "content": "par"}))))
    assert chunks[-2]["error"]["code"] == "upstream_incomplete_stream" and chunks[-1] == "[DONE]"
    empty = chunks_of(transcode(provider(), MODEL, b""))
    assert empty[0]["error"]["code"] == "upstream_incomplete_stream"


def test_tool_call_pieces_without_id_continue_the_latest_call() -> None:
    stream = sse(
        chunk({"tool_calls": [{"id": "aaaaaaaaa", "function": {"name": "f", "arguments": '{"x"'}}]}),
        chunk({"tool_calls": [{"function": {"arguments": ":1}"}}]}),
        chunk({"tool_calls": [{"id": "bbbbbbbbb", "function": {"name": "g", "arguments": {"y": 2}}}]}),
        chunk({}, "tool_calls"),
    )
    chunks = chunks_of(transcode(provider(), MODEL, stream))
    calls = [tc for c in chunks[:-1] for tc in c["choices"][0]["delta"].get("tool_calls") or ()]
    assert calls == [
        {"index": 0, "id": "aaaaaaaaa", "type": "function", "function": {"name": "f", "arguments": '{"x"'}},
        {"index": 0, "function": {"arguments": ":1}"}},
        {
            "index": 1,
            "id": "bbbbbbbbb",
            "type": "function",
            "function": {"name": "g", "arguments": '{"y":2}'},
        },
    ]


def test_indexed_tool_call_pieces_go_to_the_call_their_index_names() -> None:
    stream = sse(
        chunk({"tool_calls": [{"id": "call-a", "index": 0, "function": {"name": "f", "arguments": ""}}]}),
        chunk({"tool_calls": [{"id": "call-b", "index": 1, "function": {"name": "g", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"name": "", "arguments": "{}"}}]}),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": "[]"}}]}),
        chunk({}, "tool_calls"),
    )
    chunks = chunks_of(transcode(provider(), MODEL, stream))
    pieces = [
        (tc["index"], tc["function"])
        for c in chunks[:-1]
        for tc in c["choices"][0]["delta"].get("tool_calls") or ()
    ]
    assert pieces == [
        (0, {"name": "f", "arguments": ""}),
        (1, {"name": "g", "arguments": ""}),
        (0, {"arguments": "{}"}),
        (1, {"arguments": "[]"}),
    ]


def test_malformed_stream_event_becomes_an_error() -> None:
    chunks = chunks_of(transcode(provider(), MODEL, sse(b"[1]")))
    assert chunks[0]["error"]["code"] == "upstream_invalid_stream" and chunks[-1] == "[DONE]"
    chunks = chunks_of(transcode(provider(), MODEL, sse({"id": "x"})))
    assert chunks[0]["error"]["code"] == "upstream_invalid_stream"


# ---- the mock ---------------------------------------------------------------------------------------


def test_mock_matches_only_mistral_paths_and_bearer() -> None:
    assert DIALECT.match("POST", "/v1/chat/completions") == {}
    assert DIALECT.match("POST", "/openai/v1/chat/completions") is None
    assert DIALECT.credential({"authorization": "Bearer k"}, {}) == "k"
    assert DIALECT.credential({"api-key": "k"}, {}) is None
    assert [d.name for d in discover([P])] == ["mistral"]
    # Same path as OpenAI's: a mock speaking every API keeps it for the OpenAI dialect.
    first = next(d for d in discover() if d.match("POST", "/v1/chat/completions") is not None)
    assert first.name == "openai"


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (req(user="u"), "body.user: Extra inputs"),
        (req(stream_options={"include_usage": True}), "stream_options"),
        (req({"role": "user", "content": "hi", "name": "ann"}), r"messages\.0\.user\.name"),
        (
            req(
                user("q"),
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "call_abc123", "function": {"name": "f", "arguments": "{}"}}],
                },
                {"role": "tool", "tool_call_id": "call_abc123", "content": "x"},
            ),
            "Tool call id was call_abc123",
        ),
        (req(user("a"), {"role": "assistant", "content": "b"}), "Expected last role"),
        (
            req(
                user("q"),
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "abcdefghi", "function": {"name": "f", "arguments": "{}"}}],
                },
                {"role": "tool", "tool_call_id": "abcdefghi", "content": "x"},
                user("more"),
            ),
            "after role 'tool'",
        ),
        (req({"role": "developer", "content": "x"}, user("hi")), "developer"),
        (req(tool_choice="sometimes"), "tool_choice"),
    ],
)
def test_mock_rejects_what_mistral_rejects(body: dict, match: str) -> None:
    with pytest.raises(BadRequest, match=match):
        DIALECT.parse(body, {}, {})


def test_mock_marks_schema_errors_as_422() -> None:
    with pytest.raises(Unprocessable) as info:
        DIALECT.parse(req(logit_bias={}), {}, {})
    assert info.value.status == 422


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city", "days"],
            },
        },
    }
]
ROUND_TRIPS = {
    "text": req(
        {"role": "developer", "content": "be brief"},
        user("hello there"),
        user="u",
        stream_options={"include_usage": True},
        seed=1,
    ),
    "length": req(user("one two three four five six"), max_completion_tokens=3),
    "tool_call": req(user("weather?"), tools=TOOLS, tool_choice="required"),
    "after_tool": golden(P, "request_tools.in.json"),
}


def mock_round(canonical: dict[str, Any], stream: bool) -> tuple[engine.Plan, Any]:
    body = translate({**canonical, "stream": stream})
    mreq = DIALECT.parse(body, {}, {})
    plan = engine.plan(mreq)
    if stream:
        return plan, b"".join(DIALECT.render_stream(plan, mreq))
    return plan, DIALECT.render_json(plan, mreq)


@pytest.mark.parametrize("case", ROUND_TRIPS)
def test_mock_stream_round_trip(case: str) -> None:
    plan, stream = mock_round(ROUND_TRIPS[case], stream=True)
    chunks = chunks_of(transcode(provider(), MODEL, stream))
    assert_valid_openai_stream(chunks)
    for c in chunks[:-1]:
        ChatCompletionChunk.model_validate(c)
    body = [c for c in chunks[:-1] if c["choices"]]
    assert body[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in body) == plan.text
    calls = [tc for c in body for tc in c["choices"][0]["delta"].get("tool_calls") or ()]
    assert [
        (tc["index"], tc["function"]["name"], orjson.loads(tc["function"]["arguments"])) for tc in calls
    ] == [(i, t.name, orjson.loads(t.arguments)) for i, t in enumerate(plan.tool_calls)]
    assert all(ID9.match(tc["id"]) for tc in calls)
    assert [c["choices"][0]["finish_reason"] for c in body if c["choices"][0]["finish_reason"]] == [
        plan.finish_reason
    ]
    [usage] = [c["usage"] for c in chunks[:-1] if c.get("usage")]
    assert (
        chunks[-2]["usage"]
        == usage
        == {
            "prompt_tokens": plan.prompt_tokens,
            "completion_tokens": plan.completion_tokens,
            "total_tokens": plan.prompt_tokens + plan.completion_tokens,
        }
    )


@pytest.mark.parametrize("case", ROUND_TRIPS)
def test_mock_json_round_trip(case: str) -> None:
    plan, body = mock_round(ROUND_TRIPS[case], stream=False)
    out = provider().translate_response(body, MODEL)
    ChatCompletion.model_validate(out)
    message = out["choices"][0]["message"]
    assert message["content"] == (plan.text or None)
    assert [
        (c["type"], c["function"]["name"], orjson.loads(c["function"]["arguments"]))
        for c in message.get("tool_calls", [])
    ] == [("function", t.name, orjson.loads(t.arguments)) for t in plan.tool_calls]
    assert out["choices"][0]["finish_reason"] == plan.finish_reason
    assert (out["usage"]["prompt_tokens"], out["usage"]["completion_tokens"]) == (
        plan.prompt_tokens,
        plan.completion_tokens,
    )


def test_mock_tool_call_ids_survive_the_next_turn() -> None:
    """The ids Mistral hands out come back unchanged and stay acceptable to it."""
    _plan, body = mock_round(ROUND_TRIPS["tool_call"], stream=False)
    message = provider().translate_response(body, MODEL)["choices"][0]["message"]
    call = message["tool_calls"][0]
    follow_up = req(
        user("weather?"),
        message,
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny"},
        tools=TOOLS,
    )
    out = translate(follow_up)
    assert out["messages"][1]["tool_calls"][0]["id"] == out["messages"][2]["tool_call_id"] == call["id"]
    assert engine.plan(DIALECT.parse(out, {}, {})).text == "The tool returned: sunny"


async def test_mock_server_speaks_mistral() -> None:
    async with TestClient(TestServer(build_app(MockState(dialects=discover([P]))))) as client:
        body = translate(req(user("hello"), stream=True))
        resp = await client.post("/v1/chat/completions", json=body, headers={"api-key": "k"})
        status, doc = provider().translate_error(resp.status, await resp.read())
        assert (status, doc["error"]["message"]) == (401, "Unauthorized")
        resp = await client.post(
            "/v1/chat/completions", json={**body, "user": "u"}, headers={"authorization": "Bearer k"}
        )
        assert resp.status == 400 and "user" in (await resp.json())["message"]
        resp = await client.post(
            "/v1/chat/completions",
            json=body,
            headers={"authorization": "Bearer k", "x-mock-chunk-bytes": "5"},
        )
        assert resp.status == 200 and resp.headers["content-type"].startswith("text/event-stream")
        raw = await resp.read()
    chunks = chunks_of(transcode(provider(), MODEL, raw, list(range(3, len(raw), 5))))
    assert_valid_openai_stream(chunks)
    assert (
        "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1] if c["choices"])
        == f"Mock reply from {MODEL}: hello"
    )
    assert chunks[-2]["usage"]["total_tokens"] > 0
