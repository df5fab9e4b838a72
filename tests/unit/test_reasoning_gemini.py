"""Gemini and Vertex AI thinking, end to end: `reasoning_effort` -> thinkingConfig per model
family and backend settings, history without other providers' reasoning, `top_k`, media
types, thought parts -> `reasoning_content` (JSON and streamed), and the mock's thinking.

The thinking goldens themselves (request, response, stream, chunking) are checked by
tests/unit/test_goldens.py; UPDATE_GOLDEN=1 rewrites them there.
"""

from __future__ import annotations

import re
from typing import Any

import openai.types.chat as oai
import orjson
import pytest
from pydantic import ValidationError

from extproc.canonical import REASONING_EFFORTS
from extproc.mock import engine
from extproc.mock.dialects.base import BadRequest
from extproc.mock.dialects.gemini import GeminiDialect
from extproc.mock.dialects.vertex_ai import VertexAIDialect
from extproc.providers._gemini_request import DROPPED_FIELDS, DROPPED_MESSAGE_FIELDS
from extproc.providers._gemini_thinking import EFFORTS, FAMILIES, BudgetFamily, family_of
from extproc.providers.base import UnsupportedRequest
from tests.provider_helpers import (
    ROOT,
    assert_valid_openai_stream,
    chunks_of,
    golden,
    make_provider,
    mock_round_trip,
    transcode,
    translated_chunks,
)

AUTH = {"secretRef": {"inline": "k"}}
VERTEX_BASE = "/v1/projects/p/locations/us-central1/publishers/google/models/"


def gemini(**extra: Any):
    return make_provider({"provider": "gemini", "auth": AUTH, **extra})


def vertex(**extra: Any):
    return make_provider({"provider": "vertex-ai", "project": "p", "auth": AUTH, **extra})


def stream_out(provider, sse: bytes) -> list[Any]:
    # The stream goldens are translated for this model (tests/golden/*/cases.json).
    return translated_chunks(provider, "gemini-2.0-flash", sse)


def chat(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


def thinking_of(provider, req: dict[str, Any]) -> Any:
    return provider.translate_request(req, req["model"]).get("generationConfig", {}).get("thinkingConfig")


def sdk_completion(doc: dict[str, Any]) -> dict[str, Any]:
    """What the official SDK makes of a translated answer (it keeps unknown fields)."""
    return oai.ChatCompletion.model_validate(doc).model_dump(exclude_unset=True)


def joined(chunks: list[Any], field: str, index: int = 0) -> str:
    return "".join(
        ch["delta"].get(field) or ""
        for c in chunks
        if isinstance(c, dict) and "choices" in c
        for ch in c["choices"]
        if ch["index"] == index
    )


# ---- model families ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model, family",
    [
        ("gemini-2.5-pro", "gemini-2.5-pro"),
        ("models/gemini-2.5-pro-preview-06-05", "gemini-2.5-pro"),
        ("gemini-2.5-flash", "gemini-2.5-flash"),
        ("gemini-2.5-flash-preview-05-20", "gemini-2.5-flash"),
        ("gemini-2.5-flash-001", "gemini-2.5-flash"),
        ("gemini-2.5-flash-lite", "gemini-2.5-flash-lite"),
        ("Gemini-2.5-Flash-Lite-Preview-06-17", "gemini-2.5-flash-lite"),
        ("gemini-3-pro-preview", "gemini-3-pro"),
        ("gemini-3.1-pro-preview", "gemini-3-pro"),
        ("gemini-3-flash-preview", "gemini-3-flash"),
        ("gemini-3.1-flash-lite", "gemini-3-flash"),
        ("gemini-2.0-flash", None),
        ("gemini-1.5-pro", None),
        ("gemini-flash-latest", None),
        ("gemini-2.5-professional", None),
        ("gemma-3-27b-it", None),
    ],
)
def test_family_is_read_from_the_model_name(model, family):
    assert family_of(model) == family


def test_efforts_are_the_canonical_ones_and_defaults_fit_their_family():
    assert EFFORTS == REASONING_EFFORTS
    for name, family in FAMILIES.items():
        assert set(family.defaults) <= set(EFFORTS), name
        for effort, value in family.defaults.items():
            if isinstance(family, BudgetFamily):
                assert isinstance(value, int) and family.allows(value), (name, effort, value)
            else:
                assert value in family.levels, (name, effort, value)


