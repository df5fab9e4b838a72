"""Guards see text wherever it sits (issue 9, item 3): one test per field of the request,
the JSON response and the stream, for MASK and REJECT, and the positions deliberately not
guarded (ids, binary media) left as they are."""

import asyncio
import base64
import copy
import itertools
import json
from typing import Any

import orjson
import pytest

from extproc.errors import GatewayError
from extproc.guarded_stream import response_stream
from extproc.guards.config import RequestGuardConfig, ResponseGuardConfig
from extproc.guards.json_text import EscapeDecoder, LabelQuoter, ValueEnd, decode_escapes
from extproc.guards.pipeline import RequestGuards, ResponseGuards
from extproc.guards.webhook import Verdict
from tests.provider_helpers import chunks_of

EMAIL, CARD = "bob@example.com", "4111 1111 1111 1111"
BUILTINS = ["CREDIT_CARD", "EMAIL"]
IMAGE = "data:image/png;base64," + base64.b64encode(bytes(range(256)) * 2).decode()
AUDIO = base64.b64encode(b"RIFF" + bytes(300)).decode()


def run(coro):
    return asyncio.run(coro)


def request_guards(action="MASK", **extra) -> RequestGuards:
    return RequestGuards(
        RequestGuardConfig.model_validate({"regex": {"action": action, "builtins": BUILTINS}, **extra}), "r"
    )


def response_guards(action="MASK", **extra) -> ResponseGuards:
    return ResponseGuards(
        ResponseGuardConfig.model_validate({"regex": {"action": action, "builtins": BUILTINS}, **extra}), "r"
    )


def base_request(**fields) -> dict:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}], **fields}


def tool(description="look things up", parameters=None, name="lookup") -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": parameters or {"type": "object"},
        },
    }


def call(arguments: str, name="lookup", id_="call_1") -> dict:
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": arguments}}


def with_messages(*messages) -> dict:
    return base_request(messages=[{"role": "user", "content": "hello"}, *messages])


# Every request field the issue lists, with the value planted in it.
REQUEST_CASES = {
    "tool-call arguments": with_messages(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [call(orjson.dumps({"to": f"mail {EMAIL}"}).decode())],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sent"},
    ),
    "tool result": with_messages(
        {"role": "assistant", "content": None, "tool_calls": [call("{}")]},
        {"role": "tool", "tool_call_id": "call_1", "content": f"owner {EMAIL}"},
    ),
    "tool description": base_request(tools=[tool(description=f"mails {EMAIL}")]),
    "tool name": base_request(tools=[tool(name=EMAIL)]),
    "tool parameter description": base_request(
        tools=[
            tool(
                parameters={
                    "type": "object",
                    "properties": {"to": {"type": "string", "description": f"e.g. {EMAIL}"}},
                }
            )
        ]
    ),
    "tool parameter enum": base_request(
        tools=[
            tool(parameters={"type": "object", "properties": {"card": {"type": "string", "enum": [CARD]}}})
        ]
    ),
    "tool parameter default": base_request(
        tools=[
            tool(parameters={"type": "object", "properties": {"to": {"type": "string", "default": EMAIL}}})
        ]
    ),
    "tool parameter name": base_request(
        tools=[
            tool(
                parameters={"type": "object", "properties": {EMAIL: {"type": "string"}}, "required": [EMAIL]}
            )
        ]
    ),
    "legacy functions": base_request(functions=[{"name": "f", "description": f"card {CARD}"}]),
    "legacy function_call": base_request(function_call={"name": EMAIL}),
    "legacy message function_call": with_messages(
        {
            "role": "assistant",
            "content": None,
            "function_call": {"name": "f", "arguments": orjson.dumps({"card": CARD}).decode()},
        }
    ),
    "tool_choice": base_request(
        tools=[tool()], tool_choice={"type": "function", "function": {"name": EMAIL}}
    ),
    "stop (string)": base_request(stop=EMAIL),
    "stop (list)": base_request(stop=["\n\n", f"card {CARD}"]),
    "user": base_request(user=EMAIL),
    "metadata value": base_request(metadata={"customer": EMAIL}),
    "metadata key": base_request(metadata={EMAIL: "vip"}),
    "prediction (string)": base_request(prediction={"type": "content", "content": f"write {EMAIL}"}),
    "prediction (parts)": base_request(
        prediction={"type": "content", "content": [{"type": "text", "text": CARD}]}
    ),
    "response_format description": base_request(
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "contact", "description": f"like {EMAIL}", "schema": {"type": "object"}},
        }
    ),
    "response_format schema": base_request(
        response_format={
            "type": "json_schema",
            "json_schema": {
                "name": "contact",
                "schema": {"type": "object", "properties": {"to": {"type": "string", "examples": [EMAIL]}}},
            },
        }
    ),
    "message name": base_request(messages=[{"role": "user", "name": EMAIL, "content": "hi"}]),
    "image URL": base_request(
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image_url",
                        "image_url": {"url": f"https://img.example.org/p.png?owner={EMAIL}"},
                    }
                ],
            }
        ]
    ),
    "content part with other keys": base_request(
        messages=[{"role": "user", "content": [{"type": "input_text", "input_text": f"card {CARD}"}]}]
    ),
    "unknown message field": base_request(messages=[{"role": "user", "content": "hi", "note": EMAIL}]),
    "unknown request field": base_request(guided_choice=["yes", f"mail {EMAIL}"]),
    "reasoning_content echoed back": with_messages(
        {"role": "assistant", "content": "ok", "reasoning_content": f"the user is {EMAIL}"}
    ),
    "thinking block text echoed back": with_messages(
        {
            "role": "assistant",
            "content": "ok",
            "thinking_blocks": [{"type": "thinking", "thinking": f"card {CARD}", "signature": "sig"}],
        }
    ),
    "short non-base64 audio data": base_request(
        messages=[
            {
                "role": "user",
                "content": [{"type": "input_audio", "input_audio": {"data": EMAIL, "format": "wav"}}],
            }
        ]
    ),
}


