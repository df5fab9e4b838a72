"""The contract a mock dialect fulfils: parse one provider's request, render its answers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

from ..engine import MockRequest, Plan


class BadRequest(Exception):
    """The request is malformed for this provider; the mock answers 400 like it would."""


class Dialect(ABC):
    name: ClassVar[str]
    # The gateway provider names whose API this dialect speaks.
    serves: ClassVar[tuple[str, ...]] = ()
    # Lower matches first.
    priority: ClassVar[int] = 100

    @abstractmethod
    def match(self, method: str, path: str) -> dict[str, str] | None:
        """Path parameters if this dialect serves the request, else None."""

    @abstractmethod
    def credential(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        """The API key the request carries where this provider expects it, or None."""

    @abstractmethod
    def parse(self, body: dict[str, Any], params: dict[str, str], query: Mapping[str, str]) -> MockRequest:
        """Raise BadRequest for what the real provider would reject."""

    @abstractmethod
    def render_json(self, plan: Plan, req: MockRequest) -> dict[str, Any]: ...

    @abstractmethod
    def render_stream(self, plan: Plan, req: MockRequest) -> list[bytes]:
        """The whole stream as a list of complete SSE events (bytes), in order."""

    @abstractmethod
    def render_error(self, status: int, message: str) -> dict[str, Any]: ...

    # ---- helpers ----
    @staticmethod
    def bearer(headers: Mapping[str, str]) -> str | None:
        """The token of an `Authorization: Bearer ...` header, or None."""
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and auth[7:].strip():
            return auth[7:].strip()
        return None

    @staticmethod
    def sse(data: Any, event: str | None = None) -> bytes:
        payload = data if isinstance(data, (bytes, str)) else orjson.dumps(data)
        if isinstance(payload, str):
            payload = payload.encode()
        head = f"event: {event}\n".encode() if event else b""
        return head + b"data: " + payload + b"\n\n"
