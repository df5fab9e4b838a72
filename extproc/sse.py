"""Incremental Server-Sent Events parsing and serialisation.

Envoy hands a STREAMED body over in chunks cut anywhere: mid-line, mid-event, between the
`\\r` and `\\n` of a line ending, or inside a multi-byte UTF-8 character. The parser keeps
the unfinished tail and yields only whole events, so what it yields never depends on where
the cuts fell. It follows the WHATWG event-stream rules: `\\r\\n`, `\\r` and `\\n` all end a
line, a blank line ends an event, `:` starts a comment, one space after the field's colon
is dropped, and a leading byte-order mark is ignored. Unlike a browser, it also hands on
events that carry only comments or an `event:` name, so they can pass through untouched.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field

_EOL = re.compile(r"\r\n|\r|\n")

# The most text one event (its unfinished line, data lines and comments) may hold before
# it is complete. A provider's chat events are a few KB; without a bound, a stream that
# never ends a line would grow the processor's memory until it died.
MAX_EVENT_CHARS = 4 * 1024 * 1024


class EventTooLarge(ValueError):
    """An event grew past MAX_EVENT_CHARS before it ended. The parser then drops the rest
    of the stream: the caller ends the client's stream with an error. `events` holds the
    whole events the same call read before it, which the caller still delivers."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.events: list[SSEEvent] = []


@dataclass(slots=True)
class SSEEvent:
    data: str = ""
    event: str | None = None
    id: str | None = None
    retry: int | None = None
    # Comment lines in the event, without the leading ':'. Kept so they can pass through.
    comments: list[str] = field(default_factory=list)
    # True when the event had a `data:` line, even an empty one.
    _data_seen: bool = False

    @property
    def has_data(self) -> bool:
        return self._data_seen or self.data != ""


# An event no line has touched yet.
_EMPTY = SSEEvent()


