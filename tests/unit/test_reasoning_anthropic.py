"""Anthropic extended thinking: settings, request mapping and conflicts, echoed thinking
blocks, responses and streams, the OpenAI SDK's view of them, and the mock's thinking
(signed blocks, the API's rules, a tool loop through translator and mock). The thinking
goldens themselves and their stream chunking: tests/unit/test_goldens.py."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from extproc.mock import engine
from extproc.mock.dialects import _anthropic_thinking as mock_thinking
from extproc.mock.dialects.anthropic import AnthropicDialect
from extproc.mock.dialects.base import BadRequest
from extproc.mock.server import MockState, build_app
from extproc.providers.anthropic import Anthropic
from extproc.providers.base import UnsupportedRequest
from tests.provider_helpers import (
    assert_valid_openai_stream,
    chunks_of,
    golden,
    golden_case,
    make_provider,
    normalise,
    read_golden,
    transcode,
)

P = "anthropic"
AUTH = {"secretRef": {"inline": "k"}}
MODEL = "claude-sonnet-4-5"
DIALECT = AnthropicDialect()


def provider(**extra: Any) -> Anthropic:
    return make_provider({"provider": "anthropic", "model": MODEL, "auth": AUTH, **extra})  # type: ignore[return-value]


def translate(req: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return provider(**extra).translate_request(req, MODEL)


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def req(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": list(messages) or [user("hi")], **fields}


def refused(canonical: dict[str, Any], **extra: Any) -> UnsupportedRequest:
    with pytest.raises(UnsupportedRequest) as info:
        translate(canonical, **extra)
    return info.value


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


# ---- settings ----------------------------------------------------------------------------


def test_settings_defaults() -> None:
    s = provider().settings
    assert s.thinking_budgets.model_dump() == {
        "minimal": 1024,
        "low": 2048,
        "medium": 8192,
        "high": 24576,
        "xhigh": None,
    }
    assert (s.default_reasoning_effort, s.interleaved_thinking, s.max_output_tokens) == ("off", False, None)
    assert provider().extra_headers() == {"anthropic-version": "2023-06-01"}


def test_settings_yaml_off_is_off() -> None:
    doc = yaml.safe_load("defaultReasoningEffort: off")
    assert doc == {"defaultReasoningEffort": False}
    assert provider(**doc).settings.default_reasoning_effort == "off"
    assert "thinking" not in translate(req(), **doc)


def test_settings_camel_case() -> None:
    p = provider(
        thinkingBudgets={"minimal": 2000, "low": 3000, "medium": 4000, "high": 5000},
        defaultReasoningEffort="low",
        interleavedThinking=True,
        maxOutputTokens=32000,
    )
    s = p.settings
    assert (s.thinking_budgets.low, s.default_reasoning_effort, s.max_output_tokens) == (3000, "low", 32000)
    assert p.extra_headers() == {
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "interleaved-thinking-2025-05-14",
    }


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (
            {"thinkingBudgets": {"minimal": 1023}},
            r"thinkingBudgets\.minimal\s+Input should be greater than or equal to 1024",
        ),
        (
            {"thinkingBudgets": {"high": 512}},
            r"thinkingBudgets\.high\s+Input should be greater than or equal to 1024",
        ),
        ({"thinkingBudgets": {"medium": 2048, "high": 2000}}, "'high' .2000. is below 'medium'"),
        ({"thinkingBudgets": {"huge": 90000}}, "huge"),
        ({"defaultReasoningEffort": "max"}, "defaultReasoningEffort"),
        ({"maxOutputTokens": 24576}, "maxOutputTokens.*above every thinking budget.*24576"),
        ({"maxOutputTokens": 1000}, "maxOutputTokens"),
        ({"interleavedThinking": "maybe"}, "interleavedThinking"),
    ],
)
def test_settings_validation_errors(extra: dict, match: str) -> None:
    with pytest.raises(Exception, match=match):
        provider(**extra)


# ---- request goldens (checked in test_goldens.py; settings in tests/golden/anthropic/cases.json)

REQUEST_GOLDENS = ["request_thinking_effort", "request_thinking_default_effort", "request_thinking_history"]


@pytest.mark.parametrize("name", REQUEST_GOLDENS)
def test_mock_accepts_translated_goldens(name: str) -> None:
    case = golden_case(P, name)
    body = case.make().translate_request(read_golden(case.input), case.model)
    if name == "request_thinking_history":
        # The goldens carry made-up signatures; the mock checks everything else.
        body = copy.deepcopy(body)
        for m in body["messages"]:
            for b in m["content"]:
                if b["type"] == "thinking":
                    b["signature"] = mock_thinking.sign(b["thinking"])
                elif b["type"] == "redacted_thinking":
                    b["data"] = mock_thinking.seal("hidden")
    assert DIALECT.parse(body, {}, {}).thinking is not None  # type: ignore[attr-defined]


# ---- effort, budget, max_tokens ----------------------------------------------------------


@pytest.mark.parametrize(
    ("effort", "budget"),
    [("minimal", 1024), ("low", 2048), ("medium", 8192), ("high", 24576), ("xhigh", 24576)],
)
def test_effort_maps_to_default_budget(effort: str, budget: int) -> None:
    body = translate(req(reasoning_effort=effort, max_tokens=500))
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert body["max_tokens"] == budget + 500


@pytest.mark.parametrize(
    ("fields", "extra", "expected"),
    [
        ({}, {}, None),  # off by default
        ({"reasoning_effort": "none"}, {}, None),
        ({}, {"defaultReasoningEffort": "medium"}, 8192),
        ({"reasoning_effort": "low"}, {"defaultReasoningEffort": "high"}, 2048),  # the request wins
        ({"reasoning_effort": "none"}, {"defaultReasoningEffort": "high"}, None),  # ...also to turn it off
        ({"reasoning_effort": "medium"}, {"thinkingBudgets": {"medium": 5000}}, 5000),
        # xhigh unset is `high`, also a raised one
        ({"reasoning_effort": "xhigh"}, {"thinkingBudgets": {"high": 40000}}, 40000),
        ({"reasoning_effort": "xhigh"}, {"thinkingBudgets": {"xhigh": 50000}}, 50000),
    ],
)
def test_effort_sources(fields: dict, extra: dict, expected: int | None) -> None:
    body = translate(req(**fields), **extra)
    if expected is None:
        assert "thinking" not in body and body["max_tokens"] == 4096
    else:
        assert body["thinking"] == {"type": "enabled", "budget_tokens": expected}


@pytest.mark.parametrize("effort", ["max", "HIGH", "", 3])
def test_unknown_effort_is_a_400(effort: Any) -> None:
    err = refused(req(reasoning_effort=effort))
    assert err.param == "reasoning_effort" and "minimal, low, medium, high" in str(err)


@pytest.mark.parametrize(
    ("fields", "extra", "max_tokens"),
    [
        ({}, {}, 2048 + 4096),  # defaultMaxTokens are answer tokens
        ({"max_tokens": 300}, {}, 2048 + 300),
        ({"max_tokens": 300, "max_completion_tokens": 700}, {}, 2048 + 700),
        ({}, {"defaultMaxTokens": 1000}, 2048 + 1000),
        ({"max_tokens": 1}, {}, 2048 + 1),  # always above the budget
        ({"max_tokens": 60000}, {"maxOutputTokens": 32000}, 32000),  # capped, still > budget
        ({"max_tokens": 1000}, {"maxOutputTokens": 32000}, 2048 + 1000),
    ],
)
def test_max_tokens_raised_by_the_budget(fields: dict, extra: dict, max_tokens: int) -> None:
    body = translate(req(reasoning_effort="low", **fields), **extra)
    assert body["max_tokens"] == max_tokens > body["thinking"]["budget_tokens"]


def test_max_output_tokens_does_not_cap_without_thinking() -> None:
    assert translate(req(max_tokens=60000), maxOutputTokens=32000)["max_tokens"] == 60000


# ---- sampling and tool_choice while thinking -------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"temperature": 0.7}, {}),  # dropped: Anthropic takes only 1 while thinking
        ({"temperature": 0}, {}),
        ({"temperature": 1}, {}),  # 1 is Anthropic's default: not sending it is the same
        ({"temperature": 2}, {}),
        ({"top_p": 0.9}, {}),  # below 0.95: dropped
        ({"top_p": 0.95}, {"top_p": 0.95}),
        ({"top_p": 1}, {"top_p": 1}),
        ({"temperature": 0.3, "top_p": 0.99}, {"top_p": 0.99}),
    ],
)
def test_sampling_while_thinking(fields: dict, expected: dict) -> None:
    body = translate(req(reasoning_effort="minimal", **fields))
    assert {k: body[k] for k in ("temperature", "top_p", "top_k") if k in body} == expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"top_k": 40}, {"top_k": 40}),
        ({"top_k": 0}, {"top_k": 0}),
        ({"temperature": 0.4, "top_p": 0.5, "top_k": 5}, {"temperature": 0.4, "top_p": 0.5, "top_k": 5}),
        ({"temperature": 1.5}, {"temperature": 1.0}),
    ],
)
def test_sampling_without_thinking(fields: dict, expected: dict) -> None:
    body = translate(req(**fields))
    assert {k: body[k] for k in ("temperature", "top_p", "top_k") if k in body} == expected


@pytest.mark.parametrize("top_k", [-1, 2.5, "10", True])
def test_bad_top_k_is_a_400(top_k: Any) -> None:
    assert refused(req(top_k=top_k)).param == "top_k"


def test_top_k_while_thinking_is_a_400_naming_both() -> None:
    err = refused(req(reasoning_effort="high", top_k=10))
    assert err.param == "top_k"
    assert "'top_k'" in str(err) and "reasoning_effort 'high'" in str(err)


def test_conflict_with_backend_default_says_where_thinking_came_from() -> None:
    err = refused(req(top_k=10), defaultReasoningEffort="low")
    assert "defaultReasoningEffort" in str(err) and "reasoning_effort 'none'" in str(err)
    assert "top_k" in translate(req(top_k=10, reasoning_effort="none"), defaultReasoningEffort="low")


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_forced_tool_choice_while_thinking_is_a_400(choice: Any) -> None:
    err = refused(req(reasoning_effort="low", tools=TOOLS, tool_choice=choice))
    assert err.param == "tool_choice"
    assert "'tool_choice'" in str(err) and "reasoning_effort 'low'" in str(err)
    assert "'auto' or 'none'" in str(err)


@pytest.mark.parametrize(
    ("choice", "expected"), [("auto", {"type": "auto"}), ("none", {"type": "none"}), (None, None)]
)
def test_auto_and_none_tool_choice_while_thinking(choice: Any, expected: dict | None) -> None:
    fields = {"tool_choice": choice} if choice else {}
    body = translate(req(reasoning_effort="low", tools=TOOLS, **fields))
    assert body.get("tool_choice") == expected and "thinking" in body


def test_forced_tool_choice_without_tools_is_not_sent_and_not_a_conflict() -> None:
    body = translate(req(reasoning_effort="low", tool_choice="required"))
    assert "tool_choice" not in body and "thinking" in body


def test_prefilled_answer_while_thinking_is_a_400() -> None:
    canonical = req(user("Count to 3"), {"role": "assistant", "content": "1, 2,"}, reasoning_effort="low")
    err = refused(canonical)
    assert err.param == "messages" and "prefilled" in str(err) and "reasoning_effort 'low'" in str(err)
    assert translate({**canonical, "reasoning_effort": "none"})["messages"][-1]["role"] == "assistant"


# ---- thinking blocks in history ----------------------------------------------------------


def assistant(**fields: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": "ok", **fields}


def history(*blocks: Any, **fields: Any) -> dict[str, Any]:
    return req(user("q"), assistant(thinking_blocks=list(blocks), **fields), user("next"))


THINKING = {"type": "thinking", "thinking": "hmm", "signature": "sig"}
REDACTED = {"type": "redacted_thinking", "data": "opaque"}


def test_blocks_lead_the_turn_unchanged_with_or_without_thinking() -> None:
    for effort in ("low", "none"):
        body = translate({**history(REDACTED, THINKING), "reasoning_effort": effort})
        assert body["messages"][1]["content"] == [REDACTED, THINKING, {"type": "text", "text": "ok"}]


def test_only_the_block_fields_are_sent() -> None:
    extra = {**THINKING, "cache_control": {"type": "ephemeral"}, "index": 0}
    assert translate(history(extra))["messages"][1]["content"][0] == THINKING


def test_reasoning_content_without_blocks_is_not_sent() -> None:
    body = translate(req(user("q"), assistant(reasoning_content="private"), user("next")))
    assert body["messages"][1]["content"] == [{"type": "text", "text": "ok"}]


@pytest.mark.parametrize("text", ["", None])
def test_streaming_echo_fills_the_single_empty_block(text: str | None) -> None:
    block = {"type": "thinking", "thinking": text, "signature": "sig"}
    body = translate(history(REDACTED, block, reasoning_content="joined text"))
    assert body["messages"][1]["content"][:2] == [
        REDACTED,
        {"type": "thinking", "thinking": "joined text", "signature": "sig"},
    ]


def test_empty_block_without_reasoning_content_stays_empty() -> None:
    # Thinking shown as omitted comes back with empty text; that is what gets signed.
    block = {"type": "thinking", "thinking": "", "signature": "sig"}
    assert translate(history(block))["messages"][1]["content"][0] == block


def test_block_text_wins_over_reasoning_content() -> None:
    body = translate(history(THINKING, reasoning_content="other"))
    assert body["messages"][1]["content"][0] == THINKING


@pytest.mark.parametrize(
    ("message", "param"),
    [
        (assistant(thinking_blocks={"type": "thinking"}), "messages[1].thinking_blocks"),
        (assistant(thinking_blocks=["text"]), "messages[1].thinking_blocks[0]"),
        (
            assistant(thinking_blocks=[{"type": "reasoning", "text": "x"}]),
            "messages[1].thinking_blocks[0].type",
        ),
        (
            assistant(thinking_blocks=[{"type": "thinking", "thinking": "x"}]),
            "messages[1].thinking_blocks[0].signature",
        ),
        (
            assistant(thinking_blocks=[REDACTED, {"type": "thinking", "thinking": "x", "signature": ""}]),
            "messages[1].thinking_blocks[1].signature",
        ),
        (
            assistant(thinking_blocks=[{"type": "thinking", "thinking": 5, "signature": "s"}]),
            "messages[1].thinking_blocks[0].thinking",
        ),
        (assistant(thinking_blocks=[{"type": "redacted_thinking"}]), "messages[1].thinking_blocks[0].data"),
        (
            assistant(
                thinking_blocks=[THINKING, {"type": "thinking", "signature": "s2"}], reasoning_content="ab"
            ),
            "messages[1].thinking_blocks[1].thinking",
        ),
        (
            assistant(thinking_blocks=[{"type": "thinking", "signature": "s"}], reasoning_content=["x"]),
            "messages[1].reasoning_content",
        ),
    ],
)
def test_malformed_thinking_blocks_are_a_400(message: dict, param: str) -> None:
    err = refused(req(user("q"), message, user("next")))
    assert err.param == param and f"'{param}'" in str(err)


# ---- images ------------------------------------------------------------------------------


def image(url: str) -> dict[str, Any]:
    return req(user([{"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": url}}]))


@pytest.mark.parametrize(
    ("url", "media_type"),
    [
        ("data:image/jpg;base64,AAAA", "image/jpeg"),
        ("data:IMAGE/PNG;base64,AAAA", "image/png"),
        ("data:image/gif;base64,AAAA", "image/gif"),
        ("data:image/webp;base64,AAAA", "image/webp"),
    ],
)
def test_image_media_types_are_normalised(url: str, media_type: str) -> None:
    source = translate(image(url))["messages"][0]["content"][1]["source"]
    assert source == {"type": "base64", "media_type": media_type, "data": "AAAA"}


@pytest.mark.parametrize("media_type", ["image/bmp", "image/svg+xml", "application/pdf"])
def test_unsupported_image_media_type_is_a_400(media_type: str) -> None:
    err = refused(image(f"data:{media_type};base64,AAAA"))
    assert err.param == "messages[0].content[1].image_url"
    assert media_type in str(err) and "image/jpeg" in str(err)


def test_url_images_are_not_checked() -> None:
    block = translate(image("https://example.com/x.bmp"))["messages"][0]["content"][1]
    assert block == {"type": "image", "source": {"type": "url", "url": "https://example.com/x.bmp"}}


# ---- responses ---------------------------------------------------------------------------

RESPONSES = ["response_thinking_text", "response_redacted_thinking_tool_use"]


@pytest.mark.parametrize("name", RESPONSES)
def test_response_reports_no_thinking_token_count(name: str) -> None:
    out = provider().translate_response(golden(P, f"{name}.in.json"), "claude-requested")
    assert "completion_tokens_details" not in out["usage"]  # Anthropic reports none


def test_response_without_thinking_has_no_reasoning_fields() -> None:
    out = provider().translate_response(golden(P, "response_text.in.json"), "m")
    assert not {"reasoning_content", "thinking_blocks"} & set(out["choices"][0]["message"])


def test_response_with_only_redacted_thinking_has_no_reasoning_content() -> None:
    body = {**golden(P, "response_text.in.json"), "content": [REDACTED, {"type": "text", "text": "hi"}]}
    message = provider().translate_response(body, "m")["choices"][0]["message"]
    assert "reasoning_content" not in message and message["thinking_blocks"] == [REDACTED]


@pytest.mark.parametrize("name", RESPONSES)
def test_openai_sdk_keeps_thinking_and_it_round_trips(name: str) -> None:
    out = provider().translate_response(golden(P, f"{name}.in.json"), "m")
    message = ChatCompletion.model_validate(out).choices[0].message
    expected = out["choices"][0]["message"]
    assert message.model_extra == {k: expected[k] for k in ("reasoning_content", "thinking_blocks")}
    # `messages.append(resp.choices[0].message)`: the SDK's dump goes back as history.
    echoed = message.model_dump(exclude_none=True)
    canonical = req(
        user("q"),
        echoed,
        *[{"role": "tool", "tool_call_id": c.id, "content": "r"} for c in message.tool_calls or ()],
    )
    if not message.tool_calls:
        canonical["messages"].append(user("next"))
    turn = translate({**canonical, "reasoning_effort": "low"})["messages"][1]["content"]
    assert turn[: len(expected["thinking_blocks"])] == expected["thinking_blocks"]


# ---- streams -----------------------------------------------------------------------------

STREAMS = ["stream_thinking_text", "stream_redacted_thinking_tool_use"]


def stream_chunks(stream: bytes, cuts: list[int] | None = None) -> list[Any]:
    return normalise(chunks_of(transcode(provider(), "claude-x", stream, cuts)))


@pytest.mark.parametrize("name", STREAMS)
def test_openai_sdk_parses_stream_chunks(name: str) -> None:
    reasoning, blocks = "", []
    for raw in golden(P, f"{name}.out.json")[:-1]:
        chunk = ChatCompletionChunk.model_validate(raw)
        for choice in chunk.choices:
            extra = choice.delta.model_extra or {}
            reasoning += extra.get("reasoning_content", "")
            blocks += extra.get("thinking_blocks", [])
    if name == "stream_thinking_text":
        assert (reasoning, [b["type"] for b in blocks]) == ("Gödel's theorem 🤔", ["thinking"])
    else:
        assert reasoning == "Paris first.Then Rome."
        assert [b["type"] for b in blocks] == ["redacted_thinking", "thinking", "thinking"]


def test_thinking_block_that_starts_complete() -> None:
    start = {"type": "thinking", "thinking": "all at once", "signature": "sig"}
    event = orjson.dumps({"type": "content_block_start", "index": 0, "content_block": start})
    stream = golden(P, "stream_thinking_text.sse").split(b"\n\n")
    stream = b"\n\n".join([stream[0], b"event: content_block_start\ndata: " + event, *stream[-3:]])
    deltas = [c["choices"][0]["delta"] for c in stream_chunks(stream)[:-2]]
    assert deltas[1:3] == [
        {"reasoning_content": "all at once"},
        {"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": "sig"}]},
    ]


# ---- the mock ----------------------------------------------------------------------------


def mock_body(**fields: Any) -> dict[str, Any]:
    return {
        "model": "claude-x",
        "max_tokens": 4000,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [user("hi")],
        **fields,
    }


def signed(text: str) -> dict[str, Any]:
    return {"type": "thinking", "thinking": text, "signature": mock_thinking.sign(text)}


def tool_loop(first: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        user("weather?"),
        {
            "role": "assistant",
            "content": [*first, {"type": "tool_use", "id": "t1", "name": "f", "input": {}}],
        },
        user([{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}]),
    ]


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 1023}}, "greater than or equal to 1024"),
        ({"thinking": {"type": "enabled"}}, "budget_tokens: Field required"),
        ({"thinking": {"type": "on"}}, "expected tags: 'enabled', 'disabled'"),
        ({"max_tokens": 1024}, "`max_tokens` must be greater than `thinking.budget_tokens`"),
        ({"temperature": 0.5}, "`temperature` may only be set to 1"),
        ({"top_p": 0.9}, "`top_p` must be greater than or equal to 0.95"),
        ({"top_k": 5}, "`top_k`"),
        ({"tool_choice": {"type": "any"}}, "Thinking may not be enabled when tool_choice forces tool use"),
        ({"tool_choice": {"type": "tool", "name": "f"}}, "forces tool use"),
        ({"messages": [user("q"), {"role": "assistant", "content": "prefill"}]}, "prefill"),
        (
            {"messages": tool_loop([{"type": "text", "text": "Let me check."}])},
            "Expected `thinking` or `redacted_thinking`, but found `text`",
        ),
        ({"messages": tool_loop([])}, "but found `tool_use`"),
        (
            {"messages": tool_loop([{**signed("mine"), "thinking": "edited"}])},
            "Invalid `signature` in `thinking` block",
        ),
        (
            {"messages": tool_loop([{"type": "thinking", "thinking": "x", "signature": "forged"}])},
            "messages.1.content.0: Invalid `signature`",
        ),
        (
            {"messages": tool_loop([{"type": "redacted_thinking", "data": "forged"}])},
            "Invalid `data` in `redacted_thinking`",
        ),
        ({"messages": [user([signed("x"), {"type": "text", "text": "q"}])]}, "only allowed in `assistant`"),
    ],
)
def test_mock_rejects_what_the_api_rejects_with_thinking(fields: dict, match: str) -> None:
    with pytest.raises(BadRequest, match=match):
        DIALECT.parse(mock_body(**fields), {}, {})


@pytest.mark.parametrize(
    "fields",
    [
        {"temperature": 1, "top_p": 0.95},
        {"messages": tool_loop([signed("mine")])},
        {
            "messages": tool_loop(
                [{"type": "redacted_thinking", "data": mock_thinking.seal("x")}, signed("y")]
            )
        },
        {"thinking": {"type": "disabled"}, "temperature": 0.2, "top_k": 3, "tool_choice": {"type": "any"}},
        {"thinking": None, "messages": tool_loop([])},
    ],
)
def test_mock_accepts_what_the_api_accepts(fields: dict) -> None:
    DIALECT.parse(mock_body(**fields), {}, {})


def test_mock_answers_with_a_signed_thinking_block_first() -> None:
    mreq = DIALECT.parse(mock_body(), {}, {})
    plan = engine.plan(mreq)
    out = DIALECT.render_json(plan, mreq)
    assert out["content"][0] == signed("Thinking about the request: hi")
    assert out["content"][1]["type"] == "text"
    assert out["usage"]["output_tokens"] == plan.completion_tokens + 5  # thinking is output
    mreq = DIALECT.parse(mock_body(thinking=None), {}, {})
    assert [b["type"] for b in DIALECT.render_json(engine.plan(mreq), mreq)["content"]] == ["text"]


def test_mock_redacts_on_the_magic_string() -> None:
    mreq = DIALECT.parse(mock_body(messages=[user("tell me " + mock_thinking.REDACT_TRIGGER)]), {}, {})
    first = DIALECT.render_json(engine.plan(mreq), mreq)["content"][0]
    assert first["type"] == "redacted_thinking" and set(first) == {"type", "data"}
    raw = b"".join(DIALECT.render_stream(engine.plan(mreq), mreq))
    assert first["data"].encode() in raw and b"thinking_delta" not in raw


# ---- a tool loop: translator -> mock -> translator ---------------------------------------


def mock_answer(canonical: dict[str, Any], stream: bool) -> dict[str, Any]:
    """One turn through translator and mock; the canonical assistant message back (a
    streamed one accumulated the way a client does: joined reasoning_content, the
    signature-only blocks, content and tool calls)."""
    body = translate({**canonical, "stream": stream})
    mreq = DIALECT.parse(body, {}, {})
    plan = engine.plan(mreq)
    if not stream:
        out = provider().translate_response(DIALECT.render_json(plan, mreq), MODEL)
        return ChatCompletion.model_validate(out).choices[0].message.model_dump(exclude_none=True)
    raw = b"".join(DIALECT.render_stream(plan, mreq))
    chunks = chunks_of(transcode(provider(), MODEL, raw, list(range(5, len(raw), 11))))
    assert_valid_openai_stream(chunks)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "",
        "reasoning_content": "",
        "thinking_blocks": [],
    }
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks[:-1]:
        for choice in ChatCompletionChunk.model_validate(chunk).choices:
            delta, extra = choice.delta, choice.delta.model_extra or {}
            message["content"] += delta.content or ""
            message["reasoning_content"] += extra.get("reasoning_content", "")
            message["thinking_blocks"] += extra.get("thinking_blocks", [])
            for tc in delta.tool_calls or ():
                slot = calls.setdefault(
                    tc.index, {"id": tc.id, "type": "function", "function": {"name": "", "arguments": ""}}
                )
                slot["function"]["name"] += (tc.function and tc.function.name) or ""
                slot["function"]["arguments"] += (tc.function and tc.function.arguments) or ""
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return message


@pytest.mark.parametrize("stream", [False, True])
def test_tool_loop_through_the_mock(stream: bool) -> None:
    canonical = req(user("weather in Paris?"), tools=TOOLS, reasoning_effort="low")
    first = mock_answer(canonical, stream)
    assert first["reasoning_content"] == "Thinking about the request: weather in Paris?"
    assert [b["type"] for b in first["thinking_blocks"]] == ["thinking"]
    [call] = first["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"mock-city"}'}

    result = {"role": "tool", "tool_call_id": call["id"], "content": "18C sunny"}
    second = mock_answer({**canonical, "messages": [*canonical["messages"], first, result]}, stream)
    assert second["content"] == "The tool returned: 18C sunny"
    assert second["reasoning_content"] == "Thinking about the tool result: 18C sunny"
    assert "tool_calls" not in second

    # Without the echoed thinking the continuation is refused, as Anthropic refuses it.
    bare = {k: v for k, v in first.items() if k not in ("thinking_blocks", "reasoning_content")}
    body = translate({**canonical, "messages": [*canonical["messages"], bare, result]})
    with pytest.raises(BadRequest, match="Expected `thinking` or `redacted_thinking`, but found `tool_use`"):
        DIALECT.parse(body, {}, {})
    # ...and so is a tampered block.
    tampered = {**first, "thinking_blocks": [{**first["thinking_blocks"][0], "thinking": "other"}]}
    body = translate({**canonical, "messages": [*canonical["messages"], tampered, result]})
    with pytest.raises(BadRequest, match="Invalid `signature`"):
        DIALECT.parse(body, {}, {})


async def test_mock_server_thinking_over_http() -> None:
    canonical = req(user("hello"), reasoning_effort="minimal", stream=True)
    async with TestClient(TestServer(build_app(MockState()))) as client:
        headers = {"x-api-key": "k", "anthropic-version": "2023-06-01", "x-mock-chunk-bytes": "9"}
        resp = await client.post("/v1/messages", json=translate(canonical), headers=headers)
        assert resp.status == 200
        raw = await resp.read()
        bad = {**translate(canonical), "temperature": 0.5}
        resp = await client.post("/v1/messages", json=bad, headers=headers)
        assert resp.status == 400
        assert (await resp.json())["error"]["type"] == "invalid_request_error"
    chunks = chunks_of(transcode(provider(), MODEL, raw, list(range(4, len(raw), 9))))
    assert_valid_openai_stream(chunks)
    deltas = [c["choices"][0]["delta"] for c in chunks[:-1] if c["choices"]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "Thinking about the request: hello"
    [sig] = [d["thinking_blocks"][0]["signature"] for d in deltas if "thinking_blocks" in d]
    assert sig == mock_thinking.sign("Thinking about the request: hello")


# ---- docs --------------------------------------------------------------------------------


def test_docs_cover_the_settings_and_decisions() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "providers" / "anthropic.md").read_text()
    section = doc[doc.index("Reasoning (extended thinking)") :]
    for name in (
        "thinkingBudgets",
        "defaultReasoningEffort",
        "interleavedThinking",
        "maxOutputTokens",
        "interleaved-thinking-2025-05-14",
        "`temperature`",
        "`top_p`",
        "`top_k`",
        "`tool_choice`",
        "`thinking_blocks`",
        "`reasoning_content`",
        "`signature_delta`",
        "`redacted_thinking`",
    ):
        assert name in section, name
