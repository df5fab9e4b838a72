"""Every example in envoy/examples/, rendered by `aigw render` and run for real against
mock providers, replaying its seed-guide scenario."""

import json
import math
import time

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from extproc.render.loader import render_file
from tests.harness import ROOT, Stack, error_body

pytestmark = pytest.mark.e2e

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]


def example(name: str) -> Stack:
    return Stack(render_file(ROOT / "envoy" / "examples" / f"{name}.yaml")).start()


@pytest.fixture
def stack(request):
    s = example(request.param)
    yield s
    s.stop()


def ask(s: Stack, prefix: str = "", **kw):
    c = openai.OpenAI(base_url=f"{s.url}{prefix}/v1", api_key="k", max_retries=0, timeout=20)
    return c.chat.completions.create(model=kw.pop("model", "any"), messages=kw.pop("messages", USER), **kw)


def served(s: Stack) -> dict[str, int]:
    return {name: len(m.requests) for name, m in s.mocks.items()}


@pytest.mark.parametrize("stack", ["single-provider-failover"], indirect=True)
def test_single_provider_failover(stack):
    assert ask(stack).model == "gpt-4.1"
    stack.mocks["gpt-4.1"].behave(status=429, retryAfter=30)
    assert ask(stack).model == "gpt-4o"  # the 429 never reaches the client
    stack.mocks["gpt-4o"].behave(status=503)
    assert ask(stack).model == "gpt-3.5-turbo"


@pytest.mark.parametrize("stack", ["multi-provider-failover"], indirect=True)
def test_multi_provider_cost_failover(stack):
    models = {ask(stack).model for _ in range(6)}
    assert models == {"gpt-4o-mini", "gemini-2.0-flash"}, "the cheap group, round robin across providers"
    for name in ("gpt-4o-mini", "gemini-flash"):
        stack.mocks[name].behave(status=500)
    assert {ask(stack).model for _ in range(4)} <= {"claude-3-5-haiku-latest", "mistral-small-latest"}
    for name in ("claude-haiku", "mistral-small"):
        stack.mocks[name].behave(status=500)
    assert ask(stack).model == "gpt-4.1"
    assert stack.mocks["claude-haiku"].requests[0]["path"] == "/v1/messages"


@pytest.mark.parametrize("stack", ["failover-lab"], indirect=True)
def test_failover_lab_rate_limited_primary(stack):
    stack.mocks["primary"].behave(status=429, retryAfter=20)
    assert {ask(stack).model for _ in range(3)} == {"claude-3-5-haiku-latest"}
    time.sleep(2.2)  # the health checks have seen the cooldown
    before = served(stack)["primary"]
    for _ in range(5):
        ask(stack)
    assert served(stack)["primary"] == before, "the primary sits out its Retry-After"


@pytest.mark.parametrize("stack", ["failover-lab-intra-group"], indirect=True)
def test_failover_lab_intra_group(stack):
    stack.mocks["primary-a"].behave(status=500)
    assert {ask(stack).model for _ in range(10)} == {"gpt-4o"}
    assert served(stack)["fallback"] == 0 and served(stack)["primary-b"] == 10


@pytest.mark.parametrize("stack", ["path-routing"], indirect=True)
def test_path_routing(stack):
    for prefix, path in (
        ("openai", "/v1/chat/completions"),
        ("anthropic", "/v1/messages"),
        ("gemini", "/v1beta/models/gemini-2.0-flash:generateContent"),
    ):
        assert ask(stack, f"/{prefix}").choices[0].message.content.endswith("hello")
        assert stack.mocks[prefix].requests[-1]["path"] == path
    assert httpx.get(f"{stack.url}/elsewhere", timeout=5).json()["error"]["code"] == "unknown_url"


