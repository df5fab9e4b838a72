"""Prompt enrichment: messages the route adds before and after the client's own.

Written as `{role, content}` with any role; roles are case-insensitive (`SYSTEM` as in
kgateway's examples is `system`).
"""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from ..canonical import ROLES
from ..config_model import ConfigModel


class EnrichmentMessage(ConfigModel):
    role: str
    content: str

    @field_validator("role")
    @classmethod
    def _known_role(cls, v: str) -> str:
        role = v.lower()
        if role not in ROLES - {"tool", "function"}:
            raise ValueError(f"must be one of system, developer, user, assistant (got {v!r})")
        return role


class PromptEnrichment(ConfigModel):
    prepend: tuple[EnrichmentMessage, ...] = ()
    append: tuple[EnrichmentMessage, ...] = ()

    def apply(self, req: dict[str, Any]) -> None:
        """Put the route's messages around the client's (in place)."""
        before = [{"role": m.role, "content": m.content} for m in self.prepend]
        after = [{"role": m.role, "content": m.content} for m in self.append]
        req["messages"] = before + req["messages"] + after
