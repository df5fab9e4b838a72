"""The start-up heap is frozen before traffic, in the processor and in its scan workers,
so that no full garbage collection walks it under load (extproc/heap.py)."""

from __future__ import annotations

import asyncio
import gc
import os
import signal

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from extproc import server
from extproc.guards import scan_pool
from extproc.guards.regex_guard import RegexGuardConfig
from extproc.settings import ProcessorSettings
from tests import filter_fakes as F


async def test_the_processor_freezes_its_heap_before_it_serves(tmp_path, monkeypatch):
    seen: list[str] = []
    sock = tmp_path / "p.sock"
    real_start = grpc.aio._server.Server.start

    async def start(self):
        seen.append("serving")
        await real_start(self)

    monkeypatch.setattr(server, "freeze_startup_heap", lambda: seen.append("frozen"))
    monkeypatch.setattr(grpc.aio._server.Server, "start", start)
    monkeypatch.setattr(scan_pool, "start", lambda *a, **k: None)
    ready = asyncio.Event()
    task = asyncio.create_task(
        server.serve(F.gateway(), ProcessorSettings(), socket_path=str(sock), grace=0.1, ready=ready)
    )
    try:
        await asyncio.wait_for(ready.wait(), 30)
        assert seen == ["frozen", "serving"]  # before the first stream can arrive
        async with grpc.aio.insecure_channel(f"unix:{sock}") as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        if ready.is_set() and not task.done():
            # serve() has its SIGTERM handler on the loop by now: a graceful stop.
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(task, 30)
        else:  # it never started: a signal would reach pytest's default handler
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def test_freezing_moves_the_heap_out_of_every_generation():
    from extproc.heap import freeze_startup_heap

    kept = [[i] for i in range(1000)]  # tracked containers, as start-up builds
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() >= len(kept)
        assert sum(gc.get_count()) < len(kept)
    finally:
        gc.unfreeze()


@pytest.mark.parametrize("workers", [1])
async def test_a_scan_worker_freezes_its_heap_once_warm(workers):
    cfg = RegexGuardConfig.model_validate(
        {"action": "MASK", "matches": [{"pattern": r"ORD-\d{6}", "name": "ORDER"}]}
    )
    key = cfg.model_dump_json()
    pool = scan_pool.ScanPool({key: cfg}, workers=workers)
    pool.start()
    try:
        await asyncio.wait_for(pool.wait_ready(), 120)
        assert pool._executor is not None
        frozen = await asyncio.wrap_future(pool._executor.submit(gc.get_freeze_count))
        assert frozen > 10_000  # the worker's modules and the guard's scanner
    finally:
        await pool.close()
