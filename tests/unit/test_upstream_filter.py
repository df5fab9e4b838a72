"""UpstreamStream (extproc/upstream_filter.py) driven with ProcessingRequest sequences, as
Envoy's upstream ext_proc filter sends them for one attempt: no Envoy, no gRPC."""

from __future__ import annotations

import copy

import orjson
import pytest

from extproc.settings import ProcessorSettings
from extproc.upstream_filter import UpstreamStream
from tests import filter_fakes as F

SETTINGS = ProcessorSettings()
OPENAI_HOST = F.host_metadata({"name": "mock-openai", "provider": "openai"})
ANTHROPIC_HOST = F.host_metadata({"name": "ant", "provider": "anthropic"})


@pytest.fixture(scope="module")
def gw():
    return F.gateway()


async def attempt(gw, host: str, headers: dict[str, str] | None = None):
    """A new attempt: its stream, and its reply to the request headers."""
    stream = UpstreamStream(gw, SETTINGS)
    reply = await stream.request_headers(
        F.request_headers(headers or F.client_headers(), upstream_host_metadata=host, route_name="chat")
    )
    return stream, reply


# ---- request headers ------------------------------------------------------------------
async def test_request_headers_drop_client_headers_the_backend_does_not_allow(gw):
    hdrs = F.client_headers(
        anthropic_beta="prompt-caching-2024-07-31", x_forwarded_for="6.6.6.6", user_agent="OpenAI/Python 1.99"
    )
    _, reply = await attempt(gw, ANTHROPIC_HOST, hdrs)
    assert reply.WhichOneof("response") == "request_headers"
    dropped = set(F.removed(reply))
    assert {"anthropic-beta", "x-forwarded-for"} <= dropped
    assert not {"content-type", "user-agent", "x-request-id", ":path"} & dropped


async def test_unknown_host_metadata_is_refused_not_forwarded(gw):
    # Same name, another provider: a look-alike, not the configured backend.
    stream, reply = await attempt(gw, F.host_metadata({"name": "ant", "provider": "openai"}))
    status, body, _ = F.immediate(reply)
    assert status == 500 and body["error"]["code"] == "backend_not_configured"
    assert stream.backend is None


async def test_empty_request_body_is_a_400(gw):
    stream = UpstreamStream(gw, SETTINGS)
    reply = await stream.request_headers(
        F.request_headers(F.client_headers(), end_of_stream=True, upstream_host_metadata=ANTHROPIC_HOST)
    )
    status, body, _ = F.immediate(reply)
    assert status == 400 and body["error"]["code"] == "invalid_json"


# ---- request body ---------------------------------------------------------------------
async def test_request_body_translated_for_anthropic_with_path_and_credential(gw):
    stream, _ = await attempt(gw, ANTHROPIC_HOST)
    reply = await stream.request_body(
        F.request_body({**F.CANONICAL, "max_tokens": 50, "temperature": 0.5, "stop": "END"})
    )
    assert reply.WhichOneof("response") == "request_body"
    sent = F.set_headers(reply)
    assert sent[":path"] == "/v1/messages"
    assert sent["x-api-key"] == F.ANTHROPIC_KEY
    assert sent["anthropic-version"] == "2023-06-01"
    assert sent[":authority"] == "api.anthropic.com"
    assert sent["content-type"] == "application/json"
    body = F.new_body(reply)
    assert sent["content-length"] == str(len(F.common(reply).body_mutation.body))
    # The backend's configured model wins over the client's.
    assert body == {
        "model": "claude-3-5-haiku-latest",
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "max_tokens": 50,
        "temperature": 0.5,
        "stop_sequences": ["END"],
    }
    removed = F.removed(reply)
    assert "authorization" in removed and "cookie" in removed
    assert "x-api-key" not in removed  # it is set, not removed


async def test_request_body_for_openai_keeps_the_canonical_body_and_swaps_the_bearer(gw):
    stream, _ = await attempt(gw, OPENAI_HOST)
    reply = await stream.request_body(F.request_body(F.CANONICAL))
    sent = F.set_headers(reply)
    assert sent[":path"] == "/v1/chat/completions"
    assert sent["authorization"] == f"Bearer {F.OPENAI_KEY}"
    assert "authorization" not in F.removed(reply)
    assert F.new_body(reply)["messages"] == F.CANONICAL["messages"]


@pytest.mark.parametrize(
    "raw, code",
    [
        (b"{not json", "invalid_json"),
        (b'{"model": "m", "messages": "hi"}', "invalid_type"),
    ],
)
async def test_bad_request_body_is_a_400_in_openai_shape(gw, raw, code):
    stream, _ = await attempt(gw, ANTHROPIC_HOST)
    status, body, headers = F.immediate(await stream.request_body(F.request_body(raw)))
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["message"]
    assert body["error"]["code"] == code