# ---- requests: effort -> thinkingConfig per family ---------------------------------------------

BUDGET = {"includeThoughts": True}
EFFORT_TABLE = {
    # effort: (2.5 Pro, 2.5 Flash, 2.5 Flash-Lite, 3 Pro, 3 Flash); None = refused with a 400
    "none": (None, 0, 0, None, None),
    "minimal": (128, 512, 512, "low", "minimal"),
    "low": (1024, 1024, 1024, "low", "low"),
    "medium": (8192, 8192, 8192, "high", "medium"),
    "high": (24576, 24576, 24576, "high", "high"),
    "xhigh": (32768, 24576, 24576, "high", "high"),
}
MODELS = (
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-3-pro-preview",
    "gemini-3-flash",
)


@pytest.mark.parametrize("effort", list(EFFORT_TABLE))
@pytest.mark.parametrize("column, model", list(enumerate(MODELS)))
def test_effort_maps_per_family(effort, column, model):
    expected = EFFORT_TABLE[effort][column]
    req = chat(model, reasoning_effort=effort)
    if expected is None:
        with pytest.raises(UnsupportedRequest, match="cannot switch thinking off") as err:
            gemini().translate_request(req, model)
        assert err.value.param == "reasoning_effort"
    elif expected == 0:
        # Thinking off: Google has no thoughts to include, so none are asked for.
        assert thinking_of(gemini(), req) == {"thinkingBudget": 0}
    elif isinstance(expected, int):
        assert thinking_of(gemini(), req) == {"includeThoughts": True, "thinkingBudget": expected}
    else:
        assert thinking_of(gemini(), req) == {"includeThoughts": True, "thinkingLevel": expected}


def test_pro_request_drops_other_reasoning_and_keeps_gemini_signatures():
    req = golden("gemini", "request_thinking_pro.in.json")
    out = gemini().translate_request(req, req["model"])
    assert out["generationConfig"] == {
        "temperature": 0.2,
        "topK": 40,
        "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 1024},
    }
    assert out["contents"][1]["parts"] == [
        {
            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
            "thoughtSignature": "Z2VtaW5pLXNpZy0x",
        }
    ]
    assert out["contents"][3] == {"role": "model", "parts": [{"text": "Clear and 21C."}]}
    text = orjson.dumps(out).decode()
    for dropped in (
        "I should call get_weather",
        "YW50aHJvcGljLXNpZw==",
        "b3BhcXVl",
        "Report the tool result",
    ):
        assert dropped not in text
    assert set(DROPPED_MESSAGE_FIELDS) >= {"reasoning_content", "thinking_blocks"}


def test_flash_request_turns_thinking_off_and_normalises_jpg():
    req = golden("gemini", "request_thinking_flash.in.json")
    out = gemini().translate_request(req, req["model"])
    assert out["generationConfig"] == {"maxOutputTokens": 512, "thinkingConfig": {"thinkingBudget": 0}}
    parts = out["contents"][0]["parts"]
    assert parts[1] == {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}}
    assert parts[2]["fileData"] == {"mimeType": "image/jpeg", "fileUri": "https://example.com/img/photo.JPG"}


def test_gemini3_request_sends_a_level_and_no_echoed_reasoning():
    req = golden("gemini", "request_thinking_gemini3.in.json")
    out = gemini().translate_request(req, req["model"])
    assert out["generationConfig"] == {"thinkingConfig": {"includeThoughts": True, "thinkingLevel": "high"}}
    assert out["contents"][1] == {"role": "model", "parts": [{"text": "Step one: ..."}]}


def test_reasoning_effort_is_no_longer_a_dropped_field():
    assert "reasoning_effort" not in DROPPED_FIELDS
    assert "top_k" not in DROPPED_FIELDS


def test_effort_on_a_model_without_thinking_controls_is_refused():
    with pytest.raises(UnsupportedRequest, match=r"gemini-2\.0-flash.*thinking") as err:
        gemini().translate_request(chat("gemini-2.0-flash", reasoning_effort="low"), "gemini-2.0-flash")
    assert err.value.param == "reasoning_effort"
    # Without an effort nothing changes for such models.
    assert "generationConfig" not in gemini().translate_request(chat("gemini-2.0-flash"), "gemini-2.0-flash")


