"""Wires the shared state into a processor: one Redis connection pool per process, the
rate-limit service on the processor's gRPC server (Envoy's rate-limit filters call the
same socket as ext_proc), and the cooldown sync loop. Nothing here runs without
`gateway.sharedState` in the config (node metadata in the bootstrap)."""

from __future__ import annotations

import logging

import grpc

from ..runtime.gateway import GatewayRuntime
from .cooldowns import SharedCooldowns
from .ratelimit_service import RateLimitService, add_to_server
from .redis_store import RedisStore
from .token_charges import TokenCharges

log = logging.getLogger("aigw.shared_state")


class SharedStateService:
    def __init__(self, gw: GatewayRuntime, server: grpc.aio.Server) -> None:
        """Build the store and register the rate-limit service (before the server starts)."""
        shared = gw.shared_state
        assert shared is not None
        password = shared.password.value if shared.password is not None else None
        self.store = RedisStore(shared.settings.redis, password)
        if gw.limits:
            add_to_server(server, RateLimitService(self.store, gw.limits))
        if any(spec.unit == "tokens" for spec in gw.limits.values()):
            # The route-level filter charges budgets when requests end.
            gw.token_charger = TokenCharges(self.store, gw.limits)
        self.cooldowns = SharedCooldowns(
            self.store, gw.health, [b.name for b in gw.backends], shared.settings.cooldowns
        )
        log.info(
            "sharing state through Redis",
            extra={
                "fields": {
                    "redis": shared.settings.redis.address,
                    "limits": len(gw.limits),
                    "cooldowns_fail_mode": shared.settings.cooldowns.fail_mode,
                }
            },
        )

    def start(self) -> None:
        """Start syncing cooldowns (on the running event loop)."""
        self.cooldowns.start()

    async def stop(self) -> None:
        # Cooldowns seen during the drain still reach the other replicas.
        await self.cooldowns.flush()
        await self.cooldowns.stop()
        await self.store.close()
