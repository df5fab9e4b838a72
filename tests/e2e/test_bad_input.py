"""Every bad input gets an OpenAI-style JSON error with the right status, and the provider
is never called."""

import pytest

pytestmark = pytest.mark.e2e

OK = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def assert_error(r, status: int, code: str | None = None, param: str | None = None):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"]
    if code is not None:
        assert err["code"] == code
    if param is not None:
        assert err["param"] == param
    return err


@pytest.mark.parametrize(
    "raw, code, param",
    [
        (b'{"model": "m", "messages": [', "invalid_json", None),
        (b"not json at all", "invalid_json", None),
        (b"[1, 2, 3]", "invalid_request_body", None),
        (b'"a string"', "invalid_request_body", None),
        (b"null", "invalid_request_body", None),
        (b'{"model": "m"}', "missing_required_parameter", "messages"),
        (b'{"model": "m", "messages": "hello"}', "invalid_type", "messages"),
        (b'{"model": "m", "messages": {"role": "user"}}', "invalid_type", "messages"),
        (b'{"model": "m", "messages": []}', "invalid_value", "messages"),
        (
            b'{"model": "m", "messages": [{"role": "wizard", "content": "x"}]}',
            "invalid_value",
            "messages[0].role",
        ),
        (
            b'{"model": "m", "messages": [{"role": "user"}]}',
            "missing_required_parameter",
            "messages[0].content",
        ),
        (b'{"model": 42, "messages": [{"role": "user", "content": "x"}]}', "invalid_type", "model"),
        (
            b'{"model": "m", "stream": "yes", "messages": [{"role": "user", "content": "x"}]}',
            "invalid_type",
            "stream",
        ),
    ],
)
def test_malformed_bodies_are_400(mock_stack, raw, code, param):
    err = assert_error(mock_stack.post(raw=raw), 400, code, param)
    assert err["type"] == "invalid_request_error"
    assert mock_stack.mock.requests == []


def test_empty_body_is_400(mock_stack):
    assert_error(mock_stack.post(raw=b""), 400, "invalid_json")
    assert mock_stack.mock.requests == []


def test_missing_model_without_backend_model_is_400(mock_stack):
    r = mock_stack.post({"messages": [{"role": "user", "content": "x"}]})
    assert_error(r, 400, "model_required", "model")
    assert mock_stack.mock.requests == []


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
)
def test_non_json_content_type_is_415(mock_stack, content_type):
    import orjson

    r = mock_stack.post(raw=orjson.dumps(OK), headers={"content-type": content_type})
    assert_error(r, 415, "unsupported_media_type")
    assert mock_stack.mock.requests == []


def test_body_over_limit_is_413_by_content_length(mock_stack):
    big = {"model": "m", "messages": [{"role": "user", "content": "a" * (4 * 1024 * 1024 + 10)}]}
    assert_error(mock_stack.post(big), 413, "request_too_large")
    assert mock_stack.mock.requests == []


def post_chunked(stack, body: bytes):
    """Send without content-length, so only the body's actual size can be checked."""
    import httpx

    def chunks():
        for i in range(0, len(body), 65536):
            yield body[i : i + 65536]

    return httpx.post(
        stack.url + "/v1/chat/completions",
        content=chunks(),
        headers={"content-type": "application/json"},
        timeout=20,
    )


def test_chunked_body_over_limit_is_413(mock_stack):
    import orjson

    body = orjson.dumps(
        {"model": "m", "messages": [{"role": "user", "content": "a" * (4 * 1024 * 1024 + 10)}]}
    )
    assert_error(post_chunked(mock_stack, body), 413, "request_too_large")
    assert mock_stack.mock.requests == []


def test_body_over_envoy_buffer_is_413_json(mock_stack):
    """Beyond the listener's buffer Envoy itself answers; it is still a JSON error."""
    body = b'{"model": "m", "messages": [{"role": "user", "content": "' + b"a" * (9 * 1024 * 1024) + b'"}]}'
    assert_error(post_chunked(mock_stack, body), 413, "request_too_large")
    assert mock_stack.mock.requests == []


def test_wrong_method_is_405(mock_stack):
    import httpx

    r = httpx.get(mock_stack.url + "/v1/chat/completions", timeout=10)
    assert_error(r, 405, "method_not_allowed")


def test_unknown_path_is_404_json(mock_stack):
    import httpx

    r = httpx.get(mock_stack.url + "/v1/models", timeout=10)
    assert_error(r, 404, "unknown_url")


def test_openai_sdk_sees_bad_request_error(mock_stack):
    import openai

    with pytest.raises(openai.BadRequestError) as exc:
        mock_stack.client().chat.completions.create(model="m", messages=[{"role": "user"}])
    assert exc.value.code == "missing_required_parameter"
    assert mock_stack.mock.requests == []
