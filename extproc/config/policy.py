"""Route policy: what the route-level filter does for one Envoy route.

Read from the route's `metadata.filter_metadata.aigw`. Every field is optional; a route
with the route-level filter and no `aigw` metadata gets the defaults.
"""

from __future__ import annotations

from pydantic import Field

from .base import ConfigModel


class RoutePolicy(ConfigModel):
    # Largest request body accepted, in bytes; larger bodies get a 413. Unset means the
    # processor's --max-request-bytes. Envoy's own buffer limit on the listener
    # (per_connection_buffer_limit_bytes) must be at least this large.
    max_request_bytes: int | None = Field(default=None, gt=0)
