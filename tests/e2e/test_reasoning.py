"""Reasoning (thinking) end to end: the `openai` SDK against real Envoy, the processor and the
mock providers (docs/providers/anthropic.md and gemini.md, "Reasoning").

The mocks think deterministically when asked to, so the texts are asserted exactly:
Anthropic thinks "Thinking about <the request|the tool result>: <its text>" and signs it
(HMAC, `sign()`); Gemini and Vertex answer with a fixed thought naming the budget they got.
"""

import json

import openai
import pytest

from extproc.mock.dialects._anthropic_thinking import sign
from extproc.render.loader import render_file
from tests.bootstraps import add_route, translate_at_route
from tests.harness import ROOT, Stack, error_body, load_bootstrap

pytestmark = pytest.mark.e2e

KEY = "sk-gateway-key"
ANTHROPIC = {"provider": "anthropic", "model": "claude-sonnet-4-5"}
GEMINI = {"provider": "gemini", "model": "gemini-2.5-flash"}
BACKENDS = {
    "anthropic": ANTHROPIC,
    "gemini": GEMINI,
    "vertex": {
        "provider": "vertex-ai",
        "model": "gemini-2.5-pro",
        "project": "p1",
        "location": "europe-west4",
    },
    "openai": {"provider": "openai", "model": "gpt-4o-mini"},
}
# Response guards in front of thinking models: Anthropic's thinking quotes the user (an
# email); Gemini's fixed thought contains "work out", masked by a custom pattern.
GUARDS = {
    "guarded-anthropic": (ANTHROPIC, {"action": "MASK", "builtins": ["EMAIL"]}),
    "guarded-gemini": (GEMINI, {"action": "MASK", "matches": [{"pattern": "work out", "name": "PLAN"}]}),
}
THINKERS = ["anthropic", "gemini", "vertex"]
HELLO = [{"role": "user", "content": "hello there"}]
GEMINI_THOUGHT = "Mock thoughts (budget 1024): work out the answer, then give it."
REASONING = {"anthropic": "Thinking about the request: hello there", "gemini": GEMINI_THOUGHT}
REASONING["vertex"] = GEMINI_THOUGHT
# Gemini counts thought words as thoughtsTokenCount; Anthropic reports no separate count.
REASONING_TOKENS = {"anthropic": None, "gemini": 11, "vertex": 11}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
OSLO = [{"role": "user", "content": "weather in Oslo?"}]
OSLO_THOUGHT = "Thinking about the request: weather in Oslo?"


@pytest.fixture(scope="module", params=["upstream", "route"])
def stack(request):
    """Translated per attempt by the upstream filter, and by the route-level filter."""
    doc = load_bootstrap("mock.yaml")
    for name, settings in BACKENDS.items():
        backend = {"name": name, "auth": {"secretRef": {"inline": KEY}}, **settings}
        add_route(doc, name, f"/{name}/v1/chat/completions", [backend])
    for name, (settings, regex) in GUARDS.items():
        backend = {"name": name, "auth": {"secretRef": {"inline": KEY}}, **settings}
        policy = {"promptGuard": {"response": {"regex": regex}}}
        add_route(doc, name, f"/{name}/v1/chat/completions", [backend], policy=policy)
    if request.param == "route":
        translate_at_route(doc)
    s = Stack(doc).start()
    yield s
    s.stop()


def client(stack, name):
    return openai.OpenAI(base_url=f"{stack.url}/{name}/v1", api_key="client-key", max_retries=0, timeout=20)


def extra(obj, field):
    """A field the SDK's types do not declare, kept on the object (model_extra)."""
    return (obj.model_extra or {}).get(field)


def signed(text):
    return {"type": "thinking", "thinking": text, "signature": sign(text)}


def sent(stack, name):
    return stack.mocks[name].requests[-1]


def assert_thinking_requested(stack, name, stream):
    seen = sent(stack, name)
    if name == "anthropic":
        assert seen["body"]["thinking"] == {"type": "enabled", "budget_tokens": 2048}
        assert seen["body"]["max_tokens"] == 2048 + 4096  # budget + defaultMaxTokens
        assert seen["body"].get("stream", False) is stream
    else:
        config = seen["body"]["generationConfig"]["thinkingConfig"]
        assert config == {"includeThoughts": True, "thinkingBudget": 1024}
        model = BACKENDS[name]["model"]
        action = "streamGenerateContent" if stream else "generateContent"
        assert seen["path"].endswith(f"/models/{model}:{action}")


