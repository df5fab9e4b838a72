"""The gateway's own key never reaches a client, and a client's headers never ride on it.

Through real Envoy, from a rendered gateway config: providers that reject a key quote it
(the mock's `x-mock-echo-key`: whole, OpenAI's masked `sk-proj-****abcd`, or a piece of
it) in the error body, in `www-authenticate` and in a custom header; a model's answer may
carry it too, in JSON or cut across stream chunks. None of it, nor any run of 8 of its
characters, may reach the client. And under the gateway's credential a provider gets
only the standard request headers plus the backend's `allowHeaders`.
"""

from __future__ import annotations

import os
import random
import string
from typing import Any

import httpx
import orjson
import pytest
import yaml

from extproc.redaction import MARK
from extproc.redaction_patterns import FRAGMENT
from extproc.render.loader import render_file
from tests.harness import Stack

pytestmark = pytest.mark.e2e

_rng = random.Random(9)
_ALPHABET = string.ascii_letters + string.digits + "-_"


def _key(prefix: str, n: int) -> str:
    return prefix + "".join(_rng.choice(_ALPHABET) for _ in range(n))


KEYS = {
    "openai": _key("sk-proj-", 156),
    "anthropic": _key("sk-ant-api03-", 95),
    "gemini": "AIza" + "".join(_rng.choice(_ALPHABET) for _ in range(35)),
    "mistral": "".join(_rng.choice(string.ascii_letters + string.digits) for _ in range(32)),
}
PUBLIC = {"openai": len("sk-proj-"), "anthropic": len("sk-ant-api03-"), "gemini": 0, "mistral": 0}
MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-3-5-haiku-latest",
    "gemini": "gemini-2.0-flash",
    "mistral": "mistral-small-latest",
}
USER = [{"role": "user", "content": "hi"}]
HOSTILE_HEADERS = {
    "anthropic-beta": "prompt-caching-2024-07-31",
    "openai-beta": "assistants=v2",
    "x-custom": "anything",
    "x-forwarded-for": "6.6.6.6",
    "x-real-ip": "6.6.6.6",
    "forwarded": "for=6.6.6.6",
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
}


# One stream: each provider is a one-host backend, which the route-level filter serves
# alone. Two streams: each is the first host of a failover chain, translated per attempt
# by the upstream filter, its answer translated and redacted by the route-level filter.
@pytest.fixture(scope="module", params=["one-stream", "two-streams"])
def stack(tmp_path_factory, request):
    tmp = tmp_path_factory.mktemp("hostile")
    os.environ["AIGW_TEST_GEMINI_KEY"] = KEYS["gemini"]
    (tmp / "mistral-key").write_text(KEYS["mistral"] + "\n")
    auth = {
        "openai": {"secretRef": {"inline": KEYS["openai"]}},
        "anthropic": {"secretRef": {"inline": KEYS["anthropic"]}},
        "gemini": {"secretRef": {"env": "AIGW_TEST_GEMINI_KEY"}},
        "mistral": {"secretRef": {"file": str(tmp / "mistral-key")}},
    }
    backends = [
        {
            "name": p,
            "ai": {
                "provider": p,
                "model": MODELS[p],
                "auth": auth[p],
                "endpoint": {"host": "127.0.0.1", "port": 18300 + i},
            },
        }
        for i, p in enumerate(KEYS)
    ]
    targets = {p: p for p in KEYS}
    if request.param == "two-streams":
        backends = [_as_failover_chain(b, 18320 + i) for i, b in enumerate(backends)]
        targets = {p: f"{p}-chain" for p in KEYS}
    backends.append(
        {
            "name": "beta",
            "ai": {
                "provider": "anthropic",
                "model": MODELS["anthropic"],
                "auth": auth["anthropic"],
                "allowHeaders": ["anthropic-beta"],
                "endpoint": {"host": "127.0.0.1", "port": 18310},
            },
        }
    )
    backends.append(
        {
            "name": "byok",
            "ai": {
                "provider": "openai",
                "model": "gpt-4o-mini",
                "auth": {"passthrough": True},
                "endpoint": {"host": "127.0.0.1", "port": 18311},
            },
        }
    )
    routes = [
        {
            "name": target,
            "backendRefs": [{"name": targets.get(target, target)}],
            "matches": [
                {
                    "path": {"type": "Exact", "value": "/v1/chat/completions"},
                    "headers": [{"name": "x-target", "value": target}],
                }
            ],
        }
        for target in [*KEYS, "beta", "byok"]
    ]
    path = tmp / "gw.yaml"
    path.write_text(yaml.safe_dump({"backends": backends, "routes": routes}))
    s = Stack(render_file(path)).start()
    s.mode = request.param  # type: ignore[attr-defined]
    yield s
    s.stop()


