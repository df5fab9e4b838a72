"""Where the guards read one text and a provider or client got another (an outside audit,
2026-12-01): tool results a translator decodes or joins, stream events with an error
beside their choices, a streamed `function_call`'s other fields, and answer list items
that are not objects. Each test failed before its fix."""

from __future__ import annotations

import asyncio
import copy

import orjson
import pytest

from extproc.errors import GatewayError
from extproc.guarded_stream import response_stream
from extproc.guards.config import RequestGuardConfig, ResponseGuardConfig
from extproc.guards.pipeline import RequestGuards, ResponseGuards
from extproc.providers.registry import PROVIDERS
from extproc.stream_transcoder import StreamTranscoder

CARD, EMAIL = "4111 1111 1111 1111", "jane.doe@example.com"
BUILTINS = ["CREDIT_CARD", "EMAIL"]


def request_guards(action: str) -> RequestGuards:
    config = {"regex": {"action": action, "builtins": BUILTINS}}
    return RequestGuards(RequestGuardConfig.model_validate(config), "r")


def response_guards(action: str) -> ResponseGuards:
    config = {"regex": {"action": action, "builtins": BUILTINS}}
    return ResponseGuards(ResponseGuardConfig.model_validate(config), "r")


def provider(name: str):
    cls = PROVIDERS[name]
    settings = {"provider": name, "model": "m"}
    if name == "azure-openai":
        settings.update({"deployment": "d", "apiVersion": "2024-10-21"})
    if name == "vertex-ai":
        settings["project"] = "p"
    return cls(cls.settings_model.model_validate(settings))


def leaks(doc) -> bool:
    text = doc.decode() if isinstance(doc, bytes) else orjson.dumps(doc).decode()
    return "4111" in text or "jane.doe" in text


