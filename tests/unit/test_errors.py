"""Tests for extproc.errors: the OpenAI error body shape and the status -> type mapping."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.errors import GatewayError, bad_request, error_body, error_type_for
from tests.hypothesis_profiles import examples


@pytest.mark.parametrize(
    "status, expected",
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (405, "invalid_request_error"),
        (408, "timeout_error"),
        (409, "conflict_error"),
        (413, "invalid_request_error"),
        (415, "invalid_request_error"),
        (422, "invalid_request_error"),
        (429, "rate_limit_error"),
    ],
)
def test_known_status_types(status, expected):
    assert error_type_for(status) == expected


@pytest.mark.parametrize("status", [402, 406, 410, 411, 418, 431, 451, 499])
def test_other_4xx_are_invalid_request_errors(status):
    assert error_type_for(status) == "invalid_request_error"


@pytest.mark.parametrize("status", [500, 501, 502, 503, 504, 529, 599])
def test_5xx_are_server_errors(status):
    assert error_type_for(status) == "server_error"


def test_error_body_shape():
    out = error_body("bad thing", status=400, code="invalid_value", param="messages")
    assert isinstance(out, bytes)
    assert orjson.loads(out) == {
        "error": {
            "message": "bad thing",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "invalid_value",
        }
    }


def test_error_body_nulls_when_code_and_param_absent():
    body = orjson.loads(error_body("boom", status=502))
    assert body == {"error": {"message": "boom", "type": "server_error", "param": None, "code": None}}
    # the keys are present with JSON null, not left out: SDKs read them unconditionally
    assert b'"param":null' in error_body("boom", status=502)
    assert b'"code":null' in error_body("boom", status=502)


def test_error_body_type_follows_status():
    assert orjson.loads(error_body("x", status=429))["error"]["type"] == "rate_limit_error"
    assert orjson.loads(error_body("x", status=401))["error"]["type"] == "authentication_error"
    assert orjson.loads(error_body("x", status=503))["error"]["type"] == "server_error"


def test_error_body_explicit_type_overrides_status():
    body = orjson.loads(error_body("x", status=400, type_="upstream_error"))
    assert body["error"]["type"] == "upstream_error"


def test_error_body_escapes_message():
    msg = 'quote " backslash \\ newline \n tab \t unicode é😀 control \x01'
    raw = error_body(msg, status=400)
    assert b"\n" not in raw  # a single-line JSON document
    assert orjson.loads(raw)["error"]["message"] == msg


def test_gateway_error_attributes():
    err = GatewayError(
        404, "no such model", code="model_not_found", param="model", headers={"x-aigw-reason": "route"}
    )
    assert isinstance(err, Exception)
    assert err.status == 404
    assert err.message == "no such model"
    assert str(err) == "no such model"
    assert err.code == "model_not_found"
    assert err.param == "model"
    assert err.type == "not_found_error"
    assert err.headers == {"x-aigw-reason": "route"}


def test_gateway_error_defaults():
    err = GatewayError(500, "oops")
    assert err.code is None
    assert err.param is None
    assert err.type == "server_error"
    assert err.headers == {}


def test_gateway_error_headers_not_shared_between_instances():
    a, b = GatewayError(500, "a"), GatewayError(500, "b")
    a.headers["x"] = "1"
    assert b.headers == {}


def test_gateway_error_type_override():
    err = GatewayError(502, "provider failed", type_="upstream_error")
    assert err.type == "upstream_error"
    assert orjson.loads(err.body())["error"]["type"] == "upstream_error"


def test_gateway_error_body():
    err = GatewayError(429, "slow down", code="rate_limited", param=None)
    assert orjson.loads(err.body()) == {
        "error": {
            "message": "slow down",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limited",
        }
    }
    assert err.body() == error_body("slow down", status=429, code="rate_limited")


def test_gateway_error_can_be_raised_and_caught():
    with pytest.raises(GatewayError, match="denied") as info:
        raise GatewayError(403, "access denied")
    assert info.value.type == "permission_error"


def test_bad_request():
    err = bad_request("'n' must be a positive integer", code="invalid_type", param="n")
    assert isinstance(err, GatewayError)
    assert err.status == 400
    assert err.type == "invalid_request_error"
    assert err.code == "invalid_type"
    assert err.param == "n"
    assert err.message == "'n' must be a positive integer"
    assert orjson.loads(err.body()) == {
        "error": {
            "message": "'n' must be a positive integer",
            "type": "invalid_request_error",
            "param": "n",
            "code": "invalid_type",
        }
    }


def test_bad_request_requires_code():
    with pytest.raises(TypeError):
        bad_request("x")  # type: ignore[call-arg]


@settings(max_examples=examples(200), deadline=None)
@given(
    status=st.integers(400, 599),
    message=st.text(max_size=50),
    code=st.none() | st.text(max_size=10),
    param=st.none() | st.text(max_size=10),
)
def test_property_body_shape(status, message, code, param):
    err = GatewayError(status, message, code=code, param=param)
    body = orjson.loads(err.body())
    assert list(body) == ["error"]
    assert body["error"] == {"message": message, "type": error_type_for(status), "param": param, "code": code}
    expected_family = "server_error" if status >= 500 else None
    if expected_family:
        assert body["error"]["type"] == expected_family
    else:
        assert body["error"]["type"].endswith("_error")
        assert body["error"]["type"] != "server_error"