def test_unknown_effort_is_refused():
    with pytest.raises(UnsupportedRequest, match="reasoning_effort") as err:
        gemini().translate_request(chat("gemini-2.5-pro", reasoning_effort="max"), "gemini-2.5-pro")
    assert err.value.param == "reasoning_effort"


def test_the_model_sent_decides_not_the_clients_model_field():
    req = chat("gemini-2.0-flash", reasoning_effort="high")  # the backend sends 2.5 Pro
    assert gemini().translate_request(req, "gemini-2.5-pro")["generationConfig"]["thinkingConfig"] == {
        "includeThoughts": True,
        "thinkingBudget": 24576,
    }


# ---- backend settings --------------------------------------------------------------------------


def test_backend_overrides_and_default_effort():
    p = gemini(
        thinking={
            "defaultEffort": "medium",
            "budgets": {"gemini-2.5-pro": {"medium": 2048, "none": 128}, "gemini-2.5-flash": {"minimal": 0}},
            "levels": {"gemini-3-pro": {"medium": "medium", "none": "low"}},
        }
    )
    assert thinking_of(p, chat("gemini-2.5-pro")) == {"includeThoughts": True, "thinkingBudget": 2048}
    assert thinking_of(p, chat("gemini-2.5-pro", reasoning_effort="none")) == {
        "includeThoughts": True,
        "thinkingBudget": 128,
    }
    assert thinking_of(p, chat("gemini-2.5-pro", reasoning_effort="high")) == {
        "includeThoughts": True,
        "thinkingBudget": 24576,  # not overridden: the default
    }
    assert thinking_of(p, chat("gemini-2.5-flash", reasoning_effort="minimal")) == {"thinkingBudget": 0}
    assert thinking_of(p, chat("gemini-3.1-pro-preview")) == {
        "includeThoughts": True,
        "thinkingLevel": "medium",
    }
    assert thinking_of(p, chat("gemini-3-pro-preview", reasoning_effort="none")) == {
        "includeThoughts": True,
        "thinkingLevel": "low",
    }
    # The default applies only where the model can think; a client's explicit effort is refused.
    assert thinking_of(p, chat("gemini-2.0-flash")) is None
    with pytest.raises(UnsupportedRequest):
        thinking_of(p, chat("gemini-2.0-flash", reasoning_effort="medium"))


def test_family_setting_covers_aliases():
    p = gemini(model="gemini-flash-latest", thinking={"family": "gemini-2.5-flash", "defaultEffort": "low"})
    assert p.settings.thinking.family == "gemini-2.5-flash"
    assert thinking_of(p, chat("gemini-flash-latest")) == {"includeThoughts": True, "thinkingBudget": 1024}
    # A client-chosen model whose id tells its family keeps it.
    assert thinking_of(p, chat("gemini-3-pro-preview")) == {"includeThoughts": True, "thinkingLevel": "low"}


def test_settings_round_trip_in_camel_case():
    settings = {"defaultEffort": "high", "budgets": {"gemini-2.5-pro": {"high": 30000}}}
    p = gemini(thinking=settings)
    dumped = p.settings.model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert dumped["thinking"] == settings
    assert gemini().settings.thinking.default_effort is None


