"""The gateway config's backends: an AI provider (`ai: {provider, model, auth}`), priority
groups of providers for failover, an inference pool, or a plain HTTP service (`static`)."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Annotated, Any, Union, cast

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from ..config.inference import InferenceModelConfig, InferencePoolConfig
from ..config_model import ConfigModel, seconds
from ..providers import PROVIDERS
from ..providers.base import BackendSettings


class Endpoint(ConfigModel):
    host: str
    port: int = Field(gt=0, le=65535)
    # TLS to the endpoint; default: on for port 443.
    tls: bool | None = None
    sni: str | None = None

    @model_validator(mode="after")
    def _sni_for_ips(self) -> Endpoint:
        if self.uses_tls and self.is_ip and not self.sni:
            raise ValueError("TLS to an IP address needs 'sni': the name the certificate is for")
        return self

    @property
    def uses_tls(self) -> bool:
        return self.tls if self.tls is not None else self.port == 443

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
            return True
        except ValueError:
            return False


def _entry_model(settings_cls: type[BackendSettings]) -> type[BackendSettings]:
    """A provider's endpoint-metadata settings plus where it listens."""
    return type(
        f"{settings_cls.__name__}Entry",
        (settings_cls,),
        {
            "__annotations__": {"endpoint": Endpoint | None},
            "endpoint": None,
            "__module__": __name__,
        },
    )


_ENTRIES = {name: _entry_model(cls.settings_model) for name, cls in PROVIDERS.items()}

if TYPE_CHECKING:
    # The real type (below) is a Union built at import time from the provider registry,
    # which mypy cannot evaluate. Statically an entry is what every member shares: the
    # common backend settings plus `endpoint`; the renderer reads nothing else.
    class ProviderEntry(BackendSettings):
        endpoint: Endpoint | None = None

else:
    ProviderEntry = Annotated[
        # No `X | Y` spelling exists for a Union of a computed number of members.
        Union[tuple(Annotated[m, Tag(n)] for n, m in _ENTRIES.items())],  # noqa: UP007
        Discriminator(lambda v: v.get("provider") if isinstance(v, dict) else getattr(v, "provider", None)),
    ]


class PriorityGroup(ConfigModel):
    providers: tuple[ProviderEntry, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _named(self) -> PriorityGroup:
        for i, p in enumerate(self.providers):
            if not p.name:
                raise ValueError(
                    f"providers[{i}] needs a 'name' (it names the backend in logs, metrics and health checks)"
                )
        return self


class OutlierDetection(ConfigModel):
    consecutive_5xx: int = Field(default=3, ge=1, alias="consecutive5xx")
    base_ejection_time: float = Field(default=10.0, gt=0)
    max_ejection_time: float = Field(default=120.0, gt=0)

    _parse = field_validator("base_ejection_time", "max_ejection_time", mode="before")(
        lambda cls, v: seconds(v)
    )


class Failover(ConfigModel):
    # How often Envoy asks the processor whether a host waits out a Retry-After.
    health_check_interval: float = Field(default=1.0, gt=0)
    outlier_detection: OutlierDetection = OutlierDetection()

    _parse = field_validator("health_check_interval", mode="before")(lambda cls, v: seconds(v))


class PriorityGroups(ConfigModel):
    priority_groups: tuple[PriorityGroup, ...] = Field(min_length=1)
    failover: Failover = Failover()


def _ai_kind(v: Any) -> str:
    data = v if isinstance(v, dict) else v.__dict__
    return "groups" if "priorityGroups" in data or "priority_groups" in data else "single"


AIBackend = Annotated[
    Annotated[PriorityGroups, Tag("groups")] | Annotated[ProviderEntry, Tag("single")],
    Discriminator(_ai_kind),
]


class BackendSpec(ConfigModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v == "extproc":
            raise ValueError("'extproc' is the processor's own cluster")
        return v

    ai: AIBackend | None = None
    # A plain HTTP service (no translation, no policies), e.g. for a docs or health page.
    static: Endpoint | None = None
    # A pool of self-hosted model servers the processor picks from per request (written
    # as a top-level `inferencePools` entry; GatewaySpec.all_backends makes it a backend).
    inference_pool: InferencePoolConfig | None = None
    inference_models: tuple[InferenceModelConfig, ...] = ()

    @model_validator(mode="after")
    def _one_kind(self) -> BackendSpec:
        if sum(k is not None for k in (self.ai, self.static, self.inference_pool)) != 1:
            raise ValueError("set exactly one of 'ai', 'static' or 'inferencePool'")
        return self

    @property
    def carries_ai(self) -> bool:
        return self.ai is not None or self.inference_pool is not None

    def providers(self) -> list[tuple[int, ProviderEntry]]:
        """(priority, provider entry) for every provider, single backends at priority 0;
        an inference pool's servers as OpenAI-compatible providers, one per endpoint."""
        if isinstance(self.ai, PriorityGroups):
            return [(i, p) for i, g in enumerate(self.ai.priority_groups) for p in g.providers]
        if self.inference_pool is not None:
            return [(0, p) for p in _pool_entries(self.inference_pool)]
        return [(0, self.ai)] if self.ai is not None else []


def _pool_entries(pool: InferencePoolConfig) -> list[ProviderEntry]:
    entry_cls = _ENTRIES["openai-compatible"]
    return [
        cast(
            "ProviderEntry",
            entry_cls.model_validate(
                {
                    "provider": "openai-compatible",
                    "name": f"{pool.name}-{i}",
                    "path": pool.path,
                    "endpoint": {"host": host, "port": port, "tls": False},
                }
            ),
        )
        for i, (host, port) in enumerate(pool.addresses())
    ]
