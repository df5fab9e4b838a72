"""Field defaults: values the route sets on the request, by dotted path.

`override: false` fills a field only when the client left it out; `override: true`
always sets it. `path` is dotted (`stream_options.include_usage`); intermediate objects
are created as needed. `messages` is not a field default: use promptEnrichment.
"""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from ..config_model import ConfigModel


class FieldDefault(ConfigModel):
    path: str
    value: Any
    override: bool = False

    @field_validator("path")
    @classmethod
    def _valid_path(cls, v: str) -> str:
        parts = v.split(".")
        if not v or any(not p for p in parts):
            raise ValueError(
                f"must be a dotted field path such as 'max_tokens' or "
                f"'stream_options.include_usage' (got {v!r})"
            )
        if parts[0] == "messages":
            raise ValueError("'messages' cannot be defaulted: use promptEnrichment")
        return v

    def apply(self, req: dict[str, Any]) -> bool:
        """Set the value if due. Returns True when the request changed."""
        *parents, leaf = self.path.split(".")
        node = req
        for key in parents:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            elif not isinstance(child, dict):
                # The client put a non-object where the path needs one: only an override
                # may replace it; a default leaves the client's value alone.
                if not self.override:
                    return False
                child = node[key] = {}
            node = child
        if not self.override and node.get(leaf) is not None:
            return False
        node[leaf] = self.value
        return True


def apply_all(defaults: tuple[FieldDefault, ...], req: dict[str, Any]) -> bool:
    changed = False
    for d in defaults:
        changed |= d.apply(req)
    return changed