@pytest.mark.parametrize(
    "thinking, extra, match",
    [
        ({"budgets": {"gemini-2.5-pro": {"none": 0}}}, {}, r"0 \(off\)|cannot switch thinking off"),
        ({"budgets": {"gemini-2.5-pro": {"low": 64}}}, {}, "128..32768"),
        ({"budgets": {"gemini-2.5-flash": {"high": 30000}}}, {}, "1..24576"),
        ({"budgets": {"gemini-2.5-flash-lite": {"low": 256}}}, {}, "512..24576"),
        ({"budgets": {"gemini-3-pro": {"low": 1024}}}, {}, "not one of gemini-2.5-pro"),
        ({"budgets": {"gemini-2.5-pro": {"extreme": 1024}}}, {}, "'extreme' is not a reasoning effort"),
        ({"levels": {"gemini-3-pro": {"minimal": "minimal"}}}, {}, "'minimal' is not a thinking level"),
        ({"levels": {"gemini-2.5-pro": {"low": "low"}}}, {}, "not one of gemini-3-pro"),
        ({"defaultEffort": "extreme"}, {}, "defaultEffort"),
        ({"family": "gemini-4"}, {}, "family"),
        ({"defaultEffort": "low"}, {"model": "gemini-2.0-flash"}, "set thinking.family"),
        ({"family": "gemini-3-pro"}, {"model": "gemini-2.5-pro"}, "contradicts"),
        ({"budget": {}}, {}, "budget"),
        ({"budgets": {"gemini-2.5-flash": {"low": True}}}, {}, "valid integer"),
        ({"budgets": {"gemini-2.5-flash": {"low": "1024"}}}, {}, "valid integer"),
    ],
)
@pytest.mark.parametrize("make", [gemini, vertex])
def test_settings_are_validated_at_start_up(make, thinking, extra, match):
    with pytest.raises(ValidationError, match=match):
        make(thinking=thinking, **extra)


def test_a_budget_of_minus_one_is_dynamic_everywhere():
    p = gemini(thinking={"budgets": {name: {"high": -1} for name in ("gemini-2.5-pro", "gemini-2.5-flash")}})
    assert thinking_of(p, chat("gemini-2.5-pro", reasoning_effort="high")) == {
        "includeThoughts": True,
        "thinkingBudget": -1,
    }


# ---- requests: top_k and media types -----------------------------------------------------------


def test_top_k_maps_to_topk():
    assert gemini().translate_request(chat("gemini-2.0-flash", top_k=5), "gemini-2.0-flash")[
        "generationConfig"
    ] == {"topK": 5}


@pytest.mark.parametrize("bad", [0, -1, 2.5, "5", True])
def test_bad_top_k_is_refused(bad):
    with pytest.raises(UnsupportedRequest, match="top_k") as err:
        gemini().translate_request(chat("gemini-2.0-flash", top_k=bad), "gemini-2.0-flash")
    assert err.value.param == "top_k"


def image(url: str) -> dict[str, Any]:
    return chat(
        "gemini-2.5-flash",
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}],
    )


@pytest.mark.parametrize(
    "url, mime",
    [
        ("data:image/jpg;base64,AA==", "image/jpeg"),
        ("data:Image/JPEG;base64,AA==", "image/jpeg"),
        ("data:image/pjpeg;base64,AA==", "image/jpeg"),
        ("data:image/x-png;base64,AA==", "image/png"),
        ("data:image/webp;base64,AA==", "image/webp"),
        ("data:image/heic;base64,AA==", "image/heic"),
        ("data:image/heif;base64,AA==", "image/heif"),
        ("data:application/pdf;base64,AA==", "application/pdf"),
        ("data:audio/x-wav;base64,AA==", "audio/wav"),
        ("data:audio/mp3;base64,AA==", "audio/mp3"),
        ("data:video/mp4;base64,AA==", "video/mp4"),
        ("data:text/plain;base64,AA==", "text/plain"),
    ],
)
def test_inline_media_types_are_normalised(url, mime):
    part = gemini().translate_request(image(url), "gemini-2.5-flash")["contents"][0]["parts"][0]
    assert part == {"inlineData": {"mimeType": mime, "data": "AA=="}}


@pytest.mark.parametrize(
    "url, mime",
    [
        ("https://x.test/a.jpg", "image/jpeg"),
        ("https://x.test/a.JPEG?v=1", "image/jpeg"),
        ("gs://bucket/b.png", "image/png"),
        ("https://x.test/clip.avi", "video/avi"),
        ("https://x.test/talk.wav", "audio/wav"),
        ("https://x.test/talk.aiff", "audio/aiff"),
        ("gs://bucket/feed.xml", "text/xml"),
        ("https://x.test/doc.pdf", "application/pdf"),
        ("https://x.test/render", "image/jpeg"),  # no extension: an image, as before
    ],
)
def test_file_uri_types_are_guessed_and_normalised(url, mime):
    part = gemini().translate_request(image(url), "gemini-2.5-flash")["contents"][0]["parts"][0]
    assert part == {"fileData": {"mimeType": mime, "fileUri": url}}


