"""Who gets the next free scan worker (guards/worker_slots.py): a stream's step before
requests' jobs, first come first served within each kind, and no slot lost to a waiter
that was cancelled."""

from __future__ import annotations

import asyncio

import pytest

from extproc.guards.worker_slots import WorkerSlots


async def test_a_stream_step_goes_before_requests_jobs_queued_earlier():
    slots = WorkerSlots(1)
    await slots.acquire()  # a job is running
    order: list[str] = []

    async def wait(name: str, urgent: bool) -> None:
        await slots.acquire(urgent)
        order.append(name)

    waiters = [
        asyncio.create_task(wait("job-1", False)),
        asyncio.create_task(wait("job-2", False)),
        asyncio.create_task(wait("step-1", True)),
        asyncio.create_task(wait("step-2", True)),
    ]
    await asyncio.sleep(0)  # all four are waiting, in this order
    for _ in waiters:
        slots.release()
        await asyncio.sleep(0)
    await asyncio.gather(*waiters)
    assert order == ["step-1", "step-2", "job-1", "job-2"]


async def test_free_slots_are_taken_at_once_and_counted():
    slots = WorkerSlots(2)
    await asyncio.wait_for(slots.acquire(), 1)
    await asyncio.wait_for(slots.acquire(True), 1)
    third = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    assert not third.done()  # both workers are busy
    slots.release()
    await asyncio.wait_for(third, 1)


async def test_a_cancelled_waiter_takes_no_slot():
    slots = WorkerSlots(1)
    await slots.acquire()
    gone = asyncio.create_task(slots.acquire(True))
    later = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    slots.release()
    await asyncio.wait_for(later, 1)  # the freed slot went to the one still waiting


async def test_a_waiter_cancelled_as_it_was_granted_passes_the_slot_on():
    slots = WorkerSlots(1)
    await slots.acquire()
    granted = asyncio.create_task(slots.acquire())
    later = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    slots.release()  # granted to the first waiter...
    granted.cancel()  # ...which is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await granted
    await asyncio.wait_for(later, 1)