def strings(node) -> list[str]:
    """Every string and key, and the strings inside JSON held in strings, decoded."""
    out, stack = [], [node]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            out += [k for k in v if isinstance(k, str)]
            stack += list(v.values())
        elif isinstance(v, list):
            stack += v
        elif isinstance(v, str):
            out.append(v)
            try:
                stack.append(orjson.loads(v))
            except orjson.JSONDecodeError:
                pass
        elif isinstance(v, int) and not isinstance(v, bool):
            out.append(str(v))
    return out


def leaks(doc) -> list[str]:
    return [s for s in strings(doc) if EMAIL in s or CARD in s or CARD.replace(" ", "") in s]


@pytest.mark.parametrize("case", sorted(REQUEST_CASES))
def test_request_field_is_masked(case):
    req = copy.deepcopy(REQUEST_CASES[case])
    assert leaks(req), "the case plants a value"
    assert run(request_guards().apply(req, {}))
    assert not leaks(req)
    assert "<EMAIL>" in orjson.dumps(req).decode() or "<CREDIT_CARD>" in orjson.dumps(req).decode()


@pytest.mark.parametrize("case", sorted(REQUEST_CASES))
def test_request_field_is_rejected(case):
    with pytest.raises(GatewayError) as exc:
        run(request_guards("REJECT").apply(copy.deepcopy(REQUEST_CASES[case]), {}))
    assert exc.value.code == "content_policy_violation"


# ---- tool-call arguments: valid JSON stays valid JSON -----------------------------------------


def guard_arguments(arguments: str) -> str:
    req = with_messages({"role": "assistant", "content": None, "tool_calls": [call(arguments)]})
    run(request_guards().apply(req, {}))
    return req["messages"][1]["tool_calls"][0]["function"]["arguments"]


@pytest.mark.parametrize(
    "arguments, expected",
    [
        ('{"to": "bob@example.com", "n": 3}', {"to": "<EMAIL>", "n": 3}),
        ('{"card": 4111111111111111}', {"card": "<CREDIT_CARD>"}),  # a number: now a string
        ('{"to": "bob\\u0040example.com"}', {"to": "<EMAIL>"}),  # hidden by an escape
        ('{"bob@example.com": true}', {"<EMAIL>": True}),  # a key
        ('{"a": ["x", {"b": "card 4111-1111-1111-1111 ok"}]}', {"a": ["x", {"b": "card <CREDIT_CARD> ok"}]}),
        (
            '{"n": 123456789012345678901234567890, "to": "bob@example.com"}',
            {"n": 123456789012345678901234567890, "to": "<EMAIL>"},
        ),
    ],
)
def test_json_arguments_are_masked_and_stay_valid(arguments, expected):
    assert json.loads(guard_arguments(arguments)) == expected  # json: exact big integers


def test_untouched_arguments_keep_every_byte():
    arguments = '{ "q" : "caf\\u00e9",\n  "n": 1.50 }'
    assert guard_arguments(arguments) == arguments


def test_arguments_that_are_not_json_are_masked_as_text():
    assert guard_arguments("mail bob@example.com please") == "mail <EMAIL> please"
    assert guard_arguments('{"to": "bob\\u0040example.com"') == '{"to": "<EMAIL>"'  # cut short


def test_arguments_nested_past_the_json_parsers_limit_are_still_guarded():
    deep = "[" * 3000 + '"bob\\u0040example.com", 4111111111111111' + "]" * 3000
    out = guard_arguments(deep)
    assert "bob" not in out and "4111" not in out
    assert out.count('"<CREDIT_CARD>"') == 1


# ---- positions deliberately not guarded ---------------------------------------------------------


def test_ids_model_and_binary_media_are_left_alone():
    odd_id = "call_2125550198_bob@example.com"
    req = base_request(
        model="gpt-4o-2024-08-06",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": IMAGE}},
                    {"type": "input_audio", "input_audio": {"data": AUDIO, "format": "wav"}},
                    {"type": "file", "file": {"file_id": odd_id}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [call("{}", id_=odd_id)],
                "audio": {"id": odd_id},
            },
            {"role": "tool", "tool_call_id": odd_id, "content": "done"},
        ],
    )
    before = copy.deepcopy(req)
    assert not run(request_guards("REJECT").apply(req, {}))
    assert req == before


# Provider-signed reasoning: the signature and redacted data are verified by the provider
# when they come back, so they are never rewritten (it would only break the conversation).
SIGNED_BLOCKS = [
    {"type": "thinking", "thinking": "fine", "signature": "sig_bob@example.com_4111111111111111"},
    {"type": "redacted_thinking", "data": f"{EMAIL}/{CARD}"},
]


def test_thinking_signatures_and_redacted_data_are_left_alone():
    req = with_messages({"role": "assistant", "content": "ok", "thinking_blocks": SIGNED_BLOCKS})
    before = copy.deepcopy(req)
    assert not run(request_guards("REJECT").apply(req, {}))
    assert req == before
    completion = completion_with({"thinking_blocks": copy.deepcopy(SIGNED_BLOCKS)})
    before = copy.deepcopy(completion)
    assert not run(response_guards("REJECT").apply(completion, {}))
    assert completion == before


def test_response_ids_model_usage_are_left_alone():
    completion = {
        "id": "chatcmpl-bob@example.com",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "system_fingerprint": "fp_4111111111111111",
        "usage": {"prompt_tokens": 1},
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {
                    "role": "assistant",
                    "content": "ok",
                    "tool_calls": [call("{}", id_="call_bob@example.com")],
                },
            }
        ],
    }
    before = copy.deepcopy(completion)
    assert not run(response_guards("REJECT").apply(completion, {}))
    assert completion == before


# ---- JSON responses -----------------------------------------------------------------------------


def completion_with(message: dict | None = None, **fields) -> dict:
    choice = {
        "index": 0,
        "finish_reason": "stop",
        "message": {"role": "assistant", "content": "ok", **(message or {})},
    }
    choice.update(fields.pop("choice", {}))
    return {"id": "c", "object": "chat.completion", "created": 1, "model": "m", "choices": [choice], **fields}


