"""What reading a bootstrap's parts has in common: the error that lists every problem,
the ext_proc filters it finds (and their phase), and pydantic errors in the config's own
field names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from .. import wire
from ..providers import PROVIDERS


class ConfigError(Exception):
    """One or more invalid gateway settings. `str()` lists them all."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        head = f"invalid gateway configuration in {source}" if source else "invalid gateway configuration"
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass
class ExtProcFilter:
    phase: str | None
    entry: dict[str, Any]  # the HttpFilter: name and typed_config
    location: str

    @property
    def config(self) -> dict[str, Any]:
        return self.entry.get("typed_config") or {}


def filter_phase(typed: dict) -> str | None:
    service = typed.get("grpc_service") or {}
    for item in service.get("initial_metadata") or []:
        if item.get("key", "").lower() == wire.PHASE:
            return item.get("value")
    return None


def format_validation_error(exc: ValidationError, *, tagged: bool = False) -> list[str]:
    """Pydantic errors as `field 'a.b': message`, in the config's own field names."""
    out = []
    for err in exc.errors():
        loc = list(err["loc"])
        if tagged and loc and isinstance(loc[0], str) and loc[0] in PROVIDERS:
            loc = loc[1:]  # drop the union tag pydantic puts first
        field = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
        msg = err["msg"]
        if err["type"] == "union_tag_invalid":
            msg = f"unknown provider {err['input'].get('provider')!r}; known: {', '.join(sorted(PROVIDERS))}"
            field = "provider"
        elif err["type"] == "union_tag_not_found":
            field = "provider"
            msg = f"required; one of {', '.join(sorted(PROVIDERS))}"
        out.append(f"field '{field}': {msg}" if field else msg)
    return out
