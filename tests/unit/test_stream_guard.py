"""The streaming response guard: same result as the whole-text guard, whatever the cuts.

The property that defines done: for assistant texts holding phone numbers, emails, SSNs,
card numbers and custom-pattern matches, and for random and exhaustive split points of
the SSE *byte* stream, the concatenated streamed content equals the whole-text guard's
output, and no matched value appears in the bytes sent to the client.
"""

import asyncio
import itertools

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extproc.guarded_stream import response_stream
from extproc.guards.config import ResponseGuardConfig
from extproc.guards.pipeline import ResponseGuards
from tests.hypothesis_profiles import examples
from tests.provider_helpers import chunks_of

POLICY = {
    "regex": {
        "action": "MASK",
        "builtins": ["CREDIT_CARD", "EMAIL", "PHONE_NUMBER", "SSN"],
        "matches": [
            {"pattern": "credit card", "name": "CC_WORDS"},
            {"pattern": r"ORD-\d{3}(-\d{2})?", "name": "ORDER"},
            {"pattern": r"\bproject [A-Z][a-z]+\b", "name": "CODENAME"},
        ],
    },
}
PII = {
    "phone": ["(212) 555-0198", "212-555-0198", "+1 212 555 0198", "212.555.0198", "+44 20 7946 0958"],
    "email": ["bob@example.com", "alice.smith+news@mail.example.org", "x_y@sub.domain.io"],
    "ssn": ["536-90-4399", "219-09-9999", "457-55-5462"],
    "card": ["4111 1111 1111 1111", "5555-5555-5555-4444", "3782 822463 10005", "4012888888881881"],
    "custom": ["credit card", "ORD-123-45", "ORD-987", "project Falcon"],
    # Written forms only normalisation and the shape recognizers catch (issue 9).
    "written": [
        "４１１１ １１１１ １１１１ １１１１",
        "4111\u200b1111\u200b1111\u200b1111",
        "4111\u00a01111\u202f1111\u00a01111",
        "4111.1111.1111.1111",
        "41-1111-1111-1111-11",
        "٥٥٥٥-٥٥٥٥-٥٥٥٥-٤٤٤٤",
        "536\u201090\u20114399",
        "536\u00ad90\u00ad4399",
        "bob\uff20example.com",
        "bo\u200bb@exa\u2060mple.com",
        '"john doe"@example.com',
        "jane@[192.168.0.1]",
        "admin@intranet",
        "ops@db.internal",
        "(123) 456-7890",
        "+1 212 055 0198",
        "credit\u200bcard",
        "ORD\u2010１２３",
    ],
}
FILLER = [
    "the",
    "answer",
    "is",
    "here:",
    "call",
    "me",
    "at",
    "or",
    "write",
    "to",
    "thanks!",
    "Use",
    "number",
    "for",
    "billing.",
    "ok,",
    "and",
    "ünïcödé",
    "😀",
    "—",
    "\n",
    "42",
    "v2.1",
    "\u200b",
    "\u00a0",
    "ｆｕｌｌ",
    "①",
    "e\u0301",
    "👩\u200d💻",
    '"quoted words"',
    "[1]",
]


def guards(action="MASK", window=256) -> ResponseGuards:
    cfg = dict(POLICY)
    cfg["regex"] = {**POLICY["regex"], "action": action}
    return ResponseGuards(ResponseGuardConfig.model_validate({**cfg, "streamWindow": window}), "r")


MASK = guards()
REJECT = guards("REJECT")


