"""Provider translators, discovered by module: see `base.py` for the contract."""

from .registry import PROVIDERS, backend_settings_adapter

__all__ = ["PROVIDERS", "backend_settings_adapter"]
