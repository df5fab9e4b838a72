"""Tests for extproc.sse: the incremental Server-Sent Events parser and the encoder.

The expectations come from the WHATWG HTML "event stream" interpretation rules
(https://html.spec.whatwg.org/multipage/server-sent-events.html), with the two documented
gateway deviations made for pass-through:

* an event made only of comments / `event:` / `id:` / `retry:` lines is still dispatched
  (the spec drops events whose data buffer is empty), so keep-alive comments can be
  forwarded, and
* `close()` dispatches a final event that was not followed by a blank line (the spec
  discards it).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from extproc.sse import DONE, SSEEvent, SSEParser, encode, encode_event
from tests.hypothesis_profiles import examples

# ---------------------------------------------------------------------------------------
# helpers


def parse_chunks(chunks) -> list[SSEEvent]:
    """Feed every chunk, then close; return every event in order."""
    p = SSEParser()
    out: list[SSEEvent] = []
    for c in chunks:
        out.extend(p.feed(c))
    out.extend(p.close())
    return out


def parse(data: bytes) -> list[SSEEvent]:
    return parse_chunks([data])


def summary(ev: SSEEvent) -> tuple:
    """Everything observable about an event, independent of private fields."""
    return (ev.data, ev.has_data, ev.event, ev.id, ev.retry, tuple(ev.comments))


def summaries(events) -> list[tuple]:
    return [summary(e) for e in events]


def ev(data="", has_data=True, event=None, id=None, retry=None, comments=()) -> tuple:
    """An expected event, in the shape `summary` returns."""
    return (data, has_data, event, id, retry, tuple(comments))


def split_at(data: bytes, cuts) -> list[bytes]:
    cuts = sorted(set(cuts))
    pieces, prev = [], 0
    for c in cuts:
        pieces.append(data[prev:c])
        prev = c
    pieces.append(data[prev:])
    return pieces


# ---------------------------------------------------------------------------------------
# line endings


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
def test_each_line_ending_ends_lines_and_events(eol):
    stream = f"event: a{eol}data: 1{eol}data: 2{eol}{eol}data: 3{eol}{eol}".encode()
    assert summaries(parse(stream)) == [ev("1\n2", event="a"), ev("3")]


def test_mixed_line_endings_in_one_stream():
    stream = b"data: a\r\ndata: b\ndata: c\rdata: d\r\n\ndata: e\r\r"
    assert summaries(parse(stream)) == [ev("a\nb\nc\nd"), ev("e")]


def test_crlf_split_between_chunks_is_one_line_ending():
    # The '\n' of a '\r\n' arrives in the next chunk: it must not be read as a blank line.
    events = parse_chunks([b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"])
    assert summaries(events) == [ev("a\nb")]


def test_feed_returns_event_when_crlf_blank_line_is_split():
    # The blank line was already complete at its '\r': the event is out, and the
    # trailing '\n' must not produce anything more.
    p = SSEParser()
    first = p.feed(b"data: a\r\n\r")
    second = p.feed(b"\ndata: b\r\n\r\n")
    assert summaries(first) == [ev("a")]
    assert summaries(second) == [ev("b")]
    assert p.close() == []


def test_lf_then_cr_are_two_line_endings():
    # "\n\r" is LF (end of line) followed by CR (a blank line), not one line ending.
    assert summaries(parse(b"data: a\n\rdata: b\n\n")) == [ev("a"), ev("b")]


def test_cr_cr_lf_is_line_end_then_blank_line():
    assert summaries(parse(b"data: a\r\r\ndata: b\r\r\n")) == [ev("a"), ev("b")]


def test_cr_chunk_then_cr_chunk_is_blank_line():
    p = SSEParser()
    assert p.feed(b"data: a\r") == []
    assert summaries(p.feed(b"\r")) == [ev("a")]
    assert p.close() == []


def test_unicode_line_separators_are_not_sse_line_endings():
    # Only CR and LF end lines; U+2028, U+0085 (NEL), \v and \f are ordinary characters
    # (Python's str.splitlines() would wrongly split on them).
    text = "data: a\u2028b\u0085c\x0bd\x0ce\n\n"
    assert summaries(parse(text.encode())) == [ev("a\u2028b\u0085c\x0bd\x0ce")]


# ---------------------------------------------------------------------------------------
# fields


@pytest.mark.parametrize(
    "line, expected",
    [
        (b"data: x", "x"),  # the single space after the colon is dropped
        (b"data:x", "x"),  # no space at all
        (b"data:  x", " x"),  # only ONE space is dropped
        (b"data:\tx", "\tx"),  # a tab is not the space that is dropped
        (b"data: ", ""),
        (b"data:", ""),
        (b"data", ""),  # a line with no colon is a field with an empty value
        (b"data: a:b: c", "a:b: c"),  # only the first colon separates name and value
        (b'data: {"k": "v"}', '{"k": "v"}'),
        (b"data: x ", "x "),  # trailing whitespace is kept
    ],
)
def test_data_field_value(line, expected):
    assert summaries(parse(line + b"\n\n")) == [ev(expected)]


def test_multiline_data_joined_with_lf():
    assert summaries(parse(b"data: a\ndata: b\ndata: c\n\n")) == [ev("a\nb\nc")]


def test_empty_data_lines_are_kept_as_empty_lines():
    # Spec: each data line appends value + LF; the single final LF is removed.
    assert summaries(parse(b"data: a\ndata:\n\n")) == [ev("a\n")]
    assert summaries(parse(b"data\ndata\n\n")) == [ev("\n")]
    assert summaries(parse(b"data:\ndata: a\n\n")) == [ev("\na")]


def test_data_empty_string_still_has_data():
    [e] = parse(b"data:\n\n")
    assert e.data == "" and e.has_data is True


def test_event_field():
    assert summaries(parse(b"event: delta\ndata: x\n\n")) == [ev("x", event="delta")]
    assert summaries(parse(b"event:delta\ndata: x\n\n")) == [ev("x", event="delta")]
    assert summaries(parse(b"event\ndata: x\n\n")) == [ev("x", event="")]


def test_last_event_field_wins():
    assert summaries(parse(b"event: a\nevent: b\ndata: x\n\n")) == [ev("x", event="b")]


def test_event_type_does_not_leak_into_next_event():
    events = parse(b"event: first\ndata: 1\n\ndata: 2\n\n")
    assert summaries(events) == [ev("1", event="first"), ev("2")]


def test_event_without_data_has_no_data():
    [e] = parse(b"event: ping\n\n")
    assert e.event == "ping"
    assert e.has_data is False
    assert e.data == ""


def test_id_field():
    assert summaries(parse(b"id: 42\ndata: x\n\n")) == [ev("x", id="42")]
    assert summaries(parse(b"id\ndata: x\n\n")) == [ev("x", id="")]
    assert summaries(parse(b"id: 1\nid: 2\ndata: x\n\n")) == [ev("x", id="2")]


def test_id_containing_nul_is_ignored():
    assert summaries(parse(b"id: a\x00b\ndata: x\n\n")) == [ev("x")]
    # ...and does not overwrite an id set earlier in the same event
    assert summaries(parse(b"id: good\nid: a\x00b\ndata: x\n\n")) == [ev("x", id="good")]


@pytest.mark.parametrize(
    "value, expected",
    [
        (b"3000", 3000),
        (b"0", 0),
        (b"007", 7),
        (b"123456789012", 123456789012),
    ],
)
def test_retry_with_ascii_digits(value, expected):
    [e] = parse(b"retry: " + value + b"\ndata: x\n\n")
    assert e.retry == expected
    assert e.data == "x"


@pytest.mark.parametrize(
    "value", [b"", b"abc", b"1.5", b"-1", b"+1", b" 10", b"10 ", b"1e3", b"0x10", b"10ms"]
)
def test_retry_that_is_not_only_ascii_digits_is_ignored(value):
    [e] = parse(b"retry: " + value + b"\ndata: x\n\n")
    assert e.retry is None
    assert e.data == "x"


def test_retry_without_space():
    [e] = parse(b"retry:250\ndata: x\n\n")
    assert e.retry == 250


def test_retry_with_superscript_digit_is_ignored_not_crash():
    [e] = parse("retry: \u00b2\ndata: x\n\n".encode())
    assert e.retry is None
    assert e.data == "x"


def test_retry_with_non_ascii_decimal_digits_is_ignored():
    [e] = parse("retry: \u0661\u0662\ndata: x\n\n".encode())
    assert e.retry is None


@pytest.mark.parametrize(
    "line",
    [
        b"foo: bar",
        b"Data: x",
        b"DATA: x",
        b" data: x",
        b"data : x",
        b"datum: x",
        b"x-custom: y",
        b"Event: e",
        b"ID: 1",
    ],
)
def test_unknown_fields_are_ignored(line):
    # Field names are case-sensitive and must match exactly.
    assert summaries(parse(line + b"\ndata: real\n\n")) == [ev("real")]


def test_event_of_only_unknown_fields_is_not_dispatched():
    assert parse(b"foo: bar\nbaz\n\ndata: x\n\n") == parse(b"data: x\n\n")
    assert summaries(parse(b"foo: bar\n\n")) == []


# ---------------------------------------------------------------------------------------
# comments


def test_comment_lines_kept_without_the_colon():
    events = parse(b": keep-alive\n:no-space\n:\ndata: x\n\n")
    assert summaries(events) == [ev("x", comments=[" keep-alive", "no-space", ""])]


def test_comment_only_event_is_dispatched_for_pass_through():
    [e] = parse(b": ping\n\n")
    assert e.comments == [" ping"]
    assert e.has_data is False
    assert e.event is None and e.id is None and e.retry is None


def test_comment_does_not_touch_data():
    events = parse(b"data: a\n: interleaved\ndata: b\n\n")
    assert summaries(events) == [ev("a\nb", comments=[" interleaved"])]


def test_comment_line_containing_field_syntax_stays_a_comment():
    assert summaries(parse(b":data: x\n\n")) == [ev("", has_data=False, comments=["data: x"])]


def test_comments_belong_to_their_event():
    events = parse(b": one\ndata: 1\n\n: two\ndata: 2\n\n")
    assert summaries(events) == [ev("1", comments=[" one"]), ev("2", comments=[" two"])]


# ---------------------------------------------------------------------------------------
# dispatching and incremental behaviour


def test_blank_lines_alone_produce_no_events():
    assert parse(b"\n\n\r\n\r\r\n") == []


def test_repeated_blank_lines_between_events():
    assert summaries(parse(b"data: a\n\n\n\n\ndata: b\n\n")) == [ev("a"), ev("b")]


def test_feed_yields_only_complete_events():
    p = SSEParser()
    assert p.feed(b"data: hel") == []
    assert p.feed(b"lo\n") == []
    assert p.feed(b"data: world\n") == []
    assert summaries(p.feed(b"\ndata: next")) == [ev("hello\nworld")]
    assert summaries(p.close()) == [ev("next")]


def test_feed_returns_several_events_in_order():
    p = SSEParser()
    out = p.feed(b"data: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4")
    assert [e.data for e in out] == ["1", "2", "3"]
    assert [e.data for e in p.close()] == ["4"]


def test_events_are_independent_objects():
    a, b = parse(b": c1\ndata: 1\n\n: c2\ndata: 2\n\n")
    assert a is not b
    assert a.comments is not b.comments
    assert a.comments == [" c1"] and b.comments == [" c2"]


def test_empty_feed_is_harmless():
    p = SSEParser()
    assert p.feed(b"") == []
    assert p.feed(b"data: x\n") == []
    assert p.feed(b"") == []
    assert summaries(p.feed(b"\n")) == [ev("x")]
    assert p.feed(b"") == []
    assert p.close() == []


def test_empty_chunk_between_cr_and_lf():
    events = parse_chunks([b"data: x\r", b"", b"\ndata: y\r\n\r\n"])
    assert summaries(events) == [ev("x\ny")]


# ---------------------------------------------------------------------------------------
# close()


def test_close_dispatches_final_event_without_blank_line():
    assert summaries(parse(b"data: a\n\ndata: last\n")) == [ev("a"), ev("last")]


def test_close_dispatches_final_unterminated_line():
    assert summaries(parse(b"event: e\ndata: last")) == [ev("last", event="e")]


@pytest.mark.parametrize("tail", [b"data: last\r", b"data: last\r\n", b"data: last\n"])
def test_close_after_any_single_line_ending(tail):
    assert summaries(parse(tail)) == [ev("last")]


def test_close_with_nothing_pending():
    p = SSEParser()
    assert p.close() == []
    p = SSEParser()
    p.feed(b"data: x\n\n")
    assert p.close() == []


def test_close_dispatches_trailing_comment():
    assert summaries(parse(b"data: a\n\n: bye")) == [ev("a"), ev("", has_data=False, comments=[" bye"])]


def test_close_with_truncated_utf8_yields_replacement_character():
    # The stream stops in the middle of a 4-byte character.
    assert summaries(parse("data: x😀".encode()[:-2])) == [ev("x\ufffd")]


# ---------------------------------------------------------------------------------------
# UTF-8


def test_multibyte_character_split_across_chunks():
    raw = "data: é中😀\n\n".encode()
    start = raw.index(b"\xf0")  # first byte of the emoji
    events = parse_chunks([raw[: start + 1], raw[start + 1 : start + 2], raw[start + 2 :]])
    assert summaries(events) == [ev("é中😀")]


def test_one_byte_at_a_time():
    raw = "event: é\r\ndata: 中😀\r\nid: ü\r\n\r\n".encode()
    events = parse_chunks([raw[i : i + 1] for i in range(len(raw))])
    assert summaries(events) == [ev("中😀", event="é", id="ü")]


def test_invalid_utf8_is_replaced_not_raised():
    # Spec: the stream is decoded with UTF-8 decode, i.e. errors become U+FFFD.
    assert summaries(parse(b"data: a\xffb\xc3(\n\n")) == [ev("a\ufffdb\ufffd(")]


def test_leading_bom_is_ignored():
    assert summaries(parse(b"\xef\xbb\xbfdata: x\n\n")) == [ev("x")]


def test_leading_bom_split_across_chunks_is_ignored():
    events = parse_chunks([b"\xef", b"\xbb", b"\xbfdata: x\n\n"])
    assert summaries(events) == [ev("x")]


def test_only_one_leading_bom_is_ignored():
    # A second U+FEFF is part of the first field's name, which is then unknown.
    assert summaries(parse(b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\ndata: y\n\n")) == [ev("y")]


def test_bom_not_at_stream_start_is_not_stripped():
    assert summaries(parse("data: a\n\n\ufeffdata: b\n\n".encode())) == [ev("a")]
    assert summaries(parse("data: \ufeffa\n\n".encode())) == [ev("\ufeffa")]


# ---------------------------------------------------------------------------------------
# realistic provider streams


def test_openai_style_stream():
    raw = (
        b'data: {"id":"c1","choices":[{"delta":{"content":"Hel"}}]}\n\n'
        b'data: {"id":"c1","choices":[{"delta":{"content":"lo"}}]}\n\n'
        b"data: [DONE]\n\n"
    )
    events = parse(raw)
    assert [e.data for e in events] == [
        '{"id":"c1","choices":[{"delta":{"content":"Hel"}}]}',
        '{"id":"c1","choices":[{"delta":{"content":"lo"}}]}',
        "[DONE]",
    ]
    assert all(e.event is None and e.has_data for e in events)


def test_anthropic_style_stream():
    raw = (
        b"event: message_start\r\n"
        b'data: {"type":"message_start"}\r\n\r\n'
        b": ping\r\n\r\n"
        b"event: content_block_delta\r\n"
        b'data: {"type":"content_block_delta","delta":{"text":"caf\xc3\xa9"}}\r\n\r\n'
    )
    assert summaries(parse(raw)) == [
        ev('{"type":"message_start"}', event="message_start"),
        ev("", has_data=False, comments=[" ping"]),
        ev('{"type":"content_block_delta","delta":{"text":"café"}}', event="content_block_delta"),
    ]


def test_done_constant():
    assert DONE == b"data: [DONE]\n\n"
    assert summaries(parse(DONE)) == [ev("[DONE]")]


# ---------------------------------------------------------------------------------------
# encode_event / encode


def test_encode_event_data_only():
    assert encode_event("hi") == b"data: hi\n\n"


def test_encode_event_all_fields_order():
    out = encode_event("x", event="delta", id="7", comments=["c1", " c2"])
    assert out == b":c1\n: c2\nevent: delta\nid: 7\ndata: x\n\n"


def test_encode_event_multiline_data():
    assert encode_event("a\nb\n") == b"data: a\ndata: b\ndata: \n\n"


def test_encode_event_none_data_writes_no_data_line():
    assert encode_event(event="ping") == b"event: ping\n\n"
    assert encode_event(None, comments=["keep-alive"]) == b":keep-alive\n\n"


def test_encode_event_empty_string_data_is_a_data_line():
    out = encode_event("")
    assert out == b"data: \n\n"
    [e] = parse(out)
    assert e.has_data and e.data == ""


def test_encode_event_leading_space_survives():
    out = encode_event("  two spaces")
    assert summaries(parse(out)) == [ev("  two spaces")]


def test_encode_event_is_utf8():
    assert encode_event("é😀") == "data: é😀\n\n".encode()


def test_encode_of_parsed_event_without_data():
    [e] = parse(b"event: ping\n\n")
    assert encode(e) == b"event: ping\n\n"


def test_encode_of_parsed_event_with_empty_data():
    [e] = parse(b"data\n\n")
    assert encode(e) == b"data: \n\n"


def test_encode_of_parsed_comment_event():
    [e] = parse(b": ping\n\n")
    assert encode(e) == b": ping\n\n"


def test_encode_of_constructed_event_keeps_data():
    assert encode(SSEEvent(data="hi")) == b"data: hi\n\n"


def test_encode_keeps_retry():
    [e] = parse(b"retry: 5000\ndata: x\n\n")
    assert summaries(parse(encode(e))) == [ev("x", retry=5000)]


def test_encode_event_with_carriage_return_in_data_loses_nothing():
    assert [e.data for e in parse(encode_event("a\rb"))] == ["a\nb"]


# ---------------------------------------------------------------------------------------
# property tests

_SPECIAL = "é中😀🎉\u2028\u0085\x00\t :ü\ufeff"
_text_char = st.one_of(
    st.characters(exclude_characters="\r\n", exclude_categories=["Cs"]),
    st.sampled_from(_SPECIAL),
)
_value = st.text(_text_char, max_size=12)


@st.composite
def _line(draw):
    """One non-blank line as (field, wire_value, separator). separator is ': ', ':' or ''."""
    kind = draw(st.sampled_from(["data", "data", "data", "event", "id", "retry", "comment", "unknown"]))
    if kind == "comment":
        return ("comment", draw(_value), ":")
    if kind == "retry":
        value = draw(
            st.one_of(
                st.integers(0, 10**9).map(str), st.sampled_from(["", "abc", "1.5", "-1", " 5", "5 ", "1e3"])
            )
        )
    elif kind == "unknown":
        kind = draw(st.sampled_from(["foo", "Data", "DATA", "ids", "x-custom", "evnt"]))
        value = draw(_value)
    else:
        value = draw(_value)
    seps = [": ", ":"] + ([""] if value == "" else [])
    return (kind, value, draw(st.sampled_from(seps)))


_events = st.lists(st.lists(_line(), max_size=6), max_size=6)
_eol = st.sampled_from(["\n", "\r\n", "\r"])


def serialise(blocks, eols, final_blank: bool) -> bytes:
    """Write blocks of lines, each line ended by the next chosen line ending."""
    out: list[str] = []
    k = 0
    prev_eol = None

    def put(line: str) -> None:
        nonlocal k, prev_eol
        eol = eols[k % len(eols)]
        k += 1
        # An empty line ended by LF right after a CR would merge into one CRLF.
        if line == "" and prev_eol == "\r" and eol == "\n":
            eol = "\r"
        out.append(line + eol)
        prev_eol = eol

    for i, block in enumerate(blocks):
        for field, value, sep in block:
            out_field = "" if field == "comment" else field
            put(out_field + sep + value)
        if i < len(blocks) - 1 or final_blank:
            put("")
    return "".join(out).encode("utf-8")


def reference_parse(blocks) -> list[tuple]:
    """The spec's field-processing rules, applied to the generated model directly."""
    result = []
    for block in blocks:
        data_lines, event, id_, retry, comments = [], None, None, None, []
        for field, value, sep in block:
            if field == "comment":
                comments.append(value)
                continue
            if sep == ":" and value.startswith(" "):
                value = value[1:]
            if field == "data":
                data_lines.append(value)
            elif field == "event":
                event = value
            elif field == "id":
                if "\0" not in value:
                    id_ = value
            elif field == "retry":
                if value and all("0" <= c <= "9" for c in value):
                    retry = int(value)
        if data_lines or event is not None or id_ is not None or retry is not None or comments:
            result.append(ev("\n".join(data_lines), bool(data_lines), event, id_, retry, comments))
    return result


