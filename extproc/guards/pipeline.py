"""Runs a route's guards on the canonical request and the canonical (JSON) response.

Guards read every string of the request or response but a few opaque ones (ids, binary
media; see `text_slots`): message text, tool-call arguments, tool definitions, `stop`,
metadata, unknown fields. The regex guard scans all of them; the webhook and moderation
see the free text, and on requests the short tokens too, apart from it
(`text_slots.request_texts`). Order on a request: regex (cheap, local), then the webhook,
then moderation, each on the result of the previous one. A rejection stops at once; the
provider is never called.
"""

from __future__ import annotations

from typing import Any

from .. import metrics, offload
from ..errors import GatewayError, unguardable_response
from . import text_slots
from .config import CustomResponse, RequestGuardConfig, ResponseGuardConfig
from .holdback import Holdback
from .moderation import Moderator, build_moderator
from .regex_guard import TextScanner
from .regex_stage import RegexStage, rejected
from .slot_writers import Slot  # where guarded text sits, and how it is written back
from .webhook import Verdict, WebhookGuard


class RequestGuards:
    def __init__(self, config: RequestGuardConfig, route: str) -> None:
        self.route = route
        self.custom = config.custom_response
        self.regex = (
            RegexStage(
                TextScanner(config.regex),
                config.regex.action,
                route,
                "request",
                self.custom,
                config.scan_budget,
            )
            if config.regex
            else None
        )
        self.webhook = WebhookGuard(config.webhook) if config.webhook else None
        self.moderator = build_moderator(config.moderation) if config.moderation else None

    async def apply(self, req: dict[str, Any], headers: dict[str, str], size: int = 0) -> bool:
        """Guard the request in place. Returns True when text was masked; raises
        GatewayError to reject. `size`: the body's bytes (a large one is walked off the
        event loop)."""
        changed = False
        if self.regex is not None:
            changed |= await self.regex.run(await offload.run(size, text_slots.request_slots, req), size)
        # Each later stage walks the request again: it sees what the one before wrote.
        if self.webhook is not None:
            changed |= await self._webhook(self.webhook, req, headers, size)
        if self.moderator is not None:
            await self._moderate(self.moderator, req, size)
        return changed

    async def _webhook(
        self, webhook: WebhookGuard, req: dict[str, Any], headers: dict[str, str], size: int
    ) -> bool:
        # One webhook message per text (a plain message is one text, as the contract shows);
        # text outside messages (tool descriptions, prediction) goes as role `user`. The
        # short tokens (names, enum values, keys, unknown fields) go first, one per line of
        # one `user` message, so the conversation still ends with the client's latest one.
        found = await offload.run(size, text_slots.request_texts, req)
        slots = _token_lines(found.tokens) + found.texts
        sent = [{"role": slot.role, "content": slot.text} for slot in slots]
        verdict = await webhook.check_request(sent, headers)
        returned = [m.get("content", "") for m in verdict.messages or []]
        return _settle(verdict, self.route, "request", self.custom, slots, returned)

    async def _moderate(self, moderator: Moderator, req: dict[str, Any], size: int) -> None:
        found = await offload.run(size, text_slots.request_texts, req)
        texts = [s.text for s in found.texts if s.text] + found.joined
        texts += _token_inputs([t.text for t in found.tokens])
        result = await moderator.check(texts)
        if result.failed and result.flagged:
            metrics.guard_action(self.route, "request", "moderation", "failed")
            raise GatewayError(
                502, "the content moderation service is unavailable", code="moderation_unavailable"
            )
        if result.failed:
            metrics.guard_action(self.route, "request", "moderation", "failed_open")
        if result.flagged:
            for category in result.categories or ["flagged"]:
                metrics.guard_action(self.route, "request", "moderation", "rejected", category)
            raise rejected(self.custom, "content_flagged")


class _TokenLines:
    """Short tokens as the lines of one webhook message; a mask comes back line by line.
    A webhook that returns another number of lines cannot be applied: the request is
    refused as when the webhook fails (never passed on half-masked)."""

    role = "user"
    kind = "text"

    def __init__(self, tokens: list[Slot]) -> None:
        self.tokens = tokens
        self.text = "\n".join(t.text for t in tokens)

    def set(self, text: str) -> None:
        lines = text.split("\n")
        if len(lines) != len(self.tokens):
            raise GatewayError(502, "the content guard is unavailable", code="webhook_unavailable")
        for token, line in zip(self.tokens, lines, strict=True):
            if line != token.text:
                token.set(line)
        self.text = text


def _token_lines(tokens: list[Slot]) -> list[Slot]:
    """Tokens for the webhook: one message of one token per line; a token with a line
    break in it goes as a message of its own."""
    single = [t for t in tokens if "\n" not in t.text and "\r" not in t.text]
    own = [t for t in tokens if "\n" in t.text or "\r" in t.text]
    return ([_TokenLines(single)] if single else []) + own


# Moderation reads the tokens in inputs of about this many characters: one input of them
# all would dilute one bad token among many and could pass a model's input limit.
_TOKEN_INPUT_CHARS = 2000