def sse(text_deltas: list[str], tool_call: bool = False) -> bytes:
    env = {"id": "chatcmpl-7", "object": "chat.completion.chunk", "created": 1, "model": "m-1"}
    events = [
        dict(
            env, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]
        )
    ]
    events += [
        dict(env, choices=[{"index": 0, "delta": {"content": d}, "finish_reason": None}]) for d in text_deltas
    ]
    if tool_call:
        events.append(
            dict(
                env,
                choices=[
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": "call_1",
                                    "type": "function",
                                    "function": {"name": "f", "arguments": "{}"},
                                }
                            ]
                        },
                        "finish_reason": None,
                    }
                ],
            )
        )
    events.append(dict(env, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    events.append(
        dict(env, choices=[], usage={"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12})
    )
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def run(stream: bytes, cuts: list[int], g: ResponseGuards = MASK, strip_usage: bool = False) -> bytes:
    from extproc.guarded_stream import response_stream

    rs = response_stream("r", g, strip_usage, {})
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(stream)}), len(stream)]
    pieces = [stream[a:b] for a, b in itertools.pairwise(bounds)]

    async def go() -> bytes:
        out = []
        for i, piece in enumerate(pieces):
            out.append(await rs.feed(piece, i == len(pieces) - 1))
        return b"".join(out)

    return asyncio.run(go())


def content_of(out: bytes) -> str:
    return "".join(
        c["choices"][0]["delta"].get("content") or ""
        for c in chunks_of(out)
        if isinstance(c, dict) and c.get("choices")
    )


def expected(text: str) -> tuple[str, list[str]]:
    assert MASK.scanner is not None
    masked, findings = MASK.scanner.mask(text)
    return masked, [text[f.start : f.end] for f in findings]


@st.composite
def assistant_text(draw):
    parts = []
    for _ in range(draw(st.integers(1, 7))):
        if draw(st.booleans()):
            kind = draw(st.sampled_from(sorted(PII)))
            parts.append(draw(st.sampled_from(PII[kind])))
        else:
            parts.append(draw(st.sampled_from(FILLER)))
    sep = draw(st.sampled_from([" ", " ", ", ", "\n", "; "]))
    return sep.join(parts) + draw(st.sampled_from(["", ".", "!", " "]))


@st.composite
def deltas_of(draw, text):
    """The provider's own content deltas: the text cut into random pieces."""
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(text) - 1)), max_size=12))))
    bounds = [0, *[c for c in cuts if c < len(text)], len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if b > a]


@settings(
    max_examples=examples(2500),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_streamed_output_equals_whole_text_guard(data):
    text = data.draw(assistant_text())
    deltas = data.draw(deltas_of(text))
    stream = sse(deltas)
    cuts = data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=20))
    out = run(stream, cuts)
    want, matched = expected(text)
    assert content_of(out) == want
    for value in matched:
        assert value.encode() not in out, f"{value!r} leaked"


EXHAUSTIVE = "Call (212) 555-0198, mail bob@example.com; card 4111 1111 1111 1111 and credit card ORD-123-45."


def test_every_byte_boundary_of_a_short_stream():
    stream = sse([EXHAUSTIVE[i : i + 7] for i in range(0, len(EXHAUSTIVE), 7)])
    want, matched = expected(EXHAUSTIVE)
    assert want == "Call <PHONE_NUMBER>, mail <EMAIL>; card <CREDIT_CARD> and <CC_WORDS> <ORDER>."
    for cut in range(1, len(stream)):
        out = run(stream, [cut])
        assert content_of(out) == want, cut
        assert not any(v.encode() in out for v in matched), cut


def test_every_byte_alone():
    """The harshest chunking: one byte at a time (splits UTF-8 characters too)."""
    text = "Über 😀 mail bob@example.com or call 212-555-0198 — credit card."
    stream = sse([text[i : i + 3] for i in range(0, len(text), 3)])
    out = run(stream, list(range(1, len(stream))))
    assert content_of(out) == expected(text)[0]


def test_match_split_across_many_chunks_one_character_each():
    text = "card 5555-5555-5555-4444 end"
    out = run(sse(list(text)), [])
    assert content_of(out) == "card <CREDIT_CARD> end"
    assert b"5555" not in out


@settings(max_examples=examples(400), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_reject_never_sends_the_match_and_ends_with_error_then_done(data):
    text = data.draw(assistant_text())
    stream = sse(data.draw(deltas_of(text)))
    out = run(stream, data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=10)), REJECT)
    chunks = chunks_of(out)
    _, matched = expected(text)
    assert chunks[-1] == "[DONE]" and chunks.count("[DONE]") == 1
    errors = [c for c in chunks if isinstance(c, dict) and "error" in c]
    if matched:
        assert len(errors) == 1 and errors[0]["error"]["code"] == "content_policy_violation"
        assert chunks[-2] is errors[0]
        for value in matched:
            assert value.encode() not in out
        assert content_of(out) == text[: len(content_of(out))]  # a clean prefix, never a masked one
    else:
        assert not errors and content_of(out) == text


def test_holdback_is_only_the_possible_match():
    """Text that cannot become a match is released at once; a possible match waits."""
    from extproc.guarded_stream import response_stream

    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "delta": {"content": "Hello there, my number is 212-55"}, "finish_reason": None}
        ],
    }

    async def go():
        rs = response_stream("r", MASK, False, {})
        first = await rs.feed(b"data: " + orjson.dumps(chunk) + b"\n\n", False)
        rest = await rs.feed(
            b"data: "
            + orjson.dumps(
                {**chunk, "choices": [{"index": 0, "delta": {"content": "5-0198."}, "finish_reason": "stop"}]}
            )
            + b"\n\n",
            True,
        )
        return first, rest

    first, rest = asyncio.run(go())
    assert content_of(first) == "Hello there, my number is "  # released at once
    assert content_of(rest) == "<PHONE_NUMBER>."