@settings(max_examples=examples(400), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks=_events, eols=st.lists(_eol, min_size=1, max_size=4), final_blank=st.booleans(), data=st.data())
def test_property_any_split_gives_same_events(blocks, eols, final_blank, data):
    raw = serialise(blocks, eols, final_blank)
    expected = reference_parse(blocks)

    whole = parse(raw)
    assert summaries(whole) == expected

    cuts = data.draw(st.lists(st.integers(1, max(1, len(raw) - 1)), max_size=8), label="cuts")
    pieces = [p for p in split_at(raw, cuts) if p]
    assert b"".join(pieces) == raw
    assert summaries(parse_chunks(pieces)) == expected
    # and byte by byte, the harshest split of all
    assert summaries(parse_chunks([raw[i : i + 1] for i in range(len(raw))])) == expected


# Providers end lines with LF and send mostly one-line `data: ` events: the parser takes
# those whole, without reading them line by line (any CR in the text turns that off). The
# shortcut must give what the line-by-line rules give, wherever the chunks are cut and
# whatever else is mixed in (events of several lines, comments, a block starting with
# extra blank lines, an event left open at a chunk's end).
_one_line_data = st.tuples(st.just("data"), _value, st.just(": ")).map(lambda line: [line])
_provider_events = st.lists(
    st.one_of(_one_line_data, _one_line_data, st.lists(_line(), max_size=4)), max_size=8
)


