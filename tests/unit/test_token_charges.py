"""Token budgets charged by the route-level filter (route_filter.py, shared_state/):
the client named as Envoy's budget check named it, every request that ends charged its
tokens (reported, or estimated when the client left early), and the bootstrap checks
that make the charge possible."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from google.protobuf import struct_pb2

from extproc import tokens, wire
from extproc.config.shared_state import LimitSpec, RateLimitKey, RedisSettings
from extproc.devstack import free_port
from extproc.render.loader import GatewayConfigError
from extproc.route_filter import RouteStream, closes_finished
from extproc.runtime.bootstrap import ConfigError, build_config
from extproc.settings import ProcessorSettings
from extproc.shared_state.client_key import client_entries
from extproc.shared_state.counters import counter_key
from extproc.shared_state.redis_store import RedisStore
from extproc.shared_state.token_charges import TokenCharges
from tests import filter_fakes as F
from tests.render_helpers import render_config

SETTINGS = ProcessorSettings()
REQUEST = {"model": "m", "messages": [{"role": "user", "content": "Say hello to the whole world, please."}]}


def config(key: str = "{header: x-api-key}") -> str:
    return f"""\
gateway:
  sharedState: {{redis: {{address: "127.0.0.1:6399"}}}}
backends:
- {{name: openai, ai: {{provider: openai, model: m, auth: {{secretRef: {{inline: sk-test-0000001}}}}}}}}
routes:
- name: chat
  backendRefs: [{{name: openai}}]
  tokenBudget: {{key: {key}, tokens: 1000, per: minute}}
- name: free
  matches: [{{path: {{value: /free}}}}]
  backendRefs: [{{name: openai}}]
"""


def route_filter(doc: dict[str, Any]) -> dict[str, Any]:
    hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.ext_proc")["typed_config"]


class Charges:
    """gw.token_charger, recording (limit, client, tokens)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[tuple[str, str], ...], int]] = []

    async def charge(self, limit: str, client: tuple[tuple[str, str], ...], tokens: int) -> None:
        self.calls.append((limit, client, tokens))


@pytest.fixture
def gw(tmp_path):
    gw = build_config(render_config(tmp_path, config()))
    gw.token_charger = Charges()
    return gw


def headers_message(route: str = "chat", api_key: str | None = "tenant-key") -> pb.ProcessingRequest:
    """Request headers as Envoy sends them to the route-level filter, with the key header
    copied into the forwarded `aigw.ratelimit` metadata (header_to_metadata)."""
    req = F.request_headers(F.client_headers(), route_name=route, cluster_name="openai")
    if api_key is not None:
        req.metadata_context.filter_metadata[wire.RATELIMIT_KEYS].CopyFrom(
            struct_pb2.Struct(fields={"x-api-key": struct_pb2.Value(string_value=api_key)})
        )
    return req


async def sent(gw, request: dict = REQUEST, **kw: Any) -> RouteStream:
    stream = RouteStream(gw, SETTINGS)
    await stream.request_headers(headers_message(**kw))
    reply = await stream.request_body(F.request_body(request))
    assert reply.WhichOneof("response") == "request_body"  # on its way to the provider
    return stream


def sse(*events: dict) -> bytes:
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events)


CHUNK = {"id": "c", "object": "chat.completion.chunk", "model": "m", "created": 1}


