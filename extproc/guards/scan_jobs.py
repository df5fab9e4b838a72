"""What a scan worker (or, without a pool, a thread) runs: guard scan jobs against a
deadline, stopped at checkpoints, and the worker's start-up. The pool that hands jobs out
is scan_pool.py; these names live here so a worker imports nothing of the pool's event
loop side.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from ..heap import freeze_startup_heap
from .regex_guard import WORKER_PATTERN_SECONDS, PatternTimeout, RegexGuardConfig, TextScanner


class ScanStopped(Exception):
    """Raised by `checkpoint()` inside a job: its deadline passed or its stream is gone."""


# ---- checkpoints: how a running scan learns it must stop ------------------------------------

_local = threading.local()


@contextmanager
def checkpoints(check: Callable[[], None]) -> Iterator[None]:
    """Run `check` at every `checkpoint()` in this thread while the block runs."""
    previous = getattr(_local, "check", None)
    _local.check = check
    try:
        yield
    finally:
        _local.check = previous


def checkpoint() -> None:
    """Called by recognizers between bounded pieces of work; raises ScanStopped when the
    job must stop. Free outside a job."""
    check = getattr(_local, "check", None)
    if check is not None:
        check()


# ---- the job, as a worker (or a thread) runs it ----------------------------------------------


class JobResult(NamedTuple):
    # "ok", "timeout" (the budget ran out), "pattern_timeout" (a custom pattern ran out of
    # its time on a text: regex_guard.PatternTimeout) or "cancelled"
    status: str
    # Per text: the masked text and its findings as (entity, start, end, score).
    outputs: list[tuple[str, list[tuple[str, int, int, float]]]]
    elapsed: float  # seconds the job ran
    pattern: str = ""  # with "pattern_timeout": the custom pattern's name


_scanners: dict[str, TextScanner] = {}
_scanners_lock = threading.Lock()
_cancel_flags: Any = None  # the pool's shared flags, one per worker slot (in a worker)


def _scanner(key: str, config: RegexGuardConfig | None) -> TextScanner:
    scanner = _scanners.get(key)
    if scanner is None:
        assert config is not None, "a worker was sent a job for a scanner it was not built with"
        with _scanners_lock:
            scanner = _scanners.get(key)
            if scanner is None:
                scanner = _scanners[key] = TextScanner(config, WORKER_PATTERN_SECONDS)
    return scanner


def run_job(
    key: str,
    config: RegexGuardConfig | None,
    texts: list[str],
    budget: float,
    cancel: Any,
    hints: list[str] | None = None,
) -> JobResult:
    """Mask `texts` with the scanner for `config` (None: one the worker was started with),
    within `budget` seconds. `cancel` is the job's slot in the shared flags (in a worker)
    or a threading.Event (in a thread). With `hints` (a guarded stream's step: its Presidio
    hint per text, see TextScanner.scan), the texts are scanned, not masked: each output
    is ("", findings)."""
    start = time.monotonic()
    deadline = start + budget
    if isinstance(cancel, int):
        flags, slot = _cancel_flags, cancel

        def cancelled() -> bool:
            return bool(flags[slot])
    else:
        cancelled = cancel.is_set

    def check() -> None:
        if cancelled() or time.monotonic() > deadline:
            raise ScanStopped

    scanner = _scanner(key, config)
    outputs = []
    try:
        with checkpoints(check):
            for i, text in enumerate(texts):
                check()
                if hints is None:
                    masked, findings = scanner.mask(text)
                else:
                    masked, findings = "", scanner.scan(text, presidio_hint=hints[i])
                outputs.append((masked, [(f.entity, f.start, f.end, f.score) for f in findings]))
    except ScanStopped:
        return JobResult("cancelled" if cancelled() else "timeout", [], time.monotonic() - start)
    except PatternTimeout as exc:
        return JobResult("pattern_timeout", [], time.monotonic() - start, exc.name)
    return JobResult("ok", outputs, time.monotonic() - start)


def _die_with_processor(lifeline: Any) -> None:
    """Exit when the processor does, even when it was killed without shutting the pool
    down: neither the forkserver (our parent) nor the executor's queues notice, since every
    worker holds their other ends. Only the processor holds the lifeline's write end, so
    reading it returns (EOF) exactly when the processor is gone."""

    def watch() -> None:
        try:
            lifeline.recv()
        except (EOFError, OSError):
            pass
        os._exit(0)

    threading.Thread(target=watch, name="aigw-lifeline", daemon=True).start()
    try:  # and with the forkserver, should it die first
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def worker_init(configs: list[tuple[str, RegexGuardConfig]], flags: Any, lifeline: Any) -> None:
    global _cancel_flags
    _cancel_flags = flags
    _die_with_processor(lifeline)
    # Ctrl-C in a terminal reaches the whole process group; the processor stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for key, config in configs:
        _scanner(key, config)  # builds and warms the Presidio engines
    freeze_startup_heap()  # Presidio's models: never walked by a full collection again


def worker_warm() -> int:
    return os.getpid()
