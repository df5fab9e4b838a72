"""Where the guards look: every string of a canonical request or response, as a slot that
can be read and written back.

A guard that reads only message text is bypassed by putting the text anywhere else (a
tool's description, `stop`, tool-call arguments, metadata). So the walk is the other way
round: every string value, every object key a client or model chose, and (in requests and
JSON answers) every integral number, written out as its integer, is guarded, except the
few positions listed below (opaque ids, binary payloads and the numbers the gateway reads,
each with its reason). Two views of one walk:

- `request_slots` / `response_slots` (and, for stream events, `event_slots.chunk_slots`,
  which walks with this module's `_Walk`): what the regex guard scans and
  masks. Tool-call arguments are split into their JSON strings and numbers
  (`json_text.JsonArguments`), so masking keeps them valid JSON.
- `request_texts` / `response_texts` / `message_texts`: the free text a model reads or
  writes (message text, tool-call arguments whole, tool and schema descriptions,
  `prediction`), which the webhook and moderation see, each with a role: the message's,
  `user` for request fields outside messages, `assistant` in a response. Names, enum
  values, `stop`, `user`, metadata, URLs, object keys and integral numbers are short
  tokens: in a request, the webhook gets each as a message of its own before the
  conversation and moderation gets them joined as one more input; in an answer, regex
  only.

Strings of the gateway's own vocabulary (`"function"`, `"auto"`, `"string"`, field names)
are not token slots: they carry nothing a client could hide, and a custom pattern that
happened to match one must not break the request's structure.

The slots themselves, and how each writes a masked text back, are in `slot_writers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import GatewayError, unguardable_response
from .api_vocabulary import VOCABULARY
from .json_text import JsonArguments, is_json, number_text
from .slot_writers import (
    TEXT,
    TOKEN,
    KeySlot,
    MessageParts,
    RawArgumentsSlot,
    Slot,
    TextSlot,
    TokenSlot,
)
from .text_documents import EncodedTextSlot, binary_payload, text_document
from .tool_results import tool_result_as_sent

# Message fields that hold text a provider reads or a client sees, besides `content`.
TEXT_FIELDS = ("refusal", "reasoning_content", "reasoning")
# A content part's text, under either key (`refusal`: an assistant's earlier refusal).
_PART_TEXT_KEYS = ("text", "refusal")
# Under these keys, a string in a tool, function or response_format definition is prose.
_SCHEMA_TEXT_KEYS = frozenset({"description", "title"})

# Positions never guarded, and why (the README's "Where the guards look" table):
# - `model`: a routing key chosen from the operator's backends, not free text; a masked
#   model would only turn into a provider 404.
# - ids (`id`, `tool_call_id`, `tool_calls[].id`, `audio.id`, `file.file_id`,
#   `system_fingerprint`): opaque tokens a provider generated and a client echoes back;
#   random characters read as phone numbers now and then, so a REJECT route would refuse
#   conversations at random, and masking would unlink tool calls from their results.
# - base64 media of 64+ characters (`image_url.url` data URLs, `input_audio.data`,
#   `file.file_data`, `audio.data`): bytes, not text. Shorter or non-base64 values (an
#   http URL) are guarded as strings. A text document in base64 (`data:text/plain;base64,`,
#   JSON, CSV, source; or bare base64 under a text file's `filename`) is text, and is
#   guarded decoded (text_documents.py).
# - `thinking_blocks[].signature` and `.data`: a provider's signature over its own
#   reasoning, and its encrypted reasoning. The provider verifies both when they come back,
#   so nothing a client writes there reaches a model; masking one would only break the
#   conversation. The block's `thinking` text is guarded like `reasoning_content`.
# - numbers the gateway itself reads, or the API's own parameters: an answer's `usage`
#   counters, `created` and `choices[].index`, `audio.expires_at`, and a request's sampling
#   and length parameters (`_REQUEST_NUMBERS`). Only when they are numbers: a string there
#   is scanned like any other (a number is never free text, a string may be). Every other
#   integral number (a schema's `enum`/`default`/`examples`, an unknown field) is scanned
#   as its integer value and masked by replacing the number with the mask string, in
#   stream events too (`event_slots.chunk_slots`). (`logprobs` are not walked: routes with response
#   guards drop them.)
_REQUEST_OPAQUE = frozenset({"model"})
# Roles whose content is a tool's result (`function` is the legacy name).
_RESULT_ROLES = ("tool", "function")
_SIGNED = {"signature", "data"}
_RESPONSE_OPAQUE = frozenset({"id", "model", "system_fingerprint"})
_REQUEST_NUMBERS = frozenset(
    {
        "temperature",
        "top_p",
        "top_k",
        "n",
        "max_tokens",
        "max_completion_tokens",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "seed",
        "top_logprobs",
        "logprobs",
    }
)


def _text_key(part: Any) -> str | None:
    """The key of a part's text as the translators read it (`text` of a text part,
    `refusal` of a refusal part); a text or refusal key a part's type does not use is
    scanned alone, never joined to its neighbours."""
    if isinstance(part, dict):
        kind = part.get("type")
        if kind in _PART_TEXT_KEYS and isinstance(part.get(kind), str):
            return str(kind)
    return None


class _Walk:
    """Collects slots. `regex`: every guarded string, arguments split into tokens;
    otherwise free text only, arguments whole."""

    def __init__(self, regex: bool, numbers: bool = False, tokens: bool = False) -> None:
        self.regex = regex
        # A free-text walk (regex False) that also collects the short tokens (names, enum
        # values, keys, integral numbers, unknown fields) into `tokens`: the webhook and
        # moderation see them too, apart from the conversation.
        self.keep_tokens = regex or tokens
        # Integral numbers are slots too (regex walks of requests and JSON answers).
        self.numbers = self.keep_tokens and numbers
        self.out: list[Slot] = []
        self.tokens: list[Slot] = self.out if regex else []
        self.joined: list[str] = []  # free-text walks: multi-part messages' joined text
        self.answer = False  # walking a provider's answer (set by `response`)

    # ---- primitives ---------------------------------------------------------------------
    def value(self, holder: Any, key: Any, text: str, kind: str, role: str) -> TextSlot | None:
        if kind == TOKEN and (not self.keep_tokens or text in VOCABULARY):
            return None
        slot = TextSlot(holder, key, text, role, kind)
        (self.out if kind == TEXT else self.tokens).append(slot)
        return slot

    def number(self, holder: Any, key: Any, value: Any, role: str) -> TextSlot | None:
        """An integral JSON number, scanned as its integer; masking writes the mask string
        in its place (`{"n": 4111…}` -> `{"n": "<CREDIT_CARD>"}`)."""
        text = number_text(value)
        if text is None:
            return None
        slot = TextSlot(holder, key, text, role, TOKEN)
        self.tokens.append(slot)
        return slot

    def key(self, holder: dict[str, Any], key: Any, value: TextSlot | None, role: str) -> None:
        if self.keep_tokens and isinstance(key, str) and key not in VOCABULARY:
            self.tokens.append(KeySlot(holder, key, role, value))

    def walk(
        self,
        holder: Any,
        key: Any,
        kind: str,
        role: str,
        text_keys: frozenset[str] = frozenset(),
        numbers: bool = True,
    ) -> None:
        """`holder[key]` and everything below it, keys included. Iterative: the depth of
        client JSON must not reach Python's recursion limit. `numbers`: integral numbers
        below are slots too (when this walk scans numbers at all)."""
        numbers = numbers and self.numbers
        stack = [(holder, key)]
        while stack:
            h, k = stack.pop()
            v = h[k]
            slot = None
            if isinstance(v, str):
                slot = self.value(h, k, v, TEXT if k in text_keys else kind, role)
            elif numbers and isinstance(v, (int, float)):
                slot = self.number(h, k, v, role)
            elif isinstance(v, dict):
                stack.extend((v, ck) for ck in reversed(list(v)))
            elif isinstance(v, list):
                stack.extend((v, i) for i in reversed(range(len(v))))
            if isinstance(h, dict):
                self.key(h, k, slot, role)

    # ---- messages -----------------------------------------------------------------------
    def message(self, m: Any, default_role: str) -> None:
        if not isinstance(m, dict):
            return
        role = m["role"] if isinstance(m.get("role"), str) else default_role
        for k in list(m):
            v = m[k]
            if k == "content" and role in _RESULT_ROLES:
                v = m[k] = tool_result_as_sent(v)
            if k == "content" and isinstance(v, list):
                parts = self.message_parts(v, role)
                for i in range(len(v)):
                    self.part(v, i, role, parts)
                if parts is not None:
                    self.out.extend(parts.seam_slots())
            elif k == "content" and v is not None and not isinstance(v, str):
                self.walk(m, k, TEXT, role)
            elif k == "content" or (k in TEXT_FIELDS and isinstance(v, str)):
                if isinstance(v, str):
                    self.value(m, k, v, TEXT, role)
            elif k == "tool_calls" and isinstance(v, list):
                for i, call in enumerate(v):
                    if isinstance(call, dict):
                        self.call(call, role)
                    else:  # not a call: whatever it holds is scanned
                        self.walk(v, i, TOKEN, role)
            elif k == "function_call" and isinstance(v, dict):
                self.function(v, role)
            elif k == "thinking_blocks" and isinstance(v, list):
                for i, block in enumerate(v):
                    if isinstance(block, dict):
                        self.media(block, role, _SIGNED, set(), text_keys=frozenset({"thinking"}))
                    else:
                        self.walk(v, i, TOKEN, role)
            elif k == "tool_call_id":
                continue  # an opaque id (not guarded, see above)
            elif k == "audio" and isinstance(v, dict):
                self.media(v, role, {"id"}, {"data"}, text_keys=frozenset({"transcript"}))
            else:
                self.walk(m, k, TOKEN, role)

    def message_parts(self, content: list[Any], role: str) -> MessageParts | None:
        """A message's text parts (two or more), read joined as a model reads them: for the
        regex guard, a MessageParts that scans each part and the text around each boundary
        between parts. Free-text walks keep one slot per part (the webhook's contract) and
        note the joined text for moderation (`joined`)."""
        pieces = [(p, key) for p in content if (key := _text_key(p)) is not None]
        if len(pieces) < 2:
            return None
        if not self.regex:
            self.joined.append("".join(p[key] for p, key in pieces))
            return None
        return MessageParts(pieces, role)

    def part(self, parts: list[Any], i: int, role: str, joined: MessageParts | None = None) -> None:
        """One content part; `joined`: its message's text parts, when read joined."""
        part = parts[i]
        if not isinstance(part, dict):
            self.walk(parts, i, TEXT, role)
            return
        for k in list(part):
            v = part[k]
            if k in _PART_TEXT_KEYS and isinstance(v, str):
                if joined is not None and k == _text_key(part):
                    self.out.append(joined.next_piece())
                else:
                    self.value(part, k, v, TEXT, role)
            elif k in ("type", "cache_control"):  # the API's own tokens
                self.walk(part, k, TOKEN, role)
            elif k == "image_url" and isinstance(v, dict):
                self.media(v, role, set(), {"url"})
            elif k == "image_url" and self.document(part, k, role):
                continue
            elif k == "image_url" and isinstance(v, str) and binary_payload(v):
                continue
            elif k == "input_audio" and isinstance(v, dict):
                self.media(v, role, set(), {"data"})
            elif k == "file" and isinstance(v, dict):
                self.media(v, role, {"file_id"}, {"file_data"})
            else:  # a part of a kind we do not know: its strings are text
                self.walk(part, k, TEXT, role)

    def media(
        self,
        obj: dict[str, Any],
        role: str,
        ids: set[str],
        payloads: set[str],
        text_keys: frozenset[str] = frozenset(),
    ) -> None:
        for k in list(obj):
            if k in payloads and self.document(obj, k, role, obj.get("filename")):
                continue
            if k in ids or (k in payloads and binary_payload(obj[k])):
                continue  # opaque ids, binary media (not guarded, see above)
            self.walk(obj, k, TOKEN, role, text_keys, numbers=k != "expires_at")

    def document(self, holder: dict[str, Any], key: str, role: str, filename: Any = None) -> bool:
        """A text document in base64 at `holder[key]`: guarded as its decoded text (one
        slot, free text for every guard). False when it is none."""
        try:
            found = text_document(holder[key], filename)
        except GatewayError:
            if self.answer:  # a provider's answer, not the client's request: a 502
                raise unguardable_response() from None
            raise
        if found is None:
            return False
        header, text = found
        self.out.append(EncodedTextSlot(holder, key, header, text, role))
        return True

    def call(self, call: Any, role: str) -> None:
        if not isinstance(call, dict):
            return
        for k in list(call):
            if k == "id":
                continue  # opaque id
            if k == "function" and isinstance(call[k], dict):
                self.function(call[k], role)
            else:
                self.walk(call, k, TOKEN, role)

    def function(self, fn: dict[str, Any], role: str) -> None:
        for k in list(fn):
            v = fn[k]
            if k == "arguments" and isinstance(v, str):
                self.arguments(fn, v, role)
            else:
                self.walk(fn, k, TOKEN, role)

    def arguments(self, fn: dict[str, Any], text: str, role: str) -> None:
        if not self.regex:
            self.out.append(TextSlot(fn, "arguments", text, role, TEXT))
        elif is_json(text):
            doc = JsonArguments(fn, "arguments", text)
            self.out.extend(TokenSlot(doc, i, t, role) for i, t in doc.tokens())
        elif text:
            self.out.append(RawArgumentsSlot(fn, "arguments", text, role))

    # ---- documents ----------------------------------------------------------------------
    def request(self, req: dict[str, Any]) -> None:
        for k in list(req):
            v = req[k]
            if k == "messages" and isinstance(v, list):
                for m in v:
                    self.message(m, "user")
            elif k in _REQUEST_OPAQUE:
                continue
            elif k in _REQUEST_NUMBERS:  # the API's parameters: numbers skipped, strings scanned
                self.walk(req, k, TOKEN, "user", numbers=False)
            elif k in ("tools", "functions", "response_format"):
                self.walk(req, k, TOKEN, "user", _SCHEMA_TEXT_KEYS)
            elif k == "prediction":
                self.walk(req, k, TOKEN, "user", frozenset({"content", "text"}))
            else:  # stop, user, metadata, tool_choice, function_call, extensions...
                self.walk(req, k, TOKEN, "user")

    def response(self, doc: dict[str, Any]) -> None:
        self.answer = True
        for k in list(doc):
            if k in _RESPONSE_OPAQUE:
                continue
            v = doc[k]
            if k == "choices" and isinstance(v, list):
                for choice in v:
                    if isinstance(choice, dict):
                        self.choice(choice)
            elif k in ("usage", "created"):  # numbers the gateway reads; strings scanned
                self.walk(doc, k, TOKEN, "assistant", numbers=False)
            else:
                self.walk(doc, k, TOKEN, "assistant")

    def choice(self, choice: dict[str, Any]) -> None:
        for k in list(choice):
            if k == "logprobs":
                continue
            if k == "index":  # a number the gateway reads; a string is scanned
                self.walk(choice, k, TOKEN, "assistant", numbers=False)
            elif k == "message" and isinstance(choice[k], dict):
                self.message(choice[k], "assistant")
            else:
                self.walk(choice, k, TOKEN, "assistant")


def request_slots(req: dict[str, Any]) -> list[Slot]:
    """Every guarded string of a canonical request, for the regex guard."""
    w = _Walk(regex=True, numbers=True)
    w.request(req)
    return w.out


@dataclass(slots=True)
class RequestTexts:
    """What the webhook and moderation read of a request (`request_texts`)."""

    texts: list[Slot]  # the free text, with roles: one slot per message text or part
    tokens: list[Slot]  # every other string, key and integral number the regex guard reads
    joined: list[str]  # each multi-part message's text parts joined, as a model reads them


def request_texts(req: dict[str, Any]) -> RequestTexts:
    """For the webhook and moderation: the request's free text, and apart from it the
    short tokens (a tool's name and enum values, a message's `name`, `stop`, metadata,
    unknown fields) and the joined text of messages in several parts. A model reads those
    too: an instruction in an `enum`, or split across parts, must not get past moderation."""
    w = _Walk(regex=False, numbers=True, tokens=True)
    w.request(req)
    return RequestTexts(w.out, w.tokens, w.joined)


def response_slots(completion: dict[str, Any]) -> list[Slot]:
    w = _Walk(regex=True, numbers=True)
    w.response(completion)
    return w.out


def response_texts(completion: dict[str, Any]) -> list[Slot]:
    w = _Walk(regex=False)
    w.response(completion)
    return w.out


def message_texts(message: dict[str, Any], default_role: str = "user") -> list[Slot]:
    w = _Walk(regex=False)
    w.message(message, default_role)
    return w.out
