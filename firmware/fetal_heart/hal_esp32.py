# ESP32 HAL of the fetal-heart monitor. The Doppler front end (2 MHz CW transducer, mixer,
# audio band-pass) feeds an I2S ADC at 4 kHz, read by DMA; the maternal PPG (reflective
# LED/photodiode) and the battery divider are read by the ESP32's own ADC on a 50 Hz timer;
# the probe-contact sense is a GPIO. The radio is the BLE GATT server (radio_ble), or with
# radio_kind "serial" the USB cable (radio_serial).
# Pins: the board's map in firmware/lib/pins.py, chosen by board.py (docs/firmware.md).
import array
import asyncio
import time

import machine
from micropython import const

import board
import board_radio
from adc_clock import AdcClock
from presses import Presses
from board import cpu_ms, note_reset, reset, reset_cause, watchdog  # noqa: F401

board.full_speed()
_P = board.pins_of("fetal_heart")
_I2S_ID = const(0)
_DOPPLER_HZ = const(4000)
_PPG_HZ = const(50)
# I2S RX DMA ring: the ESP32 port reads 32-bit stereo frames from the bus whatever `bits` and
# `format` say (8 bytes a sample at 4 kHz), so 32768 bytes hold 4096 samples, 1.024 s: the
# loop may stall for up to that long before samples are lost (docs/firmware.md).
_DMA_BYTES = const(32768)
_DMA_SAMPLES = const(4096)
_DMA_SLACK = const(256)  # samples of one DMA buffer: the driver hands data over a buffer at a time
# Mother's feedback: an RGB LED (common cathode, three PWM channels), a piezo buzzer (PWM) for
# the guiding tones, a small speaker on an I2S class-D amplifier (MAX98357A) for the Doppler
# sound, and the pairing button (to ground, internal pull-up).
_SPK_I2S_ID = const(1)
_SPK_DMA_BYTES = const(4096)
_COLOURS = {
    "off": (0, 0, 0), "red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255),
    "yellow": (255, 160, 0), "cyan": (0, 255, 255), "magenta": (255, 0, 255),
    "white": (255, 255, 255),
}  # fmt: skip

_i2s = machine.I2S(
    _I2S_ID,
    sck=machine.Pin(_P["i2s_sck"]),
    ws=machine.Pin(_P["i2s_ws"]),
    sd=machine.Pin(_P["i2s_sd"]),
    mode=machine.I2S.RX,
    bits=16,
    format=machine.I2S.MONO,
    rate=_DOPPLER_HZ,
    ibuf=_DMA_BYTES,
)
_i2s_stream = asyncio.StreamReader(_i2s)
_ppg_adc = machine.ADC(machine.Pin(_P["ppg_adc"]), atten=machine.ADC.ATTN_11DB)
_bat_adc = machine.ADC(machine.Pin(_P["battery_adc"]), atten=machine.ADC.ATTN_11DB)
_skin = machine.Pin(_P["skin_in"], machine.Pin.IN, machine.Pin.PULL_UP)
_ppg_ring = array.array("h", bytes(2 * 128))
_ppg = {"w": 0, "n": 0}
_ppg_ev = asyncio.Event()
_radio = [None]
_stop = asyncio.Event()


def _ppg_sample(_timer):
    # Timer callback (soft IRQ): one PPG sample, centred on mid-scale like the Doppler.
    _ppg_ring[_ppg["w"]] = _ppg_adc.read_u16() - 32768
    _ppg["w"] = (_ppg["w"] + 1) % 128
    _ppg["n"] = min(_ppg["n"] + 1, 128)
    _ppg_ev.set()


_timer = machine.Timer(0)
_timer.init(freq=_PPG_HZ, mode=machine.Timer.PERIODIC, callback=_ppg_sample)

_led = [machine.PWM(machine.Pin(_P[n]), freq=1000, duty_u16=0)
        for n in ("led_r", "led_g", "led_b")]  # fmt: skip
_led_state = {"rgb": (0, 0, 0), "blink": False, "on": True}
_buzzer = machine.PWM(machine.Pin(_P["buzzer"]), freq=1000, duty_u16=0)
_tone_timer = machine.Timer(1)
_blink_timer = machine.Timer(2)
_speaker = machine.I2S(
    _SPK_I2S_ID,
    sck=machine.Pin(_P["spk_sck"]),
    ws=machine.Pin(_P["spk_ws"]),
    sd=machine.Pin(_P["spk_sd"]),
    mode=machine.I2S.TX,
    bits=16,
    format=machine.I2S.MONO,
    rate=_DOPPLER_HZ,
    ibuf=_SPK_DMA_BYTES,
)
_speaker.irq(lambda _i2s: None)  # a callback makes write() non-blocking: audio never stalls
_button = machine.Pin(_P["button_in"], machine.Pin.IN, machine.Pin.PULL_UP)
_presses = Presses()


def _set_rgb(rgb):
    for i in range(3):
        _led[i].duty_u16(rgb[i] * 257)


