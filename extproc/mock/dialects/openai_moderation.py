"""OpenAI's moderation endpoint (`POST /v1/moderations`), as the API reference shows it.

The mock flags any input containing one of a few trigger words, so tests can choose.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..engine import MockRequest, Plan
from .base import BadRequest, Dialect

# trigger word -> category it flags
TRIGGERS = {"violence": "violence", "kill": "violence", "hate": "hate", "bomb": "illicit/violent"}
CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)


class ModerationRequest(MockRequest):
    pass


class OpenAIModerationDialect(Dialect):
    name = "openai-moderation"
    serves = ("openai", "openai-compatible")
    priority = 20

    def match(self, method: str, path: str) -> dict[str, str] | None:
        return {} if method == "POST" and path.endswith("/moderations") else None

    def credential(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        return self.bearer(headers)

    def parse(self, body: dict[str, Any], params: dict[str, str], query: Mapping[str, str]) -> MockRequest:
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            raise BadRequest("'input' must be a string or an array of strings")
        return ModerationRequest(
            model=str(body.get("model") or "omni-moderation-latest"),
            stream=False,
            turns=[("user", t) for t in inputs],
        )

    def render_json(self, plan: Plan, req: MockRequest) -> dict[str, Any]:
        results = []
        for _, text in req.turns:
            hit = {TRIGGERS[w] for w in TRIGGERS if w in text.lower()}
            results.append(
                {
                    "flagged": bool(hit),
                    "categories": {c: c in hit for c in CATEGORIES},
                    "category_scores": {c: (0.97 if c in hit else 0.0001) for c in CATEGORIES},
                    "category_applied_input_types": {c: ["text"] for c in CATEGORIES},
                }
            )
        return {"id": "modr-mock", "model": req.model, "results": results}

    def render_stream(self, plan: Plan, req: MockRequest) -> list[bytes]:
        raise BadRequest("moderations do not stream")

    def render_error(self, status: int, message: str) -> dict[str, Any]:
        return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}


DIALECT = OpenAIModerationDialect
