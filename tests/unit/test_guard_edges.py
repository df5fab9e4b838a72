"""Guard edge cases found in review: every text a client or provider sees is guarded,
and what the guards cannot read fails closed."""

import asyncio
from typing import Any

import orjson
import pytest

from extproc.accounting import Accounting, _model_label
from extproc.backend_health import retry_after_seconds
from extproc.errors import GatewayError
from extproc.guarded_stream import response_stream
from extproc.guards.config import RequestGuardConfig, ResponseGuardConfig
from extproc.guards.holdback import CHAR_RUNS
from extproc.guards.pipeline import RequestGuards, ResponseGuards
from extproc.guards.stream_guard import StreamRejected, StreamTextGuard
from extproc.response_stream import ResponseStream
from tests.provider_helpers import chunks_of

EMAIL = {"regex": {"action": "MASK", "builtins": ["EMAIL"]}}


def run(coro):
    return asyncio.run(coro)


# ---- request side: all text fields --------------------------------------------------------


@pytest.mark.parametrize(
    "message, where",
    [
        (
            {"role": "user", "content": [{"type": "refusal", "refusal": "mail alice@example.com"}]},
            ("content", 0, "refusal"),
        ),
        (
            {"role": "system", "content": [{"type": "note", "text": "mail alice@example.com"}]},
            ("content", 0, "text"),
        ),
        ({"role": "assistant", "content": None, "refusal": "mail alice@example.com"}, ("refusal",)),
        (
            {"role": "assistant", "content": "ok", "reasoning_content": "mail alice@example.com"},
            ("reasoning_content",),
        ),
    ],
)
def test_request_guard_reads_every_text_field(message, where):
    guards = RequestGuards(RequestGuardConfig.model_validate(EMAIL), "r")
    req = {"messages": [message]}
    assert run(guards.apply(req, {}))
    node = req["messages"][0]
    for key in where:
        node = node[key]
    assert node == "mail <EMAIL>"


def test_request_guard_rejects_on_a_refusal_part():
    guards = RequestGuards(
        RequestGuardConfig.model_validate({"regex": {"action": "REJECT", "builtins": ["EMAIL"]}}), "r"
    )
    with pytest.raises(GatewayError):
        run(
            guards.apply(
                {
                    "messages": [
                        {"role": "user", "content": [{"type": "refusal", "refusal": "alice@example.com"}]}
                    ]
                },
                {},
            )
        )


# ---- JSON responses -------------------------------------------------------------------------


def response_guards(cfg=None, window=256):
    return ResponseGuards(ResponseGuardConfig.model_validate({**(cfg or EMAIL), "streamWindow": window}), "r")


def test_json_logprobs_dropped_and_reasoning_masked():
    completion: dict[str, Any] = {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "x", "reasoning_content": "bob@example.com"},
                "logprobs": {"content": [{"token": "bob@example.com"}]},
            }
        ]
    }
    assert run(response_guards().apply(completion, {}))
    choice = completion["choices"][0]
    assert choice["logprobs"] is None
    assert choice["message"]["reasoning_content"] == "<EMAIL>"


@pytest.mark.parametrize(
    "completion",
    [{"choices": {"0": "x"}}, {"choices": ["text"]}, {"choices": [{"message": "bob@example.com"}]}],
)
def test_json_shapes_the_guard_cannot_read_are_refused(completion):
    with pytest.raises(GatewayError) as exc:
        run(response_guards().apply(completion, {}))
    assert exc.value.status == 502 and exc.value.code == "unguardable_response"


# ---- streams --------------------------------------------------------------------------------


def chunk(delta, finish=None, **extra):
    return (
        b"data: "
        + orjson.dumps(
            {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "m",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, **extra}],
            }
        )
        + b"\n\n"
    )


def stream(data: bytes, guards=None, strip_usage=False) -> tuple[bytes, ResponseStream]:
    rs = response_stream("r", guards if guards is not None else response_guards(), strip_usage, {})
    return run(rs.feed(data, True)), rs


def test_stream_logprobs_never_carry_masked_tokens():
    out, _ = stream(
        chunk({"content": "mail bob@exa"}, logprobs={"content": [{"token": "bob@exa"}]})
        + chunk({"content": "mple.com ok"}, logprobs={"content": [{"token": "mple.com"}]})
        + chunk({}, "stop")
        + b"data: [DONE]\n\n"
    )
    assert b"bob@" not in out and b"example" not in out
    assert all(
        c["choices"][0]["logprobs"] is None
        for c in chunks_of(out)
        if isinstance(c, dict) and c.get("choices")
    )


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning", "refusal"])
def test_stream_guards_reasoning_and_refusal_deltas(field):
    out, _ = stream(
        chunk({field: "ask bob@exa"})
        + chunk({field: "mple.com now"})
        + chunk({}, "stop")
        + b"data: [DONE]\n\n"
    )
    assert b"bob@" not in out
    text = "".join(
        c["choices"][0]["delta"].get(field) or ""
        for c in chunks_of(out)
        if isinstance(c, dict) and c.get("choices")
    )
    assert text == "ask <EMAIL> now"