@settings(max_examples=examples(400), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks=_provider_events, final_blank=st.booleans(), data=st.data())
@example(blocks=[[("data", "a", ": ")], [], [("data", "b", ": ")]], final_blank=True, data=None)
@example(blocks=[[("event", "x", ": ")], [("data", "a", ": ")]], final_blank=False, data=None)
def test_property_lf_streams_parse_as_their_crlf_twins(blocks, final_blank, data):
    lf = serialise(blocks, ["\n"], final_blank)
    crlf = serialise(blocks, ["\r\n"], final_blank)
    expected = reference_parse(blocks)
    assert summaries(parse(lf)) == summaries(parse(crlf)) == expected
    if data is not None and lf:
        cuts = data.draw(st.lists(st.integers(1, max(1, len(lf) - 1)), max_size=8), label="cuts")
        assert summaries(parse_chunks([p for p in split_at(lf, cuts) if p])) == expected


def test_one_line_data_event_is_encoded_as_encode_event_writes_it():
    for event in parse(b'data: {"a": 1}\n\ndata: \n\ndata:x\n\n:c\ndata: y\n\nevent: e\ndata: z\n\n'):
        assert encode(event) == encode_event(
            event.data if event.has_data else None,
            event=event.event,
            id=event.id,
            retry=event.retry,
            comments=event.comments,
        )


