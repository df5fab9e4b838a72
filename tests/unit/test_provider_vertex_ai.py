"""The Vertex AI provider: settings (project, location, publisher, regional host), paths,
the shared Gemini translation on Vertex-shaped answers, and the mock's Vertex dialect.
The goldens, stream chunking and the error table: tests/unit/test_goldens.py."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from extproc.backends import Backend
from extproc.mock.dialects.base import BadRequest
from extproc.mock.dialects.vertex_ai import VertexAIDialect
from extproc.providers import PROVIDERS
from extproc.providers.base import UnsupportedRequest
from tests.provider_helpers import (
    assert_valid_openai_stream,
    chunks_of,
    golden,
    make_provider,
    mock_round_trip,
    transcode,
    translated_chunks,
)

MODEL = "gemini-2.0-flash-001"
AUTH = {"secretRef": {"inline": "token"}}
BASE = "/v1/projects/my-proj/locations/us-central1/publishers/google/models/gemini-2.0-flash-001"


def vertex(**extra):
    return make_provider({"provider": "vertex-ai", "project": "my-proj", "auth": AUTH, **extra})


def stream_out(provider, sse: bytes) -> list[Any]:
    # The stream goldens are translated for this model (tests/golden/vertex-ai/cases.json).
    return translated_chunks(provider, "gemini-2.0-flash", sse)


@pytest.fixture
def provider():
    return vertex()


# ---- settings ------------------------------------------------------------------------------


def test_registered_with_bearer_auth_and_defaults(provider):
    assert PROVIDERS["vertex-ai"] is type(provider)
    s = provider.settings
    assert (s.location, s.publisher, s.api_version) == ("us-central1", "google", "v1")
    assert (provider.auth_header, provider.auth_prefix) == ("authorization", "Bearer ")


@pytest.mark.parametrize(
    "extra, host",
    [
        ({}, "us-central1-aiplatform.googleapis.com"),
        ({"location": "europe-west4"}, "europe-west4-aiplatform.googleapis.com"),
        ({"location": "global"}, "aiplatform.googleapis.com"),
        ({"location": "europe-west4", "authority": "vertex.internal"}, "vertex.internal"),
    ],
)
def test_the_host_follows_the_location_unless_set(extra, host):
    p = vertex(**extra)
    backend = Backend("b", "c", p.settings, p, None)
    assert backend.headers[":authority"] == host


def test_project_is_required():
    with pytest.raises(ValidationError, match="project"):
        make_provider({"provider": "vertex-ai", "auth": AUTH})


@pytest.mark.parametrize("publisher", ["anthropic", "meta", "Google"])
def test_only_the_google_publisher_is_accepted(publisher):
    with pytest.raises(ValidationError, match="only publisher 'google'"):
        vertex(publisher=publisher)


@pytest.mark.parametrize(
    "field, value",
    [
        ("project", "my/proj"),
        ("project", "My Proj"),
        ("location", "us-central1/../x"),
        ("location", ""),
        ("apiVersion", "v1?x"),
    ],
)
def test_values_that_would_change_the_path_are_refused(field, value):
    with pytest.raises(ValidationError):
        vertex(**{field: value})


# ---- paths ---------------------------------------------------------------------------------


def test_paths_for_stream_and_non_stream(provider):
    assert provider.request_path(MODEL, False) == BASE + ":generateContent"
    assert provider.request_path(MODEL, True) == BASE + ":streamGenerateContent?alt=sse"
    beta = vertex(location="global", apiVersion="v1beta1")
    assert beta.request_path("gemini-2.5-pro", True) == (
        "/v1beta1/projects/my-proj/locations/global/publishers/google/models/gemini-2.5-pro"
        ":streamGenerateContent?alt=sse"
    )


@pytest.mark.parametrize("model", ["../../x", "models/gemini", "a?b", "x:y"])
def test_bad_models_are_refused(provider, model):
    with pytest.raises(UnsupportedRequest):
        provider.request_path(model, False)


# ---- translation ---------------------------------------------------------------------------


def test_request_is_the_same_body_as_gemini(provider):
    req = golden("vertex-ai", "request_chat.in.json")
    out = provider.translate_request(req, MODEL)
    gemini = make_provider({"provider": "gemini", "auth": AUTH})
    assert out == gemini.translate_request(req, MODEL)
    assert out["generationConfig"] == {
        "maxOutputTokens": 256,
        "stopSequences": ["\n\n", "END"],
        "responseMimeType": "application/json",
    }
    assert out["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    assert out["contents"][-1] == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "lookup_order", "response": {"content": "shipped"}}}],
    }


def test_response_without_candidate_index(provider):
    out = provider.translate_response(golden("vertex-ai", "response_text.in.json"), MODEL)
    assert out["id"] == "chatcmpl-vtx-json-1"
    assert out["choices"][0]["index"] == 0
    assert out["choices"][0]["message"]["content"] == "Order A-17 has shipped."
    assert out["usage"] == {"prompt_tokens": 31, "completion_tokens": 6, "total_tokens": 37}


STREAM_BYTES = {name: golden("vertex-ai", f"{name}.sse") for name in ["stream_text", "stream_tools"]}


def test_stream_with_usage_only_at_the_end(provider):
    out = stream_out(provider, STREAM_BYTES["stream_text"])
    assert (
        "".join(c["choices"][0]["delta"].get("content", "") for c in out[:-1] if c["choices"])
        == "The capital of France is Paris."
    )
    assert [c["usage"] for c in out[:-1] if "usage" in c] == [
        {"prompt_tokens": 7, "completion_tokens": 7, "total_tokens": 14}
    ]


def test_stream_tool_call_in_one_event(provider):
    out = stream_out(provider, STREAM_BYTES["stream_tools"])
    deltas = [c["choices"][0] for c in out[:-1] if c["choices"]]
    call = deltas[1]["delta"]["tool_calls"][0]
    assert (call["index"], call["function"]["name"]) == (0, "lookup_order")
    assert json.loads(call["function"]["arguments"]) == {"order_id": "A-17", "include": ["items", "status"]}
    assert deltas[-1]["finish_reason"] == "tool_calls"


# ---- the mock's Vertex dialect -------------------------------------------------------------


def test_mock_stream_round_trip(provider):
    dialect = VertexAIDialect()
    req = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "tell me a story"}]}
    mreq, plan = mock_round_trip(provider, dialect, BASE + ":streamGenerateContent", req, {"alt": "sse"})
    events = dialect.render_stream(plan, mreq)
    docs = [orjson.loads(e[len(b"data: ") :]) for e in events]
    assert all("index" not in d["candidates"][0] for d in docs)  # Vertex omits index 0
    assert ["usageMetadata" in d for d in docs] == [False] * (len(docs) - 1) + [True]
    out = chunks_of(transcode(provider, MODEL, b"".join(events)))
    assert_valid_openai_stream(out)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in out[:-1] if c["choices"]) == plan.text
    assert out[-2]["usage"]["completion_tokens"] == plan.completion_tokens


def test_mock_json_round_trip_with_tool_call(provider):
    dialect = VertexAIDialect()
    req = {
        "model": MODEL,
        "tool_choice": "required",
        "messages": [{"role": "user", "content": "find A-17"}],
        "tools": golden("vertex-ai", "request_chat.in.json")["tools"],
    }
    mreq, plan = mock_round_trip(provider, dialect, BASE + ":generateContent", req, {})
    assert mreq.tool_choice == "required"
    out = provider.translate_response(dialect.render_json(plan, mreq), MODEL)
    call = out["choices"][0]["message"]["tool_calls"][0]
    assert (call["function"]["name"], json.loads(call["function"]["arguments"])) == (
        "lookup_order",
        {"order_id": "mock-order_id"},
    )
    assert out["choices"][0]["finish_reason"] == "tool_calls"


def test_mock_path_credential_and_validation():
    d = VertexAIDialect()
    assert d.match("POST", BASE + ":generateContent") == {"model": MODEL, "action": "generateContent"}
    assert d.match("POST", BASE.replace("/google/", "/anthropic/") + ":rawPredict") is None
    assert d.match("POST", "/v1beta/models/gemini-2.0-flash:generateContent") is None
    assert d.credential({"authorization": "Bearer ya29.token"}, {}) == "ya29.token"
    assert d.credential({"x-goog-api-key": "k"}, {"key": "k"}) is None
    params = d.match("POST", BASE + ":generateContent")
    assert params is not None
    with pytest.raises(BadRequest, match="valid role"):
        d.parse({"contents": [{"role": "tool", "parts": [{"text": "x"}]}]}, params, {})
    assert d.render_error(403, "denied")["error"]["status"] == "PERMISSION_DENIED"
