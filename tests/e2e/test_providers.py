"""Every provider through real Envoy with the OpenAI SDK: chat, streaming, tools.

One route per provider; each backend is a mock speaking that provider's own API, so these
tests check both directions of the translation against real wire shapes.
"""

import json

import pytest

from tests.bootstraps import add_route, translate_at_route
from tests.harness import Stack, error_body, load_bootstrap

pytestmark = pytest.mark.e2e

KEY = "sk-gateway-key"
BACKENDS = {
    "openai": {"provider": "openai", "model": "gpt-4o-mini"},
    "azure": {"provider": "azure-openai", "model": "gpt-4o", "deployment": "prod-gpt4o"},
    "anthropic": {"provider": "anthropic", "model": "claude-3-5-haiku-latest"},
    "gemini": {"provider": "gemini", "model": "gemini-2.0-flash"},
    "vertex": {
        "provider": "vertex-ai",
        "model": "gemini-2.0-flash",
        "project": "my-proj",
        "location": "europe-west4",
    },
    "mistral": {"provider": "mistral", "model": "mistral-small-latest"},
    "selfhosted": {"provider": "openai-compatible", "model": "qwen2.5", "path": "/api/v1/chat/completions"},
}
# (path the provider must see for a non-streaming and a streaming call, where the key goes)
WIRE = {
    "openai": ("/v1/chat/completions", "/v1/chat/completions", "authorization", f"Bearer {KEY}"),
    "azure": (
        "/openai/deployments/prod-gpt4o/chat/completions",
        "/openai/deployments/prod-gpt4o/chat/completions",
        "api-key",
        KEY,
    ),
    "anthropic": ("/v1/messages", "/v1/messages", "x-api-key", KEY),
    "gemini": (
        "/v1beta/models/gemini-2.0-flash:generateContent",
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
        "x-goog-api-key",
        KEY,
    ),
    "vertex": (
        "/v1/projects/my-proj/locations/europe-west4/publishers/google/models/gemini-2.0-flash:generateContent",
        "/v1/projects/my-proj/locations/europe-west4/publishers/google/models/gemini-2.0-flash:streamGenerateContent",
        "authorization",
        f"Bearer {KEY}",
    ),
    "mistral": ("/v1/chat/completions", "/v1/chat/completions", "authorization", f"Bearer {KEY}"),
    "selfhosted": ("/api/v1/chat/completions", "/api/v1/chat/completions", "authorization", f"Bearer {KEY}"),
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ALL = list(BACKENDS)


@pytest.fixture(scope="module", params=["upstream", "route"])
def stack(request):
    """Each provider translated per attempt by the upstream filter, and (one endpoint per
    cluster) by the route-level filter in the same gRPC stream as the policies."""
    doc = load_bootstrap("mock.yaml")
    for name, settings in BACKENDS.items():
        add_route(
            doc,
            name,
            f"/{name}/v1/chat/completions",
            [{"name": name, "auth": {"secretRef": {"inline": KEY}}, **settings}],
        )
    if request.param == "route":
        translate_at_route(doc)
    s = Stack(doc).start()
    yield s
    s.stop()


def test_grpc_streams_per_request(stack, request):
    """What the one-stream wiring saves: Envoy opens one gRPC stream to the processor per
    request instead of two."""
    before = stack.envoy.stats("cluster.extproc.upstream_rq_total").get(
        "cluster.extproc.upstream_rq_total", 0
    )
    for _ in range(4):
        client(stack, "anthropic").chat.completions.create(
            model="x", messages=[{"role": "user", "content": "hi"}]
        )
    after = stack.envoy.stats("cluster.extproc.upstream_rq_total")["cluster.extproc.upstream_rq_total"]
    per_request = (after - before) / 4
    assert per_request == (1 if "route" in request.node.callspec.id else 2)


def client(stack, name):
    import openai

    return openai.OpenAI(base_url=f"{stack.url}/{name}/v1", api_key="client-key", max_retries=0, timeout=20)


@pytest.mark.parametrize("name", ALL)
def test_chat(stack, name):
    resp = client(stack, name).chat.completions.create(
        model="ignored",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}],
    )
    choice = resp.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content.endswith("hello there")
    assert choice.finish_reason == "stop"
    assert resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    [seen] = stack.mocks[name].requests
    path, _, header, value = WIRE[name]
    assert seen["path"] == path
    assert seen["headers"][header] == value
    assert "client-key" not in json.dumps(seen["headers"])


@pytest.mark.parametrize("name", ALL)
def test_streaming_chat(stack, name):
    stream = client(stack, name).chat.completions.create(
        model="ignored", messages=[{"role": "user", "content": "hello there"}], stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.endswith("hello there")
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    [seen] = stack.mocks[name].requests
    assert seen["path"] == WIRE[name][1]


@pytest.mark.parametrize("name", ALL)
def test_tool_call_and_result(stack, name):
    c = client(stack, name)
    first = c.chat.completions.create(
        model="ignored", tools=[WEATHER], messages=[{"role": "user", "content": "weather in Oslo?"}]
    )
    msg = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    [call] = msg.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "mock-city"}
    assert call.id

    second = c.chat.completions.create(
        model="ignored",
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "weather in Oslo?"},
            msg.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "-3C, snow"},
        ],
    )
    # The tool result reached the provider (Gemini wraps plain text as {"content": ...}).
    answer = second.choices[0].message.content
    assert answer.startswith("The tool returned: ") and "-3C, snow" in answer


@pytest.mark.parametrize("name", ALL)
def test_streamed_tool_call(stack, name):
    stream = client(stack, name).chat.completions.create(
        model="ignored",
        tools=[WEATHER],
        stream=True,
        messages=[{"role": "user", "content": "weather in Oslo?"}],
    )
    calls: dict[int, dict] = {}
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            for tc in choice.delta.tool_calls or []:
                entry = calls.setdefault(tc.index, {"id": "", "name": "", "args": ""})
                entry["id"] += tc.id or ""
                entry["name"] += (tc.function.name or "") if tc.function else ""
                entry["args"] += (tc.function.arguments or "") if tc.function else ""
            finish = choice.finish_reason or finish
    assert list(calls) == [0]
    assert calls[0]["name"] == "get_weather" and calls[0]["id"]
    assert json.loads(calls[0]["args"]) == {"city": "mock-city"}
    assert finish == "tool_calls"


@pytest.mark.parametrize("name", ALL)
def test_provider_error_becomes_openai_error(stack, name):
    import openai

    with pytest.raises(openai.RateLimitError) as exc:
        client(stack, name).chat.completions.create(
            model="ignored",
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-mock-status": "429", "x-mock-retry-after": "0"},
        )
    assert exc.value.status_code == 429
    error = error_body(exc.value)
    assert error["message"] and error["type"]
