"""The route-level view of a streamed response: canonical `chat.completion.chunk` events.

Runs after provider translation, so it is the same for every provider. Per event it
- guards each choice's content (regex and builtins with hold-back, then the webhook on
  sentence-sized segments), releasing text as soon as it cannot become part of a match;
- leaves tool-call deltas unguarded, releasing held text of that choice just before them
  so order is kept;
- captures `usage` and, when the gateway (not the client) asked for it, drops the
  usage-only chunk;
- ends the stream with an OpenAI-style error event and `[DONE]` when a guard rejects.
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

# A webhook sees text in segments ending at a sentence or line end, or a full window.
_SEGMENT_END = re.compile(r"[.!?\n][\"')\]]*\s")


class _Choice:
    __slots__ = ("guard", "webhook_buffer", "envelope", "finished")

    def __init__(self, guard: StreamTextGuard | None) -> None:
        self.guard = guard
        self.webhook_buffer = ""
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
        self.terminated = False
        self.saw_done = False
        self.error: dict[str, Any] | None = None

    # ---- bytes in, bytes out ------------------------------------------------------------
    async def feed(self, data: bytes, end_of_stream: bool) -> bytes:
        if self.terminated:
            return b""
        out: list[bytes] = []
        events = self.parser.feed(data)
        if end_of_stream:
            events += self.parser.close()
        try:
            for ev in events:
                await self._event(ev, out)
                if self.terminated:
                    break
            if end_of_stream and not self.terminated:
                await self._flush_all(out)
        except StreamRejected as rej:
            self._reject(rej, out)
        except GatewayError as err:  # a webhook rejected, or failed closed
            self._terminate(err, out)
        return b"".join(out)

    async def _event(self, ev: SSEEvent, out: list[bytes]) -> None:
        if not ev.has_data:
            out.append(encode(ev))
            return
        if ev.data == "[DONE]":
            await self._flush_all(out)
            self.saw_done = True
            out.append(DONE)
            return
        try:
            chunk = orjson.loads(ev.data)
        except orjson.JSONDecodeError:
            out.append(encode(ev))
            return
        if not isinstance(chunk, dict):
            out.append(encode(ev))
            return
        if "error" in chunk and "choices" not in chunk:
            # The provider (or its translator) ended the stream with an error: what is held
            # is all there will be of the text, so release it (guarded) first.
            await self._flush_all(out)
            self.error = chunk
            out.append(encode(ev))
            return
        if chunk.get("model"):
            self.model = chunk["model"]
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        choices = chunk.get("choices")
        if not choices:
            if not (self.strip_usage and chunk.get("usage")):
                out.append(encode(ev))
            return
        if self.guards is None:
            self._note_tokens(choices)
            out.append(encode(ev))
            return
        kept = []
        for choice in choices:
            kept_choice = await self._choice(chunk, choice, out)
            if kept_choice is not None:
                kept.append(kept_choice)
        if kept or chunk.get("usage"):
            new = dict(chunk)
            new["choices"] = kept
            self._note_tokens(kept)
            out.append(b"data: " + orjson.dumps(new) + b"\n\n")

    async def _choice(self, chunk: dict, choice: dict, out: list[bytes]) -> dict | None:
        index = choice.get("index", 0)
        state = self.choices.get(index)
        if state is None:
            state = self.choices[index] = _Choice(self._new_guard())
        state.envelope = {k: v for k, v in chunk.items() if k not in ("choices", "usage")}
        delta = choice.get("delta") or {}
        content = delta.get("content")
        released = ""
        if isinstance(content, str) and content:
            released = await self._guard_text(state, content, final=False)
        # A tool call or the finish ends this choice's text: release what is held first.
        if delta.get("tool_calls") or delta.get("function_call") or choice.get("finish_reason"):
            released += await self._guard_text(state, "", final=True)
            state.finished = True
        new_delta = dict(delta)
        if released:
            new_delta["content"] = released
        elif isinstance(content, str) and content:
            del new_delta["content"]  # all of it is held back for now
        if not new_delta and choice.get("finish_reason") is None and not choice.get("logprobs"):
            return None
        new = dict(choice)
        new["delta"] = new_delta
        return new

    async def _guard_text(self, state: _Choice, text: str, final: bool) -> str:
        released = text
        if state.guard is not None:
            released, findings = state.guard.finish() if final else state.guard.feed(text)
            for f in findings:
                metrics.guard_action(self.route, "response", "regex", "masked", f.entity)
        if self.guards is not None and self.guards.webhook is not None:
            released = await self._webhook(state, released, final)
        return released

    async def _webhook(self, state: _Choice, text: str, final: bool) -> str:
        """The webhook sees sentence-sized segments (or the whole window when no sentence
        ends), like kgateway's extension; its masks and rejections apply to them."""
        state.webhook_buffer += text
        buf = state.webhook_buffer
        cut = len(buf) if final else 0
        if not final:
            for m in _SEGMENT_END.finditer(buf):
                cut = m.end()
            if cut == 0 and len(buf) >= self.guards.config.stream_window:  # type: ignore[union-attr]
                cut = len(buf)
        if cut == 0 or not buf[:cut].strip() and not final:
            return ""
        segment, state.webhook_buffer = buf[:cut], buf[cut:]
        if not segment:
            return ""
        message = {"role": "assistant", "content": segment}
        await self.guards.webhook_texts([message], self.headers)  # type: ignore[union-attr]
        return message["content"]

    async def _flush_all(self, out: list[bytes]) -> None:
        for index, state in self.choices.items():
            if state.finished or state.envelope is None:
                continue
            text = await self._guard_text(state, "", final=True)
            state.finished = True
            if text:
                chunk = dict(state.envelope)
                chunk["choices"] = [{"index": index, "delta": {"content": text}, "logprobs": None,
                                     "finish_reason": None}]
                self._note_tokens(chunk["choices"])
                out.append(b"data: " + orjson.dumps(chunk) + b"\n\n")

    def _new_guard(self) -> StreamTextGuard | None:
        g = self.guards
        if g is None or g.scanner is None:
            return None
        return StreamTextGuard(g.scanner, g.holdback, g.config.stream_window,
                               reject=g.config.regex.action == "REJECT")  # type: ignore[union-attr]

    # ---- bookkeeping ----------------------------------------------------------------------
    def _note_tokens(self, choices: list[dict]) -> None:
        for choice in choices:
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content or delta.get("tool_calls"):
                now = time.monotonic()
                if self.first_token_at is None:
                    self.first_token_at = now
                self.last_token_at = now
                if isinstance(content, str):
                    self.text_parts.append(content)

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
        provider's stream is dropped."""
        log.info("stream ended by a guard", extra={"fields": {"route": self.route, "code": err.code}})
        self.error = {"error": {"message": err.message, "code": err.code}}
        out.append(b"data: " + error_body(err.message, status=err.status, code=err.code) + b"\n\n")
        out.append(DONE)
        self.terminated = True
