# A boot never wraps (docs/protocol.md, "Streams and sequence numbers"; docs/security.md). The
# seal's counter block holds a frame's 32-bit seq under the boot's session key: past 2**32 the
# keystream of the first cycle would come again, and a frame captured then would pass for one
# of the next. So before any counter of the boot's frames (the Doppler's seq, the fastest; t_ms)
# comes near 2**32 the device starts a new boot: it resets, and the next start brings a new
# boot counter, boot nonce and session key, and counts from 0. A reset empties the resend store,
# so it waits for a moment when the store holds nothing the gateway lacks: linked, everything
# framed handed to the radio, no resend asked for and nothing deferred for a while; then it
# holds the sample streams, lets the last frames leave, and resets. At RENEW_HARD_MARGIN it
# resets whatever it holds (the link has been down for an hour of Doppler: what the store still
# has could not be delivered in this boot anyway). A small module of its own: link.py must stay
# small enough to compile in the simulation's heap.
import asyncio

import protocol as p
from micropython import const

_CHECK_MS = const(1000)  # the counters are looked at this often: the hard margin is minutes
_QUIET_MS = const(3000)  # idle this long: any gap the gateway saw has been asked for and filled
_DRAIN_MS = const(500)  # with the sample streams held: the last frames leave the radio
_LAST = const(0xFFFFFFFF)


def due(count, margin):
    """True once `count`, a 32-bit counter of this boot, is within `margin` of wrapping."""
    return count > _LAST - margin


def idle(link):
    """Linked, everything framed handed to the radio, no resend under way."""
    return link.radio.connected and not link.txq and not link.resend


async def run(link, counts, hold, reset, log=print):
    """Watch this boot's counters and start a new boot in time. `counts()`: the numbers the
    next frames would carry (the Doppler's next sample index, counted on while the gateway has
    the streams stopped too; the clock); `hold(on)` stops the sample streams framing (True) or
    lets them go on; `reset(note)` is the board's reset and does not return."""
    quiet = 0
    deferred = link.deferred
    while True:
        await asyncio.sleep_ms(_CHECK_MS)
        top = max(counts())
        if not due(top, p.RENEW_MARGIN):
            continue
        if due(top, p.RENEW_HARD_MARGIN):
            log("RENEW %s sent %d: at the hard margin" % (counts(), link.sent))
            reset("renewal: at the hard margin")
        quiet = quiet + _CHECK_MS if idle(link) and link.deferred == deferred else 0
        deferred = link.deferred
        if quiet < _QUIET_MS:
            continue
        hold(True)
        await asyncio.sleep_ms(_DRAIN_MS)
        sent = link.sent
        await asyncio.sleep_ms(_DRAIN_MS)  # nothing more may leave, nothing be asked for
        if idle(link) and link.sent == sent and link.deferred == deferred:
            log("RENEW %s sent %d: all sent" % (counts(), link.sent))
            reset("renewal: near wrap, all sent")
        hold(False)
        quiet = 0
