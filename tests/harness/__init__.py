"""What the tests share, so that no test module imports another: the broker and its
subscribers (mqtt), the gateway-and-fleet chain (chain), polling for a condition (wait), the
MicroPython interpreter (micropython), the nurse view over HTTP (web) and in Chromium
(browser), the hospital contract (contract), the firmware's provisioning console (console).
Fixtures stay in tests/conftest.py and are built from these."""
