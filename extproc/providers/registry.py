"""Finds every provider module in this package, so adding a provider edits nothing else."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter

from .base import BackendSettings, Provider

_NOT_PROVIDERS = {"base", "registry"}


def _discover() -> dict[str, type[Provider[Any]]]:
    found: dict[str, type[Provider[Any]]] = {}
    package = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(package.__path__):
        if info.name in _NOT_PROVIDERS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__package__}.{info.name}")
        cls = getattr(module, "PROVIDER", None)
        if cls is None:
            continue
        if cls.name in found:
            raise RuntimeError(f"two provider modules claim the name {cls.name!r}")
        found[cls.name] = cls
    return found


PROVIDERS: dict[str, type[Provider[Any]]] = _discover()

# One discriminated union over every provider's settings model: validating endpoint
# metadata picks the model by `provider` and reports errors against that model's fields.
# The Union is built at import time from the registry, which no static type can name.
_settings_union: Any = Union[tuple(cls.settings_model for cls in PROVIDERS.values())]  # noqa: UP007
backend_settings_adapter: TypeAdapter[BackendSettings] = TypeAdapter(
    Annotated[_settings_union, Field(discriminator="provider")]
)
