"""The processor's lifecycle: listen on a Unix socket (and optionally TCP), serve the
gRPC health service, and on SIGTERM stop taking new streams while finishing the rest."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from .heap import freeze_startup_heap
from .route_filter import closes_finished
from .runtime.gateway import GatewayRuntime
from .servicer import ExtProcServicer
from .settings import ProcessorSettings

log = logging.getLogger("aigw.server")

# gRPC's default 4 MiB message cap would turn a large request body into an Envoy 500.
_MAX_MESSAGE = 64 * 1024 * 1024
EXT_PROC_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"


async def serve(
    gw: GatewayRuntime,
    settings: ProcessorSettings,
    *,
    socket_path: str | None,
    tcp: str | None = None,
    grace: float = 30.0,
    metrics_address: tuple[str, int] | None = None,
    ready: asyncio.Event | None = None,
    shared_state: str | None = None,
) -> None:
    """Serve until SIGTERM. `shared_state` is set in a worker of `serve --workers`: the
    directory where workers share cooldowns; the metrics and health ports are then
    shared too (SO_REUSEPORT)."""
    if shared_state is not None:
        from .backend_health import SharedDeadlines

        gw.health.share(SharedDeadlines(str(Path(shared_state) / "cooldowns"), [b.name for b in gw.backends]))
    shared = shared_state is not None
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", _MAX_MESSAGE),
            ("grpc.max_send_message_length", _MAX_MESSAGE),
            ("grpc.so_reuseport", 0),
        ]
    )
    pb_grpc.add_ExternalProcessorServicer_to_server(ExtProcServicer(gw, settings), server)
    shared_state_service = None
    if gw.shared_state is not None:
        from .shared_state.attach import SharedStateService

        shared_state_service = SharedStateService(gw, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)

    listening = []
    if socket_path:
        path = Path(socket_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_socket() or path.exists():
            path.unlink()  # a stale socket from a previous run
        server.add_insecure_port(f"unix:{path}")
        listening.append(f"unix:{path}")
    if tcp:
        server.add_insecure_port(tcp)
        listening.append(tcp)
    if not listening:
        raise ValueError("nothing to listen on: give a socket path or a TCP address")

    # What start-up built stays for good: no full collection should walk it again.
    freeze_startup_heap()
    await server.start()
    for picker in gw.pickers.values():  # inference pools: scraping starts with serving
        await picker.start()
    if shared_state_service is not None:
        shared_state_service.start()
    runners = []
    if metrics_address is not None:
        from . import metrics

        runners.append(await metrics.start_server(*metrics_address, reuse_port=shared))
    if gw.health_address is not None:
        from . import health_server

        names = {b.name for b in gw.backends}
        runners.append(await health_server.start(gw.health, names, *gw.health_address, reuse_port=shared))
    for service in ("", EXT_PROC_SERVICE):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "processor listening",
        extra={
            "fields": {
                "listen": ",".join(listening),
                "routes": len(gw.routes),
                "backends": len(gw.backends),
                "pid": os.getpid(),
            }
        },
    )
    if ready is not None:
        ready.set()
    # Guard scan workers warm up in the background, after health already answers.
    from .guards import scan_pool

    scan_pool.start(scan_pool.guard_configs([*gw.routes.values(), gw.default_route]), settings.scan_workers)

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()

    log.info("draining: no new streams, finishing in-flight ones", extra={"fields": {"grace_s": grace}})
    await health_servicer.enter_graceful_shutdown()
    await server.stop(grace)
    await closes_finished()  # cut-short streams still counting their tokens get logged
    for picker in gw.pickers.values():
        await picker.stop()
    if shared_state_service is not None:
        await shared_state_service.stop()
    await scan_pool.stop()
    for runner in runners:
        await runner.cleanup()
    from .guards.http_client import shared_session

    await shared_session.close()
    if socket_path:
        Path(socket_path).unlink(missing_ok=True)
    log.info("processor stopped")