async def test_request_anthropic_cannot_serve_is_a_400_naming_the_provider(gw):
    stream, _ = await attempt(gw, ANTHROPIC_HOST)
    status, body, _ = F.immediate(await stream.request_body(F.request_body({**F.CANONICAL, "n": 2})))
    assert status == 400
    assert body["error"]["code"] == "untranslatable_request"
    assert "anthropic" in body["error"]["message"]


async def test_retry_attempts_translate_the_same_canonical_body_independently(gw):
    """Envoy retries on another host: a new stream per attempt, each translating the
    canonical body the route filter left for its own host."""
    canonical = {**F.CANONICAL, "max_tokens": 20}
    raw = orjson.dumps(canonical)
    first, _ = await attempt(gw, OPENAI_HOST, F.client_headers(x_envoy_attempt_count="1"))
    second, _ = await attempt(gw, ANTHROPIC_HOST, F.client_headers(x_envoy_attempt_count="2"))
    one = await first.request_body(F.request_body(raw))
    two = await second.request_body(F.request_body(raw))
    assert F.set_headers(one)[":path"] == "/v1/chat/completions"
    assert F.set_headers(one)["authorization"] == f"Bearer {F.OPENAI_KEY}"
    assert "x-api-key" not in F.set_headers(one)
    assert F.new_body(one)["model"] == "gpt-4o-mini"
    assert F.set_headers(two)[":path"] == "/v1/messages"
    assert F.set_headers(two)["x-api-key"] == F.ANTHROPIC_KEY
    assert "authorization" in F.removed(two)
    assert F.new_body(two)["model"] == "claude-3-5-haiku-latest"
    assert F.new_body(two)["system"] == "Be brief."
    assert (first.attempt, second.attempt) == ("1", "2")
    # The routes' answers report the backend that answered, and which attempt it was.
    hdrs = {":status": "200", "content-type": "application/json"}
    report = F.set_headers(await second.response_headers(F.response_headers(hdrs)))
    assert report["x-aigw-backend"] == "ant" and report["x-aigw-provider"] == "anthropic"
    assert report["x-aigw-attempt"] == "2"


async def test_translation_does_not_change_the_canonical_request(gw):
    stream, _ = await attempt(gw, ANTHROPIC_HOST)
    canonical = copy.deepcopy(F.CANONICAL)
    stream.translate(canonical)
    assert canonical == F.CANONICAL


# ---- response -------------------------------------------------------------------------
@pytest.mark.parametrize("host", [OPENAI_HOST, ANTHROPIC_HOST])
@pytest.mark.parametrize(
    "status, content_type",
    [("200", "application/json"), ("200", "text/event-stream"), ("401", "application/json")],
)
async def test_the_answer_is_reported_never_read(gw, host, status, content_type):
    """The route-level filter translates the answer the client gets: the upstream filter
    only says which backend answered, and Envoy sends it no response body."""
    stream, _ = await attempt(gw, host, F.client_headers(x_envoy_attempt_count="2"))
    await stream.request_body(F.request_body(F.CANONICAL))
    reply = await stream.response_headers(
        F.response_headers({":status": status, "content-type": content_type, "content-length": "10"})
    )
    assert not reply.HasField("mode_override")
    assert F.common(reply).status == F.pb.CommonResponse.CONTINUE
    report = F.set_headers(reply)
    assert report["x-aigw-backend"] == stream.backend.name
    assert report["x-aigw-provider"] == stream.backend.provider.name and report["x-aigw-attempt"] == "2"
    assert not F.removed(reply) and not F.common(reply).HasField("body_mutation")
    assert stream.status == int(status) and stream.done
    # Should a bootstrap send the body anyway, it passes on as it came.
    passed = await stream.response_body(F.response_body(b"{}"))
    assert passed.WhichOneof("response") == "response_body"
    assert not F.common(passed).HasField("body_mutation") and not F.common(passed).HasField("header_mutation")


async def test_a_429_cools_the_backend_down_and_fails_its_health_check_at_once():
    gw = F.gateway()  # its own: a cooldown cannot be taken back
    stream, _ = await attempt(gw, ANTHROPIC_HOST)
    await stream.request_body(F.request_body(F.CANONICAL))
    reply = await stream.response_headers(
        F.response_headers({":status": "429", "retry-after": "7", "content-type": "application/json"})
    )
    assert F.set_headers(reply)["x-envoy-immediate-health-check-fail"] == "true"
    assert 6 < gw.health.remaining("ant") <= 7
