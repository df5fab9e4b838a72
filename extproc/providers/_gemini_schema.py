"""JSON schemas (tool parameters, structured output) reduced to the OpenAPI 3.0 subset
Google's `Schema` object accepts, for the Gemini API and Vertex AI."""

from __future__ import annotations

import copy
from typing import Any

from .base import UnsupportedRequest

# The JSON-schema keys Google's `Schema` object accepts (the OpenAPI 3.0 subset that both
# the Gemini API and Vertex AI document). Google rejects a request naming any other key
# ("Unknown name ... Cannot find field"), so everything else is removed, recursively.
SCHEMA_KEYS = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "items",
        "minItems",
        "maxItems",
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
        "minimum",
        "maximum",
    }
)
_MAX_SCHEMA_DEPTH = 32


def clean_schema(schema: Any, defs: dict[str, Any] | None = None, depth: int = 0) -> dict[str, Any]:
    """A JSON schema reduced to what Google's `Schema` accepts.

    Local `$ref`s (`#/$defs/X`, `#/definitions/X`, as pydantic and zod emit) are inlined;
    `type: [T, "null"]` and `anyOf`/`oneOf` with a null branch become `nullable`; `oneOf`
    becomes `anyOf`; a string `const` becomes a one-value `enum`; non-string enums (Google
    takes strings only), `required` names missing from `properties`, and every key outside
    SCHEMA_KEYS are dropped.
    """
    if not isinstance(schema, dict):
        return {}
    if depth > _MAX_SCHEMA_DEPTH:
        raise UnsupportedRequest("a JSON schema nests too deeply for Gemini (a recursive $ref?)")
    if defs is None:
        defs = {}
        for key in ("definitions", "$defs"):
            found = schema.get(key)
            if found is not None and not isinstance(found, dict):
                raise UnsupportedRequest(f"a JSON schema's '{key}' must be an object")
            defs.update(found or {})
    ref = schema.get("$ref")
    if isinstance(ref, str):
        prefix, _, name = ref.rpartition("/")
        if prefix not in ("#/$defs", "#/definitions") or not isinstance(defs.get(name), dict):
            raise UnsupportedRequest(f"JSON schema reference {ref!r} cannot be resolved for Gemini")
        merged = {**defs[name], **{k: v for k, v in schema.items() if k != "$ref"}}
        return clean_schema(merged, defs, depth + 1)
    out: dict[str, Any] = {}
    inline: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, list):
            kinds = [t for t in value if t != "null"]
            if len(kinds) == 1:
                out["type"] = kinds[0]
            elif kinds:
                out["anyOf"] = [{"type": t} for t in kinds]
            if "null" in value:
                out["nullable"] = True
        elif key in ("anyOf", "oneOf") and isinstance(value, list):
            branches = [s for s in value if not (isinstance(s, dict) and s.get("type") == "null")]
            if len(branches) < len(value):
                out["nullable"] = True
            cleaned = [clean_schema(s, defs, depth + 1) for s in branches]
            if len(cleaned) == 1:
                inline = cleaned[0]  # `Optional[X]`: just X, nullable
            elif cleaned:
                out["anyOf"] = cleaned
        elif key == "const":
            if isinstance(value, str) and "enum" not in schema:
                out["enum"] = [value]
        elif key == "enum":
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                out["enum"] = list(value)
        elif key == "properties" and isinstance(value, dict):
            props = {name: clean_schema(s, defs, depth + 1) for name, s in value.items()}
            if props:
                out["properties"] = props
        elif key == "items":
            if isinstance(value, dict):  # tuple-style `items: [..]` has no equivalent
                out["items"] = clean_schema(value, defs, depth + 1)
        elif key in SCHEMA_KEYS:
            out[key] = copy.deepcopy(value)
    for key, value in inline.items():
        out.setdefault(key, value)
    if "required" in out:
        # Google rejects a required name its own node does not declare in `properties`.
        properties = out.get("properties")
        declared = properties if isinstance(properties, dict) else {}
        required = out["required"]
        names = (
            [n for n in required if isinstance(n, str) and n in declared]
            if isinstance(required, list)
            else []
        )
        if names:
            out["required"] = names
        else:
            del out["required"]
    return out