def test_window_bounds_the_holdback():
    g = guards(window=32)
    digits = "9" * 200  # could be the start of something for a long time
    out = run(sse([digits[i : i + 10] for i in range(0, 200, 10)]), [], g)
    assert content_of(out) == digits


def test_tool_calls_pass_unguarded_and_held_text_waits_for_the_finish():
    # The held tail ("now", which could still grow into a match) is not released at the
    # tool call: text after the call would be joined to it by the client. It comes out at
    # the finish, before the finishing chunk.
    text = "Use credit card now"
    out = run(sse([text[:9], text[9:]], tool_call=True), [])
    chunks = [c for c in chunks_of(out) if isinstance(c, dict) and c.get("choices")]
    kinds = []
    for c in chunks:
        d = c["choices"][0]["delta"]
        if d.get("content"):
            kinds.append(("text", d["content"]))
        if d.get("tool_calls"):
            kinds.append(("tool", d["tool_calls"][0]["function"]["name"]))
    assert "".join(t for k, t in kinds if k == "text") == "Use <CC_WORDS> now"
    assert ("tool", "f") in kinds and kinds[-1] == ("text", "now")
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_a_match_split_around_a_tool_call_is_masked_whole():
    text = "My card: 4111 1111 1111 1111 ok."
    stream = sse([text[:18]], tool_call=True).replace(
        b'{"index":0,"delta":{},"finish_reason":"stop"}',
        b'{"index":0,"delta":{"content":' + orjson.dumps(text[18:]) + b'},"finish_reason":"stop"}',
    )
    for cut in range(1, len(stream), 13):
        out = run(stream, [cut])
        assert content_of(out) == "My card: <CREDIT_CARD> ok.", cut
        assert b"4111" not in out, cut


def test_envelope_ids_finish_and_usage_are_preserved():
    out = run(sse(["My mail: bob@", "example.com thanks"]), [5, 50, 200])
    chunks = chunks_of(out)
    dicts = [c for c in chunks if isinstance(c, dict)]
    assert all(
        c["id"] == "chatcmpl-7" and c["model"] == "m-1" and c["object"] == "chat.completion.chunk"
        for c in dicts
    )
    assert [c["choices"][0]["finish_reason"] for c in dicts if c["choices"]][-1] == "stop"
    assert dicts[-1]["usage"]["total_tokens"] == 12 and dicts[-1]["choices"] == []
    assert chunks[-1] == "[DONE]"


def test_usage_chunk_dropped_when_only_the_gateway_asked():
    out = run(sse(["hi"]), [], MASK, strip_usage=True)
    assert not [c for c in chunks_of(out) if isinstance(c, dict) and "usage" in c]


def test_comments_ids_and_event_names_do_not_pass_a_guarded_stream():
    # A comment is text too: on a guarded stream it becomes an empty comment (a keep-alive
    # stays one); `id:`, `retry:` and `event:` lines are dropped, also on usage events.
    stream = (
        b": mail bob@example.com\n\n"
        + b"id: 4111 1111 1111 1111\nevent: bob@example.com\nretry: 5\n\n"
        + b"id: bob@example.com\n: bob@example.com\nevent: x\n"
        + sse(["hi"])
    )
    out = run(stream, [3])
    assert out.startswith(b":\n\n")
    assert b"bob" not in out and b"4111" not in out
    assert b"\nid:" not in out and b"event:" not in out and b"retry:" not in out
    assert content_of(out) == "hi"
    plain = asyncio.run(response_stream("r", None, False, {}).feed(stream, True))
    assert plain.startswith(b": mail bob@example.com\n\n"), "unguarded routes pass them on"


def test_stream_without_guards_is_untouched():
    from extproc.guarded_stream import response_stream

    stream = sse(["My card 4111 1111 1111 1111"])
    rs = response_stream("r", None, False, {})
    out = asyncio.run(rs.feed(stream, True))
    assert content_of(out) == "My card 4111 1111 1111 1111"
    assert rs.usage == {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12}


@pytest.mark.parametrize("chunking", [1, 2, 5, 13])
def test_multibyte_characters_split_mid_codepoint(chunking):
    text = "Привет 😀 write to bob@example.com 中文"
    stream = sse([text])
    out = run(stream, list(range(chunking, len(stream), chunking)))
    assert content_of(out) == "Привет 😀 write to <EMAIL> 中文"
