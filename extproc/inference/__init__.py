"""Inference routing (Gateway API Inference Extension style): pick a model server of a
pool from its scraped load, for Envoy's override-host load balancing."""

from extproc.inference.metrics_scrape import ScrapeError, ServerMetrics, parse_vllm_metrics
from extproc.inference.picker import (
    REASON_AFFINITY,
    REASON_LEAST_LOADED,
    REASON_ROUND_ROBIN,
    Criticality,
    EndpointPicker,
    EndpointState,
    Pick,
    PoolSpec,
    Shed,
)

__all__ = [
    "REASON_AFFINITY",
    "REASON_LEAST_LOADED",
    "REASON_ROUND_ROBIN",
    "Criticality",
    "EndpointPicker",
    "EndpointState",
    "Pick",
    "PoolSpec",
    "ScrapeError",
    "ServerMetrics",
    "Shed",
    "parse_vllm_metrics",
]
