"""`aigw serve --workers N`: N processor processes, one per socket of the bootstrap.

One Python process is one core: the GIL serialises everything it does. Envoy balances
ext_proc streams over the endpoints of the processor's cluster, so N sockets served by N
processes use N cores. This module is the supervisor: it starts each worker as
`aigw serve ... --worker-index i`, restarts a worker that dies (Envoy's gRPC health check
on the processor cluster keeps streams off it meanwhile), and on SIGTERM passes the
signal on and waits for every worker to drain.

What must be shared is shared through one directory the supervisor makes:
- `cooldowns`: a memory-mapped file of Retry-After deadlines (backend_health.SharedDeadlines);
- `metrics/`: prometheus_client's multiprocess files, so any worker's /metrics shows the
  sum of all of them.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger("aigw.workers")

STATE_ENV = "AIGW_SHARED_STATE"
# A worker that dies sooner than this after starting is failing, not crashing: back off.
_MIN_UPTIME = 5.0
_MAX_BACKOFF = 30.0


def _worker_argv(argv: list[str], index: int) -> list[str]:
    return [sys.executable, "-m", "extproc", *argv, "--worker-index", str(index)]


def supervise(argv: list[str], workers: int, grace: float) -> int:
    """Run `workers` copies of `aigw <argv>` until SIGTERM/SIGINT. `argv` is the serve
    command line without `--worker-index`."""
    state = Path(tempfile.mkdtemp(prefix="aigw-workers-"))
    (state / "metrics").mkdir()
    env = {**os.environ, STATE_ENV: str(state), "PROMETHEUS_MULTIPROC_DIR": str(state / "metrics")}
    procs: dict[int, subprocess.Popen] = {}
    started: dict[int, float] = {}
    backoff: dict[int, float] = {}
    stopping = False
    result = 0

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def start(i: int) -> None:
        procs[i] = subprocess.Popen(_worker_argv(argv, i), env=env)
        started[i] = time.monotonic()

    log.info("starting workers", extra={"fields": {"workers": workers, "pid": os.getpid()}})
    try:
        for i in range(workers):
            start(i)
        restart_at: dict[int, float] = {}
        while not stopping:
            time.sleep(0.2)
            now = time.monotonic()
            for i, proc in list(procs.items()):
                code = proc.poll()
                if code is None or i in restart_at:
                    continue
                _forget_metrics(proc.pid, state / "metrics")
                quick = now - started[i] < _MIN_UPTIME
                if code == 2 and quick:
                    # A usage or config error: every restart would fail the same way.
                    log.error("worker refused its configuration; stopping", extra={"fields": {"worker": i}})
                    stopping, result = True, 2
                    break
                backoff[i] = min(_MAX_BACKOFF, backoff.get(i, 0.5) * 2) if quick else 0.5
                restart_at[i] = now + backoff[i]
                log.error(
                    "worker exited; restarting",
                    extra={"fields": {"worker": i, "exit_code": code, "restart_in_s": backoff[i]}},
                )
            for i, when in list(restart_at.items()):
                if now >= when and not stopping:
                    del restart_at[i]
                    start(i)
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace + 5
        for proc in procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return result
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
        shutil.rmtree(state, ignore_errors=True)


def _forget_metrics(pid: int, metrics_dir: Path) -> None:
    """A dead worker's live-only samples must not be summed any more; its counters stay."""
    try:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, str(metrics_dir))
    except Exception:
        log.exception("could not mark a dead worker's metrics")
