"""Prometheus metrics, on their own port (`--metrics-port`), via prometheus_client.

Names follow the OpenTelemetry GenAI semantic conventions where they exist, mapped to
Prometheus-legal names (dots become underscores, the unit is a suffix):

  gen_ai.client.token.usage           -> gen_ai_client_token_usage (histogram, per request)
  gen_ai.server.time_to_first_token   -> gen_ai_server_time_to_first_token_seconds
  gen_ai.server.time_per_output_token -> gen_ai_server_time_per_output_token_seconds
  gen_ai.server.request.duration      -> gen_ai_server_request_duration_seconds
  attribute gen_ai.token.type         -> label gen_ai_token_type (input | output)
  attribute gen_ai.request.model      -> label gen_ai_request_model
  attribute gen_ai.response.model     -> label gen_ai_response_model
  attribute gen_ai.provider.name      -> label gen_ai_provider_name

Counters (totals to rate and sum) are kept apart from histograms (distributions):
aigw_tokens_total, aigw_requests_total, aigw_attempts_total, aigw_guard_actions_total.
Labels never carry message text or matched values: only names the operator configured.
"""

from __future__ import annotations

import logging
import os

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

log = logging.getLogger("aigw.metrics")

_MODEL_LABELS = ("route", "gen_ai_provider_name", "backend", "gen_ai_request_model", "gen_ai_response_model")

TOKENS = Counter(
    "aigw_tokens",
    "Tokens used, by type (input, output, total; reasoning is the part of output spent thinking).",
    (*_MODEL_LABELS, "gen_ai_token_type"),
)
TOKEN_USAGE = Histogram(
    "gen_ai_client_token_usage",
    "Tokens per request (OpenTelemetry gen_ai.client.token.usage).",
    (*_MODEL_LABELS, "gen_ai_token_type"),
    buckets=(1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304),
)
REQUEST_DURATION = Histogram(
    "gen_ai_server_request_duration_seconds",
    "Time from the request reaching the gateway to the end of the response.",
    ("route", "gen_ai_provider_name", "backend", "stream"),
    buckets=(0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92),
)
TIME_TO_FIRST_TOKEN = Histogram(
    "gen_ai_server_time_to_first_token_seconds",
    "Streams: time from the request to the first content chunk.",
    ("route", "gen_ai_provider_name", "backend"),
    buckets=(0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0),
)
TIME_PER_OUTPUT_TOKEN = Histogram(
    "gen_ai_server_time_per_output_token_seconds",
    "Streams: time per output token after the first.",
    ("route", "gen_ai_provider_name", "backend"),
    buckets=(
        0.001,
        0.005,
        0.01,
        0.02,
        0.03,
        0.04,
        0.05,
        0.075,
        0.1,
        0.15,
        0.2,
        0.3,
        0.4,
        0.5,
        0.75,
        1.0,
        2.5,
    ),
)
REQUESTS = Counter(
    "aigw_requests", "Requests by final status.", ("route", "gen_ai_provider_name", "backend", "status")
)
ATTEMPTS = Counter(
    "aigw_attempts",
    "Upstream attempts by backend and status; attempt > 1 is a retry or failover.",
    ("gen_ai_provider_name", "backend", "status", "retry"),
)
GUARD_ACTIONS = Counter(
    "aigw_guard_actions", "Prompt guard actions.", ("route", "direction", "guard", "action", "entity")
)


# Labelled children, looked up once: prometheus_client's labels() validates and locks on
# every call, several times per request on the hot path. Label values are bounded (route,
# backend and provider names from the config, bounded model labels), and so is this.
_children: dict[tuple, object] = {}


def child(metric, *labels: str):
    key = (id(metric), labels)
    found = _children.get(key)
    if found is None:
        if len(_children) > 50_000:
            _children.clear()
        found = _children[key] = metric.labels(*labels)
    return found


def guard_action(route: str, direction: str, guard: str, action: str, entity: str = "") -> None:
    child(GUARD_ACTIONS, route or "-", direction, guard, action, entity or "-").inc()


def _registry() -> CollectorRegistry:
    """With several workers (`serve --workers`), prometheus_client's multiprocess mode:
    each worker writes its samples to files in PROMETHEUS_MULTIPROC_DIR (set by the
    supervisor before any worker imports prometheus_client), and whichever worker is
    scraped adds them all up, so /metrics shows one set of counters."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


async def start_server(host: str, port: int, reuse_port: bool = False) -> web.AppRunner:
    registry = _registry()

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"content-type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    # Every worker listens on the same port (SO_REUSEPORT); any of them can answer.
    await web.TCPSite(runner, host, port, reuse_port=reuse_port or None).start()
    log.info("metrics listening", extra={"fields": {"listen": f"{host}:{port}"}})
    return runner


# --- Inference routing (extproc/inference/): the endpoint picker of a model-server pool.
# Every worker scrapes and picks on its own, so the age gauge keeps the worst (largest)
# value over live workers: an endpoint one worker cannot reach is visible.

INFERENCE_PICKS = Counter(
    "aigw_inference_picks",
    "Endpoint picks by pool, primary endpoint and reason (least-loaded, adapter-affinity, round-robin).",
    ("pool", "endpoint", "reason"),
)
INFERENCE_SCRAPE_AGE = Gauge(
    "aigw_inference_scrape_age_seconds",
    "Seconds since the last successful metrics scrape of a model server (since start when none).",
    ("pool", "endpoint"),
    multiprocess_mode="livemax",
)
INFERENCE_SCRAPE_FAILURES = Counter(
    "aigw_inference_scrape_failures",
    "Failed metrics scrapes of a model server (unreachable, timeout, bad status or unreadable body).",
    ("pool", "endpoint"),
)
INFERENCE_ROUND_ROBIN = Counter(
    "aigw_inference_round_robin",
    "Picks made round-robin because no endpoint of the pool had fresh metrics.",
    ("pool",),
)
INFERENCE_SHED = Counter(
    "aigw_inference_shed",
    "Sheddable requests refused because every endpoint of the pool was saturated.",
    ("pool", "model", "criticality"),
)


def inference_pick(pool: str, endpoint: str, reason: str) -> None:
    child(INFERENCE_PICKS, pool, endpoint, reason).inc()


def inference_scrape_age(pool: str, endpoint: str, age_s: float) -> None:
    child(INFERENCE_SCRAPE_AGE, pool, endpoint).set(age_s)


def inference_scrape_failure(pool: str, endpoint: str) -> None:
    child(INFERENCE_SCRAPE_FAILURES, pool, endpoint).inc()


def inference_round_robin(pool: str) -> None:
    child(INFERENCE_ROUND_ROBIN, pool).inc()


def inference_shed(pool: str, model: str, criticality: str) -> None:
    """For the caller that catches `Shed` (it knows the model)."""
    child(INFERENCE_SHED, pool, model or "-", criticality).inc()
