"""What the Gemini mock (gemini.py) accepts: the field names of Google's request protos,
checked like Google's JSON parser does (camelCase or snake_case, unknown names refused),
and a thinkingConfig checked against each model family's documented limits."""

from __future__ import annotations

import re
from typing import Any

from .base import BadRequest

# Field names from the GenerateContentRequest reference (Vertex adds `labels`).
REQUEST_FIELDS = {
    "contents",
    "tools",
    "toolConfig",
    "safetySettings",
    "systemInstruction",
    "generationConfig",
    "cachedContent",
    "model",
    "labels",
}
CONTENT_FIELDS = {"role", "parts"}
PART_DATA = {
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
}
PART_FIELDS = PART_DATA | {"thought", "thoughtSignature", "videoMetadata", "partMetadata"}
TOOL_FIELDS = {
    "functionDeclarations",
    "googleSearch",
    "googleSearchRetrieval",
    "codeExecution",
    "urlContext",
    "retrieval",
}
DECLARATION_FIELDS = {
    "name",
    "description",
    "parameters",
    "parametersJsonSchema",
    "response",
    "responseJsonSchema",
    "behavior",
}
GENERATION_FIELDS = {
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseModalities",
    "candidateCount",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "enableEnhancedCivicAnswers",
    "speechConfig",
    "thinkingConfig",
    "mediaResolution",
    "routingConfig",
    "audioTimestamp",
}
THINKING_FIELDS = {"thinkingBudget", "includeThoughts", "thinkingLevel"}
# Google's documented thinking limits, written out independently of the gateway's own
# table (the mock checks the translator, so it must not share its data). Budgets: model
# prefix -> (min, max, can switch thinking off); -1 (dynamic) is accepted everywhere.
THINKING_BUDGETS = (
    ("gemini-2.5-pro", (128, 32768, False)),
    ("gemini-2.5-flash-lite", (512, 24576, True)),
    ("gemini-2.5-flash", (1, 24576, True)),
)
# Levels: model pattern -> the levels it takes (Gemini 3 Pro has neither minimal nor medium).
THINKING_LEVELS = (
    (re.compile(r"gemini-3-pro(?:-|$)"), {"low", "high"}),
    (re.compile(r"gemini-3\.\d+-pro(?:-|$)"), {"low", "medium", "high"}),
    (re.compile(r"gemini-3(?:\.\d+)?-flash(?:-|$)"), {"minimal", "low", "medium", "high"}),
)
# The `Schema` object: a subset of OpenAPI 3.0.
SCHEMA_FIELDS = {
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
}


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def check_fields(obj: Any, allowed: set[str], where: str) -> dict[str, Any]:
    """The object with camelCase keys; BadRequest (Google's wording) for unknown ones."""
    if not isinstance(obj, dict):
        raise BadRequest(f"Invalid JSON payload received. Expected an object at '{where}'.")
    out = {}
    for key, value in obj.items():
        if camel(key) not in allowed:
            raise BadRequest(
                f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': Cannot find field."
            )
        out[camel(key)] = value
    return out


def check_schema(schema: Any, where: str) -> dict[str, Any]:
    schema = check_fields(schema, SCHEMA_FIELDS, where)
    for name, sub in (schema.get("properties") or {}).items():
        check_schema(sub, f"{where}.properties[{name}]")
    if "items" in schema:
        check_schema(schema["items"], f"{where}.items")
    for i, sub in enumerate(schema.get("anyOf") or ()):
        check_schema(sub, f"{where}.any_of[{i}]")
    return schema


def thoughts_for(model: str, config: Any) -> str | None:
    """Check a thinkingConfig like Google does; the thought text it asks for, if any."""
    if config is None:
        return None
    config = check_fields(config, THINKING_FIELDS, "generation_config.thinking_config")
    budget, level = config.get("thinkingBudget"), config.get("thinkingLevel")
    name = model.lower()
    if budget is not None and level is not None:
        raise BadRequest("You can only set only one of thinking budget and thinking level.")
    if level is not None:
        levels = next((ls for pattern, ls in THINKING_LEVELS if pattern.match(name)), None)
        if levels is None:
            raise BadRequest("Thinking level is not supported for this model.")
        if not isinstance(level, str) or level.lower() not in levels:
            raise BadRequest(f"Thinking level {level} is not supported for this model.")
    if budget is not None:
        _check_budget(name, budget)
    if budget == 0 or not config.get("includeThoughts"):
        return None
    # Flash-Lite and pre-2.5 models do not think unless told to (a budget or a level).
    thinks_by_default = name.startswith(("gemini-2.5-pro", "gemini-2.5-flash", "gemini-3")) and not (
        name.startswith("gemini-2.5-flash-lite")
    )
    if budget is None and level is None and not thinks_by_default:
        return None
    how = f"level {level.lower()}" if level else f"budget {budget}" if budget not in (None, -1) else "dynamic"
    return f"Mock thoughts ({how}): work out the answer, then give it."


def _check_budget(name: str, budget: Any) -> None:
    if not isinstance(budget, int) or isinstance(budget, bool):
        raise BadRequest("Invalid value at 'generation_config.thinking_config.thinking_budget' (TYPE_INT32)")
    limits = next((lim for prefix, lim in THINKING_BUDGETS if name.startswith(prefix)), None)
    if limits is None and re.match(r"gemini-3(?:\.\d+)?-pro(?:-|$)", name):
        limits = (128, 32768, False)  # Gemini 3 takes a budget too, for compatibility
    if limits is None or budget == -1:
        return
    low, high, can_disable = limits
    if budget == 0 and not can_disable:
        raise BadRequest("Budget 0 is invalid. This model only works in thinking mode.")
    if budget != 0 and not low <= budget <= high:
        raise BadRequest(
            f"The thinking budget {budget} is invalid. Please choose a value between {low} and {high}."
        )