def test_stream_content_as_parts_is_guarded():
    out, _ = stream(chunk({"content": [{"type": "text", "text": "bob@example.com x"}]}) + chunk({}, "stop"))
    assert b"bob@" not in out


@pytest.mark.parametrize(
    "event",
    [
        b"data: not json bob@example.com\n\n",
        b'data: ["bob@example.com"]\n\n',
        chunk("bob@example.com"),
        b'data: {"choices": {"0": 1}}\n\n',
    ],
)
def test_unreadable_events_fail_closed_when_guarded(event):
    out, rs = stream(chunk({"content": "hi "}) + event + chunk({}, "stop") + b"data: [DONE]\n\n")
    assert b"bob@" not in out
    chunks = chunks_of(out)
    assert chunks[-1] == "[DONE]" and chunks[-2]["error"]["code"] == "unguardable_response"
    assert rs.terminated


def test_unknown_events_without_choices_are_not_passed_unread():
    out, _ = stream(chunk({"content": "hi"}) + b'data: {"note": "bob@example.com"}\n\n' + chunk({}, "stop"))
    assert b"bob@" not in out


def test_provider_error_message_is_masked():
    out, _ = stream(
        chunk({"content": "hi"}) + b'data: {"error": {"message": "bad key for bob@example.com"}}\n\n'
    )
    assert b"bob@" not in out and b"<EMAIL>" in out


