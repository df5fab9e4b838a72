"""Who gets the next free scan worker (scan_pool.py): a guarded stream's step before a
request's job.

A stream's step holds the client's next tokens back until it is scanned; a request's job
is one of the jobs of a prompt the provider has not seen yet, and a hostile prompt brings
many. A running job cannot be stopped for another, so a step still waits for one job to
end, but not for every job queued before it. Within each kind, first come, first served,
like asyncio.Semaphore.
"""

from __future__ import annotations

import asyncio
from collections import deque


class WorkerSlots:
    def __init__(self, count: int) -> None:
        self._free = count
        # Waiters: urgent ones (stream steps) first, then the others.
        self._waiting: tuple[deque[asyncio.Future[None]], deque[asyncio.Future[None]]] = (deque(), deque())

    async def acquire(self, urgent: bool = False) -> None:
        if self._free > 0 and not (self._waiting[0] or self._waiting[1]):
            self._free -= 1
            return
        queue = self._waiting[0 if urgent else 1]
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # granted as its waiter was cancelled: the next one gets it
            elif future in queue:
                queue.remove(future)
            raise

    def release(self) -> None:
        for queue in self._waiting:
            while queue:
                future = queue.popleft()
                if not future.done():
                    future.set_result(None)
                    return
        self._free += 1
