"""Content-based routing: request headers computed from the canonical request.

The route-level filter sets them and clears Envoy's route cache, so Envoy matches routes
again with these headers and can pick another route (and cluster). The headers are always
overwritten, so a client cannot choose by sending them itself.

  contentRouting:
    headers:
    - name: x-content-type
      source: firstMessageLength       # the seed guide's Pattern 5
      buckets: [{upTo: 500, value: short}, {value: long}]
    - {name: x-requested-model, source: model}
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..canonical import message_text
from ..config_model import ConfigModel

Source = Literal[
    "firstMessageLength",
    "lastUserMessageLength",
    "promptLength",
    "messageCount",
    "model",
    "stream",
    "hasTools",
]


def _value(source: str, req: dict[str, Any]) -> int | str:
    messages = req["messages"]
    if source == "firstMessageLength":
        return len(message_text(messages[0].get("content")))
    if source == "lastUserMessageLength":
        users = [m for m in messages if m.get("role") == "user"]
        return len(message_text(users[-1].get("content"))) if users else 0
    if source == "promptLength":
        return sum(len(message_text(m.get("content"))) for m in messages)
    if source == "messageCount":
        return len(messages)
    if source == "model":
        return str(req.get("model") or "")
    if source == "stream":
        return "true" if req.get("stream") is True else "false"
    return "true" if req.get("tools") else "false"  # hasTools


class Bucket(ConfigModel):
    # Inclusive upper bound; the last bucket may omit it (everything larger).
    up_to: int | None = None
    value: str


class RoutingHeader(ConfigModel):
    name: str
    source: Source
    buckets: tuple[Bucket, ...] = Field(default=())

    @field_validator("name")
    @classmethod
    def _header_name(cls, v: str) -> str:
        v = v.lower()
        if (
            not v
            or v.startswith(":")
            or v.startswith("x-aigw-")
            or not all(c.isalnum() or c in "-_" for c in v)
        ):
            raise ValueError("must be a plain header name (not a pseudo-header or x-aigw-*)")
        return v

    @model_validator(mode="after")
    def _buckets_ordered(self) -> RoutingHeader:
        bounds = [b.up_to for b in self.buckets]
        if self.buckets:
            if self.source in ("model", "stream", "hasTools"):
                raise ValueError(f"buckets need a numeric source, not {self.source}")
            if any(b is None for b in bounds[:-1]):
                raise ValueError("only the last bucket may omit upTo")
            given = [b for b in bounds if b is not None]
            if given != sorted(given):
                raise ValueError("bucket upTo values must increase")
        return self

    def compute(self, req: dict[str, Any]) -> str:
        value = _value(self.source, req)
        if not self.buckets:
            return str(value)
        for bucket in self.buckets:
            if bucket.up_to is None or value <= bucket.up_to:  # type: ignore[operator]
                return bucket.value
        return ""  # larger than every bound and no catch-all bucket


class ContentRouting(ConfigModel):
    headers: tuple[RoutingHeader, ...] = Field(min_length=1)

    def compute(self, req: dict[str, Any]) -> dict[str, str]:
        return {h.name: h.compute(req) for h in self.headers}