def read_stream(stream):
    """(events in order as (kind, value), the usage chunk's usage, the finish reason)."""
    events, usage, finish = [], None, None
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            delta = choice.delta
            if extra(delta, "reasoning_content"):
                events.append(("reasoning", extra(delta, "reasoning_content")))
            if extra(delta, "thinking_blocks"):
                events.append(("blocks", extra(delta, "thinking_blocks")))
            if delta.content:
                events.append(("content", delta.content))
            for tc in delta.tool_calls or []:
                events.append(("tool", tc))
            finish = choice.finish_reason or finish
    return events, usage, finish


def joined(events, kind):
    return "".join(v for k, v in events if k == kind)


def kinds_in_order(events):
    """Kinds of the events with consecutive repeats collapsed: ['reasoning', 'content']."""
    out: list[str] = []
    for kind, _ in events:
        if not out or out[-1] != kind:
            out.append(kind)
    return out


# ---- 1, 2: reasoning_effort, JSON and streamed -------------------------------------------


@pytest.mark.parametrize("name", THINKERS)
def test_json_answer_carries_reasoning(stack, name):
    resp = client(stack, name).chat.completions.create(
        model="ignored", messages=HELLO, reasoning_effort="low"
    )
    msg = resp.choices[0].message
    assert msg.content == f"Mock reply from {BACKENDS[name]['model']}: hello there"
    assert extra(msg, "reasoning_content") == REASONING[name]
    details = resp.usage.completion_tokens_details
    if name == "anthropic":
        assert extra(msg, "thinking_blocks") == [signed(REASONING[name])]
        assert getattr(details, "reasoning_tokens", None) is None
    else:
        assert extra(msg, "thinking_blocks") is None
        tokens = REASONING_TOKENS[name]
        assert tokens is not None
        assert details.reasoning_tokens == tokens
        # Thinking is billed as output: the answer's words plus the thought's.
        assert resp.usage.completion_tokens == len(msg.content.split()) + tokens
    assert_thinking_requested(stack, name, stream=False)


@pytest.mark.parametrize("name", THINKERS)
def test_reasoning_tokens_in_the_access_log(stack, name):
    raw = client(stack, name).chat.completions.with_raw_response.create(
        model="ignored", messages=HELLO, reasoning_effort="low"
    )
    line = stack.access_log(raw.headers["x-request-id"])
    expected = None if name == "anthropic" else REASONING_TOKENS[name]  # Anthropic reports none
    assert line["reasoning_tokens"] == expected


@pytest.mark.parametrize("name", THINKERS)
def test_streamed_reasoning_comes_before_the_answer(stack, name):
    stream = client(stack, name).chat.completions.create(
        model="ignored",
        messages=HELLO,
        reasoning_effort="low",
        stream=True,
        stream_options={"include_usage": True},
    )
    events, usage, finish = read_stream(stream)
    text = REASONING[name]
    assert joined(events, "reasoning") == text
    assert joined(events, "content") == f"Mock reply from {BACKENDS[name]['model']}: hello there"
    assert finish == "stop"
    if name == "anthropic":
        # The signature follows the thinking text, once, with no text repeated.
        assert kinds_in_order(events) == ["reasoning", "blocks", "content"]
        assert [v for k, v in events if k == "blocks"] == [
            [{"type": "thinking", "thinking": "", "signature": sign(text)}]
        ]
        assert getattr(usage.completion_tokens_details, "reasoning_tokens", None) is None
    else:
        assert kinds_in_order(events) == ["reasoning", "content"]
        assert usage.completion_tokens_details.reasoning_tokens == REASONING_TOKENS[name]
    assert_thinking_requested(stack, name, stream=True)


# ---- 3, 4: Anthropic tool loop with signed thinking ---------------------------------------


def tool_result(call_id):
    return {"role": "tool", "tool_call_id": call_id, "content": "-3C, snow"}


def assert_thinking_sent_back(stack):
    """Turn 2 reached Anthropic with the turn-1 thinking block leading the assistant turn."""
    assistant = sent(stack, "anthropic")["body"]["messages"][1]
    assert assistant["role"] == "assistant"
    assert assistant["content"][0] == signed(OSLO_THOUGHT)
    assert assistant["content"][1]["type"] == "tool_use"