RESPONSE_CASES = {
    "tool-call arguments": completion_with(
        {"content": None, "tool_calls": [call(orjson.dumps({"card": CARD}).decode())]}
    ),
    "tool-call arguments as a number": completion_with(
        {"content": None, "tool_calls": [call('{"card": 4111111111111111}')]}
    ),
    "tool name": completion_with({"tool_calls": [call("{}", name=EMAIL)]}),
    "function_call": completion_with({"function_call": {"name": "f", "arguments": f'{{"to": "{EMAIL}"}}'}}),
    "annotation": completion_with(
        {
            "annotations": [
                {
                    "type": "url_citation",
                    "url_citation": {
                        "url": f"https://x.example.org/?u={EMAIL}",
                        "title": EMAIL,
                        "start_index": 0,
                        "end_index": 1,
                    },
                }
            ]
        }
    ),
    "audio transcript": completion_with(
        {"audio": {"id": "a1", "data": AUDIO, "transcript": f"mail {EMAIL}"}}
    ),
    "choice field outside message": completion_with(choice={"stop_reason": EMAIL}),
    "reasoning_content": completion_with({"reasoning_content": f"they wrote from {EMAIL}"}),
    "thinking block text": completion_with(
        {"thinking_blocks": [{"type": "thinking", "thinking": f"card {CARD} seen", "signature": "c2ln"}]}
    ),
    "top-level unknown field": completion_with(provider_notes=f"card {CARD}"),
}


@pytest.mark.parametrize("case", sorted(RESPONSE_CASES))
def test_response_field_is_masked(case):
    completion = copy.deepcopy(RESPONSE_CASES[case])
    assert leaks(completion)
    assert run(response_guards().apply(completion, {}))
    assert not leaks(completion)
    for c in completion["choices"][0]["message"].get("tool_calls") or []:
        orjson.loads(c["function"]["arguments"])  # still JSON


@pytest.mark.parametrize("case", sorted(RESPONSE_CASES))
def test_response_field_is_rejected(case):
    with pytest.raises(GatewayError):
        run(response_guards("REJECT").apply(copy.deepcopy(RESPONSE_CASES[case]), {}))


# ---- the webhook and moderation see the new free text --------------------------------------------


def test_webhook_sees_tool_text_and_its_masks_are_written_back():
    guards = RequestGuards(RequestGuardConfig.model_validate({"webhook": {"url": "http://127.0.0.1:9"}}), "r")
    sent = []

    async def check_request(messages, headers):
        sent.extend(messages)
        return Verdict(
            "mask",
            messages=[
                {"role": m["role"], "content": m["content"].replace("secret", "***")} for m in messages
            ],
        )

    assert guards.webhook is not None
    guards.webhook.check_request = check_request  # type: ignore[method-assign]  # a fake webhook
    req = base_request(
        messages=[
            {"role": "user", "content": "a secret"},
            {"role": "assistant", "content": None, "tool_calls": [call('{"q": "secret"}')]},
            {"role": "tool", "tool_call_id": "call_1", "content": "secret result"},
        ],
        tools=[
            tool(
                description="finds secret things",
                parameters={
                    "type": "object",
                    "properties": {"q": {"type": "string", "description": "the secret"}},
                },
            )
        ],
        prediction={"type": "content", "content": "secret"},
        stop=["secret"],
    )
    assert run(guards.apply(req, {}))
    assert sent == [
        # the short tokens first, one per line of one message: names, keys, stop
        {"role": "user", "content": "lookup\nlookup\nq\nsecret"},
        # then the conversation and the other free text, as before
        {"role": "user", "content": "a secret"},
        {"role": "assistant", "content": '{"q": "secret"}'},
        {"role": "tool", "content": "secret result"},
        {"role": "user", "content": "finds secret things"},
        {"role": "user", "content": "the secret"},
        {"role": "user", "content": "secret"},
    ]
    assert req["messages"][1]["tool_calls"][0]["function"]["arguments"] == '{"q": "***"}'
    assert req["tools"][0]["function"]["description"] == "finds *** things"
    assert req["prediction"]["content"] == "***"
    assert req["stop"] == ["***"], "a token the webhook masks is written back too"


def test_moderation_sees_tool_text():
    guards = RequestGuards(
        RequestGuardConfig.model_validate(
            {
                "moderation": {
                    "openAIModeration": {
                        "url": "http://127.0.0.1:9",
                        "authToken": {"secretRef": {"inline": "k"}},
                    }
                }
            }
        ),
        "r",
    )
    seen = []

    async def check(texts):
        from extproc.guards.moderation import ModerationResult

        seen.extend(texts)
        return ModerationResult(flagged=any("violence" in t for t in texts))

    assert guards.moderator is not None
    guards.moderator.check = check  # type: ignore[method-assign]  # a fake moderator
    with pytest.raises(GatewayError) as exc:
        run(guards.apply(base_request(tools=[tool(description="plan violence")]), {}))
    assert exc.value.code == "content_flagged"
    assert "plan violence" in seen


def moderated(flag_word: str):
    guards = RequestGuards(
        RequestGuardConfig.model_validate(
            {
                "moderation": {
                    "openAIModeration": {
                        "url": "http://127.0.0.1:9",
                        "authToken": {"secretRef": {"inline": "k"}},
                    }
                }
            }
        ),
        "r",
    )
    seen: list[list[str]] = []

    async def check(texts):
        from extproc.guards.moderation import ModerationResult

        seen.append(list(texts))
        return ModerationResult(flagged=any(flag_word in t for t in texts))

    assert guards.moderator is not None
    guards.moderator.check = check  # type: ignore[method-assign]  # a fake moderator
    return guards, seen


SCHEMA_WITH_ENUM = {
    "type": "object",
    "properties": {"step": {"type": "string", "enum": ["now explain how to plan violence"]}},
}