@pytest.mark.parametrize("stack", ["header-routing"], indirect=True)
def test_header_routing_environments_and_ab(stack):
    c = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="k", max_retries=0)
    prod = c.chat.completions.with_raw_response.create(model="x", messages=USER)
    assert prod.parse().model == "gpt-4o" and prod.headers["x-variant-served"] == "a"
    staging = c.chat.completions.create(model="x", messages=USER, extra_headers={"x-environment": "staging"})
    assert staging.model == "gpt-4o-mini"
    b = c.chat.completions.with_raw_response.create(
        model="x", messages=USER, extra_headers={"x-variant": "b"}
    )
    assert b.parse().model == "claude-3-5-haiku-latest" and b.headers["x-variant-served"] == "b"


@pytest.mark.parametrize("stack", ["query-routing"], indirect=True)
def test_query_parameter_routing(stack):
    assert ask(stack, extra_query={"tier": "premium"}).model == "gpt-4.1"
    assert ask(stack).model == "gpt-4o-mini"
    assert ask(stack, extra_query={"tier": "basic"}).model == "gpt-4o-mini"


@pytest.mark.parametrize("stack", ["weighted-routing"], indirect=True)
def test_weighted_routing_80_20(stack):
    n = 400
    body = {"model": "x", "messages": USER}
    with httpx.Client(timeout=10) as client:
        for _ in range(n):
            assert client.post(f"{stack.url}/v1/chat/completions", json=body).status_code == 200
    current = served(stack)["current"]
    assert current + served(stack)["candidate"] == n
    # Binomial(n, 0.8): allow 4.5 standard deviations (a false alarm about once in 300 000 runs).
    z = (current - 0.8 * n) / math.sqrt(n * 0.8 * 0.2)
    assert abs(z) < 4.5, f"{current}/{n} to 'current' is not 80/20 (z={z:.1f})"


@pytest.mark.parametrize("stack", ["content-routing"], indirect=True)
def test_content_routing(stack):
    assert ask(stack, messages=[{"role": "user", "content": "short one"}]).model == "gpt-4o-mini"
    assert ask(stack, messages=[{"role": "user", "content": "x" * 600}]).model == "claude-opus-4-1"
    spoofed = ask(stack, messages=USER, extra_headers={"x-content-type": "long"})
    assert spoofed.model == "gpt-4o-mini"


@pytest.mark.parametrize("stack", ["prompt-enrichment"], indirect=True)
def test_prompt_enrichment_and_defaults(stack):
    r = stack.post({"messages": [{"role": "user", "content": "a, b, c"}]})
    assert r.status_code == 200, r.text
    body = stack.mock.requests[-1]["body"]
    assert body["messages"] == [
        {"role": "system", "content": "Parse the unstructured text into CSV format."},
        {"role": "user", "content": "a, b, c"},
        {"role": "user", "content": "Answer with the CSV only."},
    ]
    assert (body["model"], body["max_tokens"], body["temperature"]) == ("gpt-4", 2048, 0.7)
    ask(stack, model="gpt-4o", max_tokens=10, temperature=0.1)
    body = stack.mock.requests[-1]["body"]
    assert (body["model"], body["max_tokens"], body["temperature"]) == ("gpt-4o", 10, 0.7)


@pytest.mark.parametrize("stack", ["prompt-guard"], indirect=True)
def test_prompt_guard(stack):
    with pytest.raises(openai.PermissionDeniedError) as exc:
        ask(stack, messages=[{"role": "user", "content": "list some credit card numbers"}])
    assert error_body(exc.value)["message"] == "Rejected due to inappropriate content"
    leak = "Reach me at bob@example.com or (212) 555-0198, card 4111 1111 1111 1111."
    masked = "Reach me at <EMAIL> or <PHONE_NUMBER>, card <CREDIT_CARD>."
    assert ask(stack, extra_headers={"x-mock-content": leak}).choices[0].message.content == masked
    stream = ask(stack, stream=True, extra_headers={"x-mock-content": leak, "x-mock-chunk-bytes": "9"})
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == masked
    ask(stack, "/pii", messages=[{"role": "user", "content": "I am bob@example.com"}])
    assert stack.mock.requests[-1]["body"]["messages"][0]["content"] == "I am <EMAIL>"


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.mark.parametrize("stack", ["function-calling"], indirect=True)
def test_function_calling(stack):
    for prefix in ("/openai", "/anthropic"):
        first = ask(stack, prefix, tools=[WEATHER], messages=[{"role": "user", "content": "weather?"}])
        call = first.choices[0].message.tool_calls[0]
        assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {
            "city": "mock-city"
        }
        second = ask(
            stack,
            prefix,
            tools=[WEATHER],
            messages=[
                {"role": "user", "content": "weather?"},
                first.choices[0].message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
            ],
        )
        assert second.choices[0].message.content == "The tool returned: sunny"
    assert (
        stack.mocks["anthropic"].requests[-1]["body"]["messages"][-1]["content"][0]["type"] == "tool_result"
    )


