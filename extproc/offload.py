"""A large request's parsing and translation, off the event loop.

Checking and translating a request is pure Python, linear in its size: 100,000 short
messages (3.7 MB) took ~0.15 s to parse and check and ~0.7 s more to translate for
Anthropic, on the event loop that serves every other stream of the processor. Bodies
over `LARGE_BODY` bytes are processed on a worker thread instead. The GIL still runs one
thread's Python at a time, but the interpreter hands it over every few milliseconds
(`sys.getswitchinterval()`), so the loop's streams go on between the slices instead of
waiting for the whole request. There is one such thread: large requests queue behind
each other rather than each taking another share of the GIL from the loop. While it
works, the cyclic garbage collector waits (see `_collector_paused`).
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import ParamSpec, TypeVar

# Below this, a request costs well under a millisecond to parse and translate: the hop to
# a thread and back would cost more than it saves.
LARGE_BODY = 256 * 1024

_P = ParamSpec("_P")
_T = TypeVar("_T")
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aigw-large-request")


async def run(size: int, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """`fn(*args, **kwargs)` for a body of `size` bytes: here when it is small, else on the
    large-request thread (with this task's context variables)."""
    if size <= LARGE_BODY:
        return fn(*args, **kwargs)
    work: Callable[[], _T] = partial(fn, *args, **kwargs)
    call = partial(contextvars.copy_context().run, _collector_paused, work)
    return await asyncio.get_running_loop().run_in_executor(_executor, call)


def _collector_paused(work: Callable[[], _T]) -> _T:
    """`work()` with the cyclic garbage collector paused. Parsing and walking megabytes
    allocates hundreds of thousands of containers, which set off full collections one
    after another: 22 of them over three 100,000-message requests, up to ~50 ms each and
    ~0.6 s in all, each holding the GIL (so the loop) whichever thread triggered it. What
    such work allocates is freed by reference counting; it makes no cycles to collect."""
    if not gc.isenabled():
        return work()
    gc.disable()
    try:
        return work()
    finally:
        gc.enable()