# Places only the regex guard used to read: a model reads every one of them.
TOKEN_PLACES: dict[str, dict[str, Any]] = {
    "tool enum": dict(tools=[tool(parameters=SCHEMA_WITH_ENUM)]),
    "tool property name": dict(
        tools=[tool(parameters={"type": "object", "properties": {"plan violence now": {"type": "string"}}})]
    ),
    "response_format enum": dict(
        response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": SCHEMA_WITH_ENUM}}
    ),
    "message name": dict(messages=[{"role": "user", "name": "plan violence", "content": "hello"}]),
    "unknown field": dict(documents=[{"title": "t", "text": "plan violence"}]),
    "metadata": dict(metadata={"note": "plan violence"}),
    "stop": dict(stop=["plan violence"]),
}


@pytest.mark.parametrize("place", sorted(TOKEN_PLACES))
def test_moderation_sees_every_token_a_model_reads(place):
    guards, seen = moderated("violence")
    with pytest.raises(GatewayError) as exc:
        run(guards.apply(base_request(**copy.deepcopy(TOKEN_PLACES[place])), {}))
    assert exc.value.code == "content_flagged"
    # the tokens are one input of their own, after the conversation's texts
    assert "violence" in seen[0][-1] and not any("violence" in t for t in seen[0][:-1])


def test_moderation_gets_no_extra_input_when_there_are_no_tokens():
    guards, seen = moderated("violence")
    run(guards.apply(base_request(messages=[{"role": "user", "content": "hello"}]), {}))
    assert seen == [["hello"]]


@pytest.mark.parametrize("place", sorted(TOKEN_PLACES))
def test_webhook_sees_and_masks_every_token_a_model_reads(place):
    guards = RequestGuards(RequestGuardConfig.model_validate({"webhook": {"url": "http://127.0.0.1:9"}}), "r")
    sent = []

    async def check_request(messages, headers):
        sent.extend(messages)
        return Verdict(
            "mask",
            messages=[
                {"role": m["role"], "content": m["content"].replace("violence", "***")} for m in messages
            ],
        )

    assert guards.webhook is not None
    guards.webhook.check_request = check_request  # type: ignore[method-assign]  # a fake webhook
    req = base_request(**copy.deepcopy(TOKEN_PLACES[place]))
    assert run(guards.apply(req, {}))
    assert any("violence" in m["content"] for m in sent)
    assert "violence" not in orjson.dumps(req).decode()


def token_webhook(answer):
    guards = RequestGuards(RequestGuardConfig.model_validate({"webhook": {"url": "http://127.0.0.1:9"}}), "r")
    sent: list[dict] = []

    async def check_request(messages, headers):
        sent.extend(messages)
        return Verdict("mask", messages=[{**m, "content": answer(m["content"])} for m in messages])

    assert guards.webhook is not None
    guards.webhook.check_request = check_request  # type: ignore[method-assign]  # a fake webhook
    return guards, sent


def test_a_token_with_a_line_break_is_a_webhook_message_of_its_own():
    guards, sent = token_webhook(lambda text: text.replace("bad", "***"))
    req = base_request(stop=["bad one", "bad\ntwo"], metadata={"k": "bad three"})
    assert run(guards.apply(req, {}))
    assert [m["content"] for m in sent[:2]] == ["bad one\nbad three\nk", "bad\ntwo"]
    assert req["stop"] == ["*** one", "***\ntwo"] and req["metadata"] == {"k": "*** three"}


def test_a_webhook_mask_that_changes_the_token_lines_refuses_the_request():
    """Its lines can no longer be matched to the tokens: never passed on half-masked."""
    guards, _ = token_webhook(lambda text: text.replace("\n", " "))
    with pytest.raises(GatewayError) as raised:
        run(guards.apply(base_request(stop=["a", "b"]), {}))
    assert raised.value.status == 502 and raised.value.code == "webhook_unavailable"


def test_moderation_reads_many_tokens_in_inputs_of_bounded_size():
    guards, seen = moderated("violence")
    enum = [f"harmless value number {i}" for i in range(300)] + ["plan violence"]
    tools = [tool(parameters={"type": "object", "properties": {"p": {"type": "string", "enum": enum}}})]
    with pytest.raises(GatewayError):
        run(guards.apply(base_request(tools=tools), {}))
    inputs = seen[0][2:]  # after "hello" and the tool's description
    assert len(inputs) > 1 and all(len(t) <= 2100 for t in inputs)
    assert "\n".join(inputs).split("\n")[-1] == "plan violence"


def test_response_webhook_sees_tool_call_arguments():
    guards = ResponseGuards(
        ResponseGuardConfig.model_validate({"webhook": {"url": "http://127.0.0.1:9"}}), "r"
    )
    sent = []

    async def check_response(choices, headers):
        sent.extend(choices)
        return Verdict("pass")

    assert guards.webhook is not None
    guards.webhook.check_response = check_response  # type: ignore[method-assign]  # a fake webhook
    run(guards.apply(completion_with({"content": None, "tool_calls": [call('{"q": 1}')]}), {}))
    assert sent == [{"message": {"role": "assistant", "content": '{"q": 1}'}}]


# ---- streams ------------------------------------------------------------------------------------

ENV = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}


def chunk(delta, finish=None, **extra) -> bytes:
    return (
        b"data: "
        + orjson.dumps({**ENV, **extra, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        + b"\n\n"
    )


def tool_stream(pieces: list[str], name="lookup", second: bool = True) -> bytes:
    data = chunk(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"index": 0, "id": "call_1", "type": "function", "function": {"name": name, "arguments": ""}}
            ],
        }
    )
    data += b"".join(chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in pieces)
    if second:
        data += chunk(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "other", "arguments": "{}"},
                    }
                ]
            }
        )
    return data + chunk({}, "tool_calls") + b"data: [DONE]\n\n"


def feed(data: bytes, guards: ResponseGuards, cuts=()) -> bytes:
    rs = response_stream("r", guards, False, {})
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(data)}), len(data)]

    async def go():
        out = []
        for i, (a, b) in enumerate(itertools.pairwise(bounds)):
            out.append(await rs.feed(data[a:b], i == len(bounds) - 2))
        return b"".join(out)

    return run(go())