def _token_inputs(tokens: list[str]) -> list[str]:
    inputs: list[str] = []
    lines: list[str] = []
    size = 0
    for token in tokens:
        if lines and size + len(token) > _TOKEN_INPUT_CHARS:
            inputs.append("\n".join(lines))
            lines, size = [], 0
        lines.append(token)
        size += len(token) + 1
    if lines:
        inputs.append("\n".join(lines))
    return inputs


class ResponseGuards:
    def __init__(self, config: ResponseGuardConfig, route: str) -> None:
        self.route = route
        self.config = config
        self.custom = config.custom_response
        self.scanner: TextScanner | None = None
        self.regex: RegexStage | None = None
        if config.regex:
            self.scanner = scanner = TextScanner(config.regex)
            self.regex = RegexStage(
                scanner, config.regex.action, route, "response", self.custom, config.scan_budget
            )
        # For streams: how much text may still become part of a match (compiled once).
        self.holdback = Holdback(self.scanner, config.stream_window) if self.scanner else None
        self.webhook = WebhookGuard(config.webhook) if config.webhook else None
        # Whether these guards may change an answer rather than only refuse it (a webhook
        # may answer "mask"): audio output cannot be masked (route_request.py).
        self.may_mask = (
            config.regex is not None and config.regex.action == "MASK"
        ) or self.webhook is not None

    async def apply(self, completion: dict[str, Any], headers: dict[str, str], size: int = 0) -> bool:
        """Guard a chat.completion in place: every string but its ids (`text_slots`). A
        shape the guards cannot read is refused (502) rather than passed on unguarded.
        `size`: the body's bytes (a large one is walked off the event loop)."""
        choices = completion.get("choices")
        if not isinstance(choices, list) or not all(
            isinstance(c, dict) and isinstance(c.get("message", {}), dict) for c in choices
        ):
            raise unguardable_response()
        changed = False
        for choice in choices:
            # Log probabilities repeat the answer token by token: they would carry what
            # the guards mask. Not returned on guarded routes.
            if choice.get("logprobs") is not None:
                choice["logprobs"] = None
                changed = True
        if self.regex is not None:
            slots = await offload.run(size, text_slots.response_slots, completion)
            changed |= await self.regex.run(slots, size)
        if self.webhook is not None and choices:
            texts = await offload.run(size, text_slots.response_texts, completion)
            changed |= await self._webhook_slots(texts, headers)
        return changed

    async def apply_error(self, error: dict[str, Any], size: int = 0) -> bool:
        """Guard a provider's error answer in place: every string of it but the ids, as for
        an answer. Providers quote the request in their errors ("invalid value
        '...'"), so an error carries the client's text, and sometimes a model's, back.
        The regex guard reads it; the webhook and moderation judge conversations, not
        error messages."""
        if self.regex is None:
            return False
        # Walked as an answer's unknown field, so the strings are set in `error` itself.
        slots = await offload.run(size, text_slots.response_slots, {"choices": [], "provider_error": error})
        return await self.regex.run(slots, size)

    async def webhook_texts(self, messages: list[dict[str, Any]], headers: dict[str, str]) -> bool:
        """The webhook on these messages' free text (streams send segments this way)."""
        slots = [s for m in messages for s in text_slots.message_texts(m, "assistant")]
        return await self._webhook_slots(slots, headers)

    async def _webhook_slots(self, slots: list[Slot], headers: dict[str, str]) -> bool:
        sent = [{"message": {"role": slot.role, "content": slot.text}} for slot in slots]
        verdict = await self.webhook.check_response(sent, headers)  # type: ignore[union-attr]
        returned = [(c.get("message") or {}).get("content", "") for c in verdict.choices or []]
        return _settle(verdict, self.route, "response", self.custom, slots, returned)


def _settle(
    verdict: Verdict,
    route: str,
    direction: str,
    custom: CustomResponse,
    slots: list[Slot],
    returned: list[str],
) -> bool:
    """Act on a webhook verdict: raise for a rejection, write masked texts back."""
    if verdict.failed:
        metrics.guard_action(
            route, direction, "webhook", "failed_open" if verdict.action == "pass" else "failed"
        )
    if verdict.action == "reject":
        if not verdict.failed:
            metrics.guard_action(route, direction, "webhook", "rejected")
        raise GatewayError(
            verdict.status or custom.status_code,
            verdict.message or custom.message,
            code="webhook_unavailable" if verdict.failed else "content_policy_violation",
        )
    if verdict.action != "mask":
        return False
    changed = False
    for slot, text in zip(slots, returned, strict=False):
        if isinstance(text, str) and text != slot.text:
            slot.set(text)
            changed = True
    if changed:
        metrics.guard_action(route, direction, "webhook", "masked")
    return changed


class RouteGuards:
    """A route's compiled guards, built once at start-up."""

    def __init__(self, request: RequestGuards | None, response: ResponseGuards | None) -> None:
        self.request = request
        self.response = response