_REALISTIC = (
    b": ping\r\n\r\n"
    b"event: message\r\n"
    b"id: 7\r\n"
    b'data: {"delta": "caf\xc3\xa9 \xf0\x9f\x98\x80"}\r\n'
    b"data: second\r\n\r\n"
    b"retry: 1500\r\n"
    b"data: [DONE]\r\n\r\n"
)
_REALISTIC_EXPECTED = [
    ev("", has_data=False, comments=[" ping"]),
    ev('{"delta": "café 😀"}\nsecond', event="message", id="7"),
    ev("[DONE]", retry=1500),
]


def test_realistic_stream_whole():
    assert summaries(parse(_REALISTIC)) == _REALISTIC_EXPECTED


def test_exhaustive_every_single_split():
    for i in range(len(_REALISTIC) + 1):
        got = summaries(parse_chunks([_REALISTIC[:i], _REALISTIC[i:]]))
        assert got == _REALISTIC_EXPECTED, f"split at byte {i}"


def test_exhaustive_every_pair_of_splits():
    raw = _REALISTIC
    n = len(raw)
    for i in range(1, n):
        for j in range(i + 1, n):
            got = summaries(parse_chunks([raw[:i], raw[i:j], raw[j:]]))
            assert got == _REALISTIC_EXPECTED, f"splits at bytes {i} and {j}"


