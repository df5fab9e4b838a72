"""How many turns other tasks got on the event loop while something was awaited: 0 or 1
when it ran on the loop itself, many when it ran elsewhere."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

_T = TypeVar("_T")


async def turns_while(work: Awaitable[_T]) -> tuple[_T, int]:
    """(`work`'s result, the turns a task spinning on the loop took meanwhile)."""
    turns = 0
    done = False

    async def spin() -> None:
        nonlocal turns
        while not done:
            turns += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(spin())
    try:
        result = await work
    finally:
        done = True
        await task
    return result, turns