def tool_result(content) -> dict:
    return {
        "model": "m",
        "messages": [
            {"role": "user", "content": "look me up"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": content},
        ],
        "tools": [{"type": "function", "function": {"name": "lookup"}}],
    }


# ---- tool results as the translators send them ------------------------------------------
ESCAPED = '{"email": "jane.doe\\u0040example.com", "card": "\\u0034111 1111 1111 1111"}'
SPLIT = [
    [{"type": "text", "text": "card 4111 1111"}, {"type": "text", "text": " 1111 1111"}],
    [{"type": "text", "text": "mail jane.doe@"}, {"type": "text", "text": "example.com"}],
]


@pytest.mark.parametrize("content", [ESCAPED, *SPLIT], ids=["json escapes", "card split", "email split"])
def test_a_tool_result_the_translator_decodes_or_joins_is_rejected(content):
    with pytest.raises(GatewayError) as err:
        asyncio.run(request_guards("REJECT").apply(tool_result(content), {}))
    assert err.value.status == 403


@pytest.mark.parametrize("name", ["gemini", "vertex-ai", "anthropic", "openai", "mistral"])
@pytest.mark.parametrize("content", [ESCAPED, *SPLIT], ids=["json escapes", "card split", "email split"])
def test_a_tool_result_is_masked_in_what_each_provider_gets(name, content):
    req = tool_result(copy.deepcopy(content))
    assert asyncio.run(request_guards("MASK").apply(req, {}))
    sent = provider(name).translate_request(req, "m")
    assert not leaks(sent), sent


def test_a_tool_results_text_parts_are_joined_in_the_first_ones_place():
    """Non-text parts stay where they were; the joined text is what Anthropic and Gemini
    send anyway, and what the guards read."""
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    req = tool_result([{"type": "text", "text": "a"}, image, {"type": "text", "text": "b"}])
    asyncio.run(request_guards("MASK").apply(req, {}))
    assert req["messages"][2]["content"] == [{"type": "text", "text": "ab"}, image]
    cache = {"type": "ephemeral"}
    req = tool_result([{"type": "text", "text": "a", "cache_control": cache}, {"type": "text", "text": "b"}])
    asyncio.run(request_guards("MASK").apply(req, {}))
    assert req["messages"][2]["content"] == [{"type": "text", "text": "ab", "cache_control": cache}]


@pytest.mark.parametrize("content", [ESCAPED, *SPLIT], ids=["json escapes", "card split", "email split"])
def test_the_legacy_function_role_is_read_as_a_tool_result(content):
    """Gemini treats `role: function` as a tool result too (joined, JSON decoded)."""
    req = tool_result(copy.deepcopy(content))
    req["messages"][2] = {"role": "function", "name": "lookup", "content": req["messages"][2]["content"]}
    with pytest.raises(GatewayError):
        asyncio.run(request_guards("REJECT").apply(copy.deepcopy(req), {}))
    assert asyncio.run(request_guards("MASK").apply(req, {}))
    assert not leaks(provider("gemini").translate_request(req, "m"))


@pytest.mark.parametrize("content", ['{"ssn": "123-45-6789"}', r'{"ssn": "123\u002d45-6789", "n": "\u00e9"}'])
def test_a_json_tool_result_keeps_its_context_for_custom_patterns(content):
    """Read whole (escapes written out), not token by token: `ssn: …` still matches."""
    config = {
        "regex": {"action": "REJECT", "matches": [{"pattern": r"ssn\W+\d{3}-\d{2}-\d{4}", "name": "S"}]}
    }
    guards = RequestGuards(RequestGuardConfig.model_validate(config), "r")
    with pytest.raises(GatewayError):
        asyncio.run(guards.apply(tool_result(content), {}))


def test_a_user_messages_json_text_is_still_scanned_as_text():
    """Only a tool's result is read as JSON tokens (Gemini decodes it); other JSON-looking
    content stays one text, scanned whole."""
    req = {
        "model": "m",
        "messages": [{"role": "user", "content": '{"card": "4111 1111", "more": "1111 1111"}'}],
    }
    assert not asyncio.run(request_guards("REJECT").apply(req, {}))
    req = {"model": "m", "messages": [{"role": "user", "content": f'{{"card": "{CARD}"}}'}]}
    with pytest.raises(GatewayError):
        asyncio.run(request_guards("REJECT").apply(req, {}))


# ---- answers ----------------------------------------------------------------------------
def answer(message: dict) -> dict:
    return {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", **message}}],
    }


@pytest.mark.parametrize("field", ["tool_calls", "thinking_blocks"])
def test_answer_list_items_that_are_not_objects_are_still_guarded(field):
    secret = f"card {CARD} mail {EMAIL}"
    with pytest.raises(GatewayError):
        asyncio.run(response_guards("REJECT").apply(answer({"content": "ok", field: [secret]}), {}))
    doc = answer({"content": "ok", field: [secret, [secret]]})
    assert asyncio.run(response_guards("MASK").apply(doc, {}))
    assert not leaks(doc), doc


# ---- streams ----------------------------------------------------------------------------
def chunk(choices: list, **extra) -> dict:
    return {"id": "c1", "object": "chat.completion.chunk", "model": "m", "choices": choices, **extra}


STOP = chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}])


def streamed(action: str, events: list) -> bytes:
    stream = response_stream("r", response_guards(action), False, {})
    raw = b"".join(b"data: " + (e if isinstance(e, bytes) else orjson.dumps(e)) + b"\n\n" for e in events)
    return asyncio.run(stream.feed(raw, True))


@pytest.mark.parametrize(
    "choices", [[], [{"index": 0, "delta": {"content": "ok"}}]], ids=["no choices", "a choice"]
)
@pytest.mark.parametrize("action", ["MASK", "REJECT"])
def test_an_error_beside_a_streamed_choice_is_guarded(choices, action):
    error = {"message": f"Invalid value 'card {CARD} mail {EMAIL}'"}
    out = streamed(action, [chunk(choices, error=error), STOP, b"[DONE]"])
    assert not leaks(out), out  # masked, or (with held text) dropped with its event's extras
    assert action == "MASK" or b"content_policy" in out


