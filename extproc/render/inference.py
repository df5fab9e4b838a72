"""Inference pools in the rendered bootstrap (see config/inference.py for the config).

A pool is a cluster of its model servers whose load-balancing policy is Envoy's override
host: the route-level filter's endpoint picker names the servers for each request in
`x-gateway-destination-endpoint` (the Gateway API Inference Extension's contract, so an
external picker speaking it could take over), Envoy connects to the first, and a retry
after a connect failure, a reset or a 5xx moves on to the next one named. Without the
header (it is always set on pool routes) Envoy round-robins. The servers are
OpenAI-compatible, so each carries `openai-compatible` endpoint metadata and keeps the
upstream filter (header allow-list, redaction, per-attempt accounting).
"""

from __future__ import annotations

from typing import Any

from .. import wire
from .backend_model import BackendSpec


def add_endpoint_picking(cluster: dict[str, Any]) -> None:
    """The pool's cluster takes the servers the picker names, in order."""
    cluster["load_balancing_policy"] = {
        "policies": [
            {
                "typed_extension_config": {
                    "name": wire.OVERRIDE_HOST,
                    "typed_config": {
                        "@type": wire.OVERRIDE_HOST_TYPE,
                        "override_host_sources": [{"header": wire.DESTINATION_ENDPOINT}],
                        "fallback_policy": {
                            "policies": [
                                {
                                    "typed_extension_config": {
                                        "name": wire.ROUND_ROBIN,
                                        "typed_config": {"@type": wire.ROUND_ROBIN_TYPE},
                                    }
                                }
                            ]
                        },
                    },
                }
            }
        ]
    }
    # A server that keeps failing is skipped by Envoy even when named first.
    cluster["outlier_detection"] = {
        "consecutive_5xx": 3,
        "consecutive_gateway_failure": 2,
        "interval": "1s",
        "base_ejection_time": "5s",
        "max_ejection_percent": 100,
    }


def pool_retry_policy(backend: BackendSpec) -> dict[str, Any]:
    """Retries walk down the list the picker named (override host does that itself)."""
    pool = backend.inference_pool
    assert pool is not None
    return {
        "retry_on": "connect-failure,refused-stream,reset,5xx",
        "num_retries": min(pool.retries, max(0, len(pool.addresses()) - 1)),
    }


def pool_route_metadata(backend: BackendSpec) -> dict[str, Any]:
    """The `inference` block of the route's `aigw` metadata: the pool and its models."""
    pool = backend.inference_pool
    assert pool is not None
    return {
        "pool": pool.model_dump(mode="json", by_alias=True, exclude_none=True),
        "models": [
            m.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"pool_ref"})
            for m in backend.inference_models
        ],
    }
