"""Response guards on what else a provider answers: its errors (which quote the request)
and JSON that repeats a key (which parsers read differently). RouteStream driven with
ProcessingRequest sequences, as in test_route_filter.py."""

from __future__ import annotations

import orjson
import pytest

from extproc.route_filter import RouteStream
from extproc.runtime.bootstrap import build_config
from extproc.settings import ProcessorSettings
from tests import filter_fakes as F
from tests.bootstraps import add_route, translate_at_route
from tests.harness import load_bootstrap

BUILTINS = ["CREDIT_CARD", "EMAIL"]
LEAK = "Invalid value 'card 4111 1111 1111 1111, mail jane.doe@example.com'"
OPENAI = {
    "name": "oai",
    "provider": "openai",
    "model": "gpt-4o-mini",
    "auth": {"secretRef": {"inline": "sk-unit-test-openai-0123456789"}},
}


def guarded(action: str) -> dict:
    return {"promptGuard": {"response": {"regex": {"action": action, "builtins": BUILTINS}}}}


@pytest.fixture(scope="module")
def gw():
    doc = load_bootstrap("mock.yaml")
    for name, backend, action in (
        ("ant-mask", F.ANTHROPIC, "MASK"),
        ("ant-reject", F.ANTHROPIC, "REJECT"),
        ("oai-mask", OPENAI, "MASK"),
        ("oai-reject", OPENAI, "REJECT"),
    ):
        add_route(
            doc, name, f"/{name}/v1/chat/completions", [{**backend, "name": name}], policy=guarded(action)
        )
    add_route(doc, "oai-open", "/oai-open/v1/chat/completions", [{**OPENAI, "name": "oai-open"}])
    translate_at_route(doc)
    return build_config(doc)


async def answered(gw, route: str, status: int):
    stream = RouteStream(gw, ProcessorSettings())
    headers = F.client_headers(f"/{route}/v1/chat/completions")
    await stream.request_headers(F.request_headers(headers, route_name=route, cluster_name=route))
    await stream.request_body(F.request_body({**F.CANONICAL, "max_tokens": 10}))
    await stream.response_headers(
        F.response_headers(
            {":status": str(status), "content-type": "application/json", "content-length": "300"}
        )
    )
    return stream


ANTHROPIC_ERROR = {"type": "error", "error": {"type": "invalid_request_error", "message": LEAK}}
OPENAI_ERROR = {"error": {"message": LEAK, "type": "invalid_request_error", "param": "jane.doe@example.com"}}


@pytest.mark.parametrize("route, error", [("ant-mask", ANTHROPIC_ERROR), ("oai-mask", OPENAI_ERROR)])
async def test_a_provider_error_quoting_the_request_is_masked(gw, route, error):
    stream = await answered(gw, route, 400)
    reply = await stream.response_body(F.response_body(error))
    body = F.common(reply).body_mutation.body
    assert b"4111" not in body and b"jane.doe" not in body
    err = orjson.loads(body)["error"]
    assert "<CREDIT_CARD>" in err["message"] and "<EMAIL>" in err["message"]
    assert err["type"] == "invalid_request_error"  # still the provider's error, in the OpenAI shape
    assert F.set_headers(reply)["content-length"] == str(len(body))
    assert stream.acct.status == 400 and stream.done


@pytest.mark.parametrize("route, error", [("ant-reject", ANTHROPIC_ERROR), ("oai-reject", OPENAI_ERROR)])
async def test_a_provider_error_quoting_a_rejected_value_is_withheld(gw, route, error):
    stream = await answered(gw, route, 400)
    reply = await stream.response_body(F.response_body(error))
    body = F.common(reply).body_mutation.body
    assert b"4111" not in body and b"jane.doe" not in body
    assert orjson.loads(body)["error"]["code"] == "content_policy_violation"
    assert stream.rejected is not None


async def test_an_error_with_nothing_to_guard_passes_as_translated(gw):
    stream = await answered(gw, "oai-mask", 429)
    error = {
        "error": {"message": "Rate limit reached", "type": "rate_limit_error", "code": "rate_limit_exceeded"}
    }
    reply = await stream.response_body(F.response_body(error))
    mutation = F.common(reply)
    body = mutation.body_mutation.body if mutation.HasField("body_mutation") else orjson.dumps(error)
    assert orjson.loads(body)["error"]["message"] == "Rate limit reached"


async def test_an_unguarded_route_passes_provider_errors_as_before(gw):
    stream = await answered(gw, "oai-open", 400)
    reply = await stream.response_body(F.response_body(OPENAI_ERROR))
    mutation = F.common(reply)
    body = mutation.body_mutation.body if mutation.HasField("body_mutation") else orjson.dumps(OPENAI_ERROR)
    assert b"jane.doe@example.com" in body


DUPLICATE = (
    b'{"id":"c1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,'
    b'"message":{"role":"assistant","content":"mail jane.doe@example.com","content":"hello"},'
    b'"finish_reason":"stop"}]}'
)


@pytest.mark.parametrize("route", ["oai-mask", "oai-reject"])
async def test_a_guarded_answer_that_repeats_a_key_reaches_the_client_written_once(gw, route):
    # The guards read the last value ("hello": nothing to mask); a client whose parser
    # keeps the first would have read the hidden email from the provider's bytes.
    stream = await answered(gw, route, 200)
    reply = await stream.response_body(F.response_body(DUPLICATE))
    body = F.common(reply).body_mutation.body
    assert body and b"jane.doe" not in body
    assert orjson.loads(body)["choices"][0]["message"]["content"] == "hello"
    assert body.count(b'"content"') == 1
    assert F.set_headers(reply)["content-length"] == str(len(body))


async def test_an_unguarded_answer_passes_as_the_provider_wrote_it(gw):
    stream = await answered(gw, "oai-open", 200)
    reply = await stream.response_body(F.response_body(DUPLICATE))
    mutation = F.common(reply)
    assert not mutation.HasField("body_mutation") or mutation.body_mutation.body == DUPLICATE