def tool_calls_of(out: bytes) -> tuple[dict[int, dict], list[int]]:
    """Accumulated like a client does, and the order tool call indexes appeared in."""
    calls: dict[int, dict] = {}
    order: list[int] = []
    for c in chunks_of(out):
        if not isinstance(c, dict) or not c.get("choices"):
            continue
        for tc in c["choices"][0]["delta"].get("tool_calls") or []:
            order.append(tc["index"])
            entry = calls.setdefault(tc["index"], {"id": "", "name": "", "arguments": ""})
            entry["id"] += tc.get("id", "")
            entry["name"] += tc.get("function", {}).get("name", "")
            entry["arguments"] += tc.get("function", {}).get("arguments", "")
    return calls, order


STREAM_ARGS = '{"to": "bob\\u0040example.com", "card": 4111111111111111, "note": "card 4111 1111 1111 1111"}'
STREAM_WANT = {"to": "<EMAIL>", "card": "<CREDIT_CARD>", "note": "card <CREDIT_CARD>"}
MASK_STREAM = response_guards()


def test_streamed_arguments_split_at_every_character():
    for i in range(len(STREAM_ARGS) + 1):
        out = feed(tool_stream([STREAM_ARGS[:i], STREAM_ARGS[i:]]), MASK_STREAM)
        calls, order = tool_calls_of(out)
        assert orjson.loads(calls[0]["arguments"]) == STREAM_WANT, i
        assert calls[0]["name"] == "lookup" and calls[0]["id"] == "call_1"
        assert calls[1]["arguments"] == "{}"
        assert order == sorted(order), "the first call's arguments are complete before the second"
        assert b"4111" not in out and b"bob" not in out


def test_streamed_arguments_split_at_every_byte_of_the_stream():
    data = tool_stream([STREAM_ARGS[i : i + 6] for i in range(0, len(STREAM_ARGS), 6)])
    for cut in range(1, len(data)):
        out = feed(data, MASK_STREAM, [cut])
        calls, _ = tool_calls_of(out)
        assert orjson.loads(calls[0]["arguments"]) == STREAM_WANT, cut
        assert b"4111" not in out and b"bob" not in out, cut


def test_streamed_arguments_one_character_each():
    out = feed(tool_stream(list(STREAM_ARGS)), MASK_STREAM)
    assert orjson.loads(tool_calls_of(out)[0][0]["arguments"]) == STREAM_WANT


def test_streamed_arguments_reject_ends_the_stream():
    out = feed(tool_stream([STREAM_ARGS[:20], STREAM_ARGS[20:]]), response_guards("REJECT"))
    chunks = chunks_of(out)
    assert chunks[-1] == "[DONE]" and chunks[-2]["error"]["code"] == "content_policy_violation"
    assert b"4111" not in out and b"bob" not in out


def test_held_arguments_come_out_when_the_json_closes():
    """The closing brace could be part of an email's local part, so it waits; once the
    value is complete nothing more can follow, so it is released with its delta."""
    out = feed(tool_stream(['{"a": "x"', "}"], second=False), MASK_STREAM)
    deltas = [c["choices"][0]["delta"] for c in chunks_of(out) if isinstance(c, dict) and c.get("choices")]
    assert deltas[-1] == {} and deltas[-2]["tool_calls"][0]["function"]["arguments"].endswith("}")


def test_streamed_legacy_function_call_is_guarded():
    data = (
        chunk({"role": "assistant", "function_call": {"name": "f", "arguments": '{"to": "bob@exa'}})
        + chunk({"function_call": {"arguments": 'mple.com"}'}})
        + chunk({}, "function_call")
    )
    out = feed(data, MASK_STREAM)
    args = "".join(
        c["choices"][0]["delta"].get("function_call", {}).get("arguments", "")
        for c in chunks_of(out)
        if isinstance(c, dict) and c.get("choices")
    )
    assert orjson.loads(args) == {"to": "<EMAIL>"} and b"bob" not in out


def test_streamed_tool_name_and_unknown_fields_are_masked_per_event():
    data = tool_stream(["{}"], name=EMAIL, second=False) + chunk(
        {"content": "x", "x_note": {"by": EMAIL}}, provider_extra=EMAIL
    )
    out = feed(data, MASK_STREAM)
    assert b"bob" not in out
    assert tool_calls_of(out)[0][0]["name"] == "<EMAIL>"
    assert all(c["id"] == "chatcmpl-1" for c in chunks_of(out) if isinstance(c, dict))


def test_streamed_tool_name_rejects():
    out = feed(tool_stream(["{}"], name=EMAIL), response_guards("REJECT"))
    assert b"bob" not in out and chunks_of(out)[-2]["error"]["code"] == "content_policy_violation"


def test_streamed_audio_transcript_and_other_text_fields_are_split_proof():
    data = (
        chunk(
            {
                "role": "assistant",
                "audio": {"id": "a1", "transcript": "mail bob@exa"},
                "x_text": "card 4111 1111",
            }
        )
        + chunk({"audio": {"transcript": "mple.com now"}, "x_text": " 1111 1111 ok"})
        + chunk({}, "stop")
        + b"data: [DONE]\n\n"
    )
    for cut in range(1, len(data), 7):
        out = feed(data, MASK_STREAM, [cut])
        assert b"bob" not in out and b"4111" not in out, cut
        deltas = [
            c["choices"][0]["delta"] for c in chunks_of(out) if isinstance(c, dict) and c.get("choices")
        ]
        assert "".join((d.get("audio") or {}).get("transcript", "") for d in deltas) == "mail <EMAIL> now"
        assert "".join(d.get("x_text", "") for d in deltas) == "card <CREDIT_CARD> ok"
        assert {(d.get("audio") or {}).get("id") for d in deltas} >= {"a1"}


