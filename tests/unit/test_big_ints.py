"""Integers beyond 64 bits are refused with a 400, never silently rounded to floats.

orjson keeps integers in [-2**63, 2**64 - 1] exact and parses larger ones as floats, so
without the check a `seed` of 2**70 reached the provider as 1.1805916207174113e21.
"""

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.canonical import INT_MAX, INT_MIN, parse_request
from extproc.errors import GatewayError
from tests.hypothesis_profiles import examples

MESSAGES = [{"role": "user", "content": "hi"}]
MARKER = "__out_of_range_here__"  # longer than any generated string


def body_with(**fields: Any) -> bytes:
    return (
        orjson.dumps({"messages": MESSAGES})[:-1]
        + b"".join(
            b"," + orjson.dumps(k) + b":" + (v if isinstance(v, bytes) else orjson.dumps(v))
            for k, v in fields.items()
        )
        + b"}"
    )


def refused(body: bytes) -> GatewayError:
    with pytest.raises(GatewayError) as exc:
        parse_request(body)
    assert exc.value.status == 400 and exc.value.code == "invalid_value"
    return exc.value


@given(
    st.one_of(
        st.integers(),
        st.sampled_from([INT_MIN, INT_MIN - 1, INT_MAX, INT_MAX + 1, 2**63 - 1, 2**63, 10**19, -(10**19)]),
    )
)
def test_a_seed_is_exact_or_refused(n):
    body = body_with(seed=str(n).encode())
    if INT_MIN <= n <= INT_MAX:
        req = parse_request(body)
        assert req["seed"] == n and type(req["seed"]) is int
        # What the route and upstream filters send on is exact too.
        assert orjson.loads(orjson.dumps(req))["seed"] == n
    else:
        err = refused(body)
        assert err.param == "seed" and str(n)[:30] in err.message


def test_the_issue_case():
    err = refused(body_with(seed=str(2**70).encode()))
    assert err.param == "seed"
    assert "1180591620717411303424" in err.message


def test_a_huge_literal_is_refused_without_converting_it():
    # int() of a 4000-digit literal is slow and Python limits it: never needed.
    err = refused(body_with(n=b"9" * 300))
    assert err.param == "n" and err.message.count("9") < 100


@pytest.mark.parametrize(
    "extra",
    [
        {"x": 1e30},  # a float literal: the client's choice
        {"x": 0.12345678901234567890123},  # a long fraction
        {"x": 1.5e-30},
        {"user": "order 123456789012345678901234567890"},  # digits inside a string
        {"user": 'quote \\" 12345678901234567890123 \\\\'},  # escapes inside a string
        {"metadata": {"12345678901234567890123": "key"}},
    ],
)
def test_long_digit_runs_that_are_not_integers_pass(extra):
    body = body_with(**extra)
    assert parse_request(body) == orjson.loads(body)


def test_a_raw_float_literal_with_a_long_mantissa_passes():
    body = body_with(x=b"12345678901234567890123.5", y=b"12345678901234567890123e2")
    req = parse_request(body)
    assert isinstance(req["x"], float) and isinstance(req["y"], float)


def test_nested_integers_are_named_by_path():
    tool = {
        "type": "function",
        "function": {
            "name": "f",
            "parameters": {"type": "object", "properties": {"a": {"type": "integer", "maximum": 1}}},
        },
    }
    body = body_with(tools=[tool]).replace(b'"maximum":1', b'"maximum":' + b"1" + b"0" * 25)
    err = refused(body)
    assert err.param == "tools[0].function.parameters.properties.a.maximum"


# Random JSON with in-range integers, floats and digit-heavy strings: never refused, and
# parsed exactly; one out-of-range integer anywhere in it: refused, naming where.
_text = st.one_of(st.text(max_size=12), st.text(alphabet='0123456789"\\ -.eE:,[', max_size=40))
_json = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(INT_MIN, INT_MAX),
        st.floats(min_value=-1e18, max_value=1e18),
        _text,
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=25,
)


@settings(max_examples=examples(300))
@given(_json)
def test_random_documents_pass_unchanged(doc):
    body = body_with(extra=doc)
    assert parse_request(body)["extra"] == orjson.loads(orjson.dumps(doc))


@settings(max_examples=examples(300))
@given(
    _json,
    st.lists(st.one_of(st.text(alphabet="abc.", min_size=1, max_size=3), st.integers(0, 2)), max_size=4),
    st.one_of(st.integers(INT_MAX + 1), st.integers(max_value=INT_MIN - 1)),
)
def test_an_out_of_range_integer_anywhere_is_refused(doc, where, big):
    value: Any = MARKER
    path = "extra"
    for step in where:
        path += f"[{step}]" if isinstance(step, int) else f".{step}"
    for step in reversed(where):
        value = [None] * step + [value] if isinstance(step, int) else {step: value}
    body = body_with(extra=value, other=doc).replace(b'"' + MARKER.encode() + b'"', str(big).encode())
    assert refused(body).param == path
