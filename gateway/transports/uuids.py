"""The perimon GATT and advertising identifiers, in one table.

The firmware mirrors these as constants in firmware/lib/radio_ble.py; tests/test_ble_uuids.py
checks that both sides agree. UUID strings are lower case, as bleak and BlueZ report them.
"""

from __future__ import annotations

# perimon's 128-bit base; the 16-bit slot (bytes 2-3) numbers the service and characteristics.
PERIMON_SERVICE = "7a1e0001-5c3b-4f2e-9d8a-6e1f0b2c3d4e"
DATA_CHAR = "7a1e0002-5c3b-4f2e-9d8a-6e1f0b2c3d4e"  # notify: the frame stream (device -> gateway)
CONTROL_CHAR = "7a1e0003-5c3b-4f2e-9d8a-6e1f0b2c3d4e"  # write: control frames (gateway -> device)

# Bluetooth SIG assigned numbers (Assigned Numbers document, section 3.4 and 3.8).
DEVICE_INFORMATION_SERVICE = "0000180a-0000-1000-8000-00805f9b34fb"
MANUFACTURER_NAME_CHAR = "00002a29-0000-1000-8000-00805f9b34fb"
MODEL_NUMBER_CHAR = "00002a24-0000-1000-8000-00805f9b34fb"
SERIAL_NUMBER_CHAR = "00002a25-0000-1000-8000-00805f9b34fb"
FIRMWARE_REVISION_CHAR = "00002a26-0000-1000-8000-00805f9b34fb"
BATTERY_SERVICE = "0000180f-0000-1000-8000-00805f9b34fb"
BATTERY_LEVEL_CHAR = "00002a19-0000-1000-8000-00805f9b34fb"
CCCD = "00002902-0000-1000-8000-00805f9b34fb"

# Manufacturer-specific advertising data: company id, then [format version, device type].
# 0xFFFF is the SIG's id for tests and development; a shipped product uses its own assigned id.
COMPANY_ID = 0xFFFF
ADV_FORMAT = 1
ADV_PAIRING = 0x01  # a third byte with this bit: the device's pairing window is open

# Model number strings in the Device Information service, per device type (protocol DeviceType).
MODEL_NUMBERS = {1: "perimon-fetal-heart", 2: "perimon-jaundice"}


def short_uuid(uuid: str) -> int | None:
    """The 16-bit form of a SIG base UUID, or None for a vendor UUID."""
    if uuid.endswith("-0000-1000-8000-00805f9b34fb") and uuid.startswith("0000"):
        return int(uuid[4:8], 16)
    return None
