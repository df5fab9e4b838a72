"""Provider wire formats the mock speaks, discovered by module (like the providers)."""

from __future__ import annotations

import importlib
import pkgutil

from .base import Dialect


def discover(providers: list[str] | None = None) -> list[Dialect]:
    """All dialects, or only those serving the given provider names (a mock standing in
    for one provider's host speaks only that provider's API, like the real host)."""
    found: list[Dialect] = []
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        cls = getattr(module, "DIALECT", None)
        if cls is not None and (providers is None or set(cls.serves) & set(providers)):
            found.append(cls())
    # More specific paths first: Azure's .../deployments/x/chat/completions before the
    # generic .../chat/completions of OpenAI-compatible servers.
    found.sort(key=lambda d: d.priority)
    return found