def test_tool_loop_json_round_trips_thinking_blocks(stack):
    c = client(stack, "anthropic")
    first = c.chat.completions.create(model="m", tools=[WEATHER], messages=OSLO, reasoning_effort="low")
    msg = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    [call] = msg.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "mock-city"})
    assert extra(msg, "reasoning_content") == OSLO_THOUGHT
    assert extra(msg, "thinking_blocks") == [signed(OSLO_THOUGHT)]

    # The message object as the SDK returned it, appended unchanged.
    second = c.chat.completions.create(
        model="m", tools=[WEATHER], reasoning_effort="low", messages=[*OSLO, msg, tool_result(call.id)]
    )
    assert second.choices[0].message.content == "The tool returned: -3C, snow"
    assert (
        extra(second.choices[0].message, "reasoning_content") == "Thinking about the tool result: -3C, snow"
    )
    assert_thinking_sent_back(stack)

    # Without its thinking blocks the continuation is refused by Anthropic (the mock), and
    # the gateway passes the refusal on as an OpenAI error.
    stripped = msg.model_dump(exclude_none=True)
    stripped.pop("thinking_blocks")
    stripped.pop("reasoning_content")
    with pytest.raises(openai.BadRequestError) as exc:
        c.chat.completions.create(
            model="m",
            tools=[WEATHER],
            reasoning_effort="low",
            messages=[*OSLO, stripped, tool_result(call.id)],
        )
    assert exc.value.status_code == 400
    error = error_body(exc.value)
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(
        "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found `tool_use`."
    )
    assert "thinking" not in json.dumps(sent(stack, "anthropic")["body"]["messages"][1])


def test_streamed_tool_loop_rebuilds_the_assistant_message(stack):
    c = client(stack, "anthropic")
    kw = {"model": "m", "tools": [WEATHER], "reasoning_effort": "low", "stream": True}
    events, _, finish = read_stream(c.chat.completions.create(messages=OSLO, **kw))
    assert finish == "tool_calls"
    assert kinds_in_order(events) == ["reasoning", "blocks", "tool"]
    call = {"id": "", "name": "", "arguments": ""}
    for tc in (v for k, v in events if k == "tool"):
        assert tc.index == 0
        call["id"] += tc.id or ""
        call["name"] += (tc.function and tc.function.name) or ""
        call["arguments"] += (tc.function and tc.function.arguments) or ""
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == {"city": "mock-city"}
    [blocks] = [v for k, v in events if k == "blocks"]
    assistant = {
        "role": "assistant",
        "reasoning_content": joined(events, "reasoning"),
        "thinking_blocks": blocks,  # signature only: the gateway fills in the joined text
        "tool_calls": [
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": call["arguments"]},
            }
        ],
    }
    events, _, finish = read_stream(
        c.chat.completions.create(messages=[*OSLO, assistant, tool_result(call["id"])], **kw)
    )
    assert finish == "stop"
    assert joined(events, "content") == "The tool returned: -3C, snow"
    assert joined(events, "reasoning") == "Thinking about the tool result: -3C, snow"
    assert_thinking_sent_back(stack)


# ---- 5: another provider's reasoning in history --------------------------------------------


def test_reasoning_history_is_dropped_for_openai(stack):
    history = [
        *OSLO,
        {
            "role": "assistant",
            "content": "Cold.",
            "reasoning_content": OSLO_THOUGHT,
            "thinking_blocks": [signed(OSLO_THOUGHT)],
        },
        {"role": "user", "content": "thanks"},
    ]
    resp = client(stack, "openai").chat.completions.create(model="gpt-4o-mini", messages=history)
    assert resp.choices[0].message.content == "Mock reply from gpt-4o-mini: thanks"
    assert sent(stack, "openai")["body"]["messages"] == [
        *OSLO,
        {"role": "assistant", "content": "Cold."},
        {"role": "user", "content": "thanks"},
    ]


# ---- 6: response guards see the reasoning -----------------------------------------------------


EMAIL = "bob@example.com"
GUARDED = {
    # (user text, the reasoning as the client must see it)
    "guarded-anthropic": (f"mail {EMAIL} today", "Thinking about the request: mail <EMAIL> today"),
    "guarded-gemini": ("hello", "Mock thoughts (budget 1024): <PLAN> the answer, then give it."),
}
LEAKS = {"guarded-anthropic": EMAIL, "guarded-gemini": "work out"}


