"""Incremental Server-Sent Events parsing and serialisation.

Envoy hands a STREAMED body over in chunks cut anywhere: mid-line, mid-event, between the
`\\r` and `\\n` of a line ending, or inside a multi-byte UTF-8 character. The parser keeps
the unfinished tail and yields only whole events, so what it yields never depends on where
the cuts fell. It follows the WHATWG event-stream rules: `\\r\\n`, `\\r` and `\\n` all end a
line, a blank line ends an event, `:` starts a comment, and one space after the field's
colon is dropped.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field


@dataclass(slots=True)
class SSEEvent:
    data: str = ""
    event: str | None = None
    id: str | None = None
    retry: int | None = None
    # Comment lines in the event, without the leading ':'. Kept so they can pass through.
    comments: list[str] = field(default_factory=list)

    @property
    def has_data(self) -> bool:
        return self._data_seen

    _data_seen: bool = False


class SSEParser:
    """Feed bytes in any chunking; get back complete events in order."""

    __slots__ = ("_decoder", "_buf", "_pending_cr", "_event", "_data_lines")

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buf = ""
        self._pending_cr = False
        self._event = SSEEvent()
        self._data_lines: list[str] = []

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        text = self._decoder.decode(chunk)
        if self._pending_cr:
            # A '\r' ended the previous chunk: a '\n' starting this one belongs to it.
            self._pending_cr = False
            if text.startswith("\n"):
                text = text[1:]
        return self._consume(text)

    def close(self) -> list[SSEEvent]:
        """End of stream. A final event not followed by a blank line is dispatched anyway
        (browsers drop it, but providers do send a last event without the blank line)."""
        text = self._decoder.decode(b"", final=True)
        events = self._consume(text)
        if self._buf:
            self._line(self._buf, events)
            self._buf = ""
        self._dispatch(events)
        return events

    def _consume(self, text: str) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        buf = self._buf + text if self._buf else text
        start = 0
        n = len(buf)
        while start < n:
            # Find the next line terminator of any kind.
            i_n = buf.find("\n", start)
            i_r = buf.find("\r", start, i_n if i_n != -1 else n)
            if i_r != -1:
                end, nxt = i_r, i_r + 1
                if nxt < n:
                    if buf[nxt] == "\n":
                        nxt += 1
                else:
                    self._pending_cr = True
            elif i_n != -1:
                end, nxt = i_n, i_n + 1
            else:
                break
            self._line(buf[start:end], events)
            start = nxt
        self._buf = buf[start:]
        return events

    def _line(self, line: str, events: list[SSEEvent]) -> None:
        if not line:
            self._dispatch(events)
            return
        if line[0] == ":":
            self._event.comments.append(line[1:])
            return
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data_lines.append(value)
            self._event._data_seen = True
        elif name == "event":
            self._event.event = value
        elif name == "id":
            if "\0" not in value:
                self._event.id = value
        elif name == "retry":
            if value.isdigit():
                self._event.retry = int(value)
        # Unknown fields are ignored, as the spec says.

    def _dispatch(self, events: list[SSEEvent]) -> None:
        ev = self._event
        if ev._data_seen or ev.event is not None or ev.comments or ev.id is not None or ev.retry is not None:
            ev.data = "\n".join(self._data_lines)
            events.append(ev)
        self._event = SSEEvent()
        self._data_lines = []


def encode_event(data: str | None = None, *, event: str | None = None, id: str | None = None,
                 comments: list[str] | None = None) -> bytes:
    """Serialise one event. Multi-line data becomes several `data:` lines."""
    parts: list[str] = []
    if comments:
        parts.extend(f":{c}" for c in comments)
    if event is not None:
        parts.append(f"event: {event}")
    if id is not None:
        parts.append(f"id: {id}")
    if data is not None:
        parts.extend(f"data: {line}" for line in data.split("\n"))
    return ("\n".join(parts) + "\n\n").encode()


def encode(ev: SSEEvent) -> bytes:
    return encode_event(ev.data if ev.has_data else None, event=ev.event, id=ev.id,
                        comments=ev.comments)


DONE = b"data: [DONE]\n\n"
