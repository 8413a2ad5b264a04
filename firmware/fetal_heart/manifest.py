# The fetal monitor's firmware image: MicroPython's ESP32 port with this app and the modules of
# firmware/lib it imports frozen into flash, so their bytecode runs from flash and the heap holds
# only objects. Build with FROZEN_MANIFEST pointing here (docs/firmware.md, "Building an
# image"); paths are relative to this file. Nothing from firmware/sim goes into an image.
# tests/test_firmware_image.py checks that every module the app imports on a board is here.
include("$(PORT_DIR)/boards/manifest.py")  # the port's own: asyncio, _boot (the filesystem)

module("main.py")
module("hal_esp32.py")
for name in ("adc_clock", "board", "board_radio", "feedback", "framestore", "hmac_sha256", "link",
             "linkauth", "pairing", "pins", "presses", "protocol", "provision", "radio_ble",
             "radio_serial", "renewal", "seal", "storage", "supervisor"):  # fmt: skip
    module(name + ".py", base_path="../lib")
