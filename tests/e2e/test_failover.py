"""Priority-group failover across providers: the seed labs' scenarios, replayed on
envoy/failover.yaml with mock providers (OpenAI and Anthropic in each group)."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.harness import Stack, error_body, load_bootstrap, wait_for

pytestmark = pytest.mark.e2e

GROUP1 = ("openai-fast", "anthropic-fast")
GROUP2 = ("openai-strong", "anthropic-strong")
MODELS = {
    "openai-fast": "gpt-3.5-turbo",
    "anthropic-fast": "claude-3-5-haiku-latest",
    "openai-strong": "gpt-4.1",
    "anthropic-strong": "claude-opus-4-1",
}
USER = [{"role": "user", "content": "hello"}]


@pytest.fixture
def stack():
    s = Stack(load_bootstrap("failover.yaml")).start()
    yield s
    s.stop()


def counts(stack) -> dict[str, int]:
    return {name: len(m.requests) for name, m in stack.mocks.items()}


def served_by(stack, n: int, **kw) -> list[str]:
    """Send n requests with the SDK; return which backend answered each (by model)."""
    client = stack.client()
    by_model = {v: k for k, v in MODELS.items()}
    out = []
    for _ in range(n):
        resp = client.chat.completions.create(model="any", messages=USER, **kw)
        if kw.get("stream"):
            chunks = list(resp)
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            resp = chunks[0]
        out.append(by_model[resp.model])
    return out


def test_healthy_group1_takes_all_traffic_round_robin(stack):
    served = served_by(stack, 8)
    assert set(served) == set(GROUP1)
    assert counts(stack)["openai-strong"] == counts(stack)["anthropic-strong"] == 0
    # Each provider got its own wire format.
    assert stack.mocks["anthropic-fast"].requests[0]["path"] == "/v1/messages"
    assert stack.mocks["openai-fast"].requests[0]["path"] == "/v1/chat/completions"


def test_a_burst_that_needs_its_failover_loses_no_request(stack):
    """Group 1 drops every connection and group 2 answers in 300 ms, so a burst's retries
    are all in flight together. Envoy allows 3 retries in flight per cluster by default:
    without the bootstrap's retry budget, the requests past the third got a 503."""
    for name in GROUP1:
        stack.mocks[name].behave(reset="before")
    for name in GROUP2:
        stack.mocks[name].behave(firstByteDelayMs=300)
    with ThreadPoolExecutor(20) as pool:
        statuses = list(
            pool.map(lambda _: stack.post({"model": "any", "messages": USER}).status_code, range(20))
        )
    assert statuses == [200] * 20
    assert stack.envoy_stat("cluster.llm.upstream_rq_retry") >= 3  # group 1 was tried and failed over
    assert stack.envoy_stat("cluster.llm.upstream_rq_retry_overflow") == 0


def test_rate_limited_group1_is_invisible_to_the_client(stack):
    for name in GROUP1:
        stack.mocks[name].behave(status=429, retryAfter=30)
    # From the very first request, the client never sees the 429s.
    served = served_by(stack, 6) + served_by(stack, 2, stream=True)
    assert set(served) <= set(GROUP2)
    assert sum(counts(stack)[n] for n in GROUP1) >= 2, "group 1 was tried first"
    # Across requests: once the health checks have seen the cooldown, group 1 is skipped
    # for its Retry-After and the rate-limited providers get no more traffic.
    time.sleep(2.5)
    before = {n: counts(stack)[n] for n in GROUP1}
    assert set(served_by(stack, 8)) <= set(GROUP2)
    assert {n: counts(stack)[n] for n in GROUP1} == before


def test_one_failing_host_in_group1_never_reaches_group2(stack):
    stack.mocks["openai-fast"].behave(status=500)
    served = served_by(stack, 20)
    assert set(served) == {"anthropic-fast"}
    assert counts(stack)["openai-strong"] == counts(stack)["anthropic-strong"] == 0
    # Outlier detection ejects the failing host after 3 consecutive 5xx.
    wait_for(
        lambda: (
            stack.envoy.stats("outlier_detection.ejections_enforced_total").get(
                "cluster.llm.outlier_detection.ejections_enforced_total", 0
            )
            >= 1
        ),
        5,
        "ejection",
    )
    before = counts(stack)["openai-fast"]
    served_by(stack, 6)
    assert counts(stack)["openai-fast"] == before, "an ejected host gets no traffic"


