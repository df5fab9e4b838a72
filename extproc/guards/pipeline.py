"""Runs a route's guards on the canonical request and the canonical (JSON) response.

Guards read message text only: string content and `text` parts, of every role. Tool-call
arguments and tool definitions are not inspected. Order on a request: regex (cheap, local),
then the webhook, then moderation, each on the result of the previous one. A rejection
stops at once; the provider is never called.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .. import metrics
from ..errors import GatewayError
from .config import CustomResponse, RequestGuardConfig, ResponseGuardConfig
from .holdback import Holdback
from .moderation import build_moderator
from .regex_guard import TextScanner
from .webhook import WebhookGuard

log = logging.getLogger("aigw.guards")

# Presidio costs milliseconds per kilobyte; above this, scan in a worker thread so one
# large prompt does not stall every other stream on the event loop.
_THREAD_SCAN_CHARS = 4096


def _rejected(custom: CustomResponse, code: str) -> GatewayError:
    return GatewayError(custom.status_code, custom.message, code=code)


class _TextSlot:
    """One piece of guarded text in a message, and how to write it back."""

    __slots__ = ("holder", "key", "text")

    def __init__(self, holder: dict, key: str, text: str) -> None:
        self.holder, self.key, self.text = holder, key, text

    def set(self, text: str) -> None:
        self.holder[self.key] = text
        self.text = text


def message_slots(message: dict[str, Any]) -> list[_TextSlot]:
    content = message.get("content")
    if isinstance(content, str):
        return [_TextSlot(message, "content", content)]
    if isinstance(content, list):
        return [_TextSlot(part, "text", part["text"]) for part in content
                if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)]
    return []


class RegexStage:
    def __init__(self, scanner: TextScanner, action: str, route: str, direction: str,
                 custom: CustomResponse) -> None:
        self.scanner = scanner
        self.reject = action == "REJECT"
        self.route = route
        self.direction = direction
        self.custom = custom

    async def run(self, slots: list[_TextSlot]) -> bool:
        changed = False
        for slot in slots:
            text = slot.text
            if not text:
                continue
            if self.scanner.needs_presidio and len(text) > _THREAD_SCAN_CHARS:
                masked, findings = await asyncio.to_thread(self.scanner.mask, text)
            else:
                masked, findings = self.scanner.mask(text)
            if not findings:
                continue
            entities = sorted({f.entity for f in findings})
            if self.reject:
                for entity in entities:
                    metrics.guard_action(self.route, self.direction, "regex", "rejected", entity)
                log.info("guard rejected", extra={"fields": {
                    "route": self.route, "direction": self.direction, "guard": "regex",
                    "entities": entities}})
                raise _rejected(self.custom, "content_policy_violation")
            for f in findings:
                metrics.guard_action(self.route, self.direction, "regex", "masked", f.entity)
            slot.set(masked)
            changed = True
        return changed


class RequestGuards:
    def __init__(self, config: RequestGuardConfig, route: str) -> None:
        self.route = route
        self.custom = config.custom_response
        self.regex = (RegexStage(TextScanner(config.regex), config.regex.action, route, "request",
                                 self.custom) if config.regex else None)
        self.webhook = WebhookGuard(config.webhook) if config.webhook else None
        self.moderator = build_moderator(config.moderation) if config.moderation else None
        self.needs_headers = self.webhook is not None

    async def apply(self, req: dict[str, Any], headers: dict[str, str]) -> bool:
        """Guard the request in place. Returns True when text was masked; raises
        GatewayError to reject."""
        messages = req["messages"]
        changed = False
        if self.regex is not None:
            slots = [s for m in messages for s in message_slots(m)]
            changed |= await self.regex.run(slots)
        if self.webhook is not None:
            changed |= await self._webhook(messages, headers)
        if self.moderator is not None:
            await self._moderate(messages)
        return changed

    async def _webhook(self, messages: list[dict], headers: dict[str, str]) -> bool:
        per_message = [message_slots(m) for m in messages]
        sent = [{"role": m.get("role", "user"), "content": _joined(slots)}
                for m, slots in zip(messages, per_message)]
        verdict = await self.webhook.check_request(sent, headers)  # type: ignore[union-attr]
        returned = [m.get("content", "") for m in verdict.messages or []]
        return _settle(verdict, self.route, "request", self.custom, per_message, returned)

    async def _moderate(self, messages: list[dict]) -> None:
        texts = [s.text for m in messages for s in message_slots(m) if s.text]
        result = await self.moderator.check(texts)  # type: ignore[union-attr]
        if result.failed and result.flagged:
            metrics.guard_action(self.route, "request", "moderation", "failed")
            raise GatewayError(502, "the content moderation service is unavailable",
                               code="moderation_unavailable")
        if result.failed:
            metrics.guard_action(self.route, "request", "moderation", "failed_open")
        if result.flagged:
            for category in result.categories or ["flagged"]:
                metrics.guard_action(self.route, "request", "moderation", "rejected", category)
            raise _rejected(self.custom, "content_flagged")


class ResponseGuards:
    def __init__(self, config: ResponseGuardConfig, route: str) -> None:
        self.route = route
        self.config = config
        self.custom = config.custom_response
        self.scanner = TextScanner(config.regex) if config.regex else None
        self.regex = (RegexStage(self.scanner, config.regex.action, route, "response", self.custom)
                      if config.regex else None)
        # For streams: how much text may still become part of a match (compiled once).
        self.holdback = Holdback(self.scanner, config.stream_window) if self.scanner else None
        self.webhook = WebhookGuard(config.webhook) if config.webhook else None
        self.needs_headers = self.webhook is not None

    async def apply(self, completion: dict[str, Any], headers: dict[str, str]) -> bool:
        """Guard `choices[].message.content` of a chat.completion in place."""
        choices = [c for c in completion.get("choices") or [] if isinstance(c, dict)]
        messages = [c.get("message") if isinstance(c.get("message"), dict) else {} for c in choices]
        changed = False
        if self.regex is not None:
            changed |= await self.regex.run([s for m in messages for s in message_slots(m)])
        if self.webhook is not None and choices:
            changed |= await self.webhook_texts(messages, headers)
        return changed

    async def webhook_texts(self, messages: list[dict], headers: dict[str, str]) -> bool:
        per_message = [message_slots(m) for m in messages]
        sent = [{"message": {"role": m.get("role", "assistant"), "content": _joined(slots)}}
                for m, slots in zip(messages, per_message)]
        verdict = await self.webhook.check_response(sent, headers)  # type: ignore[union-attr]
        returned = [(c.get("message") or {}).get("content", "") for c in verdict.choices or []]
        return _settle(verdict, self.route, "response", self.custom, per_message, returned)


def _joined(slots: list[_TextSlot]) -> str:
    return "\n".join(s.text for s in slots)


def _settle(verdict, route: str, direction: str, custom: CustomResponse,
            per_message: list[list[_TextSlot]], returned: list[str]) -> bool:
    """Act on a webhook verdict: raise for a rejection, write masked texts back."""
    if verdict.failed:
        metrics.guard_action(route, direction, "webhook", "failed_open" if verdict.action == "pass" else "failed")
    if verdict.action == "reject":
        if not verdict.failed:
            metrics.guard_action(route, direction, "webhook", "rejected")
        raise GatewayError(verdict.status or custom.status_code, verdict.message or custom.message,
                           code="webhook_unavailable" if verdict.failed else "content_policy_violation")
    if verdict.action != "mask":
        return False
    changed = False
    for slots, text in zip(per_message, returned):
        if not slots or text == _joined(slots):
            continue
        # One text per message went out; it comes back into the first text part and
        # replaces the others (non-text parts such as images stay).
        slots[0].set(text)
        for extra in slots[1:]:
            extra.set("")
        changed = True
    if changed:
        metrics.guard_action(route, direction, "webhook", "masked")
    return changed


class RouteGuards:
    """A route's compiled guards, built once at start-up."""

    def __init__(self, request: RequestGuards | None, response: ResponseGuards | None) -> None:
        self.request = request
        self.response = response