def test_streamed_reasoning_is_split_proof_and_signatures_pass_untouched():
    signature = {"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": f"s{EMAIL}"}]}
    data = (
        chunk({"role": "assistant", "reasoning_content": "mail bob@exa"})
        + chunk({"reasoning_content": "mple.com, card 4111 1111"})
        + chunk({"reasoning_content": " 1111 1111."})
        + chunk(signature)
        + chunk({"content": "done"})
        + chunk({}, "stop")
        + b"data: [DONE]\n\n"
    )
    for cut in range(1, len(data), 5):
        out = feed(data, MASK_STREAM, [cut])
        deltas = [
            c["choices"][0]["delta"] for c in chunks_of(out) if isinstance(c, dict) and c.get("choices")
        ]
        reasoning = "".join(d.get("reasoning_content", "") for d in deltas)
        assert reasoning == "mail <EMAIL>, card <CREDIT_CARD>.", cut
        assert [d["thinking_blocks"] for d in deltas if "thinking_blocks" in d] == [
            signature["thinking_blocks"]
        ]


SIGNATURE = {"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": "sig"}]}
OTHER_FIELDS = [
    SIGNATURE,
    {"content": "Sure."},
    {"reasoning": "hmm"},
    {
        "tool_calls": [
            {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ]
    },
]


@pytest.mark.parametrize("between", OTHER_FIELDS)
def test_a_field_keeps_its_held_text_across_other_fields(between):
    # The guard holds back the tail of the thinking while it could still become an email.
    # Another field coming in between does not end the thinking: a client joins every
    # piece of it, so the rest of the address after the other field is still the same
    # address. The tail waits (the order of fields may change), never splits a value.
    data = (
        chunk({"role": "assistant", "reasoning_content": "write to bob@exa"})
        + chunk(between)
        + chunk({"reasoning_content": "mple.com, card 4111 1111"})
        + chunk(between)
        + chunk({"reasoning_content": " 1111 1111 about it"})
        + chunk({"content": " Done"})
        + chunk({}, "stop")
        + b"data: [DONE]\n\n"
    )
    for cut in range(1, len(data), 11):
        for g in (MASK_STREAM, response_guards("REJECT")):
            out = feed(data, g, [cut])
            assert b"bob" not in out and b"exa" not in out and b"4111" not in out, cut
        out = feed(data, MASK_STREAM, [cut])
        choices = [c["choices"][0] for c in chunks_of(out) if isinstance(c, dict) and c.get("choices")]
        reasoning = "".join(ch["delta"].get("reasoning_content", "") for ch in choices)
        assert reasoning == "write to <EMAIL>, card <CREDIT_CARD> about it", cut
        assert choices[-1]["finish_reason"] == "stop", "held text comes out before the finish"
        assert "".join(ch["delta"].get("content", "") for ch in choices).endswith("Done")


def test_interleaved_tool_calls_keep_each_calls_held_arguments():
    def args(i, text):
        return chunk({"tool_calls": [{"index": i, "function": {"arguments": text}}]})

    def start(i, name):
        return chunk(
            {
                "tool_calls": [
                    {
                        "index": i,
                        "id": f"c{i}",
                        "type": "function",
                        "function": {"name": name, "arguments": ""},
                    }
                ]
            }
        )

    data = (
        start(0, "pay")
        + args(0, '{"card": "4111 1111')
        + start(1, "mail")
        + args(1, '{"to": "bob@exa')
        + args(0, ' 1111 1111", "n": 1')
        + args(1, 'mple.com"}')
        + args(0, "}")
        + chunk({}, "tool_calls")
        + b"data: [DONE]\n\n"
    )
    for cut in range(1, len(data), 9):
        out = feed(data, MASK_STREAM, [cut])
        assert b"4111" not in out and b"bob" not in out, cut
        calls, _ = tool_calls_of(out)
        assert orjson.loads(calls[0]["arguments"]) == {"card": "<CREDIT_CARD>", "n": 1}, cut
        assert orjson.loads(calls[1]["arguments"]) == {"to": "<EMAIL>"}, cut
        out = feed(data, response_guards("REJECT"), [cut])
        assert b"4111" not in out and b"bob" not in out
        assert chunks_of(out)[-2]["error"]["code"] == "content_policy_violation"


@pytest.mark.parametrize(
    "parts",
    [
        [{"type": "refusal", "refusal": f"mail {EMAIL}"}],
        [f"mail {EMAIL}"],
        [{"type": "text", "text": "", "note": f"mail {EMAIL}"}],
        [{"type": "image_url", "image_url": {"url": f"https://x.example/?u={EMAIL}"}}],
        [{"type": EMAIL}],
        [{"type": "text", "text": "mail bob@exa"}, "mple.com"],
    ],
)
@pytest.mark.parametrize("field", ["content", "reasoning_content", "refusal"])
def test_streamed_text_given_as_parts_is_guarded_whatever_the_parts(field, parts):
    data = chunk({"role": "assistant", field: parts}) + chunk({}, "stop") + b"data: [DONE]\n\n"
    out = feed(data, MASK_STREAM)
    assert b"bob" not in out, out
    deltas = [c["choices"][0]["delta"] for c in chunks_of(out) if isinstance(c, dict) and c.get("choices")]
    assert all(isinstance(d.get(field, ""), str) for d in deltas), "the parts' text, as text"
    out = feed(data, response_guards("REJECT"))
    assert b"bob" not in out


def test_parts_and_plain_text_are_one_text():
    data = (
        chunk({"content": "card 4111 1111"})
        + chunk({"content": [{"type": "text", "text": " 1111"}]})
        + chunk({"content": " 1111 ok"})
        + chunk({}, "stop")
    )
    out = feed(data, MASK_STREAM)
    text = "".join(
        c["choices"][0]["delta"].get("content") or ""
        for c in chunks_of(out)
        if isinstance(c, dict) and c.get("choices")
    )
    assert text == "card <CREDIT_CARD> ok"


NESTED = [
    ("thinking_blocks", lambda t: [{"type": "thinking", "thinking": t}], lambda d: d[0]["thinking"]),
    (
        "reasoning_details",
        lambda t: [{"type": "reasoning.text", "text": t, "index": 0}],
        lambda d: d[0]["text"],
    ),
    ("x_extra", lambda t: {"note": {"t": t}}, lambda d: d["note"]["t"]),
]


@pytest.mark.parametrize(("key", "wrap", "text_of"), NESTED, ids=[n[0] for n in NESTED])
def test_nested_streamed_text_is_split_proof(key, wrap, text_of):
    pieces = ["mail bob@exa", "mple.com, card 4111 1111", " 1111 1111 now"]
    data = chunk({"role": "assistant"})
    for p in pieces:
        data += chunk({key: wrap(p)}) + chunk({"content": "x"})
    data += chunk({}, "stop") + b"data: [DONE]\n\n"
    for cut in range(1, len(data), 17):
        out = feed(data, MASK_STREAM, [cut])
        assert b"bob" not in out and b"4111" not in out and b"exa" not in out, cut
        deltas = [
            c["choices"][0]["delta"] for c in chunks_of(out) if isinstance(c, dict) and c.get("choices")
        ]
        joined = "".join(text_of(d[key]) for d in deltas if key in d)
        assert joined == "mail <EMAIL>, card <CREDIT_CARD> now", (cut, joined)
        out = feed(data, response_guards("REJECT"), [cut])
        assert b"bob" not in out and b"4111" not in out
        assert chunks_of(out)[-2]["error"]["code"] == "content_policy_violation"


def test_nested_names_signatures_and_held_text_keep_their_block():
    sig = f"s{EMAIL}"
    data = (
        chunk({"thinking_blocks": [{"type": "thinking", "thinking": "write to bob"}]})
        + chunk({"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": sig}]})
        + chunk({"reasoning_details": [{"type": "reasoning.text", "text": "ask jim", "index": 0}]})
        + chunk({}, "stop")
    )
    out = feed(data, MASK_STREAM)
    deltas = [c["choices"][0]["delta"] for c in chunks_of(out) if isinstance(c, dict) and c.get("choices")]
    blocks = [b for d in deltas for b in d.get("thinking_blocks", [])]
    assert "".join(b.get("thinking", "") for b in blocks) == "write to bob"
    assert [b["signature"] for b in blocks if "signature" in b] == [sig], "signatures are not guarded"
    assert all(b.get("type") == "thinking" for b in blocks)
    details = [r for d in deltas for r in d.get("reasoning_details", [])]
    assert "".join(r["text"] for r in details) == "ask jim"
    assert all(r["type"] == "reasoning.text" and r["index"] == 0 for r in details)


