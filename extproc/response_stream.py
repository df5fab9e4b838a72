"""The route-level view of a streamed response: canonical `chat.completion.chunk` events.

Runs after provider translation, so it is the same for every provider. Two kinds share
the reading done here (SSE parsing, redaction of the gateway's own secrets, the model,
usage and token timing):

- `PassThroughStream`, on routes without response guards: events go out as they came,
  only the usage chunk the gateway (not the client) asked for is removed;
- `GuardedStream` (guarded_stream.py), on routes with response guards.

`guarded_stream.response_stream()` picks one for a route.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from typing import Any

import orjson

from . import redaction
from .errors import GatewayError, error_body
from .guards.regex_guard import PatternTimeout
from .guards.stream_guard import StreamRejected
from .sse import DONE, SSEEvent, SSEParser, encode

log = logging.getLogger("aigw.stream")

# Enough of the released text to estimate output tokens if the stream is cut short.
_TEXT_KEPT = 1 << 20


class Unguardable(Exception):
    """An event the guards cannot read."""


class ResponseStream(ABC):
    def __init__(self, route: str, strip_usage: bool) -> None:
        self.route = route
        self.strip_usage = strip_usage
        self.parser = SSEParser()
        self.usage: dict[str, Any] | None = None
        self.model = ""
        self.first_token_at: float | None = None
        self.last_token_at: float | None = None
        self.text_parts: list[str] = []  # what the client got, for an estimate if cut short
        self.text_kept = 0
        self.terminated = False
        self.done_sent = False  # the provider's [DONE] went out to the client
        self.events = 0

    # ---- bytes in, bytes out ------------------------------------------------------------
    async def feed(self, data: bytes, end_of_stream: bool) -> bytes:
        out: list[bytes] = []
        # An oversized event ends the stream, but the whole events before it still go out.
        events, too_large = self.parser.read(data, end_of_stream)
        if self.terminated:
            self._usage_after_end(events)
            return b""
        done = 0  # events taken (the one a rejection happened in included)
        try:
            for ev in events:
                done += 1
                await self._event(ev, out)
                if self.terminated:
                    break
            if too_large is not None and not self.terminated:
                log.warning("provider stream event too large", extra={"fields": {"route": self.route}})
                if not self.done_sent:  # (after [DONE], the client's stream is complete)
                    await self._flush_all(out)  # the stream ends here: release what passed
                    self._terminate(GatewayError(502, str(too_large), code="upstream_invalid_stream"), out)
            elif end_of_stream and not self.terminated:
                if self.events == 0 and data and self.guarded:
                    raise Unguardable("the response is not an event stream")
                await self._flush_all(out)
        except StreamRejected as rej:
            self._reject(rej, out)
        except GatewayError as err:  # a webhook rejected, or failed closed
            self._terminate(err, out)
        except PatternTimeout as exc:  # a custom pattern could not decide in time
            self._terminate(self._undecided(exc), out)
        except (Unguardable, AttributeError, TypeError, ValueError, KeyError) as exc:
            # An event the stream code cannot follow: fail closed, the client gets an error.
            log.warning(
                "unreadable stream event",
                extra={"fields": {"route": self.route, "error": type(exc).__name__}},
            )
            self._terminate(
                GatewayError(
                    502,
                    "the provider's stream could not be processed by the gateway",
                    code="unguardable_response",
                ),
                out,
            )
        if self.terminated:
            self._usage_after_end(events[done:])
        return b"".join(out)

    def _usage_after_end(self, events: list[SSEEvent]) -> None:
        """After a guard ended the client's stream, still count what the provider reports."""
        for ev in events:
            if ev.has_data and ev.data.startswith("{"):
                try:
                    chunk = orjson.loads(ev.data)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(chunk, dict) and isinstance(chunk.get("usage"), dict):
                    self.usage = chunk["usage"]

    # Whether events the gateway cannot read end the stream (they would pass unguarded).
    guarded = False

    async def _event(self, ev: SSEEvent, out: list[bytes]) -> None:
        # The gateway's own secrets never reach a client (events are whole here, so a
        # secret cut across chunks is still found).
        framed = self._framed(redaction.current().redact_event(ev))
        if framed is None:
            return
        ev = framed
        if not ev.has_data:
            out.append(encode(ev))
            return
        self.events += 1
        if ev.data == "[DONE]":
            await self._flush_all(out)
            out.append(DONE)
            self.done_sent = True
            return
        try:
            chunk = orjson.loads(ev.data)
        except orjson.JSONDecodeError:
            if self.guarded:
                raise Unguardable("an event is not JSON") from None
            out.append(encode(ev))
            return
        if not isinstance(chunk, dict):
            if self.guarded:
                raise Unguardable("an event is not a JSON object")
            out.append(encode(ev))
            return
        if "error" in chunk and "choices" not in chunk:
            # The provider (or its translator) ended the stream with an error: what is held
            # is all there will be of the text, so release it (guarded) first.
            await self._flush_all(out)
            out.append(self._error_event(chunk, ev))
            return
        await self._chunk(chunk, ev, out)

    @abstractmethod
    async def _chunk(self, chunk: dict[str, Any], ev: SSEEvent, out: list[bytes]) -> None:
        """One `chat.completion.chunk` (a JSON object that is not an error)."""

    def _capture(self, chunk: dict[str, Any]) -> Any:
        """Note the event's model and usage; the usage as given (any type)."""
        if chunk.get("model"):
            self.model = chunk["model"]
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        return usage

    async def _flush_all(self, out: list[bytes]) -> None:
        """Release whatever is held back (nothing, unless guarded)."""
        return None

    def _error_event(self, chunk: dict[str, Any], ev: SSEEvent) -> bytes:
        return encode(ev)

    def _framed(self, ev: SSEEvent) -> SSEEvent | None:
        """The event as it goes out (None: not at all). As it came, unless guarded."""
        return ev

    def _reject(self, rej: StreamRejected, out: list[bytes]) -> None:
        raise AssertionError("only a guarded stream rejects")  # pragma: no cover

    def _undecided(self, timeout: PatternTimeout) -> GatewayError:
        raise AssertionError("only a guarded stream scans") from timeout  # pragma: no cover

    # ---- bookkeeping ----------------------------------------------------------------------
    def _note_tokens(self, choices: Any) -> None:
        for choice in choices:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if not isinstance(delta, dict):
                continue
            content = delta.get("content")
            # Thinking is generated output too: it starts the clock and is counted.
            reasoning = delta.get("reasoning_content")
            if content or reasoning or delta.get("tool_calls"):
                now = time.monotonic()
                if self.first_token_at is None:
                    self.first_token_at = now
                self.last_token_at = now
                for text in (reasoning, content):
                    if isinstance(text, str) and text and self.text_kept < _TEXT_KEPT:
                        self.text_parts.append(text)
                        self.text_kept += len(text)

    def _terminate(self, err: GatewayError, out: list[bytes]) -> None:
        """End the client's stream with an error event, then [DONE]; the rest of the
        provider's stream is dropped (only its usage is still read)."""
        log.info("stream ended by the gateway", extra={"fields": {"route": self.route, "code": err.code}})
        out.append(b"data: " + error_body(err.message, status=err.status, code=err.code) + b"\n\n")
        out.append(DONE)
        self.terminated = True


class PassThroughStream(ResponseStream):
    """A route without response guards: every event goes out as it came, except the usage
    the gateway asked for on the client's behalf."""

    async def _chunk(self, chunk: dict[str, Any], ev: SSEEvent, out: list[bytes]) -> None:
        usage = self._capture(chunk)
        choices = chunk.get("choices")
        if choices:
            self._note_tokens(choices)
        if not (self.strip_usage and usage):
            out.append(encode(ev))
        elif choices:
            out.append(b"data: " + orjson.dumps({k: v for k, v in chunk.items() if k != "usage"}) + b"\n\n")