def delta(text: str) -> dict:
    return {**CHUNK, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


# ---- who is charged ---------------------------------------------------------------------
def test_the_client_is_named_from_what_envoys_budget_check_read():
    header = RateLimitKey(header="X-Api-Key")
    assert client_entries(header, headers_message(api_key="k1")) == (("client_key", "k1"),)
    # No key header: the shared bucket Envoy's descriptor default names.
    assert client_entries(header, headers_message(api_key=None)) == (("client_key", "(none)"),)
    assert client_entries(RateLimitKey(generic="team"), headers_message()) == (("generic_key", "team"),)


def test_a_repeated_key_header_is_charged_as_the_check_counted_it_not_as_the_headers_say():
    # The processor sees both headers; Envoy's check counted the value header_to_metadata
    # copied. The charge follows the copy, so two values cannot split check and charge.
    req = F.request_headers(
        {**F.client_headers(), "x-api-key": "attacker-b"}, route_name="chat", cluster_name="openai"
    )
    req.metadata_context.filter_metadata[wire.RATELIMIT_KEYS].CopyFrom(
        struct_pb2.Struct(fields={"x-api-key": struct_pb2.Value(string_value="victim-a")})
    )
    assert client_entries(RateLimitKey(header="x-api-key"), req) == (("client_key", "victim-a"),)


@pytest.mark.parametrize(
    "address, entries",
    [
        ("10.1.2.3:55000", (("remote_address", "10.1.2.3"),)),
        ("[2001:db8::7]:443", (("remote_address", "2001:db8::7"),)),
        ("/run/envoy.sock", None),  # not an IP: Envoy sends no such descriptor either
        ("", None),
    ],
)
def test_a_client_address_key_is_the_bare_ip_envoy_uses(address, entries):
    req = F.request_headers(F.client_headers(), route_name="chat")
    req.attributes["envoy.filters.http.ext_proc"].fields[wire.SOURCE_ADDRESS].string_value = address
    assert client_entries(RateLimitKey(client_address=True), req) == entries


def test_the_charged_counter_is_the_one_the_check_reads():
    # The rate-limit service names a counter from the descriptor's entries after the limit
    # id; the charge names it from client_entries: the same key for the same client.
    store = RedisStore(RedisSettings(address="127.0.0.1:6399"))
    entries = client_entries(RateLimitKey(header="x-api-key"), headers_message(api_key="k1"))
    assert entries is not None
    assert counter_key(store, "chat:tokens", entries) == counter_key(
        store, "chat:tokens", [("client_key", "k1")]
    )


# ---- what is charged --------------------------------------------------------------------
async def test_a_finished_json_request_is_charged_its_reported_usage(gw):
    stream = await sent(gw)
    await stream.response_headers(F.response_headers({":status": "200", "content-type": "application/json"}))
    answer = {
        "id": "c1",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42},
    }
    await stream.response_body(F.response_body(answer))
    stream.close("complete")
    await closes_finished()
    assert gw.token_charger.calls == [("chat:tokens", (("client_key", "tenant-key"),), 42)]


async def test_a_stream_the_client_leaves_mid_way_is_charged_what_it_used(gw):
    # Envoy's own charge (apply_on_stream_done) had no usage to add for such a stream:
    # reading an answer and leaving before its usage chunk made it free.
    stream = await sent(gw, {**REQUEST, "stream": True})
    await stream.response_headers(F.response_headers({":status": "200", "content-type": "text/event-stream"}))
    await stream.response_body(
        F.response_body(sse(delta("Hello there, "), delta("world!")), end_of_stream=False)
    )
    stream.close("complete")  # grpc.aio: Envoy's reset reads as the stream's end
    await closes_finished()
    ((limit, client, charged),) = gw.token_charger.calls
    prompt = tokens.count_prompt(tokens.prompt_of(REQUEST))
    assert (limit, client) == ("chat:tokens", (("client_key", "tenant-key"),))
    assert charged == prompt + tokens.count_tokens("Hello there, world!", "m") > prompt


@pytest.mark.parametrize("answered", [False, True])
async def test_a_json_request_whose_client_left_before_the_answer_is_charged_its_prompt(gw, answered):
    stream = await sent(gw)
    if answered:  # the answer's headers came, its body never reached the client
        await stream.response_headers(
            F.response_headers({":status": "200", "content-type": "application/json"})
        )
    stream.close("cancelled")
    await closes_finished()
    assert gw.token_charger.calls == [
        ("chat:tokens", (("client_key", "tenant-key"),), tokens.count_prompt(tokens.prompt_of(REQUEST)))
    ]


async def test_a_client_that_leaves_while_a_provider_error_is_read_is_not_charged(gw):
    stream = await sent(gw)
    await stream.response_headers(F.response_headers({":status": "500", "content-type": "application/json"}))
    stream.close("cancelled")
    await closes_finished()
    assert gw.token_charger.calls == []


def test_a_budget_key_header_cannot_be_empty(tmp_path):
    # Envoy would count such a key by client address and the processor charge the
    # "(none)" bucket: two counters for one budget.
    with pytest.raises(GatewayConfigError) as exc:
        render_config(tmp_path, config('{header: ""}'))
    assert any("tokenBudget.key.header" in p for p in exc.value.problems), exc.value.problems