@pytest.mark.parametrize(
    "url, mime",
    [
        ("data:image/gif;base64,R0lG", "image/gif"),
        ("data:image/svg+xml;base64,PHN2", "image/svg+xml"),
        ("data:application/zip;base64,UEs=", "application/zip"),
        ("https://x.test/anim.gif", "image/gif"),
        ("gs://bucket/pic.bmp", "image/bmp"),
    ],
)
def test_media_gemini_cannot_read_is_refused(url, mime):
    with pytest.raises(UnsupportedRequest, match=re.escape(f"Gemini does not accept {mime};")) as err:
        gemini().translate_request(image(url), "gemini-2.5-flash")
    assert err.value.param == "messages[0].content[0]"


# ---- responses -------------------------------------------------------------------------------------


def test_thought_and_text():
    out = gemini().translate_response(golden("gemini", "response_thinking_text.in.json"), "gemini-2.5-flash")
    assert out["choices"][0]["message"] == {
        "role": "assistant",
        "reasoning_content": "**Thinking about colours**",
        "content": "Teal is a blue-green.",
    }
    assert out["usage"]["completion_tokens_details"] == {"reasoning_tokens": 20}
    assert out["usage"]["completion_tokens"] == 26  # candidates + thoughts, as documented


def test_thought_and_function_call():
    out = gemini().translate_response(golden("gemini", "response_thinking_tools.in.json"), "gemini-2.5-pro")
    message = out["choices"][0]["message"]
    assert (
        message["reasoning_content"]
        == "**Choosing a tool**\n\nThe weather needs a lookup. Paris first, then Rome."
    )
    assert message["content"] is None
    assert [c["function"]["arguments"] for c in message["tool_calls"]] == [
        '{"city":"Paris"}',
        '{"city":"Rome"}',
    ]
    assert message["tool_calls"][0]["extra_content"] == {"google": {"thought_signature": "c2lnLXRoaW5r"}}
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert out["usage"] == {
        "prompt_tokens": 40,
        "completion_tokens": 75,
        "total_tokens": 115,
        "completion_tokens_details": {"reasoning_tokens": 57},
    }
    sdk = oai.ChatCompletion.model_validate(out)
    assert sdk.choices[0].message.model_dump()["reasoning_content"] == message["reasoning_content"]


def test_each_candidate_has_its_own_reasoning():
    out = gemini().translate_response(golden("gemini", "response_thinking_n2.in.json"), "gemini-3-flash")
    assert [c["message"].get("reasoning_content") for c in out["choices"]] == [
        "Red pairs with meat.",
        "Tea is lighter.",
        None,
    ]
    assert [c["message"]["content"] for c in out["choices"]] == [
        "Red wine.",
        "Green tea.",
        "No thoughts here.",
    ]


# ---- streams ---------------------------------------------------------------------------------------

STREAM_BYTES = {
    name: golden("gemini", f"{name}.sse")
    for name in ["stream_thinking_text", "stream_thinking_tools", "stream_thinking_n2"]
}


def test_stream_thoughts_come_first_then_text_then_usage():
    out = stream_out(gemini(), STREAM_BYTES["stream_thinking_text"])
    deltas = [c["choices"][0]["delta"] for c in out[:-1] if c["choices"]]
    assert deltas[:4] == [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "**Weighing the colours**\n\n"},
        {"reasoning_content": "Teal sits between blue and green."},
        {"content": "Teal is "},
    ]
    assert joined(out, "content") == "Teal is a blue-green — wörth knowing."
    assert out[-2]["choices"] == [] and out[-2]["usage"] == {
        "prompt_tokens": 8,
        "completion_tokens": 21,
        "total_tokens": 29,
        "completion_tokens_details": {"reasoning_tokens": 14},
    }


def test_stream_thoughts_before_a_signed_call_in_one_event():
    out = stream_out(gemini(), STREAM_BYTES["stream_thinking_tools"])
    deltas = [c["choices"][0]["delta"] for c in out[:-1] if c["choices"]]
    kinds = [next(iter(d)) for d in deltas[1:] if d]
    assert kinds == ["reasoning_content", "content", "tool_calls"]
    assert deltas[1] == {"reasoning_content": "I need the forecast. Call the tool."}
    call = deltas[3]["tool_calls"][0]
    assert call["extra_content"] == {"google": {"thought_signature": "c2lnLWdlbWluaTM="}}
    assert out[-2]["usage"]["completion_tokens_details"] == {"reasoning_tokens": 9}


