"""The route-level filter's checks and choices on the client's request, before any
backend sees it: the request line and headers, the route's cooldowns, an inference
pool's pick, and the usage chunk a counted stream needs."""

from __future__ import annotations

from typing import Any

from . import metrics
from .canonical import check_content_type, empty_body
from .errors import GatewayError
from .inference.picker import Shed
from .paths import check_chat_path
from .runtime.gateway import GatewayRuntime, RouteRuntime
from .runtime.inference import InferenceRoute


def check_headers(hdrs: dict[str, str], end_of_stream: bool, limit: int) -> None:
    """A chat completion: POST of JSON to the chat path, at most `limit` bytes."""
    # Only the chat-completions endpoint is translated: any other path on an AI route
    # (`PathPrefix /v1` catches /v1/embeddings too) is a 404, not a chat completion.
    check_chat_path(hdrs.get(":path", ""))
    method = hdrs.get(":method", "")
    if method != "POST":
        raise GatewayError(
            405,
            f"method {method} is not allowed: chat completions take POST",
            code="method_not_allowed",
            headers={"allow": "POST"},
        )
    check_content_type(hdrs.get("content-type"))
    length = hdrs.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_large(int(length), limit)
    if end_of_stream:
        raise empty_body()


def too_large(size: int, limit: int) -> GatewayError:
    return GatewayError(
        413,
        f"the request body is {size} bytes; this route accepts at most {limit} bytes",
        code="request_too_large",
    )


def check_cooling(gw: GatewayRuntime, route: RouteRuntime) -> None:
    """Every backend of the route is in a Retry-After cooldown: the client gets a 429
    with the time left, and no provider is called."""
    if route.backends:
        cooling = gw.all_cooling(route.backends)
        if cooling is not None:
            raise GatewayError(
                429,
                f"every backend of this route is rate limited; retry after {cooling} s",
                code="rate_limit_exceeded",
                headers={"retry-after": str(cooling)},
            )


def pick_endpoints(inference: InferenceRoute, canonical: dict[str, Any]) -> tuple[str, str, bool]:
    """An inference pool's route: the model the servers are asked for (a weighted target
    model), then the servers, least loaded first; a Sheddable request to a saturated pool
    is refused without touching a server. Returns the destination header's value, the
    server picked first (counted as started) and whether the model changed."""
    requested = canonical.get("model")
    target, criticality = inference.model_for(requested)
    changed = target is not None and target != requested
    if changed:
        canonical["model"] = target
    try:
        pick = inference.pick(target, criticality)
    except Shed as shed:
        # Only declared models are Sheddable, so the model label stays bounded.
        metrics.inference_shed(inference.pool, str(requested), criticality.value)
        raise GatewayError(
            429,
            f"inference pool '{inference.pool}' is saturated; retry after {shed.retry_after_s} s",
            code="pool_saturated",
            headers={"retry-after": str(shed.retry_after_s)},
        ) from None
    inference.picker.started(pick.primary)
    return pick.header_value(), pick.primary, changed


def ask_for_stream_usage(canonical: dict[str, Any]) -> bool:
    """Streams are counted too: ask for the usage chunk. True when the client did not
    ask for it (the gateway then drops it again before the client sees it)."""
    options = canonical.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return False
    canonical["stream_options"] = {**(options or {}), "include_usage": True}
    return True


def check_output_guardable(canonical: dict[str, Any], route: RouteRuntime) -> None:
    """Audio output on a route whose response guards mask (the guards would mask the
    transcript while the audio still says every word), or streamed on a guarded route (the
    audio leaves before its transcript is read). Refused before any provider is called;
    a REJECT route reads a JSON answer's transcript and withholds the whole answer."""
    guards = route.guards
    if guards is None or guards.response is None:
        return
    modalities = canonical.get("modalities")
    if not ((isinstance(modalities, list) and "audio" in modalities) or canonical.get("audio") is not None):
        return
    if guards.response.may_mask:
        why = "this route masks answers, and spoken audio cannot be masked"
    elif canonical.get("stream") is True:
        # A stream's audio leaves as it comes; its transcript is only read after.
        why = "this route guards answers, and streamed audio leaves before its transcript is read"
    else:
        return
    raise GatewayError(
        400,
        f'{why}: ask for text output (modalities: ["text"], no audio)',
        code="audio_output_unguardable",
        param="modalities",
    )