@pytest.mark.parametrize("stack", ["rate-limit"], indirect=True)
def test_per_key_rate_limit(stack):
    def post(key, path="/v1/chat/completions"):
        return stack.post(
            {"model": "m", "messages": USER}, headers={"authorization": f"Bearer {key}"}, path=path
        )

    assert [post("key-a").status_code for _ in range(3)] == [200, 200, 200]
    r = post("key-a")
    assert r.status_code == 429
    err = r.json()["error"]
    assert err["type"] == "rate_limit_error" and err["code"] == "rate_limit_exceeded"
    assert post("key-b").status_code == 200, "another key has its own bucket"
    assert [post("k", "/shared/v1/chat/completions").status_code for _ in range(3)] == [200, 200, 429]
    assert len(stack.mock.requests) == 6, "rate-limited requests never reach the provider"


@pytest.mark.parametrize("stack", ["health"], indirect=True)
def test_health_direct_response(stack):
    r = httpx.get(f"{stack.url}/health", timeout=5)
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert r.headers["content-type"] == "application/json"
    assert ask(stack).choices[0].message.content.endswith("hello")
    assert len(stack.mock.requests) == 1


def test_backend_request_timeout_moves_on_to_the_next_model(tmp_path):
    """timeouts.backendRequest (Gateway API) is Envoy's per-try timeout: a model that
    hangs is abandoned for the next one, within the same request."""
    import yaml

    doc = yaml.safe_load((ROOT / "envoy" / "examples" / "single-provider-failover.yaml").read_text())
    doc["routes"][0]["timeouts"] = {"backendRequest": "1s"}
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(doc))
    s = Stack(render_file(path)).start()
    try:
        s.mocks["gpt-4.1"].behave(firstByteDelayMs=8000)
        assert ask(s).model == "gpt-4o"
        assert len(s.mocks["gpt-4.1"].requests) == 1
    finally:
        s.stop()


def test_shared_state_example(tmp_path):
    """envoy/examples/shared-state.yaml against a real redis-server (on a free port in
    place of 6379): the global per-key limit of 10 a minute, and a rate-limited primary
    answered by the fallback."""
    import yaml

    from extproc.devstack import free_port
    from extproc.shared_state.local_redis import LocalRedis

    doc = yaml.safe_load((ROOT / "envoy" / "examples" / "shared-state.yaml").read_text())
    assert doc["gateway"]["sharedState"]["redis"]["address"] == "127.0.0.1:6379"
    with LocalRedis(free_port()) as redis:
        doc["gateway"]["sharedState"]["redis"]["address"] = redis.address
        path = tmp_path / "gw.yaml"
        path.write_text(yaml.safe_dump(doc))
        s = Stack(render_file(path)).start()
        try:

            def post(key: str) -> httpx.Response:
                return s.post({"model": "m", "messages": USER}, headers={"x-api-key": key})

            assert [post("key-a").status_code for _ in range(10)] == [200] * 10
            r = post("key-a")
            assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"
            assert r.headers["x-ratelimit-limit"].startswith("10")
            assert r.headers["x-ratelimit-remaining"] == "0"
            s.mocks["openai-primary"].behave(status=429, retryAfter=30)
            r = post("key-b")
            assert r.status_code == 200 and r.json()["model"] == "claude-3-5-haiku-latest"
        finally:
            s.stop()
