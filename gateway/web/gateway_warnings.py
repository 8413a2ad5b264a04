"""What is wrong with the gateway's own link to the hospital, for the nurse view's gateway banner
(docs/nurse-view.md, "The gateway banner").

A nurse cannot mend a broker or a contract, but she must know when the hospital's systems are
not getting her ward's readings, so that she calls IT and does not count on the hospital's
screens. The gateway already knows: the hospital's receipts that refuse its messages (the
status warning `hospital_rejects_messages`, gateway/publish/mqtt.py, on the same rule) and the
messages its outbox still holds because a broker has not acknowledged them or the hospital
has not confirmed them. `warnings_of` is
the rule, a pure function of what was read; `read_warnings` reads it from a running gateway.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.publish.mqtt import REJECTED_WARN_S, REJECTED_WARNING
from gateway.publish.outbox import REJECTED_KEEP
from gateway.times import iso_time

if TYPE_CHECKING:
    from gateway.publish.mqtt import Publisher

# A message still in the outbox this long after it was stored is not a moment's reconnection
# (paho retries after 1 s, then at most every 30 s: gateway/publish/mqtt.py) nor a receipt on
# its way (receipt_timeout_s, 60 s by default) but a hospital that is not getting the ward's
# data: long enough that a broker restarted for an update raises nothing, short enough that a
# nurse learns of it within a handover's minutes.
WAITING_WARN_S = 5 * 60.0
MESSAGES_WAITING = "messages_waiting"


@dataclass(frozen=True)
class LinkState:
    """What the gateway knows of its link to the hospital at one moment (times: time.time())."""

    status_warnings: list[str]  # the gateway status's `warnings` (docs/mqtt.md)
    rejected_at: list[float]  # when each kept rejected message was refused (the newest kept)
    rejected_kept_max: int  # how many the outbox keeps: as many as that means perhaps more
    # messages in the outbox: not yet acknowledged by the broker or, with receipts, not yet
    # confirmed by the hospital (docs/mqtt.md, "Receipts")
    waiting: int
    oldest_waiting: float | None  # when the oldest of them was stored; None: there is none
    broker_connected: bool


def warnings_of(link: LinkState, now: float) -> list[dict[str, Any]]:
    """The gateway banner's warnings, each a code and the figures its sentence needs:

    * `hospital_rejects_messages` while the gateway status says so: how many messages the
      hospital refused in the last REJECTED_WARN_S (`count`, with `at_least` when the outbox's
      kept copies reach their bound, so there may have been more), since and until when;
    * `messages_waiting` when a message has waited in the outbox longer than WAITING_WARN_S
      (the broker does not take it, or the hospital does not confirm it): how many wait, since
      when, and whether the broker is connected at all;
    * any other warning of the gateway status, by its code alone (a later version's: the page
      names it and says to call IT).
    """
    out: list[dict[str, Any]] = [{"code": c} for c in link.status_warnings if c != REJECTED_WARNING]
    if REJECTED_WARNING in link.status_warnings:
        recent = [t for t in link.rejected_at if now - t < REJECTED_WARN_S]
        if recent:
            out.insert(0, {
                "code": REJECTED_WARNING,
                "count": len(recent),
                "at_least": len(link.rejected_at) >= link.rejected_kept_max,
                "since": iso_time(min(recent)),
                "last": iso_time(max(recent)),
            })  # fmt: skip
    if link.oldest_waiting is not None and now - link.oldest_waiting >= WAITING_WARN_S:
        out.append({
            "code": MESSAGES_WAITING,
            "count": link.waiting,
            "since": iso_time(link.oldest_waiting),
            "broker_connected": link.broker_connected,
        })  # fmt: skip
    return out


def read_link(publisher: Publisher) -> LinkState:
    """The link's state as the publisher and its outbox hold it now."""
    outbox = publisher.outbox
    return LinkState(
        status_warnings=publisher.warnings(),
        rejected_at=[r.rejected_at for r in outbox.rejected()],
        rejected_kept_max=REJECTED_KEEP,
        waiting=outbox.rows,
        oldest_waiting=outbox.oldest_created(),
        broker_connected=publisher.connected.is_set(),
    )


def read_warnings(publisher: Publisher, now: float | None = None) -> list[dict[str, Any]]:
    """The gateway banner's warnings for a running gateway, now."""
    return warnings_of(read_link(publisher), time.time() if now is None else now)
