"""Route policy: what the route-level filter does for one Envoy route.

Read from the route's `metadata.filter_metadata.aigw`. Every field is optional; a route
with the route-level filter and no `aigw` metadata gets the defaults.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from ..canonical import validate_request
from ..config_model import ConfigModel
from ..errors import GatewayError
from ..guards.config import PromptGuardConfig
from ..policies.content_routing import ContentRouting
from ..policies.enrichment import PromptEnrichment
from ..policies.field_defaults import FieldDefault, apply_all
from .inference import InferenceRouting
from .shared_state import TokenCharge


class RoutePolicy(ConfigModel):
    # Largest request body accepted, in bytes; larger bodies get a 413. Unset means the
    # processor's --max-request-bytes. Envoy's own buffer limit on the listener
    # (per_connection_buffer_limit_bytes) must be at least this large.
    max_request_bytes: int | None = Field(default=None, gt=0)
    prompt_enrichment: PromptEnrichment | None = None
    field_defaults: tuple[FieldDefault, ...] = ()
    prompt_guard: PromptGuardConfig | None = None
    content_routing: ContentRouting | None = None
    # Estimate the prompt's tokens (tiktoken) before the call and offer it as dynamic
    # metadata `aigw: {prompt_tokens_estimate}`, e.g. for token-based rate limiting.
    prompt_token_estimate: bool = False
    # The route sends to an inference pool: the processor picks the endpoint (inference.py).
    inference: InferenceRouting | None = None
    # The route has a token budget: each finished request is charged here (written by
    # `aigw render` from the route's `tokenBudget`; needs the limit in the node metadata).
    token_charge: TokenCharge | None = None

    @model_validator(mode="after")
    def _defaults_make_valid_requests(self) -> RoutePolicy:
        """A default that would make every request invalid (say `temperature: "hot"`) is
        the operator's mistake: catch it now, not as a 400 on every request."""
        if self.field_defaults:
            sample = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
            apply_all(self.field_defaults, sample)
            # Overrides also land on fields the client may have set; check them on a full one.
            try:
                validate_request(sample)
            except GatewayError as exc:
                raise ValueError(f"fieldDefaults produce an invalid request: {exc.message}") from None
        return self
