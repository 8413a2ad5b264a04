"""The background tasks of a virtual BlueZ, all cancelled when it stops."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine


class Tasks:
    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, coro: Coroutine) -> asyncio.Task:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    def cancel(self) -> None:
        for t in list(self._tasks):
            t.cancel()
