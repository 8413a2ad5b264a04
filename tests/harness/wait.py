"""Waiting for something to happen by polling for it, never by sleeping a guessed time."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

Why = str | Callable[[], str]


def _failed(what: Why, timeout_s: float) -> AssertionError:
    return AssertionError(f"{what() if callable(what) else what} (waited {timeout_s:g} s)")


def eventually(predicate: Callable[[], Any], timeout_s: float, what: Why, every_s: float = 0.05):
    """Call `predicate` until it returns something true, and return that; after `timeout_s`,
    fail with `what`: what did not happen (or a function that says so, called only then, to
    show the state at that moment)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise _failed(what, timeout_s)
        time.sleep(every_s)


async def eventually_async(
    predicate: Callable[[], Any], timeout_s: float, what: Why, every_s: float = 0.05
):
    """`eventually` inside an event loop: the loop runs between the polls. `predicate` may
    return an awaitable (say `lambda: asyncio.to_thread(blocking_check)`), which is awaited."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise _failed(what, timeout_s)
        await asyncio.sleep(every_s)
