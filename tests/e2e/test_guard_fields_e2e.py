"""Guards wherever the text sits, end to end (issue 9, item 3): a model's tool-call
arguments are masked in JSON answers and in streams cut at any byte, for providers whose
translators build tool calls differently; request fields outside messages never reach the
provider in clear."""

import base64
import json

import httpx
import pytest

from tests.bootstraps import add_route
from tests.harness import Stack, load_bootstrap

pytestmark = pytest.mark.e2e

KEY = "sk-k"
CARD, EMAIL = "4111 1111 1111 1111", "jane.doe@example.com"
PROVIDERS = {
    "openai": {"provider": "openai", "model": "gpt-4o-mini"},
    "anthropic": {"provider": "anthropic", "model": "claude-3-5-haiku-latest"},
    "gemini": {"provider": "gemini", "model": "gemini-2.0-flash"},
}
# Response guard only, so the planted tool schema reaches the mock, which answers with
# arguments built from it (the enum's first value).
RESPONSE_GUARD = {
    "promptGuard": {"response": {"regex": {"action": "MASK", "builtins": ["CREDIT_CARD", "EMAIL"]}}}
}
REQUEST_GUARD = {
    "promptGuard": {"request": {"regex": {"action": "MASK", "builtins": ["CREDIT_CARD", "EMAIL"]}}}
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "pay",
            "description": "charges a card",
            "parameters": {
                "type": "object",
                "required": ["card", "notify"],
                "properties": {
                    "card": {"type": "string", "enum": [CARD]},
                    "notify": {"type": "string", "enum": [f"mail {EMAIL} when done"]},
                },
            },
        },
    }
]


@pytest.fixture(scope="module")
def stack():
    doc = load_bootstrap("mock.yaml")
    for name, settings in PROVIDERS.items():
        add_route(
            doc,
            name,
            f"/{name}/v1/chat/completions",
            [{"name": name, "auth": {"secretRef": {"inline": KEY}}, **settings}],
            policy=RESPONSE_GUARD,
        )
    add_route(
        doc,
        "masked-request",
        "/in/v1/chat/completions",
        [{"name": "in", "auth": {"secretRef": {"inline": KEY}}, **PROVIDERS["openai"]}],
        policy=REQUEST_GUARD,
    )
    for name, action in (("in-gemini", "MASK"), ("in-gemini-reject", "REJECT")):
        guard = {
            "promptGuard": {"request": {"regex": {"action": action, "builtins": ["CREDIT_CARD", "EMAIL"]}}}
        }
        add_route(
            doc,
            name,
            f"/{name}/v1/chat/completions",
            [{"name": name, "auth": {"secretRef": {"inline": KEY}}, **PROVIDERS["gemini"]}],
            policy=guard,
        )
    s = Stack(doc).start()
    yield s
    s.stop()


def post(stack, prefix, headers=None, **body) -> httpx.Response:
    payload = {"model": "m", "messages": [{"role": "user", "content": "pay please"}], "tools": TOOLS, **body}
    return httpx.post(
        f"{stack.url}/{prefix}/v1/chat/completions",
        json=payload,
        headers={"authorization": "Bearer c", **(headers or {})},
        timeout=20,
    )


def streamed_calls(raw: bytes) -> dict[int, dict]:
    calls: dict[int, dict] = {}
    for block in raw.split(b"\n\n"):
        for line in block.split(b"\n"):
            if not line.startswith(b"data: {"):
                continue
            for choice in json.loads(line[6:]).get("choices") or []:
                for tc in choice["delta"].get("tool_calls") or []:
                    entry = calls.setdefault(tc["index"], {"name": "", "arguments": ""})
                    entry["name"] += tc.get("function", {}).get("name", "")
                    entry["arguments"] += tc.get("function", {}).get("arguments", "")
    return calls


