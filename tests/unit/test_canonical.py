"""Tests for extproc.canonical: validation of OpenAI chat-completions request bodies."""

from __future__ import annotations

import copy

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extproc.canonical import (
    ROLES,
    check_content_type,
    message_text,
    parse_request,
    validate_request,
    wants_stream,
)
from extproc.errors import GatewayError
from tests.hypothesis_profiles import examples

# ---------------------------------------------------------------------------------------
# helpers


REMOVE = object()  # pass as an override to drop the key (None is a value that gets sent)


def req(**overrides):
    """A minimal valid request, with top-level fields overridden."""
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    for k, v in overrides.items():
        if v is REMOVE:
            body.pop(k, None)
        else:
            body[k] = v
    return body


def with_message(msg, *, before=()):
    return req(messages=[*before, msg])


def reject(body, *, status=400, code, param, mentions=None) -> GatewayError:
    """parse_request must refuse `body` (dict -> JSON, or raw bytes) exactly like this."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    with pytest.raises(GatewayError) as info:
        parse_request(raw)
    err = info.value
    assert err.status == status, err.message
    assert err.code == code, err.message
    assert err.param == param, err.message
    assert err.type == "invalid_request_error"
    # the message names the offending field
    for name in ([param] if param else []) + ([mentions] if mentions else []):
        assert name in err.message, (name, err.message)
    # and the client-visible body carries the same values
    payload = orjson.loads(err.body())["error"]
    assert payload == {"message": err.message, "type": "invalid_request_error", "param": param, "code": code}
    # validate_request on an already-parsed dict agrees with parse_request
    if not isinstance(body, bytes):
        with pytest.raises(GatewayError) as info2:
            validate_request(copy.deepcopy(body))
        assert (info2.value.status, info2.value.code, info2.value.param) == (status, code, param)
    return err


def accept(body) -> dict:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    out = parse_request(raw)
    assert isinstance(out, dict)
    assert out == orjson.loads(raw)  # nothing added, removed or rewritten
    return out


# ---------------------------------------------------------------------------------------
# body-level rejections


def test_empty_body():
    err = reject(b"", code="invalid_json", param=None)
    assert "empty" in err.message


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"{'messages': []}",
        b"not json",
        b'{"messages": [}',
        b'{"a": 1,}',
        b"\xff\xfe{}",
        b"NaN",
        b"{} {}",
    ],
)
def test_malformed_json(raw):
    err = reject(raw, code="invalid_json", param=None)
    assert "not valid JSON" in err.message


@pytest.mark.parametrize(
    "raw, kind",
    [
        (b"[]", "an array"),
        (b'[{"role": "user", "content": "hi"}]', "an array"),
        (b'"hello"', "a string"),
        (b"42", "a number"),
        (b"1.5", "a number"),
        (b"null", "null"),
        (b"true", "a boolean"),
    ],
)
def test_non_object_json(raw, kind):
    err = reject(raw, code="invalid_request_body", param=None)
    assert "JSON object" in err.message
    assert kind in err.message


def test_deeply_nested_json_is_a_400_not_a_crash():
    reject(b"[" * 5000 + b"]" * 5000, code="invalid_json", param=None)


# ---------------------------------------------------------------------------------------
# messages


def test_missing_messages():
    reject(req(messages=REMOVE), code="missing_required_parameter", param="messages")


def test_null_messages():
    reject(req(messages=None), code="missing_required_parameter", param="messages")


def test_empty_messages():
    err = reject(req(messages=[]), code="invalid_value", param="messages")
    assert "at least one" in err.message


@pytest.mark.parametrize(
    "value, kind",
    [
        ("hi", "a string"),
        ({"role": "user", "content": "hi"}, "an object"),
        (3, "a number"),
        (True, "a boolean"),
    ],
)
def test_messages_not_an_array(value, kind):
    err = reject(req(messages=value), code="invalid_type", param="messages")
    assert kind in err.message


@pytest.mark.parametrize(
    "msg, kind",
    [
        ("hello", "a string"),
        (None, "null"),
        (1, "a number"),
        ([], "an array"),
        (False, "a boolean"),
    ],
)
def test_message_not_an_object(msg, kind):
    err = reject(with_message(msg), code="invalid_type", param="messages[0]")
    assert kind in err.message


def test_error_points_at_the_right_message_index():
    good = {"role": "system", "content": "be nice"}
    reject(req(messages=[good, good, "bad"]), code="invalid_type", param="messages[2]")


@pytest.mark.parametrize("role", ["robot", "", "User", "SYSTEM", None, 3, True])
def test_bad_role(role):
    msg = {"role": role, "content": "hi"}
    err = reject(with_message(msg), code="invalid_value", param="messages[0].role")
    for r in ROLES:
        assert r in err.message  # the message lists what is allowed


def test_missing_role():
    reject(with_message({"content": "hi"}), code="invalid_value", param="messages[0].role")


@pytest.mark.parametrize("role", [[], ["user"], {}, {"x": 1}])
def test_unhashable_role_is_a_400(role):
    reject(with_message({"role": role, "content": "hi"}), code="invalid_value", param="messages[0].role")


@pytest.mark.parametrize("role", ["user", "system", "developer", "tool", "function"])
def test_content_required_for_non_assistant_roles(role):
    msg = {"role": role, "tool_call_id": "call_1"} if role == "tool" else {"role": role}
    err = reject(with_message(msg), code="missing_required_parameter", param="messages[0].content")
    assert role in err.message


def test_null_content_for_user_rejected():
    reject(
        with_message({"role": "user", "content": None}),
        code="missing_required_parameter",
        param="messages[0].content",
    )


@pytest.mark.parametrize("content", [42, 1.5, True, {"type": "text", "text": "hi"}])
def test_content_of_wrong_type(content):
    reject(
        with_message({"role": "user", "content": content}), code="invalid_type", param="messages[0].content"
    )


@pytest.mark.parametrize(
    "part",
    [
        "hi",
        3,
        None,
        [],
        {"text": "no type"},
        {"type": None, "text": "x"},
        {"type": 3},
    ],
)
def test_content_part_without_string_type(part):
    msg = {"role": "user", "content": [{"type": "text", "text": "ok"}, part]}
    err = reject(with_message(msg), code="invalid_type", param="messages[0].content[1]")
    assert "type" in err.message


@pytest.mark.parametrize(
    "part",
    [
        {"type": "text"},
        {"type": "text", "text": None},
        {"type": "text", "text": 5},
        {"type": "text", "text": ["a"]},
    ],
)
def test_text_part_without_text_string(part):
    msg = {"role": "user", "content": [part]}
    reject(with_message(msg), code="invalid_type", param="messages[0].content[0].text")


@pytest.mark.parametrize("tool_calls", ["call", {"function": {"name": "f"}}, 1, True])
def test_tool_calls_not_an_array(tool_calls):
    msg = {"role": "assistant", "content": None, "tool_calls": tool_calls}
    reject(with_message(msg), code="invalid_type", param="messages[0].tool_calls")


@pytest.mark.parametrize(
    "call",
    [
        "call_1",
        None,
        {},
        {"id": "c", "type": "function"},
        {"function": "f"},
        {"function": {}},
        {"function": {"name": None}},
        {"function": {"name": 3}},
        {"function": {"arguments": "{}"}},
    ],
)
def test_bad_tool_call_entry(call):
    good = {"id": "c0", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    msg = {"role": "assistant", "content": None, "tool_calls": [good, call]}
    err = reject(with_message(msg), code="invalid_type", param="messages[0].tool_calls[1]")
    assert "function.name" in err.message


@pytest.mark.parametrize("effort", ["none", "minimal", "low", "medium", "high", "xhigh"])
def test_reasoning_effort_values_accepted(effort):
    accept({"model": "m", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": effort})


@pytest.mark.parametrize("effort", ["max", "HIGH", "", 3, True, ["low"]])
def test_reasoning_effort_bad_value(effort):
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": effort}
    reject(body, code="invalid_value", param="reasoning_effort")


@pytest.mark.parametrize("top_k", [0, -1, 2.5, "5", True])
def test_top_k_must_be_a_positive_integer(top_k):
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "top_k": top_k}
    reject(body, code="invalid_type", param="top_k")


def test_reasoning_history_accepted():
    msg = {
        "role": "assistant",
        "content": "ok",
        "reasoning_content": "thought",
        "thinking_blocks": [
            {"type": "thinking", "thinking": "thought", "signature": "sig"},
            {"type": "redacted_thinking", "data": "opaque"},
        ],
    }
    accept(with_message(msg))


@pytest.mark.parametrize("blocks", ["sig", {"type": "thinking"}, [1], [{"thinking": "t"}], [{"type": 3}]])
def test_bad_thinking_blocks(blocks):
    msg = {"role": "assistant", "content": "ok", "thinking_blocks": blocks}
    reject(with_message(msg), code="invalid_type", param="messages[0].thinking_blocks")


@pytest.mark.parametrize("value", [3, ["t"], {"text": "t"}])
def test_bad_reasoning_content(value):
    msg = {"role": "assistant", "content": "ok", "reasoning_content": value}
    reject(with_message(msg), code="invalid_type", param="messages[0].reasoning_content")


@pytest.mark.parametrize("extra", [{}, {"tool_call_id": None}, {"tool_call_id": 7}, {"tool_call_id": ["c"]}])
def test_tool_message_without_tool_call_id(extra):
    msg = {"role": "tool", "content": "42", **extra}
    reject(with_message(msg), code="missing_required_parameter", param="messages[0].tool_call_id")


# ---------------------------------------------------------------------------------------
# top-level fields


@pytest.mark.parametrize(
    "key, value, kind",
    [
        ("model", 4, "a number"),
        ("model", ["gpt"], "an array"),
        ("model", True, "a boolean"),
        ("model", {"id": "x"}, "an object"),
        ("stream", "true", "a string"),
        ("stream", 1, "a number"),
        ("stream", 0, "a number"),
        ("stream", {}, "an object"),
        ("tools", {"type": "function"}, "an object"),
        ("tools", "f", "a string"),
        ("tools", True, "a boolean"),
        ("stream_options", [], "an array"),
        ("stream_options", True, "a boolean"),
        ("stream_options", "include_usage", "a string"),
    ],
)
def test_top_level_field_of_wrong_type(key, value, kind):
    err = reject(req(**{key: value}), code="invalid_type", param=key)
    assert kind in err.message


@pytest.mark.parametrize("key", ["temperature", "top_p", "presence_penalty", "frequency_penalty"])
@pytest.mark.parametrize("value", ["0.5", True, False, [1], {"v": 1}])
def test_sampling_parameter_not_a_number(key, value):
    err = reject(req(**{key: value}), code="invalid_type", param=key)
    assert "number" in err.message


@pytest.mark.parametrize("key", ["temperature", "top_p", "presence_penalty", "frequency_penalty"])
@pytest.mark.parametrize("value", [0, 1, 0.0, 0.7, 2, -1.5, None])
def test_sampling_parameter_numbers_accepted(key, value):
    accept(req(**{key: value}))


@pytest.mark.parametrize("key", ["max_tokens", "max_completion_tokens", "n"])
@pytest.mark.parametrize("value", [0, -1, -100, 1.5, 2.0, True, False, "10", [1], {}])
def test_count_parameter_not_a_positive_integer(key, value):
    err = reject(req(**{key: value}), code="invalid_type", param=key)
    assert "positive integer" in err.message


@pytest.mark.parametrize("key", ["max_tokens", "max_completion_tokens", "n"])
@pytest.mark.parametrize("value", [1, 2, 4096, 2**40, None])
def test_count_parameter_positive_integer_accepted(key, value):
    accept(req(**{key: value}))


@pytest.mark.parametrize("stop", [5, True, {"s": 1}, ["a", 1], ["a", None], [["a"]]])
def test_bad_stop(stop):
    err = reject(req(stop=stop), code="invalid_type", param="stop")
    assert "string" in err.message


@pytest.mark.parametrize("stop", ["\n", "", ["END"], ["a", "b", "c", "d"], [], None])
def test_good_stop(stop):
    accept(req(stop=stop))


@pytest.mark.parametrize(
    "tool",
    [
        "f",
        None,
        3,
        [],
        {},
        {"type": "function"},
        {"type": "function", "function": "f"},
        {"type": "function", "function": {}},
        {"type": "function", "function": {"name": 1}},
        {"type": "function", "function": {"description": "no name"}},
    ],
)
def test_bad_tools_entry(tool):
    good = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
    err = reject(req(tools=[good, tool]), code="invalid_type", param="tools[1]")
    assert "function" in err.message and "name" in err.message


def test_messages_checked_before_other_fields():
    # Several faults: the first reported is the message one (deterministic order).
    body = req(messages=[{"role": "user"}], model=3, temperature="hot")
    reject(body, code="missing_required_parameter", param="messages[0].content")


# ---------------------------------------------------------------------------------------
# what must be accepted


def test_minimal_request():
    out = accept(req())
    assert out["messages"][0]["content"] == "hi"


def test_model_may_be_absent():
    accept(req(model=REMOVE))


def test_assistant_with_null_content_and_tool_calls():
    body = req(
        messages=[
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ]
    )
    accept(body)


def test_assistant_with_function_call_and_no_content():
    accept(
        req(
            messages=[
                {"role": "user", "content": "x"},
                {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}},
                {"role": "function", "name": "f", "content": "result"},
            ]
        )
    )


def test_assistant_with_empty_turn():
    accept(req(messages=[{"role": "user", "content": "x"}, {"role": "assistant"}]))


def test_multipart_content_with_image_url():
    accept(
        with_message(
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
                    {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                ],
            }
        )
    )


def test_empty_content_string_and_empty_parts_list():
    accept(with_message({"role": "user", "content": ""}))
    accept(with_message({"role": "user", "content": []}))


@pytest.mark.parametrize("role", sorted(ROLES))
def test_every_known_role_accepted(role):
    msg = {"role": role, "content": "x"}
    if role == "tool":
        msg["tool_call_id"] = "c"
    accept(with_message(msg))


def test_developer_role():
    accept(req(messages=[{"role": "developer", "content": "rules"}, {"role": "user", "content": "hi"}]))


def test_roles_constant():
    assert ROLES == {"system", "developer", "user", "assistant", "tool", "function"}


def test_unknown_fields_kept_untouched():
    body = req(
        stream=True,
        stream_options={"include_usage": True},
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
        seed=7,
        logit_bias={"50256": -100},
        user="u-1",
        metadata={"a": "b"},
        x_vendor_extension=[1, {"deep": [None, 1.5, "é😀"]}],
        tools=[{"type": "function", "function": {"name": "f", "strict": True}, "extra": 1}],
        tool_choice="auto",
        parallel_tool_calls=False,
    )
    body["messages"][0]["name"] = "alice"
    body["messages"][0]["unknown_msg_field"] = {"k": [1, 2]}
    out = accept(body)
    assert out["x_vendor_extension"] == [1, {"deep": [None, 1.5, "é😀"]}]
    assert out["messages"][0]["unknown_msg_field"] == {"k": [1, 2]}
    assert out["tools"][0]["extra"] == 1
    assert list(out) == list(body)  # key order preserved


def test_validate_request_does_not_mutate():
    body = req(
        tools=[{"type": "function", "function": {"name": "f"}}],
        stop=["x"],
        messages=[{"role": "user", "content": [{"type": "text", "text": "a"}]}],
    )
    snapshot = copy.deepcopy(body)
    validate_request(body)  # returns None; a rejection raises
    assert body == snapshot


def test_unicode_and_escaped_content():
    out = accept('{"messages": [{"role": "user", "content": "caf\\u00e9 😀 \\n"}]}'.encode())
    assert out["messages"][0]["content"] == "café 😀 \n"


def test_null_optional_fields_accepted():
    accept(
        req(
            model=None,
            stream=None,
            tools=None,
            stream_options=None,
            stop=None,
            temperature=None,
            max_tokens=None,
            n=None,
        )
    )


def test_empty_tools_list_accepted():
    accept(req(tools=[]))


# ---------------------------------------------------------------------------------------
# content type


@pytest.mark.parametrize(
    "value",
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        "APPLICATION/JSON",
        "  application/json  ",
        "Application/Json ; charset=utf-8",
        "application/vnd.api+json",
        "application/problem+json; charset=utf-8",
    ],
)
def test_json_content_types_accepted(value):
    check_content_type(value)  # returns None; a rejection raises


@pytest.mark.parametrize(
    "value, media",
    [
        ("text/plain", "text/plain"),
        ("text/plain; charset=utf-8", "text/plain"),
        ("application/x-www-form-urlencoded", "application/x-www-form-urlencoded"),
        ("multipart/form-data; boundary=xyz", "multipart/form-data"),
        ("application/xml", "application/xml"),
        ("application/jsonx", "application/jsonx"),
        ("application/json-seq", "application/json-seq"),
        ("application/octet-stream", "application/octet-stream"),
        ("TEXT/HTML", "text/html"),
        ("", ""),
    ],
)
def test_non_json_content_types_rejected(value, media):
    with pytest.raises(GatewayError) as info:
        check_content_type(value)
    err = info.value
    assert err.status == 415
    assert err.code == "unsupported_media_type"
    assert err.type == "invalid_request_error"
    assert err.param is None
    assert f"'{media}'" in err.message
    assert "application/json" in err.message
    assert orjson.loads(err.body())["error"]["code"] == "unsupported_media_type"


# ---------------------------------------------------------------------------------------
# message_text and wants_stream


@pytest.mark.parametrize(
    "content, expected",
    [
        ("hello", "hello"),
        ("", ""),
        (None, ""),
        ([], ""),
        ([{"type": "text", "text": "a"}], "a"),
        ([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], "a\nb"),
        (
            [
                {"type": "text", "text": "a"},
                {"type": "image_url", "image_url": {"url": "u"}},
                {"type": "text", "text": "b"},
            ],
            "a\nb",
        ),
        ([{"type": "image_url", "image_url": {"url": "u"}}], ""),
        ([{"type": "text", "text": ""}, {"type": "text", "text": "x"}], "\nx"),
        ([{"type": "text", "text": None}, {"type": "text", "text": "x"}], "x"),
        ([{"type": "input_text", "text": "not text type"}], ""),
        (42, ""),
        ({"type": "text", "text": "a"}, ""),
    ],
)
def test_message_text(content, expected):
    assert message_text(content) == expected


@pytest.mark.parametrize(
    "value, expected",
    [
        (True, True),
        (False, False),
        (None, False),
        ("true", False),
        (1, False),
    ],
)
def test_wants_stream(value, expected):
    assert wants_stream({"stream": value}) is expected


def test_wants_stream_absent():
    assert wants_stream({}) is False


# ---------------------------------------------------------------------------------------
# property tests: parse_request never fails with anything but a 400 GatewayError


def _outcome(raw: bytes):
    try:
        out = parse_request(raw)
    except GatewayError as err:
        assert err.status == 400, err
        assert err.code in {
            "invalid_json",
            "invalid_request_body",
            "missing_required_parameter",
            "invalid_type",
            "invalid_value",
        }
        assert err.param is None or err.param in err.message
        body = orjson.loads(err.body())
        assert set(body["error"]) == {"message", "type", "param", "code"}
        return err
    assert isinstance(out, dict)
    return out


@settings(max_examples=examples(400), deadline=None)
@given(st.binary(max_size=200))
def test_property_arbitrary_bytes(raw):
    _outcome(raw)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=examples(300), deadline=None)
@given(_json)
def test_property_arbitrary_json_values(value):
    _outcome(orjson.dumps(value))


_text = st.text(max_size=6)
_valid_part = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": _text}),
    st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.fixed_dictionaries({"url": _text})}),
)
_valid_content = _text | st.lists(_valid_part, max_size=3)
_valid_call = st.fixed_dictionaries(
    {
        "id": _text,
        "type": st.just("function"),
        "function": st.fixed_dictionaries({"name": _text, "arguments": _text}),
    }
)
_valid_message = st.one_of(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "developer", "user"]), "content": _valid_content}
    ),
    st.fixed_dictionaries(
        {"role": st.just("assistant")},
        optional={"content": st.none() | _valid_content, "tool_calls": st.lists(_valid_call, max_size=2)},
    ),
    st.fixed_dictionaries({"role": st.just("tool"), "tool_call_id": _text, "content": _valid_content}),
    st.fixed_dictionaries({"role": st.just("function"), "name": _text, "content": _text}),
)
_valid_tool = st.fixed_dictionaries(
    {
        "type": st.just("function"),
        "function": st.fixed_dictionaries({"name": _text}, optional={"parameters": _json}),
    }
)
_valid_request = st.fixed_dictionaries(
    {"messages": st.lists(_valid_message, min_size=1, max_size=4)},
    optional={
        "model": _text,
        "stream": st.booleans(),
        "tools": st.lists(_valid_tool, max_size=3),
        "stream_options": st.dictionaries(_text, _json, max_size=2),
        "temperature": st.floats(allow_nan=False, allow_infinity=False) | st.integers(-2, 2),
        "max_tokens": st.integers(1, 2**31),
        "n": st.integers(1, 4),
        "stop": _text | st.lists(_text, max_size=3),
        "extra": _json,
    },
)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


# Roles are replaced by any JSON (arrays and objects included) or by a valid role.
_role_json = _json | st.sampled_from(sorted(ROLES))


@st.composite
def _request(draw):
    """A valid request, then (usually) one randomly chosen node replaced or deleted."""
    body = draw(_valid_request)
    for _ in range(draw(st.integers(0, 2))):
        paths = [p for p in _paths(body) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = body
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(_role_json if path[-1] == "role" else _json)
    return body


@settings(max_examples=examples(500), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_request())
def test_property_structured_requests(body):
    snapshot = copy.deepcopy(body)
    result = _outcome(orjson.dumps(body))
    assert body == snapshot
    if isinstance(result, dict):
        # Whatever is accepted satisfies the documented invariants.
        assert result == body
        msgs = result["messages"]
        assert isinstance(msgs, list) and msgs
        for m in msgs:
            assert isinstance(m, dict) and m["role"] in ROLES
            c = m.get("content")
            assert c is None or isinstance(c, (str, list))
            if c is None:
                assert m["role"] == "assistant"
            if isinstance(c, list):
                assert all(isinstance(p, dict) and isinstance(p["type"], str) for p in c)
                assert isinstance(message_text(c), str)
            if m["role"] == "tool":
                assert isinstance(m["tool_call_id"], str)
        for t in result.get("tools") or ():
            assert isinstance(t["function"]["name"], str)
        mt = result.get("max_tokens")
        assert mt is None or (type(mt) is int and mt >= 1)
