"""Global rate limits and token budgets in a rendered bootstrap: what Envoy's rate-limit
filters get, what the processor reads from the node metadata, and the errors a config
with a mistake gets (file, line, field)."""

from __future__ import annotations

from typing import Any

import pytest

from extproc import wire
from extproc.config.shared_state import LimitSpec
from extproc.runtime.bootstrap import ConfigError, build_config
from tests.render_helpers import config_problems as problems
from tests.render_helpers import render_config as render

BACKEND = """\
backends:
- {name: openai, ai: {provider: openai, model: m, auth: {secretRef: {inline: sk-test-0000001}}}}
"""
SHARED = """\
gateway:
  sharedState:
    redis: {address: "10.0.0.7:6380", passwordRef: {env: REDIS_PASSWORD}, timeout: 50ms, keyPrefix: gw1}
    cooldowns: {failMode: closed, syncInterval: 250ms}
"""


def hcm(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def route(doc: dict[str, Any], name: str) -> dict[str, Any]:
    routes = hcm(doc)["route_config"]["virtual_hosts"][0]["routes"]
    return next(r for r in routes if r["name"] == name)


def filter_names(doc: dict[str, Any]) -> list[str]:
    return [f["name"] for f in hcm(doc)["http_filters"]]


GLOBAL = (
    SHARED
    + BACKEND
    + """\
routes:
- name: chat
  backendRefs: [{name: openai}]
  rateLimit: {key: {header: X-Api-Key}, requests: 10, per: minute, scope: global}
  tokenBudget: {key: {header: x-api-key}, tokens: 5000, per: hour}
- name: everyone
  matches: [{path: {value: /all}}]
  backendRefs: [{name: openai}]
  rateLimit: {key: {generic: all}, requests: 100, per: second, scope: global, failMode: closed}
- name: by-address
  matches: [{path: {value: /addr}}]
  backendRefs: [{name: openai}]
  rateLimit: {key: {clientAddress: true}, requests: 3, per: day}
"""
)


def test_global_limits_render_envoys_rate_limit_filter_before_the_processor(tmp_path):
    doc = render(tmp_path, GLOBAL)
    names = filter_names(doc)
    # The key copier first, then the rate-limit filter, both before the processor: a
    # refused request costs the processor nothing.
    assert names[:3] == ["envoy.filters.http.local_ratelimit", "aigw.ratelimit.keys", wire.RATELIMIT_FILTER]
    assert names.index("envoy.filters.http.ext_proc") > names.index(wire.RATELIMIT_FILTER)
    filters = {f["name"]: f["typed_config"] for f in hcm(doc)["http_filters"]}
    rls = filters[wire.RATELIMIT_FILTER]
    # A closed limit exists: the service unreachable is a 503 (Redis failures are decided
    # by the service, per limit).
    assert rls["failure_mode_deny"] is True
    assert rls["status_on_error"] == {"code": "ServiceUnavailable"}
    assert rls["domain"] == "aigw"
    assert rls["rate_limit_service"]["grpc_service"]["envoy_grpc"]["cluster_name"] == "extproc"
    # Two Redis timeouts (the service's bound) and a margin for the gRPC hop.
    assert rls["timeout"] == "0.25s"
    # The header is copied under its lower-case name, never removed from the request.
    rules = filters["aigw.ratelimit.keys"]["request_rules"]
    assert rules == [
        {
            "header": "x-api-key",
            "on_header_present": {
                "metadata_namespace": "aigw.ratelimit",
                "key": "x-api-key",
                "type": "STRING",
            },
            "remove": False,
        }
    ]


def test_with_only_open_limits_the_filter_lets_requests_through_when_the_service_fails(tmp_path):
    doc = render(
        tmp_path,
        SHARED
        + BACKEND
        + "routes:\n- name: chat\n  backendRefs: [{name: openai}]\n"
        + "  rateLimit: {key: {generic: all}, requests: 5, scope: global}\n",
    )
    filters = {f["name"]: f["typed_config"] for f in hcm(doc)["http_filters"]}
    assert filters[wire.RATELIMIT_FILTER]["failure_mode_deny"] is False
    assert "aigw.ratelimit.keys" not in filters, "no header key to copy"


def _key_action(key: str) -> dict[str, Any]:
    return {
        "metadata": {
            "descriptor_key": "client_key",
            "metadata_key": {"key": "aigw.ratelimit", "path": [{"key": key}]},
            "source": "DYNAMIC",
            "default_value": "(none)",
        }
    }


def _limit(limit_id: str) -> dict[str, Any]:
    return {"generic_key": {"descriptor_key": "aigw_limit", "descriptor_value": limit_id}}


def test_each_route_names_its_limits_and_budget_under_the_filter(tmp_path):
    doc = render(tmp_path, GLOBAL)
    chat = route(doc, "chat")["typed_per_filter_config"]
    # One call before the request for the limit and the budget check together. No call
    # when the stream ends: the route-level filter charges the budget (its metadata below).
    assert chat[wire.RATELIMIT_FILTER] == {
        "@type": wire.RATELIMIT_PER_ROUTE_TYPE,
        "rate_limits": [
            {"actions": [_limit("chat:requests"), _key_action("x-api-key")]},
            {"actions": [_limit("chat:tokens"), _key_action("x-api-key")], "hits_addend": {"number": 0}},
        ],
    }
    assert route(doc, "chat")["metadata"]["filter_metadata"]["aigw"]["tokenCharge"] == {
        "limit": "chat:tokens",
        "key": {"header": "x-api-key"},
    }
    assert "tokenCharge" not in route(doc, "everyone")["metadata"]["filter_metadata"]["aigw"]
    assert "envoy.filters.http.local_ratelimit" not in chat
    everyone = route(doc, "everyone")["typed_per_filter_config"]
    assert everyone[wire.RATELIMIT_FILTER]["rate_limits"] == [
        {
            "actions": [
                _limit("everyone:requests"),
                {"generic_key": {"descriptor_key": "generic_key", "descriptor_value": "all"}},
            ]
        }
    ]
    # A local limit stays Envoy's local rate limit, now with days too.
    local = route(doc, "by-address")["typed_per_filter_config"]["envoy.filters.http.local_ratelimit"]
    assert local["token_bucket"]["fill_interval"] == "86400s"
    assert wire.RATELIMIT_FILTER not in route(doc, "by-address")["typed_per_filter_config"]


def test_the_processor_reads_redis_and_the_limits_from_the_node_metadata(tmp_path, monkeypatch):
    doc = render(tmp_path, GLOBAL)
    aigw = doc["node"]["metadata"]["aigw"]
    # A reference to the password, never its value.
    assert aigw["sharedState"]["redis"]["passwordRef"] == {"env": "REDIS_PASSWORD"}
    monkeypatch.setenv("REDIS_PASSWORD", "correct-horse-battery")
    gw = build_config(doc)
    assert gw.shared_state is not None
    redis = gw.shared_state.settings.redis
    assert (redis.host, redis.port, redis.timeout, redis.key_prefix) == ("10.0.0.7", 6380, 0.05, "gw1")
    assert gw.shared_state.password is not None and gw.shared_state.password.value == "correct-horse-battery"
    assert gw.shared_state.settings.cooldowns.fail_mode == "closed"
    assert gw.shared_state.settings.cooldowns.sync_interval == 0.25
    assert gw.limits == {
        "chat:requests": LimitSpec(unit="requests", amount=10, window=60, fail_mode="open"),
        "chat:tokens": LimitSpec(unit="tokens", amount=5000, window=3600, fail_mode="closed"),
        "everyone:requests": LimitSpec(unit="requests", amount=100, window=1, fail_mode="closed"),
    }


def test_a_missing_redis_password_stops_the_processor_naming_the_field(tmp_path, monkeypatch):
    monkeypatch.delenv("REDIS_PASSWORD", raising=False)
    with pytest.raises(ConfigError) as exc:
        build_config(render(tmp_path, GLOBAL))
    assert "node.metadata.aigw.sharedState.redis.passwordRef" in str(exc.value)
    assert "REDIS_PASSWORD" in str(exc.value)


def test_bad_node_metadata_is_reported_by_field(tmp_path):
    doc = render(tmp_path, GLOBAL)
    doc["node"]["metadata"]["aigw"]["sharedState"]["redis"]["timeout"] = "soon"
    doc["node"]["metadata"]["aigw"]["rateLimits"]["chat:tokens"]["unit"] = "bytes"
    with pytest.raises(ConfigError) as exc:
        build_config(doc)
    text = str(exc.value)
    assert "node.metadata.aigw.sharedState: field 'redis.timeout'" in text
    assert "node.metadata.aigw.rateLimits.chat:tokens: field 'unit'" in text


def test_without_shared_state_nothing_changes(tmp_path):
    doc = render(tmp_path, BACKEND + "routes:\n- {name: chat, backendRefs: [{name: openai}]}\n")
    assert "node" not in doc
    assert not any(n.startswith(wire.RATELIMIT_FILTER) for n in filter_names(doc))
    gw = build_config(doc)
    assert gw.shared_state is None and gw.limits == {}


@pytest.mark.parametrize(
    ("snippet", "field", "message"),
    [
        (
            "rateLimit: {key: {header: x-api-key}, requests: 5, scope: global}",
            "routes[0].rateLimit.scope",
            "a global rate limit counts across replicas in Redis: set gateway.sharedState.redis",
        ),
        (
            "tokenBudget: {key: {header: x-api-key}, tokens: 5}",
            "routes[0].tokenBudget",
            "a token budget counts across replicas in Redis: set gateway.sharedState.redis",
        ),
    ],
)
def test_global_limits_need_shared_state(tmp_path, snippet, field, message):
    ps = problems(
        tmp_path, BACKEND + f"routes:\n- name: chat\n  backendRefs: [{{name: openai}}]\n  {snippet}\n"
    )
    assert len(ps) == 1
    assert f": {field}: {message}" in ps[0]
    assert ps[0].split(":")[1] == "6", "the line of the route's limit"


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        (
            "rateLimit: {key: {header: a, generic: b}, requests: 5}",
            "set one of 'header', 'clientAddress: true' or 'generic'",
        ),
        (
            "rateLimit: {key: {generic: b}, requests: 5, failMode: closed}",
            "failMode applies to 'scope: global'",
        ),
        ("tokenBudget: {key: {generic: b}, tokens: 0}", "greater than 0"),
        ("tokenBudget: {key: {generic: b}, tokens: 5, failMode: maybe}", "'open' or 'closed'"),
    ],
)
def test_bad_limits_are_refused_with_the_reason(tmp_path, snippet, expected):
    ps = problems(
        tmp_path,
        SHARED + BACKEND + f"routes:\n- name: chat\n  backendRefs: [{{name: openai}}]\n  {snippet}\n",
    )
    assert any(expected in p for p in ps), ps