def test_stream_candidates_keep_their_own_reasoning():
    out = stream_out(gemini(), STREAM_BYTES["stream_thinking_n2"])
    assert (joined(out, "reasoning_content", 0), joined(out, "content", 0)) == ("Wine?", "Red wine.")
    assert (joined(out, "reasoning_content", 1), joined(out, "content", 1)) == ("Tea? Lighter.", "Green tea")


# ---- Vertex AI, through its own provider -----------------------------------------------------------

VERTEX_STREAM = golden("vertex-ai", "stream_thinking_text.sse")


def test_vertex_request_with_backend_settings():
    p = vertex(thinking={"defaultEffort": "high", "budgets": {"gemini-2.5-flash": {"high": 16384}}})
    req = golden("vertex-ai", "request_thinking.in.json")
    out = p.translate_request(req, req["model"])
    assert out["generationConfig"] == {
        "topK": 20,
        "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 16384},
    }
    assert out["contents"][1] == {"role": "model", "parts": [{"text": "Two orders."}]}
    assert out["contents"][2]["parts"][1] == {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}}
    # The same body as the Gemini API with the same settings.
    same = gemini(thinking={"defaultEffort": "high", "budgets": {"gemini-2.5-flash": {"high": 16384}}})
    assert out == same.translate_request(req, req["model"])


def test_vertex_response_reasoning():
    out = vertex().translate_response(
        golden("vertex-ai", "response_thinking_text.in.json"), "gemini-2.5-flash"
    )
    assert out["choices"][0]["message"]["reasoning_content"] == "Two orders, one shipped."
    assert out["usage"]["completion_tokens_details"] == {"reasoning_tokens": 25}
    assert sdk_completion(out) == out


def test_vertex_stream_reasoning_and_usage():
    out = stream_out(vertex(), VERTEX_STREAM)
    assert joined(out, "reasoning_content") == "Look up A-17. It shipped."
    assert joined(out, "content") == "A-17 has shipped."
    assert [c["usage"] for c in out[:-1] if "usage" in c] == [
        {
            "prompt_tokens": 7,
            "completion_tokens": 25,
            "total_tokens": 32,
            "completion_tokens_details": {"reasoning_tokens": 21},
        }
    ]


def test_vertex_refuses_like_gemini():
    with pytest.raises(UnsupportedRequest, match="cannot switch thinking off"):
        vertex().translate_request(chat("gemini-2.5-pro", reasoning_effort="none"), "gemini-2.5-pro")


# ---- the mock ----------------------------------------------------------------------------------------


def matched(dialect: GeminiDialect, path: str) -> dict[str, str]:
    params = dialect.match("POST", path)
    assert params is not None, path
    return params


def gemini_path(model: str, stream: bool) -> str:
    return f"/v1beta/models/{model}:" + ("streamGenerateContent" if stream else "generateContent")


CASES = [
    # (provider, dialect, path of a model)
    pytest.param(gemini, GeminiDialect, gemini_path, id="gemini"),
    pytest.param(
        vertex,
        VertexAIDialect,
        lambda m, s: VERTEX_BASE + m + (":streamGenerateContent" if s else ":generateContent"),
        id="vertex",
    ),
]


@pytest.mark.parametrize("make, dialect_cls, path", CASES)
@pytest.mark.parametrize("model, effort", [("gemini-2.5-pro", "low"), ("gemini-3-flash-preview", "minimal")])
def test_mock_json_round_trip(make, dialect_cls, path, model, effort):
    provider, dialect = make(), dialect_cls()
    req = chat(model, reasoning_effort=effort, n=2)
    mreq, plan = mock_round_trip(provider, dialect, path(model, False), req, {})
    out = provider.translate_response(dialect.render_json(plan, mreq), model)
    how = "budget 1024" if model == "gemini-2.5-pro" else "level minimal"
    thought = f"Mock thoughts ({how}): work out the answer, then give it."
    assert [c["message"]["reasoning_content"] for c in out["choices"]] == [thought, thought]
    assert [c["message"]["content"] for c in out["choices"]] == [plan.text, plan.text]
    words = len(thought.split())
    assert out["usage"]["completion_tokens_details"] == {"reasoning_tokens": 2 * words}
    assert out["usage"]["completion_tokens"] == 2 * (plan.completion_tokens + words)
    assert sdk_completion(out) == out