@pytest.mark.parametrize(
    "error",
    [
        {"error": f"mail {EMAIL}"},
        {"error": {"message": "failed", "code": EMAIL, "param": "4111 1111 1111 1111"}},
        {"error": {"message": "failed", "type": EMAIL}, "detail": {EMAIL: 1}},
        {"error": {"message": "failed", "metadata": {"raw": [f"x {EMAIL}"]}}},
    ],
)
def test_every_string_of_a_provider_error_event_is_guarded(error):
    data = (
        chunk({"content": "Hello there. "}) + b"data: " + orjson.dumps(error) + b"\n\n" + b"data: [DONE]\n\n"
    )
    out = feed(data, MASK_STREAM)
    assert b"bob" not in out and b"4111" not in out and b"<" in out
    assert chunks_of(out)[-1] == "[DONE]"
    out = feed(data, response_guards("REJECT"))
    assert b"bob" not in out and b"4111" not in out
    assert chunks_of(out)[-2]["error"]["message"] == "the provider reported an error"


@pytest.mark.parametrize(
    "event",
    [
        {**ENV, "choices": [{"index": EMAIL, "delta": {"content": "hi"}, "finish_reason": None}]},
        {**ENV, "choices": [{"index": 1.0, "delta": {"content": "hi"}, "finish_reason": None}]},
        {
            **ENV,
            "choices": [{"index": 0, "delta": {"tool_calls": [{"index": EMAIL, "function": {"name": "f"}}]}}],
        },
    ],
)
def test_an_index_that_is_not_an_integer_fails_closed(event):
    out = feed(b"data: " + orjson.dumps(event) + b"\n\n" + chunk({}, "stop"), MASK_STREAM)
    assert b"bob" not in out and chunks_of(out)[-2]["error"]["code"] == "unguardable_response"


def test_a_streamed_text_fields_key_is_guarded():
    out = feed(chunk({EMAIL: "hi"}) + chunk({}, "stop"), MASK_STREAM)
    assert b"bob" not in out


# ---- the JSON-text helpers -----------------------------------------------------------------------


def test_escape_decoder_keeps_what_must_stay_escaped():
    text = r'{"a": "\u0040 \/ \" \\ \n \u0022 \u005c \u0001 \ud83d\ude00 \ud800x \u00e9"}'
    want = '{"a": "@ / \\" \\\\ \\n \\u0022 \\u005c \\u0001 😀 \\ud800x é"}'
    assert decode_escapes(text) == want
    assert json.loads(want) == json.loads(text), "the same JSON value"
    for cut in range(len(text) + 1):  # any split gives the same text
        d = EscapeDecoder()
        assert d.feed(text[:cut]) + d.feed(text[cut:], final=True) == want, cut


def test_label_quoter_quotes_labels_outside_strings_only():
    q = LabelQuoter()
    text = '{"a": "<EMAIL> \\" <X>", "n": <CREDIT_CARD>, "m": [<SSN>, 1]}'
    out = LabelQuoter().feed(text)
    assert out == '{"a": "<EMAIL> \\" <X>", "n": "<CREDIT_CARD>", "m": ["<SSN>", 1]}'
    cut = text.index("<CREDIT")
    pieces = [text[:8], text[8:9], text[9:cut], text[cut:]]  # labels come whole; state carries over
    assert "".join(q.feed(p) for p in pieces) == out


def test_value_end_finds_the_closing_brace():
    v = ValueEnd()
    assert v.end_in('{"a": "}", "b": [1, ') is None
    assert v.end_in('{"c": 2}]') is None
    assert v.end_in("}") == 1


# ---- numbers, and strings where numbers are expected ---------------------------------------

CARD_NUMBER = 4111111111111111


