# ESP32 HAL of the fetal-heart monitor. The Doppler front end (2 MHz CW transducer, mixer,
# audio band-pass) feeds an I2S ADC at 4 kHz, read by DMA; the maternal PPG (reflective
# LED/photodiode) and the battery divider are read by the ESP32's own ADC on a 50 Hz timer;
# the probe-contact sense is a GPIO. The radio is the BLE GATT server (radio_ble).
# Pins are those of the reference board (docs/ble.md); change them here and nowhere else.
import asyncio
import struct

import machine
from micropython import const

from radio_ble import BleRadio

_I2S_ID = const(0)
_PIN_I2S_SCK = const(26)
_PIN_I2S_WS = const(25)
_PIN_I2S_SD = const(33)
_PIN_PPG = const(34)  # ADC1 channel: ADC2 is unusable while the radio is on
_PIN_BATTERY = const(35)  # through a 1:2 divider
_PIN_SKIN = const(27)  # low when the probe's contact electrode touches skin
_DOPPLER_HZ = const(4000)
_PPG_HZ = const(50)
_DMA_BYTES = const(8192)  # I2S DMA ring: 1 s of 16-bit audio

_i2s = machine.I2S(
    _I2S_ID,
    sck=machine.Pin(_PIN_I2S_SCK),
    ws=machine.Pin(_PIN_I2S_WS),
    sd=machine.Pin(_PIN_I2S_SD),
    mode=machine.I2S.RX,
    bits=16,
    format=machine.I2S.MONO,
    rate=_DOPPLER_HZ,
    ibuf=_DMA_BYTES,
)
_i2s_stream = asyncio.StreamReader(_i2s)
_ppg_adc = machine.ADC(machine.Pin(_PIN_PPG), atten=machine.ADC.ATTN_11DB)
_bat_adc = machine.ADC(machine.Pin(_PIN_BATTERY), atten=machine.ADC.ATTN_11DB)
_skin = machine.Pin(_PIN_SKIN, machine.Pin.IN, machine.Pin.PULL_UP)
_ppg_ring = bytearray(2 * 128)
_ppg = {"w": 0, "n": 0}
_ppg_ev = asyncio.Event()
_radio = [None]
_stop = asyncio.Event()


def _ppg_sample(_timer):
    # Timer callback (soft IRQ): one PPG sample, centred on mid-scale like the Doppler.
    v = _ppg_adc.read_u16() - 32768
    struct.pack_into("<h", _ppg_ring, 2 * _ppg["w"], v)
    _ppg["w"] = (_ppg["w"] + 1) % 128
    _ppg["n"] = min(_ppg["n"] + 1, 128)
    _ppg_ev.set()


_timer = machine.Timer(0)
_timer.init(freq=_PPG_HZ, mode=machine.Timer.PERIODIC, callback=_ppg_sample)


async def doppler_read(out, count):
    """Fill `out[:count]` with the next audio samples from the I2S DMA ring."""
    buf = memoryview(bytearray(2 * count))
    got = 0
    while got < len(buf):
        got += await _i2s_stream.readinto(buf[got:])
    for i in range(count):
        out[i] = struct.unpack_from("<h", buf, 2 * i)[0]


async def ppg_read(out, count):
    while _ppg["n"] < count:
        _ppg_ev.clear()
        await _ppg_ev.wait()
    state = machine.disable_irq()
    start = (_ppg["w"] - _ppg["n"]) % 128
    _ppg["n"] -= count
    machine.enable_irq(state)
    for i in range(count):
        out[i] = struct.unpack_from("<h", _ppg_ring, 2 * ((start + i) % 128))[0]


def battery_mv():
    mv = _bat_adc.read_uv() * 2 // 1000  # 1:2 divider
    if _radio[0] is not None:
        _radio[0].set_battery(max(0, min(100, (mv - 3300) * 100 // 850)))
    return mv


def on_skin():
    return _skin.value() == 0


def make_radio(settings, adv):
    _radio[0] = BleRadio(adv)
    return _radio[0]


def background_tasks():
    return []


def stopped():
    return _stop  # a board runs until power-off