def _blink(_timer):
    if _led_state["blink"]:
        _led_state["on"] = not _led_state["on"]
        _set_rgb(_led_state["rgb"] if _led_state["on"] else (0, 0, 0))


_blink_timer.init(period=400, mode=machine.Timer.PERIODIC, callback=_blink)


def led(colour, blink):
    _led_state["rgb"] = _COLOURS.get(colour, (0, 0, 0))
    _led_state["blink"] = blink
    _led_state["on"] = True
    _set_rgb(_led_state["rgb"])


def _tone_off(_timer):
    _buzzer.duty_u16(0)


def tone(freq_hz, ms):
    """Start a tone and return at once: a one-shot timer ends it."""
    _buzzer.freq(freq_hz)
    _buzzer.duty_u16(32768)
    _tone_timer.init(period=ms, mode=machine.Timer.ONE_SHOT, callback=_tone_off)


def speaker(samples, count):
    """Doppler sound out (what does not fit the DMA buffer now is skipped); None: silence."""
    if samples is None:
        return
    _speaker.write(_view(samples, count))


def _on_button(_pin):
    _presses.edge(time.ticks_ms())


# Both edges: the press (falling, to ground) times the movement mark, when the mother felt the
# baby move, not when the task next looks; the release tells a short press from a long one. A
# tap shorter than the task's 50 ms poll is still seen. The IRQ only notes the time; the pin is
# read once it has settled (presses.py debounces), from the task.
_button.irq(trigger=machine.Pin.IRQ_FALLING | machine.Pin.IRQ_RISING, handler=_on_button)


def button():
    """(PRESS_SHORT or PRESS_LONG, ticks_ms when it began) once per press, else None."""
    return _presses.poll(time.ticks_ms(), _button.value() == 0, time.ticks_diff)


_views = [None, 0, None]  # the array, the count and its view, made once per buffer and size
# The Doppler's ADC clock, caught up when the DMA was last seen empty; beside it the samples lost
# to an overrun and not yet reported, and those still in the DMA after the last read
# (preallocated: the read path allocates nothing).
_adc = AdcClock(_DOPPLER_HZ, time.ticks_us(), time.ticks_diff)
_dma = array.array("i", (0, 0))


def _view(samples, count):
    if _views[0] is not samples or _views[1] != count:
        _views[0], _views[1], _views[2] = samples, count, memoryview(samples)[:count]
    return _views[2]


async def doppler_read(out, count):
    """Fill `out[:count]` (an array of int16) with the next samples from the I2S DMA ring,
    straight into the array. An overrun is told by the clock: more samples made since the DMA
    was last empty than were read, beyond what the DMA holds, were lost (doppler_lost)."""
    mv = _view(out, count)
    want = 2 * count
    got = await _i2s_stream.readinto(mv)
    empty = got < want  # the DMA ran dry: it now holds at most the buffer being filled
    while got < want:
        got += await _i2s_stream.readinto(mv[got // 2 :])  # rare: one small view
    now = time.ticks_us()
    behind = _adc.behind(now)  # this block + still in the DMA
    _dma[1] = 0 if empty else max(0, min(behind, _DMA_SAMPLES) - count)
    if behind > _DMA_SAMPLES + _DMA_SLACK:
        _dma[0] += behind - _DMA_SAMPLES  # the DMA was full and dropped its oldest buffers
        _adc.read += behind - _DMA_SAMPLES
    _adc.read += count
    if empty:
        _adc.caught_up(now, 0)


def doppler_first_seq():
    """Every boot numbers its samples from 0 (the simulation's HAL can start one elsewhere)."""
    return 0


def doppler_lost():
    """Samples lost to DMA overruns since the last call, all before the block just read."""
    n = _dma[0]
    _dma[0] = 0
    return n


def doppler_waiting():
    """Samples made after the block just read and still in the DMA: how much older than a
    fresh read that block is (its frame's stamp, main.py)."""
    return _dma[1]


async def ppg_read(out, count):
    while _ppg["n"] < count:
        _ppg_ev.clear()
        await _ppg_ev.wait()
    state = machine.disable_irq()
    start = (_ppg["w"] - _ppg["n"]) % 128
    _ppg["n"] -= count
    machine.enable_irq(state)
    for i in range(count):
        out[i] = _ppg_ring[(start + i) % 128]


def ppg_waiting():
    """Samples taken after the block just read and still in the ring (see doppler_waiting)."""
    return _ppg["n"]


def battery_mv():
    mv = _bat_adc.read_uv() * 2 // 1000  # 1:2 divider
    if _radio[0] is not None:
        _radio[0].set_battery(max(0, min(100, (mv - 3300) * 100 // 850)))
    return mv


def on_skin():
    return _skin.value() == 0


def make_radio(settings, adv):
    _radio[0] = board_radio.make_radio(settings, adv, board_radio.console_port)  # BLE or USB
    return _radio[0]


def background_tasks():
    return []


def stopped():
    return _stop  # a board runs until power-off