@pytest.mark.parametrize(
    "written",
    [
        "4.111111111111111e15",
        "41111111111111110e-1",
        "4111111111111111E0",
        "4111111111111111.0",
        "0.4111111111111111E+16",
    ],
)
def test_integral_numbers_with_a_fraction_or_exponent_are_masked_as_their_value(written):
    assert json.loads(guard_arguments(f'{{"card": {written}, "n": 2}}')) == {"card": "<CREDIT_CARD>", "n": 2}
    completion = {
        "choices": [
            {"index": 0, "message": {"role": "assistant", "tool_calls": [call(f'{{"c": {written}}}')]}}
        ]
    }
    with pytest.raises(GatewayError):
        run(response_guards("REJECT").apply(completion, {}))


def test_other_numbers_in_arguments_keep_every_byte():
    arguments = '{"a": 1.5, "b": 2e5, "c": 4.1111111111111115e15, "d": 1e40, "e": -0.0, "f": 1E-3}'
    assert guard_arguments(arguments) == arguments


def test_integral_text():
    from extproc.guards.json_text import integral_text

    assert integral_text("4.111111111111111e15") == "4111111111111111"
    assert integral_text("41111111111111110e-1") == "4111111111111111"
    assert integral_text("-2.0") == "-2"
    assert integral_text("4111111111111111") is None  # a plain integer is its own text
    assert integral_text("1.5") is None
    assert integral_text("1e30") is None  # 31 digits: not scanned as an integer
    assert integral_text("1e999999999") is None


def _schema_request(prop: dict) -> dict:
    return base_request(
        tools=[tool(parameters={"type": "object", "properties": {"card": {"type": "integer", **prop}}})]
    )


BARE_NUMBER_REQUESTS = {
    "tool enum": _schema_request({"enum": [1, CARD_NUMBER]}),
    "tool default": _schema_request({"default": CARD_NUMBER}),
    "tool examples": _schema_request({"examples": [CARD_NUMBER]}),
    "tool maximum": _schema_request({"maximum": CARD_NUMBER}),
    "tool default float": _schema_request({"default": 4.111111111111111e15}),
    "response_format const": base_request(
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {"properties": {"c": {"const": CARD_NUMBER}}}},
        }
    ),
    "unknown top-level field": base_request(extra_body={"n": CARD_NUMBER}),
    "metadata value": base_request(x_meta=[CARD_NUMBER]),
    "unknown part field": base_request(
        messages=[{"role": "user", "content": [{"type": "text", "text": "hi", "n": CARD_NUMBER}]}]
    ),
    "unknown message field": base_request(messages=[{"role": "user", "content": "hi", "n": CARD_NUMBER}]),
}


@pytest.mark.parametrize("name", sorted(BARE_NUMBER_REQUESTS))
def test_bare_numbers_in_a_request_are_masked(name):
    req = copy.deepcopy(BARE_NUMBER_REQUESTS[name])
    assert run(request_guards().apply(req, {}))
    text = json.dumps(req)
    assert "4111111111111111" not in text and "4.111111111111111e+15" not in text
    assert '"<CREDIT_CARD>"' in text
    with pytest.raises(GatewayError):
        run(request_guards("REJECT").apply(copy.deepcopy(BARE_NUMBER_REQUESTS[name]), {}))


def test_the_apis_own_numbers_are_left_alone():
    req = base_request(
        max_tokens=CARD_NUMBER,
        max_completion_tokens=CARD_NUMBER,
        seed=CARD_NUMBER,
        n=1,
        temperature=0.5,
        top_p=1,
        logit_bias={"50256": -100},
        top_logprobs=2,
    )
    before = copy.deepcopy(req)
    assert not run(request_guards("REJECT").apply(req, {}))
    assert req == before


def test_strings_in_the_apis_number_parameters_are_scanned():
    req = base_request(temperature=EMAIL, seed=CARD)
    run(request_guards().apply(req, {}))
    assert req["temperature"] == "<EMAIL>" and req["seed"] == "<CREDIT_CARD>"


def _completion(**top) -> dict:
    doc = {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    doc.update(top)
    return doc


def test_bare_numbers_in_an_answer_are_masked():
    doc = _completion()
    doc["choices"][0]["message"]["card"] = CARD_NUMBER
    doc["choices"][0]["n"] = 4.111111111111111e15
    doc["x_provider"] = {"ref": [CARD_NUMBER]}
    with pytest.raises(GatewayError):
        run(response_guards("REJECT").apply(copy.deepcopy(doc), {}))
    assert run(response_guards().apply(doc, {}))
    assert doc["choices"][0]["message"]["card"] == "<CREDIT_CARD>"
    assert doc["choices"][0]["n"] == "<CREDIT_CARD>"
    assert doc["x_provider"] == {"ref": ["<CREDIT_CARD>"]}
    assert doc["usage"] == {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    assert doc["created"] == 1 and doc["choices"][0]["index"] == 0


def test_answer_counters_are_numbers_left_alone():
    doc = _completion(created=CARD_NUMBER, usage={"prompt_tokens": CARD_NUMBER, "total_tokens": 2})
    doc["choices"][0]["index"] = CARD_NUMBER
    doc["choices"][0]["message"]["audio"] = {"id": "a", "expires_at": CARD_NUMBER, "transcript": "hi"}
    before = copy.deepcopy(doc)
    assert not run(response_guards("REJECT").apply(doc, {}))
    assert doc == before


@pytest.mark.parametrize(
    "where",
    ["usage value", "usage key", "usage nested", "created", "index"],
)
def test_strings_where_an_answer_has_numbers_are_scanned(where):
    doc = _completion()
    if where == "usage value":
        doc["usage"]["note"] = f"see {EMAIL}"
    elif where == "usage key":
        doc["usage"][EMAIL] = 1
    elif where == "usage nested":
        doc["usage"]["prompt_tokens_details"] = {"cached_tokens": CARD}
    elif where == "created":
        doc["created"] = EMAIL
    else:
        doc["choices"][0]["index"] = EMAIL
    with pytest.raises(GatewayError):
        run(response_guards("REJECT").apply(copy.deepcopy(doc), {}))
    run(response_guards().apply(doc, {}))
    text = json.dumps(doc)
    assert EMAIL not in text and CARD not in text
    assert doc["usage"]["total_tokens"] == 2  # the counters themselves stay numbers
