"""The firmware and the gateway agree on the GATT table, the advertising format and the
virtual-radio message numbers; the advertising payloads fit BLE's 31 bytes."""

from __future__ import annotations

import re
import subprocess

import pytest

from gateway.transports import uuids
from simulators import virtual_bluez as vb
from simulators.fleet import FIRMWARE_DIR, micropython_binary

RADIO_BLE = (FIRMWARE_DIR / "lib" / "radio_ble.py").read_text()
BLUETOOTH_SIM = (FIRMWARE_DIR / "sim" / "bluetooth_sim.py").read_text()


def _const(src: str, name: str) -> str:
    m = re.search(rf"^{name} = (?:const\()?([^)\n]+)\)?$", src, re.M)
    assert m, name
    return m.group(1).strip().strip('"')


@pytest.mark.unit
def test_firmware_uuids_match_the_gateway_table():
    for name in ("PERIMON_SERVICE", "DATA_CHAR", "CONTROL_CHAR"):
        assert _const(RADIO_BLE, name) == getattr(uuids, name)
    for name in ("DEVICE_INFORMATION_SERVICE", "MANUFACTURER_NAME_CHAR", "MODEL_NUMBER_CHAR",
                 "SERIAL_NUMBER_CHAR", "FIRMWARE_REVISION_CHAR", "BATTERY_SERVICE",
                 "BATTERY_LEVEL_CHAR"):  # fmt: skip
        assert uuids.short_uuid(getattr(uuids, name)) == int(_const(RADIO_BLE, name), 16), name
    assert int(_const(RADIO_BLE, "COMPANY_ID"), 16) == uuids.COMPANY_ID
    assert int(_const(RADIO_BLE, "ADV_FORMAT")) == uuids.ADV_FORMAT
    assert int(_const(RADIO_BLE, "ADV_PAIRING"), 16) == uuids.ADV_PAIRING
    assert eval(_const(RADIO_BLE, "MODEL_NUMBERS")) == uuids.MODEL_NUMBERS


@pytest.mark.unit
def test_link_message_numbers_agree():
    for name in ("M_HELLO", "M_ADV", "M_NOTIFY", "M_READ_RSP", "M_DISC", "M_MTU_REQ",
                 "M_CONNECT", "M_DISCONNECT", "M_MTU", "M_MTU_RSP", "M_WRITE", "M_READ",
                 "M_CONN_UPDATE", "M_COMPLETED"):  # fmt: skip
        assert int(_const(BLUETOOTH_SIM, name)) == getattr(vb, name), name


@pytest.mark.system
def test_advertising_payloads_fit_and_parse_as_bluez_would(tmp_path):
    script = tmp_path / "adv.py"
    script.write_text(
        "import sys\n"
        f"sys.path.append({str(FIRMWARE_DIR / 'lib')!r})\n"
        f"sys.path.append({str(FIRMWARE_DIR / 'sim')!r})\n"
        "import bluetooth_sim\n"
        "sys.modules['bluetooth'] = bluetooth_sim\n"
        "import radio_ble\n"
        "for name in ('fh-01', 'ward3-fh-00127'):\n"
        "    a, r = radio_ble.adv_payloads(name, 1, 15, 30)\n"
        "    print(a.hex(), r.hex())\n"
    )
    out = subprocess.run([micropython_binary(), str(script)], capture_output=True, text=True,
                         check=True).stdout.split("\n")  # fmt: skip
    for line, name in zip(out, ("fh-01", "ward3-fh-00127"), strict=False):
        adv, resp = (bytes.fromhex(x) for x in line.split())
        assert len(adv) <= 31 and len(resp) <= 31
        ad, rs = vb.parse_ad(adv), vb.parse_ad(resp)
        assert vb.uuid128(ad[0x07]) == uuids.PERIMON_SERVICE
        assert rs[0xFF] == bytes((0xFF, 0xFF, uuids.ADV_FORMAT, 1))
        assert (rs.get(0x09) or ad.get(0x09)) == name.encode()
        assert rs[0x12] == bytes((12, 0, 24, 0))  # 15-30 ms in 1.25 ms units
