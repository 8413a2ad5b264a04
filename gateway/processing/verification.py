"""The `device_unverified` alert: an enrolled device that does not prove its key.

Frames that fail verification are dropped by the session (gateway/device/auth.py); a link that
merely shows "connected" while its readings are dropped would not tell anyone, so the gateway
raises an alert for it here and clears it once the device answers with its enrolled key again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.processing.alerts import AlertTracker, Publish

if TYPE_CHECKING:
    from gateway.device.session import DeviceSession
    from gateway.transports.base import DeviceLink


class VerificationAlerts:
    """One device's `device_unverified` alert, across its connections."""

    def __init__(self, device_id: str, publish: Publish) -> None:
        self.alerts = AlertTracker(device_id, publish)
        # (link, failed checks) when its handshake last succeeded: failures after that are
        # frames forged or altered on the way
        self.verified_at: tuple[DeviceLink, int] | None = None

    def after_handshake(self, session: DeviceSession) -> None:
        """After a connection's handshake: raise the alert for an enrolled device that is
        connected but did not answer its session challenge with its enrolled key (a wrong key,
        or not the enrolled device: paired with another gateway since, or someone else's), and
        clear it once the device answers with that key again."""
        auth = session.auth
        if auth is None:
            return
        stats = session.state.stats
        if auth.established and session.link is not None:
            self.verified_at = (session.link, stats.auth_failed)
            self.alerts.set("device_unverified", False, "the device answers with its enrolled key")
        elif session.link is not None:  # not a link that went away during the handshake
            detail = (f"connected, but it does not prove its enrolled key "
                      f"({stats.auth_failed} failed checks); its readings are dropped")  # fmt: skip
            self.alerts.set("device_unverified", True, detail, severity="high")

    def check_failed_frames(self, session: DeviceSession) -> None:
        """Periodically: frames that fail verification on a connection whose handshake
        succeeded raise the alert too; the device's next good handshake clears it."""
        if session.auth is None or self.verified_at is None:
            return
        link, failed = self.verified_at
        now_failed = session.state.stats.auth_failed
        if link is not session.link or now_failed <= failed:
            return
        self.verified_at = (link, now_failed)
        detail = (f"{now_failed - failed} frames on its link failed verification with its key: "
                  "forged or altered on the way; they are dropped")  # fmt: skip
        self.alerts.set("device_unverified", True, detail, severity="high")