async def test_a_refused_request_is_not_charged(gw):
    stream = RouteStream(gw, SETTINGS)
    await stream.request_headers(headers_message())
    reply = await stream.request_body(F.request_body(b"{not json"))
    assert reply.WhichOneof("response") == "immediate_response"
    stream.close("complete")
    await closes_finished()
    assert gw.token_charger.calls == []


async def test_a_provider_error_without_usage_is_not_charged(gw):
    stream = await sent(gw)
    await stream.response_headers(F.response_headers({":status": "500", "content-type": "application/json"}))
    await stream.response_body(F.response_body({"error": {"message": "boom", "type": "server_error"}}))
    stream.close("complete")
    await closes_finished()
    assert gw.token_charger.calls == []


async def test_a_route_without_a_budget_charges_nothing(gw):
    stream = await sent(gw, route="free")
    stream.close("cancelled")
    await closes_finished()
    assert gw.token_charger.calls == []


async def test_a_charge_redis_cannot_take_is_counted_lost(monkeypatch):
    store = RedisStore(RedisSettings(address=f"127.0.0.1:{free_port()}", timeout=0.05))  # nobody listens
    failed = []
    monkeypatch.setattr(store, "failed", lambda op, outcome, exc: failed.append((op, outcome)))
    charges = TokenCharges(
        store, {"chat:tokens": LimitSpec(unit="tokens", amount=5, window=60, fail_mode="open")}
    )
    await charges.charge("chat:tokens", (("client_key", "k"),), 10)
    await store.close()
    assert failed == [("token_charge", "lost")]


# ---- the bootstrap -------------------------------------------------------------------------
def test_the_route_filter_is_given_what_naming_the_client_needs(tmp_path):
    by_header = route_filter(render_config(tmp_path, config()))
    assert by_header["metadata_options"]["forwarding_namespaces"] == {"untyped": [wire.RATELIMIT_KEYS]}
    assert wire.SOURCE_ADDRESS not in by_header["request_attributes"]
    by_address = route_filter(render_config(tmp_path, config("{clientAddress: true}")))
    assert wire.SOURCE_ADDRESS in by_address["request_attributes"]
    assert "forwarding_namespaces" not in by_address["metadata_options"]
    no_budget = route_filter(render_config(tmp_path, config().replace("  tokenBudget:", "  # tokenBudget:")))
    assert "forwarding_namespaces" not in no_budget["metadata_options"]
    assert wire.SOURCE_ADDRESS not in no_budget["request_attributes"]


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda doc: route_filter(doc)["metadata_options"].pop("forwarding_namespaces"),
            "metadata_options.forwarding_namespaces.untyped must include aigw.ratelimit",
        ),
        (
            lambda doc: doc["node"]["metadata"]["aigw"]["rateLimits"].pop("chat:tokens"),
            "tokenCharge names limit 'chat:tokens', which is not a token limit",
        ),
    ],
)
def test_a_bootstrap_that_could_not_charge_a_budget_is_refused(tmp_path, change, message):
    doc = copy.deepcopy(render_config(tmp_path, config()))
    change(doc)
    with pytest.raises(ConfigError) as exc:
        build_config(doc)
    assert message in str(exc.value)


def test_a_client_address_budget_needs_the_source_address_attribute(tmp_path):
    doc = render_config(tmp_path, config("{clientAddress: true}"))
    route_filter(doc)["request_attributes"].remove(wire.SOURCE_ADDRESS)
    with pytest.raises(ConfigError) as exc:
        build_config(doc)
    assert f"request_attributes must include {wire.SOURCE_ADDRESS}" in str(exc.value)


def test_token_charge_is_not_written_by_hand_in_a_gateway_config(tmp_path):
    text = config().replace(
        "  tokenBudget:", "  policies: {tokenCharge: {limit: chat:tokens, key: {generic: x}}}\n  tokenBudget:"
    )
    with pytest.raises(GatewayConfigError) as exc:
        render_config(tmp_path, text)
    assert any("'tokenCharge' is written by aigw render" in p for p in exc.value.problems)
