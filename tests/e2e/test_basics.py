"""The gateway as a user meets it: the OpenAI SDK against envoy/mock.yaml."""

import json

import openai
import pytest

from tests.harness import error_body

pytestmark = pytest.mark.e2e

GATEWAY_KEY = "sk-mock-gateway-key"
USER = [{"role": "user", "content": "hello there"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_chat_reaches_provider_translated_and_authenticated(mock_stack):
    client = mock_stack.client(api_key="client-secret-123")
    resp = client.chat.completions.create(model="gpt-4o-mini", messages=USER, temperature=0.2)

    assert resp.choices[0].message.content == "Mock reply from gpt-4o-mini: hello there"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.prompt_tokens == 2 and resp.usage.completion_tokens == 6

    [seen] = mock_stack.mock.requests
    assert seen["path"] == "/v1/chat/completions"
    assert seen["headers"]["authorization"] == f"Bearer {GATEWAY_KEY}"
    assert "client-secret-123" not in json.dumps(seen["headers"])
    assert seen["headers"]["host"] == "api.openai.com"
    assert seen["body"]["model"] == "gpt-4o-mini"
    assert seen["body"]["messages"] == USER
    assert seen["body"]["temperature"] == 0.2


def test_streaming_chat(mock_stack):
    client = mock_stack.client()
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Mock reply from gpt-4o-mini: hello there"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert mock_stack.mock.requests[0]["body"]["stream"] is True


def test_tool_call_round_trip(mock_stack):
    client = mock_stack.client()
    first = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "weather in Paris?"}], tools=[WEATHER_TOOL]
    )
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "mock-city"}

    second = client.chat.completions.create(
        model="gpt-4o-mini",
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "weather in Paris?"},
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"},
        ],
    )
    assert second.choices[0].message.content == "The tool returned: 18C and sunny"
    sent = mock_stack.mock.requests[-1]["body"]["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call.id and sent[2]["tool_call_id"] == call.id


def test_streamed_tool_call(mock_stack):
    client = mock_stack.client()
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "weather?"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    name, args, finish = "", "", None
    for chunk in stream:
        for choice in chunk.choices:
            for tc in choice.delta.tool_calls or []:
                name += tc.function.name or ""
                args += tc.function.arguments or ""
            finish = choice.finish_reason or finish
    assert name == "get_weather" and json.loads(args) == {"city": "mock-city"}
    assert finish == "tool_calls"


def test_provider_error_reaches_client_as_openai_error(mock_stack):
    client = mock_stack.client()
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=USER, extra_headers={"x-mock-status": "400"}
        )
    assert exc.value.status_code == 400
    assert error_body(exc.value)["message"] == "mock failure 400"


def test_internal_headers_never_cross_the_edge(mock_stack):
    r = mock_stack.post(
        {"model": "m", "messages": USER}, headers={"x-aigw-backend": "spoofed", "x-aigw-phase": "upstream"}
    )
    assert r.status_code == 200
    assert not [h for h in r.headers if h.lower().startswith("x-aigw-")]
    seen = mock_stack.mock.requests[0]["headers"]
    assert not [h for h in seen if h.startswith("x-aigw-")]


def test_processor_log_names_route_backend_status_without_secrets(mock_stack):
    raw = mock_stack.client(api_key="client-secret-456").chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "private words"}]
    )
    request_id = raw.headers["x-request-id"]
    record = mock_stack.processor.wait_log(msg="request", request_id=request_id)
    assert record["route"] == "chat" and record["backend"] == "mock-openai"
    assert record["provider"] == "openai" and record["model"] == "gpt-4o-mini"
    assert record["status"] == 200 and record["attempts"] == 1 and record["duration_ms"] > 0
    attempt = mock_stack.processor.wait_log(msg="attempt", request_id=request_id)
    assert attempt["backend"] == "mock-openai" and attempt["status"] == 200
    text = mock_stack.processor.logs()
    assert GATEWAY_KEY not in text and "client-secret-456" not in text
    assert "private words" not in text