def test_text_after_a_tool_call_is_still_released():
    tool = {
        "tool_calls": [
            {"index": 0, "id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ]
    }
    out, _ = stream(
        chunk({"content": "first "})
        + chunk(tool)
        + chunk({"content": "then mail bob@example.com"})
        + b"data: [DONE]\n\n"
    )
    text = "".join(
        c["choices"][0]["delta"].get("content") or ""
        for c in chunks_of(out)
        if isinstance(c, dict) and c.get("choices")
    )
    assert text == "first then mail <EMAIL>"


def test_usage_is_still_counted_after_a_guard_ends_the_stream():
    g = response_guards({"regex": {"action": "REJECT", "builtins": ["EMAIL"]}})
    usage = (
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],'
        b'"usage":{"prompt_tokens":9,"completion_tokens":941,"total_tokens":950}}\n\n'
    )
    out, rs = stream(
        chunk({"content": "mail bob@example.com ok"}) + chunk({}, "stop") + usage + b"data: [DONE]\n\n", g
    )
    assert rs.terminated and b"bob@" not in out
    assert rs.usage is not None
    assert rs.usage["total_tokens"] == 950


def test_usage_on_choice_chunks_is_stripped_when_only_the_gateway_asked():
    out, _ = stream(
        chunk(
            {"content": "hi"},
            "stop",
        ).replace(
            b'"model":"m"', b'"model":"m","usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}'
        ),
        None,
        strip_usage=True,
    )
    assert b'"usage"' not in out


def test_non_event_stream_body_fails_closed_when_guarded():
    out, _ = stream(b'{"choices":[{"message":{"content":"bob@example.com"}}]}')
    assert b"bob@" not in out and b"unguardable_response" in out


# ---- the window ------------------------------------------------------------------------------

KEY_POLICY = {
    "regex": {
        "action": "MASK",
        "builtins": ["CREDIT_CARD", "IBAN_CODE"],
        "matches": [
            {"pattern": r"-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----", "name": "KEY"}
        ],
    }
}


def feed_all(g, text, step=5, reject=False):
    s = StreamTextGuard(g.scanner, g.holdback, g.config.stream_window, reject)
    return "".join(s.feed(text[i : i + step])[0] for i in range(0, len(text), step)) + s.finish()[0]


def test_a_match_longer_than_the_window_is_never_released():
    g = response_guards(KEY_POLICY, window=32)
    key = (
        "here: -----BEGIN PRIVATE KEY-----\n"
        + "MIIEvQIBADANBgkqhkiG9w0B" * 6
        + "\n-----END PRIVATE KEY----- done"
    )
    out = feed_all(g, key)
    assert out == "here: <KEY> done"
    with pytest.raises(StreamRejected):
        feed_all(g, key, reject=True)


def test_window_cut_inside_a_card_number_masks_it():
    g = response_guards(KEY_POLICY, window=16)
    assert feed_all(g, "card 4111-1111-1111-1111 ok", step=3) == "card <CREDIT_CARD> ok"


def test_iban_with_dashes_is_masked_in_streams():
    g = response_guards(KEY_POLICY)
    assert feed_all(g, "iban DE89-3704-0044-0532-0130-00 ok", step=4) == "iban <IBAN_CODE> ok"


@pytest.mark.parametrize("entity", sorted(CHAR_RUNS))
def test_char_runs_cover_presidio_patterns(entity):
    """Every character a Presidio pattern for the entity can match is in its run set."""
    import re

    from extproc.guards.presidio_engine import _recognizer_classes

    cls = _recognizer_classes()[entity]
    chars = re.compile(CHAR_RUNS[entity][0])
    for p in getattr(cls, "PATTERNS", []):
        # Separator characters a pattern's character classes accept must be in the run set
        # (lookarounds aside: they are not part of the match).
        body = re.sub(r"\(\?<?[!=][^)]*\)", "", p.regex)
        for cls_text in set(re.findall(r"\[([^\]]*)\]", body)):
            klass = re.compile(f"[{cls_text}]")
            for ch in " -./()+:":
                if klass.match(ch):
                    assert chars.match(ch), f"{entity}: {ch!r} of pattern {p.name} missing from the run set"


# ---- accounting and Retry-After ---------------------------------------------------------------


def test_negative_or_non_integer_usage_is_ignored():
    acct = Accounting("r")
    for usage in (
        {"prompt_tokens": -5, "completion_tokens": 3},
        {"prompt_tokens": True, "completion_tokens": 1},
        {"prompt_tokens": "5", "completion_tokens": 1},
    ):
        acct.take_usage(usage)
    assert acct.total_tokens is None
    acct.record()  # must not raise


def test_reasoning_tokens_are_counted_as_a_share_of_output():
    from prometheus_client import REGISTRY

    acct = Accounting("reasoning-route")
    acct.provider, acct.backend, acct.request_model, acct.response_model = "gemini", "b", "gm", "gm"
    acct.take_usage(
        {"prompt_tokens": 7, "completion_tokens": 30, "completion_tokens_details": {"reasoning_tokens": 20}}
    )
    assert (acct.total_tokens, acct.reasoning_tokens) == (37, 20)
    meta = acct.dynamic_metadata()["aigw"]
    assert (meta["reasoning_tokens"], meta["output_tokens"], meta["total_tokens"]) == (20, 30, 37)
    acct.record()
    labels = {
        "route": "reasoning-route",
        "gen_ai_provider_name": "gemini",
        "backend": "b",
        "gen_ai_request_model": "gm",
        "gen_ai_response_model": "gm",
    }
    got = {
        kind: REGISTRY.get_sample_value("aigw_tokens_total", {**labels, "gen_ai_token_type": kind})
        for kind in ("output", "reasoning", "total")
    }
    assert got == {"output": 30.0, "reasoning": 20.0, "total": 37.0}


@pytest.mark.parametrize(
    "details", [None, {}, {"reasoning_tokens": -1}, {"reasoning_tokens": 99}, {"reasoning_tokens": "5"}]
)
def test_missing_or_impossible_reasoning_counts_are_not_invented(details):
    acct = Accounting("r")
    acct.take_usage({"prompt_tokens": 1, "completion_tokens": 10, "completion_tokens_details": details})
    assert acct.total_tokens == 11 and acct.reasoning_tokens is None
    assert "reasoning_tokens" not in acct.dynamic_metadata()["aigw"]


def test_model_labels_are_bounded():
    import extproc.accounting as a

    before = set(a._seen_models)
    try:
        a._seen_models.clear()
        names = [_model_label(f"client-invented-{i}") for i in range(a._MODEL_LABELS_MAX + 50)]
        assert len(set(names)) == a._MODEL_LABELS_MAX + 1 and names[-1] == "other"
        assert _model_label("x" * 500) in ("other",)
    finally:
        a._seen_models.clear()
        a._seen_models.update(before)


def test_retry_after_http_date_in_utc():
    import time

    future = time.strftime("%a, %d %b %Y %H:%M:%S -0000", time.gmtime(time.time() + 120))
    seconds = retry_after_seconds({"retry-after": future})
    assert seconds is not None and 100 < seconds <= 121
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({"retry-after": "soon"}) is None