WANT = {"card": "<CREDIT_CARD>", "notify": "mail <EMAIL> when done"}


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_tool_call_arguments_masked_in_json_answers(stack, provider):
    r = post(stack, provider)
    assert r.status_code == 200, r.text
    assert "4111" not in r.text and "jane" not in r.text
    call = r.json()["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "pay"
    assert json.loads(call["function"]["arguments"]) == WANT


@pytest.mark.parametrize("provider", list(PROVIDERS))
@pytest.mark.parametrize("split", ["x-mock-chunk-bytes:1", "x-mock-chunk-bytes:3", "x-mock-chunk-bytes:17"])
def test_streamed_tool_call_arguments_masked_at_any_cut(stack, provider, split):
    name, value = split.split(":")
    with httpx.stream(
        "POST",
        f"{stack.url}/{provider}/v1/chat/completions",
        json={
            "model": "m",
            "stream": True,
            "tools": TOOLS,
            "messages": [{"role": "user", "content": "pay please"}],
        },
        headers={"authorization": "Bearer c", name: value},
        timeout=20,
    ) as r:
        assert r.status_code == 200
        raw = b"".join(r.iter_raw())
    assert b"4111" not in raw and b"jane" not in raw
    calls = streamed_calls(raw)
    assert calls[0]["name"] == "pay"
    assert json.loads(calls[0]["arguments"]) == WANT
    assert raw.rstrip().endswith(b"data: [DONE]")


def test_request_text_outside_messages_never_reaches_the_provider(stack):
    r = post(
        stack,
        "in",
        tool_choice="none",
        stop=[EMAIL],
        user=EMAIL,
        metadata={"card": CARD},
        messages=[
            {"role": "user", "content": "pay please"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "pay", "arguments": json.dumps({"card": CARD})},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": f"receipt sent to {EMAIL}"},
        ],
    )
    assert r.status_code == 200, r.text
    body = stack.mocks["in"].requests[-1]["body"]
    text = json.dumps(body)
    assert "4111" not in text and "jane" not in text
    assert json.loads(body["messages"][1]["tool_calls"][0]["function"]["arguments"]) == {
        "card": "<CREDIT_CARD>"
    }
    assert body["messages"][1]["tool_calls"][0]["id"] == "call_1"
    assert body["tools"][0]["function"]["parameters"]["properties"]["card"]["enum"] == ["<CREDIT_CARD>"]


def test_a_card_split_across_text_parts_is_masked_in_the_parts_or_refused(stack):
    """Each part used to be scanned alone, so `"card 4111 1111"` + `" 1111 1111"` passed
    even a REJECT route, and the model read the card whole."""
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "charge card 4111 1111"},
                {"type": "text", "text": " 1111 1111 please"},
            ],
        }
    ]
    r = post(stack, "in", messages=messages, tools=None)
    assert r.status_code == 200, r.text
    sent = stack.mocks["in"].requests[-1]["body"]["messages"][0]["content"]
    assert sent == [
        {"type": "text", "text": "charge card <CREDIT_CARD>"},
        {"type": "text", "text": " please"},
    ]

    seen = len(stack.mocks["in-gemini-reject"].requests)
    r = post(stack, "in-gemini-reject", messages=messages, tools=None)
    assert r.status_code == 403, r.text
    assert len(stack.mocks["in-gemini-reject"].requests) == seen  # never sent


def test_a_text_file_reaches_gemini_masked_or_not_at_all(stack):
    """Gemini reads a `text/plain` file part inline: it used to pass every guard as binary
    media. Now it is read decoded, masked and encoded back, or refused."""
    doc = f"Customer: Jane\nCard: {CARD}\nMail: {EMAIL}\n"
    part = {
        "type": "file",
        "file": {"file_data": "data:text/plain;base64," + base64.b64encode(doc.encode()).decode()},
    }
    messages = [{"role": "user", "content": [{"type": "text", "text": "summarise the file"}, part]}]
    r = post(stack, "in-gemini", messages=messages, tools=None)
    assert r.status_code == 200, r.text
    body = stack.mocks["in-gemini"].requests[-1]["body"]
    inline = [p["inlineData"] for p in body["contents"][0]["parts"] if "inlineData" in p]
    assert inline and inline[0]["mimeType"] == "text/plain"
    sent = base64.b64decode(inline[0]["data"]).decode()
    assert sent == "Customer: Jane\nCard: <CREDIT_CARD>\nMail: <EMAIL>\n"
    assert "4111" not in json.dumps(body) and "jane.doe" not in json.dumps(body)

    seen = len(stack.mocks["in-gemini-reject"].requests)
    r = post(stack, "in-gemini-reject", messages=messages, tools=None)
    assert r.status_code == 403, r.text
    assert len(stack.mocks["in-gemini-reject"].requests) == seen  # never sent


def test_audio_output_on_a_masking_route_is_refused_before_the_provider(stack):
    """The answer's transcript would be masked while its audio still says every word."""
    seen = len(stack.mocks["openai"].requests)
    r = post(
        stack, "openai", modalities=["text", "audio"], audio={"voice": "alloy", "format": "wav"}, tools=None
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "audio_output_unguardable"
    assert len(stack.mocks["openai"].requests) == seen
