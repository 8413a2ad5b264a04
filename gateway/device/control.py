"""Control frames to a device and the wait for their reply (docs/protocol.md, "Control").

Shared by the session (authenticated control once the handshake is done) and pairing (which
talks to a device before it has a key). The reply is matched by request id: whoever reads the
link's frames resolves `pending[rid]`.
"""

from __future__ import annotations

import asyncio

from gateway import protocol as p
from gateway.transports.base import DeviceLink


def unsigned_control_frame(op: p.Op, rid: int, args: bytes = b"") -> bytes:
    """A control frame without a tag: before a session is authenticated, or while pairing."""
    payload = p.control_payload(op, rid, args)
    return p.encode_frame(
        p.Frame(p.Flag(0), p.DeviceType.GATEWAY, p.Stream.CONTROL, 0, rid, 0, payload)
    )


async def await_reply(link: DeviceLink, frame: bytes, rid: int,
                      pending: dict[int, asyncio.Future[p.Reply]], timeout_s: float) -> p.Reply | None:  # fmt: skip
    """Write one control frame and wait for the reply that `pending[rid]` is resolved with
    (by whoever reads the link's frames); None if the link fails or nothing comes in time.
    The link's end cancels `pending[rid]`: that is None too. The caller's own cancellation (the
    gateway stopping) is passed on, never taken for a failed link."""
    fut: asyncio.Future[p.Reply] = asyncio.get_running_loop().create_future()
    pending[rid] = fut
    try:
        await link.write(frame)
        async with asyncio.timeout(timeout_s):  # not wait_for: on 3.11 it can eat a cancel
            return await fut
    except (TimeoutError, ConnectionError):
        return None
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        return None
    finally:
        pending.pop(rid, None)