def test_azure_keeps_such_an_error_and_it_is_guarded_there_too():
    transcoder = StreamTranscoder(provider("azure-openai").stream_translator("m"))
    event = {"id": "c1", "model": "m", "created": 1, "choices": [{"index": 0, "delta": {"content": "ok"}}]}
    raw = b"data: " + orjson.dumps({**event, "error": {"message": EMAIL}}) + b"\n\ndata: [DONE]\n\n"
    out = asyncio.run(
        response_stream("r", response_guards("MASK"), False, {}).feed(transcoder.feed(raw, True), True)
    )
    assert not leaks(out) and b"<EMAIL" in out, out


@pytest.mark.parametrize("key", ["index", "id"])
def test_a_streamed_function_calls_other_fields_are_guarded(key):
    """`tool_calls[].id` is a provider's id, not guarded; the legacy `function_call` has no
    id or index, so anything there is scanned."""
    event = chunk([{"index": 0, "delta": {"function_call": {"name": "f", "arguments": "{}", key: EMAIL}}}])
    out = streamed("REJECT", [event, STOP, b"[DONE]"])
    assert not leaks(out) and b"content_policy" in out, out


# ---- audio output -----------------------------------------------------------------------
def route_with(response: dict | None):
    from types import SimpleNamespace

    guards = ResponseGuards(ResponseGuardConfig.model_validate(response), "r") if response else None
    return SimpleNamespace(guards=SimpleNamespace(response=guards))


MASKING = {"regex": {"action": "MASK", "builtins": BUILTINS}}
WEBHOOK = {"webhook": {"url": "http://127.0.0.1:9"}}
REJECTING = {"regex": {"action": "REJECT", "builtins": BUILTINS}}


@pytest.mark.parametrize("response", [MASKING, WEBHOOK], ids=["regex MASK", "webhook"])
@pytest.mark.parametrize(
    "ask",
    [{"modalities": ["text", "audio"]}, {"audio": {"voice": "alloy", "format": "wav"}}],
    ids=["modalities", "audio"],
)
def test_audio_output_is_refused_where_answers_are_masked(response, ask):
    """The transcript would be masked while the audio still says every word."""
    from extproc.route_request import check_output_guardable

    with pytest.raises(GatewayError) as err:
        check_output_guardable({"model": "m", "messages": [], **ask}, route_with(response))
    assert err.value.status == 400 and err.value.code == "audio_output_unguardable"


@pytest.mark.parametrize("response", [REJECTING, None], ids=["regex REJECT", "no response guards"])
def test_audio_output_passes_where_nothing_is_masked(response):
    from extproc.route_request import check_output_guardable

    check_output_guardable({"model": "m", "messages": [], "modalities": ["audio"]}, route_with(response))
    check_output_guardable({"model": "m", "messages": [], "modalities": ["text"]}, route_with(MASKING))


def test_a_tool_result_in_prose_is_masked_as_written():
    """Only a JSON result is read as tokens; prose keeps its backslashes when masked."""
    req = tool_result(f"saved C:\\u0041dir\\new.txt for {EMAIL}")
    assert asyncio.run(request_guards("MASK").apply(req, {}))
    assert req["messages"][2]["content"] == "saved C:\\u0041dir\\new.txt for <EMAIL>"


def test_streamed_audio_is_refused_on_any_guarded_route():
    """A stream's audio leaves as it comes; its transcript is read after."""
    from extproc.route_request import check_output_guardable

    with pytest.raises(GatewayError) as err:
        check_output_guardable({"model": "m", "stream": True, "modalities": ["audio"]}, route_with(REJECTING))
    assert err.value.code == "audio_output_unguardable"
    check_output_guardable({"model": "m", "stream": True, "modalities": ["audio"]}, route_with(None))
