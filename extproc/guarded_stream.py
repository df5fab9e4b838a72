"""The stream reader of a route with response guards (see response_stream.py for the
reading both kinds share).

Per event it
- guards each choice's streamed text (content, refusal, reasoning, any other string
  field of the delta, every text string of a nested delta object by its path, audio
  transcripts) and each tool call's streamed arguments with the regex and builtins,
  holding back only what may still become part of a match, then the webhook on
  sentence-sized segments. A field's held text waits through other fields and calls
  until the field goes on or the choice finishes: a client joins each field's pieces;
- masks (or rejects on) every other string of an event but its ids (tool names, finish
  reasons, unknown fields: `event_slots.chunk_slots`), per event, and every string of a
  provider's error event;
- sends only an event's data (no comments, ids, event names: `_framed`);
- ends the stream with an OpenAI-style error event and `[DONE]` when a guard rejects, or
  when an event cannot be read (never passing it on unguarded).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from . import metrics
from .errors import GatewayError, error_body
from .guards.event_slots import chunk_slots, event_slots
from .guards.pipeline import ResponseGuards
from .guards.regex_guard import Finding, PatternTimeout
from .guards.stream_guard import StreamRejected, StreamTextGuard
from .response_stream import PassThroughStream, ResponseStream, Unguardable
from .sse import SSEEvent, encode
from .stream_fields import (
    ARG_FIELDS,
    GUARDED_FIELDS,
    ChoiceState,
    Field,
    flat_text,
    get_path,
    names_of,
    put_new,
    set_leaf,
    text_paths,
)

# A webhook sees text in segments ending at a sentence or line end, or a full window.
_SEGMENT_END = re.compile(r"[.!?][\"')\]]*\s|\n")


class GuardedStream(ResponseStream):
    guarded = True

    def __init__(
        self, route: str, guards: ResponseGuards, strip_usage: bool, headers: dict[str, str]
    ) -> None:
        super().__init__(route, strip_usage)
        self.guards = guards
        self.headers = headers
        # REJECT: a match ends the stream; MASK: it is masked.
        self.rejects = guards.config.regex is not None and guards.config.regex.action == "REJECT"
        self.choices: dict[int, ChoiceState] = {}
        # Scan-worker seconds this stream has used, against the route's scan budget.
        self.scan_seconds = 0.0

    async def _chunk(self, chunk: dict[str, Any], ev: SSEEvent, out: list[bytes]) -> None:
        rewritten = self._guard_extras(chunk)
        usage = self._capture(chunk)
        choices = chunk.get("choices")
        if not choices:
            if choices is None:
                return  # something we do not know: not passed on unread
            if not (self.strip_usage and usage):
                out.append(b"data: " + orjson.dumps(chunk) + b"\n\n" if rewritten else encode(ev))
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
        index = _index(choice, 0)
        state = self.choices.get(index)
        if state is None:
            state = self.choices[index] = ChoiceState()
        state.envelope = {k: v for k, v in chunk.items() if k not in ("choices", "usage")}
        delta = choice.get("delta") or {}
        if not isinstance(delta, dict):
            raise Unguardable("delta is not an object")
        new_delta = delta  # parsed from this event: ours to rewrite
        finish = bool(choice.get("finish_reason"))
        calls, fcall = delta.get("tool_calls"), delta.get("function_call")
        for path in text_paths(delta, state):
            await self._text_field(state, new_delta, path, finish)
        if calls is not None and not isinstance(calls, list):
            raise Unguardable("delta.tool_calls is not a list")
        new_calls = await self._tool_calls(state, calls or [], finish)
        if new_calls:
            new_delta["tool_calls"] = new_calls
        elif calls:
            del new_delta["tool_calls"]
        if fcall is not None or (finish and ("function_call",) in state.fields):
            if not isinstance(fcall or {}, dict):
                raise Unguardable("delta.function_call is not an object")
            new_fc = await self._arguments(state, ("function_call",), fcall or {}, finish)
            if new_fc:
                new_delta["function_call"] = new_fc
            else:
                new_delta.pop("function_call", None)
        if finish:
            state.finished = True
        new = dict(choice)
        new["delta"] = new_delta
        # Log probabilities repeat the text token by token; not returned on guarded routes.
        new["logprobs"] = None
        if not new_delta and choice.get("finish_reason") is None:
            return None
        return new

    async def _text_field(self, state: ChoiceState, delta: dict[str, Any], path: tuple, finish: bool) -> None:
        """One streamed text field of the delta: its piece goes through the field's guard
        and what may be released takes its place. A field's held text waits through other
        fields (thinking, a signature, tool calls) until the field goes on or the choice
        finishes: a client joins the field's pieces, so a value split around another
        field is still one value."""
        value = get_path(delta, path)
        given_as_parts = len(path) == 1 and path[0] in GUARDED_FIELDS and isinstance(value, list)
        if given_as_parts:  # a list of parts: all of its text, as one text
            value = flat_text(value)
        elif value is not None and not isinstance(value, str):
            raise Unguardable(f"delta.{'.'.join(map(str, path))} is not text")
        released = ""
        if value:
            released = await self._guard_text(state, path, value, final=False)
            if len(path) > 1:
                state.fields[path].names = names_of(delta, path)
        if finish and path in state.fields:
            released += await self._guard_text(state, path, "", final=True)
        if len(path) == 1:
            if released:
                delta[path[0]] = released
            elif value or given_as_parts:
                del delta[path[0]]  # all of it is held back for now
        elif value is not None:
            set_leaf(delta, path, released)  # the object stays, its text is what is released
        elif released:
            put_new(delta, path, released, state.fields[path].names)

    async def _tool_calls(self, state: ChoiceState, calls: list, final: bool) -> list[dict]:
        """Guard streamed tool-call deltas: each call's arguments through its own stream
        guard, kept (with what it holds) until the JSON value closes or the choice
        finishes, whatever other calls come between its pieces."""
        out: list[dict] = []
        for pos, call in enumerate(calls):
            if not isinstance(call, dict):
                raise Unguardable("a tool call delta is not an object")
            idx = _index(call, pos)
            new_call = dict(call)
            fn = call.get("function")
            if fn is not None:
                if not isinstance(fn, dict):
                    raise Unguardable("a tool call's function is not an object")
                new_call["function"] = await self._arguments(state, ("tool_calls", idx), fn, final)
                if not new_call["function"]:
                    del new_call["function"]
            if set(new_call) - {"index"}:
                out.append(new_call)
        if final:
            out += await self._close_tools(state)
        return out

    async def _arguments(self, state: ChoiceState, key: tuple, fn: dict, final: bool) -> dict:
        """`fn` with its `arguments` fragment replaced by what may be released now."""
        args = fn.get("arguments")
        if args is not None and not isinstance(args, str):
            raise Unguardable("tool call arguments are not text")
        new_fn = dict(fn)
        released = await self._guard_text(state, key, args, final=False) if args else ""
        if final and key in state.fields:
            released += await self._guard_text(state, key, "", final=True)
            del state.fields[key]
        if released:
            new_fn["arguments"] = released
        elif args:
            del new_fn["arguments"]
        return new_fn

    async def _close_tools(self, state: ChoiceState) -> list[dict]:
        """The choice finished: release every tool call's held arguments."""
        out = []
        for key in sorted(k for k in state.fields if k[0] == "tool_calls"):
            released = await self._guard_text(state, key, "", final=True)
            del state.fields[key]
            if released:
                out.append({"index": key[1], "function": {"arguments": released}})
        return out

    async def _guard_text(self, state: ChoiceState, key: tuple, text: str, final: bool) -> str:
        field = state.fields.get(key)
        if field is None:
            field = state.fields[key] = Field(
                self._new_guard(), json_args=key[0] in ARG_FIELDS, found=self._masks_number
            )
        if field.decoder is not None:
            text = field.decoder.feed(text, final)
        if field.numbers is not None:
            text = field.numbers.feed(text, final)
        released = text
        if field.guard is not None:
            cut = field.ends.end_in(text) if field.ends is not None else None
            pieces = [(text, final)] if cut is None else [(text[:cut], True), (text[cut:], final)]
            released, findings = "", []
            for piece, done in pieces:
                out, found = await field.guard.feed_with(piece, self._scan_step) if piece else ("", [])
                if done:
                    rest, more = await field.guard.finish_with(self._scan_step)
                    out, found = out + rest, found + more
                released += out
                findings += found
            for f in findings:
                metrics.guard_action(self.route, "response", "regex", "masked", f.entity)
        if field.quoter is not None:
            released = field.quoter.feed(released)
        if self.guards.webhook is not None:
            released = await self._webhook(field, released, final)
        return released

    async def _scan_step(self, text: str, hint: str) -> list[Finding]:
        """A stream guard's step, scanned where its size allows (RegexStage.scan_step)."""
        stage = self.guards.regex
        assert stage is not None  # a stream guard exists only with a regex guard
        findings, seconds = await stage.scan_step(text, hint, self.scan_seconds)
        self.scan_seconds += seconds
        return findings

    async def _webhook(self, field: Field, text: str, final: bool) -> str:
        """The webhook sees sentence-sized segments (or the whole window when no sentence
        ends), like kgateway's extension; its masks and rejections apply to them."""
        field.webhook_buffer += text
        buf = field.webhook_buffer
        cut = len(buf) if final else 0
        if not final:
            for m in _SEGMENT_END.finditer(buf):
                cut = m.end()
            if cut == 0 and len(buf) >= self.guards.config.stream_window:
                cut = len(buf)
        if cut == 0:
            return ""
        segment, field.webhook_buffer = buf[:cut], buf[cut:]
        if not segment.strip():
            return segment
        message = {"role": "assistant", "content": segment}
        await self.guards.webhook_texts([message], self.headers)
        return message["content"]

    async def _flush_all(self, out: list[bytes]) -> None:
        for index, state in self.choices.items():
            if state.finished or state.envelope is None:
                continue
            delta: dict[str, Any] = {}
            for key in list(state.fields):
                text = await self._guard_text(state, key, "", final=True)
                if not text:
                    continue
                if key[0] == "tool_calls":
                    delta.setdefault("tool_calls", []).append(
                        {"index": key[1], "function": {"arguments": text}}
                    )
                elif key[0] == "function_call":
                    delta["function_call"] = {"arguments": text}
                else:
                    put_new(delta, key, text, state.fields[key].names)
            state.finished = True
            if delta:
                self._held_text_event(index, state, delta, out)

    def _held_text_event(
        self, index: int, state: ChoiceState, delta: dict[str, Any], out: list[bytes]
    ) -> None:
        """An event of the gateway's own, in the choice's envelope, carrying held-back text."""
        if state.envelope is None:
            return
        chunk = dict(state.envelope)
        chunk["choices"] = [{"index": index, "delta": delta, "logprobs": None, "finish_reason": None}]
        self._note_tokens(chunk["choices"])
        out.append(b"data: " + orjson.dumps(chunk) + b"\n\n")

    def _guard_extras(self, chunk: dict) -> bool:
        """Mask, or reject on, the event's strings that are not streamed text (tool names,
        finish reasons, unknown fields). They arrive whole, so each event is scanned as is.
        True when something was masked."""
        scanner = self.guards.scanner
        if scanner is None:
            return False
        reject = self.rejects
        changed = False
        for slot in chunk_slots(chunk):
            masked, findings = scanner.mask(slot.text)
            if not findings:
                continue
            if reject:
                raise StreamRejected(findings)
            for f in findings:
                metrics.guard_action(self.route, "response", "regex", "masked", f.entity)
            slot.set(masked)
            changed = True
        return changed

    def _masks_number(self, integer: str) -> bool:
        """Whether the regex guard finds anything in a streamed argument number's integer
        (a few dozen characters at most: scanned here, on the loop)."""
        scanner = self.guards.scanner if self.guards is not None else None
        return scanner is not None and bool(scanner.scan(integer))

    def _new_guard(self) -> StreamTextGuard | None:
        g = self.guards
        if g is None or g.scanner is None or g.holdback is None or g.config.regex is None:
            return None
        return StreamTextGuard(
            g.scanner, g.holdback, g.config.stream_window, reject=g.config.regex.action == "REJECT"
        )

    def _error_event(self, chunk: dict[str, Any], ev: SSEEvent) -> bytes:
        """A provider's error event is text too: every string and key of it is masked
        (or, on a match with REJECT, the event is replaced by one of the gateway's own)."""
        scanner = self.guards.scanner
        changed = False
        for slot in event_slots(chunk) if scanner is not None else []:
            assert scanner is not None
            masked, findings = scanner.mask(slot.text)
            if not findings:
                continue
            if self.rejects:
                for f in findings:
                    metrics.guard_action(self.route, "response", "regex", "rejected", f.entity)
                return (
                    b"data: "
                    + error_body("the provider reported an error", status=502, code="upstream_error")
                    + b"\n\n"
                )
            for f in findings:
                metrics.guard_action(self.route, "response", "regex", "masked", f.entity)
            slot.set(masked)
            changed = True
        return b"data: " + orjson.dumps(chunk) + b"\n\n" if changed else encode(ev)

    def _framed(self, ev: SSEEvent) -> SSEEvent | None:
        """Only an event's data goes out: comments, `id:`, `retry:` and `event:` names are
        dropped (after translation the stream is OpenAI's, which names no events). An
        event of comments only (a keep-alive) becomes an empty comment."""
        if not ev.has_data:
            return SSEEvent(comments=[""]) if ev.comments else None
        if ev.comments or ev.event is not None or ev.id is not None or ev.retry is not None:
            return SSEEvent(ev.data, None, None, None, [], True)
        return ev

    def _undecided(self, timeout: PatternTimeout) -> GatewayError:
        assert self.guards.regex is not None  # only a regex guard scans
        return self.guards.regex.undecided(timeout.name)

    def _reject(self, rej: StreamRejected, out: list[bytes]) -> None:
        entities = sorted({f.entity for f in rej.findings})
        for entity in entities:
            metrics.guard_action(self.route, "response", "regex", "rejected", entity)
        custom = self.guards.custom
        err = GatewayError(
            custom.status_code if custom else 403,
            custom.message if custom else "rejected",
            code="content_policy_violation",
        )
        self._terminate(err, out)


def _index(obj: dict[str, Any], default: int) -> int:
    """A choice's or tool call's index: a number the gateway reads and sends on unguarded,
    so anything but an integer (or none) is a shape the guards cannot read."""
    index = obj.get("index")
    if index is None:
        return default
    if not isinstance(index, int) or isinstance(index, bool):
        raise Unguardable("an index is not an integer")
    return index


def response_stream(
    route: str, guards: ResponseGuards | None, strip_usage: bool, headers: dict[str, str]
) -> ResponseStream:
    """The stream reader for a route: guarded when it has response guards."""
    if guards is None:
        return PassThroughStream(route, strip_usage)
    return GuardedStream(route, guards, strip_usage, headers)
