"""The Gemini API provider: settings and paths, what the translations map (read from the
golden inputs), schema cleaning, the stream translator, and round trips through the mock's
Gemini dialect. The goldens themselves, stream chunking, the error table and the mock
accepting every golden request are checked by tests/unit/test_goldens.py (UPDATE_GOLDEN=1
rewrites the expected files there).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import orjson
import pytest

from extproc.mock.dialects.base import BadRequest
from extproc.mock.dialects.gemini import GeminiDialect
from extproc.providers import PROVIDERS
from extproc.providers._gemini_request import DROPPED_FIELDS
from extproc.providers._gemini_schema import SCHEMA_KEYS, clean_schema
from extproc.providers.base import UnsupportedRequest
from extproc.sse import SSEParser
from tests.provider_helpers import (
    GOLDEN,
    ROOT,
    assert_valid_openai_stream,
    chunks_of,
    golden,
    make_provider,
    mock_round_trip,
    transcode,
    translated_chunks,
)

MODEL = "gemini-2.0-flash"
AUTH = {"secretRef": {"inline": "k"}}


def stream_out(provider, sse: bytes, cuts: list[int] | None = None) -> list[Any]:
    return translated_chunks(provider, MODEL, sse, cuts)


def scramble(doc: Any) -> None:
    """Mutate every container in `doc`, to prove it shares nothing with the input."""
    if isinstance(doc, dict):
        for v in list(doc.values()):
            scramble(v)
        doc.clear()
        doc["scrambled"] = True
    elif isinstance(doc, list):
        for v in doc:
            scramble(v)
        doc.append("scrambled")


def walk_keys(schema: Any) -> set[str]:
    """Every schema keyword used anywhere (property names are names, not keywords)."""
    if not isinstance(schema, dict):
        return set()
    keys = set(schema)
    for name, value in schema.items():
        if name == "properties":
            for sub in value.values():
                keys |= walk_keys(sub)
        elif name == "items":
            keys |= walk_keys(value)
        elif name == "anyOf":
            for sub in value:
                keys |= walk_keys(sub)
    return keys


@pytest.fixture
def gemini():
    return make_provider({"provider": "gemini", "auth": AUTH})


# ---- settings and paths --------------------------------------------------------------------


def test_registered_with_google_defaults(gemini):
    assert PROVIDERS["gemini"] is type(gemini)
    assert gemini.settings.api_version == "v1beta"
    assert (gemini.auth_header, gemini.auth_prefix) == ("x-goog-api-key", "")
    assert gemini.default_authority == "generativelanguage.googleapis.com"


def test_api_version_setting_uses_camel_case_and_is_checked():
    p = make_provider({"provider": "gemini", "apiVersion": "v1", "auth": AUTH})
    assert p.request_path(MODEL, False) == "/v1/models/gemini-2.0-flash:generateContent"
    with pytest.raises(ValueError, match="apiVersion"):
        make_provider({"provider": "gemini", "apiVersion": "v1/../admin", "auth": AUTH})


def test_paths_for_stream_and_non_stream(gemini):
    assert gemini.request_path(MODEL, False) == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert gemini.request_path(MODEL, True) == "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    # Google's resource-name form is accepted too.
    assert (
        gemini.request_path("models/gemini-2.5-pro", True)
        == "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    )


@pytest.mark.parametrize("model", ["../x", "a/b", "x?key=1", "m:generateContent", "", "a b"])
def test_models_that_would_change_the_path_are_refused(gemini, model):
    with pytest.raises(UnsupportedRequest):
        gemini.request_path(model, False)


# ---- request -------------------------------------------------------------------------------

REQUESTS = ["request_chat", "request_tools", "request_images"]


@pytest.mark.parametrize("name", REQUESTS)
def test_translate_request_neither_mutates_nor_aliases_its_input(gemini, name):
    req = golden("gemini", f"{name}.in.json")
    before = copy.deepcopy(req)
    out = gemini.translate_request(req, MODEL)
    assert req == before
    scramble(out)
    assert req == before
    assert gemini.translate_request(req, MODEL) == golden("gemini", f"{name}.out.json")


def test_chat_request_mapping(gemini):
    out = gemini.translate_request(golden("gemini", "request_chat.in.json"), MODEL)
    assert out["systemInstruction"] == {"parts": [{"text": "You are terse."}, {"text": "Answer in English."}]}
    # The two trailing user messages are merged: Gemini wants alternating turns.
    assert [c["role"] for c in out["contents"]] == ["user", "model", "user"]
    assert [p["text"] for p in out["contents"][2]["parts"]] == ["Another one,", " as JSON.", "Please."]
    config = out["generationConfig"]
    assert config["maxOutputTokens"] == 100  # max_completion_tokens wins over max_tokens
    assert (config["candidateCount"], config["stopSequences"], config["seed"]) == (2, ["END"], 7)
    assert config["responseMimeType"] == "application/json"
    assert config["responseSchema"]["properties"]["hex"] == {
        "type": "string",
        "nullable": True,
        "pattern": "^#[0-9a-f]{6}$",
    }
    text = orjson.dumps(out).decode()
    for dropped in (
        "user-123",
        "logit_bias",
        "include_usage",
        "parallel",
        "additionalProperties",
        "$schema",
        "strict",
    ):
        assert dropped not in text


def test_tool_history_mapping(gemini):
    out = gemini.translate_request(golden("gemini", "request_tools.in.json"), MODEL)
    roles = [c["role"] for c in out["contents"]]
    assert roles == ["user", "model", "user", "model", "user"]
    calls = out["contents"][1]["parts"]
    assert calls[0] == {
        "functionCall": {"name": "get_weather", "args": {"city": "Paris", "unit": "celsius"}},
        "thoughtSignature": "c2lnbmF0dXJlLTE=",
    }
    assert "thoughtSignature" not in calls[1]
    # Both tool results and the next user message form one user turn.
    results = out["contents"][2]["parts"]
    assert results[0] == {
        "functionResponse": {"name": "get_weather", "response": {"temp": 18, "sky": "cloudy"}}
    }
    assert results[1] == {"functionResponse": {"name": "get_weather", "response": {"content": "sunny, 24C"}}}
    assert results[2] == {"text": "Thanks. Now book."}
    assert out["contents"][3]["parts"] == [
        {"text": "Booking."},
        {"functionCall": {"name": "book_table", "args": {}}},
    ]
    # JSON that is not an object is still wrapped: Gemini wants an object.
    assert out["contents"][4]["parts"] == [
        {"functionResponse": {"name": "book_table", "response": {"content": "[1, 2]"}}}
    ]
    assert out["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }
    decls = out["tools"][0]["functionDeclarations"]
    assert "parameters" not in decls[1]  # no properties: Gemini rejects an empty OBJECT


def test_image_audio_and_file_parts(gemini):
    out = gemini.translate_request(golden("gemini", "request_images.in.json"), MODEL)
    parts = out["contents"][0]["parts"]
    assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}
    assert parts[2] == {
        "fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/photos/cat.webp?size=large"}
    }
    assert parts[3]["fileData"]["mimeType"] == "image/jpeg"  # no extension: the default
    assert parts[5] == {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}}
    assert parts[6] == {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}}
    assert len(parts) == 7  # the empty text part is left out: Gemini rejects empty text
    assert "toolConfig" not in out  # tool_choice without tools says nothing


@pytest.mark.parametrize(
    "change, match",
    [
        (
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
                        ],
                    },
                ]
            },
            "not valid JSON",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
                        ],
                    },
                ]
            },
            "JSON object",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    {"role": "tool", "tool_call_id": "nope", "content": "1"},
                ]
            },
            "nope",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {}}]}]}, "video_url"),
        (
            {"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "f-1"}}]}]},
            "file ids",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "ftp://host/a.png"}}],
                    }
                ]
            },
            "scheme",
        ),
        ({"messages": [{"role": "system", "content": "only rules"}]}, "at least one"),
        ({"tools": [{"type": "custom", "function": {"name": "f"}}]}, "only function tools"),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "allowed_tools"},
            },
            "tool_choice",
        ),
        ({"response_format": {"type": "xml"}}, "response_format"),
    ],
)
def test_untranslatable_requests_are_refused(gemini, change, match):
    req = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **change}
    with pytest.raises(UnsupportedRequest, match=match):
        gemini.translate_request(req, MODEL)


# ---- JSON-schema cleaning ------------------------------------------------------------------


def test_tool_schemas_keep_only_keys_google_accepts(gemini):
    raw = golden("gemini", "request_tools.in.json")["tools"][0]["function"]["parameters"]
    assert walk_keys(raw) - SCHEMA_KEYS  # the input does use unsupported keys...
    out = gemini.translate_request(golden("gemini", "request_tools.in.json"), MODEL)
    params = out["tools"][0]["functionDeclarations"][0]["parameters"]
    assert walk_keys(params) <= SCHEMA_KEYS  # ...the output does not, at any depth
    props = params["properties"]
    assert props["unit"] == {
        "type": "string",
        "enum": ["celsius", "fahrenheit"],
        "title": "Unit",
        "nullable": True,
        "default": None,
    }
    assert props["when"]["properties"]["kind"] == {"enum": ["calendar"]}
    assert props["when"]["properties"]["day"] == {"type": "integer", "maximum": 31}
    assert props["mode"] == {
        "anyOf": [{"type": "string", "enum": ["fast", "slow"]}, {"type": "integer"}]
    }  # integer enums are dropped


def test_property_names_are_not_mistaken_for_keywords():
    schema = {
        "type": "object",
        "properties": {"additionalProperties": {"type": "string"}, "$schema": {"type": "integer"}},
    }
    assert clean_schema(schema)["properties"] == {
        "additionalProperties": {"type": "string"},
        "$schema": {"type": "integer"},
    }


def test_schema_type_lists_and_unions():
    assert clean_schema({"type": ["integer", "null"]}) == {"type": "integer", "nullable": True}
    assert clean_schema({"type": ["integer", "string"]}) == {
        "anyOf": [{"type": "integer"}, {"type": "string"}]
    }
    assert clean_schema(
        {"anyOf": [{"type": "null"}, {"type": "string", "format": "date-time"}], "description": "when"}
    ) == {"nullable": True, "description": "when", "type": "string", "format": "date-time"}


def test_required_names_must_be_declared_properties():
    assert clean_schema(
        {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a", "ghost"]}
    )["required"] == ["a"]
    assert "required" not in clean_schema({"type": "object", "required": ["ghost"]})


def test_schema_refs_must_be_local_and_finite():
    with pytest.raises(UnsupportedRequest, match="cannot be resolved"):
        clean_schema({"$ref": "https://example.com/schema.json"})
    recursive = {
        "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
        "$ref": "#/$defs/Node",
    }
    with pytest.raises(UnsupportedRequest, match="too deeply"):
        clean_schema(recursive)


# ---- response ------------------------------------------------------------------------------


def test_response_text_and_usage(gemini):
    out = gemini.translate_response(golden("gemini", "response_text.in.json"), MODEL)
    assert out["id"] == "chatcmpl-mIJcaKWxD8Sz1dkPo9-bsQ0"
    assert out["model"] == "gemini-2.5-flash"
    assert out["choices"][0]["message"] == {"role": "assistant", "content": "Teal is a blue-green."}
    assert out["choices"][0]["finish_reason"] == "stop"
    # Thoughts are billed as output; tool-use prompt tokens as input.
    assert out["usage"] == {
        "prompt_tokens": 125,
        "completion_tokens": 26,
        "total_tokens": 151,
        "prompt_tokens_details": {"cached_tokens": 100},
        "completion_tokens_details": {"reasoning_tokens": 20},
    }


def test_response_tool_calls(gemini):
    body = golden("gemini", "response_tools.in.json")
    out = gemini.translate_response(body, MODEL)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Checking both cities."
    calls = choice["message"]["tool_calls"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [
        {"city": "Paris", "unit": "celsius"},
        {"city": "Rome"},
        {},
    ]
    assert calls[0]["extra_content"] == {"google": {"thought_signature": "c2lnLXBhcmlz"}}
    ids = [c["id"] for c in calls]
    assert len(set(ids)) == 3 and all(i.startswith("call_") for i in ids)
    # Stable for one response, different for another response.
    assert [
        c["id"] for c in gemini.translate_response(body, MODEL)["choices"][0]["message"]["tool_calls"]
    ] == ids
    other = {**body, "responseId": "another-response"}
    assert gemini.translate_response(other, MODEL)["choices"][0]["message"]["tool_calls"][0]["id"] != ids[0]


def test_response_candidates_become_choices(gemini):
    out = gemini.translate_response(golden("gemini", "response_n2.in.json"), MODEL)
    assert [(c["index"], c["finish_reason"]) for c in out["choices"]] == [
        (0, "stop"),
        (1, "length"),
        (2, "content_filter"),
        (3, "content_filter"),
    ]
    assert out["choices"][3]["message"]["content"] == ""


def test_blocked_prompt_is_an_empty_filtered_answer(gemini):
    out = gemini.translate_response(golden("gemini", "response_blocked.in.json"), MODEL)
    assert out["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": "content_filter",
        }
    ]
    assert out["usage"]["prompt_tokens"] == 12 and out["usage"]["completion_tokens"] == 0


# ---- stream --------------------------------------------------------------------------------


def test_stream_text_deltas_and_usage_not_summed(gemini):
    out = stream_out(gemini, golden("gemini", "stream_text.sse"))
    body = out[:-1]
    assert body[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert (
        "".join(c["choices"][0]["delta"].get("content", "") for c in body if c["choices"])
        == "Hello, wörld — how are you?"
    )
    finishes = [c["choices"][0]["finish_reason"] for c in body if c["choices"]]
    assert finishes.count("stop") == 1 and finishes[-1] == "stop"
    with_usage = [c for c in body if "usage" in c]
    # Google repeats cumulative usage on every event: only the last one counts, once.
    assert with_usage == [body[-1]] and body[-1]["choices"] == []
    assert body[-1]["usage"] == {
        "prompt_tokens": 8,
        "completion_tokens": 19,
        "total_tokens": 27,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 12},
    }


def test_stream_tool_calls_match_the_json_form(gemini):
    out = stream_out(gemini, golden("gemini", "stream_tools.sse"))
    deltas = [c["choices"][0]["delta"] for c in out[:-1] if c["choices"]]
    calls = [t for d in deltas for t in d.get("tool_calls", ())]
    assert [(t["index"], t["function"]["name"], t["function"]["arguments"]) for t in calls] == [
        (0, "get_weather", '{"city":"Paris"}'),
        (1, "get_weather", '{"city":"Rome"}'),
    ]
    assert calls[0]["extra_content"] == {"google": {"thought_signature": "c2lnLTE="}}
    finishes = [c["choices"][0]["finish_reason"] for c in out[:-1] if c["choices"]]
    assert [f for f in finishes if f] == ["tool_calls"]  # the later MALFORMED_FUNCTION_CALL is ignored
    # The same calls in a JSON response get the same ids.
    parts = [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
        {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
    ]
    whole = gemini.translate_response(
        {
            "candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": "STOP"}],
            "responseId": "stream-tools-01",
        },
        MODEL,
    )
    assert [c["id"] for c in whole["choices"][0]["message"]["tool_calls"]] == [t["id"] for t in calls]


def test_stream_candidates_keep_their_index(gemini):
    out = stream_out(gemini, golden("gemini", "stream_n2.sse"))
    text: dict[int, str] = {}
    finish: dict[int, str] = {}
    for c in out[:-1]:
        for ch in c["choices"]:
            text[ch["index"]] = text.get(ch["index"], "") + ch["delta"].get("content", "")
            if ch["finish_reason"]:
                finish[ch["index"]] = ch["finish_reason"]
    assert text == {0: "Red wine.", 1: "Green tea"}
    assert finish == {0: "stop", 1: "length"}


def test_stream_error_event_ends_the_stream(gemini):
    out = stream_out(gemini, golden("gemini", "stream_error.sse"))
    assert out[-2] == {
        "error": {
            "message": "The model is overloaded. Please try again later.",
            "type": "server_error",
            "param": None,
            "code": "unavailable",
        }
    }
    assert "never seen" not in json.dumps(out)
    assert out[1]["choices"][0]["delta"] == {"content": "Partial"}


def test_stream_cut_before_a_finish_reason_ends_with_an_error(gemini):
    out = stream_out(gemini, golden("gemini", "stream_truncated.sse"))
    assert out[1]["choices"][0]["delta"] == {"content": "The answer is"}
    assert out[-2]["error"]["code"] == "upstream_stream_truncated"
    assert not any("usage" in c for c in out[:-1])
    assert stream_out(gemini, b"")[-2]["error"]["code"] == "upstream_stream_truncated"


def test_stream_that_is_not_json_becomes_an_error(gemini):
    out = chunks_of(transcode(gemini, MODEL, b"data: {not json\r\n\r\n"))
    assert out[-2]["error"]["code"] == "upstream_invalid_stream" and out[-1] == "[DONE]"


# ---- the mock's Gemini dialect -------------------------------------------------------------

STREAM_PATH = "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
JSON_PATH = "/v1beta/models/gemini-2.0-flash:generateContent"
WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


def test_mock_stream_round_trip_text(gemini):
    req = {
        "model": MODEL,
        "stream": True,
        "messages": [
            {"role": "system", "content": "be nice"},
            {"role": "user", "content": "say hello to me"},
        ],
    }
    dialect = GeminiDialect()
    mreq, plan = mock_round_trip(gemini, dialect, STREAM_PATH, req, {"alt": "sse"})
    sse = b"".join(dialect.render_stream(plan, mreq))
    assert sse.count(b"\r\n\r\n") == len(plan.text.split())  # one event per word, CRLF framed
    out = chunks_of(transcode(gemini, MODEL, sse))
    assert_valid_openai_stream(out)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in out[:-1] if c["choices"]) == plan.text
    # The mock repeats growing usage on every event; the client sees the final one once.
    usage = [c["usage"] for c in out[:-1] if "usage" in c]
    assert usage == [
        {
            "prompt_tokens": plan.prompt_tokens,
            "completion_tokens": plan.completion_tokens,
            "total_tokens": plan.prompt_tokens + plan.completion_tokens,
        }
    ]


def test_mock_stream_round_trip_tool_call(gemini):
    req = {
        "model": MODEL,
        "stream": True,
        "tools": [WEATHER],
        "messages": [{"role": "user", "content": "weather?"}],
    }
    dialect = GeminiDialect()
    mreq, plan = mock_round_trip(gemini, dialect, STREAM_PATH, req, {"alt": "sse"})
    assert plan.tool_calls
    out = chunks_of(transcode(gemini, MODEL, b"".join(dialect.render_stream(plan, mreq))))
    assert_valid_openai_stream(out)
    calls = [t for c in out[:-1] if c["choices"] for t in c["choices"][0]["delta"].get("tool_calls", ())]
    assert [(t["function"]["name"], json.loads(t["function"]["arguments"])) for t in calls] == [
        ("get_weather", {"city": "mock-city"})
    ]
    assert [c["choices"][0]["finish_reason"] for c in out[:-1] if c["choices"]][-1] == "tool_calls"


def test_mock_json_round_trip_after_tool_result_with_two_candidates(gemini):
    req = {
        "model": MODEL,
        "n": 2,
        "max_tokens": 3,
        "tools": [WEATHER],
        "messages": [
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": '{"sky": "grey"}'},
        ],
    }
    dialect = GeminiDialect()
    mreq, plan = mock_round_trip(gemini, dialect, JSON_PATH, req, {})
    assert mreq.turns[-1] == ("tool", '{"sky":"grey"}')
    out = gemini.translate_response(dialect.render_json(plan, mreq), MODEL)
    assert [c["index"] for c in out["choices"]] == [0, 1]
    assert out["choices"][0]["message"]["content"] == plan.text == "The tool returned:"
    assert out["choices"][1]["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 2 * plan.completion_tokens


@pytest.mark.parametrize(
    "body, message",
    [
        ({"contents": []}, "contents is not specified"),
        ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "valid role"),
        ({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}, "valid role"),
        ({"contents": [{"role": "user", "parts": []}]}, "must not be empty"),
        ({"contents": [{"role": "user", "parts": [{"text": "x"}]}], "messages": []}, "Unknown name"),
        (
            {
                "contents": [{"role": "user", "parts": [{"text": "x"}]}],
                "tools": [
                    {"functionDeclarations": [{"name": "f", "parameters": WEATHER["function"]["parameters"]}]}
                ],
            },
            'Unknown name "additionalProperties"',
        ),
        (
            {
                "contents": [{"role": "user", "parts": [{"text": "x"}]}],
                "tools": [
                    {
                        "functionDeclarations": [
                            {"name": "f", "parameters": {"type": "object", "properties": {}}}
                        ]
                    }
                ],
            },
            "non-empty for OBJECT",
        ),
        (
            {"contents": [{"role": "user", "parts": [{"text": "x"}]}], "generationConfig": {"max_tokens": 3}},
            "Unknown name",
        ),
    ],
)
def test_mock_rejects_what_google_rejects(body, message):
    dialect = GeminiDialect()
    params = dialect.match("POST", JSON_PATH)
    assert params is not None
    with pytest.raises(BadRequest, match=message):
        dialect.parse(body, params, {})


def test_mock_accepts_snake_case_like_google(gemini):
    dialect = GeminiDialect()
    params = dialect.match("POST", JSON_PATH)
    assert params is not None
    mreq = dialect.parse(
        {
            "contents": [{"parts": [{"text": "hi"}]}],
            "system_instruction": {"parts": [{"text": "rules"}]},
            "generation_config": {"max_output_tokens": 4},
        },
        params,
        {},
    )
    assert mreq.turns == [("system", "rules"), ("user", "hi")] and mreq.max_tokens == 4


def test_mock_streams_only_with_alt_sse():
    dialect = GeminiDialect()
    params = dialect.match("POST", STREAM_PATH)
    assert params is not None
    with pytest.raises(BadRequest, match="alt=sse"):
        dialect.parse({"contents": [{"parts": [{"text": "x"}]}]}, params, {})


def test_mock_path_and_credential():
    d = GeminiDialect()
    assert d.match("POST", "/v1/models/gemini-pro:generateContent") == {
        "model": "gemini-pro",
        "action": "generateContent",
    }
    assert d.match("GET", JSON_PATH) is None
    assert d.match("POST", "/v1beta/models/gemini-pro:countTokens") is None
    assert d.match("POST", "/v1/chat/completions") is None
    assert d.credential({"x-goog-api-key": "k1"}, {}) == "k1"
    assert d.credential({}, {"key": "k2"}) == "k2"
    assert d.credential({"authorization": "Bearer k3"}, {}) is None
    assert d.render_error(429, "slow down") == {
        "error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}
    }


async def test_mock_server_speaks_gemini_over_http(gemini):
    from aiohttp.test_utils import TestClient, TestServer

    from extproc.mock.dialects import discover
    from extproc.mock.server import MockState, build_app

    body = gemini.translate_request(
        {"model": MODEL, "messages": [{"role": "user", "content": "hello mock"}]}, MODEL
    )
    app = build_app(MockState(dialects=discover(["gemini"])))
    async with TestClient(TestServer(app)) as client:
        resp = await client.post(gemini.request_path(MODEL, True), json=body, headers={"x-goog-api-key": "k"})
        assert resp.status == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        out = chunks_of(transcode(gemini, MODEL, await resp.read()))
        assert_valid_openai_stream(out)
        assert "hello mock" in "".join(
            c["choices"][0]["delta"].get("content", "") for c in out[:-1] if c["choices"]
        )
        denied = await client.post(gemini.request_path(MODEL, False), json=body)
        assert denied.status == 401
        status, err = gemini.translate_error(401, await denied.read())
        assert status == 401 and err["error"]["code"] == "invalid_api_key"


# ---- docs ----------------------------------------------------------------------------------


def test_readme_lists_every_dropped_field():
    doc = (ROOT / "docs" / "providers" / "gemini.md").read_text()
    missing = [f for f in DROPPED_FIELDS if f"`{f}`" not in doc]
    assert not missing


def test_stream_goldens_use_crlf_framing():
    # Google ends events with CRLF; the goldens keep that so the parser path is exercised.
    streams = sorted((GOLDEN / "gemini").glob("stream_*.sse"))
    assert streams
    for path in streams:
        assert b"\r\n\r\n" in path.read_bytes(), path.name
        events = SSEParser().feed(path.read_bytes())
        assert events and all(e.has_data for e in events)
