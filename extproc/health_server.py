"""The HTTP endpoint Envoy's active health checker calls for each gateway backend.

Envoy sends `GET <path>` with `Host: <backend name>` (the endpoint's
`health_check_config.hostname`). The answer is 200 while the backend may take traffic and
503 while it cools down after a rate limit; 404 for a name this processor does not know,
which marks the host unhealthy and surfaces the misconfiguration in Envoy's stats.
"""

from __future__ import annotations

import logging

from aiohttp import web

from .backend_health import BackendHealth

log = logging.getLogger("aigw.health")


def build_app(health: BackendHealth, names: set[str]) -> web.Application:
    async def check(request: web.Request) -> web.Response:
        name = request.headers.get("host", "")
        if name not in names:
            return web.json_response({"backend": name, "known": False}, status=404)
        left = health.remaining(name)
        if left > 0:
            return web.json_response({"backend": name, "cooldown_s": round(left, 1)}, status=503)
        return web.json_response({"backend": name, "ok": True})

    app = web.Application()
    app.router.add_get("/{tail:.*}", check)
    return app


async def start(
    health: BackendHealth, names: set[str], host: str, port: int, reuse_port: bool = False
) -> web.AppRunner:
    runner = web.AppRunner(build_app(health, names), access_log=None)
    await runner.setup()
    # With several workers each listens here (SO_REUSEPORT): a check lands on any of
    # them, and all read the same shared cooldowns.
    await web.TCPSite(runner, host, port, reuse_port=reuse_port or None).start()
    log.info("backend health endpoint listening", extra={"fields": {"listen": f"{host}:{port}"}})
    return runner