def test_bad_redis_settings_are_refused_with_the_field(tmp_path):
    ps = problems(
        tmp_path,
        "gateway: {sharedState: {redis: {address: redis}}}\n"
        + BACKEND
        + "routes:\n- {name: c, backendRefs: [{name: openai}]}\n",
    )
    assert any("gateway.sharedState.redis.address" in p for p in ps), ps


def test_a_policy_gives_its_budget_to_the_routes_it_targets(tmp_path):
    doc = render(
        tmp_path,
        SHARED
        + BACKEND
        + """\
routes:
- {name: a, backendRefs: [{name: openai}]}
policies:
- name: budget
  targetRefs: [{name: a}]
  tokenBudget: {key: {generic: team}, tokens: 7, per: second, failMode: open}
""",
    )
    limits = route(doc, "a")["typed_per_filter_config"][wire.RATELIMIT_FILTER]["rate_limits"]
    assert [r["actions"][0] for r in limits] == [_limit("a:tokens")]
    assert route(doc, "a")["metadata"]["filter_metadata"]["aigw"]["tokenCharge"] == {
        "limit": "a:tokens",
        "key": {"generic": "team"},
    }
    assert doc["node"]["metadata"]["aigw"]["rateLimits"] == {
        "a:tokens": {"unit": "tokens", "amount": 7, "window": 1, "failMode": "open"}
    }


def test_a_route_and_a_policy_both_setting_a_budget_is_refused(tmp_path):
    ps = problems(
        tmp_path,
        SHARED
        + BACKEND
        + """\
routes:
- {name: a, backendRefs: [{name: openai}], tokenBudget: {key: {generic: x}, tokens: 1}}
policies:
- {name: p, targetRefs: [{name: a}], tokenBudget: {key: {generic: y}, tokens: 2}}
""",
    )
    assert any("route 'a' has its own tokenBudget; keep one" in p for p in ps), ps