_no_eol_char = st.one_of(
    st.characters(exclude_characters="\r\n", exclude_categories=["Cs"]),
    st.sampled_from("é中😀🎉\u2028 :"),
)
_id_char = st.one_of(
    st.characters(exclude_characters="\r\n\0", exclude_categories=["Cs"]),
    st.sampled_from("é😀 :"),
)
_data_char = st.one_of(_no_eol_char, st.just("\n"))


@st.composite
def _encodable_event(draw):
    data = draw(st.none() | st.text(_data_char, max_size=30))
    event = draw(st.none() | st.text(_no_eol_char, max_size=10))
    id_ = draw(st.none() | st.text(_id_char, max_size=10))
    comments = draw(st.lists(st.text(_no_eol_char, max_size=10), max_size=3))
    return data, event, id_, comments


def _expected_from_fields(data, event, id_, comments):
    if data is None and event is None and id_ is None and not comments:
        return []  # encodes to a bare blank line: no event
    return [ev("" if data is None else data, data is not None, event, id_, None, comments)]


@settings(max_examples=examples(300), deadline=None)
@given(events=st.lists(_encodable_event(), max_size=5), data=st.data())
@example(events=[("", None, None, []), ("a\n\nb", "e", "", [""])], data=None)
def test_property_encode_parse_round_trip(events, data):
    raw = b"".join(encode_event(d, event=e, id=i, comments=c) for d, e, i, c in events)
    expected = [x for fields in events for x in _expected_from_fields(*fields)]
    parsed = parse(raw)
    assert summaries(parsed) == expected
    # Re-encoding parsed events reproduces the original bytes exactly.
    assert b"".join(encode(p) for p in parsed) == b"".join(
        encode_event(d, event=e, id=i, comments=c)
        for d, e, i, c in events
        if _expected_from_fields(d, e, i, c)
    )
    # And the round trip holds under any chunking too.
    if data is not None and raw:
        cuts = data.draw(st.lists(st.integers(1, len(raw)), max_size=6), label="cuts")
        pieces = [p for p in split_at(raw, cuts) if p]
        assert summaries(parse_chunks(pieces)) == expected
