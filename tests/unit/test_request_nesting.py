"""A request nested deeper than the gateway can write back is a clear 400 (canonical.py,
MAX_NESTING): orjson reads 1024 levels but writes 254, and the gateway writes every
request it changes, so such a request used to fail there as a 500."""

import orjson
import pytest

from extproc.canonical import MAX_NESTING, parse_request
from extproc.errors import GatewayError
from extproc.providers import PROVIDERS
from tests.provider_helpers import make_provider

AUTH = {"secretRef": {"inline": "k"}}


def nested(depth: int, leaf: object = "x") -> object:
    """A value `depth` levels of objects and arrays deep, alternating."""
    value = leaf
    for level in range(depth):
        value = {"k": value} if level % 2 else [value]
    return value


def body(**fields: object) -> bytes:
    return orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields})


def raw_body_with_metadata(depth: int) -> bytes:
    """Too deep for orjson.dumps to write, so spelled out as text."""
    inner = '{"k":' * depth + '"x"' + "}" * depth
    return b'{"model":"m","messages":[{"role":"user","content":"hi"}],"metadata":' + inner.encode() + b"}"


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 300, 1000])
def test_a_request_nested_too_deep_is_a_400_naming_the_limit(depth):
    with pytest.raises(GatewayError) as err:
        parse_request(raw_body_with_metadata(depth))
    assert (err.value.status, err.value.code) == (400, "invalid_request_body")
    assert str(MAX_NESTING) in err.value.message


def test_the_limit_counts_arrays_and_nesting_anywhere_in_the_request():
    deep = nested(MAX_NESTING)  # with the request and its tools list, past the limit
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "x": deep}}}]
    with pytest.raises(GatewayError) as err:
        parse_request(body(tools=tools))
    assert err.value.status == 400


def test_a_request_at_the_limit_is_accepted_and_can_be_written_back_after_translation():
    """Every provider's translation of a request at the limit still serialises."""
    schema = nested(MAX_NESTING - 6, {"type": "string"})
    req_body = body(
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "d": schema}}}]
    )
    req = parse_request(req_body)
    for name in PROVIDERS:
        settings = {"provider": name, "model": "m-1", "auth": AUTH}
        if name == "azure-openai":
            settings |= {"deployment": "d", "apiVersion": "2024-10-21"}
        if name == "vertex-ai":
            settings |= {"project": "p", "location": "us-central1"}
        try:
            provider = make_provider(settings)
        except Exception as exc:  # a provider needing other settings: say which
            pytest.fail(f"{name}: {exc}")
        translated = provider.translate_request(req, "m-1")
        assert orjson.dumps(translated)


def test_many_brackets_side_by_side_are_not_deep():
    """The cheap gate only counts brackets; the walk measures depth."""
    req = parse_request(body(messages=[{"role": "user", "content": [{"type": "text", "text": "x"}]}] * 500))
    assert len(req["messages"]) == 500
