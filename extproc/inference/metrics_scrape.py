"""Reading a model server's load from its Prometheus `/metrics` page (vLLM names).

The names follow the Gateway API Inference Extension's model-server protocol, which uses
vLLM's:

  vllm:num_requests_waiting   gauge, requests queued             (summed over label sets)
  vllm:num_requests_running   gauge, requests in the batch       (summed over label sets)
  vllm:kv_cache_usage_perc    gauge, KV-cache use, 0..1          (vLLM V1; the largest label set)
  vllm:gpu_cache_usage_perc   the same, under its older name     (read when the new one is absent)
  vllm:lora_requests_info     gauge whose value is a timestamp; the latest sample's labels
                              `running_lora_adapters`, `waiting_lora_adapters` (comma-separated)
                              and `max_lora` say which adapters are loaded and how many fit

KV use is a fraction, so several label sets (engines) give the most used one, not a sum.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

WAITING = "vllm:num_requests_waiting"
RUNNING = "vllm:num_requests_running"
KV_USAGE = "vllm:kv_cache_usage_perc"
KV_USAGE_OLD = "vllm:gpu_cache_usage_perc"
LORA_INFO = "vllm:lora_requests_info"
WANTED = frozenset({WAITING, RUNNING, KV_USAGE, KV_USAGE_OLD, LORA_INFO})

# A vLLM page is a few hundred kB with its histograms; anything far larger is not one.
MAX_BODY_BYTES = 8 * 1024 * 1024
# Ask for the classic text format: prometheus_client serves OpenMetrics when asked for it.
ACCEPT = "text/plain; version=0.0.4"


class ScrapeError(Exception):
    """The page could not be fetched or read; the endpoint's metrics are not trusted."""


@dataclass(frozen=True)
class ServerMetrics:
    waiting: int
    running: int
    kv_usage: float
    running_adapters: frozenset[str] = frozenset()
    waiting_adapters: frozenset[str] = frozenset()
    max_lora: int | None = None  # None: the server reports no LoRA information
    # The models the server serves itself (vLLM's `model_name` label): no adapter slot needed.
    base_models: frozenset[str] = frozenset()

    def has_adapter(self, adapter: str) -> bool:
        return adapter in self.running_adapters or adapter in self.waiting_adapters

    def has_free_lora_slot(self) -> bool:
        return self.max_lora is not None and len(self.running_adapters) < self.max_lora


def _wanted_lines(text: str) -> str:
    """Only the lines of the families we read. The parser is pure Python and a vLLM page
    is mostly histogram buckets; parsing all of it every scrape interval for every
    endpoint would cost the event loop far more than these few lines."""
    kept = []
    for line in text.splitlines():
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE") and parts[2] in WANTED:
                kept.append(line)
            continue
        name = line.split("{", 1)[0].split(None, 1)[0] if line.strip() else ""
        if name in WANTED:
            kept.append(line)
    return "\n".join(kept) + "\n"


def _samples(text: str) -> dict[str, list[Sample]]:
    found: dict[str, list[Sample]] = {}
    try:
        for family in text_string_to_metric_families(_wanted_lines(text)):
            for sample in family.samples:
                if sample.name in WANTED:
                    found.setdefault(sample.name, []).append(sample)
    except ValueError as exc:  # the parser's only complaint about a malformed line
        raise ScrapeError(f"unreadable metrics: {exc}") from exc
    return found


def _finite(samples: Iterable[Sample], name: str) -> list[float]:
    values = [float(s.value) for s in samples]
    if not all(math.isfinite(v) for v in values):
        raise ScrapeError(f"{name} is not a finite number")
    return values


def _adapters(value: str | None) -> frozenset[str]:
    return frozenset(a.strip() for a in (value or "").split(",") if a.strip())


def _lora(samples: list[Sample]) -> tuple[frozenset[str], frozenset[str], int | None]:
    if not samples:
        return frozenset(), frozenset(), None
    # The value is the time the label set was last updated: the largest is current.
    latest = max(samples, key=lambda s: s.value if math.isfinite(s.value) else -math.inf)
    labels = latest.labels
    try:
        max_lora: int | None = int(float(labels.get("max_lora", "")))
    except ValueError:
        max_lora = None
    return (
        _adapters(labels.get("running_lora_adapters")),
        _adapters(labels.get("waiting_lora_adapters")),
        max_lora,
    )


def parse_vllm_metrics(text: str) -> ServerMetrics:
    """Raises ScrapeError when the page is unreadable or has no `vllm:num_requests_waiting`
    (then it is not a server this picker understands, and its load is unknown)."""
    found = _samples(text)
    if WAITING not in found:
        raise ScrapeError(f"no {WAITING} in the metrics")
    waiting = sum(_finite(found[WAITING], WAITING))
    running = sum(_finite(found.get(RUNNING, []), RUNNING))
    kv_name = KV_USAGE if KV_USAGE in found else KV_USAGE_OLD
    kv_values = _finite(found.get(kv_name, []), kv_name)
    running_adapters, waiting_adapters, max_lora = _lora(found.get(LORA_INFO, []))
    base_models = frozenset(
        s.labels["model_name"]
        for name in (WAITING, RUNNING)
        for s in found.get(name, [])
        if s.labels.get("model_name")
    )
    return ServerMetrics(
        waiting=max(0, round(waiting)),
        running=max(0, round(running)),
        kv_usage=min(1.0, max(0.0, max(kv_values, default=0.0))),
        running_adapters=running_adapters,
        waiting_adapters=waiting_adapters,
        max_lora=max_lora,
        base_models=base_models,
    )


async def fetch_metrics(session: aiohttp.ClientSession, url: str, timeout_s: float) -> str:
    """The page's text. Raises ScrapeError for anything but a readable 200."""
    try:
        async with session.get(
            url, timeout=aiohttp.ClientTimeout(total=timeout_s), headers={"accept": ACCEPT}
        ) as resp:
            if resp.status != 200:
                raise ScrapeError(f"HTTP {resp.status}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise ScrapeError(f"metrics page larger than {MAX_BODY_BYTES} bytes")
                chunks.append(chunk)
            return b"".join(chunks).decode("utf-8")
    except ScrapeError:
        raise
    except TimeoutError as exc:
        raise ScrapeError(f"timed out after {timeout_s}s") from exc
    except (aiohttp.ClientError, OSError, UnicodeDecodeError) as exc:
        raise ScrapeError(f"{type(exc).__name__}: {exc}") from exc


async def scrape(session: aiohttp.ClientSession, url: str, timeout_s: float) -> ServerMetrics:
    return parse_vllm_metrics(await fetch_metrics(session, url, timeout_s))