def test_every_host_failing_gives_a_clear_error(stack):
    import openai

    for mock in stack.mocks.values():
        mock.behave(status=503)
    with pytest.raises(openai.APIStatusError) as exc:
        stack.client().chat.completions.create(model="any", messages=USER)
    assert exc.value.status_code == 503
    err = error_body(exc.value)
    assert err["message"] and err["type"] == "server_error"
    assert all(counts(stack)[n] == 1 for n in MODELS), "each host was tried exactly once"


def test_every_host_rate_limited_is_a_429_with_retry_after(stack):
    import openai

    for mock in stack.mocks.values():
        mock.behave(status=429, retryAfter=20)
    with pytest.raises(openai.RateLimitError) as exc:
        stack.client().chat.completions.create(model="any", messages=USER)
    assert exc.value.status_code == 429
    # While every backend cools down, the gateway answers by itself, with the time left.
    time.sleep(0.2)
    before = counts(stack)
    r = stack.post({"model": "any", "messages": USER})
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(r.headers["retry-after"]) <= 20
    assert counts(stack) == before, "no provider is called during the cooldown"


def test_recovered_backend_is_used_again_after_retry_after(stack):
    for name in GROUP1:
        stack.mocks[name].behave(status=429, retryAfter=2)
    assert set(served_by(stack, 4)) <= set(GROUP2)
    for name in GROUP1:
        stack.mocks[name].behave()  # the providers recover
    # During the cooldown group 2 keeps serving; afterwards group 1 is back.
    wait_for(lambda: set(served_by(stack, 2)) <= set(GROUP1), 8, "group 1 to be used again")
    assert set(served_by(stack, 6)) <= set(GROUP1)


def test_the_answer_crosses_one_grpc_stream_not_two(stack):
    """The upstream filter reads only the response headers of each attempt; the route
    filter translates the answer the client gets (Anthropic's too, JSON and streamed)."""
    import httpx

    stack.mocks["openai-fast"].behave(status=503)  # fails over to Anthropic, translated
    served = served_by(stack, 6) + served_by(stack, 4, stream=True)
    assert set(served) == {"anthropic-fast"}

    def stat(name: str) -> dict[str, int]:
        text = httpx.get(f"http://127.0.0.1:{stack.admin_port}/stats?filter=ext_proc.{name}$").text
        pairs = (line.rsplit(": ", 1) for line in text.splitlines() if line.strip())
        return {key: int(value) for key, value in pairs}

    sent, started = stat("stream_msgs_sent"), stat("streams_started")
    upstream = {k.removesuffix(".stream_msgs_sent") for k in sent if k.startswith("cluster.")}
    assert upstream, sent
    for prefix in upstream:
        # Request headers, request body, response headers: never a response body.
        assert sent[f"{prefix}.stream_msgs_sent"] == 3 * started[f"{prefix}.streams_started"], sent
    attempts = sum(started[f"{p}.streams_started"] for p in upstream)
    assert attempts > 10, "some requests failed over: more attempts than requests"


def test_unequal_groups_still_reach_the_healthy_host(tmp_path):
    """Group 1 has one host answering 429 (with Retry-After 0, so no cooldown), group 2 has
    a failing and a healthy host: every request still succeeds."""
    from extproc.render.loader import render_file

    cfg = tmp_path / "gw.yaml"
    cfg.write_text("""\
backends:
- name: g
  ai:
    priorityGroups:
    - providers: [{name: a, provider: openai, model: a, auth: {secretRef: {inline: k}},
                   endpoint: {host: 127.0.0.1, port: 18301}}]
    - providers:
      - {name: b, provider: openai, model: b, auth: {secretRef: {inline: k}},
         endpoint: {host: 127.0.0.1, port: 18302}}
      - {name: c, provider: anthropic, model: c, auth: {secretRef: {inline: k}},
         endpoint: {host: 127.0.0.1, port: 18303}}
routes: [{name: chat, backendRefs: [{name: g}]}]
""")
    s = Stack(render_file(cfg)).start()
    try:
        s.mocks["a"].behave(status=429, retryAfter=0)
        s.mocks["b"].behave(status=503)
        client = s.client()
        models = [client.chat.completions.create(model="x", messages=USER).model for _ in range(20)]
        assert set(models) == {"c"}
    finally:
        s.stop()
