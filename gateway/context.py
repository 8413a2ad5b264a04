"""What the nurse view and the hospital's commands may use of a running gateway.

`Gateway` (gateway/app.py) satisfies this protocol; the web view (gateway/web/) and the
command handler (gateway/publish/downlink.py) are given it instead of the whole gateway, so
what they touch is written down here and checked by mypy, and a test can hand them a smaller
object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, Unpack

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.device.enrolment import Enrolment
    from gateway.device.pairing import PairingManager
    from gateway.device.session import DeviceSession
    from gateway.processing.alerts import PublishOptions
    from gateway.processing.recording import Recordings
    from gateway.publish.mqtt import Publisher
    from gateway.publish.outbox import Outbox
    from gateway.state.history import History


class GatewayContext(Protocol):
    cfg: Config
    history: History  # what was published, settings, alerts and their acknowledgements
    outbox: Outbox
    publisher: Publisher  # the link to the hospital: the nurse view's gateway banner reads it
    sessions: dict[str, DeviceSession]  # connected or recently seen devices
    enrolment: Enrolment
    recordings: Recordings  # sessions, schedules, reports of fetal monitors
    pairing: PairingManager

    def publish(
        self, parts: tuple[str, ...], payload: dict[str, Any], **options: Unpack[PublishOptions]
    ) -> None:
        """Publish through the outbox and record it for the nurse view."""