def _as_failover_chain(backend: dict, spare_port: int) -> dict:
    """`backend` as the first host of a two-group chain (the spare is never used while the
    first host is healthy): the mock keeps the provider's name."""
    first = {"name": backend["name"], **backend["ai"]}
    spare = {
        **first,
        "name": backend["name"] + "-spare",
        "endpoint": {"host": "127.0.0.1", "port": spare_port},
    }
    return {
        "name": backend["name"] + "-chain",
        "ai": {"priorityGroups": [{"providers": [first]}, {"providers": [spare]}]},
    }


def post(
    stack: Stack,
    target: str,
    *,
    stream: bool = False,
    headers: dict | None = None,
    key: str = "sk-client-own-key-000",
) -> httpx.Response:
    body = {"model": "any", "messages": USER, "stream": stream}
    return stack.post(body, headers={"x-target": target, "authorization": f"Bearer {key}", **(headers or {})})


def leaks(provider: str, text: str) -> list[str]:
    """Runs of FRAGMENT characters of the provider's key (past its public prefix), and
    masked echoes of its last four characters, found in `text`."""
    k, public = KEYS[provider], PUBLIC[provider]
    found = [
        k[i : i + FRAGMENT]
        for i in range(max(0, public - 4), len(k) - FRAGMENT + 1)
        if k[i : i + FRAGMENT] in text
    ]
    found += [m + k[-4:] for m in ("**", "...", "…") if m + k[-4:] in text]
    return found


def everything_the_client_got(resp: httpx.Response) -> str:
    return resp.text + "\n" + "\n".join(f"{k}: {v}" for k, v in resp.headers.multi_items())


# ---- item 6: the key never reaches a client ----------------------------------------------------


@pytest.mark.parametrize("provider", list(KEYS))
@pytest.mark.parametrize("echo", ["whole", "masked", "part"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_rejected_key_echo_is_redacted(stack, provider, echo, stream):
    resp = post(stack, provider, stream=stream, headers={"x-mock-echo-key": echo})
    assert resp.status_code == 401, resp.text
    seen = stack.mocks[provider].requests[-1]
    assert KEYS[provider] in str(seen["headers"]) + str(seen["query"]), "the gateway's key was sent"
    assert not leaks(provider, everything_the_client_got(resp)), everything_the_client_got(resp)
    # The provider did quote it: the client sees where, not what.
    assert MARK in resp.headers["x-mock-key-echo"]
    assert MARK in resp.headers["www-authenticate"]
    error = resp.json()["error"]
    if provider != "mistral":  # Mistral's 401 says only "Unauthorized"
        assert f"Incorrect API key provided: {MARK}." in error["message"]


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_key_in_a_successful_answer_is_redacted(stack, provider, stream):
    """A model (or a provider's debug echo) repeating the key: JSON, and a stream cut every
    7 bytes so the key spans many chunks."""
    k = KEYS[provider]
    content = f"the key is {k} and part of it {k[20:36]}."
    resp = post(
        stack, provider, stream=stream, headers={"x-mock-content": content, "x-mock-chunk-bytes": "7"}
    )
    assert resp.status_code == 200, resp.text
    assert not leaks(provider, everything_the_client_got(resp))
    if stream:
        text = "".join(
            orjson.loads(line[6:])["choices"][0]["delta"].get("content") or ""
            for line in resp.text.splitlines()
            if line.startswith("data: {") and orjson.loads(line[6:]).get("choices")
        )
    else:
        text = resp.json()["choices"][0]["message"]["content"]
    assert text == f"the key is {MARK} and part of it {MARK}."


def test_each_mode_runs_the_filters_it_names(stack):
    resp = post(stack, "anthropic", headers={"x-mock-echo-key": "whole"})
    assert resp.status_code == 401
    stats = httpx.get(f"http://127.0.0.1:{stack.admin_port}/stats?filter=ext_proc.streams_started$").text
    upstream = sum(int(line.rsplit(": ", 1)[1]) for line in stats.splitlines() if line.startswith("cluster."))
    assert (upstream > 0) == (stack.mode == "two-streams"), stats


def test_passthrough_echoes_the_clients_own_key(stack):
    """With passthrough the key quoted back is the client's own: nothing to hide, nothing
    mangled."""
    mine = "sk-client-" + "q" * 30
    resp = post(stack, "byok", headers={"x-mock-echo-key": "whole"}, key=mine)
    assert resp.status_code == 401
    assert mine in resp.json()["error"]["message"]
    assert resp.headers["x-mock-key-echo"] == mine


# ---- item 7: headers under the gateway's credential -----------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_injected_key_backend_gets_only_standard_headers(stack, provider):
    resp = post(stack, provider, headers={**HOSTILE_HEADERS, "user-agent": "OpenAI/Python 1.99"})
    assert resp.status_code == 200, resp.text
    seen = stack.mocks[provider].requests[-1]["headers"]
    assert not set(HOSTILE_HEADERS) & set(seen), seen
    assert "x-target" not in seen  # a routing header is the gateway's business
    assert seen["user-agent"] == "OpenAI/Python 1.99" and seen["content-type"] == "application/json"
    if provider == "anthropic":
        assert seen["x-api-key"] == KEYS["anthropic"] and "anthropic-version" in seen


def test_allow_headers_lets_anthropic_beta_through(stack):
    resp = post(stack, "beta", headers=HOSTILE_HEADERS)
    assert resp.status_code == 200, resp.text
    seen = stack.mocks["beta"].requests[-1]["headers"]
    assert seen["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert not {"openai-beta", "x-custom", "x-forwarded-for", "x-real-ip", "forwarded"} & set(seen)


def test_passthrough_forwards_client_headers_but_not_its_address(stack):
    resp = post(stack, "byok", headers=HOSTILE_HEADERS)
    assert resp.status_code == 200, resp.text
    seen = stack.mocks["byok"].requests[-1]["headers"]
    assert seen["openai-beta"] == "assistants=v2" and seen["x-custom"] == "anything"
    assert seen["authorization"] == "Bearer sk-client-own-key-000"
    assert not {"x-forwarded-for", "x-real-ip", "forwarded"} & set(seen), seen


def test_envoy_headers_stripped_where_the_filter_may_touch_them(tmp_path):
    """x-envoy-* headers (the client's address in x-envoy-external-address, which Envoy
    sets itself with use_remote_address; any x-envoy-foo a client sends) can only be
    removed by an ext_proc filter whose mutation_rules have allow_envoy. The renderer sets
    that on priority-group clusters; here it is set on the one cluster so the processor's
    side is proven (see README, "Headers a provider receives")."""
    path = tmp_path / "gw.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "backends": [
                    {
                        "name": "openai",
                        "ai": {
                            "provider": "openai",
                            "model": "gpt-4o-mini",
                            "auth": {"secretRef": {"inline": KEYS["openai"]}},
                            "endpoint": {"host": "127.0.0.1", "port": 18320},
                        },
                    }
                ],
                "routes": [
                    {
                        "name": "chat",
                        "backendRefs": [{"name": "openai"}],
                        "matches": [{"path": {"type": "Exact", "value": "/v1/chat/completions"}}],
                    }
                ],
            }
        )
    )
    doc = render_file(path)
    for cluster in doc["static_resources"]["clusters"]:
        for f in (
            (cluster.get("typed_extension_protocol_options") or {}).get(
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
            )
            or {}
        ).get("http_filters", []):
            rules = f["typed_config"].get("mutation_rules")
            if rules is not None:
                rules["allow_envoy"] = True
    s = Stack(doc).start()
    try:
        resp = s.post(
            {"model": "m", "messages": USER},
            headers={"x-envoy-external-address": "6.6.6.6", "x-envoy-foo": "1"},
        )
        assert resp.status_code == 200, resp.text
        seen = s.mock.requests[-1]["headers"]
        assert "x-envoy-external-address" not in seen and "x-envoy-foo" not in seen, seen
        assert seen["x-envoy-attempt-count"] == "1"
    finally:
        s.stop()


