"""Inference routing: pools of self-hosted model servers and the models they serve.

Mirrors the Gateway API Inference Extension's resources, as the gateway config writes them:

    inferencePools:
    - name: vllm-llama
      endpoints: ["10.0.0.11:8000", "10.0.0.12:8000", "vllm-llama.models.svc"]
      targetPort: 8000             # for endpoints written without a port
      metricsPath: /metrics        # scraped for queue, KV-cache and LoRA figures
      scrapeInterval: 200ms
      queueThreshold: 5            # waiting requests at which a server counts as saturated
      kvCacheThreshold: 0.8        # KV-cache use at which a server counts as saturated
    inferenceModels:
    - modelName: llama-support
      poolRef: vllm-llama
      criticality: Sheddable       # Critical | Standard | Sheddable
      targetModels: [{name: support-lora-v1, weight: 90}, {name: support-lora-v2, weight: 10}]
    routes:
    - name: inference
      backendRefs: [{name: vllm-llama, kind: InferencePool}]

The renderer writes the pool and its models into the metadata of every route that sends to
the pool (`inference` below), so the processor reads them from the bootstrap like any other
route policy.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..config_model import ConfigModel, seconds

Criticality = Literal["Critical", "Standard", "Sheddable"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


def split_endpoint(value: str, default_port: int | None) -> tuple[str, int]:
    """`host:port`, `[v6]:port`, or a host alone with the pool's `targetPort`."""
    host, port = value, default_port
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise ValueError(f"{value!r}: unclosed '[' in an IPv6 address")
        host, rest = value[1:end], value[end + 1 :]
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError(f"{value!r}: expected [address]:port")
            port = int(rest[1:])
    elif value.count(":") == 1:
        host, _, text = value.partition(":")
        if not text.isdigit():
            raise ValueError(f"{value!r}: the port must be a number")
        port = int(text)
    elif value.count(":") > 1:
        ipaddress.IPv6Address(value)  # a bare IPv6 address, with targetPort
    if not host:
        raise ValueError(f"{value!r}: no host")
    if port is None:
        raise ValueError(f"{value!r} has no port and the pool sets no 'targetPort'")
    if not 0 < port < 65536:
        raise ValueError(f"{value!r}: port {port} is out of range")
    return host, port


class InferencePoolConfig(ConfigModel):
    name: str = Field(pattern=NAME_PATTERN)
    # Model servers as host:port (or hosts with targetPort). A DNS name stands for every
    # address it resolves to, for Envoy and for the endpoint picker alike.
    endpoints: tuple[str, ...] = Field(min_length=1)
    target_port: int | None = Field(default=None, gt=0, lt=65536)
    # The OpenAI-compatible chat-completions path on the servers.
    path: str = "/v1/chat/completions"
    metrics_path: str = "/metrics"
    scrape_interval: float = Field(default=0.2, gt=0)
    # Metrics older than this are not trusted (default: three scrape intervals).
    stale_after: float | None = Field(default=None, gt=0)
    scrape_timeout: float = Field(default=0.5, gt=0)
    queue_threshold: int = Field(default=5, ge=1)
    kv_cache_threshold: float = Field(default=0.8, gt=0, le=1)
    # How many times a failed attempt moves on to the next endpoint the picker named.
    retries: int = Field(default=2, ge=0, le=10)

    _durations = field_validator("scrape_interval", "stale_after", "scrape_timeout", mode="before")(
        lambda cls, v: v if v is None else seconds(v)
    )

    @field_validator("path", "metrics_path")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("must start with '/'")
        return v

    @model_validator(mode="after")
    def _endpoints_parse(self) -> InferencePoolConfig:
        seen = set()
        for e in self.endpoints:
            hp = split_endpoint(e, self.target_port)
            if hp in seen:
                raise ValueError(f"endpoint {e!r} is listed twice")
            seen.add(hp)
        return self

    def addresses(self) -> list[tuple[str, int]]:
        return [split_endpoint(e, self.target_port) for e in self.endpoints]

    @property
    def stale_after_s(self) -> float:
        return self.stale_after if self.stale_after is not None else 3 * self.scrape_interval


class TargetModel(ConfigModel):
    name: str = Field(min_length=1)
    weight: int = Field(default=1, ge=1, le=1_000_000)


class InferenceModelConfig(ConfigModel):
    # The `model` clients send.
    model_name: str = Field(min_length=1)
    # The pool that serves it (gateway config only; route metadata nests models under
    # their pool).
    pool_ref: str | None = None
    criticality: Criticality = "Standard"
    # What the request's `model` becomes, chosen by weight (LoRA adapters, versions). None:
    # the model name is sent as is.
    target_models: tuple[TargetModel, ...] = ()


class InferenceRouting(ConfigModel):
    """The `inference` block of a route's metadata: the pool the route sends to and the
    models it serves. Without models, any `model` is served at `Standard` criticality."""

    pool: InferencePoolConfig
    models: tuple[InferenceModelConfig, ...] = ()

    @model_validator(mode="after")
    def _unique_models(self) -> InferenceRouting:
        names = [m.model_name for m in self.models]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"model(s) {', '.join(sorted(dup))} declared twice for pool '{self.pool.name}'")
        return self
