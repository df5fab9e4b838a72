"""Azure OpenAI provider: path and api-version, body, the light stream fix-up, the mock.
Golden files (current and legacy api-version), stream chunking and the error table:
tests/unit/test_goldens.py."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import ValidationError

from extproc.mock import engine
from extproc.mock.dialects import discover
from extproc.mock.dialects.azure_openai import AzureOpenAIDialect
from extproc.mock.dialects.base import BadRequest
from extproc.mock.server import MockState, build_app
from extproc.providers.azure_openai import DEFAULT_API_VERSION, AzureOpenAI
from extproc.providers.base import ProviderError
from extproc.sse import SSEEvent
from tests.provider_helpers import (
    assert_valid_openai_stream,
    chunks_of,
    make_provider,
    transcode,
)

P = "azure-openai"
AUTH = {"secretRef": {"inline": "k"}}
DIALECT = AzureOpenAIDialect()


def provider(**extra: Any) -> AzureOpenAI:
    settings = {"provider": P, "model": "gpt-4o", "deployment": "my-gpt4o", "auth": AUTH, **extra}
    return make_provider({k: v for k, v in settings.items() if v is not None})  # type: ignore[return-value]


def req(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], **fields}


# ---- settings, path, auth -----------------------------------------------------------------


def test_settings_defaults_and_auth_placement() -> None:
    p = provider()
    assert p.settings.api_version == DEFAULT_API_VERSION == "2024-10-21"
    assert (p.auth_header, p.auth_prefix, p.default_authority) == ("api-key", "", None)
    assert p.canonical_responses is False
    assert p.extra_headers() == {}


def test_path_uses_deployment_and_api_version() -> None:
    assert (
        provider().request_path("gpt-4o", True)
        == "/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21"
    )
    assert (
        provider(apiVersion="2025-04-01-preview").request_path("gpt-4o", False)
        == "/openai/deployments/my-gpt4o/chat/completions?api-version=2025-04-01-preview"
    )


def test_deployment_defaults_to_the_model_and_is_url_quoted() -> None:
    assert (
        provider(deployment=None).request_path("gpt-4o-mini", False)
        == "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21"
    )
    assert (
        provider(deployment="team a/b?c").request_path("x", False)
        == "/openai/deployments/team%20a%2Fb%3Fc/chat/completions?api-version=2024-10-21"
    )


def test_v1_api_has_no_version_and_names_the_deployment_in_model() -> None:
    p = provider(apiVersion="v1")
    assert p.request_path("gpt-4o", True) == "/openai/v1/chat/completions"
    assert p.translate_request(req(), "gpt-4o")["model"] == "my-gpt4o"
    assert provider(apiVersion="v1", deployment=None).translate_request(req(), "gpt-4o")["model"] == "gpt-4o"


@pytest.mark.parametrize(
    "bad", [{"apiVersion": "latest"}, {"apiVersion": "2024-10"}, {"deployment": " "}, {"resource": "x"}]
)
def test_settings_are_validated(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        provider(**bad)


# ---- request --------------------------------------------------------------------------------


def test_legacy_version_keeps_an_explicit_max_tokens() -> None:
    out = provider(apiVersion="2024-08-01-preview").translate_request(
        req(max_tokens=10, max_completion_tokens=99), "gpt-4o"
    )
    assert out["max_tokens"] == 10 and "max_completion_tokens" not in out


def test_current_request_with_matching_model_is_passed_as_is() -> None:
    canonical = req(max_completion_tokens=5, stream_options={"include_usage": True})
    assert provider().translate_request(canonical, "gpt-4o") is canonical


# ---- responses ------------------------------------------------------------------------------


def test_response_without_choices_is_refused() -> None:
    with pytest.raises(ProviderError):
        provider().translate_response({"error": "nope"}, "gpt-4o")


def test_blank_envelope_is_filled_from_the_stream() -> None:
    events = [
        b'data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[]}\n\n',
        b'data: {"choices":[{"delta":{"role":"assistant","content":""},"index":0,"finish_reason":null}],'
        b'"created":1730000000,"id":"chatcmpl-real","model":"gpt-4o-2024-08-06","object":"chat.completion.chunk"}\n\n',
        b'data: {"choices":[{"delta":{"content":"x"},"index":0,"finish_reason":"stop"}],'
        b'"created":0,"id":"","model":"","object":""}\n\n',
        b"data: [DONE]\n\n",
    ]
    chunks = chunks_of(transcode(provider(), "gpt-4o", b"".join(events)))
    assert [(c["id"], c["created"], c["model"], c["object"]) for c in chunks[:-1]] == [
        ("chatcmpl-real", 1730000000, "gpt-4o-2024-08-06", "chat.completion.chunk")
    ] * 2
    assert chunks[-1] == "[DONE]"


def test_blank_envelope_before_any_real_one_gets_a_generated_id() -> None:
    stream = (
        b'data: {"choices":[{"delta":{"content":"x"},"index":0,"finish_reason":"stop"}],'
        b'"created":0,"id":"","model":"","object":""}\n\n'
    )
    [chunk, done] = chunks_of(transcode(provider(), "gpt-4o", stream))
    assert chunk["id"].startswith("chatcmpl-") and chunk["created"] > 0 and chunk["model"] == "gpt-4o"
    assert done == "[DONE]"


def test_error_event_in_stream_ends_it() -> None:
    stream = (
        b'data: {"choices":[{"delta":{"content":"a"},"index":0,"finish_reason":null}],'
        b'"created":1,"id":"chatcmpl-1","model":"m","object":"chat.completion.chunk"}\n\n'
        b'data: {"error":{"code":"content_filter","message":"filtered"}}\n\n'
        b'data: {"choices":[{"delta":{"content":"never"},"index":0,"finish_reason":null}],'
        b'"created":1,"id":"chatcmpl-1","model":"m","object":"chat.completion.chunk"}\n\n'
    )
    chunks = chunks_of(transcode(provider(), "gpt-4o", stream))
    assert chunks[1]["error"]["message"] == "filtered" and chunks[1]["error"]["code"] == "content_filter"
    assert chunks[2:] == ["[DONE]"]
    assert_valid_openai_stream(chunks)


def test_malformed_event_becomes_an_error() -> None:
    translator = provider().stream_translator("gpt-4o")
    with pytest.raises(ProviderError):
        translator.on_event(SSEEvent(data='{"id":"x"}', _data_seen=True))
    chunks = chunks_of(transcode(provider(), "gpt-4o", b"data: [1, 2]\n\n"))
    assert chunks[0]["error"]["code"] == "upstream_invalid_stream" and chunks[-1] == "[DONE]"


# ---- the mock ---------------------------------------------------------------------------------


def test_mock_dialect_is_matched_before_the_generic_openai_one() -> None:
    dialects = discover()
    path = "/openai/deployments/my-gpt4o/chat/completions"
    first = next(d for d in dialects if d.match("POST", path) is not None)
    assert first.name == "azure-openai"
    assert DIALECT.match("POST", "/openai/deployments/a%2Fb/chat/completions") == {"deployment": "a/b"}
    assert DIALECT.match("POST", "/openai/v1/chat/completions") == {}
    assert DIALECT.match("GET", path) is None and DIALECT.match("POST", "/v1/chat/completions") is None
    assert DIALECT.credential({"api-key": "k"}, {}) == "k"
    assert DIALECT.credential({"authorization": "Bearer k"}, {}) is None


@pytest.mark.parametrize(
    ("query", "body", "match"),
    [
        ({}, req(), "api-version"),
        ({"api-version": "latest"}, req(), "api-version"),
        ({"api-version": "2024-06-01"}, req(max_completion_tokens=5), "max_completion_tokens"),
        (
            {"api-version": "2024-08-01-preview"},
            req(stream_options={"include_usage": True}),
            "stream_options",
        ),
    ],
)
def test_mock_rejects_what_azure_rejects(query: dict, body: dict, match: str) -> None:
    with pytest.raises(BadRequest, match=match):
        DIALECT.parse(body, {"deployment": "d"}, query)


def mock_round(canonical: dict[str, Any], stream: bool, **settings_: Any) -> tuple[engine.Plan, Any]:
    p = provider(**settings_)
    body = p.translate_request({**canonical, "stream": stream}, "gpt-4o")
    path = p.request_path("gpt-4o", stream)
    route, _, query = path.partition("?")
    params = DIALECT.match("POST", route)
    assert params is not None
    mreq = DIALECT.parse(body, params, dict(q.split("=") for q in query.split("&") if q))
    plan = engine.plan(mreq)
    if stream:
        return plan, b"".join(DIALECT.render_stream(plan, mreq))
    return plan, DIALECT.render_json(plan, mreq)


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
ROUND_TRIPS = {
    "text": (req(stream_options={"include_usage": True}), {}),
    "legacy": (
        req(max_completion_tokens=50, stream_options={"include_usage": True}),
        {"apiVersion": "2024-06-01"},
    ),
    "v1_tools": (req(tools=TOOLS, tool_choice="required"), {"apiVersion": "v1"}),
}


@pytest.mark.parametrize("case", ROUND_TRIPS)
def test_mock_stream_round_trip(case: str) -> None:
    canonical, extra = ROUND_TRIPS[case]
    plan, stream = mock_round(canonical, True, **extra)
    assert stream.startswith(b'data: {"choices":[],"created":0,"id":""')  # Azure's filter report
    chunks = chunks_of(transcode(provider(**extra), "gpt-4o", stream))
    assert_valid_openai_stream(chunks)
    for c in chunks[:-1]:
        ChatCompletionChunk.model_validate(c)
    body = [c for c in chunks[:-1] if c["choices"]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in body) == plan.text
    args = "".join(
        tc["function"].get("arguments") or ""
        for c in body
        for tc in c["choices"][0]["delta"].get("tool_calls") or ()
    )
    assert ([orjson.loads(args)] if args else []) == [orjson.loads(t.arguments) for t in plan.tool_calls]
    assert body[-1]["choices"][0]["finish_reason"] == plan.finish_reason
    usage = [c["usage"] for c in chunks[:-1] if c.get("usage")]
    # Usage in a stream needs stream_options, which versions before 2024-09-01 do not know.
    assert usage == (
        []
        if case != "text"
        else [
            {
                "prompt_tokens": plan.prompt_tokens,
                "completion_tokens": plan.completion_tokens,
                "total_tokens": plan.prompt_tokens + plan.completion_tokens,
            }
        ]
    )


@pytest.mark.parametrize("case", ROUND_TRIPS)
def test_mock_json_round_trip(case: str) -> None:
    canonical, extra = ROUND_TRIPS[case]
    plan, body = mock_round(canonical, False, **extra)
    out = provider(**extra).translate_response(body, "gpt-4o")
    ChatCompletion.model_validate(out)
    message = out["choices"][0]["message"]
    assert message["content"] == (plan.text or None)
    assert [c["function"]["name"] for c in message.get("tool_calls") or ()] == [
        t.name for t in plan.tool_calls
    ]
    assert out["choices"][0]["finish_reason"] == plan.finish_reason
    assert "prompt_filter_results" in out  # Azure's extras are kept for clients that read them


async def test_mock_server_speaks_azure() -> None:
    async with TestClient(TestServer(build_app(MockState(dialects=discover([P]))))) as client:
        path = provider().request_path("gpt-4o", True)
        body = provider().translate_request(req(stream=True), "gpt-4o")
        resp = await client.post(path, json=body, headers={"authorization": "Bearer k"})
        assert resp.status == 401 and (await resp.json())["error"]["code"] == "401"
        resp = await client.post(path.split("?")[0], json=body, headers={"api-key": "k"})
        assert resp.status == 400 and "api-version" in (await resp.json())["error"]["message"]
        resp = await client.post(path, json=body, headers={"api-key": "k", "x-mock-chunk-bytes": "7"})
        assert resp.status == 200 and resp.headers["content-type"].startswith("text/event-stream")
        raw = await resp.read()
        resp = await client.post(path, json=body, headers={"api-key": "k", "x-mock-status": "429"})
        status, doc = provider().translate_error(resp.status, await resp.read())
    assert (status, doc["error"]["code"], doc["error"]["type"]) == (
        429,
        "rate_limit_exceeded",
        "rate_limit_error",
    )
    chunks = chunks_of(transcode(provider(), "gpt-4o", raw, list(range(5, len(raw), 7))))
    assert_valid_openai_stream(chunks)
    assert (
        "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1] if c["choices"])
        == "Mock reply from my-gpt4o: hi"
    )
