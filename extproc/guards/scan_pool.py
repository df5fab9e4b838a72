"""Guard scans (custom regexes, Presidio) in worker processes, off the event loop.

One event loop serves every stream, and Presidio costs up to ~0.1-0.3 ms per character
of digit-dense text: scanning on the loop let one request stall all the others, and a
worker thread still held the GIL most of the time. So scans run in a small process pool:

- Workers are forked from a forkserver that has imported Presidio once, and each builds
  and warms the scanners of every configured regex guard before taking work. The pool
  starts in the background: the processor answers health checks at once, and a scan
  asked for before the pool is warm waits for it.
- At most one job per worker is handed to the executor. A request waiting for a worker
  waits here, in FIFO order (a guarded stream's step before requests' jobs: `urgent`,
  worker_slots.py), so a request whose stream is cancelled while it waits never
  submits its job; a running job whose stream is gone is told to stop through a shared
  flag, which it reads at the same checkpoints as its deadline.
- A job runs against a deadline: the time left in its request's scan budget. The
  recognizers call `checkpoint()` between bounded pieces of work (see presidio_engine),
  so a job stops soon after its deadline instead of holding a worker for minutes. The
  job and the checkpoints, what runs in a worker, are in scan_jobs.py.
- A pool whose worker died is rebuilt; the requests it was serving get a 503 (never a
  pass).

Without a started pool (unit tests, tools), the same jobs run in threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from .regex_guard import RegexGuardConfig
from .scan_jobs import JobResult, run_job, worker_init, worker_warm
from .worker_slots import WorkerSlots

log = logging.getLogger("aigw.guards")

# Worker start-up (fork + building the scanners) takes seconds on a busy machine; longer
# than this means something is wrong, and scans fail closed.
_WARM_TIMEOUT = 120.0
_STOP_TIMEOUT = 10.0


class ScanUnavailable(Exception):
    """No worker can scan right now (the pool failed to start or is being rebuilt)."""


# ---- the pool, as the event loop sees it -----------------------------------------------------


class ScanPool:
    """Worker processes for guard scans. `start()` returns at once; `scan()` waits for a
    warm worker."""

    def __init__(self, configs: dict[str, RegexGuardConfig], workers: int) -> None:
        self.configs = configs
        self.workers = workers
        self._ctx = multiprocessing.get_context("forkserver")
        # Presidio's import (~1.2 s) happens once, in the forkserver, not per worker.
        preload = ["extproc.guards.scan_pool"]
        if any(c.builtins for c in configs.values()):
            preload.append("extproc.guards.presidio_engine")
        self._ctx.set_forkserver_preload(preload)
        self._flags = self._ctx.Array("b", workers, lock=False)
        self._lifeline, self._lifeline_w = self._ctx.Pipe(duplex=False)
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._ready: asyncio.Future[None] | None = None
        self._slots = WorkerSlots(workers)
        self._free = list(range(workers))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    # lifecycle

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._ready = self._loop.create_future()
        self._loop.create_task(self._build())

    async def wait_ready(self) -> None:
        assert self._ready is not None, "ScanPool.start() was not called"
        await asyncio.shield(self._ready)

    async def _build(self) -> None:
        ready = self._ready
        begun = time.monotonic()
        try:
            # Starting processes blocks (the forkserver imports Presidio first): a thread.
            executor = await asyncio.wait_for(asyncio.to_thread(self._new_executor), _WARM_TIMEOUT)
        except Exception as exc:
            log.error("guard scan workers failed to start: %s", exc)
            if ready is not None and not ready.done():
                ready.set_exception(ScanUnavailable(str(exc)))
            return
        if self._closed:  # closed while starting
            executor.shutdown(wait=False, cancel_futures=True)
            return
        self._executor = executor
        log.info(
            "guard scan workers ready",
            extra={
                "fields": {
                    "workers": self.workers,
                    "scanners": len(self.configs),
                    "seconds": round(time.monotonic() - begun, 2),
                }
            },
        )
        if ready is not None and not ready.done():
            ready.set_result(None)

    def _new_executor(self) -> concurrent.futures.ProcessPoolExecutor:
        executor = concurrent.futures.ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=self._ctx,
            initializer=worker_init,
            initargs=(list(self.configs.items()), self._flags, self._lifeline),
        )
        try:
            # One job per worker, submitted together, so every worker starts (and warms)
            # now rather than on a live request.
            warm = [executor.submit(worker_warm) for _ in range(self.workers)]
            for future in warm:
                future.result(timeout=_WARM_TIMEOUT)
        except BaseException:
            executor.shutdown(wait=False, cancel_futures=True)
            raise
        return executor

    async def close(self) -> None:
        """Stop the workers: running jobs are told to stop, queued ones never run."""
        self._closed = True
        executor, self._executor = self._executor, None
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(ScanUnavailable("the scan pool is closed"))
        if executor is None:
            return
        for slot in range(self.workers):
            self._flags[slot] = 1
        processes = list((getattr(executor, "_processes", None) or {}).values())
        try:
            await asyncio.wait_for(
                asyncio.to_thread(executor.shutdown, True, cancel_futures=True), _STOP_TIMEOUT
            )
        except (TimeoutError, Exception):
            for process in processes:
                if process.is_alive():
                    process.kill()

    def _rebuild(self, reason: BaseException) -> None:
        """A worker died (killed, out of memory): the executor is unusable. Fail what it
        held and build a new one; scans wait for it."""
        loop = self._loop  # set by start(), with `_ready`
        if self._closed or loop is None or self._ready is None or not self._ready.done():
            return  # not started, or already rebuilding
        log.error("guard scan worker died; restarting the pool: %s", reason)
        old, self._executor = self._executor, None
        if old is not None:
            old.shutdown(wait=False, cancel_futures=True)
        self._ready = loop.create_future()
        loop.create_task(self._build())

    # work

    async def scan(
        self,
        key: str,
        config: RegexGuardConfig,
        texts: list[str],
        budget: float,
        hints: list[str] | None = None,
        urgent: bool = False,
    ) -> JobResult:
        if self._closed:
            raise ScanUnavailable("the scan pool is closed")
        await self.wait_ready()
        await self._slots.acquire(urgent)  # cancelled here: the job is never submitted
        slot = self._free.pop()
        self._flags[slot] = 0
        try:
            if self._executor is None:
                raise ScanUnavailable("the scan pool is restarting")
            # Workers were started with every configured scanner: send the key alone.
            sent = None if key in self.configs else config
            future = self._executor.submit(run_job, key, sent, texts, budget, slot, hints)
        except (BrokenProcessPool, RuntimeError) as exc:
            self._release(slot)
            self._rebuild(exc)
            raise ScanUnavailable(str(exc)) from exc
        except BaseException:
            self._release(slot)
            raise
        # The slot (a worker) is free again only when the job is over, even if nobody
        # waits for it any more.
        future.add_done_callback(lambda _: self._release_threadsafe(slot))
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            self._flags[slot] = 1  # the stream is gone: the job stops at its next checkpoint
            raise
        except BrokenProcessPool as exc:
            self._rebuild(exc)
            raise ScanUnavailable(str(exc)) from exc

    def _release_threadsafe(self, slot: int) -> None:
        try:
            self._loop.call_soon_threadsafe(self._release, slot)  # type: ignore[union-attr]
        except RuntimeError:
            pass  # the loop is closed: the process is exiting

    def _release(self, slot: int) -> None:
        self._free.append(slot)
        self._slots.release()


class ThreadRunner:
    """The same jobs in threads, for when no pool was started (tests, tools)."""

    async def scan(
        self,
        key: str,
        config: RegexGuardConfig,
        texts: list[str],
        budget: float,
        hints: list[str] | None = None,
        urgent: bool = False,
    ) -> JobResult:
        cancel = threading.Event()
        try:
            return await asyncio.to_thread(run_job, key, config, texts, budget, cancel, hints)
        except asyncio.CancelledError:
            cancel.set()
            raise


_pool: ScanPool | None = None
_threads = ThreadRunner()


def runner() -> ScanPool | ThreadRunner:
    """Where RegexStage sends its scans: the started pool, else threads."""
    return _pool if _pool is not None else _threads


def default_workers() -> int:
    # One worker per core, at most 2 by default: the processor's own loop needs CPU too.
    return max(1, min(2, os.cpu_count() or 1))


def start(configs: dict[str, RegexGuardConfig], workers: int | None = None) -> ScanPool | None:
    """Start the process pool for these regex guard configs (none: no pool, no
    processes). Returns at once; workers warm up in the background."""
    global _pool
    if not configs:
        return None
    pool = ScanPool(configs, workers or default_workers())
    pool.start()
    _pool = pool
    return pool


async def stop() -> None:
    global _pool
    pool, _pool = _pool, None
    if pool is not None:
        await pool.close()


def guard_configs(routes: Any) -> dict[str, RegexGuardConfig]:
    """The regex guard config of every route's RegexStage, by the key jobs name it with."""
    configs: dict[str, RegexGuardConfig] = {}
    for route in routes:
        guards = getattr(route, "guards", None)
        for side in (getattr(guards, "request", None), getattr(guards, "response", None)):
            stage = getattr(side, "regex", None)
            if stage is not None:
                configs[stage.key] = stage.scanner.config
    return configs
