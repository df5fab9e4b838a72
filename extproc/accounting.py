"""Per-request accounting at the route level: token usage, timings, status; recorded as
Prometheus metrics when the request ends, and offered to Envoy as dynamic metadata
(namespace `aigw`) so an access log line can print them (`%DYNAMIC_METADATA(aigw:total_tokens)%`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, NamedTuple

from . import metrics, tokens
from .wire import NAMESPACE

if TYPE_CHECKING:
    from .response_stream import ResponseStream

# Model names come from clients: label values are capped so a client cannot grow the
# metrics without bound by inventing models. Past the cap, new names count as "other".
_MODEL_LABELS_MAX = 200
_seen_models: set[str] = set()


def _model_label(name: str) -> str:
    if not name:
        return "-"
    if name in _seen_models:
        return name
    if len(_seen_models) >= _MODEL_LABELS_MAX or len(name) > 128:
        return "other"
    _seen_models.add(name)
    return name


class StreamEstimate(NamedTuple):
    """The token counts a stream without a usage chunk still needs: its prompt, and the
    text the client got."""

    prompt: tokens.Prompt
    output_text: str
    model: str

    def cheap(self) -> bool:
        """Whether it may be counted on the event loop (small, vocabulary loaded)."""
        return tokens.cheap(self.prompt.encoding, self.prompt.chars) and tokens.cheap(
            tokens.encoding_name(self.model), len(self.output_text)
        )

    def counts(self) -> tuple[int, int]:
        """(input, output) tokens, here: CPU-bound, see `cheap`."""
        return tokens.count_prompt(self.prompt), tokens.count_tokens(self.output_text, self.model)

    async def counts_async(self) -> tuple[int, int]:
        """(input, output) tokens, each counted here when cheap, else on a thread."""
        return (
            await tokens.count_prompt_async(self.prompt),
            await tokens.count_tokens_async(self.output_text, self.model),
        )


def answer_text(completion: dict[str, Any]) -> str:
    """The text a JSON answer's choices hold (reasoning, content, refusal, tool calls'
    names and arguments): its output, for an estimate when it reports no usage. Odd shapes
    count as no text, never as an error."""
    parts: list[str] = []
    choices = completion.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            continue
        for key in ("reasoning_content", "content", "refusal"):
            value = message.get(key)
            if isinstance(value, str):
                parts.append(value)
            elif isinstance(value, list):  # content parts
                texts = (p.get("text") for p in value if isinstance(p, dict))
                parts.extend(t for t in texts if isinstance(t, str))
        calls = message.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict):
                parts.extend(v for v in (fn.get("name"), fn.get("arguments")) if isinstance(v, str))
    return "".join(parts)


class Accounting:
    __slots__ = (
        "backend",
        "estimated",
        "first_token_at",
        "input_tokens",
        "last_token_at",
        "output_tokens",
        "provider",
        "reasoning_tokens",
        "recorded",
        "request_model",
        "response_model",
        "route",
        "started",
        "status",
        "stream",
    )

    def __init__(self, route: str) -> None:
        self.route = route
        self.started = time.monotonic()
        self.request_model = ""
        self.response_model = ""
        self.provider = ""
        self.backend = ""
        self.stream = False
        self.status = 0
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        # Part of output_tokens, when the provider reports it (Anthropic does not).
        self.reasoning_tokens: int | None = None
        self.estimated = False
        self.first_token_at: float | None = None
        self.last_token_at: float | None = None
        self.recorded = False

    def take_stream(self, rs: ResponseStream, canonical: dict[str, Any] | None) -> StreamEstimate | None:
        """What a stream reported: its model, token times and usage chunk. A stream that
        ended without its usage chunk (cut short, or a provider that sends none) is to be
        counted from what was seen, given the canonical request: the estimate to make is
        returned, for `take_estimate` (None when there is nothing to estimate)."""
        self.response_model = rs.model if isinstance(rs.model, str) else ""  # a provider's odd chunk
        self.first_token_at, self.last_token_at = rs.first_token_at, rs.last_token_at
        self.take_usage(rs.usage)
        if self.total_tokens is not None or canonical is None:
            return None
        return StreamEstimate(tokens.prompt_of(canonical), "".join(rs.text_parts), self.request_model)

    def take_estimate(self, input_tokens: int, output_tokens: int) -> None:
        self.input_tokens, self.output_tokens, self.estimated = input_tokens, output_tokens, True

    def take_usage(self, usage: dict[str, Any] | None) -> None:
        if not isinstance(usage, dict):
            return
        p, c = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if (
            isinstance(p, int)
            and isinstance(c, int)
            and not isinstance(p, bool)
            and not isinstance(c, bool)
            and p >= 0
            and c >= 0
        ):
            self.input_tokens, self.output_tokens, self.estimated = p, c, False
            details = usage.get("completion_tokens_details")
            r = details.get("reasoning_tokens") if isinstance(details, dict) else None
            if isinstance(r, int) and not isinstance(r, bool) and 0 <= r <= c:
                self.reasoning_tokens = r

    @property
    def total_tokens(self) -> int | None:
        if self.input_tokens is None or self.output_tokens is None:
            return None
        return self.input_tokens + self.output_tokens

    def dynamic_metadata(self) -> dict[str, dict[str, Any]]:
        """{namespace: fields}, which `messages.with_metadata` writes into the reply's
        Struct in place."""
        fields: dict[str, Any] = {
            "provider": self.provider,
            "backend": self.backend,
            "request_model": self.request_model,
            "response_model": self.response_model,
        }
        if self.total_tokens is not None:
            fields.update(
                input_tokens=self.input_tokens,
                output_tokens=self.output_tokens,
                total_tokens=self.total_tokens,
                tokens_estimated=self.estimated,
            )
            if self.reasoning_tokens is not None:
                fields["reasoning_tokens"] = self.reasoning_tokens
        return {NAMESPACE: fields}

    def record(self, ended: float | None = None) -> None:
        """Once per request, when its stream closes (complete or cut short) at `ended`
        (time.monotonic(); now by default)."""
        if self.recorded:
            return
        self.recorded = True
        route, provider, backend = self.route or "-", self.provider or "-", self.backend or "-"
        metrics.child(metrics.REQUESTS, route, provider, backend, str(self.status or 0)).inc()
        metrics.child(metrics.REQUEST_DURATION, route, provider, backend, str(self.stream).lower()).observe(
            (time.monotonic() if ended is None else ended) - self.started
        )
        if self.total_tokens is not None:
            labels = (
                route,
                provider,
                backend,
                _model_label(self.request_model),
                _model_label(self.response_model),
            )
            for kind, value in (("input", self.input_tokens), ("output", self.output_tokens)):
                metrics.child(metrics.TOKENS, *labels, kind).inc(value)
                metrics.child(metrics.TOKEN_USAGE, *labels, kind).observe(value)
            metrics.child(metrics.TOKENS, *labels, "total").inc(self.total_tokens)
            if self.reasoning_tokens is not None:
                # A share of "output", not added to "total" again.
                metrics.child(metrics.TOKENS, *labels, "reasoning").inc(self.reasoning_tokens)
                metrics.child(metrics.TOKEN_USAGE, *labels, "reasoning").observe(self.reasoning_tokens)
        if self.stream and self.first_token_at is not None:
            metrics.child(metrics.TIME_TO_FIRST_TOKEN, route, provider, backend).observe(
                self.first_token_at - self.started
            )
            if self.output_tokens and self.output_tokens > 1 and self.last_token_at is not None:
                metrics.child(metrics.TIME_PER_OUTPUT_TOKEN, route, provider, backend).observe(
                    (self.last_token_at - self.first_token_at) / (self.output_tokens - 1)
                )
