"""Once a host is known to be rate limited, it gets no more first attempts.

Every host of the first priority group answers 429 with Retry-After 5 s. The first request
is retried onto group 2 and records a cooldown for both hosts. After that, not one request
may reach a cooling host until the cooldown ends: each such attempt costs latency and
spends the provider's rate limit. Before the fix, one host of the group kept taking first
attempts for about two seconds: Envoy marked it failed only at its next health check, and
then held the change back for its default 1 s `update_merge_window`.
"""

import time

import pytest

from tests.harness import Stack, load_bootstrap, wait_for

pytestmark = pytest.mark.e2e

USER = [{"role": "user", "content": "hello"}]
RENDERED = """\
backends:
- name: chain
  ai:
    priorityGroups:
    - providers:
      - {name: fast-a, provider: openai, model: a, auth: {secretRef: {inline: k}},
         endpoint: {host: 127.0.0.1, port: 18401}}
      - {name: fast-b, provider: anthropic, model: b, auth: {secretRef: {inline: k}},
         endpoint: {host: 127.0.0.1, port: 18402}}
    - providers:
      - {name: slow-c, provider: openai, model: c, auth: {secretRef: {inline: k}},
         endpoint: {host: 127.0.0.1, port: 18403}}
      - {name: slow-d, provider: anthropic, model: d, auth: {secretRef: {inline: k}},
         endpoint: {host: 127.0.0.1, port: 18404}}
routes: [{name: chat, backendRefs: [{name: chain}]}]
"""


def _failover_yaml(tmp_path):
    return load_bootstrap("failover.yaml"), ("openai-fast", "anthropic-fast")


def _rendered(tmp_path):
    from extproc.render.loader import render_file

    cfg = tmp_path / "gw.yaml"
    cfg.write_text(RENDERED)
    return render_file(cfg), ("fast-a", "fast-b")


@pytest.fixture(params=[_failover_yaml, _rendered], ids=["envoy/failover.yaml", "rendered"])
def setup(request, tmp_path):
    bootstrap, group1 = request.param(tmp_path)
    stack = Stack(bootstrap).start()
    yield stack, group1
    stack.stop()


def _wait_all_healthy(stack):
    """Start from a settled cluster: every host passed its first health check."""

    def healthy() -> int:
        stats = stack.envoy.stats("membership_healthy")
        return sum(v for k, v in stats.items() if not k.startswith("cluster.extproc."))

    wait_for(lambda: healthy() == len(stack.mocks), 10, "every host healthy")


def test_a_cooling_host_gets_no_first_attempts(setup):
    stack, group1 = setup
    _wait_all_healthy(stack)
    for name in group1:
        stack.mocks[name].behave(status=429, retryAfter=5)
    r = stack.post({"model": "any", "messages": USER})
    assert r.status_code == 200, r.text
    assert all(len(stack.mocks[n].requests) == 1 for n in group1), "each group-1 host tried once"
    cooled_at = time.monotonic()

    sent = reached = 0
    # 20 requests 0.1 s apart, all well inside the 5 s cooldown (stop early on a slow machine
    # rather than run into the cooldown's end, when group 1 may rightly be tried again).
    while sent < 20 and time.monotonic() - cooled_at < 4:
        before = sum(len(stack.mocks[n].requests) for n in group1)
        r = stack.post({"model": "any", "messages": USER})
        assert r.status_code == 200, r.text
        reached += sum(len(stack.mocks[n].requests) for n in group1) > before
        sent += 1
        time.sleep(0.1)
    assert sent >= 5
    assert reached == 0, f"{reached} of {sent} requests still tried a cooling host"


def test_the_router_signal_never_reaches_clients(setup):
    stack, _ = setup
    _wait_all_healthy(stack)
    for mock in stack.mocks.values():
        mock.behave(status=429, retryAfter=5)
    r = stack.post({"model": "any", "messages": USER})
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "rate_limit_exceeded"
    assert "x-envoy-immediate-health-check-fail" not in r.headers