@pytest.mark.parametrize("hosts", [1, 2], ids=["one-stream", "per-attempt"])
def test_headers_a_route_adds_still_reach_the_provider(tmp_path, hosts):
    """The allow-list keeps client headers from a provider, not the operator's own: a
    header a route's RequestHeaderModifier sets reaches the backend in both wirings
    (one host: the route-level filter runs the attempt; two: the upstream filter)."""
    providers = [
        {
            "name": f"p{i}",
            "provider": "openai",
            "model": "gpt-4o-mini",
            "auth": {"secretRef": {"inline": "sk-route-headers-test-key-0123456789"}},
            "endpoint": {"host": "127.0.0.1", "port": 18500 + i},
        }
        for i in range(hosts)
    ]
    ai: dict[str, Any] = providers[0] if hosts == 1 else {"priorityGroups": [{"providers": providers}]}
    if hosts == 1:
        ai = {k: v for k, v in ai.items() if k != "name"}
    config = {
        "backends": [{"name": "b", "ai": ai}],
        "routes": [
            {
                "name": "chat",
                "matches": [{"path": {"type": "Exact", "value": "/v1/chat/completions"}}],
                "backendRefs": [{"name": "b"}],
                "filters": [
                    {
                        "type": "RequestHeaderModifier",
                        "requestHeaderModifier": {"set": [{"name": "x-tenant", "value": "acme"}]},
                    }
                ],
            }
        ],
    }
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(config))
    s = Stack(render_file(path)).start()
    try:
        r = s.post(
            {"model": "m", "messages": [{"role": "user", "content": "hi"}]}, headers={"x-client-only": "1"}
        )
        assert r.status_code == 200, r.text
        [seen] = [req for m in s.mocks.values() for req in m.requests]
        assert seen["headers"].get("x-tenant") == "acme"
        assert "x-client-only" not in seen["headers"]
    finally:
        s.stop()