@pytest.mark.parametrize("name", list(GUARDED))
def test_guard_masks_reasoning_in_json(stack, name):
    said, masked = GUARDED[name]
    raw = client(stack, name).chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": said}], reasoning_effort="low"
    )
    assert LEAKS[name] not in raw.text
    msg = raw.parse().choices[0].message
    assert extra(msg, "reasoning_content") == masked
    if name == "guarded-anthropic":
        # The block's text is guarded too, so no copy leaks (its signature no longer matches
        # it: Anthropic would refuse this block if it came back).
        assert [b["thinking"] for b in extra(msg, "thinking_blocks")] == [masked]


@pytest.mark.parametrize("name", list(GUARDED))
def test_guard_masks_reasoning_in_streams(stack, name):
    said, masked = GUARDED[name]
    raw = client(stack, name).chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": said}], reasoning_effort="low", stream=True
    )
    text = raw.http_response.read().decode()
    assert LEAKS[name] not in text
    events, _, finish = read_stream(raw.parse())
    assert joined(events, "reasoning") == masked
    assert finish == "stop"


def test_guard_holds_the_reasoning_tail_until_the_finish_in_streams(stack):
    # The reasoning's last word ("today") could still grow into an address, so the guard
    # holds it. The signature and the answer do not end the reasoning for a client (it
    # joins every piece of reasoning it gets), so the word waits for the finish rather
    # than being released early: more reasoning after the answer could complete a value.
    said, masked = GUARDED["guarded-anthropic"]
    stream = client(stack, "guarded-anthropic").chat.completions.create(
        model="m", messages=[{"role": "user", "content": said}], reasoning_effort="low", stream=True
    )
    events, _, finish = read_stream(stream)
    assert joined(events, "reasoning") == masked
    # The finish releases what each field still holds: the reasoning's word, then the
    # answer's own held tail.
    assert kinds_in_order(events) == ["reasoning", "blocks", "content", "reasoning", "content"]
    assert finish == "stop"


# ---- 7: a bad effort never leaves the gateway -------------------------------------------------


@pytest.mark.parametrize("name", ["anthropic", "gemini"])
def test_bogus_effort_is_refused_by_the_gateway(stack, name):
    with pytest.raises(openai.BadRequestError) as exc:
        client(stack, name).chat.completions.create(model="m", messages=HELLO, reasoning_effort="bogus")
    assert exc.value.status_code == 400
    error = error_body(exc.value)
    assert error["code"] == "invalid_value"
    assert error["param"] == "reasoning_effort"
    assert stack.mocks[name].requests == []


# ---- the example: envoy/examples/reasoning.yaml ------------------------------------------------


def test_reasoning_example():
    """The example's backend settings: default efforts, budgets, and the guard on thoughts."""
    s = Stack(render_file(ROOT / "envoy" / "examples" / "reasoning.yaml")).start()
    try:

        def ask(prefix, text="hi", **kw):
            c = openai.OpenAI(base_url=f"{s.url}/{prefix}/v1", api_key="k", max_retries=0, timeout=20)
            msg = c.chat.completions.create(model="m", messages=[{"role": "user", "content": text}], **kw)
            return extra(msg.choices[0].message, "reasoning_content"), s.mocks[prefix].requests[-1]["body"]

        # No reasoning_effort: Claude thinks at `low`, with the example's budget.
        thought, body = ask("anthropic", f"I am {EMAIL}")
        assert thought == "Thinking about the request: I am <EMAIL>"
        assert (body["thinking"]["budget_tokens"], body["max_tokens"]) == (4096, 4096 + 2048)
        thought, body = ask("anthropic", reasoning_effort="none")
        assert thought is None and "thinking" not in body
        thought, body = ask("gemini")
        assert thought == GEMINI_THOUGHT.replace("1024", "2048")
        assert body["generationConfig"]["thinkingConfig"] == {"includeThoughts": True, "thinkingBudget": 2048}
        thought, _ = ask("vertex", reasoning_effort="minimal")
        assert thought == GEMINI_THOUGHT.replace("1024", "128")
        with pytest.raises(openai.BadRequestError) as exc:
            ask("vertex", reasoning_effort="none")
        assert error_body(exc.value)["param"] == "reasoning_effort"
    finally:
        s.stop()
