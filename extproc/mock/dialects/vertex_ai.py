"""Gemini on Vertex AI (`projects.locations.publishers.models.generateContent` and
`streamGenerateContent`), as the Vertex AI REST reference documents it.

Same bodies as the Gemini API, with Vertex's differences in the answers: an OAuth bearer
token instead of an API key, candidate index 0 left out (proto3 JSON omits zero values),
`createTime` on every response, and when streaming, usage only on the final event, with
`trafficType`. Thinking is checked and answered as by the Gemini API mock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..engine import MockRequest, Plan
from .gemini import GeminiDialect


class VertexAIDialect(GeminiDialect):
    name = "vertex-ai"
    serves = ("vertex-ai",)
    priority = 50
    _path = re.compile(
        r"/v1(?:beta1)?/projects/[^/]+/locations/[^/]+/publishers/google"
        r"/models/(?P<model>[^/:]+):(?P<action>generateContent|streamGenerateContent)"
    )
    _write_index_zero = False

    def credential(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        return self.bearer(headers)

    def _usage(self, prompt: int, completion: int | None, thoughts: int = 0) -> dict[str, Any]:
        usage = super()._usage(prompt, completion, thoughts)
        usage["trafficType"] = "ON_DEMAND"
        return usage

    def _stream_usage(
        self, prompt: int, completion: int, last: bool, thoughts: int = 0
    ) -> dict[str, Any] | None:
        return self._usage(prompt, completion, thoughts) if last else None

    def _envelope(
        self, candidates: list[dict[str, Any]], usage: dict[str, Any] | None, req: MockRequest, plan: Plan
    ) -> dict[str, Any]:
        doc = super()._envelope(candidates, usage, req, plan)
        doc["createTime"] = "2025-01-01T00:00:00.000000Z"
        return doc


DIALECT = VertexAIDialect
