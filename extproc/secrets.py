"""Secrets referenced from config: an environment variable, a file, or an inline value.

A secret is resolved at start-up, so a missing one stops the processor before it serves.
File secrets are re-read when the file changes (a rotated Kubernetes secret), checked at
most every few seconds so the hot path stays a clock read.

Every resolved secret is also registered here (weakly), so the response side can keep
every value the processor holds out of what clients receive (see redaction.py): a
`generation` counter moves whenever a secret is created or its value changes.
"""

from __future__ import annotations

import logging
import os
import time
import weakref
from pathlib import Path

from pydantic import model_validator

from .config_model import ConfigModel

log = logging.getLogger("aigw.config")

_FILE_RECHECK_SECONDS = 5.0
# Shorter secrets cannot be told from ordinary text in responses (redaction_patterns.py).
REDACTABLE_LENGTH = 8

# Every live Secret, and a counter that moves when the set of values may have changed.
_REGISTRY: weakref.WeakSet[Secret] = weakref.WeakSet()
_generation = 0


def generation() -> int:
    """Changes whenever a secret is resolved or rotated: cheap to poll per response."""
    return _generation


def known_values() -> list[str]:
    """Every value a live secret holds, the one it held before a rotation included (an
    answer to a request sent just before the rotation may still arrive)."""
    out = []
    for secret in list(_REGISTRY):
        out.append(secret._value)
        if secret._previous:
            out.append(secret._previous)
    return out


def _changed() -> None:
    global _generation
    _generation += 1


class SecretRef(ConfigModel):
    """Where a secret lives. Exactly one of `env`, `file` or `inline`."""

    env: str | None = None
    file: str | None = None
    inline: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        given = [k for k in ("env", "file", "inline") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("set exactly one of 'env', 'file' or 'inline'")
        return self

    def describe(self) -> str:
        """Where the secret comes from, safe to log: never the value."""
        if self.env is not None:
            return f"env:{self.env}"
        if self.file is not None:
            return f"file:{self.file}"
        return "inline"

    def __repr__(self) -> str:  # never leak an inline value through a repr
        return f"SecretRef({self.describe()})"

    __str__ = __repr__


class SecretError(ValueError):
    pass


class Secret:
    """A resolved secret. `value` is cheap; file secrets follow rotation."""

    __slots__ = ("__weakref__", "_checked", "_mtime", "_previous", "_ref", "_value")

    def __init__(self, ref: SecretRef) -> None:
        self._ref = ref
        self._mtime = 0.0
        self._checked = 0.0
        self._previous = ""
        self._value = self._load()
        _REGISTRY.add(self)
        _changed()

    def _load(self) -> str:
        ref = self._ref
        mtime = 0.0
        if ref.inline is not None:
            value = ref.inline
        elif ref.env is not None:
            value = os.environ.get(ref.env, "")
            if not value:
                raise SecretError(f"environment variable {ref.env} is not set or empty")
        else:
            path = Path(ref.file)  # type: ignore[arg-type]
            try:
                mtime = path.stat().st_mtime
                value = path.read_text().strip()
            except OSError as exc:
                raise SecretError(f"cannot read secret file {ref.file}: {exc.strerror}") from None
            if not value:
                raise SecretError(f"secret file {ref.file} is empty")
        if any(c in value for c in "\r\n\0"):
            raise SecretError(f"secret from {ref.describe()} contains a line break or NUL")
        # Only a good read moves the clock on: a file caught half-written is read again.
        self._mtime = mtime
        if len(value) < REDACTABLE_LENGTH:
            log.warning(
                "a secret is too short to be recognised in responses, so providers that "
                "quote it would show it to clients",
                extra={"fields": {"secret": ref.describe(), "min_length": REDACTABLE_LENGTH}},
            )
        return value

    @property
    def value(self) -> str:
        if self._ref.file is not None:
            now = time.monotonic()
            if now - self._checked > _FILE_RECHECK_SECONDS:
                self._checked = now
                try:
                    if Path(self._ref.file).stat().st_mtime != self._mtime:
                        value = self._load()
                        if value != self._value:
                            self._previous, self._value = self._value, value
                            _changed()
                except (OSError, SecretError):
                    pass  # keep serving the last good value; a vanished mount is not a reason to fail
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self._ref.describe()})"