@pytest.mark.parametrize("make, dialect_cls, path", CASES)
def test_mock_stream_round_trip(make, dialect_cls, path):
    provider, dialect = make(), dialect_cls()
    model = "gemini-2.5-flash"
    req = chat(model, reasoning_effort="medium", stream=True)
    mreq, plan = mock_round_trip(provider, dialect, path(model, True), req, {"alt": "sse"})
    out = chunks_of(transcode(provider, model, b"".join(dialect.render_stream(plan, mreq))))
    assert_valid_openai_stream(out)
    thought = "Mock thoughts (budget 8192): work out the answer, then give it."
    assert joined(out, "reasoning_content") == thought
    assert joined(out, "content") == plan.text
    deltas = [next(iter(d)) for c in out[:-1] if c.get("choices") for d in [c["choices"][0]["delta"]] if d]
    first_content = deltas.index("content", 1)
    assert set(deltas[1:first_content]) == {"reasoning_content"}
    assert "reasoning_content" not in deltas[first_content:]
    usage = [c["usage"] for c in out[:-1] if "usage" in c]
    words = len(thought.split())
    assert usage == [
        {
            "prompt_tokens": plan.prompt_tokens,
            "completion_tokens": plan.completion_tokens + words,
            "total_tokens": plan.prompt_tokens + plan.completion_tokens + words,
            "completion_tokens_details": {"reasoning_tokens": words},
        }
    ]


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_mock_signs_calls_and_the_signature_comes_back():
    provider, dialect = gemini(), GeminiDialect()
    model = "gemini-3-pro-preview"
    req = chat(model, reasoning_effort="high", tools=[WEATHER])
    mreq, plan = mock_round_trip(provider, dialect, gemini_path(model, False), req, {})
    out = provider.translate_response(dialect.render_json(plan, mreq), model)
    message = out["choices"][0]["message"]
    assert message["reasoning_content"].startswith("Mock thoughts (level high)")
    call = message["tool_calls"][0]
    signature = call["extra_content"]["google"]["thought_signature"]
    # The client appends the message (reasoning included) and the tool result, as SDKs do.
    history = {
        **req,
        "messages": [
            *req["messages"],
            message,
            {"role": "tool", "tool_call_id": call["id"], "content": "sunny"},
        ],
    }
    body = provider.translate_request(history, model)
    assert body["contents"][1]["parts"] == [
        {
            "functionCall": {"name": "get_weather", "args": {"city": "mock-city"}},
            "thoughtSignature": signature,
        }
    ]
    mreq, plan = mock_round_trip(provider, dialect, gemini_path(model, False), history, {})
    assert plan.text == 'The tool returned: {"content":"sunny"}'


def test_mock_without_include_thoughts_or_with_thinking_off_has_no_thoughts():
    dialect = GeminiDialect()
    contents = [{"role": "user", "parts": [{"text": "hi"}]}]
    for model, config in [
        ("gemini-2.5-flash", {"thinkingBudget": 0, "includeThoughts": True}),
        ("gemini-2.5-pro", {"thinkingBudget": 1024}),
        ("gemini-2.5-flash-lite", {"includeThoughts": True}),  # Flash-Lite does not think by default
    ]:
        body = {"contents": contents, "generationConfig": {"thinkingConfig": config}}
        mreq = dialect.parse(body, matched(dialect, gemini_path(model, False)), {})
        doc = dialect.render_json(engine.plan(mreq), mreq)
        assert all(not p.get("thought") for p in doc["candidates"][0]["content"]["parts"]), model
        assert "thoughtsTokenCount" not in doc["usageMetadata"], model


