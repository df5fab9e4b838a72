"""Which client headers reach a provider: extproc.backends.HeaderPolicy and `allowHeaders`.

With the gateway's credential only a few standard headers travel (plus the backend's
`allowHeaders`); with passthrough the client speaks for itself but its address never
reaches the provider unless listed.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from extproc.backends import Backend, HeaderPolicy
from extproc.providers import PROVIDERS, backend_settings_adapter
from extproc.runtime.bootstrap import ConfigError, build_config
from tests.bootstraps import add_route
from tests.harness import load_bootstrap

CLIENT = {
    ":method": "POST",
    ":path": "/v1/chat/completions",
    ":authority": "gw",
    ":scheme": "http",
    "host": "gw",
    "content-type": "application/json",
    "content-length": "42",
    "accept": "*/*",
    "user-agent": "OpenAI/Python 1.99",
    "x-request-id": "r-1",
    "x-envoy-attempt-count": "1",
    "authorization": "Bearer client",
    "anthropic-beta": "prompt-caching-2024-07-31",
    "openai-beta": "assistants=v2",
    "x-custom": "1",
    "x-tenant-id": "t9",
    "x-forwarded-for": "6.6.6.6, 10.0.0.1",
    "x-real-ip": "6.6.6.6",
    "forwarded": "for=6.6.6.6",
    "x-envoy-external-address": "10.0.0.1",
    "x-forwarded-proto": "https",
    "traceparent": "00-1-2-01",
    "x-stainless-os": "Linux",
    "x-envoy-foo": "1",
}


def backend(**aigw) -> Backend:
    settings = backend_settings_adapter.validate_python({"name": "b", **aigw})
    return Backend("b", "c", settings, PROVIDERS[settings.provider](settings), None)


def forwarded(b: Backend) -> set[str]:
    return set(CLIENT) - set(b.header_policy.dropped(CLIENT))


def test_injected_credential_forwards_only_the_standard_headers():
    b = backend(provider="anthropic", auth={"secretRef": {"inline": "sk-ant-xxxxxxxxxx"}})
    assert forwarded(b) == {
        ":method",
        ":path",
        ":authority",
        ":scheme",
        "host",
        "content-type",
        "content-length",
        "accept",
        "user-agent",
        "x-request-id",
        "x-envoy-attempt-count",
    }


def test_allow_headers_names_and_prefixes():
    b = backend(
        provider="anthropic",
        auth={"secretRef": {"inline": "sk-ant-xxxxxxxxxx"}},
        allowHeaders=["Anthropic-Beta", "x-tenant-*"],
    )
    assert {"anthropic-beta", "x-tenant-id"} <= forwarded(b)
    assert not {"openai-beta", "x-custom", "x-forwarded-for", "traceparent"} & forwarded(b)


@pytest.mark.parametrize("auth", [{"passthrough": True}, None])
def test_passthrough_or_no_auth_forwards_all_but_the_clients_address(auth):
    b = backend(provider="openai-compatible", **({"auth": auth} if auth else {}))
    dropped = set(b.header_policy.dropped(CLIENT))
    assert dropped == {"x-forwarded-for", "x-real-ip", "forwarded", "x-envoy-external-address"}


def test_address_headers_only_when_listed():
    b = backend(provider="openai-compatible", allowHeaders=["x-forwarded-for"])
    assert "x-forwarded-for" not in b.header_policy.dropped(CLIENT)
    assert "x-real-ip" in b.header_policy.dropped(CLIENT)


def test_star_forwards_everything():
    b = backend(provider="openai", auth={"secretRef": {"inline": "sk-xxxxxxxxxxxx"}}, allowHeaders=["*"])
    assert b.header_policy.dropped(CLIENT) == []


@pytest.mark.parametrize(
    "name, why",
    [
        ("authorization", "credential"),
        ("X-Api-Key", "credential"),
        ("cookie", "cookies"),
        ("openai-organization", "account"),
        ("host", "authority"),
        (":path", "not a header name"),
        ("x bad", "not a header name"),
        ("", "not a header name"),
        ("x-*-y", "not a header name"),
    ],
)
def test_refused_names(name, why):
    with pytest.raises(ValidationError, match=why):
        backend(provider="openai", auth={"secretRef": {"inline": "sk-xxxxxxxxxxxx"}}, allowHeaders=[name])


def test_bootstrap_error_names_the_field():
    doc = load_bootstrap("mock.yaml")
    add_route(
        doc,
        "x",
        "/x/v1/chat/completions",
        [
            {
                "name": "x",
                "provider": "openai",
                "auth": {"secretRef": {"inline": "k"}},
                "allowHeaders": ["x-api-key"],
            }
        ],
    )
    with pytest.raises(ConfigError, match=r"allowHeaders.*x-api-key.*never forwarded"):
        build_config(doc)


def test_policy_without_allow_list():
    assert HeaderPolicy((), allow_only=False).dropped(["x-custom", "x-real-ip"]) == ["x-real-ip"]
