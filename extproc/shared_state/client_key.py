"""The client a token budget counts for, named exactly as the budget check named it.

Envoy's rate-limit filter checks a budget with a descriptor whose entries after the
limit id name the client (render/rate_limits.py); the route-level filter charges the
request's tokens when it ends and must reach the same counter. So it reads the same
inputs Envoy read: the key header's value from the dynamic metadata the rate-limit
filters read it from (not from the request headers, where a repeated header could be
read differently), the client's address as Envoy resolved it, or the fixed generic value.
"""

from __future__ import annotations

from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from .. import wire
from ..config.shared_state import RateLimitKey

Entries = tuple[tuple[str, str], ...]


def client_entries(key: RateLimitKey, req: pb.ProcessingRequest) -> Entries | None:
    """The descriptor entries after the limit id for this request (its first message), or
    None when Envoy had no value either (an address that is not an IP: Envoy then sends
    no such descriptor, so there is no counter to charge)."""
    if key.generic is not None:
        return ((wire.GENERIC_KEY_ENTRY, key.generic),)
    if key.header is not None:
        copied = req.metadata_context.filter_metadata.get(wire.RATELIMIT_KEYS)
        value = copied.fields.get(key.header.lower()) if copied is not None else None
        if value is None or value.WhichOneof("kind") != "string_value":
            return ((wire.CLIENT_KEY_ENTRY, wire.NO_CLIENT_KEY),)
        return ((wire.CLIENT_KEY_ENTRY, value.string_value),)
    attrs = req.attributes.get("envoy.filters.http.ext_proc")
    address = attrs.fields.get(wire.SOURCE_ADDRESS) if attrs is not None else None
    ip = _ip_of(address.string_value) if address is not None else None
    return ((wire.REMOTE_ADDRESS_ENTRY, ip),) if ip else None


def _ip_of(address: str) -> str | None:
    """`1.2.3.4:5678` -> `1.2.3.4`, `[::1]:5678` -> `::1` (Envoy's remote_address entry is
    the bare IP); anything else (a pipe path) -> None."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1]
    return None if ":" in host else host
