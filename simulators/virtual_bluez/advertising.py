"""Advertising data as BlueZ reads it: AD structures, and the Device1 properties they become."""

from __future__ import annotations

import struct

from dbus_fast import Variant


def parse_ad(data: bytes) -> dict[int, bytes]:
    """AD structures as {type: payload}; repeated types are concatenated."""
    out: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        n = data[i]
        if n == 0 or i + 1 + n > len(data):
            break
        kind = data[i + 1]
        out[kind] = out.get(kind, b"") + bytes(data[i + 2 : i + 1 + n])
        i += 1 + n
    return out


def ad_structures(data: bytes) -> list[tuple[int, bytes]]:
    """AD structures as (type, payload) in the order they are on the air."""
    out = []
    i = 0
    while i < len(data):
        n = data[i]
        if n == 0 or i + 1 + n > len(data):
            break
        out.append((data[i + 1], bytes(data[i + 2 : i + 1 + n])))
        i += 1 + n
    return out


def uuid128(le: bytes) -> str:
    """A 128-bit UUID from its little-endian bytes on the air."""
    h = le[::-1].hex()
    return f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def uuid16(v: int) -> str:
    """A 16-bit assigned number as its full UUID on the Bluetooth base."""
    return f"{v:08x}-0000-1000-8000-00805f9b34fb"


def device_properties(adv: bytes, resp: bytes) -> dict[str, Variant]:
    """Device1 properties from advertising data and scan response, with BlueZ's D-Bus types."""
    ad = parse_ad(adv)
    rsp = parse_ad(resp)
    both = {**ad, **rsp}
    props: dict[str, Variant] = {}
    name = both.get(0x09) or both.get(0x08)
    if name:
        props["Name"] = Variant("s", name.decode("utf-8", "replace"))
    uuids = []
    for kind in (0x06, 0x07):
        raw = ad.get(kind, b"") + rsp.get(kind, b"")
        uuids += [uuid128(raw[i : i + 16]) for i in range(0, len(raw) - 15, 16)]
    for kind in (0x02, 0x03):
        raw = ad.get(kind, b"") + rsp.get(kind, b"")
        uuids += [uuid16(struct.unpack_from("<H", raw, i)[0]) for i in range(0, len(raw) - 1, 2)]
    props["UUIDs"] = Variant("as", uuids)
    mfr = both.get(0xFF)
    if mfr and len(mfr) >= 2:
        cid = struct.unpack_from("<H", mfr)[0]
        props["ManufacturerData"] = Variant("a{qv}", {cid: Variant("ay", bytes(mfr[2:]))})
    if 0x01 in ad:
        props["AdvertisingFlags"] = Variant("ay", bytes(ad[0x01]))
    if 0x0A in both:
        props["TxPower"] = Variant("n", struct.unpack("b", both[0x0A][:1])[0])
    return props


def preferred_interval(adv: bytes, resp: bytes) -> tuple[int, int] | None:
    """The peripheral's preferred connection interval (AD type 0x12), in 1.25 ms units."""
    iv = {**parse_ad(adv), **parse_ad(resp)}.get(0x12)
    if iv and len(iv) == 4:
        return struct.unpack("<HH", iv)
    return None
