"""Process-wide settings, from the command line."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ProcessorSettings:
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    # Log request and response bodies. Off by default: bodies hold user data.
    debug_bodies: bool = False
    # Processes that run guard scans (guards/scan_pool.py); None: one per core, at most 2.
    scan_workers: int | None = None
