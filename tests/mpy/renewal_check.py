# Run under the MicroPython Unix port: firmware/lib/renewal.py's decisions on a stand-in link,
# with its sleeps on a made-up clock (each sleep returns at once and moves the clock on).
# argv: firmware lib dir. Prints JSON: per case, what happened ("reset <note>" or "running"),
# the clock at the end (ms) and the holds asked for, in order.
import sys

sys.path.append(sys.argv[1])
import asyncio
import json

import protocol as p
import renewal

LAST = 0xFFFFFFFF
clock = [0]


class Clock:
    """renewal's asyncio, but its sleeps take no time: they move `clock` on."""

    @staticmethod
    async def sleep_ms(ms):
        clock[0] += ms
        await asyncio.sleep_ms(0)


renewal.asyncio = Clock


class Radio:
    connected = True


class Link:
    def __init__(self):
        self.radio = Radio()
        self.txq = []
        self.resend = []
        self.deferred = 0
        self.sent = 0


class Reset(Exception):
    pass


def reset(note):
    raise Reset(note)


def case(counts, link, until_ms, during=None):
    """Run renewal until it resets or the clock passes `until_ms`; `during(link, ms)` changes
    the link as the clock goes."""
    clock[0] = 0
    holds = []

    async def watch():
        while clock[0] < until_ms:
            if during:
                during(link, clock[0], holds)
            await asyncio.sleep_ms(0)

    async def main():
        w = asyncio.create_task(watch())
        r = asyncio.create_task(renewal.run(link, lambda: counts(clock[0]), holds.append, reset,
                                            log=lambda s: None))  # fmt: skip
        try:
            while not w.done() and not r.done():
                await asyncio.sleep_ms(0)
            if r.done():
                try:
                    await r
                except Reset as e:
                    return "reset " + str(e)
            r.cancel()
            return "running"
        finally:
            w.cancel()

    what = asyncio.run(main())
    return {"what": what, "ms": clock[0], "holds": holds}


soft = LAST - p.RENEW_MARGIN + 1  # the first count within the margin
hard = LAST - p.RENEW_HARD_MARGIN + 1
out = {"RENEW_MARGIN": p.RENEW_MARGIN, "RENEW_HARD_MARGIN": p.RENEW_HARD_MARGIN}
# below the margin: nothing, however long
out["below"] = case(lambda ms: (soft - 1, soft - 1), Link(), 60000)
# within it on an idle link: a new boot once quiet, the sample streams held first
out["idle"] = case(lambda ms: (soft, 0), Link(), 60000)
# ... the device clock (t_ms) comes near its wrap just as well
out["clock"] = case(lambda ms: (0, soft), Link(), 60000)


def busy(link, ms, holds):
    link.txq[:] = [b"frame"]  # the link never drains


# a link that never drains: no reset until the hard margin (reached at 30 s here)
out["busy"] = case(lambda ms: (soft if ms < 30000 else hard, 0), Link(), 60000, busy)


def down(link, ms, holds):
    link.radio.connected = ms >= 20000  # down for 20 s, then linked
    if ms < 20000:
        link.deferred += 1


# the link down: waits, and renews once it is back and quiet
out["down"] = case(lambda ms: (soft, 0), Link(), 60000, down)


def asked(link, ms, holds):
    if holds == [True] and ms < 10000:  # a resend asked for while the streams were held
        link.resend[:] = [[0, 1, 2, 0]]
    elif len(holds) == 2:
        link.resend[:] = []


# something to resend as the streams are held: let go, and renew at the next quiet moment
out["asked"] = case(lambda ms: (soft, 0), Link(), 60000, asked)


def sending(link, ms, holds):
    if holds and holds[-1] and len(holds) < 3:
        link.sent += 1  # a frame left while held: it may still be on its way


out["sending"] = case(lambda ms: (soft, 0), Link(), 60000, sending)
print(json.dumps(out))
