"""JSON responses the gateway reads whole, and the clear error when one is too large.

The route filter reads every 2xx JSON answer whole (token usage, response guards), and
every provider error and every answer it translates (response_translation.py). Envoy
holds such a body in its buffer, the listener's `per_connection_buffer_limit_bytes`
(1 MiB when unset); the limit used is the smallest of the listeners' and the AI
clusters' (`buffer_limit`), which also covers a bootstrap that reads answers in the
upstream filter.

In BUFFERED mode a larger body fails badly in Envoy 1.40 (seen with a 10 MB answer): a
bare 500 (`response_payload_too_large`), or, when the body arrives while the processor is
still answering the response headers, a stall until the client or the route's idle
timeout gives up (flow control stops reading, so the overflow is never noticed). So:

- a `content-length` over the limit is refused at the response headers, unread; one
  that fits is read in BUFFERED mode, as any answer was before;
- an answer without a `content-length` (chunked) is read in BUFFERED_PARTIAL mode: a
  body that fits arrives whole, exactly as in BUFFERED; one that does not arrives cut at
  the buffer size, without `end_of_stream`;
- a body that arrives cut, or whole but over the limit (Envoy may read a fast upstream
  past its buffer while the headers are being processed), is refused too.

Every such answer becomes a 502 `response_too_large` in the OpenAI error shape, the same
whatever the route's guards. BUFFERED_PARTIAL is not used when a `content-length` is
present: in that mode Envoy checks a changed body against the original length
(`mismatch_between_content_length_and_the_length_of_the_mutated_body`) even when the
body response sets a new one.
"""

from __future__ import annotations

from typing import Any

from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2

from .errors import GatewayError

ENVOY_DEFAULT_BUFFER = 1024 * 1024
_MODE = processing_mode_pb2.ProcessingMode


def json_body_mode(headers: dict[str, str]) -> int:
    """How to read an answer whole whose declared length (if any) was already checked."""
    return _MODE.BUFFERED if "content-length" in headers else _MODE.BUFFERED_PARTIAL


def buffer_limit(doc: dict[str, Any], ai_clusters: set[str]) -> int:
    """The smallest buffer a JSON response may have to fit in: every listener's and every
    AI cluster's per_connection_buffer_limit_bytes."""
    static = doc.get("static_resources") or {}
    items = [
        *(static.get("listeners") or []),
        *(c for c in static.get("clusters") or [] if c.get("name") in ai_clusters),
    ]
    limits = []
    for item in items:
        value = item.get("per_connection_buffer_limit_bytes", ENVOY_DEFAULT_BUFFER)
        if isinstance(value, dict):  # a UInt32Value written as {value: N}
            value = value.get("value", ENVOY_DEFAULT_BUFFER)
        try:
            limits.append(int(value))
        except (TypeError, ValueError):
            continue  # Envoy refuses such a bootstrap anyway
    return min(limits, default=ENVOY_DEFAULT_BUFFER)


def declared_too_large(headers: dict[str, str], limit: int) -> GatewayError | None:
    """The error for a response whose content-length is over `limit`, if it is."""
    length = headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        return too_large(f"{int(length)} bytes", limit)
    return None


def read_too_large(body: bytes, whole: bool, limit: int) -> GatewayError | None:
    """The error for a body that arrived cut (`whole` false) or over `limit`, if it did."""
    if not whole:
        return too_large(f"more than {len(body)} bytes", limit)
    if len(body) > limit:
        return too_large(f"{len(body)} bytes", limit)
    return None


def too_large(size: str, limit: int) -> GatewayError:
    return GatewayError(
        502,
        f"the provider's response ({size}) is larger than the {limit} bytes "
        "the gateway reads; ask for a shorter answer (max_tokens) or raise "
        "the gateway's buffer limit",
        code="response_too_large",
    )