@pytest.mark.parametrize(
    "model, config, message",
    [
        ("gemini-2.5-pro", {"thinkingBudget": 0}, "only works in thinking mode"),
        ("gemini-2.5-pro", {"thinkingBudget": 64}, "between 128 and 32768"),
        ("gemini-2.5-flash", {"thinkingBudget": 30000}, "between 1 and 24576"),
        ("gemini-2.5-flash-lite", {"thinkingBudget": 100}, "between 512 and 24576"),
        ("gemini-3-pro-preview", {"thinkingBudget": 0}, "only works in thinking mode"),
        ("gemini-2.5-flash", {"thinkingLevel": "low"}, "Thinking level is not supported"),
        ("gemini-3-pro-preview", {"thinkingLevel": "minimal"}, "minimal is not supported"),
        ("gemini-3-pro-preview", {"thinkingLevel": "medium"}, "medium is not supported"),
        ("gemini-3-flash-preview", {"thinkingLevel": "low", "thinkingBudget": 1024}, "only one of"),
        ("gemini-2.5-flash", {"thinkingBudget": "lots"}, "thinking_budget"),
        ("gemini-2.5-flash", {"thinking_effort": "low"}, "Unknown name"),
    ],
)
@pytest.mark.parametrize("dialect_cls", [GeminiDialect, VertexAIDialect])
def test_mock_rejects_thinking_settings_google_rejects(dialect_cls, model, config, message):
    dialect = dialect_cls()
    path = (
        gemini_path(model, False)
        if dialect_cls is GeminiDialect
        else VERTEX_BASE + model + ":generateContent"
    )
    body = {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"thinkingConfig": config}}
    with pytest.raises(BadRequest, match=message):
        dialect.parse(body, matched(dialect, path), {})


@pytest.mark.parametrize(
    "model, config",
    [
        ("gemini-2.5-pro", {"thinkingBudget": -1, "includeThoughts": True}),
        ("gemini-2.5-flash", {"thinking_budget": 0}),
        ("gemini-2.5-flash-lite", {"thinkingBudget": 512}),
        ("gemini-3.1-pro-preview", {"thinkingLevel": "medium"}),
        ("gemini-3-flash-preview", {"thinkingLevel": "MINIMAL"}),
        ("gemini-3-pro-preview", {"thinkingBudget": 2048}),
    ],
)
def test_mock_accepts_what_google_accepts(model, config):
    dialect = GeminiDialect()
    body = {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"thinkingConfig": config}}
    dialect.parse(body, matched(dialect, gemini_path(model, False)), {})


@pytest.mark.parametrize("effort", list(EFFORT_TABLE))
@pytest.mark.parametrize("model", MODELS)
def test_mock_accepts_every_default_translation(model, effort):
    """Every default the gateway sends is within what the mock (Google's documented limits) takes."""
    try:
        body = gemini().translate_request(chat(model, reasoning_effort=effort), model)
    except UnsupportedRequest:
        return  # refused before it is sent
    dialect = GeminiDialect()
    dialect.parse(orjson.loads(orjson.dumps(body)), matched(dialect, gemini_path(model, False)), {})


async def test_mock_server_answers_bad_thinking_with_googles_400():
    from aiohttp.test_utils import TestClient, TestServer

    from extproc.mock.dialects import discover
    from extproc.mock.server import MockState, build_app

    app = build_app(MockState(dialects=discover(["gemini"])))
    body = {
        "contents": [{"parts": [{"text": "x"}]}],
        "generationConfig": {"thinkingConfig": {"thinkingBudget": 0}},
    }
    async with TestClient(TestServer(app)) as client:
        resp = await client.post(
            gemini_path("gemini-2.5-pro", False), json=body, headers={"x-goog-api-key": "k"}
        )
        assert resp.status == 400
        assert await resp.json() == {
            "error": {
                "code": 400,
                "message": "Budget 0 is invalid. This model only works in thinking mode.",
                "status": "INVALID_ARGUMENT",
            }
        }


# ---- docs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["gemini.md", "vertex-ai.md"])
def test_docs_have_a_reasoning_section(page):
    doc = (ROOT / "docs" / "providers" / page).read_text()
    assert "Reasoning (thinking)" in doc


def test_gemini_doc_table_matches_the_defaults():
    doc = (ROOT / "docs" / "providers" / "gemini.md").read_text()
    for effort, row in EFFORT_TABLE.items():
        cells = " | ".join("400" if v is None else f"`{v}`" for v in row)
        assert f"| `{effort}` | {cells} |" in doc, effort