class SSEParser:
    """Feed bytes in any chunking; get back complete events in order."""

    __slots__ = (
        "_data_lines",
        "_decoder",
        "_event",
        "_failed",
        "_open_chars",
        "_parts",
        "_parts_chars",
        "_pending_cr",
        "_started",
    )

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        # Text of the unfinished line, kept in pieces: joining only once a line ends keeps
        # a long line delivered in many chunks linear rather than quadratic.
        self._parts: list[str] = []
        self._pending_cr = False
        self._started = False
        self._event = SSEEvent()
        self._data_lines: list[str] = []
        # Characters held for the unfinished line, and in the open event's lines.
        self._parts_chars = 0
        self._open_chars = 0
        self._failed = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._failed:
            return []
        events: list[SSEEvent] = []
        try:
            self._consume(self._decoder.decode(chunk), events)
        except EventTooLarge as exc:
            exc.events = events  # whole events before the oversized one are not lost
            raise
        return events

    def read(self, chunk: bytes, end_of_stream: bool) -> tuple[list[SSEEvent], EventTooLarge | None]:
        """`feed` (and `close` at the end) without raising: every whole event before an
        oversized one, and the error if there was one."""
        events: list[SSEEvent] = []
        try:
            events += self.feed(chunk)
            if end_of_stream:
                events += self.close()
        except EventTooLarge as exc:
            return events + exc.events, exc
        return events, None

    def close(self) -> list[SSEEvent]:
        """End of stream. A final event not followed by a blank line is dispatched anyway
        (browsers drop it, but providers do send a last event without the blank line)."""
        if self._failed:
            return []
        events: list[SSEEvent] = []
        try:
            self._consume(self._decoder.decode(b"", final=True), events)
            if self._parts:
                self._line("".join(self._parts), events)
                self._parts = []
        except EventTooLarge as exc:
            exc.events = events
            raise
        self._dispatch(events)
        return events

    def _consume(self, text: str, events: list[SSEEvent]) -> None:
        if not text:
            return
        if not self._started:
            self._started = True
            if text[0] == "\ufeff":
                text = text[1:]
        if self._pending_cr:
            # A '\r' ended the previous text: a '\n' starting this one belongs to it.
            self._pending_cr = False
            if text.startswith("\n"):
                text = text[1:]
        if "\n" not in text and "\r" not in text:
            if text:
                self._parts.append(text)
                self._parts_chars += len(text)
                self._check()
            return
        if self._parts:
            self._parts.append(text)
            text = "".join(self._parts)
            self._parts = []
            self._parts_chars = 0
        if "\r" in text:
            self._lines(text, events)
            return
        # Only `\n` ends lines here (what every provider sends): whole events are cut at
        # blank lines, and the usual one-line `data: ...` event is taken without reading
        # it line by line. Anything else in a block goes through `_line` as before, so
        # the events are the same either way (tests/unit/test_sse.py checks both paths).
        blocks = text.split("\n\n")
        tail = blocks.pop()
        for block in blocks:
            # (An event left open by the last chunk has lines, so it is not _EMPTY.)
            if block.startswith("data: ") and "\n" not in block and self._event == _EMPTY:
                events.append(SSEEvent(block[6:], None, None, None, [], True))
                continue
            for line in block.split("\n"):
                self._line(line, events)
            self._dispatch(events)
        if tail:
            self._lines(tail, events)

    def _lines(self, text: str, events: list[SSEEvent]) -> None:
        """Every whole line of `text`, in order; an unfinished last line is kept."""
        start = 0
        for m in _EOL.finditer(text):
            self._line(text[start : m.start()], events)
            start = m.end()
        if text.endswith("\r"):
            self._pending_cr = True
        tail = text[start:]
        if tail:
            self._parts.append(tail)
            self._parts_chars = len(tail)
            self._check()

    def _check(self) -> None:
        if self._parts_chars + self._open_chars > MAX_EVENT_CHARS:
            self._failed = True
            self._parts, self._data_lines, self._event = [], [], SSEEvent()
            raise EventTooLarge(f"a stream event is larger than {MAX_EVENT_CHARS} characters")

    def _line(self, line: str, events: list[SSEEvent]) -> None:
        if not line:
            self._dispatch(events)
            return
        if line[0] == ":":
            self._event.comments.append(line[1:])
            self._open_chars += len(line)
            self._check()
            return
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data_lines.append(value)
            self._event._data_seen = True
            self._open_chars += len(value) + 1
            self._check()
        elif name == "event":
            self._event.event = value
        elif name == "id":
            if "\0" not in value:
                self._event.id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self._event.retry = int(value)
        # Unknown fields are ignored, as the spec says.

    def _dispatch(self, events: list[SSEEvent]) -> None:
        ev = self._event
        if ev._data_seen or ev.event is not None or ev.comments or ev.id is not None or ev.retry is not None:
            ev.data = "\n".join(self._data_lines)
            events.append(ev)
        self._event = SSEEvent()
        self._data_lines = []
        self._open_chars = 0


def _one_line(value: str) -> str:
    """Field values other than data cannot hold a line break: it would end the field
    and let the rest be read as another field."""
    return _EOL.sub(" ", value)


def encode_event(
    data: str | None = None,
    *,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
    comments: list[str] | None = None,
) -> bytes:
    """Serialise one event. Multi-line data (any line ending) becomes several `data:` lines."""
    parts: list[str] = []
    if comments:
        parts.extend(f":{_one_line(c)}" for c in comments)
    if event is not None:
        parts.append(f"event: {_one_line(event)}")
    if id is not None:
        parts.append(f"id: {_one_line(id)}")
    if retry is not None:
        parts.append(f"retry: {int(retry)}")
    if data is not None:
        parts.extend(f"data: {line}" for line in _EOL.split(data))
    return ("\n".join(parts) + "\n\n").encode()


def encode(ev: SSEEvent) -> bytes:
    if (
        ev._data_seen
        and ev.event is None
        and ev.id is None
        and ev.retry is None
        and not ev.comments
        and "\n" not in ev.data
        and "\r" not in ev.data
    ):  # the usual event: one data line (the same bytes encode_event writes)
        return b"data: " + ev.data.encode() + b"\n\n"
    return encode_event(
        ev.data if ev.has_data else None, event=ev.event, id=ev.id, retry=ev.retry, comments=ev.comments
    )


DONE = b"data: [DONE]\n\n"
