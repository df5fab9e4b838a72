"""The route-level view of a streamed response: canonical `chat.completion.chunk` events.

Runs after provider translation, so it is the same for every provider. Per event it
- guards each choice's text fields (content, refusal, reasoning) with the regex and
  builtins, holding back only what may still become part of a match, then the webhook
  on sentence-sized segments;
- leaves tool-call deltas unguarded, releasing the choice's held text just before them
  so order is kept;
- captures `usage` and, when the gateway (not the client) asked for it, removes it;
- ends the stream with an OpenAI-style error event and `[DONE]` when a guard rejects, or
  when guards are on and an event cannot be read (never passing it on unguarded).
Comments and events that carry no data for us pass through.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import orjson

from . import metrics
from .errors import GatewayError, error_body
from .guards.pipeline import ResponseGuards
from .guards.stream_guard import StreamRejected, StreamTextGuard
from .sse import DONE, SSEEvent, SSEParser, encode

log = logging.getLogger("aigw.stream")

# Delta fields holding text the client sees.
GUARDED_FIELDS = ("content", "refusal", "reasoning_content", "reasoning")
# A webhook sees text in segments ending at a sentence or line end, or a full window.
_SEGMENT_END = re.compile(r"[.!?][\"')\]]*\s|\n")
# Enough of the released text to estimate output tokens if the stream is cut short.
_TEXT_KEPT = 1 << 20


class Unguardable(Exception):
    """An event the guards cannot read."""


class _Field:
    __slots__ = ("guard", "webhook_buffer")

    def __init__(self, guard: StreamTextGuard | None) -> None:
        self.guard = guard
        self.webhook_buffer = ""


class _Choice:
    __slots__ = ("fields", "envelope", "finished")

    def __init__(self) -> None:
        self.fields: dict[str, _Field] = {}
        self.envelope: dict[str, Any] | None = None
        self.finished = False


class ResponseStream:
    def __init__(self, route: str, guards: ResponseGuards | None, strip_usage: bool,
                 headers: dict[str, str]) -> None:
        self.route = route
        self.guards = guards
        self.strip_usage = strip_usage
        self.headers = headers
        self.parser = SSEParser()
        self.choices: dict[int, _Choice] = {}
        self.usage: dict[str, Any] | None = None
        self.model = ""
        self.first_token_at: float | None = None
        self.last_token_at: float | None = None
        self.text_parts: list[str] = []  # what the client got, for an estimate if cut short
        self.text_kept = 0
        self.terminated = False
        self.events = 0

    # ---- bytes in, bytes out ------------------------------------------------------------
    async def feed(self, data: bytes, end_of_stream: bool) -> bytes:
        out: list[bytes] = []
        events = self.parser.feed(data)
        if end_of_stream:
            events += self.parser.close()
        if self.terminated:
            self._usage_after_end(events)
            return b""
        i = 0
        try:
            for i, ev in enumerate(events):
                await self._event(ev, out)
                if self.terminated:
                    break
            if end_of_stream and not self.terminated:
                if self.events == 0 and data and self.guards is not None:
                    raise Unguardable("the response is not an event stream")
                await self._flush_all(out)
        except StreamRejected as rej:
            self._reject(rej, out)
        except GatewayError as err:  # a webhook rejected, or failed closed
            self._terminate(err, out)
        except (Unguardable, AttributeError, TypeError, ValueError, KeyError) as exc:
            # An event the stream code cannot follow: fail closed, the client gets an error.
            log.warning("unreadable stream event", extra={"fields": {"route": self.route,
                                                                     "error": type(exc).__name__}})
            self._terminate(GatewayError(502, "the provider's stream could not be processed by "
                                              "the gateway", code="unguardable_response"), out)
        if self.terminated:
            self._usage_after_end(events[i + 1:])
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

    async def _event(self, ev: SSEEvent, out: list[bytes]) -> None:
        if not ev.has_data:
            out.append(encode(ev))
            return
        self.events += 1
        if ev.data == "[DONE]":
            await self._flush_all(out)
            out.append(DONE)
            return
        guarded = self.guards is not None
        try:
            chunk = orjson.loads(ev.data)
        except orjson.JSONDecodeError:
            if guarded:
                raise Unguardable("an event is not JSON") from None
            out.append(encode(ev))
            return
        if not isinstance(chunk, dict):
            if guarded:
                raise Unguardable("an event is not a JSON object")
            out.append(encode(ev))
            return
        if "error" in chunk and "choices" not in chunk:
            # The provider (or its translator) ended the stream with an error: what is held
            # is all there will be of the text, so release it (guarded) first.
            await self._flush_all(out)
            out.append(self._guarded_error(chunk, ev))
            return
        if chunk.get("model"):
            self.model = chunk["model"]
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        choices = chunk.get("choices")
        if not choices:
            if guarded and choices is None:
                return  # something we do not know: not passed on unread
            if not (self.strip_usage and usage):
                out.append(encode(ev))
            return
        if not guarded:
            self._note_tokens(choices)
            if self.strip_usage and usage:
                out.append(b"data: " + orjson.dumps({k: v for k, v in chunk.items() if k != "usage"}) + b"\n\n")
            else:
                out.append(encode(ev))
            return
        if not isinstance(choices, list):
            raise Unguardable("choices is not a list")
        kept = []
        for choice in choices:
            kept_choice = await self._choice(chunk, choice, out)
            if kept_choice is not None:
                kept.append(kept_choice)
        if kept or (usage and not self.strip_usage):
            new = {k: v for k, v in chunk.items() if not (k == "usage" and self.strip_usage)}
            new["choices"] = kept
            self._note_tokens(kept)
            out.append(b"data: " + orjson.dumps(new) + b"\n\n")

    async def _choice(self, chunk: dict, choice: dict, out: list[bytes]) -> dict | None:
        index = choice["index"] if isinstance(choice.get("index"), int) else 0
        state = self.choices.get(index)
        if state is None:
            state = self.choices[index] = _Choice()
        state.envelope = {k: v for k, v in chunk.items() if k not in ("choices", "usage")}
        delta = choice.get("delta") or {}
        if not isinstance(delta, dict):
            raise Unguardable("delta is not an object")
        new_delta = dict(delta)
        ends_text = bool(delta.get("tool_calls") or delta.get("function_call") or choice.get("finish_reason"))
        for name in GUARDED_FIELDS:
            value = delta.get(name)
            if isinstance(value, list):  # content given as parts: guard their text
                value = "".join(p.get("text", "") for p in value if isinstance(p, dict))
            elif value is not None and not isinstance(value, str):
                raise Unguardable(f"delta.{name} is not text")
            released = ""
            if value:
                released = await self._guard_text(state, name, value, final=False)
            if ends_text and name in state.fields:
                # A tool call or the finish ends this text for now: release what is held.
                released += await self._guard_text(state, name, "", final=True)
            if released:
                new_delta[name] = released
            elif value:
                del new_delta[name]  # all of it is held back for now
        if choice.get("finish_reason"):
            state.finished = True
        new = dict(choice)
        new["delta"] = new_delta
        # Log probabilities repeat the text token by token; not returned on guarded routes.
        new["logprobs"] = None
        if not new_delta and choice.get("finish_reason") is None:
            return None
        return new

    async def _guard_text(self, state: _Choice, name: str, text: str, final: bool) -> str:
        field = state.fields.get(name)
        if field is None:
            field = state.fields[name] = _Field(self._new_guard())
        released = text
        if field.guard is not None:
            released, findings = field.guard.finish() if final else field.guard.feed(text)
            for f in findings:
                metrics.guard_action(self.route, "response", "regex", "masked", f.entity)
        if self.guards is not None and self.guards.webhook is not None:
            released = await self._webhook(field, released, final)
        return released

    async def _webhook(self, field: _Field, text: str, final: bool) -> str:
        """The webhook sees sentence-sized segments (or the whole window when no sentence
        ends), like kgateway's extension; its masks and rejections apply to them."""
        field.webhook_buffer += text
        buf = field.webhook_buffer
        cut = len(buf) if final else 0
        if not final:
            for m in _SEGMENT_END.finditer(buf):
                cut = m.end()
            if cut == 0 and len(buf) >= self.guards.config.stream_window:  # type: ignore[union-attr]
                cut = len(buf)
        if cut == 0:
            return ""
        segment, field.webhook_buffer = buf[:cut], buf[cut:]
        if not segment.strip():
            return segment
        message = {"role": "assistant", "content": segment}
        await self.guards.webhook_texts([message], self.headers)  # type: ignore[union-attr]
        return message["content"]

    async def _flush_all(self, out: list[bytes]) -> None:
        for index, state in self.choices.items():
            if state.finished or state.envelope is None:
                continue
            delta = {}
            for name in list(state.fields):
                text = await self._guard_text(state, name, "", final=True)
                if text:
                    delta[name] = text
            state.finished = True
            if delta:
                chunk = dict(state.envelope)
                chunk["choices"] = [{"index": index, "delta": delta, "logprobs": None, "finish_reason": None}]
                self._note_tokens(chunk["choices"])
                out.append(b"data: " + orjson.dumps(chunk) + b"\n\n")

    def _new_guard(self) -> StreamTextGuard | None:
        g = self.guards
        if g is None or g.scanner is None:
            return None
        return StreamTextGuard(g.scanner, g.holdback, g.config.stream_window,
                               reject=g.config.regex.action == "REJECT")  # type: ignore[union-attr]

    def _guarded_error(self, chunk: dict, ev: SSEEvent) -> bytes:
        """A provider's error message is text too: mask it (or drop it on a match)."""
        err = chunk.get("error")
        if (self.guards is None or self.guards.scanner is None or not isinstance(err, dict)
                or not isinstance(err.get("message"), str)):
            return encode(ev)
        masked, findings = self.guards.scanner.mask(err["message"])
        if not findings:
            return encode(ev)
        reject = self.guards.config.regex.action == "REJECT"  # type: ignore[union-attr]
        new_err = {**err, "message": "the provider reported an error" if reject else masked}
        return b"data: " + orjson.dumps({**chunk, "error": new_err}) + b"\n\n"

    # ---- bookkeeping ----------------------------------------------------------------------
    def _note_tokens(self, choices: list[dict]) -> None:
        for choice in choices:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if not isinstance(delta, dict):
                continue
            content = delta.get("content")
            if content or delta.get("tool_calls"):
                now = time.monotonic()
                if self.first_token_at is None:
                    self.first_token_at = now
                self.last_token_at = now
                if isinstance(content, str) and self.text_kept < _TEXT_KEPT:
                    self.text_parts.append(content)
                    self.text_kept += len(content)

    def _reject(self, rej: StreamRejected, out: list[bytes]) -> None:
        entities = sorted({f.entity for f in rej.findings})
        for entity in entities:
            metrics.guard_action(self.route, "response", "regex", "rejected", entity)
        custom = self.guards.custom if self.guards else None  # type: ignore[union-attr]
        err = GatewayError(custom.status_code if custom else 403,
                           custom.message if custom else "rejected", code="content_policy_violation")
        self._terminate(err, out)

    def _terminate(self, err: GatewayError, out: list[bytes]) -> None:
        """End the client's stream with an error event, then [DONE]; the rest of the
        provider's stream is dropped (only its usage is still read)."""
        log.info("stream ended by the gateway", extra={"fields": {"route": self.route, "code": err.code}})
        out.append(b"data: " + error_body(err.message, status=err.status, code=err.code) + b"\n\n")
        out.append(DONE)
        self.terminated = True
